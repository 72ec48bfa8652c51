//! `SecuritySettings`: the `ssl.*` and `sasl.*` keys as given, each also settable per
//! listener as `listener.name.<listener>.<key>`, which takes precedence (Kafka's rule).
//! The keys are checked when set; their values when the listener that uses them is built.

use std::collections::BTreeMap;

use crate::config::ConfigError;

/// The security keys a listener reads (Kafka's names; PEM stores only).
const KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
    "sasl.jaas.config",
    "sasl.mechanism.inter.broker.protocol",
];

/// The mechanisms whose `<mechanism>.sasl.jaas.config` a listener may carry.
const MECHANISM_PREFIXES: &[&str] = &[
    "plain.",
    "scram-sha-256.",
    "scram-sha-512.",
    "oauthbearer.",
    "gssapi.",
];

/// A security setting's value and the key it was given under (errors name that key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<'a> {
    /// The key as given: `listener.name.sasl_ssl.ssl.keystore.location`.
    pub key: &'a str,
    /// Its value.
    pub value: &'a str,
}

/// The security keys as given.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    props: BTreeMap<String, String>,
}

impl SecuritySettings {
    /// Whether `key` is a security key (then [`SecuritySettings::set`] takes it or refuses it).
    pub fn claims(key: &str) -> bool {
        key.starts_with("ssl.") || key.starts_with("sasl.") || key.starts_with("listener.name.")
    }

    /// Stores `key=value`, refusing keys Sluice does not read.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let refuse = |reason: &str| ConfigError {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let bare = match key.strip_prefix("listener.name.") {
            None => key,
            Some(rest) => {
                let (listener, bare) = rest
                    .split_once('.')
                    .ok_or_else(|| refuse("expected listener.name.<listener>.<key>"))?;
                if listener.is_empty() {
                    return Err(refuse("expected listener.name.<listener>.<key>"));
                }
                match MECHANISM_PREFIXES.iter().find(|m| bare.starts_with(*m)) {
                    Some(m) if &bare[m.len()..] == "sasl.jaas.config" => "sasl.jaas.config",
                    _ => bare,
                }
            }
        };
        if !KEYS.contains(&bare) {
            return Err(refuse("unknown configuration key"));
        }
        let stored = match key.strip_prefix("listener.name.") {
            // Kafka's listener prefix is the lower-case name; accept any case.
            Some(rest) => {
                let (listener, bare) = rest.split_once('.').unwrap_or((rest, ""));
                format!("listener.name.{}.{bare}", listener.to_ascii_lowercase())
            }
            None => key.to_string(),
        };
        self.props.insert(stored, value.to_string());
        Ok(())
    }

    /// `key` for `listener`: `listener.name.<listener>.<key>` if set, else `key`.
    pub fn get(&self, listener: &str, key: &str) -> Option<Setting<'_>> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.props
            .get_key_value(&prefixed)
            .or_else(|| self.props.get_key_value(key))
            .map(|(k, v)| Setting {
                key: k.as_str(),
                value: v.as_str(),
            })
    }

    /// `key` for `listener` with Kafka's default when unset (`key` names it in errors).
    pub fn get_or<'a>(&'a self, listener: &str, key: &'a str, default: &'a str) -> Setting<'a> {
        self.get(listener, key).unwrap_or(Setting {
            key,
            value: default,
        })
    }

    /// Only `listener.name.<listener>.<key>`: the mechanism-specific JAAS configs, which
    /// Kafka reads per listener only.
    pub fn get_prefixed(&self, listener: &str, key: &str) -> Option<Setting<'_>> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.props.get_key_value(&prefixed).map(|(k, v)| Setting {
            key: k.as_str(),
            value: v.as_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_prefixed_keys_take_precedence_and_unknown_ones_are_refused() {
        let mut s = SecuritySettings::default();
        s.set("ssl.client.auth", "requested").expect("global");
        s.set("listener.name.SASL_SSL.ssl.client.auth", "required")
            .expect("prefixed, any case");
        s.set(
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "x required;",
        )
        .expect("mechanism jaas");
        assert_eq!(
            s.get("SASL_SSL", "ssl.client.auth"),
            Some(Setting {
                key: "listener.name.sasl_ssl.ssl.client.auth",
                value: "required"
            })
        );
        assert_eq!(
            s.get("SSL", "ssl.client.auth").map(|v| v.value),
            Some("requested")
        );
        assert!(s.get_prefixed("SSL", "plain.sasl.jaas.config").is_none());
        assert!(s
            .get_prefixed("SASL_SSL", "plain.sasl.jaas.config")
            .is_some());
        assert_eq!(
            s.get_or("SSL", "ssl.keystore.type", "PEM").key,
            "ssl.keystore.type"
        );
        for bad in [
            "ssl.keystore.pasword",
            "listener.name.x.ssl.nope",
            "listener.name..ssl.client.auth",
            "sasl.kerberos.service.name",
        ] {
            let e = s.set(bad, "v").expect_err(bad);
            assert_eq!(e.key, bad);
        }
    }
}
