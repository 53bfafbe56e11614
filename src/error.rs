//! The crate-level error: one variant per layer, so callers classify failures in one place:
//! [`Error::kind`], from which the gRPC code (`api::status`) and the exit code (`main.rs`) are
//! both derived.

use crate::error_kind::ErrorKind;
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
    /// What a remote `dcd serve` answered, with the kind its status code names.
    #[error("the server answered {kind}: {message}")]
    Remote {
        /// The kind of the server's status.
        kind: ErrorKind,
        /// The server's message.
        message: String,
    },
    /// An address that cannot be listened on or connected to.
    #[error("{0}")]
    Network(String),
    /// dcd's own machinery failed (an async runtime, a worker thread), or a promise between
    /// its parts was broken: a bug to report.
    #[error("{0}")]
    Internal(String),
}

impl From<FeatureError> for Error {
    fn from(e: FeatureError) -> Self {
        Error::Feature(Box::new(e))
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::Index(e) => e.kind(),
            Error::Format(e) => e.kind(),
            Error::Feature(e) => e.kind(),
            #[cfg(feature = "cuda")]
            Error::Gpu(e) => e.kind(),
            Error::Service(e) => e.kind(),
            Error::Usage(_) => ErrorKind::InvalidArgument,
            Error::Remote { kind, .. } => *kind,
            Error::Network(_) => ErrorKind::Unavailable,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The exit code of a command that failed with this error.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

/// Result with the crate error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
