//! `ListenerSecurity`: how one listener turns an accepted TCP connection into a session, by
//! its security protocol: TLS first on SSL and SASL_SSL listeners (the principal then comes
//! from the client certificate), then SASL on SASL_* listeners (the principal is then the
//! SASL user).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::authenticate::authenticate;
use super::principal_mapper::SslPrincipalMapper;
use super::sasl::SaslConfig;
use super::tls::{self, ReloadingAcceptor, TlsSettings};
use super::{KafkaPrincipal, SecurityProtocol, Session};
use crate::config::{BrokerConfig, ConfigError};
use crate::connection::{self, ConnectionError, Shared};

/// A TLS handshake not done by then closes the connection (a client that connects and
/// sends nothing must not hold a connection slot for ever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The same bound for the whole SASL exchange, which takes a few round trips.
const SASL_TIMEOUT: Duration = Duration::from_secs(30);

/// One listener's security: its name, protocol and what they need.
pub struct ListenerSecurity {
    /// The listener's name. Leaked once per listener at bind time, as sessions and metrics
    /// refer to it for the process's life.
    pub name: &'static str,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    tls: Option<Tls>,
    sasl: Option<SaslConfig>,
}

struct Tls {
    acceptor: ReloadingAcceptor,
    mapper: SslPrincipalMapper,
}

impl Tls {
    /// The principal of a client certificate: its subject DN through the mapping rules.
    fn principal(&self, cert_der: &[u8]) -> Result<KafkaPrincipal, String> {
        let dn =
            tls::dn::subject(cert_der).ok_or("the client certificate's subject does not parse")?;
        let name = self
            .mapper
            .name(&dn)
            .map_err(|e| format!("ssl.principal.mapping.rules: {e}"))?;
        Ok(KafkaPrincipal::user(name))
    }
}

impl ListenerSecurity {
    /// Reads the listener's security settings from `config` and loads its stores.
    pub fn build(
        config: &BrokerConfig,
        name: &str,
        protocol: SecurityProtocol,
    ) -> Result<ListenerSecurity, ConfigError> {
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let tls = if protocol.tls() {
            let s = &config.security;
            let rules = s.get_or(name, "ssl.principal.mapping.rules", "DEFAULT");
            let mapper = SslPrincipalMapper::parse(rules.value).map_err(|reason| ConfigError {
                key: rules.key.into(),
                value: rules.value.into(),
                reason,
            })?;
            let settings = TlsSettings::resolve(s, name)?;
            Some(Tls {
                acceptor: ReloadingAcceptor::new(name, settings, tls::RELOAD_CHECK)?,
                mapper,
            })
        } else {
            None
        };
        let sasl = if protocol.sasl() {
            Some(SaslConfig::resolve(&config.security, name)?)
        } else {
            None
        };
        Ok(ListenerSecurity {
            name,
            protocol,
            tls,
            sasl,
        })
    }

    /// Secures and authenticates `tcp` as the listener's protocol says, then serves it.
    /// A failed handshake closes this connection only; the caller logs why, once.
    pub async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        shared: Arc<Shared>,
    ) -> Result<(), ConnectionError> {
        tcp.set_nodelay(true)?;
        let mut session = Session::anonymous(self.name, format!("/{}", peer.ip()));
        let Some(tls) = &self.tls else {
            let mut tcp = tcp;
            if let Some(sasl) = &self.sasl {
                session.principal = sasl_exchange(&mut tcp, &shared, &session, sasl).await?;
            }
            return connection::serve(tcp, shared, session).await;
        };
        let stream = match tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tls.acceptor.acceptor().accept(tcp),
        )
        .await
        {
            Err(_) => return Err(refused("TLS handshake timed out")),
            Ok(Err(e)) => return Err(refused(&format!("TLS handshake failed: {e}"))),
            Ok(Ok(s)) => s,
        };
        let mut stream = stream;
        if let Some(sasl) = &self.sasl {
            // On SASL_SSL the principal is the SASL one, as in Kafka.
            session.principal = sasl_exchange(&mut stream, &shared, &session, sasl).await?;
        } else if let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            session.principal = tls.principal(cert).map_err(|e| refused(&e))?;
        }
        connection::serve(stream, shared, session).await
    }
}

/// Runs the SASL exchange, bounded by [`SASL_TIMEOUT`].
async fn sasl_exchange<S>(
    stream: &mut S,
    shared: &Arc<Shared>,
    session: &Session,
    sasl: &SaslConfig,
) -> Result<KafkaPrincipal, ConnectionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(SASL_TIMEOUT, authenticate(stream, shared, session, sasl)).await {
        Ok(r) => r,
        Err(_) => Err(refused("SASL authentication timed out")),
    }
}

fn refused(reason: &str) -> ConnectionError {
    ConnectionError::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        reason.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_cert_der(dir: &std::path::Path) -> Vec<u8> {
        let text = std::fs::read_to_string(dir.join("client.pem")).expect("client.pem");
        tls::pem::certificates(&text).expect("pem")[0].to_vec()
    }

    #[test]
    fn a_client_certificate_maps_to_its_principal_by_the_listeners_rules() {
        let dir = tempfile::tempdir().expect("tmp");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-certs.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .status()
            .expect("make-test-certs.sh");
        assert!(ok.success());
        let mut c = BrokerConfig::default();
        let ks = dir.path().join("server-keystore.pem").display().to_string();
        c.set("ssl.keystore.location", &ks).expect("keystore");
        let der = client_cert_der(dir.path());

        let l = ListenerSecurity::build(&c, "SSL", SecurityProtocol::Ssl).expect("builds");
        let tls = l.tls.as_ref().expect("tls");
        assert_eq!(
            tls.principal(&der),
            Ok(KafkaPrincipal::user("CN=client,O=Sluice")),
            "DEFAULT: the DN itself"
        );

        c.set(
            "listener.name.ssl.ssl.principal.mapping.rules",
            "RULE:^CN=(.*?),O=Sluice$/$1/U,DEFAULT",
        )
        .expect("rules");
        let l = ListenerSecurity::build(&c, "SSL", SecurityProtocol::Ssl).expect("builds");
        let tls = l.tls.as_ref().expect("tls");
        assert_eq!(tls.principal(&der), Ok(KafkaPrincipal::user("CLIENT")));

        c.set(
            "listener.name.ssl.ssl.principal.mapping.rules",
            "RULE:^CN=(.*?),O=Elsewhere$/$1/",
        )
        .expect("rules");
        let l = ListenerSecurity::build(&c, "SSL", SecurityProtocol::Ssl).expect("builds");
        let e = l
            .tls
            .as_ref()
            .expect("tls")
            .principal(&der)
            .expect_err("no rule");
        assert!(e.contains("No rules apply to CN=client,O=Sluice"), "{e}");

        c.set("listener.name.ssl.ssl.principal.mapping.rules", "RULE:(/x/")
            .expect("set");
        let e = ListenerSecurity::build(&c, "SSL", SecurityProtocol::Ssl)
            .err()
            .expect("a bad rule is a config error");
        assert_eq!(e.key, "listener.name.ssl.ssl.principal.mapping.rules");
    }
}
