//! ApiVersions (KIP-35, KIP-511): the served versions, straight from the registry.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::registry::{versions, APIS};
use super::Context;

fn api_keys() -> Vec<ApiVersion> {
    APIS.iter()
        .filter_map(|a| {
            versions(a.key).map(|(lo, hi)| {
                ApiVersion::default()
                    .with_api_key(a.key as i16)
                    .with_min_version(lo)
                    .with_max_version(hi)
            })
        })
        .collect()
}

pub(super) fn handle(_ctx: &Context, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The reply to an ApiVersions request at a version newer than ours: UNSUPPORTED_VERSION with
/// our ranges, to be encoded as v0 so any client can read it (KIP-511).
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(crate::error_map::code(
            &crate::error::BrokerError::UnsupportedVersion("ApiVersions version too new".into()),
        ))
        .with_api_keys(api_keys())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn advertised_ranges_stay_within_the_protocol_crate() {
        for v in api_keys() {
            let key = ApiKey::try_from(v.api_key).expect("known key");
            let valid = key.valid_versions();
            assert!(
                valid.min <= v.min_version && v.max_version <= valid.max,
                "{key:?}"
            );
        }
    }

    #[test]
    fn v3_response_omits_default_tagged_fields() {
        // librdkafka 2.0.2 rejects ApiVersions v3 replies that carry default-valued tagged
        // fields; the body must end with an empty tagged-field section (a single 0 byte).
        let resp = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(18)
            .with_min_version(0)
            .with_max_version(3)]);
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, 3).expect("encode");
        // error_code(2) + compact array len(1) + entry(2+2+2+tags 1) + throttle(4) + tags(1)
        assert_eq!(buf.len(), 2 + 1 + 7 + 4 + 1, "{:02x?}", &buf[..]);
        assert_eq!(buf[buf.len() - 1], 0);
    }
}
