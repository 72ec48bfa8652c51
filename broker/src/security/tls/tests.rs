use std::path::{Path, PathBuf};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::*;

/// A test PKI made by scripts/make-test-certs.sh.
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-certs.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .status()
        .expect("run make-test-certs.sh");
    assert!(ok.success(), "make-test-certs.sh failed");
    dir
}

fn settings(pairs: &[(&str, String)]) -> SecuritySettings {
    let mut s = SecuritySettings::default();
    for (k, v) in pairs {
        s.set(k, v).expect(k);
    }
    s
}

fn client(dir: &Path, cert: Option<&str>) -> TlsConnector {
    client_of(&[dir], cert)
}

/// A client trusting the CAs of `dirs`, with the certificate `cert` of the first.
fn client_of(dirs: &[&Path], cert: Option<&str>) -> TlsConnector {
    let dir = dirs[0];
    let mut roots = RootCertStore::empty();
    for d in dirs {
        let ca = std::fs::read_to_string(d.join("ca.pem")).expect("ca");
        for c in pem::certificates(&ca).expect("ca pem") {
            roots.add(c).expect("root");
        }
    }
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match cert {
        None => b.with_no_client_auth(),
        Some(name) => {
            let text =
                std::fs::read_to_string(dir.join(format!("{name}-keystore.pem"))).expect("ks");
            b.with_client_auth_cert(
                pem::certificates(&text).expect("chain"),
                pem::private_key(&text, None).expect("key"),
            )
            .expect("client cert")
        }
    };
    TlsConnector::from(Arc::new(config))
}

/// Handshakes over an in-memory pipe; returns the server's certificate as the client saw
/// it and the client's certificate subject as the server saw it, or the failure.
async fn handshake(
    acceptor: TlsAcceptor,
    connector: TlsConnector,
) -> Result<(Vec<u8>, Option<String>), String> {
    let (c, s) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move { acceptor.accept(s).await });
    let name = ServerName::try_from("localhost").expect("name");
    let client = connector.connect(name, c).await;
    let server = server.await.expect("join");
    let server = server.map_err(|e| format!("server: {e}"))?;
    let client = client.map_err(|e| format!("client: {e}"))?;
    let served = client.get_ref().1.peer_certificates().expect("server cert")[0].to_vec();
    let subject = server
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| dn::subject(c));
    Ok((served, subject))
}

fn der_of(path: PathBuf) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("read");
    pem::certificates(&text).expect("pem")[0].to_vec()
}

#[tokio::test]
async fn a_renewed_keystore_is_served_without_a_restart() {
    let dir = pki();
    let ks = dir.path().join("listener-keystore.pem");
    std::fs::copy(dir.path().join("server-keystore.pem"), &ks).expect("copy");
    let s = settings(&[("ssl.keystore.location", ks.display().to_string())]);
    let tls = TlsSettings::resolve(&s, "SSL").expect("settings");
    let acceptor = ReloadingAcceptor::new("SSL", tls, Duration::ZERO).expect("loads");
    let (served, _) = handshake(acceptor.acceptor(), client(dir.path(), None))
        .await
        .expect("handshake");
    assert_eq!(served, der_of(dir.path().join("server.pem")));

    // Renewal: a new key and certificate for the same name (from a CA the client trusts too).
    let renewed = pki();
    let both = [dir.path(), renewed.path()];
    let key = std::fs::read_to_string(renewed.path().join("server.key")).expect("key");
    let cert = std::fs::read_to_string(renewed.path().join("server.pem")).expect("cert");
    std::fs::write(&ks, format!("{key}{cert}")).expect("write");
    let later = SystemTime::now() + Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&ks)
        .and_then(|f| f.set_modified(later))
        .expect("touch");
    let (served, _) = handshake(acceptor.acceptor(), client_of(&both, None))
        .await
        .expect("handshake after renewal");
    assert_eq!(served, der_of(renewed.path().join("server.pem")));

    // A broken store keeps the previous certificate.
    std::fs::write(&ks, "not pem").expect("write");
    std::fs::File::options()
        .write(true)
        .open(&ks)
        .and_then(|f| f.set_modified(later + Duration::from_secs(10)))
        .expect("touch");
    let (served, _) = handshake(acceptor.acceptor(), client_of(&both, None))
        .await
        .expect("handshake with the previous store");
    assert_eq!(served, der_of(renewed.path().join("server.pem")));
}

#[tokio::test]
async fn client_auth_required_takes_only_certificates_of_the_truststore() {
    let dir = pki();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let s = settings(&[
        (
            "listener.name.ssl.ssl.keystore.location",
            p("server-keystore.pem"),
        ),
        ("ssl.truststore.location", p("ca.pem")),
        ("ssl.client.auth", "required".into()),
    ]);
    let tls = TlsSettings::resolve(&s, "SSL").expect("settings");
    let acceptor = ReloadingAcceptor::new("SSL", tls, RELOAD_CHECK).expect("loads");
    let (_, subject) = handshake(acceptor.acceptor(), client(dir.path(), Some("client")))
        .await
        .expect("a client of the CA");
    assert_eq!(subject.as_deref(), Some("CN=client,O=Sluice"));
    let e = handshake(
        acceptor.acceptor(),
        client(dir.path(), Some("other-client")),
    )
    .await
    .expect_err("another CA's client");
    assert!(e.contains("server"), "{e}");
    handshake(acceptor.acceptor(), client(dir.path(), None))
        .await
        .expect_err("no certificate");

    let s = settings(&[
        ("ssl.keystore.location", p("server-keystore.pem")),
        ("ssl.truststore.location", p("ca.pem")),
        ("ssl.client.auth", "requested".into()),
    ]);
    let acceptor = ReloadingAcceptor::new(
        "SSL",
        TlsSettings::resolve(&s, "SSL").expect("ok"),
        RELOAD_CHECK,
    )
    .expect("loads");
    let (_, subject) = handshake(acceptor.acceptor(), client(dir.path(), None))
        .await
        .expect("requested: no certificate is fine");
    assert_eq!(subject, None);
}

#[test]
fn inline_pem_on_one_line_loads_and_bad_stores_name_their_key() {
    let dir = pki();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("read");
    let one_line = |t: String| t.replace('\n', " ");
    let s = settings(&[
        ("ssl.keystore.type", "PEM".into()),
        ("ssl.keystore.key", one_line(read("server.key"))),
        (
            "ssl.keystore.certificate.chain",
            one_line(read("server.pem")),
        ),
        ("ssl.truststore.certificates", one_line(read("ca.pem"))),
        ("ssl.client.auth", "required".into()),
    ]);
    TlsSettings::resolve(&s, "SSL")
        .and_then(|t| t.server_config())
        .expect("inline stores load");

    let e = TlsSettings::resolve(&SecuritySettings::default(), "SSL").expect_err("no keystore");
    assert_eq!(e.key, "ssl.keystore.location");
    let e = TlsSettings::resolve(&settings(&[("ssl.keystore.type", "JKS".into())]), "SSL")
        .expect_err("JKS");
    assert_eq!(e.key, "ssl.keystore.type");
    let loc = dir.path().join("server-keystore.pem").display().to_string();
    let e = TlsSettings::resolve(
        &settings(&[
            ("ssl.keystore.location", loc.clone()),
            ("ssl.client.auth", "required".into()),
        ]),
        "SSL",
    )
    .expect_err("required without a truststore");
    assert_eq!(e.key, "ssl.client.auth");
    let e = TlsSettings::resolve(
        &settings(&[
            ("ssl.keystore.location", loc.clone()),
            ("ssl.enabled.protocols", "TLSv1.1".into()),
        ]),
        "SSL",
    )
    .expect_err("TLS 1.1");
    assert_eq!(e.key, "ssl.enabled.protocols");

    let encrypted = dir.path().join("encrypted.pem");
    let ok = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-passout", "pass:secret", "-in"])
        .arg(dir.path().join("server.key"))
        .arg("-out")
        .arg(&encrypted)
        .status()
        .expect("openssl");
    assert!(ok.success());
    std::fs::write(
        &encrypted,
        format!("{}{}", read("encrypted.pem"), read("server.pem")),
    )
    .expect("write");
    let e = TlsSettings::resolve(
        &settings(&[
            (
                "listener.name.ssl.ssl.keystore.location",
                encrypted.display().to_string(),
            ),
            ("ssl.key.password", "secret".into()),
        ]),
        "SSL",
    )
    .and_then(|t| t.server_config())
    .expect_err("encrypted key");
    assert_eq!(e.key, "listener.name.ssl.ssl.keystore.location");
    assert!(e.reason.contains("ssl.key.password"), "{e}");
}
