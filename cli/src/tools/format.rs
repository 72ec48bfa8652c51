//! How `sluice produce` reads lines into records and how `sluice consume` prints records:
//! the properties of Kafka's console producer and consumer (`parse.key`, `key.separator`,
//! `print.key`, ...), kept apart from I/O so they can be tested directly.

use anyhow::bail;
use base64::Engine;
use bytes::Bytes;
use sluice_client::{ConsumerRecord, Header, TimestampType};

use super::{parse_bool, unescape};

/// How a line of input becomes a record (Kafka's `LineMessageReader` properties).
#[derive(Debug, Clone)]
pub struct LineFormat {
    /// `parse.key`: the line is `KEY<key.separator>VALUE`.
    pub parse_key: bool,
    /// `key.separator` (tab).
    pub key_separator: String,
    /// `parse.headers`: the line starts with `K:V,K:V<headers.delimiter>`.
    pub parse_headers: bool,
    /// `headers.delimiter` (tab).
    pub headers_delimiter: String,
    /// `headers.separator` (comma).
    pub headers_separator: String,
    /// `headers.key.separator` (colon).
    pub headers_key_separator: String,
    /// `null.marker`: a key, value or header value equal to this is sent as null.
    pub null_marker: Option<String>,
    /// `ignore.error`: a line without the key separator is sent whole as the value.
    pub ignore_error: bool,
}

impl Default for LineFormat {
    fn default() -> LineFormat {
        LineFormat {
            parse_key: false,
            key_separator: "\t".into(),
            parse_headers: false,
            headers_delimiter: "\t".into(),
            headers_separator: ",".into(),
            headers_key_separator: ":".into(),
            null_marker: None,
            ignore_error: false,
        }
    }
}

/// A record read from a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

impl LineFormat {
    /// Applies `--property KEY=VALUE` settings; unknown keys are an error, not ignored.
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match key {
            "parse.key" => self.parse_key = parse_bool(key, value)?,
            "key.separator" => self.key_separator = nonempty(key, value)?,
            "parse.headers" => self.parse_headers = parse_bool(key, value)?,
            "headers.delimiter" => self.headers_delimiter = nonempty(key, value)?,
            "headers.separator" => self.headers_separator = nonempty(key, value)?,
            "headers.key.separator" => self.headers_key_separator = nonempty(key, value)?,
            "null.marker" => self.null_marker = Some(nonempty(key, value)?),
            "ignore.error" => self.ignore_error = parse_bool(key, value)?,
            _ => bail!(
                "unknown property {key:?}; known: parse.key, key.separator, parse.headers, \
                 headers.delimiter, headers.separator, headers.key.separator, null.marker, ignore.error"
            ),
        }
        Ok(())
    }

    /// Splits one line (without its line ending) into key, value and headers.
    pub fn parse(&self, line: &[u8]) -> Result<ParsedLine, String> {
        let mut rest = line;
        let mut headers = Vec::new();
        if self.parse_headers {
            let Some((h, after)) = split_once(rest, self.headers_delimiter.as_bytes()) else {
                return Err(format!(
                    "no headers delimiter {:?} in the line",
                    self.headers_delimiter
                ));
            };
            rest = after;
            for pair in split_all(h, self.headers_separator.as_bytes()) {
                if pair.is_empty() {
                    continue;
                }
                let Some((k, v)) = split_once(pair, self.headers_key_separator.as_bytes()) else {
                    return Err(format!(
                        "header {:?} has no key separator {:?}",
                        String::from_utf8_lossy(pair),
                        self.headers_key_separator
                    ));
                };
                let key = std::str::from_utf8(k)
                    .map_err(|_| "a header key is not UTF-8".to_string())?
                    .to_string();
                if self.is_null(k) {
                    return Err("a header key cannot be null".into());
                }
                headers.push(Header {
                    key,
                    value: self.bytes(v),
                });
            }
        }
        let (key, value) = if self.parse_key {
            match split_once(rest, self.key_separator.as_bytes()) {
                Some((k, v)) => (self.bytes(k), self.bytes(v)),
                None if self.ignore_error => (None, self.bytes(rest)),
                None => {
                    return Err(format!(
                        "no key separator {:?} in the line",
                        self.key_separator
                    ))
                }
            }
        } else {
            (None, self.bytes(rest))
        };
        Ok(ParsedLine {
            key,
            value,
            headers,
        })
    }

    fn is_null(&self, b: &[u8]) -> bool {
        self.null_marker
            .as_deref()
            .is_some_and(|m| m.as_bytes() == b)
    }

    fn bytes(&self, b: &[u8]) -> Option<Bytes> {
        (!self.is_null(b)).then(|| Bytes::copy_from_slice(b))
    }
}

fn nonempty(key: &str, value: &str) -> anyhow::Result<String> {
    let v = unescape(value);
    if v.is_empty() {
        bail!("{key} cannot be empty");
    }
    Ok(v)
}

fn split_once<'a>(hay: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|i| (&hay[..i], &hay[i + needle.len()..]))
}

fn split_all<'a>(mut hay: &'a [u8], needle: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some((a, b)) = split_once(hay, needle) {
        out.push(a);
        hay = b;
    }
    out.push(hay);
    out
}

/// How a record is printed (Kafka's `DefaultMessageFormatter` properties).
#[derive(Debug, Clone)]
pub struct RecordFormat {
    /// `print.timestamp`.
    pub print_timestamp: bool,
    /// `print.partition`.
    pub print_partition: bool,
    /// `print.offset`.
    pub print_offset: bool,
    /// `print.headers`.
    pub print_headers: bool,
    /// `print.key`.
    pub print_key: bool,
    /// `print.value`.
    pub print_value: bool,
    /// `key.separator`: between the printed fields (tab).
    pub key_separator: String,
    /// `line.separator`: after each record (newline).
    pub line_separator: String,
    /// `headers.separator`: between headers (comma).
    pub headers_separator: String,
    /// `headers.key.separator`: between a header's key and value (colon).
    pub headers_key_separator: String,
    /// `null.literal`: printed for a null key, value or header value.
    pub null_literal: String,
}

impl Default for RecordFormat {
    fn default() -> RecordFormat {
        RecordFormat {
            print_timestamp: false,
            print_partition: false,
            print_offset: false,
            print_headers: false,
            print_key: false,
            print_value: true,
            key_separator: "\t".into(),
            line_separator: "\n".into(),
            headers_separator: ",".into(),
            headers_key_separator: ":".into(),
            null_literal: "null".into(),
        }
    }
}

impl RecordFormat {
    /// Applies `--property KEY=VALUE` settings; unknown keys are an error, not ignored.
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match key {
            "print.timestamp" => self.print_timestamp = parse_bool(key, value)?,
            "print.partition" => self.print_partition = parse_bool(key, value)?,
            "print.offset" => self.print_offset = parse_bool(key, value)?,
            "print.headers" => self.print_headers = parse_bool(key, value)?,
            "print.key" => self.print_key = parse_bool(key, value)?,
            "print.value" => self.print_value = parse_bool(key, value)?,
            "key.separator" => self.key_separator = unescape(value),
            "line.separator" => self.line_separator = unescape(value),
            "headers.separator" => self.headers_separator = unescape(value),
            "headers.key.separator" => self.headers_key_separator = unescape(value),
            "null.literal" => self.null_literal = unescape(value),
            _ => bail!(
                "unknown property {key:?}; known: print.timestamp, print.partition, print.offset, \
                 print.headers, print.key, print.value, key.separator, line.separator, \
                 headers.separator, headers.key.separator, null.literal"
            ),
        }
        Ok(())
    }

    /// Appends `r` as Kafka's console consumer prints it.
    pub fn write(&self, r: &ConsumerRecord, out: &mut Vec<u8>) {
        let sep = self.key_separator.as_bytes();
        if self.print_timestamp {
            match r.timestamp_type {
                TimestampType::LogAppendTime => out.extend_from_slice(b"LogAppendTime:"),
                TimestampType::CreateTime => out.extend_from_slice(b"CreateTime:"),
            }
            out.extend_from_slice(r.timestamp.to_string().as_bytes());
            out.extend_from_slice(sep);
        }
        if self.print_partition {
            out.extend_from_slice(format!("Partition:{}", r.partition).as_bytes());
            out.extend_from_slice(sep);
        }
        if self.print_offset {
            out.extend_from_slice(format!("Offset:{}", r.offset).as_bytes());
            out.extend_from_slice(sep);
        }
        if self.print_headers {
            if r.headers.is_empty() {
                out.extend_from_slice(b"NO_HEADERS");
            }
            for (i, h) in r.headers.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(self.headers_separator.as_bytes());
                }
                out.extend_from_slice(h.key.as_bytes());
                out.extend_from_slice(self.headers_key_separator.as_bytes());
                self.field(h.value.as_deref(), out);
            }
            out.extend_from_slice(sep);
        }
        if self.print_key {
            self.field(r.key.as_deref(), out);
            if self.print_value {
                out.extend_from_slice(sep);
            }
        }
        if self.print_value {
            self.field(r.value.as_deref(), out);
        }
        out.extend_from_slice(self.line_separator.as_bytes());
    }

    fn field(&self, b: Option<&[u8]>, out: &mut Vec<u8>) {
        out.extend_from_slice(b.unwrap_or(self.null_literal.as_bytes()));
    }
}

/// Appends `r` as one line of JSON. Keys, values and header values that are not UTF-8 are
/// written as `{"base64": "..."}` so that nothing is lost.
pub fn write_json(r: &ConsumerRecord, out: &mut Vec<u8>) {
    let headers: Vec<serde_json::Value> = r
        .headers
        .iter()
        .map(|h| serde_json::json!({ "key": h.key, "value": json_bytes(h.value.as_deref()) }))
        .collect();
    let v = serde_json::json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": match r.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        },
        "key": json_bytes(r.key.as_deref()),
        "value": json_bytes(r.value.as_deref()),
        "headers": headers,
    });
    // Writing a `Value` into a Vec cannot fail.
    serde_json::to_writer(&mut *out, &v).expect("JSON into memory");
    out.push(b'\n');
}

fn json_bytes(b: Option<&[u8]>) -> serde_json::Value {
    match b {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => serde_json::Value::String(s.into()),
            Err(_) => serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(b)
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn line(f: &LineFormat, s: &str) -> Result<ParsedLine, String> {
        f.parse(s.as_bytes())
    }

    #[test]
    fn plain_lines_are_values() {
        let p = line(&LineFormat::default(), "a\tb").unwrap();
        assert_eq!(p.key, None);
        assert_eq!(p.value.as_deref(), Some(&b"a\tb"[..]));
        assert!(p.headers.is_empty());
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        let mut f = LineFormat::default();
        f.set("parse.key", "true").unwrap();
        f.set("key.separator", ":").unwrap();
        let p = line(&f, "k:v:w").unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(p.value.as_deref(), Some(&b"v:w"[..]));
        assert!(line(&f, "no separator")
            .unwrap_err()
            .contains("key separator"));
        f.set("ignore.error", "true").unwrap();
        assert_eq!(
            line(&f, "whole").unwrap().value.as_deref(),
            Some(&b"whole"[..])
        );
        f.set("null.marker", "NULL").unwrap();
        let p = line(&f, "NULL:x").unwrap();
        assert_eq!((p.key, p.value.as_deref()), (None, Some(&b"x"[..])));
    }

    #[test]
    fn headers_come_first() {
        let mut f = LineFormat::default();
        f.set("parse.headers", "true").unwrap();
        f.set("parse.key", "true").unwrap();
        let p = line(&f, "h1:v1,h2:\tk\tvalue").unwrap();
        assert_eq!(
            p.headers,
            vec![Header::new("h1", "v1"), Header::new("h2", "")]
        );
        assert_eq!(p.key.as_deref(), Some(&b"k"[..]));
        assert!(line(&f, "h1v1\tk\tv").unwrap_err().contains("header"));
        assert!(f.set("parse.keys", "true").is_err());
        assert!(f.set("parse.key", "yes").is_err());
    }

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("t"),
            partition: 2,
            offset: 7,
            timestamp: 1000,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                Header::new("a", "1"),
                Header {
                    key: "b".into(),
                    value: None,
                },
            ],
        }
    }

    #[test]
    fn records_print_like_the_console_consumer() {
        let mut f = RecordFormat::default();
        let mut out = Vec::new();
        f.write(&record(), &mut out);
        assert_eq!(out, b"null\n");
        for p in [
            "print.timestamp",
            "print.partition",
            "print.offset",
            "print.headers",
            "print.key",
        ] {
            f.set(p, "true").unwrap();
        }
        out.clear();
        f.write(&record(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CreateTime:1000\tPartition:2\tOffset:7\ta:1,b:null\tk\tnull\n"
        );
    }

    #[test]
    fn json_keeps_binary_data() {
        let mut r = record();
        r.value = Some(Bytes::from_static(&[0xff, 0x00]));
        let mut out = Vec::new();
        write_json(&r, &mut out);
        assert!(
            out.starts_with(br#"{"topic":"t","partition":2,"offset":7,"#),
            "fields in reading order"
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["value"]["base64"], "/wA=");
        assert_eq!(v["key"], "k");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["headers"][1]["value"], serde_json::Value::Null);
    }
}
