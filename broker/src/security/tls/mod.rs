//! TLS on SSL and SASL_SSL listeners, with rustls: the listener's PEM keystore and
//! truststore (Kafka's `ssl.*` keys, listener-prefixed ones first), `ssl.client.auth`, and a
//! renewed certificate picked up without a restart: on accept, at most every
//! [`RELOAD_CHECK`], the store files' modification times are compared and the server
//! config is rebuilt when one changed (a store that fails to load keeps the previous one).

pub mod dn;
pub mod pem;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::settings::{SecuritySettings, Setting};
use crate::config::ConfigError;

/// How often, at most, an accept checks whether the store files changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (Kafka's default).
    None,
    /// Asked for; a client without one connects as `User:ANONYMOUS`.
    Requested,
    /// A client without a certificate signed by the truststore is refused.
    Required,
}

#[derive(Debug, Clone)]
enum Store {
    /// A file: `ssl.keystore.location` / `ssl.truststore.location`.
    File { key: String, path: PathBuf },
    /// Inline PEM: the key, and the chain for a keystore.
    Inline {
        key: String,
        pem: String,
        chain: Option<(String, String)>,
    },
}

/// One listener's TLS settings, resolved from the `ssl.*` keys.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    keystore: Store,
    key_password: Option<String>,
    truststore: Option<Store>,
    client_auth: ClientAuth,
    versions: Vec<&'static SupportedProtocolVersion>,
}

fn bad(s: Setting<'_>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: s.key.into(),
        value: s.value.into(),
        reason: reason.into(),
    }
}

fn pem_only(s: Setting<'_>) -> Result<(), ConfigError> {
    if s.value.eq_ignore_ascii_case("PEM") {
        Ok(())
    } else {
        Err(bad(s, "only PEM stores are supported"))
    }
}

impl TlsSettings {
    /// Reads `listener`'s `ssl.*` keys.
    pub fn resolve(s: &SecuritySettings, listener: &str) -> Result<TlsSettings, ConfigError> {
        pem_only(s.get_or(listener, "ssl.keystore.type", "PEM"))?;
        pem_only(s.get_or(listener, "ssl.truststore.type", "PEM"))?;
        let keystore = match (
            s.get(listener, "ssl.keystore.location"),
            s.get(listener, "ssl.keystore.key"),
            s.get(listener, "ssl.keystore.certificate.chain"),
        ) {
            (Some(loc), None, None) => Store::File {
                key: loc.key.into(),
                path: loc.value.into(),
            },
            (None, Some(key), Some(chain)) => Store::Inline {
                key: key.key.into(),
                pem: key.value.into(),
                chain: Some((chain.key.into(), chain.value.into())),
            },
            (Some(loc), Some(_), _) | (Some(loc), _, Some(_)) => {
                return Err(bad(
                    loc,
                    "set either ssl.keystore.location or ssl.keystore.key with ssl.keystore.certificate.chain, not both",
                ))
            }
            (None, Some(one), None) | (None, None, Some(one)) => {
                return Err(bad(
                    one,
                    "ssl.keystore.key and ssl.keystore.certificate.chain go together",
                ))
            }
            (None, None, None) => {
                return Err(ConfigError {
                    key: "ssl.keystore.location".into(),
                    value: String::new(),
                    reason: format!(
                        "listener {listener} speaks TLS: it needs ssl.keystore.location, or ssl.keystore.key and ssl.keystore.certificate.chain"
                    ),
                })
            }
        };
        let truststore = match (
            s.get(listener, "ssl.truststore.location"),
            s.get(listener, "ssl.truststore.certificates"),
        ) {
            (Some(loc), None) => Some(Store::File {
                key: loc.key.into(),
                path: loc.value.into(),
            }),
            (None, Some(certs)) => Some(Store::Inline {
                key: certs.key.into(),
                pem: certs.value.into(),
                chain: None,
            }),
            (Some(loc), Some(_)) => {
                return Err(bad(
                    loc,
                    "set either ssl.truststore.location or ssl.truststore.certificates",
                ))
            }
            (None, None) => None,
        };
        let auth = s.get_or(listener, "ssl.client.auth", "none");
        let client_auth = match auth.value.trim().to_ascii_lowercase().as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            _ => return Err(bad(auth, "expected none, requested or required")),
        };
        if client_auth != ClientAuth::None && truststore.is_none() {
            return Err(bad(
                auth,
                "client certificates are verified against ssl.truststore.location or ssl.truststore.certificates, and neither is set",
            ));
        }
        let protocols = s.get_or(listener, "ssl.enabled.protocols", "TLSv1.2,TLSv1.3");
        let mut versions = Vec::new();
        for p in protocols
            .value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            versions.push(match p {
                "TLSv1.2" => &rustls::version::TLS12,
                "TLSv1.3" => &rustls::version::TLS13,
                _ => {
                    return Err(bad(
                        protocols,
                        format!("{p} is not served (TLSv1.2 and TLSv1.3 are)"),
                    ))
                }
            });
        }
        if versions.is_empty() {
            return Err(bad(protocols, "no protocol enabled"));
        }
        Ok(TlsSettings {
            keystore,
            key_password: s
                .get(listener, "ssl.key.password")
                .map(|p| p.value.to_string()),
            truststore,
            client_auth,
            versions,
        })
    }

    /// The files whose change triggers a reload.
    fn files(&self) -> Vec<PathBuf> {
        [&self.keystore]
            .into_iter()
            .chain(self.truststore.as_ref())
            .filter_map(|s| match s {
                Store::File { path, .. } => Some(path.clone()),
                Store::Inline { .. } => None,
            })
            .collect()
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.files()
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn read(store: &Store) -> Result<(String, String), ConfigError> {
        match store {
            Store::File { key, path } => std::fs::read_to_string(path)
                .map(|t| (key.clone(), t))
                .map_err(|e| ConfigError {
                    key: key.clone(),
                    value: path.display().to_string(),
                    reason: format!("cannot read: {e}"),
                }),
            Store::Inline { key, pem, .. } => Ok((key.clone(), pem.clone())),
        }
    }

    /// Loads the stores and builds the rustls server config.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let store_err = |key: &str, reason: String| ConfigError {
            key: key.into(),
            value: match &self.keystore {
                Store::File { path, .. } => path.display().to_string(),
                Store::Inline { .. } => "(inline PEM)".into(),
            },
            reason,
        };
        let (key_key, key_text) = Self::read(&self.keystore)?;
        let key: PrivateKeyDer<'static> = pem::private_key(&key_text, self.key_password.as_deref())
            .map_err(|e| store_err(&key_key, e))?;
        let chain: Vec<CertificateDer<'static>> = match &self.keystore {
            Store::Inline {
                chain: Some((chain_key, chain)),
                ..
            } => pem::certificates(chain).map_err(|e| store_err(chain_key, e))?,
            _ => pem::certificates(&key_text).map_err(|e| store_err(&key_key, e))?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&self.versions)
            .map_err(|e| store_err("ssl.enabled.protocols", e.to_string()))?;
        let builder = match (&self.truststore, self.client_auth) {
            (Some(trust), auth) if auth != ClientAuth::None => {
                let (trust_key, text) = Self::read(trust)?;
                let mut roots = RootCertStore::empty();
                for cert in pem::certificates(&text).map_err(|e| store_err(&trust_key, e))? {
                    roots
                        .add(cert)
                        .map_err(|e| store_err(&trust_key, format!("bad CA certificate: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| store_err(&trust_key, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| store_err(&key_key, format!("key and certificate chain: {e}")))?;
        // Kafka speaks no ALPN protocol; leave the list empty.
        config.alpn_protocols.clear();
        Ok(config)
    }
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

/// A listener's TLS acceptor, rebuilt when its store files change.
pub struct ReloadingAcceptor {
    listener: &'static str,
    settings: TlsSettings,
    check_every: Duration,
    loaded: Mutex<Loaded>,
}

impl ReloadingAcceptor {
    /// Loads the stores now (a bad store is a configuration error at startup).
    pub fn new(
        listener: &'static str,
        settings: TlsSettings,
        check_every: Duration,
    ) -> Result<ReloadingAcceptor, ConfigError> {
        let stamps = settings.stamps();
        let config = settings.server_config()?;
        Ok(ReloadingAcceptor {
            listener,
            settings,
            check_every,
            loaded: Mutex::new(Loaded {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The acceptor for a new connection, reloaded first if a store file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut l = self.loaded.lock();
        if l.checked.elapsed() >= self.check_every {
            l.checked = Instant::now();
            let stamps = self.settings.stamps();
            if stamps != l.stamps {
                // Remember the new times even on failure: a half-written store is retried
                // when the writer's next change moves a time again, not every check.
                l.stamps = stamps;
                match self.settings.server_config() {
                    Ok(config) => {
                        l.acceptor = TlsAcceptor::from(Arc::new(config));
                        tracing::info!(
                            listener = self.listener,
                            "reloaded the TLS keystore and truststore"
                        );
                    }
                    Err(e) => tracing::warn!(
                        listener = self.listener,
                        error = %e,
                        "a TLS store changed but does not load; keeping the previous one"
                    ),
                }
            }
        }
        l.acceptor.clone()
    }
}

#[cfg(test)]
mod tests;
