//! The socket side of SASL: before a SASL connection is served, its frames are read one at
//! a time and only ApiVersions (before the handshake), SaslHandshake and SaslAuthenticate
//! are taken; anything else closes the connection unanswered and is never dispatched, as
//! Kafka's `SaslServerAuthenticator` does. After a SaslHandshake v0 the client's token
//! comes as a bare size-prefixed frame, and the answer is one too.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::sasl::{Authenticator, SaslConfig, TokenOutcome};
use super::{KafkaPrincipal, Session};
use crate::connection::{ConnectionError, Encode, Shared};
use crate::handlers::{self, Context, Reply};
use crate::wire::{self, Decoded};

/// Kafka's `sasl.server.max.receive.size` default: the largest frame taken before
/// authentication, so an unauthenticated client cannot make the broker allocate much.
pub const MAX_RECEIVE: usize = 524_288;

/// Runs the SASL exchange on `stream`; the authenticated principal, or why the connection
/// closes (after any answer Kafka sends on that failure).
pub async fn authenticate<S>(
    stream: &mut S,
    shared: &Arc<Shared>,
    session: &Session,
    config: &SaslConfig,
) -> Result<KafkaPrincipal, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut auth = Authenticator::new(config);
    loop {
        let frame = read_frame(stream).await?;
        if auth.expects_raw_token() {
            return match auth.token(&frame) {
                TokenOutcome::Authenticated {
                    principal,
                    response,
                } => {
                    let mut out = BytesMut::with_capacity(4 + response.len());
                    out.extend_from_slice(&(response.len() as i32).to_be_bytes());
                    out.extend_from_slice(&response);
                    stream.write_all(&out).await?;
                    Ok(principal)
                }
                // SaslHandshake v0 has no way to carry an error: Kafka closes the connection.
                TokenOutcome::Failed { message, .. } => Err(refused(message)),
            };
        }
        let (api_key, version, correlation_id, body) =
            match wire::decode_request(frame).map_err(|e| ConnectionError::Malformed(e.0))? {
                Decoded::TooNewApiVersions { correlation_id } => {
                    let encode = Encode {
                        api_key: ApiKey::ApiVersions,
                        version: 0,
                        correlation_id,
                    };
                    let resp = ResponseKind::ApiVersions(handlers::unsupported_version_response());
                    stream.write_all(&encode.frame(resp)?).await?;
                    continue;
                }
                Decoded::Request {
                    api_key,
                    version,
                    header,
                    body,
                } => (api_key, version, header.correlation_id, body),
            };
        let encode = Encode {
            api_key,
            version,
            correlation_id,
        };
        match *body {
            RequestKind::ApiVersions(req) if auth.expects_handshake() => {
                let ctx = Context {
                    rm: Arc::clone(&shared.rm),
                    session: Arc::new(session.clone()),
                    version,
                    client_id: None,
                    groups: Arc::clone(&shared.groups),
                    cluster: Arc::clone(&shared.cluster),
                };
                let Reply::Now(resp) =
                    handlers::dispatch(ctx, api_key, RequestKind::ApiVersions(req))
                else {
                    return Err(refused("ApiVersions did not answer at once".into()));
                };
                stream.write_all(&encode.frame(*resp)?).await?;
            }
            RequestKind::SaslHandshake(req) => {
                let answer = auth.handshake(&req.mechanism, version);
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(answer.error_code)
                    .with_mechanisms(
                        answer
                            .mechanisms
                            .into_iter()
                            .map(handlers::str_bytes)
                            .collect(),
                    );
                stream
                    .write_all(&encode.frame(ResponseKind::SaslHandshake(resp))?)
                    .await?;
                if answer.error_code != 0 {
                    return Err(refused(format!(
                        "SaslHandshake for {:?} refused with error {}",
                        req.mechanism.as_str(),
                        answer.error_code
                    )));
                }
            }
            RequestKind::SaslAuthenticate(req) if auth.expects_authenticate() => {
                let outcome = auth.token(&req.auth_bytes);
                let resp = SaslAuthenticateResponse::default();
                let (resp, result) = match outcome {
                    TokenOutcome::Authenticated {
                        principal,
                        response,
                    } => (
                        // Kafka sends a null message on success.
                        resp.with_error_message(None)
                            .with_auth_bytes(Bytes::from(response)),
                        Ok(principal),
                    ),
                    TokenOutcome::Failed {
                        error_code,
                        message,
                    } => (
                        resp.with_error_code(error_code)
                            .with_error_message(Some(handlers::str_bytes(message.clone()))),
                        Err(refused(message)),
                    ),
                };
                stream
                    .write_all(&encode.frame(ResponseKind::SaslAuthenticate(resp))?)
                    .await?;
                return result;
            }
            _ => {
                return Err(refused(format!(
                    "unexpected {api_key:?} request during SASL authentication"
                )))
            }
        }
    }
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Bytes, ConnectionError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > MAX_RECEIVE {
        return Err(ConnectionError::Malformed(format!(
            "frame size {len} outside [0, {MAX_RECEIVE}] before authentication"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

fn refused(reason: String) -> ConnectionError {
    ConnectionError::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        reason,
    ))
}
