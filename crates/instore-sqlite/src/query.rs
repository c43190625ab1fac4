//! The read side (SPEC §12, decision 0007) on SQLite: queries on the read pool, purges through
//! the writer.

use instore::{
    GroupBy, GroupCount, InstanceFilter, InstanceInfo, Page, PageRequest, QueryProvider,
    StoreError, Timestamp,
};

use crate::SqliteProvider;

fn not_yet(what: &str) -> StoreError {
    StoreError::CommandNotSupported {
        command: what.to_owned(),
    }
}

#[async_trait::async_trait]
impl QueryProvider for SqliteProvider {
    async fn query(
        &self,
        _filter: &InstanceFilter,
        _page: &PageRequest,
    ) -> Result<Page<InstanceInfo>, StoreError> {
        Err(not_yet("query"))
    }

    async fn count(&self, _filter: &InstanceFilter) -> Result<u64, StoreError> {
        Err(not_yet("count"))
    }

    async fn group_count(
        &self,
        _filter: &InstanceFilter,
        _by: GroupBy,
    ) -> Result<Vec<GroupCount>, StoreError> {
        Err(not_yet("group_count"))
    }

    async fn purge_completed(&self, _before: Timestamp, _limit: usize) -> Result<u64, StoreError> {
        Err(not_yet("purge_completed"))
    }
}
