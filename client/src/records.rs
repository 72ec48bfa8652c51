//! Kafka v2 record batches: building them for the producer and reading them for the consumer.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::error::{Error, Result};

/// Size of a v2 batch header.
pub(crate) const BATCH_HEADER: usize = 61;

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value (`None` is a null value, distinct from empty).
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Header {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// How a batch's records are compressed (`compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing, as the Java client writes it).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Compression> {
        Ok(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown compression.type {s:?}; expected none, gzip, snappy, lz4 or zstd"
                )))
            }
        })
    }
}

impl Compression {
    fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// What the timestamp means.
    pub timestamp_type: TimestampType,
    /// Key (`None` for a null key).
    pub key: Option<Bytes>,
    /// Value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Headers in the order they were sent.
    pub headers: Vec<Header>,
}

/// Producer identity stamped on a batch (idempotence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerStamp {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

impl ProducerStamp {
    pub const NONE: ProducerStamp = ProducerStamp {
        id: -1,
        epoch: -1,
        base_sequence: -1,
    };
}

/// Accumulates records of one batch, encoded as they arrive, and seals them into a v2 batch.
pub(crate) struct BatchWriter {
    records: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(v: i64) -> usize {
    let mut u = zigzag(v);
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut u = zigzag(v);
    while u >= 0x80 {
        buf.put_u8((u as u8) | 0x80);
        u >>= 7;
    }
    buf.put_u8(u as u8);
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varint_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
        None => put_varint(buf, -1),
    }
}

impl BatchWriter {
    pub fn new(capacity: usize) -> BatchWriter {
        BatchWriter {
            records: BytesMut::with_capacity(capacity),
            count: 0,
            base_timestamp: 0,
            max_timestamp: -1,
        }
    }

    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes the batch would take uncompressed.
    pub fn size(&self) -> usize {
        BATCH_HEADER + self.records.len()
    }

    /// What a record would add to [`size`](Self::size).
    pub fn record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
        // Upper bound: deltas of up to 10 bytes each, length prefix up to 5.
        let headers: usize = headers
            .iter()
            .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref()))
            .sum();
        21 + bytes_len(key) + bytes_len(value) + 5 + headers
    }

    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        let ts_delta = timestamp - self.base_timestamp;
        let offset_delta = self.count as i64;
        let headers_len: usize = headers
            .iter()
            .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref()))
            .sum();
        let body = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(headers.len() as i64)
            + headers_len;
        let r = &mut self.records;
        r.reserve(body + 5);
        put_varint(r, body as i64);
        r.put_i8(0);
        put_varint(r, ts_delta);
        put_varint(r, offset_delta);
        put_bytes(r, key);
        put_bytes(r, value);
        put_varint(r, headers.len() as i64);
        for h in headers {
            put_bytes(r, Some(h.key.as_bytes()));
            put_bytes(r, h.value.as_deref());
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Seals the batch: compresses the records and writes the header with its CRC-32C.
    pub fn finish(self, compression: Compression, stamp: ProducerStamp) -> Result<Bytes> {
        let mut out = BytesMut::with_capacity(BATCH_HEADER + self.records.len());
        out.put_bytes(0, BATCH_HEADER);
        let mut records = self.records;
        let codec = |e: anyhow::Error| Error::Codec(format!("cannot compress a batch: {e}"));
        let take = |buf: &mut BytesMut| -> std::result::Result<(), anyhow::Error> {
            std::mem::swap(buf, &mut records);
            Ok(())
        };
        match compression {
            Compression::None => out.extend_from_slice(&records),
            Compression::Gzip => Gzip::compress(&mut out, take).map_err(codec)?,
            Compression::Snappy => Snappy::compress(&mut out, take).map_err(codec)?,
            Compression::Lz4 => Lz4::compress(&mut out, take).map_err(codec)?,
            Compression::Zstd => Zstd::compress(&mut out, take).map_err(codec)?,
        }
        let len = (out.len() - 12) as i32;
        let mut h = &mut out[..BATCH_HEADER];
        h.put_i64(0); // base offset: the broker assigns it
        h.put_i32(len);
        h.put_i32(-1); // partition leader epoch
        h.put_i8(2); // magic
        h.put_u32(0); // crc, below
        h.put_i16(compression.attribute());
        h.put_i32(self.count - 1);
        h.put_i64(self.base_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(stamp.id);
        h.put_i16(stamp.epoch);
        h.put_i32(stamp.base_sequence);
        h.put_i32(self.count);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(out.freeze())
    }
}

/// Reads the records of `data` (a Fetch response's `records` for one partition) at or after
/// `from_offset`. Returns them and the offset to fetch next, which moves past control batches
/// and compacted gaps too. A batch cut short at the end of `data` (the broker's `max_bytes`)
/// is left for the next fetch.
pub(crate) fn decode_batches(
    topic: &Arc<str>,
    partition: i32,
    mut data: Bytes,
    from_offset: i64,
) -> Result<(Vec<ConsumerRecord>, Option<i64>)> {
    let mut out = Vec::new();
    let mut next = None;
    let corrupt = |what: &str, offset: i64| {
        Error::Codec(format!(
            "corrupt record batch at offset {offset} of {topic}-{partition}: {what}"
        ))
    };
    while data.len() >= 17 {
        let base_offset = i64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        if len < (BATCH_HEADER - 12) as i32 {
            return Err(corrupt("length too small", base_offset));
        }
        let total = len as usize + 12;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        let magic = batch[16];
        if magic != 2 {
            return Err(corrupt(
                &format!("message format v{magic} is not supported"),
                base_offset,
            ));
        }
        let crc = u32::from_be_bytes(batch[17..21].try_into().expect("4 bytes"));
        if crc32c::crc32c(&batch[21..]) != crc {
            return Err(corrupt("CRC-32C mismatch", base_offset));
        }
        batch.advance(21);
        let attributes = batch.get_i16();
        let last_offset_delta = batch.get_i32();
        let base_timestamp = batch.get_i64();
        let max_timestamp = batch.get_i64();
        batch.advance(8 + 2 + 4);
        let count = batch.get_i32();
        next = Some(base_offset + last_offset_delta as i64 + 1);
        if attributes & 0x20 != 0 {
            continue; // control batch (transaction markers): not for applications
        }
        let (timestamp_type, fixed_timestamp) = if attributes & 0x08 != 0 {
            (TimestampType::LogAppendTime, Some(max_timestamp))
        } else {
            (TimestampType::CreateTime, None)
        };
        let mut records = decompress(attributes & 0x07, batch)
            .map_err(|e| corrupt(&format!("cannot decompress: {e}"), base_offset))?;
        for _ in 0..count.max(0) {
            let r = read_record(&mut records)
                .ok_or_else(|| corrupt("truncated record", base_offset))?;
            let offset = base_offset + r.offset_delta;
            if offset < from_offset {
                continue;
            }
            out.push(ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset,
                timestamp: fixed_timestamp.unwrap_or(base_timestamp + r.timestamp_delta),
                timestamp_type,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
    }
    Ok((out, next))
}

fn decompress(codec: i16, data: Bytes) -> std::result::Result<Bytes, String> {
    let mut data = data;
    let take = |b: &mut Bytes| -> anyhow::Result<Bytes> { Ok(std::mem::take(b)) };
    let r = match codec {
        0 => return Ok(data),
        1 => Gzip::decompress(&mut data, take),
        2 => Snappy::decompress(&mut data, take),
        3 => Lz4::decompress(&mut data, take),
        4 => Zstd::decompress(&mut data, take),
        c => return Err(format!("unknown compression codec {c}")),
    };
    r.map_err(|e| format!("{e:#}"))
}

struct RawRecord {
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
}

fn get_varint(buf: &mut Bytes) -> Option<i64> {
    let mut u: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let b = buf.get_u8();
        u |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(((u >> 1) as i64) ^ -((u & 1) as i64));
        }
    }
    None
}

fn get_bytes(buf: &mut Bytes) -> Option<Option<Bytes>> {
    let len = get_varint(buf)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    (buf.remaining() >= len).then(|| Some(buf.split_to(len)))
}

fn read_record(buf: &mut Bytes) -> Option<RawRecord> {
    let len = usize::try_from(get_varint(buf)?).ok()?;
    if buf.remaining() < len {
        return None;
    }
    let mut r = buf.split_to(len);
    if !r.has_remaining() {
        return None;
    }
    r.advance(1); // attributes: unused in v2
    let timestamp_delta = get_varint(&mut r)?;
    let offset_delta = get_varint(&mut r)?;
    let key = get_bytes(&mut r)?;
    let value = get_bytes(&mut r)?;
    let n = get_varint(&mut r)?;
    let mut headers = Vec::with_capacity(usize::try_from(n).ok()?.min(r.remaining()));
    for _ in 0..n {
        let key = get_bytes(&mut r)??;
        let value = get_bytes(&mut r)?;
        headers.push(Header {
            key: String::from_utf8_lossy(&key).into_owned(),
            value,
        });
    }
    Some(RawRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(compression: Compression) {
        let mut w = BatchWriter::new(1024);
        w.push(1000, Some(b"k1"), Some(b"v1"), &[]);
        w.push(
            990,
            None,
            None,
            &[
                Header::new("h", "x"),
                Header {
                    key: "n".into(),
                    value: None,
                },
            ],
        );
        w.push(1010, Some(b""), Some(&[7u8; 300]), &[]);
        let batch = w
            .finish(
                compression,
                ProducerStamp {
                    id: 5,
                    epoch: 1,
                    base_sequence: 9,
                },
            )
            .unwrap();
        // Also a truncated second copy, which must be left for the next fetch.
        let mut data = BytesMut::from(&batch[..]);
        let mut second = BytesMut::from(&batch[..]);
        second[..8].copy_from_slice(&3i64.to_be_bytes());
        data.extend_from_slice(&second[..second.len() - 1]);
        let topic: Arc<str> = Arc::from("t");
        let (records, next) = decode_batches(&topic, 0, data.freeze(), 1).unwrap();
        assert_eq!(next, Some(3));
        assert_eq!(records.len(), 2, "offset 0 is before from_offset");
        assert_eq!(records[0].offset, 1);
        assert_eq!(records[0].timestamp, 990);
        assert_eq!(records[0].key, None);
        assert_eq!(records[0].value, None);
        assert_eq!(records[0].headers[0], Header::new("h", "x"));
        assert_eq!(records[0].headers[1].value, None);
        assert_eq!(records[1].key.as_deref(), Some(&b""[..]));
        assert_eq!(records[1].value.as_deref(), Some(&[7u8; 300][..]));
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            roundtrip(c);
        }
    }

    #[test]
    fn corrupt_batches_are_reported_not_read() {
        let mut w = BatchWriter::new(64);
        w.push(1, Some(b"k"), Some(b"v"), &[]);
        let batch = w.finish(Compression::None, ProducerStamp::NONE).unwrap();
        let mut bad = BytesMut::from(&batch[..]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let topic: Arc<str> = Arc::from("t");
        let e = decode_batches(&topic, 3, bad.freeze(), 0).unwrap_err();
        assert!(e.to_string().contains("t-3"), "{e}");
    }

    #[test]
    fn record_size_bounds_the_encoding() {
        let headers = [Header::new("key", "value")];
        let mut w = BatchWriter::new(0);
        let before = w.size();
        w.push(123_456_789, Some(b"key"), Some(&[0u8; 1000]), &headers);
        assert!(
            w.size() - before
                <= BatchWriter::record_size(Some(b"key"), Some(&[0u8; 1000]), &headers)
        );
    }
}
