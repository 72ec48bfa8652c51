//! A connection from this broker to another, for replication: one request at a time, at a
//! version the caller fixes (both ends run Sluice). The fetcher is its only user; clients'
//! pipelining, version negotiation and retries live in `sluice-client`, which the broker
//! does not depend on.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The largest response accepted (a fetch answer is bounded by the request's max bytes).
const MAX_RESPONSE: usize = 256 << 20;

/// Why a call failed; the connection is then closed.
#[derive(Debug, thiserror::Error)]
#[error("broker {addr}: {what}")]
pub struct PeerError {
    addr: String,
    what: String,
}

struct Stream {
    tcp: Option<TcpStream>,
    next_correlation: i32,
}

/// A connection to broker `addr`.
pub struct Peer {
    addr: String,
    client_id: StrBytes,
    timeout: Duration,
    stream: Mutex<Stream>,
}

impl Peer {
    /// Connects to `addr`; each call must be answered within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Peer, PeerError> {
        let err = |what: String| PeerError {
            addr: addr.to_string(),
            what,
        };
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| err("connect timed out".into()))?
            .map_err(|e| err(format!("connect: {e}")))?;
        tcp.set_nodelay(true).map_err(|e| err(e.to_string()))?;
        Ok(Peer {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            timeout,
            stream: Mutex::new(Stream {
                tcp: Some(tcp),
                next_correlation: 0,
            }),
        })
    }

    /// Whether an earlier call failed, closing the connection.
    pub fn is_closed(&self) -> bool {
        self.stream.try_lock().is_ok_and(|s| s.tcp.is_none())
    }

    /// Sends `request` at `version` and waits for its response. Any failure (including a
    /// timeout, after which the stream's position is unknown) closes the connection.
    pub async fn call_at<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, PeerError> {
        let mut s = self.stream.lock().await;
        let correlation = s.next_correlation;
        s.next_correlation = s.next_correlation.wrapping_add(1);
        let Some(tcp) = s.tcp.as_mut() else {
            return Err(self.error("connection closed by an earlier failure".into()));
        };
        let result = tokio::time::timeout(
            self.timeout,
            exchange(tcp, &self.client_id, request, version, correlation),
        )
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()));
        if result.is_err() {
            s.tcp = None;
        }
        result.map_err(|what| self.error(what))
    }

    fn error(&self, what: String) -> PeerError {
        PeerError {
            addr: self.addr.clone(),
            what,
        }
    }
}

async fn exchange<R: Request>(
    tcp: &mut TcpStream,
    client_id: &StrBytes,
    request: &R,
    version: i16,
    correlation: i32,
) -> Result<R::Response, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(client_id.clone()))
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| format!("request header: {e}"))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| format!("request body: {e}"))?;
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    tcp.write_all(&buf)
        .await
        .map_err(|e| format!("send: {e}"))?;

    let len = tcp.read_i32().await.map_err(|e| format!("receive: {e}"))?;
    if len < 4 || len as usize > MAX_RESPONSE {
        return Err(format!("response frame of {len} bytes"));
    }
    let mut frame = BytesMut::zeroed(len as usize);
    tcp.read_exact(&mut frame)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    let mut frame = frame.freeze();
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    if header.correlation_id != correlation {
        return Err(format!(
            "response to request {} where {correlation} was awaited",
            header.correlation_id
        ));
    }
    let response =
        R::Response::decode(&mut frame, version).map_err(|e| format!("response: {e}"))?;
    if frame.has_remaining() {
        tracing::debug!(extra = frame.remaining(), "bytes after a peer's response");
    }
    Ok(response)
}
