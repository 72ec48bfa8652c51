//! Who is asking: the authenticated session of a connection, which every handler receives
//! and none builds. A connection starts anonymous; TLS client certificates and SASL (the
//! listener's security protocol) replace its principal before any other request is served.
//!
//! - [`authorizer`]: Kafka's StandardAuthorizer rules, a pure function of the ACLs.
//! - [`access`]: what handlers call to check a resource and operation for their session.

use std::fmt;

pub mod access;
mod authenticate;
pub mod authorizer;
#[cfg(test)]
mod enforcement_tests;
pub mod jaas;
mod listener;
pub mod principal_mapper;
mod protocol;
pub mod sasl;
pub mod settings;
pub mod tls;

pub use listener::ListenerSecurity;
pub use protocol::SecurityProtocol;

/// A Kafka principal, `User:alice` (`KafkaPrincipal` in Kafka: a type and a name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaPrincipal {
    /// The principal type; Kafka's authorizer knows only `User`.
    pub principal_type: String,
    /// The name: a SASL user name, or the name a certificate's DN maps to.
    pub name: String,
}

impl KafkaPrincipal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> KafkaPrincipal {
        KafkaPrincipal {
            principal_type: "User".into(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`: a connection on a PLAINTEXT listener, or an SSL one without a
    /// client certificate.
    pub fn anonymous() -> KafkaPrincipal {
        KafkaPrincipal::user("ANONYMOUS")
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// One connection's session, as handlers see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who the connection authenticated as.
    pub principal: KafkaPrincipal,
    /// The listener it came in on (Metadata answers with that listener's addresses).
    pub listener: &'static str,
    /// The client's address, `/10.0.0.7` as Kafka prints it (DescribeGroups, ACL host match).
    pub client_host: String,
}

impl Session {
    /// An unauthenticated session on `listener` from `client_host`.
    pub fn anonymous(listener: &'static str, client_host: String) -> Session {
        Session {
            principal: KafkaPrincipal::anonymous(),
            listener,
            client_host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_print_as_kafka_does() {
        assert_eq!(KafkaPrincipal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(KafkaPrincipal::user("alice").to_string(), "User:alice");
    }
}
