//! Any bytes as a request frame: decoding returns a request or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_broker::wire::decode_request(bytes::Bytes::copy_from_slice(data));
});
