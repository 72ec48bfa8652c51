//! `Connection`: size-prefixed Kafka frames in, responses out in request order.
//!
//! The reader decodes each frame and dispatches it in arrival order, so appends from one
//! connection keep their order; replies that must wait (long-poll fetch) complete off the
//! reader, and the writer sends every reply in request order. A frame larger than
//! `socket.request.max.bytes`, an unknown API, an unsupported version or a body that does not
//! decode closes this connection only, with a logged reason.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::handlers::{self, Context, Reply};
use crate::observability::names;
use crate::replica_manager::ReplicaManager;
use crate::security::Session;
use crate::wire::{self, Decoded};

/// Replies queued per connection before the reader stops reading (pipelining depth).
const MAX_IN_FLIGHT: usize = 128;

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Socket error or the peer went away.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame that breaks the protocol.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// Shared by all connections.
pub struct Shared {
    /// Partitions and topics.
    pub rm: Arc<ReplicaManager>,
    /// Bytes of requests being processed (`queued.max.request.bytes`).
    pub memory: Arc<Semaphore>,
    /// The semaphore's total permits.
    pub memory_limit: usize,
    /// `socket.request.max.bytes`.
    pub max_frame: usize,
    /// The group coordinator.
    pub groups: Arc<crate::group::GroupCoordinator>,
    /// This node's membership of the cluster.
    pub cluster: Arc<crate::cluster::Cluster>,
}

struct Pending {
    rx: oneshot::Receiver<BytesMut>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Serves one client connection, secured and authenticated as `session` says, until it
/// closes or fails.
pub async fn serve<S>(
    stream: S,
    shared: Arc<Shared>,
    session: Session,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            // A dropped sender means the handler died; the client would wait forever otherwise.
            let Ok(frame) = p.rx.await else {
                return Err(std::io::Error::other("handler dropped a reply"));
            };
            wr.write_all(&frame).await?;
        }
        wr.shutdown().await
    });
    let session = Arc::new(session);
    let result = read_loop(&mut rd, &shared, tx, &session).await;
    // Let queued replies drain before closing (the writer ends once the channel is dropped).
    let written = writer
        .await
        .map_err(|e| ConnectionError::Malformed(format!("writer task failed: {e}")))?;
    result?;
    written.map_err(ConnectionError::from)
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    shared: &Arc<Shared>,
    tx: mpsc::Sender<Pending>,
    session: &Arc<Session>,
) -> Result<(), ConnectionError> {
    loop {
        let mut len = [0u8; 4];
        match rd.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = i32::from_be_bytes(len);
        if len < 8 || len as usize > shared.max_frame {
            return Err(ConnectionError::Malformed(format!(
                "frame size {len} outside [8, {}]",
                shared.max_frame
            )));
        }
        let len = len as usize;
        // Back-pressure: wait for memory before reading the body; a saturated broker slows
        // producers down instead of buffering without bound.
        // A frame larger than the whole budget waits for all of it, so it runs alone.
        let want = len.min(shared.memory_limit) as u32;
        let permit = Arc::clone(&shared.memory)
            .acquire_many_owned(want)
            .await
            .ok();
        // Read into uninitialised capacity: zero-filling each frame first costs a pass over it.
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let remaining = len - buf.len();
            let mut chunk = (&mut buf).limit(remaining);
            if rd.read_buf(&mut chunk).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
        metrics::counter!(names::BYTES_IN).increment(len as u64 + 4);
        let started = std::time::Instant::now();
        let (reply, encode) = handle_frame(buf.freeze(), shared, session)?;
        let api = encode.api_name();
        metrics::counter!(names::REQUESTS, "api" => api).increment(1);
        let (otx, orx) = oneshot::channel();
        match reply {
            Reply::Nothing => continue,
            Reply::Refused(reason) => return Err(ConnectionError::Malformed(reason)),
            Reply::Now(resp) => {
                let frame = encode.frame(*resp)?;
                metrics::histogram!(names::REQUEST_SECONDS, "api" => api)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(names::BYTES_OUT).increment(frame.len() as u64);
                // The receiver is queued just below; it only vanishes if the socket closed.
                let _ = otx.send(frame);
            }
            Reply::Later(fut) => {
                tokio::spawn(async move {
                    let resp = fut.await;
                    match encode.frame(resp) {
                        Ok(frame) => {
                            metrics::histogram!(names::REQUEST_SECONDS, "api" => api)
                                .record(started.elapsed().as_secs_f64());
                            metrics::counter!(names::BYTES_OUT).increment(frame.len() as u64);
                            let _ = otx.send(frame);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not encode a delayed response")
                        }
                    }
                });
            }
        }
        if tx
            .send(Pending {
                rx: orx,
                _permit: permit,
            })
            .await
            .is_err()
        {
            return Ok(()); // the writer stopped: the socket is gone
        }
    }
}

/// How to encode the reply to one request.
pub(crate) struct Encode {
    pub(crate) api_key: ApiKey,
    pub(crate) version: i16,
    pub(crate) correlation_id: i32,
}

impl Encode {
    /// The API's name from the registry, as metrics label it (static: labels must not
    /// allocate per request).
    fn api_name(&self) -> &'static str {
        handlers::registry::api(self.api_key).map_or("unserved", |a| a.name)
    }

    pub(crate) fn frame(&self, resp: ResponseKind) -> Result<BytesMut, ConnectionError> {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(self.correlation_id)
            .encode(&mut buf, self.api_key.response_header_version(self.version))
            .map_err(|e| ConnectionError::Malformed(format!("response header: {e}")))?;
        resp.encode(&mut buf, self.version).map_err(|e| {
            ConnectionError::Malformed(format!(
                "{:?} v{} response: {e}",
                self.api_key, self.version
            ))
        })?;
        let n = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&n.to_be_bytes());
        Ok(buf)
    }
}

fn handle_frame(
    frame: Bytes,
    shared: &Arc<Shared>,
    session: &Arc<Session>,
) -> Result<(Reply, Encode), ConnectionError> {
    let (api_key, version, header, req) =
        match wire::decode_request(frame).map_err(|e| ConnectionError::Malformed(e.0))? {
            Decoded::TooNewApiVersions { correlation_id } => {
                // KIP-511: answer in v0 with our ranges so the client can retry with one we speak.
                let enc = Encode {
                    api_key: ApiKey::ApiVersions,
                    version: 0,
                    correlation_id,
                };
                return Ok((
                    Reply::now(ResponseKind::ApiVersions(
                        handlers::unsupported_version_response(),
                    )),
                    enc,
                ));
            }
            Decoded::Request {
                api_key,
                version,
                header,
                body,
            } => (api_key, version, header, body),
        };
    let correlation_id = header.correlation_id;
    let span = tracing::debug_span!("request", api = ?api_key, v = version, corr = correlation_id);
    let _g = span.enter();
    let ctx = Context {
        rm: Arc::clone(&shared.rm),
        session: Arc::clone(session),
        version,
        client_id: header.client_id.map(|c| c.to_string()),
        groups: Arc::clone(&shared.groups),
        cluster: Arc::clone(&shared.cluster),
    };
    Ok((
        handlers::dispatch(ctx, api_key, *req),
        Encode {
            api_key,
            version,
            correlation_id,
        },
    ))
}
