//! The small integer codes providers store for states and statuses. One table for every
//! provider, so a row means the same wherever it is read; an unknown code is a corrupt (or newer)
//! row.

use crate::{ExecutionStatus, InstanceState, KeyState, StorageError, StoreError};

fn unknown(what: &str, code: i64) -> StoreError {
    StoreError::Storage(StorageError::corrupt(format!(
        "unknown {what} code {code}; the row was written by a newer instore or is damaged"
    )))
}

impl InstanceState {
    /// The stored code: 1 uninitialized (also for `Unknown`), 2 initialized, 3 completed.
    pub const fn code(self) -> i16 {
        match self {
            InstanceState::Unknown | InstanceState::Uninitialized => 1,
            InstanceState::Initialized => 2,
            InstanceState::Completed => 3,
        }
    }

    /// From a stored code.
    pub fn from_code(code: i64) -> Result<Self, StoreError> {
        match code {
            1 => Ok(InstanceState::Uninitialized),
            2 => Ok(InstanceState::Initialized),
            3 => Ok(InstanceState::Completed),
            other => Err(unknown("instance state", other)),
        }
    }
}

impl ExecutionStatus {
    /// The stored code: 1 executing, 2 idle, 3 closed, 4 faulted, 5 canceled, 6 terminated.
    pub const fn code(self) -> i16 {
        match self {
            ExecutionStatus::Executing => 1,
            ExecutionStatus::Idle => 2,
            ExecutionStatus::Closed => 3,
            ExecutionStatus::Faulted => 4,
            ExecutionStatus::Canceled => 5,
            ExecutionStatus::Terminated => 6,
        }
    }

    /// From a stored code.
    pub fn from_code(code: i64) -> Result<Self, StoreError> {
        Ok(match code {
            1 => ExecutionStatus::Executing,
            2 => ExecutionStatus::Idle,
            3 => ExecutionStatus::Closed,
            4 => ExecutionStatus::Faulted,
            5 => ExecutionStatus::Canceled,
            6 => ExecutionStatus::Terminated,
            other => return Err(unknown("execution status", other)),
        })
    }
}

impl KeyState {
    /// The stored code: 1 associated, 2 completed.
    pub const fn code(self) -> i16 {
        match self {
            KeyState::Associated => 1,
            KeyState::Completed => 2,
        }
    }

    /// From a stored code.
    pub fn from_code(code: i64) -> Result<Self, StoreError> {
        match code {
            1 => Ok(KeyState::Associated),
            2 => Ok(KeyState::Completed),
            other => Err(unknown("key state", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_corrupt_rows() {
        for s in [
            ExecutionStatus::Executing,
            ExecutionStatus::Idle,
            ExecutionStatus::Closed,
            ExecutionStatus::Faulted,
            ExecutionStatus::Canceled,
            ExecutionStatus::Terminated,
        ] {
            assert_eq!(ExecutionStatus::from_code(s.code().into()).unwrap(), s);
        }
        for s in [
            InstanceState::Uninitialized,
            InstanceState::Initialized,
            InstanceState::Completed,
        ] {
            assert_eq!(InstanceState::from_code(s.code().into()).unwrap(), s);
        }
        for s in [KeyState::Associated, KeyState::Completed] {
            assert_eq!(KeyState::from_code(s.code().into()).unwrap(), s);
        }
        assert!(ExecutionStatus::from_code(7).is_err());
        assert!(InstanceState::from_code(0).is_err());
        assert!(KeyState::from_code(3).is_err());
    }
}
