//! `__consumer_offsets` records in Kafka's schemas (GroupMetadataManager), so the topic reads
//! the same as Kafka's: offset commits (key version 1, value version 3) and group metadata
//! (key version 2, value version 3, members with their subscriptions and assignments). A null
//! value is a tombstone.
//!
//! Strings are written with an `i16` length, as Kafka's schema has it: encoding refuses any
//! string longer than [`MAX_STRING_LEN`] bytes rather than write a wrapped length (issue 12,
//! defect 5). Callers check their inputs first and answer a Kafka error; the refusal here is
//! the last line.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest string the schema's `i16` length holds.
pub const MAX_STRING_LEN: usize = i16::MAX as usize;

/// A record field too long for its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} of {len} bytes does not fit __consumer_offsets' schema (at most {max})")]
pub struct TooLong {
    /// Which field.
    pub field: &'static str,
    /// Its length in bytes.
    pub len: usize,
    /// The most the schema holds.
    pub max: usize,
}

/// Fails if `s` cannot be written as a schema string.
pub fn check_len(field: &'static str, s: &str) -> Result<(), TooLong> {
    if s.len() > MAX_STRING_LEN {
        return Err(TooLong {
            field,
            len: s.len(),
            max: MAX_STRING_LEN,
        });
    }
    Ok(())
}

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

/// A group as Kafka persists it (GroupMetadataValue v3): its generation, protocol, leader and
/// members with their assignments, so a coordinator move does not force a rejoin.
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
    /// When the group last changed state (ms since the epoch), or -1.
    pub current_state_timestamp: i64,
    /// The members of `generation`.
    pub members: Vec<MemberValue>,
}

/// A member as Kafka persists it (MemberMetadata v3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// KIP-345 `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// `max.poll.interval.ms` for the consumer.
    pub rebalance_timeout_ms: i32,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol (its subscription).
    pub subscription: Bytes,
    /// What the leader assigned it.
    pub assignment: Bytes,
}

fn put_str(b: &mut BytesMut, field: &'static str, s: &str) -> Result<(), TooLong> {
    check_len(field, s)?;
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_nullable_str(b: &mut BytesMut, field: &'static str, s: Option<&str>) -> Result<(), TooLong> {
    match s {
        Some(s) => put_str(b, field, s),
        None => {
            b.put_i16(-1);
            Ok(())
        }
    }
}

fn put_bytes(b: &mut BytesMut, field: &'static str, v: &[u8]) -> Result<(), TooLong> {
    let len = i32::try_from(v.len()).map_err(|_| TooLong {
        field,
        len: v.len(),
        max: i32::MAX as usize,
    })?;
    b.put_i32(len);
    b.put_slice(v);
    Ok(())
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

fn get_i32(b: &mut Bytes) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

fn get_bytes(b: &mut Bytes) -> Option<Bytes> {
    let n = get_i32(b)?;
    if n < 0 {
        return Some(Bytes::new());
    }
    (b.remaining() >= n as usize).then(|| b.split_to(n as usize))
}

impl OffsetsRecord {
    /// Key and value bytes of the record; refuses a field too long for the schema.
    pub fn encode(&self) -> Result<(Bytes, Option<Bytes>), TooLong> {
        let mut k = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                k.put_i16(1);
                put_str(&mut k, "group id", group)?;
                put_str(&mut k, "topic", topic)?;
                k.put_i32(*partition);
                let v = match value {
                    None => None,
                    Some(c) => {
                        let mut v = BytesMut::new();
                        v.put_i16(3);
                        v.put_i64(c.offset);
                        v.put_i32(c.leader_epoch);
                        put_str(&mut v, "offset metadata", &c.metadata)?;
                        v.put_i64(c.commit_timestamp);
                        Some(v.freeze())
                    }
                };
                Ok((k.freeze(), v))
            }
            OffsetsRecord::Group { group, value } => {
                k.put_i16(2);
                put_str(&mut k, "group id", group)?;
                let v = match value {
                    None => None,
                    Some(g) => Some(encode_group(g)?),
                };
                Ok((k.freeze(), v))
            }
        }
    }

    /// Decodes a record read back from the partition: `Ok(None)` for a key version Sluice
    /// does not read (KIP-848's record types, which Kafka's loader also skips), an error for
    /// a record of a known type that does not decode, which fails the load as in Kafka.
    pub fn decode_loaded(
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<OffsetsRecord>, String> {
        match key {
            [hi, lo, ..] if matches!(i16::from_be_bytes([*hi, *lo]), 0..=2) => {
                match OffsetsRecord::decode(key, value) {
                    Some(r) => Ok(Some(r)),
                    None => Err(format!(
                        "a record of key version {} does not decode",
                        i16::from_be_bytes([*hi, *lo])
                    )),
                }
            }
            [_, _, ..] => Ok(None),
            _ => Err("a record key shorter than its version".into()),
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
                let partition = get_i32(&mut k)?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_offset(Bytes::copy_from_slice(v))?),
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
                    Some(v) => Some(decode_group(Bytes::copy_from_slice(v))?),
                };
                Some(OffsetsRecord::Group { group, value })
            }
            _ => None,
        }
    }
}

fn decode_offset(mut v: Bytes) -> Option<CommittedOffset> {
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

fn encode_group(g: &GroupValue) -> Result<Bytes, TooLong> {
    let mut v = BytesMut::new();
    v.put_i16(3);
    put_str(&mut v, "protocol type", &g.protocol_type)?;
    v.put_i32(g.generation);
    put_nullable_str(&mut v, "protocol", g.protocol.as_deref())?;
    put_nullable_str(&mut v, "leader", g.leader.as_deref())?;
    v.put_i64(g.current_state_timestamp);
    v.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut v, "member id", &m.member_id)?;
        put_nullable_str(&mut v, "group instance id", m.instance_id.as_deref())?;
        put_str(&mut v, "client id", &m.client_id)?;
        put_str(&mut v, "client host", &m.client_host)?;
        v.put_i32(m.rebalance_timeout_ms);
        v.put_i32(m.session_timeout_ms);
        put_bytes(&mut v, "subscription", &m.subscription)?;
        put_bytes(&mut v, "assignment", &m.assignment)?;
    }
    Ok(v.freeze())
}

/// GroupMetadataValue versions 0 to 3 (Kafka's schema: `rebalance_timeout` from v1,
/// `current_state_timestamp` from v2, `group_instance_id` from v3).
fn decode_group(mut v: Bytes) -> Option<GroupValue> {
    if v.remaining() < 2 {
        return None;
    }
    let version = v.get_i16();
    let protocol_type = get_str(&mut v)?;
    let generation = get_i32(&mut v)?;
    let protocol = get_nullable_str(&mut v)?;
    let leader = get_nullable_str(&mut v)?;
    let current_state_timestamp = if version >= 2 {
        if v.remaining() < 8 {
            return None;
        }
        v.get_i64()
    } else {
        -1
    };
    let n = get_i32(&mut v)?.max(0);
    let mut members = Vec::new();
    for _ in 0..n {
        let member_id = get_str(&mut v)?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut v)?
        } else {
            None
        };
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut v)? } else { -1 };
        let session_timeout_ms = get_i32(&mut v)?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
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

    fn member(id: &str) -> MemberValue {
        MemberValue {
            member_id: id.into(),
            instance_id: Some("i".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(b"sub"),
            assignment: Bytes::from_static(b"asg"),
        }
    }

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
        let (k, v) = r.encode().expect("encode");
        assert_eq!(OffsetsRecord::decode(&k, v.as_deref()), Some(r));
        let g = OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                current_state_timestamp: 9,
                members: vec![member("m1"), member("m2")],
            }),
        };
        let (k, v) = g.encode().expect("encode");
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

    #[test]
    fn strings_too_long_for_an_i16_length_are_refused_not_wrapped() {
        let at_limit = "g".repeat(MAX_STRING_LEN);
        let r = OffsetsRecord::Group {
            group: at_limit.clone(),
            value: None,
        };
        let (k, _) = r.encode().expect("the longest string fits");
        assert_eq!(OffsetsRecord::decode(&k, None), Some(r));
        let over = "g".repeat(MAX_STRING_LEN + 1);
        let offset = |group: &str, metadata: &str| OffsetsRecord::Offset {
            group: group.into(),
            topic: "t".into(),
            partition: 0,
            value: Some(CommittedOffset {
                offset: 1,
                leader_epoch: -1,
                metadata: metadata.into(),
                commit_timestamp: 0,
            }),
        };
        assert_eq!(offset(&over, "").encode().unwrap_err().field, "group id");
        assert_eq!(
            offset("g", &over).encode().unwrap_err().field,
            "offset metadata"
        );
        let mut m = member(&over);
        let group = |members| OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 1,
                protocol: None,
                leader: None,
                current_state_timestamp: -1,
                members,
            }),
        };
        assert_eq!(
            group(vec![m.clone()]).encode().unwrap_err().field,
            "member id"
        );
        m.member_id = "m".into();
        m.instance_id = Some(over);
        assert_eq!(
            group(vec![m]).encode().unwrap_err().field,
            "group instance id"
        );
    }
}
