//! The everyday tools of the `sluice` binary, built on `sluice-client`. They work against any
//! Kafka-compatible broker and take the flag names of Kafka's own scripts.

pub mod acl;
pub mod bench;
pub mod cluster;
pub mod consume;
pub mod format;
pub mod group;
pub mod produce;
pub mod topic;
pub mod wire_bench;

use std::time::Duration;

use anyhow::{bail, Context};
use sluice_client::ClientConfig;

/// Where the cluster is, as every Kafka tool asks for it.
#[derive(clap::Args, Debug, Clone)]
pub struct Connect {
    /// Broker(s) to bootstrap from, comma-separated.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        visible_alias = "broker-list",
        value_name = "HOST:PORT[,HOST:PORT]",
        default_value = "localhost:9092",
        env = "SLUICE_BOOTSTRAP_SERVER"
    )]
    pub bootstrap_server: String,
}

impl Connect {
    /// Client settings for these brokers.
    pub fn client(&self, client_id: &str) -> ClientConfig {
        ClientConfig {
            client_id: client_id.into(),
            // A tool should say the cluster is unreachable within seconds, not a minute.
            api_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            ..ClientConfig::new(&self.bootstrap_server)
        }
    }
}

/// A topic named as `TOPIC` or, as `kafka-topics.sh` spells it, `--topic TOPIC`.
#[derive(clap::Args, Debug, Clone)]
pub struct TopicArg {
    /// The topic.
    #[arg(value_name = "TOPIC", required_unless_present = "topic_flag")]
    topic: Option<String>,
    /// The topic (the same as TOPIC).
    #[arg(long = "topic", value_name = "TOPIC", conflicts_with = "topic")]
    topic_flag: Option<String>,
}

impl TopicArg {
    /// The topic's name.
    pub fn name(&self) -> &str {
        self.topic
            .as_deref()
            .or(self.topic_flag.as_deref())
            .expect("clap requires one")
    }
}

/// A consumer group named as `GROUP` or, as `kafka-consumer-groups.sh` spells it,
/// `--group GROUP`.
#[derive(clap::Args, Debug, Clone)]
pub struct GroupArg {
    /// The consumer group.
    #[arg(value_name = "GROUP", required_unless_present = "group_flag")]
    group: Option<String>,
    /// The consumer group (the same as GROUP).
    #[arg(
        long = "group",
        short = 'g',
        value_name = "GROUP",
        conflicts_with = "group"
    )]
    group_flag: Option<String>,
}

impl GroupArg {
    /// The group's id.
    pub fn id(&self) -> &str {
        self.group
            .as_deref()
            .or(self.group_flag.as_deref())
            .expect("clap requires one")
    }
}

/// Lays out rows under a header in left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Parses `key=value`, as `--config` and `--property` take it.
pub fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("expected KEY=VALUE, got {s:?}"),
    }
}

/// Parses `acks` as Kafka's tools take it: 0, 1, or all (also -1).
pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be 0, 1 or all, not {s:?}")),
    }
}

/// Parses a boolean property the way Kafka's tools do.
pub fn parse_bool(key: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("{key} must be true or false, got {value:?}"),
    }
}

/// Turns `\t`, `\n`, `\\` in a separator given on the command line into the characters.
pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parses a time given as ms since the epoch or as RFC 3339 (`2026-11-30T10:00:00Z`).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(s).with_context(|| {
        format!("{s:?} is not a time: give ms since the epoch or e.g. 2026-11-30T10:00:00Z")
    })
}

fn parse_rfc3339(s: &str) -> anyhow::Result<i64> {
    let (date, time) = s
        .split_once(['T', ' '])
        .context("no T between date and time")?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, mo, day) = match (d.next(), d.next(), d.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) => (y, m, d),
        _ => bail!("bad date"),
    };
    let (clock, offset_s) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').context("offset as +HH:MM")?;
        (
            c,
            sign * (h.parse::<i64>()? * 3600 + m.parse::<i64>()? * 60),
        )
    } else {
        bail!("no time zone (Z or +HH:MM)")
    };
    let mut parts = clock.splitn(3, ':');
    let h: i64 = parts.next().context("hour")?.parse()?;
    let mi: i64 = parts.next().context("minute")?.parse()?;
    let sec: f64 = parts.next().unwrap_or("0").parse()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec >= 61.0 {
        bail!("field out of range");
    }
    let days = days_from_civil(y, mo, day);
    let secs = days * 86_400 + h * 3600 + mi * 60 - offset_s;
    Ok(secs * 1000 + (sec * 1000.0).round() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Writes lines to stdout, treating a closed pipe (`| head`) as the reader being done.
pub struct Out {
    inner: std::io::BufWriter<std::io::Stdout>,
}

impl Default for Out {
    fn default() -> Out {
        Out {
            inner: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
        }
    }
}

impl Out {
    /// Writes `bytes`; `Ok(false)` once the reader has gone.
    pub fn write(&mut self, bytes: &[u8]) -> anyhow::Result<bool> {
        use std::io::Write;
        match self.inner.write_all(bytes) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("writing to stdout"),
        }
    }

    /// Flushes; `Ok(false)` once the reader has gone.
    pub fn flush(&mut self) -> anyhow::Result<bool> {
        use std::io::Write;
        match self.inner.flush() {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("writing to stdout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_epoch_ms_or_rfc3339() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_time("2000-02-29T00:00:00-00:30").unwrap(),
            951_784_200_000
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2023-13-01T00:00:00Z").is_err());
        assert!(parse_time("2023-11-14T22:13:20").is_err());
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x\n");
    }

    #[test]
    fn separators_unescape() {
        assert_eq!(unescape(r"\t"), "\t");
        assert_eq!(unescape(r"a\nb\\c\x"), "a\nb\\c\\x");
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }
}
