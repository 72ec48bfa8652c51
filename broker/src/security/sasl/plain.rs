//! SASL/PLAIN (RFC 4616) on the server side, with Kafka's `PlainSaslServer` messages: the
//! client's one message is `[authzid] NUL authcid NUL passwd`, checked against the
//! `user_<name>="<password>"` options of the listener's JAAS config.

use std::collections::BTreeMap;

/// Kafka's answer to a wrong password or an unknown user: the same for both, so a client
/// cannot tell which user names exist.
pub const INVALID_CREDENTIALS: &str = "Authentication failed: Invalid username or password";

/// Checks one PLAIN client message; the user name on success, Kafka's message otherwise.
pub fn authenticate(users: &BTreeMap<String, String>, token: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(token)
        .map_err(|_| "Invalid SASL/PLAIN response: not UTF-8".to_string())?;
    let parts: Vec<&str> = text.split('\0').collect();
    let [authzid, username, password] = parts[..] else {
        return Err(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        ));
    };
    if username.is_empty() {
        return Err("Authentication failed: username not specified".into());
    }
    if password.is_empty() {
        return Err("Authentication failed: password not specified".into());
    }
    // Compare against a dummy for unknown users too, so both paths cost the same.
    let expected = users.get(username);
    let matches = constant_time_eq(
        expected.map_or(b"\0unknown".as_slice(), |p| p.as_bytes()),
        password.as_bytes(),
    );
    if expected.is_none() || !matches {
        return Err(INVALID_CREDENTIALS.into());
    }
    if !authzid.is_empty() && authzid != username {
        return Err(
            "Authentication failed: Client requested an authorization id that is different from username"
                .into(),
        );
    }
    Ok(username.to_string())
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..n {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("admin".to_string(), "admin-secret".to_string()),
            ("alice".to_string(), "alice-secret".to_string()),
        ])
    }

    #[test]
    fn the_right_password_authenticates_the_user() {
        assert_eq!(
            authenticate(&users(), b"\0alice\0alice-secret").as_deref(),
            Ok("alice")
        );
        assert_eq!(
            authenticate(&users(), b"alice\0alice\0alice-secret").as_deref(),
            Ok("alice")
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        for token in [
            &b"\0alice\0admin-secret"[..],
            b"\0alice\0alice-secre",
            b"\0alice\0alice-secrett",
            b"\0mallory\0alice-secret",
        ] {
            assert_eq!(
                authenticate(&users(), token),
                Err(INVALID_CREDENTIALS.to_string()),
                "{token:?}"
            );
        }
    }

    #[test]
    fn malformed_messages_get_kafkas_reasons() {
        let cases: [(&[u8], &str); 5] = [
            (b"alice", "Invalid SASL/PLAIN response: expected 3 tokens, got 1"),
            (b"\0\0x", "Authentication failed: username not specified"),
            (b"\0alice\0", "Authentication failed: password not specified"),
            (b"\xff\0a\0b", "Invalid SASL/PLAIN response: not UTF-8"),
            (
                b"admin\0alice\0alice-secret",
                "Authentication failed: Client requested an authorization id that is different from username",
            ),
        ];
        for (token, reason) in cases {
            assert_eq!(authenticate(&users(), token), Err(reason.to_string()));
        }
    }
}
