//! `instore store list|init|migrate|drop`, `owners list`, `purge`, and choosing stores through
//! the configuration: `instore.toml`, `--config`, `--store`, `$INSTORE_URL`.

mod support;

use support::Sandbox;

#[test]
fn init_creates_the_default_store_and_drop_removes_it() {
    let s = Sandbox::new();
    let run = s.run(&["store", "init"]);
    assert!(run.ok().stdout.contains("created"), "{run:#?}");
    assert!(s.db().exists());
    let again = s.run(&["--json", "store", "init"]).ok().json();
    assert_eq!(again["outcome"], "current");
    assert_eq!(again["store"], "default");
    assert_eq!(again["url"], "sqlite://instore.db");
    s.run(&["store", "migrate"]).ok();
    assert_eq!(s.run(&["instances", "count"]).ok().stdout.trim(), "0");

    s.run(&["store", "drop"])
        .usage_error(&["Drop store 'default'", "--yes"]);
    assert!(s.db().exists(), "nothing is dropped without confirmation");
    let dropped = s.run(&["store", "drop", "--yes"]);
    assert!(dropped.ok().stdout.contains("dropped"), "{dropped:#?}");
    assert!(!s.db().exists());
    let missing = s.run(&["--json", "store", "drop", "--yes"]).ok().json();
    assert_eq!(missing["outcome"], "missing");
}

#[test]
fn drop_refuses_a_file_that_is_not_a_store() {
    let s = Sandbox::new();
    s.write("instore.db", "my notes");
    s.run(&["store", "drop", "--yes"])
        .failure(&["not an instore database"]);
    assert_eq!(std::fs::read_to_string(s.db()).unwrap(), "my notes");
}

#[test]
fn the_configuration_names_stores_and_store_picks_one() {
    let s = Sandbox::new();
    s.write(
        "instore.toml",
        "default = \"a\"\n[stores.a]\nurl = \"sqlite://a.db\"\n[stores.b]\nurl = \"sqlite://data/b.db\"\n",
    );
    std::fs::create_dir(s.path("data")).unwrap();
    let list = s.run(&["--json", "store", "list"]).ok().json();
    assert_eq!(list["default"], "a");
    let names: Vec<&str> = list["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // Relative paths of a file in the working directory stay as written.
    assert_eq!(list["stores"][1]["url"], "sqlite://data/b.db");
    let table = s.run(&["store", "list"]);
    assert!(table.ok().stdout.contains("data/b.db"), "{table:#?}");

    s.run(&["store", "init"]).ok();
    assert!(s.path("a.db").exists() && !s.path("data/b.db").exists());
    s.run(&["--store", "b", "store", "init"]).ok();
    assert!(s.path("data/b.db").exists());
}

#[test]
fn config_names_a_file_elsewhere_and_its_paths_are_relative_to_it() {
    let s = Sandbox::new();
    std::fs::create_dir(s.path("etc")).unwrap();
    s.write(
        "etc/stores.toml",
        "[stores.main]\nurl = \"sqlite://main.db\"\n",
    );
    s.run(&["--config", "etc/stores.toml", "store", "init"])
        .ok();
    assert!(s.path("etc/main.db").exists());
    // $INSTORE_CONFIG does the same.
    let count = s.run_with(
        &["instances", "count"],
        &[("INSTORE_CONFIG", "etc/stores.toml")],
    );
    assert_eq!(count.ok().stdout.trim(), "0");
}

#[test]
fn instore_url_names_the_store_without_a_file() {
    let s = Sandbox::new();
    let env = [("INSTORE_URL", "sqlite://other.db")];
    s.run_with(&["store", "init"], &env).ok();
    assert!(s.path("other.db").exists() && !s.db().exists());
    let list = s.run_with(&["--json", "store", "list"], &env).ok().json();
    assert_eq!(list["stores"][0]["url"], "sqlite://other.db");
    assert!(list["origin"].as_str().unwrap().contains("INSTORE_URL"));
}

#[tokio::test]
async fn owners_list_shows_the_registered_hosts() {
    let s = Sandbox::new();
    let seeded = s.seed().await;
    let json = s.run(&["--json", "owners", "list"]).ok().json();
    assert_eq!(json[0]["id"], seeded.owner.to_string());
    assert_eq!(json[0]["host_type"], "orders");
    assert_eq!(json[0]["machine"], "seeder");
    assert_eq!(json[0]["alive"], true);
    let table = s.run(&["owners", "list"]);
    assert!(
        table.ok().stdout.contains(&seeded.owner.to_string()),
        "{table:#?}"
    );
}

#[tokio::test]
async fn purge_deletes_completed_instances_older_than_asked() {
    let s = Sandbox::new();
    let seeded = s.seed().await;
    // The default retention (7 days) keeps today's instance.
    let kept = s.run(&["--json", "purge"]).ok().json();
    assert_eq!(kept["purged"], 0);
    let purged = s
        .run(&["--json", "purge", "--older-than", "0s", "--batch", "1"])
        .ok()
        .json();
    assert_eq!(purged["purged"], 1);
    let show = s.run(&["instances", "show", &seeded.completed.to_string()]);
    show.failure(&["no instance"]);
    assert_eq!(s.run(&["instances", "count"]).ok().stdout.trim(), "4");
    let table = s.run(&["purge", "--older-than", "0s"]);
    assert!(table.ok().stdout.contains("Purged 0"), "{table:#?}");
}
