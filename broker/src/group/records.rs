//! `__consumer_offsets` records in Kafka's schemas (GroupMetadataManager), so the topic reads
//! the same as Kafka's: offset commits (key version 1, value version 3) and group metadata
//! (key version 2, value version 3). A null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A decoded record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// A committed offset, or its deletion when `value` is `None`.
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    /// A group's metadata, or the group's deletion when `value` is `None`.
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the committed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When the commit happened.
    pub commit_timestamp: i64,
}

/// What survives of a group across restarts: members rejoin, so only the group's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// e.g. "consumer".
    pub protocol_type: String,
    /// Generation reached.
    pub generation: i32,
    /// Chosen protocol (assignor).
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn get_str(b: &mut Bytes) -> Option<String> {
    get_nullable_str(b)?
}

fn get_nullable_str(b: &mut Bytes) -> Option<Option<String>> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 {
        return Some(None);
    }
    if b.remaining() < n as usize {
        return None;
    }
    let s = b.split_to(n as usize);
    Some(Some(String::from_utf8(s.to_vec()).ok()?))
}

impl OffsetsRecord {
    /// Key and value bytes of the record.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut k = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                k.put_i16(1);
                put_str(&mut k, group);
                put_str(&mut k, topic);
                k.put_i32(*partition);
                let v = value.as_ref().map(|c| {
                    let mut v = BytesMut::new();
                    v.put_i16(3);
                    v.put_i64(c.offset);
                    v.put_i32(c.leader_epoch);
                    put_str(&mut v, &c.metadata);
                    v.put_i64(c.commit_timestamp);
                    v.freeze()
                });
                (k.freeze(), v)
            }
            OffsetsRecord::Group { group, value } => {
                k.put_i16(2);
                put_str(&mut k, group);
                let v = value.as_ref().map(|g| {
                    let mut v = BytesMut::new();
                    v.put_i16(3);
                    put_str(&mut v, &g.protocol_type);
                    v.put_i32(g.generation);
                    put_nullable_str(&mut v, g.protocol.as_deref());
                    put_nullable_str(&mut v, g.leader.as_deref());
                    v.put_i64(-1); // current_state_timestamp
                    v.put_i32(0); // members: they rejoin after a restart
                    v.freeze()
                });
                (k.freeze(), v)
            }
        }
    }

    /// Decodes a record; `None` for keys of versions Sluice does not read.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetsRecord> {
        let mut k = Bytes::copy_from_slice(key);
        if k.remaining() < 2 {
            return None;
        }
        match k.get_i16() {
            0 | 1 => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                if k.remaining() < 4 {
                    return None;
                }
                let partition = k.get_i32();
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut v = Bytes::copy_from_slice(v);
                        if v.remaining() < 10 {
                            return None;
                        }
                        let version = v.get_i16();
                        let offset = v.get_i64();
                        let leader_epoch = if version >= 3 && v.remaining() >= 4 {
                            v.get_i32()
                        } else {
                            -1
                        };
                        let metadata = get_str(&mut v)?;
                        let commit_timestamp = if v.remaining() >= 8 { v.get_i64() } else { -1 };
                        Some(CommittedOffset {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp,
                        })
                    }
                };
                Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = get_str(&mut k)?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut v = Bytes::copy_from_slice(v);
                        if v.remaining() < 2 {
                            return None;
                        }
                        let _version = v.get_i16();
                        let protocol_type = get_str(&mut v)?;
                        if v.remaining() < 4 {
                            return None;
                        }
                        let generation = v.get_i32();
                        let protocol = get_nullable_str(&mut v)?;
                        let leader = get_nullable_str(&mut v)?;
                        Some(GroupValue {
                            protocol_type,
                            generation,
                            protocol,
                            leader,
                        })
                    }
                };
                Some(OffsetsRecord::Group { group, value })
            }
            _ => None,
        }
    }
}

/// Java's `String.hashCode`, which decides a group's offsets partition as in Kafka.
pub fn java_hash_code(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of `group` (Kafka's `Utils.abs(hashCode) % n`).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_hash_code(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_partitioning_matches_java() {
        let r = OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(CommittedOffset {
                offset: 42,
                leader_epoch: 0,
                metadata: "m".into(),
                commit_timestamp: 7,
            }),
        };
        let (k, v) = r.encode();
        assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(r));
        let g = OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: None,
            }),
        };
        let (k, v) = g.encode();
        assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(g));
        assert_eq!(
            OffsetsRecord::decode(&k, None),
            Some(OffsetsRecord::Group {
                group: "g".into(),
                value: None
            })
        );
        // Values from Java: "hello".hashCode() == 99162322, "".hashCode() == 0.
        assert_eq!(java_hash_code("hello"), 99_162_322);
        assert_eq!(java_hash_code("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    }
}
