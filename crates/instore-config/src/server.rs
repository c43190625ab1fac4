//! The `[server]` table: where `instore serve` listens and which bearer tokens it accepts.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[server.tokens]]
//! token = "a-long-random-secret-for-dashboards"
//! role = "reader"
//!
//! [[server.tokens]]
//! token_env = "INSTORE_ADMIN_TOKEN"     # read from the environment when the server starts
//! role = "admin"
//! ```

use std::net::SocketAddr;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::file::Source;
use crate::ConfigError;

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    /// Queries only.
    Reader,
    /// Queries and control commands.
    Admin,
}

/// Where a token's secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    /// Written in the file.
    Literal(String),
    /// Read from this environment variable when the server starts.
    Env(String),
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSecret::Literal(_) => f.write_str("Literal(<secret>)"),
            TokenSecret::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// One `[[server.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerToken {
    /// The secret, or where to read it.
    pub secret: TokenSecret,
    /// What it may do.
    pub role: ServerRole,
    /// Where it is written (for errors found when it is resolved).
    location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Location {
    path: std::path::PathBuf,
    line: usize,
    column: usize,
    key: String,
}

/// The `[server]` table (all optional).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerConfig {
    /// Where to listen (`listen`); `None`: the tool's default.
    pub listen: Option<SocketAddr>,
    /// Accepted tokens; none: no auth, and loopback addresses only.
    pub tokens: Vec<ServerToken>,
}

impl ServerConfig {
    /// The tokens with their secrets, reading `token_env` variables now. A variable that is unset
    /// or too short is an error at the line that names it.
    pub fn resolve_tokens(&self) -> Result<Vec<(String, ServerRole)>, ConfigError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// [`ServerConfig::resolve_tokens`] with the environment given (for tests).
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, ServerRole)>, ConfigError> {
        self.tokens
            .iter()
            .map(|t| {
                let secret = match &t.secret {
                    TokenSecret::Literal(s) => s.clone(),
                    TokenSecret::Env(var) => {
                        let value = env(var).unwrap_or_default();
                        if value.trim().len() < MIN_TOKEN_LEN {
                            let l = &t.location;
                            return Err(ConfigError::File {
                                path: l.path.clone(),
                                line: l.line,
                                column: l.column,
                                key: l.key.clone(),
                                problem: format!(
                                    "the environment variable {var} is {}; set it to a secret of at least {MIN_TOKEN_LEN} characters",
                                    if value.is_empty() { "not set".to_owned() } else { format!("shorter than {MIN_TOKEN_LEN} characters") }
                                ),
                            });
                        }
                        value.trim().to_owned()
                    }
                };
                Ok((secret, t.role))
            })
            .collect()
    }
}

/// The raw `[server]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    tokens: Vec<Spanned<RawToken>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    token: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    role: Spanned<ServerRole>,
}

pub(crate) fn build(source: &Source<'_>, raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let listen = match &raw.listen {
        None => None,
        Some(l) => Some(l.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
            source.error(
                l.span(),
                "server.listen",
                format!(
                    "'{}' is not an address and port; write it like \"127.0.0.1:8080\" or \"[::1]:8080\"",
                    l.get_ref()
                ),
            )
        })?),
    };
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let key = |field: &str| format!("server.tokens[{i}].{field}");
        let at = |span: Range<usize>, field: &str| {
            let (line, column) = source.line_column(span.start);
            Location {
                path: source.path.to_path_buf(),
                line,
                column,
                key: key(field),
            }
        };
        let entry = t.get_ref();
        let secret = match (&entry.token, &entry.token_env) {
            (Some(s), None) => {
                if s.get_ref().trim().len() < MIN_TOKEN_LEN {
                    return Err(source.error(
                        s.span(),
                        key("token"),
                        format!("is shorter than {MIN_TOKEN_LEN} characters; use a long random secret (e.g. from `openssl rand -hex 24`)"),
                    ));
                }
                (
                    TokenSecret::Literal(s.get_ref().trim().to_owned()),
                    at(s.span(), "token"),
                )
            }
            (None, Some(v)) => {
                if v.get_ref().trim().is_empty() {
                    return Err(source.error(
                        v.span(),
                        key("token_env"),
                        "is empty; name the environment variable holding the token",
                    ));
                }
                (
                    TokenSecret::Env(v.get_ref().trim().to_owned()),
                    at(v.span(), "token_env"),
                )
            }
            (Some(_), Some(v)) => {
                return Err(source.error(
                    v.span(),
                    key("token_env"),
                    "a token has either token or token_env, not both; remove one",
                ))
            }
            (None, None) => {
                return Err(source.error(
                    t.span(),
                    format!("server.tokens[{i}]"),
                    "has no secret; add token = \"...\" or token_env = \"VARIABLE\"",
                ))
            }
        };
        tokens.push(ServerToken {
            secret: secret.0,
            role: *entry.role.get_ref(),
            location: secret.1,
        });
    }
    Ok(ServerConfig { listen, tokens })
}
