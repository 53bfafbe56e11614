//! The backbones dcd knows by name: architecture, where their weights usually live, and the
//! evaluation preprocessing each was trained for.

use super::error::{FeatureError, FeatureResult};
use super::models::vit::VitFamily;
use super::preprocess::{Interpolation, Preprocess};

/// The architecture behind a registry name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// A ViT; `width`, `patch` and `depth` are checked against the checkpoint when set.
    Vit {
        /// Checkpoint family (tensor names, block structure).
        family: VitFamily,
        /// Token width, or `None` for "as in the checkpoint".
        width: Option<usize>,
        /// Patch side.
        patch: Option<usize>,
        /// Blocks.
        depth: Option<usize>,
        /// Attention heads when `config.json` does not say.
        heads: Option<usize>,
        /// LayerNorm ε when `config.json` does not say.
        eps: f64,
    },
    /// A torchvision-layout ResNet; stage depths and block type checked when set.
    ResNet {
        /// Blocks per stage and whether they are bottlenecks (ResNet-50 and deeper).
        depths: Option<([usize; 4], bool)>,
    },
    /// torchvision MobileNetV2.
    MobileNetV2,
}

/// One registry entry.
#[derive(Clone, Copy, Debug)]
pub struct BackboneSpec {
    /// The name users give (`dino-vits16`).
    pub name: &'static str,
    /// Architecture.
    pub arch: Arch,
    /// Hugging Face model id whose cached snapshot is used when no weights path is given.
    pub hub_id: Option<&'static str>,
    /// Evaluation preprocessing.
    pub preprocess: Preprocess,
}

const DINO_PRE: Preprocess = Preprocess {
    resize: 256,
    crop: 224,
    interpolation: Interpolation::Bicubic,
    mean: super::preprocess::IMAGENET_MEAN,
    std: super::preprocess::IMAGENET_STD,
};

const TORCHVISION_PRE: Preprocess = Preprocess {
    resize: 256,
    crop: 224,
    interpolation: Interpolation::Bilinear,
    mean: super::preprocess::IMAGENET_MEAN,
    std: super::preprocess::IMAGENET_STD,
};

const fn dino(
    name: &'static str,
    hub: &'static str,
    width: usize,
    patch: usize,
    heads: usize,
) -> BackboneSpec {
    BackboneSpec {
        name,
        arch: Arch::Vit {
            family: VitFamily::Dino,
            width: Some(width),
            patch: Some(patch),
            depth: Some(12),
            heads: Some(heads),
            eps: 1e-12,
        },
        hub_id: Some(hub),
        preprocess: DINO_PRE,
    }
}

const fn dinov2(
    name: &'static str,
    hub: &'static str,
    width: usize,
    depth: usize,
    heads: usize,
) -> BackboneSpec {
    BackboneSpec {
        name,
        arch: Arch::Vit {
            family: VitFamily::Dinov2,
            width: Some(width),
            patch: Some(14),
            depth: Some(depth),
            heads: Some(heads),
            eps: 1e-6,
        },
        hub_id: Some(hub),
        preprocess: DINO_PRE,
    }
}

const fn resnet(
    name: &'static str,
    hub: &'static str,
    depths: [usize; 4],
    bottleneck: bool,
) -> BackboneSpec {
    BackboneSpec {
        name,
        arch: Arch::ResNet {
            depths: Some((depths, bottleneck)),
        },
        hub_id: Some(hub),
        preprocess: TORCHVISION_PRE,
    }
}

/// Every named backbone.
pub const BACKBONES: &[BackboneSpec] = &[
    dino("dino-vits16", "facebook/dino-vits16", 384, 16, 6),
    dino("dino-vits8", "facebook/dino-vits8", 384, 8, 6),
    dino("dino-vitb16", "facebook/dino-vitb16", 768, 16, 12),
    dino("dino-vitb8", "facebook/dino-vitb8", 768, 8, 12),
    dinov2("dinov2-vits14", "facebook/dinov2-small", 384, 12, 6),
    dinov2("dinov2-vitb14", "facebook/dinov2-base", 768, 12, 12),
    dinov2("dinov2-vitl14", "facebook/dinov2-large", 1024, 24, 16),
    dinov2("dinov2-vitg14", "facebook/dinov2-giant", 1536, 40, 24),
    resnet("resnet18", "timm/resnet18.tv_in1k", [2, 2, 2, 2], false),
    resnet("resnet34", "timm/resnet34.tv_in1k", [3, 4, 6, 3], false),
    resnet("resnet50", "timm/resnet50.tv_in1k", [3, 4, 6, 3], true),
    resnet("resnet101", "timm/resnet101.tv_in1k", [3, 4, 23, 3], true),
    resnet("resnet152", "timm/resnet152.tv_in1k", [3, 8, 36, 3], true),
    BackboneSpec {
        name: "mobilenetv2",
        arch: Arch::MobileNetV2,
        hub_id: None,
        preprocess: TORCHVISION_PRE,
    },
    // Shape-agnostic entries: the architecture is read off the checkpoint (and config.json).
    BackboneSpec {
        name: "dino-vit",
        arch: Arch::Vit {
            family: VitFamily::Dino,
            width: None,
            patch: None,
            depth: None,
            heads: None,
            eps: 1e-12,
        },
        hub_id: None,
        preprocess: DINO_PRE,
    },
    BackboneSpec {
        name: "dinov2-vit",
        arch: Arch::Vit {
            family: VitFamily::Dinov2,
            width: None,
            patch: None,
            depth: None,
            heads: None,
            eps: 1e-6,
        },
        hub_id: None,
        preprocess: DINO_PRE,
    },
    BackboneSpec {
        name: "resnet",
        arch: Arch::ResNet { depths: None },
        hub_id: None,
        preprocess: TORCHVISION_PRE,
    },
];

/// The entry for `name`.
pub fn lookup(name: &str) -> FeatureResult<&'static BackboneSpec> {
    BACKBONES
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| FeatureError::UnknownBackbone {
            name: crate::types::clip_for_message(name, 64),
            known: BACKBONES
                .iter()
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}
