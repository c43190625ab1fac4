//! The `[server]` table: listen address and bearer tokens, with errors at file:line key.

use std::path::Path;

use instore_config::{Config, ConfigError, ServerRole};

const STORE: &str = "[stores.main]\nurl = \"memory:\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(
        &format!("{STORE}{text}"),
        Path::new("/etc/instore/instore.toml"),
    )
}

/// The error's line (counted in the whole file, the store's two lines first) and key.
fn file_error(text: &str, line: usize, key: &str) -> String {
    let err = parse(text).expect_err("the file is wrong");
    let message = err.to_string();
    match &err {
        ConfigError::File {
            line: l, key: k, ..
        } => {
            assert_eq!((*l, k.as_str()), (line, key), "{message}")
        }
        other => panic!("not a file error: {other:?}"),
    }
    message
}

#[test]
fn without_a_server_table_there_are_no_tokens_and_no_address() {
    let config = parse("").unwrap();
    assert_eq!(config.server().listen, None);
    assert!(config.server().tokens.is_empty());
    assert!(Config::without_file(None)
        .unwrap()
        .server()
        .tokens
        .is_empty());
}

#[test]
fn listen_and_tokens_are_read() {
    let config = parse(
        "[server]\nlisten = \"0.0.0.0:9000\"\n\
         [[server.tokens]]\ntoken = \"reader-secret-0123456789\"\nrole = \"reader\"\n\
         [[server.tokens]]\ntoken_env = \"ADMIN_TOKEN\"\nrole = \"admin\"\n",
    )
    .unwrap();
    let server = config.server();
    assert_eq!(server.listen, Some("0.0.0.0:9000".parse().unwrap()));
    let tokens = server
        .resolve_with(|v| (v == "ADMIN_TOKEN").then(|| "admin-secret-0123456789".to_owned()))
        .unwrap();
    assert_eq!(
        tokens,
        [
            ("reader-secret-0123456789".to_owned(), ServerRole::Reader),
            ("admin-secret-0123456789".to_owned(), ServerRole::Admin),
        ]
    );
    assert!(
        !format!("{server:?}").contains("reader-secret"),
        "secrets never print"
    );
}

#[test]
fn a_bad_listen_address_says_how_to_write_one() {
    let m = file_error("[server]\nlisten = \"localhost\"\n", 4, "server.listen");
    assert!(m.contains("127.0.0.1:8080"), "{m}");
}

#[test]
fn a_bad_role_lists_the_roles() {
    let m = file_error(
        "[server]\n[[server.tokens]]\ntoken = \"0123456789abcdef0\"\nrole = \"root\"\n",
        6,
        "server.tokens.role",
    );
    assert!(m.contains("reader") && m.contains("admin"), "{m}");
}

#[test]
fn a_short_token_is_refused() {
    let m = file_error(
        "[[server.tokens]]\ntoken = \"secret\"\nrole = \"admin\"\n",
        4,
        "server.tokens[0].token",
    );
    assert!(
        m.contains("at least 16") || m.contains("shorter than 16"),
        "{m}"
    );
}

#[test]
fn a_token_needs_exactly_one_secret() {
    let m = file_error(
        "[[server.tokens]]\nrole = \"admin\"\n",
        3,
        "server.tokens[0]",
    );
    assert!(m.contains("token_env"), "{m}");
    let m = file_error(
        "[[server.tokens]]\ntoken = \"0123456789abcdef0\"\ntoken_env = \"X\"\nrole = \"admin\"\n",
        5,
        "server.tokens[0].token_env",
    );
    assert!(m.contains("not both"), "{m}");
}

#[test]
fn an_unset_token_variable_is_an_error_at_its_line() {
    let config =
        parse("[[server.tokens]]\ntoken_env = \"NOT_SET_ANYWHERE\"\nrole = \"reader\"\n").unwrap();
    let err = config
        .server()
        .resolve_with(|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/etc/instore/instore.toml:4:"), "{err}");
    assert!(
        err.contains("server.tokens[0].token_env") && err.contains("NOT_SET_ANYWHERE is not set"),
        "{err}"
    );
}

#[test]
fn an_unknown_server_key_is_named() {
    let m = file_error(
        "[server]\nlisten_on = \"127.0.0.1:1\"\n",
        4,
        "server.listen_on",
    );
    assert!(m.contains("unknown field"), "{m}");
}
