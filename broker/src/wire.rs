//! Request decoding, apart from I/O and dispatch: a frame's bytes in, a typed request or a
//! reason out. Never panics on any input (fuzzed by `fuzz/fuzz_targets/request_decode.rs`).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::handlers;

/// A decoded frame.
#[derive(Debug)]
pub enum Decoded {
    /// A request Sluice serves.
    Request {
        /// Its API.
        api_key: ApiKey,
        /// Its version.
        version: i16,
        /// Its header (client id, correlation id).
        header: RequestHeader,
        /// Its body (boxed: request bodies are large, the other variant is small).
        body: Box<RequestKind>,
    },
    /// ApiVersions at a version newer than ours: answered in v0 (KIP-511).
    TooNewApiVersions {
        /// Correlation id to answer with.
        correlation_id: i32,
    },
}

/// Why a frame is not a request Sluice serves; the connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes one frame (without its 4-byte size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let api = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key =
        ApiKey::try_from(api).map_err(|_| DecodeError(format!("unknown API key {api}")))?;
    let Some((lo, hi)) = handlers::versions(api_key) else {
        return Err(DecodeError(format!("API {api_key:?} is not supported")));
    };
    if version < lo || version > hi {
        if api_key == ApiKey::ApiVersions && version > hi {
            return Ok(Decoded::TooNewApiVersions { correlation_id });
        }
        return Err(DecodeError(format!(
            "{api_key:?} version {version} is outside {lo}..={hi}"
        )));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| DecodeError(format!("request header: {e}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| DecodeError(format!("{api_key:?} v{version} body: {e}")))?;
    if frame.has_remaining() {
        // Kafka ignores what follows a decoded body, and librdkafka 2.16 sends Metadata v12
        // with three such bytes: refusing them would cut off real clients.
        tracing::debug!(
            api = ?api_key,
            version,
            extra = frame.remaining(),
            "ignoring bytes after the request body"
        );
    }
    Ok(Decoded::Request {
        api_key,
        version,
        header,
        body: Box::new(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_unknown_and_truncated_frames_are_errors() {
        assert!(decode_request(Bytes::from_static(&[0, 3])).is_err());
        assert!(decode_request(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1])).is_err());
        // Metadata v12 header, then nothing.
        assert!(decode_request(Bytes::from_static(&[0, 3, 0, 12, 0, 0, 0, 1])).is_err());
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 5])),
            Ok(Decoded::TooNewApiVersions { correlation_id: 5 })
        ));
    }

    #[test]
    fn bytes_after_a_decoded_body_are_ignored_as_kafka_does() {
        // librdkafka 2.16's Metadata v12 for all topics: null topics, two flags, no tags,
        // then three more bytes.
        let frame = [
            0, 3, 0, 12, 0, 0, 0, 3, 0, 7, b'r', b'd', b'k', b'a', b'f', b'k', b'a', 0, 0, 0, 0, 0,
            1, 0, 0,
        ];
        match decode_request(Bytes::copy_from_slice(&frame)) {
            Ok(Decoded::Request { version: 12, .. }) => {}
            other => panic!("expected a Metadata v12 request, got {other:?}"),
        }
    }

    #[test]
    fn a_huge_array_length_is_an_error_not_an_allocation() {
        // Metadata v0, client id "x", then a topics array claiming i32::MAX entries: before the
        // vendored kafka-protocol patch this aborted the process on a 150 GB allocation.
        let frame = [0, 3, 0, 0, 0, 0, 0, 1, 0, 1, b'x', 0x7f, 0xff, 0xff, 0xff];
        assert!(decode_request(Bytes::copy_from_slice(&frame)).is_err());
        // The same with a compact (flexible) array in Metadata v12.
        let frame = [
            0, 3, 0, 12, 0, 0, 0, 1, 0, 1, b'x', 0, 0xff, 0xff, 0xff, 0xff, 0x07,
        ];
        assert!(decode_request(Bytes::copy_from_slice(&frame)).is_err());
    }
}
