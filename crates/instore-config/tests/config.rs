//! Reading configuration files: good files, every kind of mistake (each message names the file,
//! the line and the key, and says what to do), the defaults without a file, opening stores.

use std::path::Path;
use std::time::Duration;

use instore::{CompletionAction, LockRetry, StoreSettings};
use instore_config::{Config, ConfigError, SchemaOutcome, StoreKind};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/instore/instore.toml"))
}

/// The message of a file error, checked to name the file, the line and the key.
fn file_error(text: &str, line: usize, key: &str) -> String {
    let err = parse(text).expect_err("the file is wrong");
    let message = err.to_string();
    match &err {
        ConfigError::File {
            line: l, key: k, ..
        } => {
            assert_eq!((*l, k.as_str()), (line, key), "{message}");
        }
        other => panic!("not a file error: {other:?}"),
    }
    assert!(
        message.starts_with(&format!("/etc/instore/instore.toml:{line}:")),
        "{message}"
    );
    assert!(message.contains(key), "{message}");
    assert!(err.is_usage());
    message
}

#[test]
fn a_full_file_sets_every_setting() {
    let config = parse(
        r#"
default = "main"

[stores.main]
url = "sqlite://data/instore.db"
lease = "2m"
renew_every = "20s"
detection_poll = "500ms"
auto_recover_owner = false
lock_retry = "aggressive"
completion = "delete_all"
max_payload_bytes = "1MiB"
compress_above_bytes = 8192
zstd_level = 9
suspension_extension = true
promotions = ["orders:total", "orders:customer"]
retention = "3d 12h"
queue_lock_time = "90s"
queue_max_attempts = 3
queue_batch_size = 25

[stores.main.sqlite]
synchronous = "normal"
readers = 2
max_batch = 64

[stores.shared]
url = "postgres://app@db.example:5432/orders?schema=orders"
retention = "never"

[stores.shared.postgres]
pool_size = 4
connect_timeout = "3s"

[stores.scratch]
url = "memory:"
"#,
    )
    .unwrap();
    assert_eq!(config.default_name(), Some("main"));
    let main = config.store(None).unwrap();
    assert_eq!(main.name, "main");
    assert_eq!(main.url, "sqlite:///etc/instore/data/instore.db");
    assert_eq!(
        main.kind(),
        StoreKind::Sqlite {
            path: "/etc/instore/data/instore.db".into()
        }
    );
    let s = &main.settings;
    assert_eq!(s.lease, Duration::from_secs(120));
    assert_eq!(s.renew_every, Duration::from_secs(20));
    assert_eq!(s.detection_poll, Duration::from_millis(500));
    assert!(!s.auto_recover_owner);
    assert_eq!(s.lock_retry, LockRetry::AggressiveRetry);
    assert_eq!(s.completion, CompletionAction::DeleteAll);
    assert_eq!(s.max_payload_bytes, 1 << 20);
    assert_eq!(s.encoding.compress_above_bytes, 8192);
    assert_eq!(s.encoding.zstd_level, 9);
    assert!(s.suspension_extension);
    assert_eq!(s.promotions, ["orders:total", "orders:customer"]);
    assert_eq!(s.retention, Some(Duration::from_secs(84 * 3600)));
    assert_eq!(s.queue.lock_time, Duration::from_secs(90));
    assert_eq!(s.queue.max_attempts, 3);
    assert_eq!(s.queue.batch_size, 25);
    assert_eq!(main.sqlite.synchronous, instore_sqlite::Synchronous::Normal);
    assert_eq!((main.sqlite.readers, main.sqlite.max_batch), (2, 64));

    let shared = config.store(Some("shared")).unwrap();
    assert_eq!(shared.kind(), StoreKind::Postgres);
    assert_eq!(shared.settings.retention, None);
    assert_eq!(shared.postgres.pool_size, 4);
    assert_eq!(shared.postgres.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        config.store(Some("scratch")).unwrap().kind(),
        StoreKind::Memory
    );
    assert_eq!(config.stores().count(), 3);
}

#[test]
fn a_minimal_file_takes_the_defaults_and_its_only_store_is_the_default() {
    let config = parse("[stores.orders]\nurl = \"sqlite://\"\n").unwrap();
    let store = config.store(None).unwrap();
    assert_eq!(store.name, "orders");
    assert_eq!(store.url, "sqlite:///etc/instore/instore.db");
    assert_eq!(store.settings, StoreSettings::default());
    // Absolute paths stay as written.
    let config = parse("[stores.a]\nurl = \"sqlite:///var/lib/a.db\"\n").unwrap();
    assert_eq!(config.store(None).unwrap().url, "sqlite:///var/lib/a.db");
}

#[test]
fn with_several_stores_the_one_named_default_is_the_default() {
    let config =
        parse("[stores.default]\nurl = \"memory:\"\n[stores.other]\nurl = \"memory:\"\n").unwrap();
    assert_eq!(config.store(None).unwrap().name, "default");
}

#[test]
fn several_stores_without_a_default_need_a_name() {
    let config = parse("[stores.a]\nurl = \"memory:\"\n[stores.b]\nurl = \"memory:\"\n").unwrap();
    let err = config.store(None).unwrap_err().to_string();
    assert!(err.contains("a, b") && err.contains("--store"), "{err}");
    assert_eq!(config.store(Some("b")).unwrap().name, "b");
}

#[test]
fn an_unknown_store_name_lists_the_known_ones() {
    let config = parse("[stores.a]\nurl = \"memory:\"\n[stores.b]\nurl = \"memory:\"\n").unwrap();
    let err = config.store(Some("c")).unwrap_err();
    assert!(err.is_usage());
    let err = err.to_string();
    assert!(
        err.contains("'c'") && err.contains("known stores: a, b"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nleese = \"60s\"\n",
        3,
        "stores.main.leese",
    );
    assert!(message.contains("unknown field"), "{message}");
    assert!(message.contains("correct its spelling"), "{message}");
}

#[test]
fn an_unknown_top_level_key_is_named() {
    let message = file_error(
        "store = \"x\"\n[stores.main]\nurl = \"memory:\"\n",
        1,
        "store",
    );
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn an_unknown_provider_option_is_named() {
    file_error(
        "[stores.main]\nurl = \"sqlite://a.db\"\n\n[stores.main.sqlite]\nsync = \"off\"\n",
        5,
        "stores.main.sqlite.sync",
    );
}

#[test]
fn a_duration_without_a_unit_says_how_to_write_it() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nlease = 60\n",
        3,
        "stores.main.lease",
    );
    assert!(message.contains("\"60s\""), "{message}");
}

#[test]
fn a_bad_duration_says_how_to_write_it() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\n\nrenew_every = \"soon\"\n",
        4,
        "stores.main.renew_every",
    );
    assert!(message.contains("\"soon\" is not a duration"), "{message}");
}

#[test]
fn a_bad_choice_lists_the_good_ones() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\ncompletion = \"archive\"\n",
        3,
        "stores.main.completion",
    );
    assert!(
        message.contains("keep") && message.contains("delete_all"),
        "{message}"
    );
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nlock_retry = \"forever\"\n",
        3,
        "stores.main.lock_retry",
    );
    assert!(message.contains("aggressive"), "{message}");
}

#[test]
fn a_bad_retention_says_never_or_a_duration() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nretention = \"forever\"\n",
        3,
        "stores.main.retention",
    );
    assert!(message.contains("\"never\""), "{message}");
}

#[test]
fn a_bad_size_says_how_to_write_it() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nmax_payload_bytes = \"lots\"\n",
        3,
        "stores.main.max_payload_bytes",
    );
    assert!(message.contains("16MiB"), "{message}");
}

#[test]
fn a_wrong_type_is_named() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nqueue_max_attempts = \"five\"\n",
        3,
        "stores.main.queue_max_attempts",
    );
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn a_missing_url_is_named() {
    let err = parse("[stores.main]\nlease = \"60s\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing field `url`") && err.contains("stores.main"),
        "{err}"
    );
    assert!(err.starts_with("/etc/instore/instore.toml:"), "{err}");
}

#[test]
fn an_unknown_url_scheme_lists_the_known_ones() {
    let message = file_error(
        "[stores.main]\n\nurl = \"mysql://db\"\n",
        3,
        "stores.main.url",
    );
    assert!(
        message.contains("sqlite://PATH") && message.contains("postgres://"),
        "{message}"
    );
}

#[test]
fn settings_that_contradict_each_other_point_at_the_key() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nlease = \"20s\"\nrenew_every = \"30s\"\n",
        4,
        "stores.main.renew_every",
    );
    assert!(message.contains("shorter than 'lease'"), "{message}");
    // The key at fault may be the one the file sets when the other is a default.
    file_error(
        "[stores.main]\nurl = \"memory:\"\nlease = \"20s\"\n",
        3,
        "stores.main.lease",
    );
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\nqueue_batch_size = 0\n",
        3,
        "stores.main.queue_batch_size",
    );
    assert!(message.contains("1 to 1000"), "{message}");
}

#[test]
fn a_default_naming_no_store_lists_the_stores() {
    let message = file_error(
        "default = \"mian\"\n[stores.main]\nurl = \"memory:\"\n",
        1,
        "default",
    );
    assert!(
        message.contains("'mian'") && message.contains("main"),
        "{message}"
    );
}

#[test]
fn a_file_without_stores_says_how_to_add_one() {
    let message = file_error("# nothing yet\n", 1, "stores");
    assert!(message.contains("[stores.main]"), "{message}");
}

#[test]
fn provider_options_must_match_the_url() {
    let message = file_error(
        "[stores.main]\nurl = \"memory:\"\n[stores.main.sqlite]\nsynchronous = \"off\"\n",
        3,
        "stores.main.sqlite",
    );
    assert!(message.contains("sqlite://PATH"), "{message}");
    file_error(
        "[stores.main]\nurl = \"sqlite://a.db\"\n[stores.main.postgres]\npool_size = 0\n",
        3,
        "stores.main.postgres",
    );
    file_error(
        "[stores.main]\nurl = \"postgres://x@y/z\"\n[stores.main.postgres]\npool_size = 0\n",
        4,
        "stores.main.postgres.pool_size",
    );
}

#[test]
fn a_toml_syntax_error_names_the_line() {
    let err = parse("[stores.main]\nurl = \"memory:\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/etc/instore/instore.toml:2:"), "{err}");
}

#[test]
fn a_missing_file_given_explicitly_is_an_error() {
    let err = Config::load(Some(Path::new("/nonexistent/instore.toml"))).unwrap_err();
    assert!(err.is_usage());
    assert!(
        err.to_string().contains("/nonexistent/instore.toml"),
        "{err}"
    );
}

#[test]
fn without_a_file_the_default_store_is_instore_db_here() {
    let config = Config::without_file(None).unwrap();
    let store = config.store(None).unwrap();
    assert_eq!(store.name, "default");
    assert_eq!(store.url, "sqlite://instore.db");
    assert_eq!(
        store.kind(),
        StoreKind::Sqlite {
            path: "instore.db".into()
        }
    );
    assert!(config.store(Some("other")).is_err());
}

#[test]
fn without_a_file_instore_url_names_the_default_store() {
    let config = Config::without_file(Some("memory:")).unwrap();
    assert_eq!(config.store(None).unwrap().url, "memory:");
    let config = Config::without_file(Some("  ")).unwrap();
    assert_eq!(config.store(None).unwrap().url, "sqlite://instore.db");
    let err = Config::without_file(Some("redis://x"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("$INSTORE_URL:") && err.contains("sqlite://PATH"),
        "{err}"
    );
}

#[test]
fn load_reads_instore_url_from_the_environment() {
    // nextest runs each test in its own process, so the variable is this test's alone.
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    std::env::set_var(instore_config::URL_ENV, "memory:");
    let config = Config::load(None).unwrap();
    std::env::remove_var(instore_config::URL_ENV);
    assert_eq!(config.store(None).unwrap().url, "memory:");
    // A file in the working directory wins over the variable.
    std::fs::write(
        dir.path().join("instore.toml"),
        "[stores.here]\nurl = \"memory:\"\n",
    )
    .unwrap();
    std::env::set_var(instore_config::URL_ENV, "sqlite://elsewhere.db");
    let config = Config::load(None).unwrap();
    std::env::remove_var(instore_config::URL_ENV);
    assert_eq!(config.store(None).unwrap().name, "here");
}

#[tokio::test]
async fn a_memory_store_opens_with_all_three_sides() {
    let config = parse("[stores.m]\nurl = \"memory:\"\npromotions = [\"a\"]\n").unwrap();
    let opened = instore_config::open(config.store(None).unwrap())
        .await
        .unwrap();
    assert_eq!(opened.name, "m");
    assert_eq!(opened.settings.promotions, ["a"]);
    assert!(opened
        .providers
        .persistence
        .owners()
        .await
        .unwrap()
        .is_empty());
    let report = instore_config::init(config.store(None).unwrap())
        .await
        .unwrap();
    assert_eq!(report.outcome, SchemaOutcome::InMemory);
}

#[tokio::test]
async fn sqlite_stores_are_created_migrated_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instore.toml");
    let config = Config::from_toml("[stores.s]\nurl = \"sqlite://s.db\"\n", &path).unwrap();
    let store = config.store(None).unwrap();
    let db = dir.path().join("s.db");

    let report = instore_config::init(store).await.unwrap();
    assert_eq!(report.outcome, SchemaOutcome::Created);
    assert!(db.exists());
    assert_eq!(
        instore_config::init(store).await.unwrap().outcome,
        SchemaOutcome::Current
    );
    assert_eq!(
        instore_config::migrate(store).await.unwrap().outcome,
        SchemaOutcome::Current
    );

    let opened = instore_config::open(store).await.unwrap();
    assert!(opened
        .providers
        .persistence
        .owners()
        .await
        .unwrap()
        .is_empty());
    drop(opened);

    let report = instore_config::drop_store(store).await.unwrap();
    assert_eq!(report.outcome, SchemaOutcome::Dropped);
    assert!(!db.exists());
    assert_eq!(
        instore_config::drop_store(store).await.unwrap().outcome,
        SchemaOutcome::Missing
    );
}

#[tokio::test]
async fn dropping_a_file_that_is_not_a_store_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    std::fs::write(&db, b"my precious notes, not a database").unwrap();
    let config = Config::from_toml(
        "[stores.s]\nurl = \"sqlite://notes.db\"\n",
        &dir.path().join("instore.toml"),
    )
    .unwrap();
    let err = instore_config::drop_store(config.store(None).unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_usage());
    assert!(err.to_string().contains("store 's'"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"my precious notes, not a database"
    );
}
