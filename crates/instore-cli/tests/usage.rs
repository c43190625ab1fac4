//! Bad input found by clap or after parsing — ids, dates, filters, store names, configuration —
//! gives a clear message and exit code 2; the store's own failures give exit code 1.

mod support;

use support::Sandbox;

/// A sandbox with an empty default store.
fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.run(&["store", "init"]).ok();
    sandbox
}

#[test]
fn a_bad_instance_id_is_named() {
    let s = sandbox();
    s.run(&["instances", "show", "order-42"])
        .usage_error(&["'order-42' is not a valid instance id"]);
    s.run(&["suspend", "nope"])
        .usage_error(&["'nope' is not a valid instance id"]);
    s.run(&["instances", "list", "--id", "12"])
        .usage_error(&["--id", "'12'"]);
}

#[test]
fn bad_owner_and_key_ids_are_named() {
    let s = sandbox();
    s.run(&["instances", "list", "--owner", "me"])
        .usage_error(&["--owner", "owner id"]);
    s.run(&["instances", "count", "--key", "order-42"])
        .usage_error(&["--key", "key id"]);
}

#[test]
fn a_bad_date_says_what_to_write() {
    let s = sandbox();
    s.run(&["instances", "list", "--created-after", "tomorrow"])
        .usage_error(&["--created-after", "'tomorrow'", "RFC 3339", "2026-11-21"]);
    s.run(&["instances", "count", "--modified-before", "2026-02-30"])
        .usage_error(&["--modified-before"]);
    s.run(&["remove", "--created-before", "soon ago"])
        .usage_error(&["'1h ago'"]);
}

#[test]
fn an_empty_time_range_is_refused() {
    let s = sandbox();
    s.run(&[
        "instances",
        "list",
        "--created-after",
        "2026-01-02",
        "--created-before",
        "2026-01-01",
    ])
    .usage_error(&["must be earlier"]);
}

#[test]
fn unknown_statuses_conditions_and_groupings_list_the_known_ones() {
    let s = sandbox();
    s.run(&["instances", "list", "--status", "Sleeping"])
        .usage_error(&["Sleeping", "Running, Suspended, Completed"]);
    s.run(&["instances", "count", "--condition", "Happy"])
        .usage_error(&["Happy", "UserSuspension"]);
    s.run(&["instances", "group", "--by", "color"])
        .usage_error(&["color", "host-type"]);
    s.run(&["instances", "group"]).usage_error(&["--by"]);
}

#[test]
fn a_bad_where_says_name_equals_value() {
    let s = sandbox();
    s.run(&["instances", "list", "--where", "orders:total"])
        .usage_error(&["NAME=VALUE", "orders:total=42"]);
    s.run(&["instances", "list", "--where", "=42"])
        .usage_error(&["NAME=VALUE"]);
}

#[test]
fn empty_names_are_refused() {
    let s = sandbox();
    s.run(&["instances", "list", "--host-type", ""])
        .usage_error(&["host type is empty"]);
}

#[test]
fn a_bad_cursor_or_page_size_is_refused() {
    let s = sandbox();
    s.run(&["instances", "list", "--cursor", "page-2"])
        .usage_error(&["cursor", "'next'"]);
    s.run(&["instances", "list", "--max", "0"])
        .usage_error(&["--max"]);
    s.run(&["instances", "list", "--max", "5000"])
        .usage_error(&["--max"]);
    s.run(&["purge", "--older-than", "a while"])
        .usage_error(&["--older-than", "7d"]);
}

#[test]
fn an_unknown_store_name_lists_the_known_ones() {
    let s = sandbox();
    s.run(&["--store", "prod", "instances", "count"])
        .usage_error(&["no store named 'prod'", "known stores: default"]);
    s.write(
        "instore.toml",
        "[stores.a]\nurl = \"memory:\"\n[stores.b]\nurl = \"memory:\"\n",
    );
    s.run(&["--store", "c", "owners", "list"])
        .usage_error(&["'c'", "known stores: a, b"]);
    s.run(&["owners", "list"])
        .usage_error(&["no default", "--store"]);
}

#[test]
fn a_broken_configuration_file_names_the_line_and_key() {
    let s = sandbox();
    s.write(
        "instore.toml",
        "[stores.main]\nurl = \"sqlite://instore.db\"\nlease = 60\n",
    );
    let run = s.run(&["instances", "count"]);
    run.usage_error(&["instore.toml:3:", "stores.main.lease", "\"60s\""]);
    s.run(&["--config", "missing.toml", "instances", "count"])
        .usage_error(&["missing.toml"]);
}

#[test]
fn a_bad_instore_url_is_named() {
    let s = sandbox();
    s.run_with(&["instances", "count"], &[("INSTORE_URL", "redis://cache")])
        .usage_error(&["$INSTORE_URL", "redis://cache", "sqlite://PATH"]);
}

#[test]
fn bulk_commands_need_ids_filters_or_all() {
    let s = sandbox();
    for verb in ["suspend", "resume", "terminate", "cancel", "remove"] {
        s.run(&[verb]).usage_error(&["give their ids", "--all"]);
        s.run(&[verb, "--all", "--status", "Running"])
            .usage_error(&["--all"]);
    }
}

#[test]
fn a_missing_store_is_a_failure_that_says_how_to_create_it() {
    let s = Sandbox::new();
    s.run(&["instances", "list"])
        .failure(&["does not exist", "instore store init"]);
    assert!(!s.db().exists(), "reading must not create the store");
}

#[test]
fn a_retention_of_never_needs_older_than_to_purge() {
    let s = sandbox();
    s.write(
        "instore.toml",
        "[stores.main]\nurl = \"sqlite://instore.db\"\nretention = \"never\"\n",
    );
    s.run(&["purge"]).usage_error(&["never", "--older-than"]);
    s.run(&["purge", "--older-than", "30d"]).ok();
}
