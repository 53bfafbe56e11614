//! The backbone fixtures made by `scripts/make_backbone_fixtures.py`: the input batch the
//! script embeds, its reference features, and the cosine they are compared by.

use std::path::{Path, PathBuf};

use dcd::features::{Backbone, FeatureExtractor};
use dcd::settings::Pooling;

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backbones")
}

/// The script's `fixture_input`: image 0 per-pixel noise, image 1 constant 32×32 blocks.
pub fn fixture_input(side: usize) -> Vec<f32> {
    let h = |j: usize| {
        let v = (j as u64 * 2654435761 + 12345) % (1u64 << 32);
        (v as f64 / 4294967296.0 * 4.0 - 2.0) as f32
    };
    let nb = side / 32 + 1;
    let mut out = Vec::with_capacity(2 * 3 * side * side);
    for c in 0..3 {
        for y in 0..side {
            out.extend((0..side).map(|x| h((c * side + y) * side + x)));
        }
    }
    for c in 0..3 {
        for y in 0..side {
            out.extend((0..side).map(|x| h((c * nb + y / 32) * nb + x / 32)));
        }
    }
    out
}

/// The reference features of fixture `name`.
pub fn reference(name: &str) -> dcd::types::Matrix {
    dcd::formats::read_vectors(&fixtures().join(format!("{name}.features.npy"))).unwrap()
}

/// Cosine similarity, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The fixtures every precision and kernel-variant check runs on: (backbone, weights,
/// reference name, pooling).
pub fn half_precision_cases() -> Vec<(&'static str, PathBuf, &'static str, Pooling)> {
    vec![
        (
            "dino-vit",
            fixtures().join("dino-tiny"),
            "dino-tiny",
            Pooling::Cls,
        ),
        (
            "dinov2-vit",
            fixtures().join("dinov2-tiny"),
            "dinov2-tiny",
            Pooling::ClsMeanPatch,
        ),
        (
            "dinov2-vit",
            fixtures().join("dinov2-swiglu/model.safetensors"),
            "dinov2-swiglu",
            Pooling::Cls,
        ),
        (
            "resnet",
            fixtures().join("resnet-tiny.pth"),
            "resnet-tiny",
            Pooling::Cls,
        ),
        (
            "resnet",
            fixtures().join("resnet-basic-robust.pth"),
            "resnet-basic-robust",
            Pooling::Cls,
        ),
    ]
}

/// [`half_precision_cases`] and, where scripts/test.sh fetched its weights, the real
/// MobileNetV2 (depthwise and pointwise kernels): what the CPU kernel checks run on.
pub fn cpu_kernel_cases() -> Vec<(&'static str, PathBuf, &'static str, Pooling)> {
    let mut cases = half_precision_cases();
    if let Some(w) = super::mobilenet_weights() {
        cases.push(("mobilenetv2", w, "mobilenetv2", Pooling::Cls));
    }
    cases
}

/// Cosine of each fixture row of `model` against the reference.
pub fn reference_cosines(model: &Backbone, reference_name: &str) -> Vec<f64> {
    let got = model
        .embed_pixels(fixture_input(model.input_side()), 2)
        .unwrap();
    let want = reference(reference_name);
    (0..2)
        .map(|r| {
            cosine(
                &got.data[r * got.dim..][..got.dim],
                &want.data[r * want.dim..][..want.dim],
            )
        })
        .collect()
}
