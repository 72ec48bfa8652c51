//! PEM keystores and truststores (`ssl.keystore.type=PEM`): a private key and its chain, or
//! trusted certificates, from a file or inline in the config. Inline PEM may lose its line
//! breaks in a properties file; like Kafka, only the base64 between the markers matters, so
//! blocks are re-wrapped before parsing.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Re-wraps each `-----BEGIN X-----...-----END X-----` block of `text` as standard PEM, so
/// that a block written on one line (spaces instead of line breaks) parses.
pub fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = body_start.find(&end_marker) else {
            break;
        };
        let body: String = body_start[..body_end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        for line in body.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(&end_marker);
        out.push('\n');
        rest = &body_start[body_end + end_marker.len()..];
    }
    out
}

/// Why a PEM store could not be read (the caller names the key).
pub type PemError = String;

/// Every certificate of `text`, in order.
pub fn certificates(text: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = normalize(text);
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block".into());
    }
    Ok(certs)
}

/// The private key of `text` (PKCS#8, PKCS#1 or SEC1). `password`: `ssl.key.password`.
pub fn private_key(text: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, PemError> {
    let pem = normalize(text);
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(match password {
            Some(_) => "encrypted private keys (ssl.key.password) are not supported: store the key decrypted (openssl pkcs8 -in key.pem -out key-plain.pem) and protect the file".into(),
            None => "the private key is encrypted, and encrypted keys are not supported: store it decrypted (openssl pkcs8 -in key.pem -out key-plain.pem)".into(),
        });
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no private key (PKCS#8, RSA or EC PEM block): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_on_one_line_is_rewrapped() {
        let one_line = "junk -----BEGIN CERTIFICATE----- QUJD REVG -----END CERTIFICATE----- tail";
        assert_eq!(
            normalize(one_line),
            "-----BEGIN CERTIFICATE-----\nQUJDREVG\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            certificates(one_line)
                .expect("one")
                .first()
                .map(|c| c.to_vec()),
            Some(b"ABCDEF".to_vec())
        );
        assert!(certificates("nothing").is_err());
    }

    #[test]
    fn an_encrypted_key_is_refused_with_the_reason() {
        let text =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nQUJD\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = private_key(text, Some("secret")).expect_err("encrypted");
        assert!(e.contains("ssl.key.password"), "{e}");
        assert!(private_key(text, None).is_err());
    }
}
