//! Opening a store that cannot be opened says so in one line naming the server and the cause:
//! a server that is down, a database that does not exist, a user without the rights to create
//! the store's schema, a URL that is not one, a schema holding someone else's tables.

mod support;

use instore::StoreError;
use instore_postgres::PgProvider;

/// The error's whole text, sources included, as a user would see it.
fn shown(error: &StoreError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn assert_one_line(text: &str) {
    println!("{text}");
    assert!(!text.contains('\n'), "not one line: {text:?}");
}

async fn open_err(url: &str) -> StoreError {
    match PgProvider::open(url).await {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_named_with_the_cause() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let e = open_err(&format!(
        "postgres://postgres@127.0.0.1:{port}/test?connect_timeout=2"
    ))
    .await;
    let text = shown(&e);
    assert_one_line(&text);
    assert!(text.contains(&format!("127.0.0.1:{port}/test")), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(text.contains("is the server running"), "{text}");
    assert!(
        matches!(e, StoreError::Storage(ref s) if s.is_transient()),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named_with_the_cause() {
    let config: tokio_postgres::Config = support::server_url().parse().expect("url");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let e = open_err(&format!(
        "postgres://postgres@127.0.0.1:{port}/no_such_db_instore"
    ))
    .await;
    let text = shown(&e);
    assert_one_line(&text);
    assert!(
        text.contains(&format!("127.0.0.1:{port}/no_such_db_instore")),
        "{text}"
    );
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("create the database"), "{text}");
}

#[tokio::test]
async fn a_user_without_rights_is_told_what_to_grant() {
    let role = format!(
        "instore_noperm_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = support::admin().await;
    admin
        .batch_execute(&format!("create role {role} login"))
        .await
        .expect("create a role");
    let config: tokio_postgres::Config = support::server_url().parse().expect("url");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("test").to_owned();
    let schema = support::fresh_schema();
    let url = format!("postgres://{role}@127.0.0.1:{port}/{db}?schema={schema}");
    let e = open_err(&url).await;
    admin
        .batch_execute(&format!("drop role {role}"))
        .await
        .expect("drop the role");
    let text = shown(&e);
    assert_one_line(&text);
    assert!(
        text.contains(&format!("127.0.0.1:{port}/{db} as {role}")),
        "{text}"
    );
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("grant the user CREATE"), "{text}");
}

#[tokio::test]
async fn a_bad_url_says_what_is_wrong() {
    for (url, says) in [
        ("mysql://localhost/test", "not a postgres:// URL"),
        ("postgres://localhost/test?schema=No-Good", "schema name"),
        ("postgres://localhost:notaport/test", "store URL"),
    ] {
        let text = shown(&open_err(url).await);
        assert_one_line(&text);
        assert!(text.contains(says), "{url}: {text}");
    }
}

#[tokio::test]
async fn a_schema_holding_other_tables_is_refused_unchanged() {
    let schema = support::fresh_schema();
    let _guard = support::SchemaGuard(schema.clone());
    let admin = support::admin().await;
    admin
        .batch_execute(&format!(
            "create schema {schema}; create table {schema}.invoices (id int); \
             insert into {schema}.invoices values (7)"
        ))
        .await
        .expect("someone else's schema");
    let text = shown(&open_err(&support::store_url(&schema)).await);
    assert_one_line(&text);
    assert!(text.contains("not an instore store"), "{text}");
    let tables: i64 = admin
        .query_one(
            "select count(*) from pg_tables where schemaname = $1",
            &[&schema],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(tables, 1, "the schema was changed");
}
