//! Vision transformers in the Hugging Face layouts: DINO v1 (`ViTModel`, e.g.
//! `facebook/dino-vits16`) and DINOv2 (`Dinov2Model`, e.g. `facebook/dinov2-small`), the
//! latter with layer scale and, for ViT-g, the SwiGLU MLP. Width, depth and patch size are
//! read off the checkpoint; heads and LayerNorm ε come from `config.json` or the registry.
//! Position embeddings are resized once at load to the input size (bicubic, as
//! `torch.nn.functional.interpolate` with `align_corners=False`), never per call.

use candle_core::{Tensor, D};

use super::layers::{LayerNorm, Linear};
use crate::features::cpu::attention::SelfAttention;
use crate::features::error::{FeatureError, FeatureResult};
use crate::features::weights::Weights;
use crate::settings::Pooling;

/// Which checkpoint family: decides tensor names and the block's structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VitFamily {
    /// DINO v1, HF `ViTModel` names.
    Dino,
    /// DINOv2, HF `Dinov2Model` names.
    Dinov2,
}

impl VitFamily {
    fn layout(self) -> &'static str {
        match self {
            VitFamily::Dino => "Hugging Face ViTModel (facebook/dino-vits16: embeddings.cls_token, encoder.layer.0.layernorm_before, …)",
            VitFamily::Dinov2 => "Hugging Face Dinov2Model (facebook/dinov2-small: embeddings.cls_token, encoder.layer.0.norm1, …)",
        }
    }
}

/// Settings that are not in the tensors.
#[derive(Clone, Copy, Debug)]
pub struct VitConfig {
    /// Attention heads.
    pub heads: usize,
    /// LayerNorm ε.
    pub layer_norm_eps: f64,
    /// Input side in pixels (square).
    pub image_size: usize,
    /// Output pooling.
    pub pooling: Pooling,
}

impl VitConfig {
    /// Overrides heads and ε with a Hugging Face `config.json` when one is given.
    pub fn with_hf_config(mut self, json: Option<&serde_json::Value>) -> VitConfig {
        if let Some(j) = json {
            if let Some(h) = j.get("num_attention_heads").and_then(|v| v.as_u64()) {
                self.heads = h as usize;
            }
            if let Some(e) = j.get("layer_norm_eps").and_then(|v| v.as_f64()) {
                self.layer_norm_eps = e;
            }
        }
        self
    }
}

enum Mlp {
    Gelu { fc1: Linear, fc2: Linear },
    SwiGlu { w_in: Linear, w_out: Linear },
}

/// A pre-norm block; the layer scales (DINOv2) live in `proj` and the MLP's last layer, which
/// add their output to the residual stream themselves.
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    mlp: Mlp,
}

/// A ViT trunk that returns pooled features.
pub struct Vit {
    patch: usize,
    width: usize,
    heads: usize,
    /// The patch embedding (a stride-p conv) as a linear layer over flattened patches.
    patch_proj: Linear,
    cls_plus_pos: Tensor,
    patch_pos: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    config: VitConfig,
}

impl Vit {
    /// Loads a ViT of the given family.
    pub fn load(w: &mut Weights, family: VitFamily, config: VitConfig) -> FeatureResult<Vit> {
        w.expect_layout(family.layout(), "embeddings.cls_token");
        let proj_shape = w.require_shape("embeddings.patch_embeddings.projection.weight")?;
        if proj_shape.len() != 4 || proj_shape[1] != 3 || proj_shape[2] != proj_shape[3] {
            return Err(FeatureError::Config(format!(
                "embeddings.patch_embeddings.projection.weight has shape {proj_shape:?}, expected (width, 3, patch, patch)"
            )));
        }
        let (width, patch) = (proj_shape[0], proj_shape[2]);
        if config.heads == 0 || width % config.heads != 0 {
            return Err(FeatureError::Config(format!(
                "width {width} is not divisible by {} heads; fix num_attention_heads in config.json",
                config.heads
            )));
        }
        if !config.image_size.is_multiple_of(patch) {
            return Err(FeatureError::Config(format!(
                "input size {} is not a multiple of the patch size {patch}",
                config.image_size
            )));
        }
        let patch_weight = w.get("embeddings.patch_embeddings.projection.weight", &proj_shape)?;
        let patch_bias = w.get("embeddings.patch_embeddings.projection.bias", &[width])?;
        // The stride-p conv as a linear layer over flattened (c, kh, kw) patches.
        let patch_proj = Linear::new(
            patch_weight.reshape((width, 3 * patch * patch))?,
            patch_bias,
            w.placement(),
        )?;
        let cls = w.get("embeddings.cls_token", &[1, 1, width])?;
        let pos = w.get_any("embeddings.position_embeddings")?;
        let side = config.image_size / patch;
        let pos = resize_position_embeddings(&pos, width, side)?;
        let cls_plus_pos = (cls + pos.narrow(1, 0, 1)?)?;
        let patch_pos = pos.narrow(1, 1, side * side)?.contiguous()?;

        let mut blocks = Vec::new();
        let eps = config.layer_norm_eps;
        while w.contains(&format!(
            "encoder.layer.{}.attention.attention.query.weight",
            blocks.len()
        )) {
            let p = format!("encoder.layer.{}", blocks.len());
            let a = format!("{p}.attention.attention");
            let qkv_w = Tensor::cat(
                &[
                    w.get(&format!("{a}.query.weight"), &[width, width])?,
                    w.get(&format!("{a}.key.weight"), &[width, width])?,
                    w.get(&format!("{a}.value.weight"), &[width, width])?,
                ],
                0,
            )?;
            let qkv_b = Tensor::cat(
                &[
                    w.get(&format!("{a}.query.bias"), &[width])?,
                    w.get(&format!("{a}.key.bias"), &[width])?,
                    w.get(&format!("{a}.value.bias"), &[width])?,
                ],
                0,
            )?;
            let proj = Linear::load(w, &format!("{p}.attention.output.dense"), width, width)?;
            let block = match family {
                VitFamily::Dino => {
                    let hidden = w.require_shape(&format!("{p}.intermediate.dense.weight"))?[0];
                    Block {
                        norm1: LayerNorm::load(w, &format!("{p}.layernorm_before"), width, eps)?,
                        qkv: Linear::new(qkv_w, qkv_b, w.placement())?,
                        proj,
                        norm2: LayerNorm::load(w, &format!("{p}.layernorm_after"), width, eps)?,
                        mlp: Mlp::Gelu {
                            fc1: Linear::load_gelu(
                                w,
                                &format!("{p}.intermediate.dense"),
                                width,
                                hidden,
                            )?,
                            fc2: Linear::load(w, &format!("{p}.output.dense"), hidden, width)?,
                        },
                    }
                }
                VitFamily::Dinov2 => {
                    let scale1 = w.get(&format!("{p}.layer_scale1.lambda1"), &[width])?;
                    let scale2 = w.get(&format!("{p}.layer_scale2.lambda1"), &[width])?;
                    let mlp = if w.contains(&format!("{p}.mlp.weights_in.weight")) {
                        let two_hidden = w.require_shape(&format!("{p}.mlp.weights_in.weight"))?[0];
                        Mlp::SwiGlu {
                            w_in: Linear::load(
                                w,
                                &format!("{p}.mlp.weights_in"),
                                width,
                                two_hidden,
                            )?,
                            w_out: Linear::load(
                                w,
                                &format!("{p}.mlp.weights_out"),
                                two_hidden / 2,
                                width,
                            )?
                            .with_scale(scale2)?,
                        }
                    } else {
                        let hidden = w.require_shape(&format!("{p}.mlp.fc1.weight"))?[0];
                        Mlp::Gelu {
                            fc1: Linear::load_gelu(w, &format!("{p}.mlp.fc1"), width, hidden)?,
                            fc2: Linear::load(w, &format!("{p}.mlp.fc2"), hidden, width)?
                                .with_scale(scale2)?,
                        }
                    };
                    Block {
                        norm1: LayerNorm::load(w, &format!("{p}.norm1"), width, eps)?,
                        qkv: Linear::new(qkv_w, qkv_b, w.placement())?,
                        proj: proj.with_scale(scale1)?,
                        norm2: LayerNorm::load(w, &format!("{p}.norm2"), width, eps)?,
                        mlp,
                    }
                }
            };
            blocks.push(block);
        }
        if blocks.is_empty() {
            w.require_shape("encoder.layer.0.attention.attention.query.weight")?;
        }
        let norm = LayerNorm::load(w, "layernorm", width, eps)?;
        let p = w.placement();
        Ok(Vit {
            patch,
            width,
            heads: config.heads,
            patch_proj,
            cls_plus_pos: p.place(&cls_plus_pos)?,
            patch_pos: p.place(&patch_pos)?,
            blocks,
            norm,
            config,
        })
    }

    /// Feature width.
    pub fn dim(&self) -> usize {
        match self.config.pooling {
            Pooling::Cls => self.width,
            Pooling::ClsMeanPatch => 2 * self.width,
        }
    }

    /// Token width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Patch side in pixels.
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// Transformer depth.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Pooled features of an NCHW batch of `image_size`² images: (N, dim).
    pub fn forward(&self, x: &Tensor) -> FeatureResult<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let p = self.patch;
        if c != 3 || h != self.config.image_size || w != self.config.image_size {
            return Err(FeatureError::Config(format!(
                "the ViT expects (N, 3, {s}, {s}) input, got {:?}",
                x.dims(),
                s = self.config.image_size
            )));
        }
        let (gh, gw) = (h / p, w / p);
        // Patchify: the stride-p conv is a GEMM over flattened (c, kh, kw) patches.
        let patches = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        let tokens = self
            .patch_proj
            .forward(&patches)?
            .reshape((b, gh * gw, self.width))?
            .broadcast_add(&self.patch_pos)?;
        let cls = self.cls_plus_pos.broadcast_as((b, 1, self.width))?;
        let mut x = Tensor::cat(&[&cls, &tokens], 1)?;
        for block in &self.blocks {
            x = self.block_forward(block, &x)?;
        }
        let x = self.norm.forward(&x)?;
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(match self.config.pooling {
            Pooling::Cls => cls,
            Pooling::ClsMeanPatch => {
                let mean = x.narrow(1, 1, gh * gw)?.mean(1)?;
                Tensor::cat(&[&cls, &mean], 1)?
            }
        })
    }

    fn block_forward(&self, blk: &Block, x: &Tensor) -> FeatureResult<Tensor> {
        let qkv = blk.qkv.forward(&blk.norm1.forward(x)?)?;
        let ctx = if qkv.device().is_cpu() && qkv.dtype() == candle_core::DType::F32 {
            qkv.apply_op1_no_bwd(&SelfAttention { heads: self.heads })?
        } else {
            self.attention(&qkv)?
        };
        let x = blk.proj.forward_residual(&ctx, x)?;
        let h = blk.norm2.forward(&x)?;
        match &blk.mlp {
            Mlp::Gelu { fc1, fc2 } => fc2.forward_residual(&fc1.forward(&h)?, &x),
            Mlp::SwiGlu { w_in, w_out } => {
                let hh = w_in.forward(&h)?;
                let half = hh.dim(D::Minus1)? / 2;
                let gated = (candle_nn::ops::silu(&hh.narrow(D::Minus1, 0, half)?)?
                    * hh.narrow(D::Minus1, half, half)?)?;
                w_out.forward_residual(&gated, &x)
            }
        }
    }

    /// Attention with candle's ops (non-CPU devices): (B, T, 3D) → (B, T, D).
    fn attention(&self, qkv: &Tensor) -> FeatureResult<Tensor> {
        let (b, t, three_d) = qkv.dims3()?;
        let d = three_d / 3;
        let (heads, dh) = (self.heads, d / self.heads);
        let qkv = qkv
            .reshape((b, t, 3, heads, dh))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let q = (qkv.get(0)? * (1.0 / (dh as f64).sqrt()))?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let att = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        Ok(att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?)
    }
}

/// Resizes (1, 1+n², width) position embeddings to (1, 1+side², width), keeping the CLS
/// entry: bicubic (a = −0.75) on the n×n grid with half-pixel centres, as torch's
/// `interpolate(mode="bicubic", align_corners=False)`; unchanged when n = side.
pub fn resize_position_embeddings(
    pos: &Tensor,
    width: usize,
    side: usize,
) -> FeatureResult<Tensor> {
    let dims = pos.dims().to_vec();
    let n_pos = if dims.len() == 3 && dims[0] == 1 && dims[2] == width {
        dims[1] - 1
    } else {
        return Err(FeatureError::Config(format!(
            "embeddings.position_embeddings has shape {dims:?}, expected (1, 1+grid², {width})"
        )));
    };
    let n = (n_pos as f64).sqrt().round() as usize;
    if n * n != n_pos {
        return Err(FeatureError::Config(format!(
            "embeddings.position_embeddings holds {n_pos} patch positions, not a square grid"
        )));
    }
    if n == side {
        return Ok(pos.clone());
    }
    let data: Vec<f32> = pos.flatten_all()?.to_vec1()?;
    let (cls, grid) = data.split_at(width);
    let taps = bicubic_taps(n, side);
    // Rows first, then columns: separable, same weights as torch's 4×4 product.
    let mut rows = vec![0f32; side * n * width];
    for (oy, ty) in taps.iter().enumerate() {
        for x in 0..n {
            let dst = &mut rows[(oy * n + x) * width..][..width];
            for &(iy, wy) in ty {
                let src = &grid[(iy * n + x) * width..][..width];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += wy * s);
            }
        }
    }
    let mut out = cls.to_vec();
    out.resize(width * (1 + side * side), 0.0);
    for oy in 0..side {
        for (ox, tx) in taps.iter().enumerate() {
            let dst = &mut out[width * (1 + oy * side + ox)..][..width];
            for &(ix, wx) in tx {
                let src = &rows[(oy * n + ix) * width..][..width];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += wx * s);
            }
        }
    }
    Ok(Tensor::from_vec(
        out,
        (1, 1 + side * side, width),
        pos.device(),
    )?)
}

/// For each output index, four (clamped input index, weight) pairs.
fn bicubic_taps(input: usize, output: usize) -> Vec<[(usize, f32); 4]> {
    const A: f32 = -0.75;
    let cubic = |x: f32| {
        let x = x.abs();
        if x <= 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = (o as f32 + 0.5) * scale - 0.5;
            let i0 = src.floor();
            let t = src - i0;
            let mut taps = [(0usize, 0f32); 4];
            for (k, tap) in taps.iter_mut().enumerate() {
                let idx = (i0 as isize + k as isize - 1).clamp(0, input as isize - 1) as usize;
                *tap = (idx, cubic(t + 1.0 - k as f32));
            }
            taps
        })
        .collect()
}
