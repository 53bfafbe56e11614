//! Backbone parity with the PyTorch reference implementations (HF transformers ViTModel and
//! Dinov2Model, torchvision ResNet and MobileNetV2) on the fixtures made by
//! `scripts/make_backbone_fixtures.py`, the real MobileNetV2 ImageNet weights on a photo, and
//! the errors for wrong or partial weights.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dcd::features::registry;
use dcd::features::weights::{Placement, Weights};
use dcd::features::{Backbone, FeatureError, FeatureExtractor, LoadOptions};
use dcd::settings::Pooling;

use common::backbone_fixtures::{
    cosine, cpu_kernel_cases, fixture_input, fixtures, half_precision_cases, reference,
    reference_cosines,
};

/// Loads `backbone` from `weights`, embeds the fixture batch and compares with the reference.
fn check_parity(backbone: &str, weights: &Path, reference_name: &str, pooling: Pooling) {
    let opts = LoadOptions {
        pooling,
        ..LoadOptions::default()
    };
    let model = Backbone::load(backbone, Some(weights.to_str().unwrap()), &opts)
        .unwrap_or_else(|e| panic!("{backbone} from {}: {e}", weights.display()));
    let got = model
        .embed_pixels(fixture_input(model.input_side()), 2)
        .unwrap();
    let want = reference(reference_name);
    assert_eq!(
        (got.rows, got.dim),
        (want.rows, want.dim),
        "{reference_name} shape"
    );
    // The two inputs must give clearly different features, or a model ignoring its input
    // would pass.
    let rows_cos = cosine(&want.data[..want.dim], &want.data[want.dim..]);
    assert!(
        rows_cos < 0.99,
        "{reference_name}: reference rows too alike ({rows_cos})"
    );
    for r in 0..2 {
        let (g, w) = (
            &got.data[r * got.dim..][..got.dim],
            &want.data[r * want.dim..][..want.dim],
        );
        let cos = cosine(g, w);
        let max_abs = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = w.iter().map(|x| x.abs()).fold(0f32, f32::max);
        println!("{reference_name} row {r}: cosine {cos:.7}, max |diff| {max_abs:.2e} (max |ref| {scale:.2})");
        assert!(
            cos >= 0.9999,
            "{reference_name} row {r}: cosine {cos} < 0.9999"
        );
        assert!(
            max_abs <= 1e-3 * scale.max(1.0),
            "{reference_name} row {r}: max diff {max_abs}"
        );
    }
}

#[test]
fn dino_vit_matches_transformers_vitmodel() {
    check_parity(
        "dino-vit",
        &fixtures().join("dino-tiny"),
        "dino-tiny",
        Pooling::Cls,
    );
}

#[test]
fn dinov2_matches_transformers_with_resized_positions_and_mean_patch() {
    check_parity(
        "dinov2-vit",
        &fixtures().join("dinov2-tiny"),
        "dinov2-tiny",
        Pooling::ClsMeanPatch,
    );
}

#[test]
fn dinov2_swiglu_mlp_matches_transformers() {
    check_parity(
        "dinov2-vit",
        &fixtures().join("dinov2-swiglu/model.safetensors"),
        "dinov2-swiglu",
        Pooling::Cls,
    );
}

#[test]
fn resnet_bottleneck_from_zip_pth_matches_torchvision() {
    check_parity(
        "resnet",
        &fixtures().join("resnet-tiny.pth"),
        "resnet-tiny",
        Pooling::Cls,
    );
}

#[test]
fn robust_resnet_checkpoint_in_legacy_format_loads_and_matches() {
    check_parity(
        "resnet",
        &fixtures().join("resnet-basic-robust.pth"),
        "resnet-basic-robust",
        Pooling::Cls,
    );
}

#[test]
fn mobilenetv2_real_weights_match_torchvision() {
    let Some(w) = common::mobilenet_weights() else {
        return;
    };
    check_parity("mobilenetv2", &w, "mobilenetv2", Pooling::Cls);
}

#[test]
fn mobilenetv2_real_weights_know_the_chelsea_cat() {
    let Some(w) = common::mobilenet_weights() else {
        return;
    };
    let model = Backbone::load(
        "mobilenetv2",
        Some(w.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .unwrap();
    let pixels = model
        .preprocess()
        .run_file(&fixtures().join("chelsea.jpg"), &Default::default())
        .unwrap();
    let feats = model.embed_pixels(pixels, 1).unwrap();
    let feats = Tensor::from_vec(feats.data, (1, feats.dim), &Device::Cpu).unwrap();
    let logits: Vec<f32> = model
        .logits(&feats)
        .unwrap()
        .expect("the torchvision checkpoint has its classifier")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("chelsea.json")).unwrap())
            .unwrap();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    let top1 = expected["top5"][0].as_u64().unwrap() as usize;
    println!(
        "dcd top-5 {:?}, torchvision top-5 {}",
        &order[..5],
        expected["top5"]
    );
    assert_eq!(order[0], top1, "top-1 should be {}", expected["top1_name"]);
}

fn cpu_f32() -> Placement {
    Placement::cpu_f32()
}

fn tiny_resnet_weights() -> Vec<(String, Tensor)> {
    dcd::features::pth::read(&fixtures().join("resnet-tiny.pth")).unwrap()
}

#[test]
fn partial_weights_name_the_first_missing_tensor_and_layout() {
    let tensors: Vec<_> = tiny_resnet_weights()
        .into_iter()
        .filter(|(n, _)| n != "layer1.0.bn2.running_var")
        .collect();
    let mut w = Weights::from_tensors(tensors, "partial.pth".into(), &cpu_f32());
    let spec = registry::lookup("resnet").unwrap();
    let err = Backbone::from_weights(spec, &mut w, None, &LoadOptions::default())
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(
        matches!(err, FeatureError::MissingTensor { ref name, .. } if name == "layer1.0.bn2.running_var"),
        "{msg}"
    );
    assert!(
        msg.contains("partial.pth") && msg.contains("torchvision/timm ResNet"),
        "{msg}"
    );
}

#[test]
fn mismatched_tensor_shape_is_named() {
    let tensors: Vec<_> = tiny_resnet_weights()
        .into_iter()
        .map(|(n, t)| {
            if n == "layer2.0.bn1.weight" {
                (n, Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())
            } else {
                (n, t)
            }
        })
        .collect();
    let mut w = Weights::from_tensors(tensors, "bad.pth".into(), &cpu_f32());
    let spec = registry::lookup("resnet").unwrap();
    let err = Backbone::from_weights(spec, &mut w, None, &LoadOptions::default())
        .err()
        .expect("must fail");
    assert!(
        matches!(err, FeatureError::TensorShape { ref name, ref found, .. } if name == "layer2.0.bn1.weight" && found == &[3]),
        "{err}"
    );
}

#[test]
fn a_sized_name_refuses_other_weights() {
    let path = fixtures().join("resnet-tiny.pth");
    let err = Backbone::load(
        "resnet50",
        Some(path.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .err()
    .expect("must fail");
    assert!(err.to_string().contains("[1, 2, 1, 1]"), "{err}");
    let dino = fixtures().join("dino-tiny");
    let err = Backbone::load(
        "dino-vits16",
        Some(dino.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .err()
    .expect("must fail");
    assert!(err.to_string().contains("width 32"), "{err}");
}

#[test]
fn vit_weights_given_to_a_resnet_name_the_layout() {
    let dino = fixtures().join("dino-tiny");
    let err = Backbone::load(
        "resnet",
        Some(dino.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .err()
    .expect("must fail");
    assert!(
        matches!(err, FeatureError::MissingTensor { ref name, .. } if name == "conv1.weight"),
        "{err}"
    );
}

#[test]
fn unknown_backbones_and_missing_files_are_clear() {
    let err = Backbone::load("vgg16", None, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("dino-vits16"), "{err}");
    let err = Backbone::load(
        "resnet50",
        Some("/nonexistent/w.pth"),
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, FeatureError::WeightsNotFound { .. }), "{err}");
    // A missing relative path is a path error, never a model id to download.
    let err = Backbone::load(
        "resnet50",
        Some("weights/model.pth"),
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no such file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    let err = Backbone::load(
        "resnet50",
        Some(junk.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, FeatureError::WeightsUnreadable { .. }),
        "{err}"
    );
    let truncated = dir.path().join("cut.pth");
    let bytes = std::fs::read(fixtures().join("resnet-basic-robust.pth")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Backbone::load(
        "resnet",
        Some(truncated.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn hub_cache_layout_is_resolved_by_model_id() {
    let cache = tempfile::tempdir().unwrap();
    let snap = cache
        .path()
        .join("models--acme--tiny-dino/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(cache.path().join("models--acme--tiny-dino/refs")).unwrap();
    std::fs::write(
        cache.path().join("models--acme--tiny-dino/refs/main"),
        "abc123\n",
    )
    .unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(fixtures().join("dino-tiny").join(f), snap.join(f)).unwrap();
    }
    std::env::set_var("HF_HUB_CACHE", cache.path());
    let ckpt = dcd::features::hub::resolve("acme/tiny-dino").unwrap();
    assert_eq!(ckpt.weights, snap.join("model.safetensors"));
    assert_eq!(ckpt.config, Some(snap.join("config.json")));
    let err = dcd::features::hub::resolve("acme/absent").unwrap_err();
    assert!(
        err.to_string()
            .contains("huggingface-cli download acme/absent"),
        "{err}"
    );
}

#[test]
fn random_weights_build_every_sized_backbone_small_enough_to_run_here() {
    for name in ["resnet18", "mobilenetv2", "dino-vits16", "dinov2-vits14"] {
        let m = Backbone::random(name, 1, &LoadOptions::default()).unwrap();
        let side = m.input_side();
        let out = m.embed_pixels(vec![0.1; 3 * side * side], 1).unwrap();
        assert!(out.data.iter().all(|v| v.is_finite()), "{name}");
        println!("{name}: dim {}", m.dim());
    }
}

/// f16 (a CUDA precision) through candle's generic ops: the same model code the GPU runs,
/// checked here on CPU against the f32 reference.
#[test]
fn f16_models_track_the_reference() {
    for (backbone, weights, reference_name, pooling) in half_precision_cases() {
        let opts = LoadOptions {
            dtype: DType::F16,
            pooling,
            ..LoadOptions::default()
        };
        let model = Backbone::load(backbone, Some(weights.to_str().unwrap()), &opts).unwrap();
        for (r, cos) in reference_cosines(&model, reference_name)
            .into_iter()
            .enumerate()
        {
            println!("{reference_name} f16 row {r}: cosine {cos:.6}");
            assert!(cos >= 0.9999, "{reference_name} in f16: cosine {cos}");
        }
    }
}

/// bf16 on CPU is dcd's packed AVX512-BF16 kernels (f32 tensors, bf16 products) where the CPU
/// has them — within cosine 0.999 of the reference — and refused with the reason elsewhere.
#[test]
fn bf16_on_cpu_runs_the_bf16_kernels_or_is_refused() {
    use dcd::features::cpu::packed::Kernel;
    for (backbone, weights, reference_name, pooling) in cpu_kernel_cases() {
        let opts = LoadOptions {
            dtype: DType::BF16,
            pooling,
            ..LoadOptions::default()
        };
        let loaded = Backbone::load(backbone, Some(weights.to_str().unwrap()), &opts);
        if let Some(why) = Kernel::Bf16.unavailable_reason() {
            let err = loaded
                .err()
                .expect("bf16 without AVX512-BF16 must be refused");
            let text = err.to_string();
            assert!(
                text.contains("AVX512-BF16") && text.contains("--precision f32"),
                "{text}"
            );
            println!("{reference_name}: refused here ({why})");
            continue;
        }
        let model = loaded.unwrap();
        let side = model.input_side();
        let batch =
            Tensor::from_vec(fixture_input(side), (2, 3, side, side), &Device::Cpu).unwrap();
        // dcd's kernels keep f32 tensors; candle's generic bf16 ops would answer in bf16.
        assert_eq!(
            model.embed(&batch).unwrap().dtype(),
            DType::F32,
            "{reference_name}"
        );
        for (r, cos) in reference_cosines(&model, reference_name)
            .into_iter()
            .enumerate()
        {
            println!("{reference_name} bf16 kernels row {r}: cosine {cos:.6}");
            assert!(
                cos >= 0.999,
                "{reference_name} with bf16 products: cosine {cos} < 0.999"
            );
        }
    }
}

/// Full-depth backbones (random weights, the fixture images): bf16 products stay within cosine
/// 0.999 of dcd's f32 features through all 50 layers of a ResNet-50, 12 blocks of a ViT and
/// the 52 convs of a MobileNetV2.
#[test]
fn bf16_products_stay_close_to_f32_at_full_depth() {
    use dcd::features::cpu::packed::Kernel;
    if Kernel::Bf16.available() {
        for name in ["resnet50", "dino-vits16", "dinov2-vits14", "mobilenetv2"] {
            let load = |dtype| {
                let opts = LoadOptions {
                    dtype,
                    ..LoadOptions::default()
                };
                Backbone::random(name, 3, &opts).unwrap()
            };
            let (f32_model, bf16_model) = (load(DType::F32), load(DType::BF16));
            let side = f32_model.input_side();
            let want = f32_model.embed_pixels(fixture_input(side), 2).unwrap();
            let got = bf16_model.embed_pixels(fixture_input(side), 2).unwrap();
            for r in 0..2 {
                let cos = cosine(
                    &got.data[r * got.dim..][..got.dim],
                    &want.data[r * want.dim..][..want.dim],
                );
                println!("{name} bf16 vs f32 row {r}: cosine {cos:.6}");
                assert!(cos >= 0.999, "{name}: cosine {cos} < 0.999");
            }
        }
    }
}
