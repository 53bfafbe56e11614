//! Errors of the service layer: requests that do not fit together, resources that ran out,
//! and paths the server may not read. Store, index, format, model and GPU errors pass through
//! unchanged (the crate-level [`crate::Error`] takes them back out of the wrapper).

use std::path::PathBuf;

use crate::error_kind::ErrorKind;
use crate::features::FeatureError;
use crate::formats::FormatError;
use crate::index::IndexError;
use crate::store::StoreError;

/// Result of a service call.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A request the service refuses, or a limit it hit.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A required field is empty or a value is out of its range.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the API.
        field: &'static str,
        /// What was wrong and how to fix it.
        reason: String,
    },
    /// The request needs images embedded but the pool has no backbone.
    #[error("pool {pool:?} stores raw vectors and has no backbone, so it cannot embed images; send vectors, or create the pool with a backbone")]
    NoModel {
        /// The pool.
        pool: String,
    },
    /// An item key that is not in the pool.
    #[error("no item with key {key:?} in pool {pool:?}")]
    KeyNotFound {
        /// The pool searched.
        pool: String,
        /// The key.
        key: String,
    },
    /// Two pools whose vectors cannot be compared.
    #[error("pools {a:?} ({a_space}) and {b:?} ({b_space}) live in different feature spaces; take error samples from a pool embedded with the same backbone")]
    IncompatiblePools {
        /// First pool.
        a: String,
        /// Its dimension and backbone.
        a_space: String,
        /// Second pool.
        b: String,
        /// Its dimension and backbone.
        b_space: String,
    },
    /// None of the error samples or queries could be used.
    #[error("none of the {count} {what} could be used: {first}")]
    NothingUsable {
        /// "error samples" or "queries".
        what: &'static str,
        /// How many were sent.
        count: usize,
        /// Why the first one failed.
        first: String,
    },
    /// A server-side path outside the allowed roots.
    #[error("{path} is outside the directories this server may read ({roots}); start dcd serve with --allow-root covering it")]
    PathNotAllowed {
        /// The path asked for (resolved).
        path: PathBuf,
        /// The allowed roots, listed.
        roots: String,
    },
    /// A server-side path the server's own user may not read.
    #[error("cannot read {path}: {reason} (the server runs as a user without access to it)")]
    PathPermissionDenied {
        /// The path.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A request or job beyond one of the server's bounds.
    #[error("{what}: {fix}, or raise the bound with {flag}")]
    OverLimit {
        /// What exceeded which bound.
        what: String,
        /// How to stay within it.
        fix: &'static str,
        /// The flag that sets the bound.
        flag: &'static str,
    },
    /// The caller went away (cancelled, deadline passed) or the job was cancelled.
    #[error("stopped while {what}: the call was cancelled or its deadline passed")]
    Cancelled {
        /// What was under way.
        what: &'static str,
    },
    /// A server-side path that does not exist or cannot be read.
    #[error("cannot read {path}: {reason}")]
    PathUnreadable {
        /// The path.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A manifest line that cannot be parsed.
    #[error("manifest {path} line {line}: {reason}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A folder or manifest with nothing to ingest.
    #[error(
        "{path} holds no images (looked for .jpg .jpeg .png .webp .bmp .tif .tiff .gif){hint}"
    )]
    NoImages {
        /// The folder or manifest.
        path: PathBuf,
        /// Extra advice.
        hint: String,
    },
    /// A job that cannot be cancelled or resumed in its state.
    #[error("job {id} is already {state}")]
    JobFinished {
        /// The job.
        id: String,
        /// Its final state.
        state: String,
    },
    /// The machine refused a resource (threads, files) the service needs.
    #[error("{what}")]
    Internal {
        /// What failed.
        what: String,
    },
    /// The server is shutting down.
    #[error("the server is shutting down; retry against the next instance")]
    ShuttingDown,
    /// Settings the service was started with that do not fit together or this build.
    #[error("--{flag} {value}: {reason}")]
    BadSetting {
        /// The flag, without its dashes.
        flag: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be used, and the fix.
        reason: &'static str,
    },
    /// The storage layer's error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index layer's error.
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
}

impl From<FeatureError> for ServiceError {
    fn from(e: FeatureError) -> Self {
        ServiceError::Feature(Box::new(e))
    }
}

impl ServiceError {
    /// What kind of failure this is (the gRPC code and exit code follow from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::InvalidArgument { .. }
            | ServiceError::NothingUsable { .. }
            | ServiceError::BadManifest { .. }
            | ServiceError::NoImages { .. }
            | ServiceError::OverLimit { .. }
            | ServiceError::BadSetting { .. } => ErrorKind::InvalidArgument,
            ServiceError::NoModel { .. }
            | ServiceError::IncompatiblePools { .. }
            | ServiceError::JobFinished { .. } => ErrorKind::FailedPrecondition,
            ServiceError::KeyNotFound { .. } | ServiceError::PathUnreadable { .. } => {
                ErrorKind::NotFound
            }
            ServiceError::PathNotAllowed { .. } | ServiceError::PathPermissionDenied { .. } => {
                ErrorKind::PermissionDenied
            }
            ServiceError::Cancelled { .. } => ErrorKind::Cancelled,
            ServiceError::Internal { .. } => ErrorKind::Internal,
            ServiceError::ShuttingDown => ErrorKind::Unavailable,
            ServiceError::Store(e) => e.kind(),
            ServiceError::Index(e) => e.kind(),
            ServiceError::Format(e) => e.kind(),
            ServiceError::Feature(e) => e.kind(),
            #[cfg(feature = "cuda")]
            ServiceError::Gpu(e) => e.kind(),
        }
    }
}
