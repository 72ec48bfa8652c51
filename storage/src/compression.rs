//! The record-batch compression codecs Kafka clients use, with bounded decompression.
//!
//! Kafka's framing per codec: gzip streams; snappy either raw or in the xerial framing the
//! Java client writes (magic `0x82 SNAPPY 0x00`, then big-endian length-prefixed blocks); the
//! LZ4 *frame* format; zstd frames. Decompression stops with an error past `max_len` bytes, so
//! a decompression bomb costs at most that much memory.

use std::io::{Read, Write};

/// A record batch's compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression (0).
    #[default]
    None,
    /// gzip (1).
    Gzip,
    /// Snappy (2).
    Snappy,
    /// LZ4 frame format (3).
    Lz4,
    /// Zstandard (4).
    Zstd,
}

/// A codec failure.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// Attribute bits naming no known codec.
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    /// The compressed data is malformed.
    #[error("{codec:?} data is malformed: {reason}")]
    Malformed {
        /// The codec.
        codec: Compression,
        /// What went wrong.
        reason: String,
    },
    /// Decompressed data would exceed the allowed size.
    #[error("decompressed data exceeds {0} bytes")]
    TooLarge(usize),
}

impl Compression {
    /// The codec for attribute bits 0-2.
    pub fn from_id(id: u8) -> Result<Compression, CompressionError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(CompressionError::UnknownCodec(other)),
        })
    }

    /// The attribute bits for this codec.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name (`compression.type` values).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

fn malformed(codec: Compression, e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Malformed {
        codec,
        reason: e.to_string(),
    }
}

/// Reads all of `r` into a vector, failing once more than `max_len` bytes come out.
fn read_bounded(
    codec: Compression,
    r: impl Read,
    max_len: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let n = r
        .take(max_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(codec, e))?;
    if n > max_len {
        return Err(CompressionError::TooLarge(max_len));
    }
    Ok(out)
}

/// Decompresses `data` (a batch's records section) with `codec`, producing at most `max_len` bytes.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => {
            if data.len() > max_len {
                return Err(CompressionError::TooLarge(max_len));
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(data), max_len),
        Compression::Snappy => decompress_snappy(data, max_len),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| malformed(codec, e))?;
            read_bounded(codec, decoder, max_len)
        }
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(data).map_err(|e| malformed(codec, e))?;
            read_bounded(codec, decoder, max_len)
        }
    }
}

fn decompress_snappy(data: &[u8], max_len: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CompressionError> {
        let len = snap::raw::decompress_len(block).map_err(|e| malformed(codec, e))?;
        if out.len() + len > max_len {
            return Err(CompressionError::TooLarge(max_len));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| malformed(codec, e))?;
        Ok(())
    };
    let mut out = Vec::new();
    let Some(mut rest) = data.strip_prefix(XERIAL_MAGIC) else {
        raw(data, &mut out)?;
        return Ok(out);
    };
    // Xerial: version and compatible-version i32s, then (i32 length, raw block) pairs.
    if rest.len() < 8 {
        return Err(malformed(codec, "truncated xerial header"));
    }
    rest = &rest[8..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(malformed(codec, "truncated xerial block length"));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let block = rest
            .get(4..4 + len)
            .ok_or_else(|| malformed(codec, "truncated xerial block"))?;
        raw(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Compresses `data` with `codec` in the framing Kafka clients read.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    compress_at(codec, data, None)
}

/// Compresses `data` with `codec` at `level` (Kafka's `compression.<codec>.level`: gzip 1-9,
/// lz4 1-17, zstd -131072..=22), or the codec's default level; snappy has no levels.
pub fn compress_at(
    codec: Compression,
    data: &[u8],
    level: Option<i32>,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let level = match level {
                Some(l @ 1..=9) => flate2::Compression::new(l as u32),
                _ => flate2::Compression::default(),
            };
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).map_err(|e| malformed(codec, e))?;
            e.finish().map_err(|e| malformed(codec, e))
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|e| malformed(codec, e)),
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .level(level.map_or(9, |l| l.clamp(1, 17) as u32))
                .build(Vec::new())
                .map_err(|e| malformed(codec, e))?;
            e.write_all(data).map_err(|e| malformed(codec, e))?;
            let (out, res) = e.finish();
            res.map_err(|e| malformed(codec, e))?;
            Ok(out)
        }
        Compression::Zstd => {
            zstd::stream::encode_all(data, level.unwrap_or(3)).map_err(|e| malformed(codec, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_and_bounds_output() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in ALL {
            let c = compress(codec, &data).expect("compress");
            assert_eq!(
                decompress(codec, &c, data.len()).expect("decompress"),
                data,
                "{codec:?}"
            );
            assert!(
                matches!(
                    decompress(codec, &c, data.len() - 1),
                    Err(CompressionError::TooLarge(_))
                ),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn xerial_snappy_as_the_java_client_writes_it_is_read() {
        let data = b"hello hello hello xerial".repeat(10);
        let block = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("compress");
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for half in [&block[..], &block[..]] {
            framed.extend_from_slice(&(half.len() as u32).to_be_bytes());
            framed.extend_from_slice(half);
        }
        let mut twice = data.clone();
        twice.extend_from_slice(&data);
        assert_eq!(
            decompress(Compression::Snappy, &framed, 1 << 20).expect("xerial"),
            twice
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in ALL {
            for junk in [
                &b""[..],
                b"\x00",
                b"\xff\xff\xff\xff\xff\xff",
                b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff",
            ] {
                let _ = decompress(codec, junk, 1 << 16);
            }
        }
    }
}
