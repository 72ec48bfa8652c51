use sluice_storage::record::BatchBuilder;
use sluice_storage::{AppendOptions, Log, LogConfig, TopicPartition};
use std::time::Instant;
fn main() {
    let value = vec![0xabu8; 1024];
    let mut b = BatchBuilder::new();
    for i in 0..16 {
        b = b.record(None, Some(&value), 1_700_000_000_000 + i);
    }
    let b = b.build();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        &dir.path().join("b-0"),
        TopicPartition::new("b", 0),
        LogConfig {
            segment_bytes: 256 << 20,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..1024 {
        let s = Instant::now();
        log.append(&b, &AppendOptions::default()).unwrap();
        if i < 5 || i % 256 == 0 {
            eprintln!("append {i}: {:?}", s.elapsed());
        }
    }
    eprintln!("total {:?}", t.elapsed());
}
