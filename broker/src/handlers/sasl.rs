//! SaslHandshake and SaslAuthenticate once a connection is past authentication, or on a
//! listener without SASL: the exchange itself runs before dispatch
//! (`security::authenticate`), so here both answer ILLEGAL_SASL_STATE, as Kafka's
//! request handler does (re-authentication, KIP-368, is not served).

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::Context;
use crate::security::sasl::codes::ILLEGAL_SASL_STATE;

pub fn handshake(_ctx: &Context, _req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE)
}

pub fn authenticate(_ctx: &Context, _req: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ILLEGAL_SASL_STATE)
        .with_error_message(Some(super::str_bytes(
            "SaslAuthenticate request received after successful authentication",
        )))
}
