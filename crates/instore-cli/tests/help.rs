//! Every verb's `--help` says what it does and shows an example.

mod support;

use support::Sandbox;

const VERBS: &[&[&str]] = &[
    &["instances", "list"],
    &["instances", "show"],
    &["instances", "count"],
    &["instances", "group"],
    &["suspend"],
    &["resume"],
    &["terminate"],
    &["cancel"],
    &["remove"],
    &["purge"],
    &["manage"],
    &["serve"],
    &["commands", "list"],
    &["errors", "list"],
    &["owners", "list"],
    &["store", "list"],
    &["store", "init"],
    &["store", "migrate"],
    &["store", "drop"],
];

#[test]
fn every_verb_says_what_it_does_with_an_example() {
    let sandbox = Sandbox::new();
    for verb in VERBS {
        for flag in ["--help", "-h"] {
            let mut args = verb.to_vec();
            args.push(flag);
            let run = sandbox.run(&args);
            run.ok();
            let first = run.stdout.lines().next().unwrap_or_default();
            assert!(
                first.len() > 20 && !first.starts_with("Usage"),
                "{verb:?} {flag} does not open with what it does: {first:?}"
            );
            assert!(
                run.stdout.contains("Example")
                    && run.stdout.contains(&format!("instore {}", verb[0])),
                "{verb:?} {flag} shows no example:\n{}",
                run.stdout
            );
        }
    }
}

#[test]
fn nouns_list_their_verbs_and_the_top_level_lists_every_noun() {
    let sandbox = Sandbox::new();
    let top = sandbox.run(&["--help"]);
    top.ok();
    for noun in [
        "instances",
        "suspend",
        "resume",
        "terminate",
        "cancel",
        "remove",
        "purge",
        "commands",
        "errors",
        "owners",
        "store",
    ] {
        assert!(top.stdout.contains(noun), "--help lacks {noun}");
    }
    assert!(top.stdout.contains("Example"));
    assert!(top.stdout.contains("Exit codes"));
    let instances = sandbox.run(&["instances", "--help"]);
    for verb in ["list", "show", "count", "group"] {
        assert!(
            instances.ok().stdout.contains(verb),
            "instances --help lacks {verb}"
        );
    }
}

#[test]
fn filters_are_documented_on_every_verb_that_takes_them() {
    let sandbox = Sandbox::new();
    for verb in [
        &["instances", "list"][..],
        &["instances", "count"],
        &["instances", "group"],
        &["suspend"],
        &["remove"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let run = sandbox.run(&args);
        for flag in [
            "--status",
            "--condition",
            "--created-after",
            "--created-before",
            "--modified-after",
            "--modified-before",
            "--exception",
            "--machine",
            "--host-type",
            "--owner",
            "--id",
            "--key",
            "--where",
            "--has-command",
            "--has-error",
        ] {
            assert!(
                run.ok().stdout.contains(flag),
                "{verb:?} --help lacks {flag}"
            );
        }
    }
}

#[test]
fn no_verb_is_a_usage_error() {
    let sandbox = Sandbox::new();
    assert_eq!(sandbox.run(&[]).code, 2);
    assert_eq!(sandbox.run(&["instances"]).code, 2);
    sandbox.run(&["frobnicate"]).usage_error(&["frobnicate"]);
}

#[test]
fn the_verb_list_above_covers_every_command_of_the_top_level_help() {
    let run = Sandbox::new().run(&["--help"]);
    let help = &run.ok().stdout;
    let commands = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .unwrap_or_default();
    let names: Vec<&str> = commands
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(names.len() >= 10, "no command list in {help}");
    for name in names {
        assert!(
            VERBS.iter().any(|v| v[0] == name),
            "`instore {name}` is missing from VERBS, so its help is untested"
        );
    }
}
