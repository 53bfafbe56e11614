//! The flags of the commands that run a backbone directly: `dcd embed` (and the benches).

use std::path::PathBuf;

use clap::Args;

use crate::features::backbone::BackboneChoice;
use crate::settings::{Device, Pooling, Precision};

use super::ImageLimitArgs;

/// Which backbone and weights; shared by the commands that run a model.
#[derive(Debug, Args, Clone)]
pub struct BackboneArgs {
    /// Registry name (dino-vits16, dinov2-vits14, resnet50, mobilenetv2, ...).
    #[arg(long, env = "DCD_BACKBONE")]
    pub backbone: String,
    /// Weights: a .safetensors/.pth file, a model directory, or a Hugging Face model id in the
    /// local hub cache (default: the backbone's usual model id).
    #[arg(long, env = "DCD_WEIGHTS")]
    pub weights: Option<String>,
    /// ViT feature: the CLS token, or CLS followed by the mean patch token (twice as wide).
    #[arg(long, env = "DCD_POOLING", default_value = "cls")]
    pub pooling: Pooling,
    /// Where the model runs: cpu, or cuda / cuda:N (needs a dcd built with --features cuda).
    #[arg(long, env = "DCD_DEVICE", default_value = "cpu")]
    pub device: Device,
    /// Model precision: f32; bf16 (CUDA, or CPUs with AVX512-BF16: bf16 products, f32
    /// accumulation; refused on other CPUs); f16 (for CUDA).
    #[arg(long, env = "DCD_PRECISION", default_value = "f32")]
    pub precision: Precision,
}

impl BackboneArgs {
    /// The backbone these flags name.
    pub fn choice(&self) -> BackboneChoice {
        BackboneChoice {
            name: self.backbone.clone(),
            weights: self.weights.clone(),
            pooling: self.pooling,
            device: self.device,
            precision: self.precision,
        }
    }
}

/// `dcd embed`
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The backbone.
    #[command(flatten)]
    pub model: BackboneArgs,
    /// Image files or folders (searched recursively for .jpg .jpeg .png .webp .bmp .tif .tiff .gif).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output .npy (float32, rows in the order of the images that embedded).
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// Where to write the image path of each row (default: the output with .keys.txt).
    #[arg(long, env = "DCD_KEYS_OUT")]
    pub keys_out: Option<PathBuf>,
    /// Most images per forward pass.
    #[arg(long, env = "DCD_BATCH", default_value_t = 16)]
    pub batch: usize,
    /// Milliseconds the batcher waits to fill a batch.
    #[arg(long, env = "DCD_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Decode threads (default: one per core).
    #[arg(long, env = "DCD_DECODE_THREADS")]
    pub decode_threads: Option<usize>,
    /// Bounds on requests, streams and jobs.
    #[command(flatten)]
    pub limits: ImageLimitArgs,
}
