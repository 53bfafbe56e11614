//! Building blocks shared by the backbones: convolutions with their BatchNorm folded in at
//! load, linear layers, activations.

use candle_core::{Tensor, D};

use crate::features::cpu::channels_last::{MeanPool, ToChannelsLast};
use crate::features::cpu::depthwise::DepthwiseNhwc;
use crate::features::cpu::linear::LinearOp;
use crate::features::cpu::nhwc::ConvNhwc;
use crate::features::cpu::norm::LayerNormOp;
use crate::features::cpu::{Epilogue, Window};
use crate::features::error::{FeatureError, FeatureResult};
use crate::features::weights::{Placement, Weights};

/// Activation applied after a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// None (a projection).
    Linear,
    /// max(0, x).
    Relu,
    /// min(max(0, x), 6), MobileNetV2's.
    Relu6,
}

/// Geometry of a convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Channel groups (= channels for depthwise).
    pub groups: usize,
}

/// Memory order of a model's activations: channels-last where dcd's CPU kernels run it,
/// PyTorch's channels-first for candle's ops (other devices, other precisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelOrder {
    /// (N, C, H, W): candle's ops.
    First,
    /// (N, H, W, C): dcd's kernels, one GEMM per conv over the whole batch.
    Last,
}

impl ChannelOrder {
    /// An NCHW batch in this order.
    pub fn arrange(self, x: &Tensor) -> FeatureResult<Tensor> {
        Ok(match self {
            ChannelOrder::First => x.clone(),
            ChannelOrder::Last => x.contiguous()?.apply_op1_no_bwd(&ToChannelsLast)?,
        })
    }

    /// Channels-last where dcd's CPU kernels run the model, else channels-first.
    pub fn for_placement(placement: &Placement) -> ChannelOrder {
        if placement.fast_cpu() {
            ChannelOrder::Last
        } else {
            ChannelOrder::First
        }
    }
}

enum CpuConv {
    /// candle's conv2d (channels-first).
    None,
    Depthwise(DepthwiseNhwc),
    Dense(ConvNhwc),
}

/// A convolution whose following BatchNorm has been folded into its weight and bias:
/// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`. Inference only.
pub struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    geometry: ConvGeometry,
    act: Act,
    cpu: CpuConv,
}

fn epilogue(act: Act) -> Epilogue {
    match act {
        Act::Linear => Epilogue::Bias,
        Act::Relu => Epilogue::BiasRelu,
        Act::Relu6 => Epilogue::BiasRelu6,
    }
}

impl ConvBn {
    /// Loads `conv` (`{conv}.weight`, optional `{conv}.bias`) and `bn`
    /// (`{bn}.weight/bias/running_mean/running_var`) and folds them. Channel counts are read
    /// off the conv weight; the geometry comes from the architecture. `act` is applied last
    /// (after the residual in [`ConvBn::forward_residual`]). Channels-last convs (ungrouped
    /// or depthwise) run dcd's CPU kernels; channels-first ones candle's conv2d.
    pub fn load(
        w: &Weights,
        conv: &str,
        bn: &str,
        geometry: ConvGeometry,
        act: Act,
        order: ChannelOrder,
    ) -> FeatureResult<ConvBn> {
        let shape = w.require_shape(&format!("{conv}.weight"))?;
        let (out_ch, in_per_group) = (shape[0], shape.get(1).copied().unwrap_or(0));
        let k = geometry.kernel;
        let weight = w.get(&format!("{conv}.weight"), &[out_ch, in_per_group, k, k])?;
        let gamma = w.get(&format!("{bn}.weight"), &[out_ch])?;
        let beta = w.get(&format!("{bn}.bias"), &[out_ch])?;
        let mean = w.get(&format!("{bn}.running_mean"), &[out_ch])?;
        let var = w.get(&format!("{bn}.running_var"), &[out_ch])?;
        let conv_bias = if w.contains(&format!("{conv}.bias")) {
            Some(w.get(&format!("{conv}.bias"), &[out_ch])?)
        } else {
            None
        };
        // torch's BatchNorm2d default; every checkpoint dcd loads was trained with it.
        let eps = 1e-5;
        let scale = (gamma / (var + eps)?.sqrt()?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out_ch, 1, 1, 1))?)?;
        let mut bias = (beta - (mean * &scale)?)?;
        if let Some(cb) = conv_bias {
            bias = (bias + (cb * &scale)?)?;
        }
        let window = Window {
            kernel: k,
            stride: geometry.stride,
            padding: geometry.padding,
        };
        let depthwise = geometry.groups == out_ch && in_per_group == 1 && geometry.groups > 1;
        let placement = w.placement();
        let cpu = match order {
            ChannelOrder::First => CpuConv::None,
            ChannelOrder::Last if !placement.fast_cpu() || !(depthwise || geometry.groups == 1) => {
                return Err(FeatureError::Config(format!(
                    "{conv}: channels-last needs an f32 conv on CPU, ungrouped or depthwise"
                )));
            }
            ChannelOrder::Last => {
                let (wv, bv) = (weight.flatten_all()?.to_vec1()?, bias.to_vec1()?);
                if depthwise {
                    CpuConv::Depthwise(DepthwiseNhwc::new(&wv, bv, window, epilogue(act)))
                } else {
                    CpuConv::Dense(ConvNhwc::from_oihw(
                        &wv,
                        bv,
                        in_per_group,
                        window,
                        epilogue(act),
                        placement.packed_kernel(),
                    ))
                }
            }
        };
        Ok(ConvBn {
            weight: placement.place(&weight)?,
            bias: placement.place(&bias)?,
            geometry,
            act,
            cpu,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies conv + folded BN + activation.
    pub fn forward(&self, x: &Tensor) -> FeatureResult<Tensor> {
        match &self.cpu {
            CpuConv::Depthwise(op) => Ok(x.contiguous()?.apply_op1_no_bwd(op)?),
            CpuConv::Dense(op) => Ok(x.contiguous()?.apply_op1_no_bwd(op)?),
            CpuConv::None => self.activate(self.conv_bias(x)?),
        }
    }

    /// `act(conv(x) + bias + residual)`, the end of a residual block.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> FeatureResult<Tensor> {
        let y = match &self.cpu {
            CpuConv::Dense(op) => {
                return Ok(x
                    .contiguous()?
                    .apply_op2_no_bwd(&residual.contiguous()?, op)?)
            }
            CpuConv::Depthwise(op) => {
                let linear = op.clone().with_epilogue(Epilogue::Bias);
                x.contiguous()?.apply_op1_no_bwd(&linear)?
            }
            CpuConv::None => self.conv_bias(x)?,
        };
        self.activate((y + residual)?)
    }

    fn conv_bias(&self, x: &Tensor) -> FeatureResult<Tensor> {
        let g = self.geometry;
        let y = x.conv2d(&self.weight, g.padding, g.stride, 1, g.groups)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, self.out_channels(), 1, 1))?)?)
    }

    fn activate(&self, y: Tensor) -> FeatureResult<Tensor> {
        Ok(match self.act {
            Act::Linear => y,
            Act::Relu => y.relu()?,
            Act::Relu6 => y.clamp(0f32, 6f32)?,
        })
    }
}

/// `y = x·Wᵀ + b` over the last dimension, any number of leading dimensions.
pub struct Linear {
    weight_t: Tensor,
    bias: Tensor,
    gelu: bool,
    /// Per-output scale of the residual form (DINOv2's layer scale).
    scale: Option<Tensor>,
    cpu: Option<LinearOp>,
}

impl Linear {
    /// Loads `{name}.weight` (out × in) and `{name}.bias`.
    pub fn load(w: &Weights, name: &str, in_dim: usize, out_dim: usize) -> FeatureResult<Linear> {
        let weight = w.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let bias = w.get(&format!("{name}.bias"), &[out_dim])?;
        Linear::new(weight, bias, w.placement())
    }

    /// Like [`Linear::load`], followed by the exact GELU.
    pub fn load_gelu(
        w: &Weights,
        name: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> FeatureResult<Linear> {
        let mut l = Linear::load(w, name, in_dim, out_dim)?;
        l.gelu = true;
        if let Some(op) = l.cpu.as_mut() {
            op.set_epilogue(Epilogue::BiasGelu);
        }
        Ok(l)
    }

    /// From a weight (out × in) and bias (out) in f32, kept as `placement` says.
    pub fn new(weight: Tensor, bias: Tensor, placement: &Placement) -> FeatureResult<Linear> {
        // Kept transposed and contiguous so every call is a plain row-major GEMM.
        let weight_t = weight.t()?.contiguous()?;
        let cpu = if placement.fast_cpu() {
            let (in_dim, _) = weight_t.dims2()?;
            Some(LinearOp::new(
                weight_t.flatten_all()?.to_vec1()?,
                bias.to_vec1()?,
                in_dim,
                Epilogue::Bias,
                placement.packed_kernel(),
            ))
        } else {
            None
        };
        Ok(Linear {
            weight_t: placement.place(&weight_t)?,
            bias: placement.place(&bias)?,
            gelu: false,
            scale: None,
            cpu,
        })
    }

    /// Sets γ (f32) of [`Linear::forward_residual`].
    pub fn with_scale(mut self, scale: Tensor) -> FeatureResult<Linear> {
        if let Some(op) = self.cpu.as_mut() {
            op.set_scale(scale.to_vec1()?);
        }
        self.scale = Some(scale.to_dtype(self.bias.dtype())?);
        Ok(self)
    }

    /// `residual + γ ⊙ layer(x)` (γ = 1 unless set), one fused pass on CPU.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> FeatureResult<Tensor> {
        debug_assert!(
            !self.gelu,
            "the residual form is for projections without activation"
        );
        if let Some(op) = &self.cpu {
            return Ok(x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, op)?);
        }
        let mut y = self.forward(x)?;
        if let Some(g) = &self.scale {
            y = y.broadcast_mul(g)?;
        }
        Ok((residual + y)?)
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight_t.dims()[1]
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> FeatureResult<Tensor> {
        if let Some(op) = &self.cpu {
            return Ok(x.contiguous()?.apply_op1_no_bwd(op)?);
        }
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, dims[dims.len() - 1]))?;
        let y = x2.matmul(&self.weight_t)?.broadcast_add(&self.bias)?;
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = self.out_dim();
        let y = y.reshape(out_dims)?;
        Ok(if self.gelu { y.gelu_erf()? } else { y })
    }
}

/// LayerNorm over the last dimension: dcd's CPU op where its kernels run the model, candle's
/// elsewhere.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
    cpu: Option<LayerNormOp>,
}

impl LayerNorm {
    /// Loads `{name}.weight` and `{name}.bias` of width `dim`.
    pub fn load(w: &Weights, name: &str, dim: usize, eps: f64) -> FeatureResult<LayerNorm> {
        let p = w.placement();
        let weight = w.get(&format!("{name}.weight"), &[dim])?;
        let bias = w.get(&format!("{name}.bias"), &[dim])?;
        let cpu = if p.fast_cpu() {
            Some(LayerNormOp::new(
                weight.to_vec1()?,
                bias.to_vec1()?,
                eps as f32,
            ))
        } else {
            None
        };
        Ok(LayerNorm {
            weight: p.place(&weight)?,
            bias: p.place(&bias)?,
            eps: eps as f32,
            cpu,
        })
    }

    /// Applies the norm.
    pub fn forward(&self, x: &Tensor) -> FeatureResult<Tensor> {
        if let Some(op) = &self.cpu {
            return Ok(x.contiguous()?.apply_op1_no_bwd(op)?);
        }
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// Mean over the spatial dimensions of an NCHW or NHWC tensor: (N, C).
pub fn global_avg_pool(x: &Tensor, order: ChannelOrder) -> FeatureResult<Tensor> {
    Ok(match order {
        ChannelOrder::First => x.flatten_from(2)?.mean(D::Minus1)?,
        ChannelOrder::Last => x.contiguous()?.apply_op1_no_bwd(&MeanPool)?,
    })
}
