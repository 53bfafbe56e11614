//! Any bytes as an image: decode, bound, resize, crop, normalise. Must return, never panic,
//! and stay within the default image limits.
#![no_main]

use dcd::features::preprocess::{Interpolation, Preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pre = Preprocess::imagenet(64, 56, Interpolation::Bicubic);
    let _ = pre.run(data);
});
