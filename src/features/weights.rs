//! A checkpoint's tensors by name, read from safetensors or PyTorch `.pth`, with lookups that
//! check shapes and name the first missing or mismatched tensor and the layout expected.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::cpu::packed::Kernel;
use super::error::{FeatureError, FeatureResult};
use super::pth;

/// Wrappers that training code puts around a state dict's names; stripped when the model's
/// own names are not found as they are.
const KNOWN_PREFIXES: [&str; 6] = [
    "module.",
    "model.",
    "backbone.",
    "vit.",
    "dinov2.",
    "encoder.",
];

/// Where and in which precision a model's tensors live and are multiplied.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The device.
    pub device: Device,
    /// Storage and compute type: f32, or f16/bf16 (meant for CUDA).
    pub dtype: DType,
    /// On CPU with f32 tensors: the convolutions' and linear layers' products in bf16
    /// (weights packed in bf16 at load, activations rounded per product, f32 accumulation;
    /// AVX512-BF16). Everything else stays f32.
    pub bf16_products: bool,
}

impl Placement {
    /// f32 on CPU: dcd's kernels.
    pub fn cpu_f32() -> Placement {
        Placement {
            device: Device::Cpu,
            dtype: DType::F32,
            bf16_products: false,
        }
    }

    /// True when dcd's own CPU kernels run the model (f32 tensors on CPU); otherwise candle's
    /// ops do.
    pub fn fast_cpu(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }

    /// The packed kernel the model's GEMMs with weights use: bf16 when asked (the placement
    /// was only made where the CPU runs it), f32 where the CPU has AVX-512; None elsewhere
    /// (the generic `gemm` crate, AVX2 or baseline).
    pub fn packed_kernel(&self) -> Option<Kernel> {
        if !self.fast_cpu() {
            return None;
        }
        if self.bf16_products {
            return Some(Kernel::Bf16);
        }
        Kernel::F32.available().then_some(Kernel::F32)
    }

    /// `t` converted to the model's dtype on its device.
    pub fn place(&self, t: &Tensor) -> FeatureResult<Tensor> {
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }
}

/// The tensors of one checkpoint.
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    source: String,
    layout: String,
    placement: Placement,
}

impl Weights {
    /// Reads every tensor of a `.safetensors`, `.pth`, `.pt` or `.bin` (PyTorch) file.
    pub fn read(path: &Path, placement: &Placement) -> FeatureResult<Weights> {
        let unreadable = |reason: String| FeatureError::WeightsUnreadable {
            path: path.to_path_buf(),
            reason,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let tensors: Vec<(String, Tensor)> = match ext.as_str() {
            "safetensors" => candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| unreadable(e.to_string()))?
                .into_iter()
                .collect(),
            "pth" | "pt" | "bin" | "ckpt" | "tar" => pth::read(path).map_err(unreadable)?,
            other => {
                return Err(unreadable(format!(
                "unknown weights extension `.{other}`; use .safetensors or a PyTorch .pth/.pt/.bin"
            )))
            }
        };
        if tensors.is_empty() {
            return Err(unreadable("the file holds no tensors".into()));
        }
        Ok(Weights::from_tensors(
            tensors,
            path.display().to_string(),
            placement,
        ))
    }

    /// Wraps tensors already in memory (tests, converted checkpoints).
    pub fn from_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        source: String,
        placement: &Placement,
    ) -> Weights {
        Weights {
            tensors: tensors.into_iter().collect(),
            source,
            layout: "model's".into(),
            placement: placement.clone(),
        }
    }

    /// Where the tensors came from (path or model id), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Names the layout a model expects, so errors can say it; strips a wrapper prefix
    /// (`module.`, `vit.`, …) when `probe`, a tensor every checkpoint of that layout has, is
    /// only found under one.
    pub fn expect_layout(&mut self, layout: &str, probe: &str) {
        self.layout = layout.to_string();
        if self.tensors.contains_key(probe) {
            return;
        }
        let prefix = self.tensors.keys().find_map(|name| {
            let prefix = name.strip_suffix(probe)?;
            let mut rest = prefix;
            while !rest.is_empty() {
                let p = KNOWN_PREFIXES.iter().find(|p| rest.starts_with(*p))?;
                rest = &rest[p.len()..];
            }
            Some(prefix.to_string())
        });
        if let Some(prefix) = prefix {
            self.tensors = std::mem::take(&mut self.tensors)
                .into_iter()
                .filter_map(|(name, t)| Some((name.strip_prefix(&prefix)?.to_string(), t)))
                .collect();
        }
    }

    /// True when the checkpoint has a tensor of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.dims().to_vec())
    }

    /// The shape of a tensor that must be present.
    pub fn require_shape(&self, name: &str) -> FeatureResult<Vec<usize>> {
        self.shape(name).ok_or_else(|| self.missing(name, &[]))
    }

    /// The tensor `name` as f32 on the model's device, checked to have `shape` (f32 so that
    /// load-time arithmetic such as BatchNorm folding is exact; [`Placement::place`] then
    /// converts what the model keeps).
    pub fn get(&self, name: &str, shape: &[usize]) -> FeatureResult<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| self.missing(name, shape))?;
        if t.dims() != shape {
            return Err(FeatureError::TensorShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
                source_name: self.source.clone(),
                layout: self.layout.clone(),
            });
        }
        Ok(t.to_dtype(DType::F32)?.to_device(&self.placement.device)?)
    }

    /// Like [`Weights::get`] for a tensor whose shape the caller reads off the checkpoint.
    pub fn get_any(&self, name: &str) -> FeatureResult<Tensor> {
        let shape = self.require_shape(name)?;
        self.get(name, &shape)
    }

    fn missing(&self, name: &str, shape: &[usize]) -> FeatureError {
        FeatureError::MissingTensor {
            name: name.to_string(),
            expected: shape.to_vec(),
            source_name: self.source.clone(),
            layout: self.layout.clone(),
        }
    }

    /// Where the model's tensors go.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }
}
