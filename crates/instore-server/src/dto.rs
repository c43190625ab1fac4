//! The API's JSON shapes, as typed structs that the OpenAPI document is generated from. Each is
//! built from a core type and serializes exactly as `instore_config::json` writes the same thing
//! for the CLI's `--json` (a test holds them equal), so scripts read one shape everywhere.
//!
//! Times are RFC 3339 strings (UTC, microseconds), ids hyphenated UUID strings, values natural
//! JSON; every optional field is present, `null` when empty.

use std::collections::BTreeMap;

use instore::{
    BlockedOn, ControlCommand, ErrorLogEntry, ExceptionInfo, GroupCount, InstanceInfo, OwnerInfo,
    PendingCommand, QueueEntry, Suspension, Timestamp,
};
use instore_config::json;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

fn ts(t: Timestamp) -> String {
    t.to_string()
}

fn opt_ts(t: Option<Timestamp>) -> Option<String> {
    t.map(ts)
}

fn name<T: Serialize + std::fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Json::String(s)) => s,
        _ => format!("{v:?}"),
    }
}

/// A control command: its `type` and, for Suspend and Terminate, the `reason`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum CommandDto {
    /// Suspend the instance.
    Suspend {
        /// Why.
        reason: String,
    },
    /// Clear the suspension.
    Resume,
    /// Complete it with status Terminated.
    Terminate {
        /// Why.
        reason: String,
    },
    /// Ask it to run its cancellation logic.
    Cancel,
    /// Remove it.
    Delete,
}

impl From<&ControlCommand> for CommandDto {
    fn from(c: &ControlCommand) -> Self {
        match c {
            ControlCommand::Suspend { reason } => CommandDto::Suspend {
                reason: reason.clone(),
            },
            ControlCommand::Resume => CommandDto::Resume,
            ControlCommand::Terminate { reason } => CommandDto::Terminate {
                reason: reason.clone(),
            },
            ControlCommand::Cancel => CommandDto::Cancel,
            ControlCommand::Delete => CommandDto::Delete,
        }
    }
}

/// An exception an instance was suspended with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExceptionDto {
    /// Its name.
    pub name: String,
    /// Its message.
    pub message: String,
}

impl From<&ExceptionInfo> for ExceptionDto {
    fn from(e: &ExceptionInfo) -> Self {
        Self {
            name: e.name.clone(),
            message: e.message.clone(),
        }
    }
}

/// Why and how an instance is suspended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuspensionDto {
    /// Why.
    pub reason: String,
    /// The exception that caused it, if any.
    pub exception: Option<ExceptionDto>,
}

impl From<&Suspension> for SuspensionDto {
    fn from(s: &Suspension) -> Self {
        Self {
            reason: s.reason.clone(),
            exception: s.exception.as_ref().map(Into::into),
        }
    }
}

/// The queued control command of an instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingCommandDto {
    /// The command.
    pub command: CommandDto,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    #[schema(format = DateTime)]
    pub enqueued_at: String,
    /// While a management service holds it: until when.
    #[schema(format = DateTime)]
    pub locked_until: Option<String>,
    /// The last failure's message while it waits for a retry.
    pub last_error: Option<String>,
}

impl From<&PendingCommand> for PendingCommandDto {
    fn from(p: &PendingCommand) -> Self {
        Self {
            command: (&p.command).into(),
            attempts: p.attempts,
            enqueued_at: ts(p.enqueued_at),
            locked_until: opt_ts(p.locked_until),
            last_error: p.last_error.clone(),
        }
    }
}

/// An error-log entry: the last control command given up for an instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorEntryDto {
    /// The instance.
    #[schema(format = Uuid)]
    pub instance: String,
    /// The command given up.
    pub command: CommandDto,
    /// The error code (`instance_locked`, `lock_expired`, ...).
    pub code: String,
    /// The error message.
    pub message: String,
    /// When the last attempt was made.
    #[schema(format = DateTime)]
    pub last_attempt_at: String,
    /// The machine that made it.
    pub machine: String,
    /// How many attempts were made.
    pub attempts: u32,
}

impl From<&ErrorLogEntry> for ErrorEntryDto {
    fn from(e: &ErrorLogEntry) -> Self {
        Self {
            instance: e.instance.to_string(),
            command: (&e.command).into(),
            code: e.code.clone(),
            message: e.message.clone(),
            last_attempt_at: ts(e.last_attempt_at),
            machine: e.machine.clone(),
            attempts: e.attempts,
        }
    }
}

/// A command waiting in the control queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueEntryDto {
    /// Its place in the queue (pass the last one as `after` for the next listing).
    pub position: u64,
    /// The instance.
    #[schema(format = Uuid)]
    pub instance: String,
    /// The command.
    pub command: CommandDto,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    #[schema(format = DateTime)]
    pub enqueued_at: String,
    /// While a management service holds it: until when.
    #[schema(format = DateTime)]
    pub locked_until: Option<String>,
    /// The last failure's message, while it waits for a retry.
    pub last_error: Option<String>,
}

impl From<&QueueEntry> for QueueEntryDto {
    fn from(e: &QueueEntry) -> Self {
        Self {
            position: e.position,
            instance: e.instance.to_string(),
            command: (&e.command).into(),
            attempts: e.attempts,
            enqueued_at: ts(e.enqueued_at),
            locked_until: opt_ts(e.locked_until),
            last_error: e.last_error.clone(),
        }
    }
}

/// An instance owner (a host registered with the store).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnerDto {
    /// Its id.
    #[schema(format = Uuid)]
    pub id: String,
    /// Its host type.
    pub host_type: Option<String>,
    /// Its machine.
    pub machine: String,
    /// When it registered.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its lease ends (or ended).
    #[schema(format = DateTime)]
    pub lease_expires_at: String,
    /// Whether its lease is alive now.
    pub alive: bool,
    /// Its metadata (natural JSON values).
    pub metadata: BTreeMap<String, Json>,
}

impl OwnerDto {
    /// The owner as seen at `now`.
    pub fn new(o: &OwnerInfo, now: Timestamp) -> Self {
        Self {
            id: o.id.to_string(),
            host_type: o.host_type.clone(),
            machine: o.machine.clone(),
            created_at: ts(o.created_at),
            lease_expires_at: ts(o.lease_expires_at),
            alive: o.lease_expires_at > now,
            metadata: natural_bag(&o.metadata),
        }
    }
}

fn natural_bag(bag: &instore::PropertyBag) -> BTreeMap<String, Json> {
    bag.iter()
        .map(|(k, v)| (k.clone(), json::value(&v.value)))
        .collect()
}

/// Why an instance is not moving; `kind` says which reason, the other fields its details.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockedOnDto {
    /// A control command for it keeps failing.
    CommandFailing {
        /// The command.
        command: CommandDto,
        /// Failed attempts.
        attempts: u32,
        /// The last error message.
        error: Option<String>,
    },
    /// Suspended: nothing runs it until it is resumed.
    Suspended {
        /// Why.
        reason: String,
        /// The exception that caused it.
        exception: Option<ExceptionDto>,
    },
    /// A live owner holds the lock.
    LockedByLiveOwner {
        /// The owner.
        #[schema(format = Uuid)]
        owner: String,
        /// Its machine.
        machine: Option<String>,
        /// Since when.
        #[schema(format = DateTime)]
        since: Option<String>,
    },
    /// The owner holding the lock is dead.
    HeldByDeadOwner {
        /// The dead owner.
        #[schema(format = Uuid)]
        owner: String,
        /// When its lease ended.
        #[schema(format = DateTime)]
        lease_ended_at: Option<String>,
    },
    /// Runnable, but no live host of its type exists.
    NoLiveHost {
        /// The host type.
        host_type: Option<String>,
    },
    /// Waiting for its timer.
    Timer {
        /// When it falls due.
        #[schema(format = DateTime)]
        due: String,
    },
    /// Waiting to be resumed on one of these bookmarks.
    Bookmarks {
        /// The bookmark names.
        bookmarks: Vec<String>,
    },
    /// Idle with neither timer nor bookmarks.
    Idle,
}

impl From<&BlockedOn> for BlockedOnDto {
    fn from(b: &BlockedOn) -> Self {
        match b {
            BlockedOn::CommandFailing {
                command,
                attempts,
                error,
            } => BlockedOnDto::CommandFailing {
                command: command.into(),
                attempts: *attempts,
                error: error.clone(),
            },
            BlockedOn::Suspended { reason, exception } => BlockedOnDto::Suspended {
                reason: reason.clone(),
                exception: exception.as_ref().map(Into::into),
            },
            BlockedOn::LockedByLiveOwner {
                owner,
                machine,
                since,
            } => BlockedOnDto::LockedByLiveOwner {
                owner: owner.to_string(),
                machine: machine.clone(),
                since: opt_ts(*since),
            },
            BlockedOn::HeldByDeadOwner {
                owner,
                lease_ended_at,
            } => BlockedOnDto::HeldByDeadOwner {
                owner: owner.to_string(),
                lease_ended_at: opt_ts(*lease_ended_at),
            },
            BlockedOn::NoLiveHost { host_type } => BlockedOnDto::NoLiveHost {
                host_type: host_type.clone(),
            },
            BlockedOn::Timer { due } => BlockedOnDto::Timer { due: ts(*due) },
            BlockedOn::Bookmarks { bookmarks } => BlockedOnDto::Bookmarks {
                bookmarks: bookmarks.clone(),
            },
            BlockedOn::Idle => BlockedOnDto::Idle,
        }
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum StatusName {
    /// Not completed and not suspended.
    Running,
    /// Suspended.
    Suspended,
    /// Completed.
    Completed,
}

/// A finer view of the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ConditionName {
    /// Running, executing.
    Active,
    /// Running, idle.
    Idle,
    /// Suspended with an exception.
    Exception,
    /// Suspended by choice.
    UserSuspension,
    /// Completed normally.
    Successful,
    /// Completed by Terminate.
    Terminated,
    /// Completed by cancellation.
    Canceled,
    /// Completed with a fault.
    Faulted,
}

impl From<instore::InstanceStatus> for StatusName {
    fn from(s: instore::InstanceStatus) -> Self {
        match s {
            instore::InstanceStatus::Running => StatusName::Running,
            instore::InstanceStatus::Suspended => StatusName::Suspended,
            instore::InstanceStatus::Completed => StatusName::Completed,
        }
    }
}

impl From<instore::Condition> for ConditionName {
    fn from(c: instore::Condition) -> Self {
        use instore::Condition as C;
        match c {
            C::Active => ConditionName::Active,
            C::Idle => ConditionName::Idle,
            C::Exception => ConditionName::Exception,
            C::UserSuspension => ConditionName::UserSuspension,
            C::Successful => ConditionName::Successful,
            C::Terminated => ConditionName::Terminated,
            C::Canceled => ConditionName::Canceled,
            C::Faulted => ConditionName::Faulted,
        }
    }
}

/// An instance as queries show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceDto {
    /// Its id.
    #[schema(format = Uuid)]
    pub id: String,
    /// Running, Suspended or Completed.
    pub status: StatusName,
    /// The finer condition.
    pub condition: ConditionName,
    /// Stored state: Unknown, Uninitialized, Initialized, Completed.
    pub state: String,
    /// The execution status last saved (Executing, Idle, Closed, Faulted, Canceled, Terminated).
    pub execution_status: String,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The machine of the owner that changed it last.
    pub updated_by: Option<String>,
    /// The live lock owner's machine, else the last writer's.
    pub machine: Option<String>,
    /// Its host type.
    pub host_type: Option<String>,
    /// Its suspension, if suspended.
    pub suspension: Option<SuspensionDto>,
    /// The bookmarks it waits on.
    pub bookmarks: Vec<String>,
    /// Its durable timer.
    #[schema(format = DateTime)]
    pub timer: Option<String>,
    /// The owner holding the lock, alive or not.
    #[schema(format = Uuid)]
    pub owner: Option<String>,
    /// That owner's machine.
    pub owner_machine: Option<String>,
    /// When that owner's lease ends or ended.
    #[schema(format = DateTime)]
    pub owner_lease_expires_at: Option<String>,
    /// Since when the lock is held.
    #[schema(format = DateTime)]
    pub locked_since: Option<String>,
    /// The lock epoch.
    pub lock_version: u64,
    /// The queued control command.
    pub pending_command: Option<PendingCommandDto>,
    /// The error-log entry.
    pub error: Option<ErrorEntryDto>,
    /// Promoted values by name (natural JSON).
    pub promoted: BTreeMap<String, Json>,
    /// Host metadata (natural JSON).
    pub metadata: BTreeMap<String, Json>,
    /// Its keys (ids) and their states (Associated, Completed).
    pub keys: BTreeMap<String, String>,
    /// Why it is not moving (`null`: completed, or about to run).
    pub blocked_on: Option<BlockedOnDto>,
}

impl From<&InstanceInfo> for InstanceDto {
    fn from(i: &InstanceInfo) -> Self {
        Self {
            id: i.id.to_string(),
            status: i.status.into(),
            condition: i.condition.into(),
            state: name(&i.state),
            execution_status: name(&i.execution_status),
            created_at: ts(i.created_at),
            updated_at: ts(i.updated_at),
            updated_by: i.updated_by.clone(),
            machine: i.machine.clone(),
            host_type: i.host_type.clone(),
            suspension: i.suspension.as_ref().map(Into::into),
            bookmarks: i.bookmarks.clone(),
            timer: opt_ts(i.timer),
            owner: i.owner.map(|o| o.to_string()),
            owner_machine: i.owner_machine.clone(),
            owner_lease_expires_at: opt_ts(i.owner_lease_expires_at),
            locked_since: opt_ts(i.locked_since),
            lock_version: i.lock_version,
            pending_command: i.pending_command.as_ref().map(Into::into),
            error: i.error.as_ref().map(Into::into),
            promoted: i
                .promoted
                .iter()
                .map(|(k, v)| (k.clone(), json::value(v)))
                .collect(),
            metadata: natural_bag(&i.metadata),
            keys: i
                .keys
                .iter()
                .map(|(k, s)| (k.to_string(), name(s)))
                .collect(),
            blocked_on: i.blocked_on.as_ref().map(Into::into),
        }
    }
}

/// A page of instances, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstancePage {
    /// The instances.
    pub items: Vec<InstanceDto>,
    /// The next page's cursor (pass it as `cursor`); `null` on the last page.
    pub next: Option<String>,
}

/// How many instances match.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CountDto {
    /// The count.
    pub count: u64,
}

/// One group of a group count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupDto {
    /// The group's value (`null`: instances without one).
    pub key: Option<String>,
    /// How many instances it holds.
    pub count: u64,
}

impl From<&GroupCount> for GroupDto {
    fn from(g: &GroupCount) -> Self {
        Self {
            key: g.key.clone(),
            count: g.count,
        }
    }
}

/// A group count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupsDto {
    /// The grouping (status, condition, host-type, machine, exception).
    pub by: String,
    /// The groups, ordered by key (`null` first).
    pub groups: Vec<GroupDto>,
}

/// The control queue, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueDto {
    /// The entries.
    pub items: Vec<QueueEntryDto>,
}

/// The error log, newest attempt first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorLogDto {
    /// The entries.
    pub items: Vec<ErrorEntryDto>,
}

/// The store's owners.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnersDto {
    /// The owners (live or expired but not yet cleaned up).
    pub items: Vec<OwnerDto>,
}

/// Which control command to enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandName {
    /// Suspend the instance (a `reason` is recorded).
    #[serde(alias = "Suspend")]
    Suspend,
    /// Clear its suspension.
    #[serde(alias = "Resume")]
    Resume,
    /// Complete it with status Terminated (a `reason` is recorded).
    #[serde(alias = "Terminate")]
    Terminate,
    /// Ask it to run its cancellation logic.
    #[serde(alias = "Cancel")]
    Cancel,
}

/// The body of `POST /api/v1/instances/{id}/commands`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The command.
    pub command: CommandName,
    /// Why (Suspend and Terminate only).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A command was enqueued (the management service executes it shortly).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnqueuedDto {
    /// The instance.
    #[schema(format = Uuid)]
    pub instance: String,
    /// The command queued.
    pub command: CommandDto,
}

/// An instance was removed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RemovedDto {
    /// The instance.
    #[schema(format = Uuid)]
    pub instance: String,
}

/// Whether the store answers, and what the server and its management service did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthDto {
    /// `ok` when the store answered, else `unavailable`.
    pub status: String,
    /// The store's name in the configuration.
    pub store: String,
    /// The store's clock now.
    #[schema(format = DateTime)]
    pub now: String,
    /// Instances in the store (`null` when the store did not answer).
    pub instances: Option<u64>,
    /// Owners whose lease is alive.
    pub owners_alive: Option<u64>,
    /// What went wrong, when the store did not answer.
    pub error: Option<String>,
    /// The management service's counters.
    pub management: ManagementStatsDto,
}

/// Counters of the server's management service.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManagementStatsDto {
    /// Commands read from the queue.
    pub read: u64,
    /// Commands executed and completed.
    pub completed: u64,
    /// Of those, executed through a control endpoint.
    pub via_endpoint: u64,
    /// Failed executions.
    pub failed: u64,
    /// Commands given up after their last attempt.
    pub given_up: u64,
    /// Completed instances purged.
    pub purged: u64,
}

impl From<instore_management::StatsSnapshot> for ManagementStatsDto {
    fn from(s: instore_management::StatsSnapshot) -> Self {
        Self {
            read: s.read,
            completed: s.completed,
            via_endpoint: s.via_endpoint,
            failed: s.failed,
            given_up: s.given_up,
            purged: s.purged,
        }
    }
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WhoAmIDto {
    /// `reader` (queries only) or `admin` (queries and control).
    pub role: String,
    /// Whether the server requires tokens (if not, every caller is an admin on loopback).
    pub tokens_required: bool,
}

/// Instance counts by status at one moment (the dashboard's chart).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CountsSampleDto {
    /// When the sample was taken.
    #[schema(format = DateTime)]
    pub at: String,
    /// Running instances.
    pub running: u64,
    /// Suspended instances.
    pub suspended: u64,
    /// Completed instances.
    pub completed: u64,
}

/// Counts by status over time, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CountsHistoryDto {
    /// The samples.
    pub items: Vec<CountsSampleDto>,
}
