//! Kafka's listener keys: `listeners` (any names), `advertised.listeners`,
//! `listener.security.protocol.map`, and `inter.broker.listener.name` /
//! `security.inter.broker.protocol`. Names are case-insensitive, as Kafka normalises them to
//! upper case. The `CONTROLLER` listener (the metadata quorum's Raft RPCs) is kept apart.

use std::collections::BTreeMap;

use super::{bad, ConfigError};
use crate::security::SecurityProtocol;

/// The listener serving the metadata quorum (`controller.listener.names`).
pub const CONTROLLER: &str = "CONTROLLER";

/// One listener: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener's name, upper case (`PLAINTEXT`, `INTERNAL`, `CLIENT_TLS`, ...).
    pub name: String,
    /// Host to bind or advertise.
    pub host: String,
    /// Port (0 = any free port when binding).
    pub port: u16,
}

impl Listener {
    fn parse(key: &str, value: &str) -> Result<Listener, ConfigError> {
        let (name, rest) = value
            .split_once("://")
            .ok_or_else(|| bad(key, value, "expected NAME://HOST:PORT"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad(key, value, "expected NAME://HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad(key, value, "port is not a number"))?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(
                key,
                value,
                "a listener name is letters, digits, _ and -",
            ));
        }
        Ok(Listener {
            name,
            host: host.trim_matches(['[', ']']).into(),
            port,
        })
    }

    /// `NAME://host:port`.
    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.name, self.host, self.port)
    }
}

/// The listener keys, as set; [`ListenerSettings::check`] validates them together.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// `listeners` without the controller's: the Kafka protocol listeners, in order.
    pub kafka: Vec<Listener>,
    /// `advertised.listeners` without the controller's.
    pub advertised: Vec<Listener>,
    /// `listener.security.protocol.map` when set (it then replaces the default map).
    pub protocol_map: Option<BTreeMap<String, SecurityProtocol>>,
    /// `inter.broker.listener.name`, when set.
    pub inter_broker_listener_name: Option<String>,
    /// `security.inter.broker.protocol`, when set.
    pub security_inter_broker_protocol: Option<SecurityProtocol>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            kafka: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092,
            }],
            advertised: Vec::new(),
            protocol_map: None,
            inter_broker_listener_name: None,
            security_inter_broker_protocol: None,
        }
    }
}

/// A comma-separated listener list: at most one entry of each name.
pub(super) fn parse_list(key: &str, v: &str) -> Result<Vec<Listener>, ConfigError> {
    let list = v
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Listener::parse(key, l))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, l) in list.iter().enumerate() {
        if list[..i].iter().any(|o| o.name == l.name) {
            return Err(bad(key, v, format!("more than one {} listener", l.name)));
        }
    }
    Ok(list)
}

/// Parses `listener.security.protocol.map`: `CLIENT:SASL_SSL,REPLICATION:SSL`.
pub(super) fn parse_protocol_map(
    key: &str,
    v: &str,
) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| bad(key, v, format!("{entry:?} is not LISTENER_NAME:PROTOCOL")))?;
        let protocol: SecurityProtocol = protocol.parse().map_err(|e: String| bad(key, v, e))?;
        if map
            .insert(name.trim().to_ascii_uppercase(), protocol)
            .is_some()
        {
            return Err(bad(key, v, format!("{name} is mapped twice")));
        }
    }
    Ok(map)
}

impl ListenerSettings {
    /// The security protocol of listener `name`: from `listener.security.protocol.map` when
    /// set, else Kafka's default map (each protocol's own name), where Sluice's INTERNAL and
    /// CONTROLLER listener names are PLAINTEXT.
    pub fn protocol(&self, name: &str) -> Option<SecurityProtocol> {
        match &self.protocol_map {
            Some(map) => map.get(name).copied(),
            None => match name {
                "INTERNAL" | CONTROLLER => Some(SecurityProtocol::Plaintext),
                _ => name.parse().ok(),
            },
        }
    }

    /// The listener other brokers replicate from: `inter.broker.listener.name`, else the
    /// one named after `security.inter.broker.protocol` (PLAINTEXT by default), as Kafka.
    pub fn inter_broker_listener(&self) -> String {
        match (
            &self.inter_broker_listener_name,
            self.security_inter_broker_protocol,
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(p)) => p.name().to_string(),
            (None, None) => "PLAINTEXT".into(),
        }
    }

    /// The address to advertise for `listener`, bound on `bound_port`: its
    /// `advertised.listeners` entry, else its bind address (a wildcard host advertises
    /// localhost).
    pub fn advertised_address(&self, listener: &Listener, bound_port: u16) -> (String, u16) {
        match self.advertised.iter().find(|a| a.name == listener.name) {
            Some(a) => (a.host.clone(), a.port),
            None => {
                let host = match listener.host.as_str() {
                    "" | "0.0.0.0" | "::" => "localhost".to_string(),
                    h => h.to_string(),
                };
                (host, bound_port)
            }
        }
    }

    /// Checks the keys together. `cluster`: whether other brokers replicate from this one.
    pub fn check(&self, controller: Option<&Listener>, cluster: bool) -> Result<(), ConfigError> {
        let map_key = "listener.security.protocol.map";
        if self.kafka.is_empty() {
            return Err(bad(
                "listeners",
                "",
                "no listener for clients: add one besides CONTROLLER",
            ));
        }
        for l in self.kafka.iter().chain(controller) {
            if self.protocol(&l.name).is_none() {
                return Err(bad(
                    map_key,
                    &self.describe_map(),
                    format!("listener {} has no security protocol in the map", l.name),
                ));
            }
        }
        if let Some(c) = controller {
            if self.protocol(&c.name) != Some(SecurityProtocol::Plaintext) {
                return Err(bad(
                    map_key,
                    &self.describe_map(),
                    "the CONTROLLER listener (Raft RPCs of the metadata quorum) is PLAINTEXT only",
                ));
            }
        }
        for a in &self.advertised {
            if !self.kafka.iter().any(|l| l.name == a.name) {
                return Err(bad(
                    "advertised.listeners",
                    &a.url(),
                    format!("listeners has no {} listener", a.name),
                ));
            }
        }
        let explicit = match (
            &self.inter_broker_listener_name,
            self.security_inter_broker_protocol,
        ) {
            (Some(name), Some(p)) => {
                return Err(bad(
                    "inter.broker.listener.name",
                    name,
                    format!("security.inter.broker.protocol={p} is set too: set only one of them"),
                ))
            }
            (Some(_), None) => Some("inter.broker.listener.name"),
            (None, Some(_)) => Some("security.inter.broker.protocol"),
            (None, None) => None,
        };
        let name = self.inter_broker_listener();
        if explicit.is_some() || cluster {
            let key = explicit.unwrap_or("inter.broker.listener.name");
            if !self.kafka.iter().any(|l| l.name == name) {
                return Err(bad(
                    key,
                    &name,
                    "the inter-broker listener must be one of listeners",
                ));
            }
            if cluster && self.protocol(&name) != Some(SecurityProtocol::Plaintext) {
                return Err(bad(
                    key,
                    &name,
                    "replication between brokers runs over a PLAINTEXT listener only, for now",
                ));
            }
        }
        Ok(())
    }

    fn describe_map(&self) -> String {
        match &self.protocol_map {
            Some(m) => m
                .iter()
                .map(|(n, p)| format!("{n}:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            None => {
                "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL".into()
            }
        }
    }

    /// `listeners` as Kafka prints it.
    pub fn describe(&self, controller: Option<&Listener>) -> String {
        self.kafka
            .iter()
            .chain(controller)
            .map(Listener::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
