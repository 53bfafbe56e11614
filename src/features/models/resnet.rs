//! ResNet (He et al.) in the torchvision/timm layout (`conv1`, `bn1`, `layer1.0.conv1`, …,
//! `fc`), v1.5 (stride on the 3×3 conv). The feature is the global average pool before `fc`.
//! Depth, block type and widths are read off the checkpoint, so ResNet-18…152, "robust"
//! ResNets and narrow test models load through the same code; a registry name checks the
//! stage depths it promises.

use candle_core::Tensor;

use super::layers::{global_avg_pool, Act, ChannelOrder, ConvBn, ConvGeometry};
use crate::features::cpu::channels_last::MaxPool3x3s2;
use crate::features::error::{FeatureError, FeatureResult};
use crate::features::weights::Weights;

/// Layout name used in error messages.
pub const LAYOUT: &str = "torchvision/timm ResNet (conv1, bn1, layer1.0.conv1, …)";

enum Block {
    Basic {
        conv1: ConvBn,
        conv2: ConvBn,
        downsample: Option<ConvBn>,
    },
    Bottleneck {
        conv1: ConvBn,
        conv2: ConvBn,
        conv3: ConvBn,
        downsample: Option<ConvBn>,
    },
}

/// A ResNet trunk without its classifier.
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<Block>,
    depths: Vec<usize>,
    dim: usize,
    order: ChannelOrder,
}

fn geom(kernel: usize, stride: usize) -> ConvGeometry {
    ConvGeometry {
        kernel,
        stride,
        padding: kernel / 2,
        groups: 1,
    }
}

impl ResNet {
    /// Loads a ResNet; `expected` (stage depths and bottleneck-ness, e.g. `([3, 4, 6, 3], true)`
    /// for ResNet-50) is checked against the checkpoint when given.
    pub fn load(w: &mut Weights, expected: Option<([usize; 4], bool)>) -> FeatureResult<ResNet> {
        w.expect_layout(LAYOUT, "conv1.weight");
        let order = ChannelOrder::for_placement(w.placement());
        let stem = ConvBn::load(w, "conv1", "bn1", geom(7, 2), Act::Relu, order)?;
        let mut depths = Vec::new();
        let mut blocks = Vec::new();
        let mut dim = stem.out_channels();
        for stage in 1..=4 {
            let mut n = 0;
            while w.contains(&format!("layer{stage}.{n}.conv1.weight")) {
                let p = format!("layer{stage}.{n}");
                let stride = if stage > 1 && n == 0 { 2 } else { 1 };
                let downsample = if w.contains(&format!("{p}.downsample.0.weight")) {
                    Some(ConvBn::load(
                        w,
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        geom(1, stride),
                        Act::Linear,
                        order,
                    )?)
                } else {
                    None
                };
                let block = if w.contains(&format!("{p}.conv3.weight")) {
                    let conv3 = ConvBn::load(
                        w,
                        &format!("{p}.conv3"),
                        &format!("{p}.bn3"),
                        geom(1, 1),
                        Act::Relu, // after the residual add
                        order,
                    )?;
                    dim = conv3.out_channels();
                    Block::Bottleneck {
                        conv1: ConvBn::load(
                            w,
                            &format!("{p}.conv1"),
                            &format!("{p}.bn1"),
                            geom(1, 1),
                            Act::Relu,
                            order,
                        )?,
                        conv2: ConvBn::load(
                            w,
                            &format!("{p}.conv2"),
                            &format!("{p}.bn2"),
                            geom(3, stride),
                            Act::Relu,
                            order,
                        )?,
                        conv3,
                        downsample,
                    }
                } else {
                    let conv2 = ConvBn::load(
                        w,
                        &format!("{p}.conv2"),
                        &format!("{p}.bn2"),
                        geom(3, 1),
                        Act::Relu, // after the residual add
                        order,
                    )?;
                    dim = conv2.out_channels();
                    Block::Basic {
                        conv1: ConvBn::load(
                            w,
                            &format!("{p}.conv1"),
                            &format!("{p}.bn1"),
                            geom(3, stride),
                            Act::Relu,
                            order,
                        )?,
                        conv2,
                        downsample,
                    }
                };
                blocks.push(block);
                n += 1;
            }
            if n == 0 {
                // Names the first tensor of the missing stage.
                w.require_shape(&format!("layer{stage}.0.conv1.weight"))?;
            }
            depths.push(n);
        }
        let bottleneck = matches!(blocks.first(), Some(Block::Bottleneck { .. }));
        if let Some((exp_depths, exp_bottleneck)) = expected {
            if exp_depths != depths.as_slice() || exp_bottleneck != bottleneck {
                let kind = |b: bool| if b { "bottleneck" } else { "basic" };
                return Err(FeatureError::Config(format!(
                    "weights {} hold a ResNet with {} blocks {depths:?} per stage, the backbone expects {} blocks {exp_depths:?}; pick the matching resnetNN name, or `resnet` to take the architecture from the weights",
                    w.source(),
                    kind(bottleneck),
                    kind(exp_bottleneck)
                )));
            }
        }
        Ok(ResNet {
            stem,
            blocks,
            depths,
            dim,
            order,
        })
    }

    /// Blocks per stage, as read from the checkpoint.
    pub fn depths(&self) -> &[usize] {
        &self.depths
    }

    /// Feature width (2048 for ResNet-50).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Pooled features of an NCHW batch: (N, dim).
    pub fn forward(&self, x: &Tensor) -> FeatureResult<Tensor> {
        let last = self.order == ChannelOrder::Last;
        let x = self.order.arrange(x)?;
        let x = self.stem.forward(&x)?;
        let mut x = if last {
            x.apply_op1_no_bwd(&MaxPool3x3s2)?
        } else {
            // Zero padding is exact here: the input is post-ReLU, so every window's max is ≥ 0.
            x.pad_with_zeros(2, 1, 1)?
                .pad_with_zeros(3, 1, 1)?
                .max_pool2d_with_stride(3, 2)?
        };
        for block in &self.blocks {
            x = match block {
                Block::Basic {
                    conv1,
                    conv2,
                    downsample,
                } => {
                    let identity = match downsample {
                        Some(d) => d.forward(&x)?,
                        None => x.clone(),
                    };
                    conv2.forward_residual(&conv1.forward(&x)?, &identity)?
                }
                Block::Bottleneck {
                    conv1,
                    conv2,
                    conv3,
                    downsample,
                } => {
                    let identity = match downsample {
                        Some(d) => d.forward(&x)?,
                        None => x.clone(),
                    };
                    conv3.forward_residual(&conv2.forward(&conv1.forward(&x)?)?, &identity)?
                }
            };
        }
        global_avg_pool(&x, self.order)
    }
}
