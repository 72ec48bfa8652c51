//! How a broker reaches the active controller: it asks any quorum node, and follows
//! "not the controller" answers to the leader.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::network::{decode, read_frame, write_frame, CONTROLLER};
use super::service::{ControllerRequest, ControllerResponse};

/// A connection to whichever quorum node leads.
pub struct ControllerClient {
    voters: Vec<String>,
    leader: Option<String>,
    conn: Option<(String, TcpStream)>,
    timeout: Duration,
}

impl ControllerClient {
    /// A client of the quorum whose voters listen at `voters`; each attempt gives up after
    /// `timeout`.
    pub fn new(voters: Vec<String>, timeout: Duration) -> ControllerClient {
        ControllerClient {
            voters,
            leader: None,
            conn: None,
            timeout,
        }
    }

    /// Starts with `leader` as the first address to try (a hint from an earlier client).
    pub fn with_leader(mut self, leader: Option<String>) -> ControllerClient {
        self.leader = leader;
        self
    }

    /// The address that last answered as the active controller.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    async fn call_at(
        &mut self,
        addr: &str,
        req: &ControllerRequest,
    ) -> io::Result<ControllerResponse> {
        let attempt = async {
            if self.conn.as_ref().is_none_or(|(a, _)| a != addr) {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                self.conn = Some((addr.to_string(), s));
            }
            let (_, s) = self.conn.as_mut().expect("just connected");
            write_frame(s, CONTROLLER, req).await?;
            let (_, body) = read_frame(s).await?;
            let answer: Result<ControllerResponse, String> = decode(&body)?;
            answer.map_err(io::Error::other)
        };
        let r = tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from {addr}"),
                ))
            });
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Sends `req` to the active controller, trying the voters and following leader hints
    /// until `deadline` (an election takes a few seconds).
    pub async fn send(
        &mut self,
        req: &ControllerRequest,
        within: Duration,
    ) -> io::Result<ControllerResponse> {
        let deadline = Instant::now() + within;
        let mut last_error = None;
        loop {
            let mut candidates: Vec<String> = self.leader.iter().cloned().collect();
            candidates.extend(
                self.voters
                    .iter()
                    .filter(|v| Some(*v) != self.leader.as_ref())
                    .cloned(),
            );
            for addr in candidates {
                match self.call_at(&addr, req).await {
                    Ok(ControllerResponse::NotController { leader }) => {
                        if let Some((_, hint)) = leader.filter(|(_, a)| !a.is_empty()) {
                            if hint != addr {
                                self.leader = Some(hint);
                                break;
                            }
                        }
                    }
                    Ok(answer) => {
                        self.leader = Some(addr);
                        return Ok(answer);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if Instant::now() >= deadline {
                return Err(last_error.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::TimedOut, "no active controller was found")
                }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
