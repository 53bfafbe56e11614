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
    /// A request the service refuses (never one of its pass-through variants: those are
    /// taken out into the layer's own variant above, see the `From` below).
    #[error(transparent)]
    Service(ServiceError),
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
    /// A file of the command's own (an input it reads, an output it writes) that the system
    /// refused.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done, with the path ("cannot write set.jsonl").
        doing: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// An ingestion job that ended without succeeding (its record keeps the reason as text).
    #[error("job {id} {state}: {reason}")]
    JobEnded {
        /// The job.
        id: String,
        /// How it ended.
        state: crate::store::JobState,
        /// Why, as the job recorded it.
        reason: String,
    },
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

impl From<ServiceError> for Error {
    /// A lower layer's error that passed through the service comes out as that layer's
    /// variant, so a caller matches `Error::Store(..)` whichever way the call went.
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(e) => Error::Store(e),
            ServiceError::Index(e) => Error::Index(e),
            ServiceError::Format(e) => Error::Format(e),
            ServiceError::Feature(e) => Error::Feature(e),
            #[cfg(feature = "cuda")]
            ServiceError::Gpu(e) => Error::Gpu(e),
            other => Error::Service(other),
        }
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
            Error::Io { source, .. } => io_kind(source),
            Error::JobEnded { state, .. } => match state {
                crate::store::JobState::Cancelled => ErrorKind::Cancelled,
                _ => ErrorKind::Internal,
            },
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The exit code of a command that failed with this error.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

impl Error {
    /// A file error, with what was being done to which path.
    pub fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let doing = doing.into();
        move |source| Error::Io { doing, source }
    }
}

/// The kind of a file error: a missing file or folder, a refused permission, a full disk.
fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    if crate::files::is_disk_full(e) {
        return ErrorKind::ResourceExhausted;
    }
    match e.kind() {
        Io::NotFound => ErrorKind::NotFound,
        Io::PermissionDenied | Io::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
        Io::AlreadyExists => ErrorKind::AlreadyExists,
        Io::InvalidInput | Io::InvalidData | Io::IsADirectory | Io::NotADirectory => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Internal,
    }
}

/// Result with the crate error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
