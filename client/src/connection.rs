//! One TCP connection to one broker: framing, correlation ids, pipelined requests, and the
//! API versions negotiated when it opened.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::protocol::max_version;

/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

type Waiter = oneshot::Sender<Result<Bytes>>;

/// A connection to a broker. Requests may be issued concurrently from many tasks; each gets
/// its own response, matched by correlation id.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    writer: tokio::sync::Mutex<Writer>,
    pending: Arc<Mutex<HashMap<i32, Waiter>>>,
    closed: Arc<AtomicBool>,
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
}

struct Writer {
    half: OwnedWriteHalf,
    next_correlation: i32,
    buf: BytesMut,
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Connection> {
        let io = |source| Error::Io {
            broker: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(request_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(format!("connecting to broker {addr}")))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let (read, write) = stream.into_split();
        let pending: Arc<Mutex<HashMap<i32, Waiter>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_loop(
            addr.to_string(),
            read,
            Arc::clone(&pending),
            Arc::clone(&closed),
        ));
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            writer: tokio::sync::Mutex::new(Writer {
                half: write,
                next_correlation: 0,
                buf: BytesMut::new(),
            }),
            pending,
            closed,
            versions: HashMap::new(),
            request_timeout,
        };
        conn.versions = conn.negotiate().await?;
        Ok(conn)
    }

    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.call_at(&request, 3).await?;
        // UNSUPPORTED_VERSION: the broker answered in v0 with its range (KIP-511); retry there.
        if response.error_code == 35 {
            let v = response
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .map_or(0, |k| k.max_version.min(3));
            response = self.call_at(&request, v).await?;
        }
        crate::error::check(response.error_code, || {
            format!("ApiVersions to broker {}", self.addr)
        })?;
        Ok(response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the socket has failed or been closed by the broker.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The version of `R` to use: the highest both this client and the broker support.
    pub fn version<R: Request>(&self) -> Result<i16> {
        let key = ApiKey::try_from(R::KEY).expect("requests have known keys");
        let ours = (R::VERSIONS.min, max_version(key).min(R::VERSIONS.max));
        let theirs = self.versions.get(&R::KEY).copied();
        match theirs {
            Some((lo, hi)) if hi >= ours.0 && lo <= ours.1 => Ok(hi.min(ours.1)),
            _ => Err(Error::Unsupported {
                broker: self.addr.clone(),
                api: api_name(key),
                min: ours.0,
                max: ours.1,
            }),
        }
    }

    /// Whether the broker supports `R` at all.
    pub fn supports<R: Request>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.call_at(request, version).await
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn call_at<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        self.start_at(request, version).await?.wait().await
    }

    /// Writes `request` now and returns a handle to wait for its response with. Requests
    /// started one after another from one task reach the broker in that order.
    pub async fn start<R: Request>(&self, request: &R) -> Result<PendingResponse<R::Response>> {
        let version = self.version::<R>()?;
        self.start_at(request, version).await
    }

    async fn start_at<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<PendingResponse<R::Response>> {
        let (tx, rx) = oneshot::channel();
        self.send(request, version, Some(tx)).await?;
        Ok(PendingResponse {
            rx,
            version,
            header_version: R::Response::header_version(version),
            api: api_name(ApiKey::try_from(R::KEY).expect("requests have known keys")),
            addr: self.addr.clone(),
            timeout: self.request_timeout,
            closed: Arc::clone(&self.closed),
            _response: std::marker::PhantomData,
        })
    }

    /// Sends `request` without waiting for an answer (Produce with acks=0).
    pub async fn send_only<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version::<R>()?;
        self.send(request, version, None).await
    }

    async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        waiter: Option<Waiter>,
    ) -> Result<()> {
        if self.is_closed() {
            return Err(self.gone());
        }
        let mut w = self.writer.lock().await;
        let Writer {
            half,
            next_correlation,
            buf,
        } = &mut *w;
        *next_correlation = next_correlation.wrapping_add(1);
        let correlation = *next_correlation;
        buf.clear();
        buf.put_i32(0);
        let encoded = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()))
            .encode(buf, R::header_version(version))
            .and_then(|()| request.encode(buf, version));
        if let Err(e) = encoded {
            return Err(Error::Invalid(format!("cannot encode request: {e}")));
        }
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        if let Some(tx) = waiter {
            self.pending.lock().insert(correlation, tx);
        }
        if let Err(source) = half.write_all(buf).await {
            self.closed.store(true, Ordering::Release);
            self.pending.lock().remove(&correlation);
            return Err(Error::Io {
                broker: self.addr.clone(),
                source,
            });
        }
        // Large produce buffers are not kept for the life of the connection.
        if buf.capacity() > 1 << 20 {
            *buf = BytesMut::new();
        }
        Ok(())
    }

    fn gone(&self) -> Error {
        Error::Io {
            broker: self.addr.clone(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection closed"),
        }
    }
}

/// A request on the wire, waiting for its response.
pub struct PendingResponse<T> {
    rx: oneshot::Receiver<Result<Bytes>>,
    version: i16,
    header_version: i16,
    api: &'static str,
    addr: String,
    timeout: Duration,
    closed: Arc<AtomicBool>,
    _response: std::marker::PhantomData<fn() -> T>,
}

impl<T: Decodable> PendingResponse<T> {
    /// Waits up to `timeout` instead of `request.timeout.ms` (JoinGroup waits for a whole
    /// rebalance).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Waits up to `request.timeout.ms` for the response and decodes it.
    pub async fn wait(self) -> Result<T> {
        let io = |message: &str| Error::Io {
            broker: self.addr.clone(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, message.to_string()),
        };
        let mut body = match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(io("connection closed")),
            Err(_) => {
                // A late answer would be matched to nothing; the connection is no longer usable.
                self.closed.store(true, Ordering::Release);
                return Err(Error::Timeout(format!(
                    "{} request to broker {}",
                    self.api, self.addr
                )));
            }
        };
        let bad = |e: String| Error::Protocol {
            broker: self.addr.clone(),
            message: format!("cannot decode {} response: {e}", self.api),
        };
        ResponseHeader::decode(&mut body, self.header_version).map_err(|e| bad(e.to_string()))?;
        T::decode(&mut body, self.version).map_err(|e| bad(e.to_string()))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

async fn read_loop(
    addr: String,
    mut read: OwnedReadHalf,
    pending: Arc<Mutex<HashMap<i32, Waiter>>>,
    closed: Arc<AtomicBool>,
) {
    let outcome: Result<()> = async {
        let io = |source| Error::Io {
            broker: addr.clone(),
            source,
        };
        loop {
            let len = read.read_i32().await.map_err(io)?;
            if len < 4 || len as usize > MAX_RESPONSE_BYTES {
                return Err(Error::Protocol {
                    broker: addr.clone(),
                    message: format!("response frame of {len} bytes"),
                });
            }
            let mut buf = BytesMut::zeroed(len as usize);
            read.read_exact(&mut buf).await.map_err(io)?;
            let mut frame = buf.freeze();
            let correlation = frame.clone().get_i32();
            let waiter = pending.lock().remove(&correlation);
            match waiter {
                Some(tx) => {
                    // The caller may have timed out and gone away; nothing to deliver then.
                    let _ = tx.send(Ok(std::mem::take(&mut frame)));
                }
                None => {
                    return Err(Error::Protocol {
                        broker: addr.clone(),
                        message: format!("response to unknown correlation id {correlation}"),
                    })
                }
            }
            if closed.load(Ordering::Acquire) && pending.lock().is_empty() {
                return Ok(());
            }
        }
    }
    .await;
    closed.store(true, Ordering::Release);
    let waiters: Vec<Waiter> = pending.lock().drain().map(|(_, w)| w).collect();
    let message = match &outcome {
        Ok(()) => "connection closed".to_string(),
        Err(e) => e.to_string(),
    };
    if let Err(e) = &outcome {
        tracing::debug!(broker = %addr, error = %e, "connection failed");
    }
    for w in waiters {
        let _ = w.send(Err(Error::Io {
            broker: addr.clone(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, message.clone()),
        }));
    }
}

/// A readable name for an API key, for error messages.
pub(crate) fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        _ => "an API",
    }
}
