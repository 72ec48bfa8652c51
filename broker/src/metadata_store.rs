//! Persistent cluster metadata of a single node: topics (name, id, partition count, configs)
//! and the producer-id high-water mark. One small text file, rewritten atomically (temporary
//! file, fsync, rename, fsync directory) and guarded by a CRC-32 line, so a torn or flipped
//! byte is detected instead of trusted.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// What is known about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level config overrides (Kafka keys).
    pub configs: BTreeMap<String, String>,
}

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// No producer id below this was ever handed out... and none at or above it yet.
    pub next_producer_id: i64,
}

const FILE: &str = "sluice-metadata";

fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('=', "%3D")
        .replace('\n', "%0A")
}

fn unescape(s: &str) -> String {
    s.replace("%0A", "\n")
        .replace("%3D", "=")
        .replace("%20", " ")
        .replace("%25", "%")
}

impl Metadata {
    fn encode(&self) -> String {
        let mut out = format!(
            "sluice-metadata 1\nproducer-ids {}\n",
            self.next_producer_id
        );
        for t in self.topics.values() {
            out.push_str(&format!(
                "topic {} {} {}",
                escape(&t.name),
                t.id.simple(),
                t.partitions
            ));
            for (k, v) in &t.configs {
                out.push_str(&format!(" {}={}", escape(k), escape(v)));
            }
            out.push('\n');
        }
        let crc = crc32fast::hash(out.as_bytes());
        out.push_str(&format!("crc32 {crc:08x}\n"));
        out
    }

    fn decode(text: &str) -> Result<Metadata, String> {
        let at = text.rfind("crc32 ").ok_or("missing checksum")?;
        let (body, crc) = text.split_at(at);
        let crc = crc
            .strip_prefix("crc32 ")
            .and_then(|c| c.strip_suffix('\n'))
            .ok_or("bad checksum line")?;
        if u32::from_str_radix(crc, 16).ok() != Some(crc32fast::hash(body.as_bytes())) {
            return Err("checksum mismatch".into());
        }
        let mut m = Metadata::default();
        for (n, line) in body.lines().enumerate() {
            let mut f = line.split(' ');
            match (f.next(), n) {
                (Some("sluice-metadata"), 0) => {
                    if f.next() != Some("1") {
                        return Err("unknown version".into());
                    }
                }
                (Some("producer-ids"), _) => {
                    m.next_producer_id = f
                        .next()
                        .and_then(|x| x.parse().ok())
                        .ok_or("bad producer-ids line")?
                }
                (Some("topic"), _) => {
                    let name = unescape(f.next().ok_or("topic without name")?);
                    let id = Uuid::parse_str(f.next().ok_or("topic without id")?)
                        .map_err(|e| e.to_string())?;
                    let partitions = f
                        .next()
                        .and_then(|x| x.parse().ok())
                        .ok_or("topic without partitions")?;
                    let mut configs = BTreeMap::new();
                    for kv in f {
                        let (k, v) = kv.split_once('=').ok_or("bad topic config")?;
                        configs.insert(unescape(k), unescape(v));
                    }
                    m.topics.insert(
                        name.clone(),
                        TopicMeta {
                            name,
                            id,
                            partitions,
                            configs,
                        },
                    );
                }
                _ => return Err(format!("unexpected line {}", n + 1)),
            }
        }
        Ok(m)
    }
}

/// The file holding [`Metadata`] in the first log directory.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
}

impl MetadataStore {
    /// The store under `dir`.
    pub fn new(dir: &Path) -> MetadataStore {
        MetadataStore {
            path: dir.join(FILE),
        }
    }

    /// Loads the metadata; an absent file is empty metadata, a damaged one an error.
    pub fn load(&self) -> Result<Metadata, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                Metadata::decode(&text).map_err(|e| format!("{}: {e}", self.path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Writes the metadata atomically and durably.
    pub fn save(&self, m: &Metadata) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(m.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = MetadataStore::new(dir.path());
        assert_eq!(store.load().expect("empty"), Metadata::default());
        let mut m = Metadata {
            next_producer_id: 2000,
            ..Metadata::default()
        };
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("x y".into(), "a=b %".into()),
        ]);
        m.topics.insert(
            "t.1".into(),
            TopicMeta {
                name: "t.1".into(),
                id: Uuid::new_v4(),
                partitions: 3,
                configs,
            },
        );
        store.save(&m).expect("save");
        assert_eq!(store.load().expect("load"), m);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(store.load().is_err());
    }
}
