//! What the PostgreSQL tests share: the server's URL, and a fresh schema per test that is
//! dropped when the test is done with it.

#![allow(dead_code)] // each test binary uses a part

use std::sync::Arc;

use instore::{ManualClock, PersistenceProvider};
use instore_postgres::{PgClock, PgOptions, PgProvider};

/// The server the tests use: `$INSTORE_TEST_PG_URL`, else the machine's local cluster.
pub fn server_url() -> String {
    std::env::var("INSTORE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

/// The URL of a store in `schema`.
pub fn store_url(schema: &str) -> String {
    let base = server_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}schema={schema}")
}

/// A plain connection to the test server, for what a test does behind the provider's back
/// (holding row locks, terminating backends, damaging rows). Its driver task stops with it.
pub struct Admin {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for Admin {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for Admin {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects to the test server.
pub async fn admin() -> Admin {
    let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Admin { client, driver }
}

/// Drops its schema when dropped (on a thread of its own: drops happen inside runtimes).
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || drop_schema_now(&schema)).join();
    }
}

/// Drops a schema, blocking.
pub fn drop_schema_now(schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        admin()
            .await
            .batch_execute(&format!("drop schema if exists \"{schema}\" cascade"))
            .await
            .expect("drop the test schema");
    });
}

/// A provider on a fresh schema, on the pinned test clock, with the guard that removes it.
pub async fn provider(clock: ManualClock) -> (Arc<PgProvider>, Arc<SchemaGuard>) {
    let schema = fresh_schema();
    let guard = Arc::new(SchemaGuard(schema.clone()));
    let options = PgOptions {
        pool_size: 4,
        ..PgOptions::default()
    };
    let provider = PgProvider::open_with(
        &store_url(&schema),
        options,
        PgClock::Pinned(Arc::new(clock)),
    )
    .await
    .expect("open a PostgreSQL store");
    (provider, guard)
}

/// The provider as the runtime sees it.
pub fn dyn_provider(p: &Arc<PgProvider>) -> Arc<dyn PersistenceProvider> {
    p.clone()
}
