//! Opening files: a new file is created at the newest schema; a file that is not an instore
//! database, or was written by a newer schema, is refused with a message that says what the file
//! is and what to do — and not one byte of it changes.

use std::path::Path;
use std::sync::Arc;

use instore::{StorageErrorKind, StoreError, SystemClock};
use instore_sqlite::{SqliteOptions, SqliteProvider};

async fn open(path: &Path) -> Result<Arc<SqliteProvider>, StoreError> {
    SqliteProvider::open_with(path, SqliteOptions::default(), Arc::new(SystemClock)).await
}

fn message(e: &StoreError) -> String {
    match e {
        StoreError::Storage(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn schema_kind(e: &StoreError) -> bool {
    matches!(e, StoreError::Storage(s) if s.kind() == StorageErrorKind::Schema)
}

#[tokio::test]
async fn a_new_file_is_created_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(open(&path).await.expect("created"));
    drop(open(&path).await.expect("reopened"));
    assert!(path.exists());
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = b"shopping list: milk, eggs\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let err = open(&path).await.expect_err("refused");
    let shown = message(&err);
    assert!(schema_kind(&err), "{err:?}");
    assert!(
        shown.contains("notes.txt") && shown.contains("not an instore database"),
        "{shown}"
    );
    assert!(shown.contains("nothing in it was changed"), "{shown}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        content,
        "the file is unchanged"
    );
    assert!(
        !dir.path().join("notes.txt-wal").exists(),
        "no WAL was created next to it"
    );
}

#[tokio::test]
async fn another_applications_sqlite_database_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "create table contacts (name text); insert into contacts values ('ada');",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = open(&path).await.expect_err("refused");
    let shown = message(&err);
    assert!(shown.contains("another application"), "{shown}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is unchanged"
    );
    assert!(
        !dir.path().join("app.db-wal").exists(),
        "its journal mode was not switched to WAL"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(open(&path).await.expect("created"));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "insert into instore_schema (version, checksum, applied_at) values (999, 'x', 0)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "journal_mode", "delete").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = open(&path).await.expect_err("refused");
    let shown = message(&err);
    assert!(schema_kind(&err), "{err:?}");
    assert!(
        shown.contains("newer instore")
            && shown.contains("999")
            && shown.contains("Upgrade instore"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is unchanged"
    );
}

#[tokio::test]
async fn a_directory_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(dir.path()).await.expect_err("refused");
    assert!(message(&err).contains("is a directory"), "{err:?}");
}

#[tokio::test]
async fn sqlite_urls_open_stores_and_bad_ones_say_the_form() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("u.db").display());
    instore_sqlite::open_store(&url, Default::default())
        .await
        .expect("opened");
    let err = instore_sqlite::open_store("postgres://x", Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sqlite://PATH"), "{err}");
}
