//! `ListenerSecurity`: how one listener turns an accepted TCP connection into a session, by
//! its security protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::{SecurityProtocol, Session};
use crate::config::{BrokerConfig, ConfigError};
use crate::connection::{self, ConnectionError, Shared};

/// One listener's security: its name, protocol and what they need.
pub struct ListenerSecurity {
    /// The listener's name. Leaked once per listener at bind time, as sessions and metrics
    /// refer to it for the process's life.
    pub name: &'static str,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
}

impl ListenerSecurity {
    /// Reads the listener's security settings from `config`.
    pub fn build(
        config: &BrokerConfig,
        name: &str,
        protocol: SecurityProtocol,
    ) -> Result<ListenerSecurity, ConfigError> {
        let _ = config;
        if protocol != SecurityProtocol::Plaintext {
            return Err(ConfigError {
                key: "listener.security.protocol.map".into(),
                value: format!("{name}:{protocol}"),
                reason: "not served yet".into(),
            });
        }
        Ok(ListenerSecurity {
            name: Box::leak(name.to_string().into_boxed_str()),
            protocol,
        })
    }

    /// Secures and authenticates `tcp` as the listener's protocol says, then serves it.
    pub async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        shared: Arc<Shared>,
    ) -> Result<(), ConnectionError> {
        tcp.set_nodelay(true)?;
        let session = Session::anonymous(self.name, format!("/{}", peer.ip()));
        connection::serve(tcp, shared, session).await
    }
}
