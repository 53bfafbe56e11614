//! The embedding pipeline and `dcd embed`: results in input order and equal to a direct
//! forward pass, bad images reported one by one while the rest embed, concurrent callers
//! sharing batches, and the command's files and exit codes.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dcd::features::pipeline::{Embedder, ImageInput, PipelineConfig};
use dcd::features::preprocess::ImageError;
use dcd::features::{Backbone, FeatureExtractor, LoadOptions};

fn tiny_dino() -> Backbone {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backbones/dino-tiny");
    Backbone::load(
        "dino-vit",
        Some(dir.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// A distinct small image per seed, encoded as PNG or JPEG.
fn image_bytes(seed: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(40 + seed % 7, 30 + seed % 5, |x, y| {
        image::Rgb([
            (x * 6 + seed * 40) as u8,
            (y * 8 + seed * 13) as u8,
            ((x ^ y) * 9 + seed) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

fn config(max_batch: usize) -> PipelineConfig {
    PipelineConfig {
        max_batch,
        max_wait: Duration::from_millis(20),
        queue: 8,
        decode_threads: 2,
        model_threads: 2,
        limits: Default::default(),
    }
}

#[test]
fn pipeline_matches_direct_forward_and_keeps_order_around_bad_images() {
    let model = tiny_dino();
    let pre = *model.preprocess();
    let mut inputs = Vec::new();
    for i in 0..12u32 {
        let format = if i % 2 == 0 {
            image::ImageFormat::Png
        } else {
            image::ImageFormat::Jpeg
        };
        inputs.push(ImageInput::Bytes {
            name: format!("img{i}"),
            bytes: image_bytes(i, format),
        });
    }
    let mut truncated = image_bytes(99, image::ImageFormat::Png);
    truncated.truncate(truncated.len() / 2);
    inputs.insert(
        3,
        ImageInput::Bytes {
            name: "truncated.png".into(),
            bytes: truncated,
        },
    );
    inputs.insert(
        7,
        ImageInput::Bytes {
            name: "empty.jpg".into(),
            bytes: vec![],
        },
    );
    inputs.insert(
        9,
        ImageInput::Path(PathBuf::from("/nonexistent/missing.jpg")),
    );

    // Reference: each good image alone through preprocess + one forward pass.
    let expected: Vec<Option<Vec<f32>>> = inputs
        .iter()
        .map(|inp| match inp {
            ImageInput::Bytes { bytes, .. } => pre
                .run(bytes)
                .ok()
                .map(|px| model.embed_pixels(px, 1).unwrap().data),
            ImageInput::Path(_) => None,
        })
        .collect();

    let model: Arc<dyn FeatureExtractor> = Arc::new(model);
    let (embedder, stats) = Embedder::start(model, pre, &config(4)).unwrap();
    let results = embedder.embed(inputs);
    assert_eq!(results.len(), 15);
    for (i, (got, want)) in results.iter().zip(&expected).enumerate() {
        match (got, want) {
            (Ok(v), Some(w)) => {
                let diff = v
                    .iter()
                    .zip(w)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-4, "image {i}: batched result differs by {diff}");
            }
            (Err(e), None) => println!("image {i}: {e}"),
            (got, want) => panic!("image {i}: got {got:?}, expected {}", want.is_some()),
        }
    }
    let err = |i: usize| results[i].as_ref().unwrap_err();
    assert!(matches!(err(3).error, ImageError::Corrupt(_)), "{}", err(3));
    assert_eq!(err(3).path, PathBuf::from("truncated.png"));
    assert_eq!(err(7).error, ImageError::Empty);
    assert!(
        matches!(err(9).error, ImageError::Unreadable(_)),
        "{}",
        err(9)
    );
    assert!(err(9).to_string().contains("missing.jpg"));
    let s = stats.lock().clone();
    assert_eq!(s.images, 12);
    assert!(
        s.batches >= 3,
        "max batch 4 over 12 images: {} batches",
        s.batches
    );
}

#[test]
fn concurrent_callers_share_batches_and_each_gets_its_own_results() {
    let model = tiny_dino();
    let pre = *model.preprocess();
    let solo: Vec<Vec<f32>> = (0..24u32)
        .map(|i| {
            let px = pre.run(&image_bytes(i, image::ImageFormat::Png)).unwrap();
            model.embed_pixels(px, 1).unwrap().data
        })
        .collect();
    let model: Arc<dyn FeatureExtractor> = Arc::new(model);
    let (embedder, stats) = Embedder::start(model, pre, &config(16)).unwrap();
    let embedder = Arc::new(embedder);
    let handles: Vec<_> = (0..4u32)
        .map(|caller| {
            let embedder = embedder.clone();
            std::thread::spawn(move || {
                let ids: Vec<u32> = (0..6).map(|j| caller * 6 + j).collect();
                let inputs = ids
                    .iter()
                    .map(|&i| ImageInput::Bytes {
                        name: format!("c{caller}-{i}"),
                        bytes: image_bytes(i, image::ImageFormat::Png),
                    })
                    .collect();
                (ids, embedder.embed(inputs))
            })
        })
        .collect();
    for h in handles {
        let (ids, results) = h.join().unwrap();
        for (i, r) in ids.into_iter().zip(results) {
            let v = r.unwrap();
            let diff = v
                .iter()
                .zip(&solo[i as usize])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-4,
                "image {i} came back wrong or to the wrong caller ({diff})"
            );
        }
    }
    let s = stats.lock().clone();
    assert_eq!(s.images, 24);
    assert!(
        s.batches < 24,
        "images of different callers should share batches: {} batches",
        s.batches
    );
}

fn dcd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dcd"))
        .args(args)
        .env("DCD_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn dcd_embed_writes_vectors_and_row_paths_and_skips_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir_all(imgs.join("cats")).unwrap();
    for i in 0..5u32 {
        std::fs::write(
            imgs.join("cats").join(format!("{i}.png")),
            image_bytes(i, image::ImageFormat::Png),
        )
        .unwrap();
    }
    std::fs::write(imgs.join("broken.jpg"), b"\xff\xd8\xff\xe0 not really").unwrap();
    std::fs::write(imgs.join("notes.txt"), b"ignored: not an image extension").unwrap();
    let out = tmp.path().join("feats.npy");
    let o = embed_tiny(&[imgs.as_path()], &out, &["--batch", "2"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.jpg") && stderr.contains("corrupt"),
        "{stderr}"
    );
    let m = dcd::formats::read_vectors(&out).unwrap();
    assert_eq!((m.rows, m.dim), (5, 32));
    let keys = std::fs::read_to_string(tmp.path().join("feats.keys.txt")).unwrap();
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 5);
    assert!(
        keys[0].ends_with("cats/0.png") && keys[4].ends_with("cats/4.png"),
        "{keys:?}"
    );

    // Only bad images: nothing to write, a user error.
    let o = embed_tiny(
        &[&imgs.join("broken.jpg")],
        &tmp.path().join("none.npy"),
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No CUDA in this build (or no GPU here): a clear refusal, not a crash.
    let o = embed_tiny(
        &[imgs.as_path()],
        &tmp.path().join("gpu.npy"),
        &["--device", "cuda"],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--device cuda:") && err.contains("--device cpu"),
        "{err}"
    );
    // A folder without images.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = embed_tiny(&[empty.as_path()], &tmp.path().join("x.npy"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no images found"));
}

/// `dcd embed` with the tiny DINO fixture, the given inputs and output, and extra flags.
fn embed_tiny(inputs: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backbones/dino-tiny");
    let mut args = vec![
        "embed",
        "--backbone",
        "dino-vit",
        "--weights",
        weights.to_str().unwrap(),
    ];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    dcd(&args)
}

#[test]
fn dcd_bench_embed_reports_preprocess_and_forward_apart() {
    let o = dcd(&[
        "bench",
        "embed",
        "--backbone",
        "resnet18",
        "--random-weights",
        "--batch",
        "1,2",
        "--seconds",
        "0.1",
        "--images",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dim"], 512);
    assert!(v["preprocess"]["per_core_images_per_s"].as_f64().unwrap() > 0.0);
    let fwd = v["forward"].as_array().unwrap();
    assert_eq!(fwd.len(), 2);
    assert_eq!(fwd[1]["batch"], 2);
    assert!(fwd[1]["images_per_s"].as_f64().unwrap() > 0.0);
}

/// A stand-in model over 2x2 inputs: each row is the image's mean value. A batch holding a
/// white image fails as a whole (as a shape or device error would), and a black image makes
/// the model panic.
struct Fussy {
    device: candle_core::Device,
}

impl FeatureExtractor for Fussy {
    fn dim(&self) -> usize {
        1
    }
    fn input_side(&self) -> usize {
        2
    }
    fn device(&self) -> &candle_core::Device {
        &self.device
    }
    fn embed(
        &self,
        _batch: &candle_core::Tensor,
    ) -> dcd::features::FeatureResult<candle_core::Tensor> {
        unreachable!("embed_pixels is overridden")
    }
    fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        n: usize,
    ) -> dcd::features::FeatureResult<dcd::types::Matrix> {
        let means: Vec<f32> = pixels
            .chunks_exact(12)
            .map(|px| px.iter().sum::<f32>() / 12.0)
            .collect();
        if means.iter().any(|&m| m > 2.0) {
            return Err(dcd::features::FeatureError::Config(
                "white images break me".into(),
            ));
        }
        if means.iter().any(|&m| m < -1.9) {
            panic!("black images crash me");
        }
        Ok(dcd::types::Matrix::new(n, 1, means))
    }
}

fn flat(value: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(6, 6, image::Rgb([value, value, value]));
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Issue 20: one bad item never fails another. Batches mix callers, so a forward pass that
/// fails (or panics) on one image is run again image by image: only that image gets an error.
#[test]
fn a_failing_or_panicking_image_fails_alone_in_its_batch() {
    use dcd::features::preprocess::{Interpolation, Preprocess};
    let model: Arc<dyn FeatureExtractor> = Arc::new(Fussy {
        device: candle_core::Device::Cpu,
    });
    let pre = Preprocess::imagenet(2, 2, Interpolation::Bilinear);
    let config = PipelineConfig {
        // One batch for all: the batcher waits long enough to collect them.
        max_wait: Duration::from_millis(500),
        ..config(16)
    };
    let (embedder, stats) = Embedder::start(model, pre, &config).unwrap();
    let values = [100u8, 255, 120, 0, 140, 160];
    let inputs = values
        .iter()
        .map(|&v| ImageInput::Bytes {
            name: format!("grey{v}"),
            bytes: flat(v),
        })
        .collect();
    let results = embedder.embed(inputs);
    for (v, r) in values.iter().zip(&results) {
        match v {
            255 => {
                let e = r.as_ref().unwrap_err();
                assert!(e.to_string().contains("white images break me"), "{e}");
            }
            0 => {
                let e = r.as_ref().unwrap_err();
                assert!(e.to_string().contains("black images crash me"), "{e}");
            }
            _ => {
                let got = r.as_ref().unwrap_or_else(|e| panic!("grey {v}: {e}"))[0];
                let want = pre.run(&flat(*v)).unwrap().iter().sum::<f32>() / 12.0;
                assert!((got - want).abs() < 1e-5, "grey {v}: {got} vs {want}");
            }
        }
    }
    // The pipeline still serves after the panic.
    let again = embedder.embed(vec![ImageInput::Bytes {
        name: "after".into(),
        bytes: flat(90),
    }]);
    assert!(again[0].is_ok());
    assert_eq!(stats.lock().images, 5);
}
