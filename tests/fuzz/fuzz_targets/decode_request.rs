//! Any bytes as each method's request: decode and convert as the handlers do. Must give a
//! request or a Status, never panic. The first byte picks the method.
#![no_main]

use dcd::api::fuzzing::{decode_request, METHODS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&pick, body)) = data.split_first() {
        let _ = decode_request(METHODS[pick as usize % METHODS.len()], body);
    }
});
