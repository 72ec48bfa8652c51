//! A broker on port 0 in a temporary directory, for wire-level tests.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running broker; dropping the returned sender and directory ends it.
#[allow(dead_code)] // not every test binary uses it
pub async fn start(
    settings: &[(&str, &str)],
) -> (
    std::net::SocketAddr,
    tempfile::TempDir,
    tokio::sync::watch::Sender<bool>,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    for (k, v) in settings {
        c.set(k, v).expect("setting");
    }
    let server = Server::bind(c).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(rx));
    (addr, dir, tx)
}

/// A client connection speaking raw kafka-protocol requests, one at a time.
#[allow(dead_code)] // not every test binary uses it
pub struct Conn {
    pub s: TcpStream,
    pub corr: i32,
}

#[allow(dead_code)]
impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.expect("connect"),
            corr: 0,
        }
    }

    /// Sends `req` at `version` and reads its response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.corr += 1;
        let mut b = BytesMut::new();
        b.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut b, api.request_header_version(version))
            .expect("header");
        req.encode(&mut b, version).expect("body");
        let n = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&n.to_be_bytes());
        self.s.write_all(&b).await.expect("send");
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).await.expect("reply");
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf).await.expect("reply body");
        let mut buf = Bytes::from(buf);
        let h =
            ResponseHeader::decode(&mut buf, api.response_header_version(version)).expect("header");
        assert_eq!(h.correlation_id, self.corr);
        Resp::decode(&mut buf, version).expect("decode")
    }
}

/// Waits until the coordinator of `group` has loaded its `__consumer_offsets` partition (it
/// loads in the background and answers COORDINATOR_LOAD_IN_PROGRESS meanwhile, which real
/// clients retry).
#[allow(dead_code)]
pub async fn wait_for_coordinator_load(c: &mut Conn, group: &str) {
    use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &req).await;
        if r.groups[0].error_code != 14 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the offsets partition never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
