//! Record batches written by a real client (kafka-python's own batch builder, one per codec;
//! see tests/fixtures/kafka-python/generate.py) are accepted, stored byte for byte and decoded.

use sluice_storage::record::{records_section, RecordIter};
use sluice_storage::{AppendOptions, Log, LogConfig, Offset, ReadOptions, TopicPartition};

const TS: i64 = 1_700_000_000_000;

#[test]
fn kafka_python_batches_of_every_codec_append_and_decode() {
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        // One log per fixture: they share producer id and sequence, so a second one in the
        // same log would rightly be deduplicated as a retry.
        let dir = tempfile::tempdir().expect("tmp");
        let log = Log::open(
            &dir.path().join("fx-0"),
            TopicPartition::new("fx", 0),
            LogConfig::default(),
        )
        .expect("open");
        let path = format!(
            "{}/tests/fixtures/kafka-python/{codec}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        let batch = std::fs::read(&path).expect("fixture");
        let info = log
            .append(&batch, &AppendOptions::default())
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(info.first_offset, Offset(0), "{codec}");
        assert!(
            log.append(&batch, &AppendOptions::default())
                .expect("retry")
                .duplicate,
            "{codec} retry"
        );
        let stored = log
            .read(&ReadOptions::from(info.first_offset))
            .expect("read")
            .records;
        // Byte for byte, except the offset the broker writes (not covered by the CRC).
        assert_eq!(
            &stored[8..batch.len()],
            &batch[8..],
            "{codec} stored as sent"
        );
        let (h, data) = records_section(&stored[..batch.len()], 1 << 20).expect("valid");
        assert_eq!(h.compression() as usize, i, "{codec}");
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (1234, 5, 42)
        );
        let recs: Vec<_> = RecordIter::new(&data, h.record_count as usize)
            .collect::<Result<_, _>>()
            .expect("records");
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[0].key, Some(&b"k0"[..]));
        assert_eq!(recs[0].value, Some(&b"v0".repeat(40)[..]));
        assert_eq!(
            recs[0].headers,
            vec![(&b"h1"[..], Some(&b"x"[..])), (&b"h2"[..], None)]
        );
        assert_eq!(
            (recs[1].key, h.base_timestamp + recs[1].timestamp_delta),
            (None, TS + 5)
        );
        assert_eq!(recs[2].value, None, "tombstone");
        assert_eq!(
            (recs[3].key, recs[3].value),
            (Some(&b""[..]), Some(&b""[..]))
        );
        assert_eq!(h.base_timestamp + recs[4].timestamp_delta, TS - 1000);
        let t = log
            .offset_for_timestamp(TS + 6)
            .expect("search")
            .expect("found");
        assert_eq!((t.offset, t.timestamp), (Offset(2), TS + 7), "{codec}");
    }
}
