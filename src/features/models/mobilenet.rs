//! MobileNetV2 (Sandler et al.) in torchvision's layout (`features.0.0`, `features.N.conv.…`,
//! `classifier.1`). The feature is the global average pool of `features.18` (1280-d); the
//! classifier is kept when present so ImageNet predictions can be checked. On CPU it runs
//! channels-last: the 1×1 and stem convs as GEMMs with packed weights (f32 or bf16
//! products), the depthwise convs in f32.

use candle_core::Tensor;

use super::layers::{global_avg_pool, Act, ChannelOrder, ConvBn, ConvGeometry, Linear};
use crate::features::error::{FeatureError, FeatureResult};
use crate::features::weights::Weights;

/// Layout name used in error messages.
pub const LAYOUT: &str =
    "torchvision MobileNetV2 (features.0.0, features.1.conv.0.0, …, classifier.1)";

/// Stride of the depthwise conv in `features.1` … `features.17` (torchvision's table).
const BLOCK_STRIDES: [usize; 17] = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1];

struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

/// MobileNetV2 trunk, optionally with its classifier.
pub struct MobileNetV2 {
    order: ChannelOrder,
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
    classifier: Option<Linear>,
}

fn conv(kernel: usize, stride: usize, groups: usize) -> ConvGeometry {
    ConvGeometry {
        kernel,
        stride,
        padding: kernel / 2,
        groups,
    }
}

impl MobileNetV2 {
    /// Loads the network; channel widths come from the checkpoint (any width multiplier).
    pub fn load(w: &mut Weights) -> FeatureResult<MobileNetV2> {
        w.expect_layout(LAYOUT, "features.0.0.weight");
        let order = ChannelOrder::for_placement(w.placement());
        let stem = ConvBn::load(
            w,
            "features.0.0",
            "features.0.1",
            conv(3, 2, 1),
            Act::Relu6,
            order,
        )?;
        let mut blocks = Vec::with_capacity(BLOCK_STRIDES.len());
        let mut in_ch = stem.out_channels();
        for (i, &stride) in BLOCK_STRIDES.iter().enumerate() {
            let p = format!("features.{}.conv", i + 1);
            let has_expand = w.contains(&format!("{p}.3.weight"));
            let (expand, dw, pw, pw_bn) = if has_expand {
                (Some(0), 1, 2, 3)
            } else {
                (None, 0, 1, 2)
            };
            let expand = match expand {
                Some(e) => Some(ConvBn::load(
                    w,
                    &format!("{p}.{e}.0"),
                    &format!("{p}.{e}.1"),
                    conv(1, 1, 1),
                    Act::Relu6,
                    order,
                )?),
                None => None,
            };
            let hidden = expand.as_ref().map_or(in_ch, |e| e.out_channels());
            let depthwise = ConvBn::load(
                w,
                &format!("{p}.{dw}.0"),
                &format!("{p}.{dw}.1"),
                conv(3, stride, hidden),
                Act::Relu6,
                order,
            )?;
            let project = ConvBn::load(
                w,
                &format!("{p}.{pw}"),
                &format!("{p}.{pw_bn}"),
                conv(1, 1, 1),
                Act::Linear,
                order,
            )?;
            let out_ch = project.out_channels();
            blocks.push(InvertedResidual {
                expand,
                depthwise,
                project,
                residual: stride == 1 && in_ch == out_ch,
            });
            in_ch = out_ch;
        }
        let head = ConvBn::load(
            w,
            "features.18.0",
            "features.18.1",
            conv(1, 1, 1),
            Act::Relu6,
            order,
        )?;
        let classifier = match w.shape("classifier.1.weight") {
            Some(s) if s.len() == 2 => Some(Linear::load(w, "classifier.1", s[1], s[0])?),
            Some(s) => {
                return Err(FeatureError::Config(format!(
                    "classifier.1.weight has shape {s:?}, expected (classes, {})",
                    head.out_channels()
                )))
            }
            None => None,
        };
        Ok(MobileNetV2 {
            order,
            stem,
            blocks,
            head,
            classifier,
        })
    }

    /// Feature width (1280 at width 1.0).
    pub fn dim(&self) -> usize {
        self.head.out_channels()
    }

    /// Pooled features of an NCHW batch: (N, dim).
    pub fn forward(&self, x: &Tensor) -> FeatureResult<Tensor> {
        let x = self.order.arrange(x)?;
        let mut x = self.stem.forward(&x)?;
        for b in &self.blocks {
            let y = match &b.expand {
                Some(e) => e.forward(&x)?,
                None => x.clone(),
            };
            let y = b.depthwise.forward(&y)?;
            x = if b.residual {
                b.project.forward_residual(&y, &x)?
            } else {
                b.project.forward(&y)?
            };
        }
        global_avg_pool(&self.head.forward(&x)?, self.order)
    }

    /// Class logits from pooled features, when the checkpoint has the classifier.
    pub fn logits(&self, features: &Tensor) -> FeatureResult<Option<Tensor>> {
        self.classifier
            .as_ref()
            .map(|c| c.forward(features))
            .transpose()
    }
}
