//! The memory provider's control queue (SPEC §10 rules 1–8, decision 0007 "The control
//! queue"): one row per instance in [`Mem::queue`], the error log in [`Mem::errors`].

use super::{Mem, MemoryProvider, QueueRow};
use crate::encoding::decode;
use crate::{
    handover_metadata, CommandFailure, ControlCommand, ControlProvider, ErrorLogEntry, InstanceId,
    InstanceState, PropertyBag, QueueEntry, QueueSettings, QueuedCommand, StoreError, Timestamp,
    Uuid,
};

/// The error code of an attempt that ended because the reader's lock expired.
const LOCK_EXPIRED: &str = "lock_expired";

impl QueueRow {
    /// Locked: a reader's lock that has not expired at `now`.
    fn locked(&self, now: Timestamp) -> bool {
        self.lock.is_some() && self.locked_until.is_some_and(|t| t > now)
    }

    /// Read by a reader whose lock has expired at `now`.
    fn expired(&self, now: Timestamp) -> bool {
        self.lock.is_some() && !self.locked(now)
    }

    fn unlock(&mut self) {
        self.lock = None;
        self.locked_until = None;
        self.reader = None;
    }
}

impl Mem {
    /// Checks that `lock` is the lock the last read of `instance`'s command handed out.
    fn check_command_lock(&self, instance: InstanceId, lock: Uuid) -> Result<(), StoreError> {
        match self.queue.get(&instance) {
            Some(q) if q.lock == Some(lock) => Ok(()),
            _ => Err(StoreError::CommandLockLost { instance }),
        }
    }

    /// Removes `instance`'s command and replaces its error-log entry: the command is given up
    /// (rule 7–8) after `attempts` failed attempts.
    fn give_up(
        &mut self,
        instance: InstanceId,
        attempts: u32,
        code: &str,
        message: String,
        machine: String,
        now: Timestamp,
    ) {
        let Some(q) = self.queue.remove(&instance) else {
            return;
        };
        self.errors.insert(
            instance,
            ErrorLogEntry {
                instance,
                command: q.command,
                code: code.to_owned(),
                message,
                last_attempt_at: now,
                machine,
                attempts,
            },
        );
    }

    /// The handover bag of a command for `instance` (rule 6).
    fn handover(&self, instance: InstanceId, now: Timestamp) -> PropertyBag {
        let Some(row) = self.instances.get(&instance) else {
            return PropertyBag::new();
        };
        let metadata = decode(row.metadata.encoding, &row.metadata.bytes).unwrap_or_else(|e| {
            tracing::warn!(%instance, error = %e, "instance metadata does not decode; handing the command over without it");
            PropertyBag::new()
        });
        let live_holder = row
            .lock_owner
            .and_then(|o| self.owners.get(&o))
            .filter(|o| o.lease_expires_at > now);
        handover_metadata(&metadata, row.host_type.as_deref(), live_holder)
    }
}

#[async_trait::async_trait]
impl ControlProvider for MemoryProvider {
    async fn enqueue(
        &self,
        instance: InstanceId,
        command: ControlCommand,
    ) -> Result<(), StoreError> {
        if command == ControlCommand::Delete {
            return self.delete(instance).await;
        }
        let now = self.clock.now();
        let mut mem = self.mem();
        match mem.instances.get(&instance) {
            None => return Err(StoreError::InstanceNotFound { instance }),
            Some(row) if row.state == InstanceState::Completed => {
                return Err(StoreError::InstanceComplete { instance })
            }
            Some(_) => {}
        }
        match mem.queue.get(&instance) {
            Some(q) if q.locked(now) => return Err(StoreError::CommandLocked { instance }),
            Some(q) if q.attempts > 0 || q.expired(now) => {
                return Err(StoreError::CommandPending {
                    instance,
                    attempts: q.attempts,
                })
            }
            _ => {}
        }
        mem.last_position += 1;
        let position = mem.last_position;
        mem.queue.insert(
            instance,
            QueueRow {
                position,
                command,
                enqueued_at: now,
                attempts: 0,
                lock: None,
                locked_until: None,
                reader: None,
                last_error: None,
            },
        );
        mem.errors.remove(&instance);
        Ok(())
    }

    async fn delete(&self, instance: InstanceId) -> Result<(), StoreError> {
        let removed = self.mem().remove_instance(instance);
        if !removed {
            return Err(StoreError::InstanceNotFound { instance });
        }
        self.wake();
        Ok(())
    }

    async fn read_batch(
        &self,
        settings: &QueueSettings,
        machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        settings.validate()?;
        let now = self.clock.now();
        let mut mem = self.mem();
        let mut readable: Vec<(u64, InstanceId)> = mem
            .queue
            .iter()
            .filter(|(_, q)| !q.locked(now))
            .map(|(id, q)| (q.position, *id))
            .collect();
        readable.sort();
        let mut batch = Vec::new();
        for (_, instance) in readable {
            if batch.len() >= settings.batch_size {
                break;
            }
            let handover = mem.handover(instance, now);
            let Some(q) = mem.queue.get_mut(&instance) else {
                continue;
            };
            if q.expired(now) {
                q.attempts += 1;
                q.last_error = Some("lock expired".into());
                if q.attempts >= settings.max_attempts {
                    let (attempts, reader) = (q.attempts, q.reader.clone().unwrap_or_default());
                    let message = format!(
                        "the reader on {reader} did not report within the lock time ({:?})",
                        settings.lock_time
                    );
                    mem.give_up(instance, attempts, LOCK_EXPIRED, message, reader, now);
                    continue;
                }
            }
            let lock = Uuid::new_v4();
            let locked_until = now.plus(settings.lock_time);
            q.lock = Some(lock);
            q.locked_until = Some(locked_until);
            q.reader = Some(machine.to_owned());
            batch.push(QueuedCommand {
                instance,
                command: q.command.clone(),
                attempts: q.attempts,
                enqueued_at: q.enqueued_at,
                lock,
                locked_until,
                metadata: handover,
            });
        }
        Ok(batch)
    }

    async fn complete(&self, instance: InstanceId, lock: Uuid) -> Result<(), StoreError> {
        let mut mem = self.mem();
        mem.check_command_lock(instance, lock)?;
        mem.queue.remove(&instance);
        Ok(())
    }

    async fn abandon(
        &self,
        instance: InstanceId,
        lock: Uuid,
        failure: CommandFailure,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut mem = self.mem();
        mem.check_command_lock(instance, lock)?;
        let Some(q) = mem.queue.get_mut(&instance) else {
            return Err(StoreError::CommandLockLost { instance });
        };
        q.attempts += 1;
        if q.attempts >= settings.max_attempts {
            let attempts = q.attempts;
            let CommandFailure {
                code,
                message,
                machine,
            } = failure;
            mem.give_up(instance, attempts, &code, message, machine, now);
        } else {
            q.unlock();
            q.last_error = Some(failure.message);
        }
        Ok(())
    }

    async fn queued(&self, after: Option<u64>, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let mem = self.mem();
        let mut entries: Vec<QueueEntry> = mem
            .queue
            .iter()
            .filter(|(_, q)| after.map_or(true, |a| q.position > a))
            .map(|(instance, q)| QueueEntry {
                position: q.position,
                instance: *instance,
                command: q.command.clone(),
                attempts: q.attempts,
                enqueued_at: q.enqueued_at,
                locked_until: q.locked_until,
                last_error: q.last_error.clone(),
            })
            .collect();
        entries.sort_by_key(|e| e.position);
        entries.truncate(max);
        Ok(entries)
    }

    async fn error_log(&self, max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
        let mem = self.mem();
        let mut entries: Vec<ErrorLogEntry> = mem.errors.values().cloned().collect();
        entries.sort_by_key(|e| std::cmp::Reverse((e.last_attempt_at, e.instance)));
        entries.truncate(max);
        Ok(entries)
    }
}
