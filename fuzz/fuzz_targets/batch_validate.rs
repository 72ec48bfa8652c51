//! Any bytes as produced records: validation and record decoding never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_storage::batch::{validate_client_batch, BatchIter};
use sluice_storage::record::{records_section, RecordIter};

fuzz_target!(|data: &[u8]| {
    let _ = validate_client_batch(data, 1 << 20);
    for (at, h) in BatchIter::new(data) {
        if let Ok((h, body)) = records_section(&data[at..at + h.size()], 1 << 20) {
            for r in RecordIter::new(&body, h.record_count.max(0) as usize) {
                let _ = r;
            }
        }
    }
});
