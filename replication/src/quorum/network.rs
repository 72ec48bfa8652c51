//! Raft RPCs between controller nodes, on their own port (`controller.listener`).
//!
//! One TCP connection per peer, requests answered in order. A frame is
//! `[len: u32][kind: u8][JSON]`; the answer is a frame of the same shape holding
//! `Result<response, message>`. The metadata log is small and RPCs are rare (heartbeats and
//! metadata changes), so JSON's clarity costs nothing that matters here.

use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::service::{ControllerRequest, ControllerResponse, Envelope};
use super::state_machine::{Snapshot, SnapshotMeta};
use super::{Raft, TypeConfig, Vote};

const APPEND: u8 = 1;
const VOTE: u8 = 2;
const SNAPSHOT: u8 = 3;
/// A broker's request to the active controller ([`ControllerRequest`]).
pub(crate) const CONTROLLER: u8 = 4;
/// A leader stepping down asks a caught-up voter to stand for election at once.
const TRANSFER: u8 = 5;
/// Frames beyond this are refused: a snapshot of the metadata image is far smaller.
const MAX_FRAME: usize = 256 << 20;

#[derive(Serialize, Deserialize)]
struct SnapshotRequest {
    vote: Vote,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

pub(crate) async fn write_frame<T: Serialize>(
    s: &mut TcpStream,
    kind: u8,
    body: &T,
) -> io::Result<()> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(5 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(&body);
    s.write_all(&buf).await
}

pub(crate) async fn read_frame(s: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let len = s.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let kind = s.read_u8().await?;
    // Grown as bytes arrive: a length prefix alone does not get to allocate.
    let mut body = Vec::with_capacity(len.min(1 << 20));
    (&mut *s).take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "frame cut short",
        ));
    }
    Ok((kind, body))
}

pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Answers Raft RPCs arriving on `listener` with `raft`, until `stop` turns true.
/// Controller requests go to `controller`.
pub async fn serve(
    raft: Raft,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    controller: tokio::sync::mpsc::Sender<Envelope>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let raft = raft.clone();
                let stop = stop.clone();
                let controller = controller.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(raft, stream, stop, controller).await {
                        if e.kind() != io::ErrorKind::UnexpectedEof {
                            tracing::debug!(%peer, error = %e, "raft connection closed");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "raft listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    raft: Raft,
    mut s: TcpStream,
    mut stop: watch::Receiver<bool>,
    controller: tokio::sync::mpsc::Sender<Envelope>,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    loop {
        let (kind, body) = tokio::select! {
            f = read_frame(&mut s) => f?,
            _ = stop.changed() => return Ok(()),
        };
        match kind {
            APPEND => {
                let r = raft
                    .append_entries(decode(&body)?)
                    .await
                    .map_err(|e| e.to_string());
                write_frame(&mut s, kind, &r).await?;
            }
            VOTE => {
                let r = raft.vote(decode(&body)?).await.map_err(|e| e.to_string());
                write_frame(&mut s, kind, &r).await?;
            }
            SNAPSHOT => {
                let req: SnapshotRequest = decode(&body)?;
                let snapshot = Snapshot {
                    meta: req.meta,
                    snapshot: req.data,
                };
                let r = raft
                    .install_full_snapshot(req.vote, snapshot)
                    .await
                    .map_err(|e| e.to_string());
                write_frame(&mut s, kind, &r).await?;
            }
            TRANSFER => {
                let r = raft
                    .handle_transfer_leader(decode(&body)?)
                    .await
                    .map_err(|e| e.to_string());
                write_frame(&mut s, kind, &r).await?;
            }
            CONTROLLER => {
                let req: ControllerRequest = decode(&body)?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let answer = if controller.send((req, tx)).await.is_ok() {
                    rx.await.map_err(|_| "the controller stopped".to_string())
                } else {
                    Err("the controller stopped".to_string())
                };
                let answer: Result<ControllerResponse, String> = answer;
                write_frame(&mut s, kind, &answer).await?;
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown RPC kind {other}"),
                ));
            }
        }
    }
}

/// Makes connections to peers for openraft.
#[derive(Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

/// One peer, reached at `addr`; the connection is made on first use and remade after an error.
pub struct Peer {
    target: u64,
    addr: String,
    conn: Option<TcpStream>,
}

impl Peer {
    /// One RPC; a failure to reach the peer and an error it answered are alike to openraft:
    /// the peer is unreachable for now, and it retries with backoff.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: u8,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, Unreachable<TypeConfig>> {
        match self.exchange(kind, req, ttl).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(remote)) => Err(Unreachable::from_string(remote)),
            Err(e) => Err(Unreachable::from_string(e)),
        }
    }

    async fn exchange<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: u8,
        req: &Req,
        ttl: Duration,
    ) -> io::Result<Result<Resp, String>> {
        let attempt = async {
            if self.conn.is_none() {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                self.conn = Some(s);
            }
            let s = self.conn.as_mut().expect("just connected");
            write_frame(s, kind, req).await?;
            let (got, body) = read_frame(s).await?;
            if got != kind {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "answer to another RPC",
                ));
            }
            decode(&body)
        };
        let r = match tokio::time::timeout(ttl, attempt).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from node {} in {ttl:?}", self.target),
            )),
        };
        if r.is_err() {
            // The stream may hold half an exchange: start afresh next time.
            self.conn = None;
        }
        r
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(APPEND, &rpc, option.hard_ttl())
            .await
            .map_err(RPCError::Unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(VOTE, &rpc, option.hard_ttl())
            .await
            .map_err(RPCError::Unreachable)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(TRANSFER, &req, option.hard_ttl())
            .await
            .map_err(RPCError::Unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let ttl = option.hard_ttl().max(Duration::from_secs(30));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.call(SNAPSHOT, &req, ttl) => r.map_err(StreamingError::Unreachable),
        }
    }
}
