//! The read side ([`QueryProvider`]) and the control queue ([`ControlProvider`]) of the
//! PostgreSQL provider (SPEC §10, §12).

use instore::{
    CommandFailure, ControlCommand, ControlProvider, ErrorLogEntry, GroupBy, GroupCount,
    InstanceFilter, InstanceId, InstanceInfo, Page, PageRequest, QueryProvider, QueueEntry,
    QueueSettings, QueuedCommand, StoreError, Timestamp, Uuid,
};

use crate::PgProvider;

fn unsupported(command: &str) -> StoreError {
    StoreError::CommandNotSupported {
        command: command.into(),
    }
}

#[async_trait::async_trait]
impl QueryProvider for PgProvider {
    async fn query(
        &self,
        _filter: &InstanceFilter,
        _page: &PageRequest,
    ) -> Result<Page<InstanceInfo>, StoreError> {
        Err(unsupported("Query"))
    }

    async fn count(&self, _filter: &InstanceFilter) -> Result<u64, StoreError> {
        Err(unsupported("Count"))
    }

    async fn group_count(
        &self,
        _filter: &InstanceFilter,
        _by: GroupBy,
    ) -> Result<Vec<GroupCount>, StoreError> {
        Err(unsupported("GroupCount"))
    }

    async fn purge_completed(&self, _before: Timestamp, _limit: usize) -> Result<u64, StoreError> {
        Err(unsupported("PurgeCompleted"))
    }
}

#[async_trait::async_trait]
impl ControlProvider for PgProvider {
    async fn enqueue(
        &self,
        _instance: InstanceId,
        _command: ControlCommand,
    ) -> Result<(), StoreError> {
        Err(unsupported("Enqueue"))
    }

    async fn delete(&self, _instance: InstanceId) -> Result<(), StoreError> {
        Err(unsupported("Delete"))
    }

    async fn read_batch(
        &self,
        _settings: &QueueSettings,
        _machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        Err(unsupported("ReadBatch"))
    }

    async fn complete(&self, _instance: InstanceId, _lock: Uuid) -> Result<(), StoreError> {
        Err(unsupported("CompleteCommand"))
    }

    async fn abandon(
        &self,
        _instance: InstanceId,
        _lock: Uuid,
        _failure: CommandFailure,
        _settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        Err(unsupported("AbandonCommand"))
    }

    async fn queued(
        &self,
        _after: Option<u64>,
        _max: usize,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        Err(unsupported("Queued"))
    }

    async fn error_log(&self, _max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
        Err(unsupported("ErrorLog"))
    }
}
