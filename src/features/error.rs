//! Errors of the feature layer: finding and reading weights, matching them to an
//! architecture, and running a model. Per-image failures are [`super::preprocess::ImageError`].

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// Why a backbone could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The backbone name is not in the registry.
    #[error("unknown backbone `{name}`; known backbones: {known}")]
    UnknownBackbone {
        /// The name given.
        name: String,
        /// The registry's names, comma-separated.
        known: String,
    },
    /// No weights file at the place given, nor in the Hugging Face cache.
    #[error("no weights found for {what}: {hint}")]
    WeightsNotFound {
        /// The path or model id that was asked for.
        what: String,
        /// Where dcd looked and how to get the weights.
        hint: String,
    },
    /// The weights file exists but could not be parsed.
    #[error("cannot read weights file {path}: {reason}")]
    WeightsUnreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A tensor the architecture needs is not in the weights.
    #[error("weights {source_name} lack tensor `{name}` (expected shape {expected:?}); the {layout} layout is expected")]
    MissingTensor {
        /// The tensor's name in the expected layout.
        name: String,
        /// Its expected shape (empty when any shape would do).
        expected: Vec<usize>,
        /// The weights file or model id.
        source_name: String,
        /// The checkpoint layout the model loads, e.g. "HF ViTModel (facebook/dino-vits16)".
        layout: String,
    },
    /// A tensor is there with another shape than the architecture needs.
    #[error("weights {source_name}: tensor `{name}` has shape {found:?}, expected {expected:?}; the {layout} layout is expected")]
    TensorShape {
        /// The tensor's name.
        name: String,
        /// The shape the architecture needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
        /// The weights file or model id.
        source_name: String,
        /// The checkpoint layout the model loads.
        layout: String,
    },
    /// A config file or backbone setting that does not fit.
    #[error("{0}")]
    Config(String),
    /// The tensor library failed while running the model.
    #[error("model execution failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result with [`FeatureError`].
pub type FeatureResult<T> = std::result::Result<T, FeatureError>;

impl FeatureError {
    /// What kind of failure this is (the gRPC code and exit code follow from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            FeatureError::UnknownBackbone { .. } | FeatureError::Config(_) => {
                ErrorKind::InvalidArgument
            }
            FeatureError::WeightsNotFound { .. } => ErrorKind::NotFound,
            FeatureError::WeightsUnreadable { .. }
            | FeatureError::MissingTensor { .. }
            | FeatureError::TensorShape { .. } => ErrorKind::FailedPrecondition,
            FeatureError::Tensor(_) => ErrorKind::Internal,
        }
    }
}
