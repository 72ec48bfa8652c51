//! SASL on SASL_PLAINTEXT and SASL_SSL listeners: the listener's mechanisms and users
//! ([`SaslConfig`]) and the exchange of one connection as a pure state machine
//! ([`Authenticator`]: handshake and tokens in, responses and an outcome out). The socket
//! side is `security::authenticate`. Fuzzed by `fuzz/fuzz_targets/sasl_exchange.rs`.

pub mod plain;

use std::collections::BTreeMap;

use super::jaas;
use super::settings::SecuritySettings;
use super::KafkaPrincipal;
use crate::config::ConfigError;

/// Kafka's error codes in SASL answers.
pub mod codes {
    /// UNSUPPORTED_SASL_MECHANISM.
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    /// ILLEGAL_SASL_STATE.
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    /// SASL_AUTHENTICATION_FAILED.
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
}

const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";

/// A listener's SASL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms`, in order.
    pub mechanisms: Vec<String>,
    /// PLAIN's users and passwords (`user_<name>="<password>"`).
    pub plain_users: BTreeMap<String, String>,
}

impl SaslConfig {
    /// Reads `listener`'s SASL keys: `sasl.enabled.mechanisms` (PLAIN when unset and a PLAIN
    /// JAAS config is given) and `listener.name.<listener>.plain.sasl.jaas.config`, else
    /// `sasl.jaas.config`.
    pub fn resolve(s: &SecuritySettings, listener: &str) -> Result<SaslConfig, ConfigError> {
        let jaas = s
            .get_prefixed(listener, "plain.sasl.jaas.config")
            .or_else(|| s.get(listener, "sasl.jaas.config"));
        let mechanisms: Vec<String> = match s.get(listener, "sasl.enabled.mechanisms") {
            Some(m) => {
                let list: Vec<String> = m
                    .value
                    .split(',')
                    .map(|x| x.trim().to_ascii_uppercase())
                    .filter(|x| !x.is_empty())
                    .collect();
                if list.is_empty() {
                    return Err(bad(m.key, m.value, "no mechanism enabled"));
                }
                if let Some(other) = list.iter().find(|x| *x != "PLAIN") {
                    return Err(bad(
                        m.key,
                        m.value,
                        format!("{other} is not served yet: Sluice speaks SASL/PLAIN"),
                    ));
                }
                list
            }
            None if jaas.is_some() => vec!["PLAIN".into()],
            None => {
                return Err(bad(
                    "sasl.enabled.mechanisms",
                    "",
                    format!(
                        "listener {listener} speaks SASL: set sasl.enabled.mechanisms=PLAIN and listener.name.{}.plain.sasl.jaas.config",
                        listener.to_ascii_lowercase()
                    ),
                ))
            }
        };
        let jaas = jaas.ok_or_else(|| {
            bad(
                &format!(
                    "listener.name.{}.plain.sasl.jaas.config",
                    listener.to_ascii_lowercase()
                ),
                "",
                "PLAIN is enabled but no JAAS config lists its users",
            )
        })?;
        let entries = jaas::parse(jaas.value).map_err(|e| bad(jaas.key, "(hidden)", e))?;
        let entry = entries
            .iter()
            .find(|e| e.module == PLAIN_LOGIN_MODULE)
            .ok_or_else(|| {
                bad(
                    jaas.key,
                    "(hidden)",
                    format!("no {PLAIN_LOGIN_MODULE} entry"),
                )
            })?;
        let plain_users: BTreeMap<String, String> = entry
            .options
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_string(), v.clone())))
            .collect();
        if plain_users.is_empty() {
            return Err(bad(
                jaas.key,
                "(hidden)",
                "no user_<name>=\"<password>\" option: nobody could log in",
            ));
        }
        Ok(SaslConfig {
            mechanisms,
            plain_users,
        })
    }
}

// Values of JAAS keys hold passwords: errors print "(hidden)" instead.
fn bad(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// The answer to a SaslHandshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeAnswer {
    /// 0, UNSUPPORTED_SASL_MECHANISM or ILLEGAL_SASL_STATE.
    pub error_code: i16,
    /// The listener's enabled mechanisms.
    pub mechanisms: Vec<String>,
}

/// What a client's token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// Authenticated: send `response`, then serve the connection as `principal`.
    Authenticated {
        /// The principal.
        principal: KafkaPrincipal,
        /// The server's last message (empty for PLAIN).
        response: Vec<u8>,
    },
    /// Refused: send the error (SaslAuthenticate only), then close the connection.
    Failed {
        /// SASL_AUTHENTICATION_FAILED or ILLEGAL_SASL_STATE.
        error_code: i16,
        /// Kafka's message.
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before SaslHandshake (ApiVersions may come first).
    Handshake,
    /// After a handshake for PLAIN: its one token. `raw`: SaslHandshake v0, so the token
    /// comes as a bare size-prefixed frame, not in a SaslAuthenticate request.
    Token { raw: bool },
    /// Authenticated, refused or broken: nothing more is taken.
    Finished,
}

/// One connection's SASL exchange (Kafka's `SaslServerAuthenticator`, without the I/O).
#[derive(Debug)]
pub struct Authenticator<'a> {
    config: &'a SaslConfig,
    state: State,
}

impl<'a> Authenticator<'a> {
    /// A new exchange on a listener with `config`.
    pub fn new(config: &'a SaslConfig) -> Authenticator<'a> {
        Authenticator {
            config,
            state: State::Handshake,
        }
    }

    /// Whether the next frame is a bare token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        self.state == State::Token { raw: true }
    }

    /// Whether a SaslAuthenticate request is expected next.
    pub fn expects_authenticate(&self) -> bool {
        self.state == State::Token { raw: false }
    }

    /// Whether a SaslHandshake (or ApiVersions) is expected next.
    pub fn expects_handshake(&self) -> bool {
        self.state == State::Handshake
    }

    /// A SaslHandshake at `version` for `mechanism`. A non-zero error code means the
    /// connection closes once the answer is sent (Kafka does so).
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> HandshakeAnswer {
        let mechanisms = self.config.mechanisms.clone();
        let error_code = if self.state != State::Handshake {
            self.state = State::Finished;
            codes::ILLEGAL_SASL_STATE
        } else if self.config.mechanisms.iter().any(|m| m == mechanism) {
            self.state = State::Token { raw: version == 0 };
            0
        } else {
            self.state = State::Finished;
            codes::UNSUPPORTED_SASL_MECHANISM
        };
        HandshakeAnswer {
            error_code,
            mechanisms,
        }
    }

    /// The client's token (PLAIN has exactly one).
    pub fn token(&mut self, token: &[u8]) -> TokenOutcome {
        if !matches!(self.state, State::Token { .. }) {
            self.state = State::Finished;
            return TokenOutcome::Failed {
                error_code: codes::ILLEGAL_SASL_STATE,
                message: "Unexpected SASL token before the handshake or after the exchange".into(),
            };
        }
        self.state = State::Finished;
        match plain::authenticate(&self.config.plain_users, token) {
            Ok(user) => TokenOutcome::Authenticated {
                principal: KafkaPrincipal::user(user),
                response: Vec::new(),
            },
            Err(message) => TokenOutcome::Failed {
                error_code: codes::SASL_AUTHENTICATION_FAILED,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests;
