//! The read side (SPEC §12): find, count and group instances, and purge old completed ones.
//!
//! A provider implements [`QueryProvider`] over the same storage as its persistence side. It
//! reads raw fields; the rules that turn them into what operators see — [`InstanceStatus`],
//! [`Condition`], [`BlockedOn`], the machine an instance is on — live here, once, so every
//! provider answers alike. Providers that filter in SQL mirror [`Condition::of`] and
//! [`InstanceFilter`]'s semantics; the conformance suite holds them to it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    ExceptionInfo, ExecutionStatus, InstanceId, InstanceState, KeyId, KeyState, OwnerId,
    PropertyBag, StoreError, Suspension, Timestamp, Value,
};

/// The default page size of [`QueryProvider::query`].
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page a query may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where an instance is in its life (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// Not completed and not suspended (uninitialized instances count as running).
    Running,
    /// Suspended (by an operator or by the host after an exception).
    Suspended,
    /// Completed.
    Completed,
}

/// A finer view of the status (SPEC §12). Running: `Active` (executing) or `Idle`; suspended:
/// `Exception` (suspended with an exception) or `UserSuspension`; completed: `Successful`,
/// `Terminated`, `Canceled` or `Faulted`, from the execution status last saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Condition {
    /// Running, execution status `Executing`.
    Active,
    /// Running, any other execution status.
    Idle,
    /// Suspended with an exception.
    Exception,
    /// Suspended without an exception (an operator or the host chose to).
    UserSuspension,
    /// Completed normally (`Closed`, or any status that is not one of the three below).
    Successful,
    /// Completed with status `Terminated`.
    Terminated,
    /// Completed with status `Canceled`.
    Canceled,
    /// Completed with status `Faulted`.
    Faulted,
}

impl InstanceStatus {
    /// Every status, in order.
    pub const ALL: [InstanceStatus; 3] = [
        InstanceStatus::Running,
        InstanceStatus::Suspended,
        InstanceStatus::Completed,
    ];

    /// The status of an instance in `state`, suspended or not. Completion wins over suspension
    /// (completing clears it anyway).
    pub fn of(state: InstanceState, suspended: bool) -> Self {
        if state == InstanceState::Completed {
            InstanceStatus::Completed
        } else if suspended {
            InstanceStatus::Suspended
        } else {
            InstanceStatus::Running
        }
    }

    /// Its name, as the CLI and the HTTP API spell it.
    pub fn name(self) -> &'static str {
        match self {
            InstanceStatus::Running => "Running",
            InstanceStatus::Suspended => "Suspended",
            InstanceStatus::Completed => "Completed",
        }
    }
}

impl Condition {
    /// Every condition, in order.
    pub const ALL: [Condition; 8] = [
        Condition::Active,
        Condition::Idle,
        Condition::Exception,
        Condition::UserSuspension,
        Condition::Successful,
        Condition::Terminated,
        Condition::Canceled,
        Condition::Faulted,
    ];

    /// The condition of an instance. SQL providers store it as a generated column mirroring this
    /// function (codes from [`Condition::code`]).
    pub fn of(
        state: InstanceState,
        status: ExecutionStatus,
        suspension: Option<&Suspension>,
    ) -> Self {
        match (state, suspension) {
            (InstanceState::Completed, _) => match status {
                ExecutionStatus::Terminated => Condition::Terminated,
                ExecutionStatus::Canceled => Condition::Canceled,
                ExecutionStatus::Faulted => Condition::Faulted,
                _ => Condition::Successful,
            },
            (_, Some(s)) if s.exception.is_some() => Condition::Exception,
            (_, Some(_)) => Condition::UserSuspension,
            (_, None) if status == ExecutionStatus::Executing => Condition::Active,
            (_, None) => Condition::Idle,
        }
    }

    /// The status this condition belongs to.
    pub fn status(self) -> InstanceStatus {
        match self {
            Condition::Active | Condition::Idle => InstanceStatus::Running,
            Condition::Exception | Condition::UserSuspension => InstanceStatus::Suspended,
            _ => InstanceStatus::Completed,
        }
    }

    /// Its name, as the CLI and the HTTP API spell it.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Active => "Active",
            Condition::Idle => "Idle",
            Condition::Exception => "Exception",
            Condition::UserSuspension => "UserSuspension",
            Condition::Successful => "Successful",
            Condition::Terminated => "Terminated",
            Condition::Canceled => "Canceled",
            Condition::Faulted => "Faulted",
        }
    }

    /// The stored code (1..=8 in the order of [`Condition::ALL`]).
    pub fn code(self) -> i16 {
        match self {
            Condition::Active => 1,
            Condition::Idle => 2,
            Condition::Exception => 3,
            Condition::UserSuspension => 4,
            Condition::Successful => 5,
            Condition::Terminated => 6,
            Condition::Canceled => 7,
            Condition::Faulted => 8,
        }
    }
}

fn parse_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
    s: &str,
) -> Result<T, StoreError> {
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            StoreError::invalid(format!(
                "unknown {what} {s:?}; use one of {}",
                names.join(", ")
            ))
        })
}

impl FromStr for InstanceStatus {
    type Err = StoreError;
    /// Case-insensitive name.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        parse_name(&InstanceStatus::ALL, InstanceStatus::name, "status", s)
    }
}

impl FromStr for Condition {
    type Err = StoreError;
    /// Case-insensitive name.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        parse_name(&Condition::ALL, Condition::name, "condition", s)
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which instances a query, count, group count or bulk control command is about (SPEC §12).
/// Every field narrows the set; empty lists and `None` do not. Time ranges are `after <= t <
/// before`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceFilter {
    /// Any of these statuses.
    pub status: Vec<InstanceStatus>,
    /// Any of these conditions.
    pub condition: Vec<Condition>,
    /// Created at or after.
    pub created_after: Option<Timestamp>,
    /// Created before.
    pub created_before: Option<Timestamp>,
    /// Last modified at or after.
    pub modified_after: Option<Timestamp>,
    /// Last modified before.
    pub modified_before: Option<Timestamp>,
    /// The suspension's exception has exactly this name.
    pub exception: Option<String>,
    /// On this machine ([`InstanceInfo::machine`]: the live lock owner's, else the last writer's).
    pub machine: Option<String>,
    /// Of this host type.
    pub host_type: Option<String>,
    /// Locked by this owner (alive or not).
    pub owner: Option<OwnerId>,
    /// Any of these ids.
    pub ids: Vec<InstanceId>,
    /// Has this key (associated or completed).
    pub key: Option<KeyId>,
    /// Each named promoted value equals the given text ([`promoted_text`] of the stored value).
    pub promoted: Vec<(String, String)>,
    /// Has (`true`) or has not (`false`) a queued control command.
    pub has_pending_command: Option<bool>,
    /// Has (`true`) or has not (`false`) an error-log entry.
    pub has_error: Option<bool>,
}

impl InstanceFilter {
    /// The filter that matches every instance.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether the filter narrows nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the filter: ranges not empty, names not empty, no more than 1,000 ids.
    pub fn validate(&self) -> Result<(), StoreError> {
        let range =
            |what: &str, after: Option<Timestamp>, before: Option<Timestamp>| match (after, before)
            {
                (Some(a), Some(b)) if a >= b => Err(StoreError::invalid(format!(
                    "filter {what}: 'after' ({a}) must be earlier than 'before' ({b})"
                ))),
                _ => Ok(()),
            };
        range("created", self.created_after, self.created_before)?;
        range("modified", self.modified_after, self.modified_before)?;
        for (what, v) in [
            ("exception", &self.exception),
            ("machine", &self.machine),
            ("host type", &self.host_type),
        ] {
            if v.as_deref().is_some_and(|s| s.is_empty()) {
                return Err(StoreError::invalid(format!(
                    "filter {what} is empty; leave it out to match every {what}"
                )));
            }
        }
        for (name, _) in &self.promoted {
            if name.is_empty() {
                return Err(StoreError::invalid(
                    "filter on a promoted value has an empty name; write NAME=VALUE",
                ));
            }
        }
        if self.ids.len() > MAX_PAGE_SIZE {
            return Err(StoreError::invalid(format!(
                "filter names {} ids; at most {MAX_PAGE_SIZE} are allowed",
                self.ids.len()
            )));
        }
        Ok(())
    }
}

/// The text a promoted value is stored and compared as: what a person would type for it.
/// Strings as they are, numbers in Rust's shortest form, booleans `true`/`false`, timestamps in
/// RFC 3339 with microseconds, UUIDs hyphenated lowercase. Bytes, JSON, null and durations are
/// not promotable (`None`).
pub fn promoted_text(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Timestamp(t) => Some(t.to_string()),
        Value::Uuid(u) => Some(u.to_string()),
        Value::Null | Value::Bytes(_) | Value::Duration(_) | Value::Json(_) => None,
    }
}

/// The promoted values of an instance's data under the store's promotion names (SPEC §12
/// "Promotions"): each named data value that is promotable, as a typed value. What the runtime
/// hands to [`crate::SaveRequest::promoted`] when a save carries data.
pub fn promote(names: &[String], data: &PropertyBag) -> BTreeMap<String, Value> {
    names
        .iter()
        .filter_map(|name| {
            let v = &data.get(name)?.value;
            promoted_text(v).map(|_| (name.clone(), v.clone()))
        })
        .collect()
}

/// Where a page starts: after the instance with this creation time and id, in the query order
/// (newest first: creation time descending, then id descending). Opaque to users: it prints and
/// parses as `c<micros>_<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// Creation time of the last instance of the previous page.
    pub created_at: Timestamp,
    /// Its id.
    pub id: InstanceId,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}_{}", self.created_at.as_micros(), self.id)
    }
}

impl FromStr for Cursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::invalid(format!(
                "cursor {s:?} is not one this store handed out; pass the 'next' value of the previous page unchanged"
            ))
        };
        let rest = s.strip_prefix('c').ok_or_else(bad)?;
        let (micros, id) = rest.split_once('_').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let id: uuid::Uuid = id.parse().map_err(|_| bad())?;
        Ok(Cursor {
            created_at: Timestamp::from_micros(micros),
            id: InstanceId::from(id),
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which page of a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageRequest {
    /// At most this many items (1..=[`MAX_PAGE_SIZE`], default [`DEFAULT_PAGE_SIZE`]).
    pub max: usize,
    /// Start after this cursor (the previous page's `next`); `None` for the first page.
    pub cursor: Option<Cursor>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            max: DEFAULT_PAGE_SIZE,
            cursor: None,
        }
    }
}

impl PageRequest {
    /// The first page of `max` items.
    pub fn first(max: usize) -> Self {
        Self { max, cursor: None }
    }

    /// Checks `max`.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.max == 0 || self.max > MAX_PAGE_SIZE {
            return Err(StoreError::invalid(format!(
                "page size {} is out of range; ask for 1 to {MAX_PAGE_SIZE} items",
                self.max
            )));
        }
        Ok(())
    }
}

/// A page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// How to group a [`QueryProvider::group_count`] (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupBy {
    /// By [`InstanceStatus`] name.
    Status,
    /// By [`Condition`] name.
    Condition,
    /// By host type (`None` for instances never locked by an owner with one).
    HostType,
    /// By [`InstanceInfo::machine`].
    Machine,
    /// By the suspension's exception name (`None` without one).
    Exception,
}

impl GroupBy {
    /// Every grouping.
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Status,
        GroupBy::Condition,
        GroupBy::HostType,
        GroupBy::Machine,
        GroupBy::Exception,
    ];

    /// Its name, as the CLI and the HTTP API spell it.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Status => "status",
            GroupBy::Condition => "condition",
            GroupBy::HostType => "host-type",
            GroupBy::Machine => "machine",
            GroupBy::Exception => "exception",
        }
    }
}

impl FromStr for GroupBy {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        parse_name(&GroupBy::ALL, GroupBy::name, "grouping", s)
    }
}

/// One group of a [`QueryProvider::group_count`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCount {
    /// The group's value (`None`: the instances without one).
    pub key: Option<String>,
    /// How many instances it holds.
    pub count: u64,
}

/// One host type's runnable backlog ([`QueryProvider::runnable_backlog`]): how many of its
/// instances are runnable now (SPEC §8) and since when the oldest of them is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnableBacklog {
    /// The host type (`None`: instances never locked by an owner with one — runnable, but no
    /// host will ever claim them).
    pub host_type: Option<String>,
    /// How many instances of it are runnable now (at least 1).
    pub count: u64,
    /// Since when the one runnable longest is runnable — the instant TryLoadRunnable orders by
    /// (SPEC §6.5): a due timer's due time, the unlock of an `Executing` instance, the end of a
    /// dead holder's lease (the Unix epoch if the holder's owner row is gone). Never after the
    /// instant the backlog was judged at.
    pub oldest_since: Timestamp,
}

/// A queued control command as a query shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommand {
    /// Which command.
    pub command: crate::ControlCommand,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: Timestamp,
    /// While a reader holds it: until when.
    pub locked_until: Option<Timestamp>,
    /// The last failure's message while it waits for a retry.
    pub last_error: Option<String>,
}

/// Why an instance is not moving (SPEC §12 ▲ `blocked_on`). Judged by [`BlockedOn::judge`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockedOn {
    /// A control command for it keeps failing.
    CommandFailing {
        /// The command.
        command: crate::ControlCommand,
        /// Failed attempts (of the queued command, or of the one given up).
        attempts: u32,
        /// The last error message.
        error: Option<String>,
    },
    /// Suspended: nothing runs it until it is resumed.
    Suspended {
        /// Why.
        reason: String,
        /// The exception that caused it.
        exception: Option<ExceptionInfo>,
    },
    /// A live owner holds the lock (it is running, or its host keeps it loaded).
    LockedByLiveOwner {
        /// The owner.
        owner: OwnerId,
        /// Its machine.
        machine: Option<String>,
        /// Since when it holds the lock.
        since: Option<Timestamp>,
    },
    /// The owner holding the lock is dead (its lease ended). A live host of its type recovers it
    /// if it is initialized; any load takes it over (an uninitialized one is never recovered by
    /// itself, SPEC §8).
    HeldByDeadOwner {
        /// The dead owner.
        owner: OwnerId,
        /// When its lease ended (`None`: the owner is gone).
        lease_ended_at: Option<Timestamp>,
    },
    /// Runnable, but no live owner of its host type exists to run it.
    NoLiveHost {
        /// The host type (`None`: it never had one, so no host will ever claim it).
        host_type: Option<String>,
    },
    /// Waiting for its durable timer.
    Timer {
        /// When it falls due.
        due: Timestamp,
    },
    /// Waiting to be resumed on one of these bookmarks (loaded by key).
    Bookmarks {
        /// The bookmark names.
        bookmarks: Vec<String>,
    },
    /// Idle with neither timer nor bookmarks: only an explicit load moves it.
    Idle,
}

/// The error-log entry of an instance (SPEC §10 rule 8): the last control command given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorLogEntry {
    /// The instance.
    pub instance: InstanceId,
    /// The command given up.
    pub command: crate::ControlCommand,
    /// The error code ([`StoreError::code`] of the failure, or `lock_expired`).
    pub code: String,
    /// The error message.
    pub message: String,
    /// When the last attempt was made.
    pub last_attempt_at: Timestamp,
    /// The machine that made it.
    pub machine: String,
    /// How many attempts were made.
    pub attempts: u32,
}

/// An instance as queries show it (SPEC §12). Providers fill the stored fields and call
/// [`InstanceInfo::finish`] for the derived ones.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    /// Its id.
    pub id: InstanceId,
    /// Derived: status.
    pub status: InstanceStatus,
    /// Derived: condition.
    pub condition: Condition,
    /// Stored state.
    pub state: InstanceState,
    /// The execution status last saved.
    pub execution_status: ExecutionStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed by a save (or created).
    pub updated_at: Timestamp,
    /// The machine of the owner that changed it last.
    pub updated_by: Option<String>,
    /// Suspension, if suspended (with the exception name and message, if any).
    pub suspension: Option<Suspension>,
    /// The bookmarks it waits on.
    pub bookmarks: Vec<String>,
    /// Its durable timer.
    pub timer: Option<Timestamp>,
    /// Its host type.
    pub host_type: Option<String>,
    /// Its metadata (write-only values included: operators see them).
    pub metadata: PropertyBag,
    /// The owner holding the lock, alive or not.
    pub owner: Option<OwnerId>,
    /// That owner's machine (if the owner still exists).
    pub owner_machine: Option<String>,
    /// When that owner's lease ends or ended (if it still exists).
    pub owner_lease_expires_at: Option<Timestamp>,
    /// Since when the lock is held.
    pub locked_since: Option<Timestamp>,
    /// The lock epoch.
    pub lock_version: u64,
    /// The queued control command.
    pub pending_command: Option<PendingCommand>,
    /// The error-log entry.
    pub error: Option<ErrorLogEntry>,
    /// Promoted values by name.
    pub promoted: BTreeMap<String, Value>,
    /// Its keys and their states.
    pub keys: BTreeMap<KeyId, KeyState>,
    /// Derived: the live lock owner's machine, else the last writer's ([`InstanceInfo::finish`]).
    pub machine: Option<String>,
    /// Derived: why it is not moving.
    pub blocked_on: Option<BlockedOn>,
}

impl InstanceInfo {
    /// Fills the derived fields (`status`, `condition`, `machine`, `blocked_on`) at `now`.
    /// `host_type_alive`: whether a live owner of the instance's host type exists.
    pub fn finish(mut self, now: Timestamp, host_type_alive: bool) -> Self {
        self.status = InstanceStatus::of(self.state, self.suspension.is_some());
        self.condition = Condition::of(self.state, self.execution_status, self.suspension.as_ref());
        self.machine = if self.owner_alive(now) {
            self.owner_machine.clone()
        } else {
            self.updated_by.clone()
        };
        self.blocked_on = BlockedOn::judge(&self, now, host_type_alive);
        self
    }

    /// Whether a live owner holds the lock at `now`.
    pub fn owner_alive(&self, now: Timestamp) -> bool {
        self.owner.is_some() && self.owner_lease_expires_at.is_some_and(|t| t > now)
    }
}

impl BlockedOn {
    /// Why `info` is not moving at `now`, or `None` if it is completed or about to run (runnable
    /// with a live host of its type). The first reason that applies wins, in this order: a
    /// failing command, suspension, a live lock holder, a dead lock holder, runnable without a
    /// live host, the timer, bookmarks, idle.
    pub fn judge(info: &InstanceInfo, now: Timestamp, host_type_alive: bool) -> Option<BlockedOn> {
        if info.state == InstanceState::Completed {
            return None;
        }
        let failing = match (&info.pending_command, &info.error) {
            (Some(p), _) if p.attempts > 0 => {
                Some((p.command.clone(), p.attempts, p.last_error.clone()))
            }
            (None, Some(e)) => Some((e.command.clone(), e.attempts, Some(e.message.clone()))),
            _ => None,
        };
        if let Some((command, attempts, error)) = failing {
            return Some(BlockedOn::CommandFailing {
                command,
                attempts,
                error,
            });
        }
        if let Some(s) = &info.suspension {
            return Some(BlockedOn::Suspended {
                reason: s.reason.clone(),
                exception: s.exception.clone(),
            });
        }
        if let Some(owner) = info.owner {
            if info.owner_alive(now) {
                return Some(BlockedOn::LockedByLiveOwner {
                    owner,
                    machine: info.owner_machine.clone(),
                    since: info.locked_since,
                });
            }
            if info.state == InstanceState::Initialized && !host_type_alive {
                return Some(BlockedOn::NoLiveHost {
                    host_type: info.host_type.clone(),
                });
            }
            return Some(BlockedOn::HeldByDeadOwner {
                owner,
                lease_ended_at: info.owner_lease_expires_at,
            });
        }
        let runnable = info.execution_status == ExecutionStatus::Executing
            || info.timer.is_some_and(|t| t <= now);
        if runnable {
            return (!host_type_alive || info.host_type.is_none()).then(|| BlockedOn::NoLiveHost {
                host_type: info.host_type.clone(),
            });
        }
        if let Some(due) = info.timer {
            return Some(BlockedOn::Timer { due });
        }
        if !info.bookmarks.is_empty() {
            return Some(BlockedOn::Bookmarks {
                bookmarks: info.bookmarks.clone(),
            });
        }
        Some(BlockedOn::Idle)
    }
}

/// The read side of a store (SPEC §12). Every method reads one consistent snapshot.
#[async_trait::async_trait]
pub trait QueryProvider: fmt::Debug + Send + Sync + 'static {
    /// The instances matching `filter`, newest first (creation time descending, then id
    /// descending), at most `page.max`, starting after `page.cursor`. Keyset pagination: an
    /// instance created after the first page was read never shifts later pages. Validates the
    /// filter and page ([`StoreError::Invalid`]).
    async fn query(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<InstanceInfo>, StoreError>;

    /// How many instances match `filter`.
    async fn count(&self, filter: &InstanceFilter) -> Result<u64, StoreError>;

    /// How many instances match `filter`, per group; groups with no instance are left out,
    /// the rest ordered by key (`None` first).
    async fn group_count(
        &self,
        filter: &InstanceFilter,
        by: GroupBy,
    ) -> Result<Vec<GroupCount>, StoreError>;

    /// The runnable backlog per host type, judged at the store's clock now: for each host type
    /// with runnable instances (SPEC §8: neither suspended nor completed, and unlocked with a due
    /// timer, unlocked and `Executing`, or locked by an owner whose lease has ended — whether or
    /// not a live host of the type exists), how many there are and since when the oldest is
    /// runnable. Host types without any are left out; the rest are ordered by host type (`None`
    /// first). Uninitialized instances are never runnable (nothing to run).
    ///
    /// Meant to be sampled often (every `/metrics` scrape): providers read only the runnable
    /// candidates through the index of ready instances and the locked instances, never the whole
    /// table, so the cost grows with the backlog and the number of held locks, not with the
    /// number of instances.
    async fn runnable_backlog(&self) -> Result<Vec<RunnableBacklog>, StoreError>;

    /// Deletes up to `limit` completed instances last changed before `before`, oldest first, with
    /// everything that belongs to them (as [`crate::ControlProvider::delete`] does), in one short
    /// transaction. Returns how many it deleted; call again until it returns less than `limit`.
    async fn purge_completed(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError>;
}
