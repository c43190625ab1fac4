//! What the user writes: a [`Workflow`] runs one step of an instance at a time, given its
//! [`Context`], and answers with the [`Step`] that says what the instance waits for next (or that
//! it is done), or with a [`Fault`].

use std::time::Duration;

use instore::{ExecutionStatus, InstanceId, KeyId, PropertyBag, Timestamp, Value};

/// The code of one kind of workflow, registered on a host under a host type
/// ([`crate::HostBuilder::host_type`]).
///
/// The host calls [`Workflow::step`] each time the instance has something to do: when it starts,
/// when its timer falls due, when a bookmark it waits on is resumed, and when it is recovered
/// from a host that died. The step reads and changes [`Context::data`]; the host persists the
/// data together with what the returned [`Step`] says, in one save. A step may therefore run
/// again (the host died before its save), so side effects outside the store should be
/// idempotent or fenced with [`Context::lock_version`].
///
/// An `Err` is an unhandled fault: nothing the step changed is saved, and the instance is
/// suspended with the fault's name and message (an operator resumes it to run the step again,
/// or terminates it; decision 0010). A panic is treated the same way.
#[async_trait::async_trait]
pub trait Workflow: Send + Sync + 'static {
    /// Runs one step of the instance.
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault>;

    /// Runs the instance's cancellation logic, instead of [`Workflow::step`], when an operator
    /// cancelled it ([`Context::cancel_requested`]). The default completes it as canceled.
    async fn on_cancel(&self, cx: &mut Context) -> Result<Step, Fault> {
        let _ = cx;
        Ok(Step::canceled())
    }
}

/// What caused a step to run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Trigger {
    /// The instance was just started ([`crate::Host::start`]).
    Start,
    /// Its timer fell due.
    Timer,
    /// A bookmark it waited on was resumed ([`crate::Host::resume_bookmark`]).
    Bookmark(Bookmark),
    /// It was runnable for another reason: recovered from a host that died mid-step, resumed
    /// by an operator while `Executing`, or cancelled at the store level.
    Runnable,
}

/// A resumed bookmark: its name and the payload it was resumed with.
#[derive(Debug, Clone, PartialEq)]
pub struct Bookmark {
    /// The bookmark's name (one of the names a previous [`Step::Idle`] waited on).
    pub name: String,
    /// The payload passed to [`crate::Host::resume_bookmark`].
    pub payload: Value,
}

/// An instance as a step sees it: who it is, why it runs, and its data, which the step may
/// change.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) instance: InstanceId,
    pub(crate) host_type: String,
    pub(crate) now: Timestamp,
    pub(crate) lock_version: u64,
    pub(crate) trigger: Trigger,
    pub(crate) timer_fired: bool,
    pub(crate) cancel_requested: bool,
    pub(crate) waiting_on: Vec<String>,
    /// The instance data: read it, change it; it is saved with the step's result.
    pub data: PropertyBag,
    pub(crate) keys: Vec<KeyId>,
}

impl Context {
    /// A context for trying a workflow without a store (tests of workflow code).
    pub fn new(instance: InstanceId, host_type: &str, now: Timestamp, trigger: Trigger) -> Self {
        Context {
            instance,
            host_type: host_type.to_owned(),
            now,
            lock_version: 1,
            timer_fired: trigger == Trigger::Timer,
            trigger,
            cancel_requested: false,
            waiting_on: Vec::new(),
            data: PropertyBag::new(),
            keys: Vec::new(),
        }
    }

    /// The instance.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// The host type it runs under.
    pub fn host_type(&self) -> &str {
        &self.host_type
    }

    /// Now, on the store's clock (timers are judged by it).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The lock epoch this step runs under: grows whenever another host takes the instance
    /// over, so it fences side effects of a step that may run again.
    pub fn lock_version(&self) -> u64 {
        self.lock_version
    }

    /// Why this step runs.
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// Whether this is the instance's first step.
    pub fn is_start(&self) -> bool {
        self.trigger == Trigger::Start
    }

    /// The bookmark this step was resumed with, if any.
    pub fn bookmark(&self) -> Option<&Bookmark> {
        match &self.trigger {
            Trigger::Bookmark(b) => Some(b),
            _ => None,
        }
    }

    /// Whether the instance's timer is due (it fell due and the step runs because of it, or the
    /// step runs for another reason after its due time).
    pub fn timer_fired(&self) -> bool {
        self.timer_fired
    }

    /// Whether an operator asked to cancel the instance (then [`Workflow::on_cancel`] runs).
    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested
    }

    /// The bookmarks the instance was waiting on before this step.
    pub fn waiting_on(&self) -> &[String] {
        &self.waiting_on
    }

    /// A data value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.data.get(name).map(|v| &v.value)
    }

    /// An integer data value (`None` if missing or of another type).
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// A string data value (`None` if missing or of another type).
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Sets a data value (saved with the step's result).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.data.insert(name.into(), value.into().into());
    }

    /// Removes a data value.
    pub fn remove(&mut self, name: &str) {
        self.data.remove(name);
    }

    /// Associates a key with the instance in the step's save (so
    /// [`crate::Host::resume_bookmark`] can find it by that key). A key another instance has
    /// makes the save fail (`InstanceKeyCollision`).
    pub fn associate_key(&mut self, key: KeyId) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }
}

/// When a durable timer falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// This long after the step ends (on the store's clock).
    In(Duration),
    /// At this time (store clock).
    At(Timestamp),
}

/// How a completed instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It finished its work.
    Closed,
    /// It was cancelled.
    Canceled,
}

impl Outcome {
    pub(crate) fn status(self) -> ExecutionStatus {
        match self {
            Outcome::Closed => ExecutionStatus::Closed,
            Outcome::Canceled => ExecutionStatus::Canceled,
        }
    }
}

/// What a step returns: the instance goes idle (persisted, unlocked) until its timer or one of
/// its bookmarks, or it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Persist and wait: for the timer (if any) or a bookmark named here (resumed by key with
    /// [`crate::Host::resume_bookmark`]). Idle with neither waits for an operator.
    Idle {
        /// The durable timer.
        timer: Option<Timer>,
        /// Bookmarks it waits on.
        bookmarks: Vec<String>,
    },
    /// Persist and complete: its keys are completed, and it never runs again.
    Completed {
        /// How it ended.
        outcome: Outcome,
    },
}

impl Step {
    /// Idle until the timer falls due, `after` from now.
    pub fn sleep(after: Duration) -> Step {
        Step::Idle {
            timer: Some(Timer::In(after)),
            bookmarks: Vec::new(),
        }
    }

    /// Idle until the bookmark `name` is resumed.
    pub fn wait_for(name: impl Into<String>) -> Step {
        Step::Idle {
            timer: None,
            bookmarks: vec![name.into()],
        }
    }

    /// Adds a timer `after` from now to an idle step (a deadline while waiting for a bookmark).
    pub fn or_timer(self, after: Duration) -> Step {
        match self {
            Step::Idle { bookmarks, .. } => Step::Idle {
                timer: Some(Timer::In(after)),
                bookmarks,
            },
            done => done,
        }
    }

    /// Adds a bookmark to an idle step.
    pub fn or_bookmark(self, name: impl Into<String>) -> Step {
        match self {
            Step::Idle {
                timer,
                mut bookmarks,
            } => {
                bookmarks.push(name.into());
                Step::Idle { timer, bookmarks }
            }
            done => done,
        }
    }

    /// Completed: the work is done.
    pub fn done() -> Step {
        Step::Completed {
            outcome: Outcome::Closed,
        }
    }

    /// Completed as canceled.
    pub fn canceled() -> Step {
        Step::Completed {
            outcome: Outcome::Canceled,
        }
    }
}

/// An unhandled fault of a step: the instance is suspended with this exception name and
/// message. Any error converts into one with `?` (its type name and its message with sources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The exception name (for an error converted with `?`: its type's name).
    pub name: String,
    /// The message.
    pub message: String,
}

impl Fault {
    /// A fault with a name and a message.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Fault {
            name: name.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Fault {
    fn from(error: E) -> Self {
        let full = std::any::type_name::<E>();
        // `my_crate::errors::PaymentDeclined` → `PaymentDeclined` (generic arguments kept).
        let path_end = full.find('<').unwrap_or(full.len());
        let start = full[..path_end].rfind("::").map_or(0, |i| i + 2);
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Fault {
            name: full[start..].to_owned(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("card declined: order={0}")]
    struct PaymentDeclined(u32);

    #[test]
    fn errors_become_faults_named_by_their_type() {
        let fault = Fault::from(PaymentDeclined(7));
        assert_eq!(fault.name, "PaymentDeclined");
        assert_eq!(fault.message, "card declined: order=7");
    }

    #[test]
    fn idle_steps_combine_timers_and_bookmarks() {
        let step = Step::wait_for("paid").or_timer(Duration::from_secs(60));
        assert_eq!(
            step,
            Step::Idle {
                timer: Some(Timer::In(Duration::from_secs(60))),
                bookmarks: vec!["paid".into()],
            }
        );
        assert_eq!(Step::done().or_bookmark("x"), Step::done());
    }
}
