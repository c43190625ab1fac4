//! `instore serve`: refuses what it must before serving (the serving itself is tested in
//! instore-server with the router, and end to end by `.ci/schemathesis`).

mod support;

use support::Sandbox;

#[test]
fn serve_refuses_a_non_loopback_address_without_tokens() {
    let s = Sandbox::new();
    s.run(&["store", "init"]).ok();
    s.run(&["serve", "--listen", "0.0.0.0:0"]).usage_error(&[
        "refusing to listen on 0.0.0.0:0 without tokens",
        "[[server.tokens]]",
        "127.0.0.1",
    ]);
}

#[test]
fn serve_reads_the_address_from_the_configuration() {
    let s = Sandbox::new();
    s.write(
        "instore.toml",
        "[stores.main]\nurl = \"sqlite://instore.db\"\n[server]\nlisten = \"0.0.0.0:0\"\n",
    );
    s.run(&["store", "init"]).ok();
    s.run(&["serve"])
        .usage_error(&["refusing to listen on 0.0.0.0:0"]);
}

#[test]
fn serve_names_an_unset_token_variable_at_its_line() {
    let s = Sandbox::new();
    s.write(
        "instore.toml",
        "[stores.main]\nurl = \"sqlite://instore.db\"\n[[server.tokens]]\ntoken_env = \"INSTORE_TEST_NO_SUCH_TOKEN\"\nrole = \"admin\"\n",
    );
    s.run(&["store", "init"]).ok();
    s.run(&["serve"]).usage_error(&[
        "instore.toml:4:",
        "server.tokens[0].token_env",
        "INSTORE_TEST_NO_SUCH_TOKEN is not set",
    ]);
}

#[test]
fn serve_does_not_create_a_missing_store() {
    let s = Sandbox::new();
    s.run(&["serve", "--listen", "127.0.0.1:0"])
        .failure(&["does not exist", "instore store init"]);
}
