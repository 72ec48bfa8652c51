use super::*;

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";"#;

fn config() -> SaslConfig {
    let mut s = SecuritySettings::default();
    s.set("listener.name.sasl_ssl.plain.sasl.jaas.config", JAAS)
        .expect("jaas");
    SaslConfig::resolve(&s, "SASL_SSL").expect("config")
}

#[test]
fn a_plain_jaas_config_enables_plain_with_its_users() {
    let c = config();
    assert_eq!(c.mechanisms, ["PLAIN"]);
    assert_eq!(c.plain_users.keys().collect::<Vec<_>>(), ["admin", "alice"]);
    let mut s = SecuritySettings::default();
    s.set("sasl.jaas.config", JAAS).expect("jaas");
    s.set("sasl.enabled.mechanisms", "plain").expect("mechs");
    assert_eq!(
        SaslConfig::resolve(&s, "SASL_PLAINTEXT").expect("global jaas"),
        c
    );
}

#[test]
fn unserved_mechanisms_and_missing_users_are_config_errors_naming_the_key() {
    let mut s = SecuritySettings::default();
    let e = SaslConfig::resolve(&s, "SASL_SSL").expect_err("nothing set");
    assert_eq!(e.key, "sasl.enabled.mechanisms");
    s.set(
        "listener.name.sasl_ssl.sasl.enabled.mechanisms",
        "PLAIN,SCRAM-SHA-256",
    )
    .expect("set");
    let e = SaslConfig::resolve(&s, "SASL_SSL").expect_err("scram");
    assert_eq!(e.key, "listener.name.sasl_ssl.sasl.enabled.mechanisms");
    assert!(e.reason.contains("SCRAM-SHA-256"), "{e}");
    s.set("listener.name.sasl_ssl.sasl.enabled.mechanisms", "PLAIN")
        .expect("set");
    let e = SaslConfig::resolve(&s, "SASL_SSL").expect_err("no jaas");
    assert_eq!(e.key, "listener.name.sasl_ssl.plain.sasl.jaas.config");
    s.set(
        "listener.name.sasl_ssl.plain.sasl.jaas.config",
        r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b";"#,
    )
    .expect("set");
    let e = SaslConfig::resolve(&s, "SASL_SSL").expect_err("no users");
    assert!(e.reason.contains("user_"), "{e}");
    assert!(!e.to_string().contains("password=\"b\""), "{e}");
}

#[test]
fn handshake_v1_then_authenticate_succeeds_as_the_user() {
    let c = config();
    let mut a = Authenticator::new(&c);
    assert!(a.expects_handshake());
    let h = a.handshake("PLAIN", 1);
    assert_eq!(h.error_code, 0);
    assert_eq!(h.mechanisms, ["PLAIN"]);
    assert!(a.expects_authenticate() && !a.expects_raw_token());
    assert_eq!(
        a.token(b"\0alice\0alice-secret"),
        TokenOutcome::Authenticated {
            principal: KafkaPrincipal::user("alice"),
            response: Vec::new()
        }
    );
    assert!(!a.expects_handshake() && !a.expects_authenticate());
    assert!(matches!(
        a.token(b"\0alice\0alice-secret"),
        TokenOutcome::Failed {
            error_code: codes::ILLEGAL_SASL_STATE,
            ..
        }
    ));
}

#[test]
fn handshake_v0_takes_a_raw_token() {
    let c = config();
    let mut a = Authenticator::new(&c);
    assert_eq!(a.handshake("PLAIN", 0).error_code, 0);
    assert!(a.expects_raw_token());
    assert!(matches!(
        a.token(b"\0admin\0admin-secret"),
        TokenOutcome::Authenticated { .. }
    ));
}

#[test]
fn a_wrong_password_fails_with_kafkas_code_and_message() {
    let c = config();
    let mut a = Authenticator::new(&c);
    a.handshake("PLAIN", 1);
    assert_eq!(
        a.token(b"\0alice\0wrong"),
        TokenOutcome::Failed {
            error_code: codes::SASL_AUTHENTICATION_FAILED,
            message: "Authentication failed: Invalid username or password".into()
        }
    );
    assert!(!a.expects_authenticate(), "one try per connection");
}

#[test]
fn an_unenabled_mechanism_or_a_second_handshake_is_refused() {
    let c = config();
    let mut a = Authenticator::new(&c);
    let h = a.handshake("SCRAM-SHA-256", 1);
    assert_eq!(h.error_code, codes::UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(h.mechanisms, ["PLAIN"]);
    assert!(!a.expects_authenticate());
    let mut a = Authenticator::new(&c);
    a.handshake("PLAIN", 1);
    assert_eq!(
        a.handshake("PLAIN", 1).error_code,
        codes::ILLEGAL_SASL_STATE
    );
    let mut a = Authenticator::new(&c);
    assert!(matches!(
        a.token(b"\0alice\0alice-secret"),
        TokenOutcome::Failed {
            error_code: codes::ILLEGAL_SASL_STATE,
            ..
        }
    ));
}
