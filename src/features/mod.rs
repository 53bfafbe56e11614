//! Backbone features: decoding and preprocessing images, loading a backbone's weights
//! (safetensors, PyTorch `.pth`, the local Hugging Face cache), and running it.

pub mod backbone;
pub mod cpu;
pub mod decode_budget;
pub mod error;
pub mod hub;
mod jpeg;
pub mod models;
pub mod pipeline;
pub mod preprocess;
pub mod pth;
pub mod random;
pub mod registry;
pub mod thumbnail;
pub mod weights;

pub use backbone::{Backbone, FeatureExtractor, LoadOptions};
pub use error::{FeatureError, FeatureResult};
