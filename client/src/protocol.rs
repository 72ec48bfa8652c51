//! Which version of each API this client speaks.
//!
//! The ceilings are the newest versions whose shape the client code builds and reads; the
//! version used on a connection is the highest both sides support.

use kafka_protocol::messages::ApiKey;

/// The highest version of `key` this client knows how to use.
pub(crate) fn max_version(key: ApiKey) -> i16 {
    use ApiKey::*;
    match key {
        Produce => 9,
        // v13 names topics by id only.
        Fetch => 12,
        ListOffsets => 7,
        Metadata => 12,
        OffsetCommit => 8,
        // v8 batches groups; one group at a time is all the client needs.
        OffsetFetch => 7,
        // v4 batches coordinator keys.
        FindCoordinator => 3,
        JoinGroup => 7,
        Heartbeat => 4,
        LeaveGroup => 4,
        SyncGroup => 5,
        DescribeGroups => 5,
        ListGroups => 4,
        DeleteGroups => 2,
        ApiVersions => 3,
        CreateTopics => 7,
        // v6 may name topics by id.
        DeleteTopics => 5,
        DescribeConfigs => 4,
        IncrementalAlterConfigs => 1,
        CreatePartitions => 3,
        InitProducerId => 4,
        DescribeCluster => 1,
        DeleteRecords => 2,
        OffsetDelete => 0,
        DescribeAcls => 3,
        CreateAcls => 3,
        DeleteAcls => 3,
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::{Decodable, Encodable};

    /// Some brokers (Tansu 0.6) send Fetch v12 responses carrying tag 0 (NodeEndpoints, a
    /// v16 field). Tagged fields are optional by design; such a response still decodes.
    #[test]
    fn a_tag_from_a_later_version_does_not_fail_a_response() {
        let mut b = BytesMut::new();
        FetchResponse::default().encode(&mut b, 12).unwrap();
        assert_eq!(b.last(), Some(&0), "no tagged fields at the end");
        b.truncate(b.len() - 1);
        // One tagged field: tag 0, 1 byte long, holding an empty compact array.
        b.extend_from_slice(&[1, 0, 1, 1]);
        let r = FetchResponse::decode(&mut Bytes::from(b), 12).unwrap();
        assert!(r.responses.is_empty());
        assert_eq!(r.unknown_tagged_fields.len(), 1);
    }
}
