//! A certificate's subject distinguished name as Kafka prints it: Java's
//! `X500Principal.getName()` (RFC 2253): the last RDN first, `,` between RDNs and `+` inside
//! one, the RFC 2253 keywords (CN, C, L, ST, O, OU, STREET, DC, UID) and any other attribute
//! as its dotted OID with `#` and the hex of its DER value.
//!
//! A minimal DER walk over just the fields before the subject: the certificate already
//! passed rustls' verification, but the walk is written for any bytes (fuzzed by
//! `fuzz/fuzz_targets/sasl_exchange.rs` too) and never panics.

/// One DER element: its tag, its contents and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

fn next<'a>(buf: &mut &'a [u8]) -> Option<Tlv<'a>> {
    let all: &'a [u8] = buf;
    let (&tag, rest) = all.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    let header = all.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        raw: &all[..header + len],
    };
    *buf = &rest[len..];
    Some(tlv)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The subject DN of a DER certificate, or None if the bytes are not one.
pub fn subject(cert_der: &[u8]) -> Option<String> {
    let mut buf = cert_der;
    let cert = next(&mut buf).filter(|t| t.tag == SEQUENCE)?;
    let mut c = cert.content;
    let tbs = next(&mut c).filter(|t| t.tag == SEQUENCE)?;
    let mut t = tbs.content;
    // [0] version (optional), serialNumber, then signature, issuer, validity and subject.
    if next(&mut t)?.tag == 0xa0 {
        next(&mut t)?;
    }
    for _ in 0..3 {
        next(&mut t)?;
    }
    let subject = next(&mut t).filter(|t| t.tag == SEQUENCE)?;
    name(subject.content)
}

/// An RDNSequence's contents in RFC 2253 form.
fn name(mut rdns: &[u8]) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    while !rdns.is_empty() {
        let set = next(&mut rdns).filter(|t| t.tag == SET)?;
        let mut avas = set.content;
        let mut parts = Vec::new();
        while !avas.is_empty() {
            let ava = next(&mut avas).filter(|t| t.tag == SEQUENCE)?;
            let mut a = ava.content;
            let oid = next(&mut a).filter(|t| t.tag == 0x06)?;
            let value = next(&mut a)?;
            parts.push(attribute(&dotted(oid.content)?, &value));
        }
        out.push(parts.join("+"));
    }
    out.reverse();
    Some(out.join(","))
}

fn attribute(oid: &str, value: &Tlv<'_>) -> String {
    let keyword = match oid {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("STREET"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    match (keyword, string_value(value)) {
        (Some(k), Some(s)) => format!("{k}={}", escape(&s)),
        (k, _) => {
            let hex: String = value.raw.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}=#{hex}", k.unwrap_or(oid))
        }
    }
}

/// The text of a DirectoryString (or IA5String) value.
fn string_value(v: &Tlv<'_>) -> Option<String> {
    match v.tag {
        // UTF8String, PrintableString, IA5String
        0x0c | 0x13 | 0x16 => std::str::from_utf8(v.content).ok().map(str::to_string),
        // TeletexString: Latin-1 in practice
        0x14 => Some(v.content.iter().map(|b| *b as char).collect()),
        // BMPString: UTF-16BE
        0x1e => {
            if !v.content.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = v
                .content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 section 2.4 escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An OBJECT IDENTIFIER's contents as `2.5.4.3`.
fn dotted(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in content.iter().enumerate() {
        if acc > (u64::MAX >> 7) {
            return None;
        }
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == content.len() {
            return None;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let ava = [tlv(0x06, oid), tlv(tag, value)].concat();
        tlv(SET, &tlv(SEQUENCE, &ava))
    }

    /// A certificate skeleton whose subject is `subject_rdns` (DER order).
    fn cert(subject_rdns: &[Vec<u8>]) -> Vec<u8> {
        let tbs = [
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &rdn(&[0x55, 4, 3], 0x0c, b"issuer")),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &subject_rdns.concat()),
        ]
        .concat();
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    #[test]
    fn the_subject_prints_last_rdn_first_as_java_does() {
        let der = cert(&[
            rdn(&[0x55, 4, 6], 0x13, b"US"),
            rdn(&[0x55, 4, 10], 0x0c, b"Sluice, Inc"),
            rdn(&[0x55, 4, 11], 0x0c, b" team"),
            rdn(&[0x55, 4, 3], 0x0c, b"alice"),
        ]);
        assert_eq!(
            subject(&der).as_deref(),
            Some("CN=alice,OU=\\ team,O=Sluice\\, Inc,C=US")
        );
    }

    #[test]
    fn unknown_attributes_print_as_oid_and_hex() {
        // emailAddress 1.2.840.113549.1.9.1, an IA5String
        let email = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let der = cert(&[rdn(&[0x55, 4, 3], 0x0c, b"bob"), rdn(&email, 0x16, b"a@b")]);
        assert_eq!(
            subject(&der).as_deref(),
            Some("1.2.840.113549.1.9.1=#1603614062,CN=bob")
        );
    }

    #[test]
    fn truncated_or_garbage_input_gives_none_without_panicking() {
        let der = cert(&[rdn(&[0x55, 4, 3], 0x0c, b"alice")]);
        for cut in 0..der.len() {
            assert_eq!(subject(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(dotted(&[0x81]), None);
    }
}
