//! The control queue (SPEC §10, decision 0007) on SQLite: every method is one write through the
//! writer thread (group commit), except the listings, which read on the read pool.

use instore::{
    CommandFailure, ControlCommand, ControlProvider, ErrorLogEntry, InstanceId, QueueEntry,
    QueueSettings, QueuedCommand, StoreError, Uuid,
};

use crate::SqliteProvider;

fn not_yet(what: &str) -> StoreError {
    StoreError::CommandNotSupported {
        command: what.to_owned(),
    }
}

#[async_trait::async_trait]
impl ControlProvider for SqliteProvider {
    async fn enqueue(
        &self,
        _instance: InstanceId,
        _command: ControlCommand,
    ) -> Result<(), StoreError> {
        Err(not_yet("enqueue"))
    }

    async fn delete(&self, _instance: InstanceId) -> Result<(), StoreError> {
        Err(not_yet("delete"))
    }

    async fn read_batch(
        &self,
        _settings: &QueueSettings,
        _machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        Err(not_yet("read_batch"))
    }

    async fn complete(&self, _instance: InstanceId, _lock: Uuid) -> Result<(), StoreError> {
        Err(not_yet("complete"))
    }

    async fn abandon(
        &self,
        _instance: InstanceId,
        _lock: Uuid,
        _failure: CommandFailure,
        _settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        Err(not_yet("abandon"))
    }

    async fn queued(
        &self,
        _after: Option<u64>,
        _max: usize,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        Err(not_yet("queued"))
    }

    async fn error_log(&self, _max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
        Err(not_yet("error_log"))
    }
}
