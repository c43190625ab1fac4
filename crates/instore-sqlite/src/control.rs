//! The control queue (SPEC §10, decision 0007 "The control queue") on SQLite: one
//! `control_queue` row per instance, the `error_log` with one row per instance. Every change is a
//! job of the writer thread (group commit, one savepoint each, so each method is atomic); the
//! listings read on the read pool.

use instore::{
    handover_metadata, CommandFailure, ControlCommand, ControlProvider, ErrorLogEntry, InstanceId,
    PropertyBag, QueueEntry, QueueSettings, QueuedCommand, StoreError, Timestamp, Uuid,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error_map::OrStorage;
use crate::query::{error_entry, raw_error, ERROR_COLUMNS};
use crate::{queries, SqliteProvider};

/// The error code of an attempt that ended because the reader's lock expired.
const LOCK_EXPIRED: &str = "lock_expired";

fn id_bytes(id: InstanceId) -> [u8; 16] {
    *id.as_uuid().as_bytes()
}

fn count_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A queue row as the writer reads it.
struct QueueRow {
    instance: InstanceId,
    position: i64,
    command: ControlCommand,
    enqueued_at: Timestamp,
    attempts: u32,
    lock: Option<Vec<u8>>,
    locked_until: Option<Timestamp>,
    reader: Option<String>,
}

impl QueueRow {
    /// A reader's lock that has not expired at `now`.
    fn locked(&self, now: Timestamp) -> bool {
        self.lock.is_some() && self.locked_until.is_some_and(|t| t > now)
    }

    /// Read by a reader whose lock has expired at `now`.
    fn expired(&self, now: Timestamp) -> bool {
        self.lock.is_some() && !self.locked(now)
    }
}

const QUEUE_COLUMNS: &str =
    "instance, position, command, reason, enqueued_at, attempts, lock, locked_until, reader";

type RawQueue = (
    Vec<u8>,
    i64,
    i64,
    Option<String>,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<i64>,
    Option<String>,
);

fn raw_queue(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawQueue> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn queue_row(raw: RawQueue) -> Result<QueueRow, StoreError> {
    let (instance, position, command, reason, enqueued_at, attempts, lock, locked_until, reader) =
        raw;
    Ok(QueueRow {
        instance: InstanceId::from_uuid(Uuid::from_slice(&instance).map_err(|_| {
            StoreError::Storage(instore::StorageError::corrupt(
                "a control_queue instance holds no uuid",
            ))
        })?),
        position,
        command: ControlCommand::from_code(command, reason)?,
        enqueued_at: Timestamp::from_micros(enqueued_at),
        attempts: count_u32(attempts),
        lock,
        locked_until: locked_until.map(Timestamp::from_micros),
        reader,
    })
}

fn get_queued(conn: &Connection, instance: InstanceId) -> Result<Option<QueueRow>, StoreError> {
    let raw = conn
        .prepare_cached(&format!(
            "select {QUEUE_COLUMNS} from control_queue where instance = ?1"
        ))
        .or_storage()?
        .query_row([id_bytes(instance).as_slice()], raw_queue)
        .optional()
        .or_storage()?;
    raw.map(queue_row).transpose()
}

/// Readable rows (no lock, or an expired one) after `position`, oldest first.
fn readable_after(
    conn: &Connection,
    position: i64,
    now: Timestamp,
    max: usize,
) -> Result<Vec<QueueRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "select {QUEUE_COLUMNS} from control_queue \
             where position > ?1 and (lock is null or locked_until is null or locked_until <= ?2) \
             order by position limit ?3"
        ))
        .or_storage()?;
    let raws: Vec<RawQueue> = stmt
        .query_map(
            params![
                position,
                now.as_micros(),
                i64::try_from(max).unwrap_or(i64::MAX)
            ],
            raw_queue,
        )
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    raws.into_iter().map(queue_row).collect()
}

/// Removes `row`'s command and replaces its instance's error-log entry (rules 7–8).
fn give_up(
    conn: &Connection,
    row: &QueueRow,
    attempts: u32,
    code: &str,
    message: &str,
    machine: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let id = id_bytes(row.instance);
    conn.prepare_cached("delete from control_queue where instance = ?1")
        .or_storage()?
        .execute([id.as_slice()])
        .or_storage()?;
    conn.prepare_cached(&format!(
        "insert or replace into error_log ({ERROR_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))
    .or_storage()?
    .execute(params![
        id.as_slice(),
        i64::from(row.command.code()),
        row.command.reason(),
        code,
        message,
        now.as_micros(),
        machine,
        i64::from(attempts),
    ])
    .or_storage()?;
    Ok(())
}

/// The handover bag of a command for `instance` (rule 6): its metadata, host type and live
/// holder. Metadata that does not decode is left out (the command can still be executed).
fn handover(
    conn: &Connection,
    instance: InstanceId,
    now: Timestamp,
) -> Result<PropertyBag, StoreError> {
    let Some(row) = queries::get_instance_without_data(conn, instance)? else {
        return Ok(PropertyBag::new());
    };
    let metadata = queries::decode_bag(&row.metadata).unwrap_or_else(|e| {
        tracing::warn!(%instance, error = %e, "instance metadata does not decode; handing the command over without it");
        PropertyBag::new()
    });
    let live_holder = match row.lock_owner {
        Some(owner) => queries::get_owner(conn, owner)?.filter(|o| o.lease_expires_at > now),
        None => None,
    };
    Ok(handover_metadata(
        &metadata,
        row.host_type.as_deref(),
        live_holder.as_ref(),
    ))
}

fn enqueue(
    conn: &Connection,
    instance: InstanceId,
    command: &ControlCommand,
    now: Timestamp,
) -> Result<(), StoreError> {
    let id = id_bytes(instance);
    let state: Option<i64> = conn
        .prepare_cached("select state from instances where id = ?1")
        .or_storage()?
        .query_row([id.as_slice()], |r| r.get(0))
        .optional()
        .or_storage()?;
    match state {
        None => return Err(StoreError::InstanceNotFound { instance }),
        Some(s) if s == i64::from(instore::InstanceState::Completed.code()) => {
            return Err(StoreError::InstanceComplete { instance })
        }
        Some(_) => {}
    }
    match get_queued(conn, instance)? {
        Some(q) if q.locked(now) => return Err(StoreError::CommandLocked { instance }),
        Some(q) if q.attempts > 0 || q.expired(now) => {
            return Err(StoreError::CommandPending {
                instance,
                attempts: q.attempts,
            })
        }
        _ => {}
    }
    let position: i64 = conn
        .prepare_cached(
            "update counters set value = value + 1 where name = 'queue_position' returning value",
        )
        .or_storage()?
        .query_row([], |r| r.get(0))
        .or_storage()?;
    conn.prepare_cached(
        "insert or replace into control_queue \
         (instance, position, command, reason, enqueued_at, attempts, lock, locked_until, reader, last_error) \
         values (?1, ?2, ?3, ?4, ?5, 0, null, null, null, null)",
    )
    .or_storage()?
    .execute(params![
        id.as_slice(),
        position,
        i64::from(command.code()),
        command.reason(),
        now.as_micros(),
    ])
    .or_storage()?;
    conn.prepare_cached("delete from error_log where instance = ?1")
        .or_storage()?
        .execute([id.as_slice()])
        .or_storage()?;
    Ok(())
}

fn read_batch(
    conn: &Connection,
    settings: &QueueSettings,
    machine: &str,
    now: Timestamp,
) -> Result<Vec<QueuedCommand>, StoreError> {
    let mut batch = Vec::new();
    let mut after = i64::MIN;
    while batch.len() < settings.batch_size {
        let rows = readable_after(conn, after, now, settings.batch_size)?;
        let fetched = rows.len();
        for mut q in rows {
            if batch.len() >= settings.batch_size {
                break;
            }
            after = q.position;
            let mut last_error = None;
            if q.expired(now) {
                q.attempts += 1;
                if q.attempts >= settings.max_attempts {
                    let reader = q.reader.clone().unwrap_or_default();
                    let message = format!(
                        "the reader on {reader} did not report within the lock time ({:?})",
                        settings.lock_time
                    );
                    give_up(conn, &q, q.attempts, LOCK_EXPIRED, &message, &reader, now)?;
                    continue;
                }
                last_error = Some("lock expired");
            }
            let metadata = handover(conn, q.instance, now)?;
            let lock = Uuid::new_v4();
            let locked_until = now.plus(settings.lock_time);
            conn.prepare_cached(
                "update control_queue set attempts = ?2, lock = ?3, locked_until = ?4, reader = ?5, \
                 last_error = coalesce(?6, last_error) where instance = ?1",
            )
            .or_storage()?
            .execute(params![
                id_bytes(q.instance).as_slice(),
                i64::from(q.attempts),
                lock.as_bytes().as_slice(),
                locked_until.as_micros(),
                machine,
                last_error,
            ])
            .or_storage()?;
            batch.push(QueuedCommand {
                instance: q.instance,
                command: q.command,
                attempts: q.attempts,
                enqueued_at: q.enqueued_at,
                lock,
                locked_until,
                metadata,
            });
        }
        if fetched < settings.batch_size {
            break;
        }
    }
    Ok(batch)
}

/// The queued row of `instance` if `lock` is the lock its last read handed out.
fn with_lock(conn: &Connection, instance: InstanceId, lock: Uuid) -> Result<QueueRow, StoreError> {
    match get_queued(conn, instance)? {
        Some(q) if q.lock.as_deref() == Some(lock.as_bytes().as_slice()) => Ok(q),
        _ => Err(StoreError::CommandLockLost { instance }),
    }
}

fn abandon(
    conn: &Connection,
    instance: InstanceId,
    lock: Uuid,
    failure: &CommandFailure,
    settings: &QueueSettings,
    now: Timestamp,
) -> Result<(), StoreError> {
    let q = with_lock(conn, instance, lock)?;
    let attempts = q.attempts + 1;
    if attempts >= settings.max_attempts {
        return give_up(
            conn,
            &q,
            attempts,
            &failure.code,
            &failure.message,
            &failure.machine,
            now,
        );
    }
    conn.prepare_cached(
        "update control_queue set attempts = ?2, lock = null, locked_until = null, reader = null, \
         last_error = ?3 where instance = ?1",
    )
    .or_storage()?
    .execute(params![
        id_bytes(instance).as_slice(),
        i64::from(attempts),
        failure.message,
    ])
    .or_storage()?;
    Ok(())
}

fn queued(
    conn: &Connection,
    after: Option<u64>,
    max: usize,
) -> Result<Vec<QueueEntry>, StoreError> {
    let after = after.map_or(i64::MIN, |a| i64::try_from(a).unwrap_or(i64::MAX));
    let mut stmt = conn
        .prepare_cached(
            "select position, instance, command, reason, attempts, enqueued_at, locked_until, last_error \
             from control_queue where position > ?1 order by position limit ?2",
        )
        .or_storage()?;
    type Raw = (
        i64,
        Vec<u8>,
        i64,
        Option<String>,
        i64,
        i64,
        Option<i64>,
        Option<String>,
    );
    let raws: Vec<Raw> = stmt
        .query_map(
            params![after, i64::try_from(max).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    raws.into_iter()
        .map(
            |(
                position,
                instance,
                command,
                reason,
                attempts,
                enqueued_at,
                locked_until,
                last_error,
            )| {
                Ok(QueueEntry {
                    position: u64::try_from(position).unwrap_or(0),
                    instance: InstanceId::from_uuid(Uuid::from_slice(&instance).map_err(|_| {
                        StoreError::Storage(instore::StorageError::corrupt(
                            "a control_queue instance holds no uuid",
                        ))
                    })?),
                    command: ControlCommand::from_code(command, reason)?,
                    attempts: count_u32(attempts),
                    enqueued_at: Timestamp::from_micros(enqueued_at),
                    locked_until: locked_until.map(Timestamp::from_micros),
                    last_error,
                })
            },
        )
        .collect()
}

fn error_log(conn: &Connection, max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "select {ERROR_COLUMNS} from error_log order by last_attempt_at desc, instance desc limit ?1"
        ))
        .or_storage()?;
    let raws: Vec<_> = stmt
        .query_map([i64::try_from(max).unwrap_or(i64::MAX)], raw_error)
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    raws.into_iter().map(error_entry).collect()
}

#[async_trait::async_trait]
impl ControlProvider for SqliteProvider {
    async fn enqueue(
        &self,
        instance: InstanceId,
        command: ControlCommand,
    ) -> Result<(), StoreError> {
        if command == ControlCommand::Delete {
            return self.delete(instance).await;
        }
        let clock = self.clock.clone();
        self.writer
            .call(move |conn| Ok((enqueue(conn, instance, &command, clock.now())?, false)))
            .await
    }

    async fn delete(&self, instance: InstanceId) -> Result<(), StoreError> {
        self.writer
            .call(move |conn| {
                if queries::remove_instance(conn, instance)? {
                    // Its holder's instances may have changed: let detectors look again.
                    Ok(((), true))
                } else {
                    Err(StoreError::InstanceNotFound { instance })
                }
            })
            .await
    }

    async fn read_batch(
        &self,
        settings: &QueueSettings,
        machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        settings.validate()?;
        let (clock, settings, machine) = (self.clock.clone(), *settings, machine.to_owned());
        self.writer
            .call(move |conn| Ok((read_batch(conn, &settings, &machine, clock.now())?, false)))
            .await
    }

    async fn complete(&self, instance: InstanceId, lock: Uuid) -> Result<(), StoreError> {
        self.writer
            .call(move |conn| {
                with_lock(conn, instance, lock)?;
                conn.prepare_cached("delete from control_queue where instance = ?1")
                    .or_storage()?
                    .execute([id_bytes(instance).as_slice()])
                    .or_storage()?;
                Ok(((), false))
            })
            .await
    }

    async fn abandon(
        &self,
        instance: InstanceId,
        lock: Uuid,
        failure: CommandFailure,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        let (clock, settings) = (self.clock.clone(), *settings);
        self.writer
            .call(move |conn| {
                abandon(conn, instance, lock, &failure, &settings, clock.now())?;
                Ok(((), false))
            })
            .await
    }

    async fn queued(&self, after: Option<u64>, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        self.readers
            .read(move |conn| queued(conn, after, max))
            .await
    }

    async fn error_log(&self, max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
        self.readers.read(move |conn| error_log(conn, max)).await
    }
}
