//! Mutation fuzzing of the two places untrusted bytes enter dcd (issue 20): image decoding
//! and preprocessing, and request decoding with the handlers' conversions. From seeds made
//! here (every image format dcd reads, a valid request of each method), each round mutates
//! bytes (bit flips, interesting values, header integers, insertions, deletions,
//! truncations, splices) and runs the input. A panic, or an input that takes longer than a
//! few seconds, fails the test and is written to target/fuzz-failures/ to reproduce.
//! Bounded: DCD_FUZZ_SECONDS per target (default 10) and at most 2 000 000 inputs. The
//! coverage-guided targets for deeper runs are in tests/fuzz (scripts/fuzz.sh).

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use dcd::features::preprocess::{Interpolation, Preprocess};
use image::{DynamicImage, ImageFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seed images: every format dcd decodes, odd sizes, grey, alpha, 16-bit, an animated GIF.
pub fn seed_images() -> Vec<Vec<u8>> {
    let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(13, 7, |x, y| {
        image::Rgb([(x * 19) as u8, (y * 37) as u8, ((x + y) * 5) as u8])
    }));
    let mut out = Vec::new();
    for format in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::WebP,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        let mut buf = Cursor::new(Vec::new());
        rgb.write_to(&mut buf, format).unwrap();
        out.push(buf.into_inner());
    }
    for img in [
        DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 30, image::Luma([9]))),
        DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            5,
            4,
            image::Rgba([1, 2, 3, 4]),
        )),
        DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            4,
            4,
            image::Rgb([65535u16, 0, 7]),
        )),
    ] {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, ImageFormat::Png).unwrap();
        out.push(buf.into_inner());
    }
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        for v in [10u8, 200] {
            let frame = image::Frame::new(image::RgbaImage::from_pixel(
                6,
                6,
                image::Rgba([v, v, v, 255]),
            ));
            enc.encode_frame(frame).unwrap();
        }
    }
    out.push(gif);
    out
}

const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0xFF,
    0xFFFF,
    100_000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
];

fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            b.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..b.len());
        match rng.gen_range(0..8) {
            0 => b[at] ^= 1 << rng.gen_range(0..8),
            1 => b[at] = [0u8, 0xFF, 0x7F, 0x80, 0x01][rng.gen_range(0..5)],
            2 if at + 4 <= b.len() => {
                let v = INTERESTING_U32[rng.gen_range(0..INTERESTING_U32.len())];
                let bytes = if rng.gen() {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[at..at + 4].copy_from_slice(&bytes);
            }
            3 => b.truncate(at),
            4 => {
                let n = rng.gen_range(1..=16).min(b.len() - at);
                b.drain(at..at + n);
            }
            5 => {
                let junk: Vec<u8> = (0..rng.gen_range(1..=16)).map(|_| rng.gen()).collect();
                b.splice(at..at, junk);
            }
            6 => {
                let n = rng.gen_range(1..=64).min(b.len() - at);
                let chunk = b[at..at + n].to_vec();
                b.splice(at..at, chunk);
            }
            _ if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            _ => b.reverse(),
        }
    }
    b
}

fn budget() -> Duration {
    let secs = std::env::var("DCD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

/// Runs `check` on mutants of `seeds` for the time budget; a panic or a slow input fails.
fn fuzz(name: &str, seeds: &[Vec<u8>], check: impl Fn(&[u8]) -> bool) {
    let mut rng = StdRng::seed_from_u64(0xdcd);
    let (started, budget) = (Instant::now(), budget());
    let (mut runs, mut accepted) = (0u64, 0u64);
    while started.elapsed() < budget && runs < 2_000_000 {
        let seed = &seeds[rng.gen_range(0..seeds.len())];
        let other = &seeds[rng.gen_range(0..seeds.len())];
        let input = mutate(&mut rng, seed, other);
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let took = t.elapsed();
        if outcome.is_err() || took > Duration::from_secs(5) {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{name}-{runs}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: input {runs} {} (took {took:?}); saved to {}",
                if outcome.is_err() {
                    "panicked"
                } else {
                    "was too slow"
                },
                path.display()
            );
        }
        accepted += outcome.unwrap() as u64;
        runs += 1;
    }
    println!(
        "{name}: {runs} inputs in {:?}, {accepted} accepted",
        started.elapsed()
    );
    assert!(runs > 100, "{name}: only {runs} inputs ran");
}

#[test]
fn fuzz_image_decoding() {
    let pre = Preprocess::imagenet(64, 56, Interpolation::Bicubic);
    let seeds = seed_images();
    for s in &seeds {
        assert!(pre.run(s).is_ok(), "every seed decodes");
    }
    fuzz("image", &seeds, |bytes| pre.run(bytes).is_ok());
}

#[test]
fn fuzz_request_decoding() {
    let seeds = dcd::api::fuzzing::seed_requests();
    let methods: Vec<&str> = seeds.iter().map(|(m, _)| *m).collect();
    let bodies: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    for (m, b) in &seeds {
        assert!(
            dcd::api::fuzzing::decode_request(m, b).is_ok(),
            "{m} seed is valid"
        );
    }
    // Each mutant is tried as every method's request.
    fuzz("request", &bodies, |bytes| {
        methods
            .iter()
            .filter(|m| dcd::api::fuzzing::decode_request(m, bytes).is_ok())
            .count()
            > 0
    });
}

/// Writes the seeds as the coverage-guided targets' corpus (tests/fuzz/corpus), committed:
/// `cargo test --test fuzz_inputs -- --ignored write_fuzz_corpus`.
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let images = root.join("decode_image");
    std::fs::create_dir_all(&images).unwrap();
    for (i, bytes) in seed_images().iter().enumerate() {
        std::fs::write(images.join(format!("seed-{i:02}")), bytes).unwrap();
    }
    let requests = root.join("decode_request");
    std::fs::create_dir_all(&requests).unwrap();
    for (method, body) in dcd::api::fuzzing::seed_requests() {
        let pick = dcd::api::fuzzing::METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap() as u8;
        let mut bytes = vec![pick];
        bytes.extend_from_slice(&body);
        std::fs::write(requests.join(format!("seed-{method}")), bytes).unwrap();
    }
}
