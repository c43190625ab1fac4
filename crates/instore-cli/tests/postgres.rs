//! The binary on a PostgreSQL store: the server is `$INSTORE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in a schema of its own that it drops.

mod support;

use support::Sandbox;

fn server_url() -> String {
    std::env::var("INSTORE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn fresh_schema() -> String {
    format!(
        "cli_{}",
        &instore::Uuid::new_v4().simple().to_string()[..20]
    )
}

#[test]
fn a_store_at_instore_url_is_created_used_and_dropped() {
    let s = Sandbox::new();
    let base = server_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={}", fresh_schema());
    let env = [("INSTORE_URL", url.as_str())];
    let init = s.run_with(&["--json", "store", "init"], &env).ok().json();
    assert_eq!(init["outcome"], "ready");
    assert_eq!(
        s.run_with(&["instances", "count"], &env).ok().stdout.trim(),
        "0"
    );
    let missing = instore::InstanceId::new().to_string();
    s.run_with(&["suspend", &missing], &env)
        .failure(&["instance not found"]);
    s.run_with(&["commands", "list"], &env).ok();
    s.run_with(&["errors", "list"], &env).ok();
    s.run_with(&["owners", "list"], &env).ok();
    s.run_with(&["purge", "--older-than", "1d"], &env).ok();
    let dropped = s
        .run_with(&["--json", "store", "drop", "--yes"], &env)
        .ok()
        .json();
    assert_eq!(dropped["outcome"], "dropped");
}

#[test]
fn the_schema_can_come_from_the_configuration_file() {
    let s = Sandbox::new();
    let schema = fresh_schema();
    s.write(
        "instore.toml",
        &format!(
            "[stores.shared]\nurl = \"{}\"\nretention = \"never\"\n\n[stores.shared.postgres]\nschema = \"{schema}\"\npool_size = 2\nconnect_timeout = \"5s\"\n",
            server_url()
        ),
    );
    s.run(&["store", "migrate"]).ok();
    assert_eq!(s.run(&["instances", "count"]).ok().stdout.trim(), "0");
    s.run(&["purge"]).usage_error(&["never"]);
    s.run(&["store", "drop", "--yes"]).ok();
}
