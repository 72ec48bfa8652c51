//! Any bytes from an unauthenticated client: a SASL exchange driven by them (handshakes and
//! tokens in any order), and the parsers of client-supplied data (a certificate's subject
//! DN, a PLAIN token) and of the JAAS text. Nothing may panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sluice_broker::security::sasl::{plain, Authenticator, SaslConfig};
use sluice_broker::security::{jaas, tls::dn};

fuzz_target!(|data: &[u8]| {
    let _ = dn::subject(data);
    let _ = jaas::parse(&String::from_utf8_lossy(data));
    let config = SaslConfig {
        mechanisms: vec!["PLAIN".into()],
        plain_users: BTreeMap::from([("alice".to_string(), "alice-secret".to_string())]),
    };
    let _ = plain::authenticate(&config.plain_users, data);
    let mut auth = Authenticator::new(&config);
    // Messages separated by 0xff: the first byte of each picks handshake v0/v1 or a token.
    for msg in data.split(|b| *b == 0xff) {
        let Some((&op, rest)) = msg.split_first() else {
            continue;
        };
        match op % 3 {
            0 => {
                let _ = auth.handshake(&String::from_utf8_lossy(rest), 0);
            }
            1 => {
                let _ = auth.handshake(&String::from_utf8_lossy(rest), 1);
            }
            _ => {
                let _ = auth.token(rest);
            }
        }
    }
});
