//! The crate-level error: one variant per layer, so callers (the CLI now, the gRPC layer
//! later) classify failures in one place.

use crate::features::FeatureError;
use crate::formats::FormatError;
use crate::index::IndexError;
use crate::service::ServiceError;
use crate::store::StoreError;

/// Any failure of a dcd operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage layer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Index layer.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading or writing a vector file.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Loading or running a backbone (boxed: its variants carry names and shapes).
    #[error(transparent)]
    Feature(Box<FeatureError>),
    /// The GPU path.
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// A request the service refuses.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Command-line arguments that do not fit together.
    #[error("{0}")]
    Usage(String),
}

impl From<FeatureError> for Error {
    fn from(e: FeatureError) -> Self {
        Error::Feature(Box::new(e))
    }
}

impl Error {
    /// True when the caller's input was at fault (not the machine or the data on disk).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Format(_) => true,
            #[cfg(feature = "cuda")]
            Error::Gpu(e) => matches!(e, crate::gpu::GpuError::KTooLarge { .. }),
            Error::Service(e) => !matches!(e, ServiceError::ShuttingDown),
            Error::Feature(e) => !matches!(**e, FeatureError::Tensor(_)),
            Error::Store(e) => !matches!(
                e,
                StoreError::Io { .. }
                    | StoreError::Catalog { .. }
                    | StoreError::CatalogUnreadable { .. }
                    | StoreError::CorruptVectorFile { .. }
                    | StoreError::TruncatedVectorFile { .. }
                    | StoreError::MissingItem { .. }
                    | StoreError::ItemsDisagree { .. }
            ),
            Error::Index(e) => !matches!(
                e,
                IndexError::Io { .. }
                    | IndexError::CorruptIndexFile { .. }
                    | IndexError::Backend(_)
            ),
        }
    }
}

/// Result with the crate error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
