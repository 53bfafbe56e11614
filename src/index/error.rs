//! Errors of the index layer.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

/// Everything that can go wrong while building, loading or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// k = 0 or above the cap.
    #[error("k = {k} is out of range: ask for between 1 and {max} neighbours")]
    InvalidK {
        /// Requested k.
        k: usize,
        /// The cap, [`crate::index::MAX_K`].
        max: usize,
    },
    /// A query of the wrong length.
    #[error(
        "dimension mismatch: the index holds {expected}-d vectors but query {query} is {got}-d"
    )]
    DimensionMismatch {
        /// Index dimension.
        expected: usize,
        /// Query length.
        got: usize,
        /// Query position in the batch.
        query: usize,
    },
    /// NaN or Inf in a query.
    #[error(
        "query {query} has a non-finite value (NaN or Inf) at position {col}; clean it and retry"
    )]
    NonFiniteQuery {
        /// Query position in the batch.
        query: usize,
        /// First bad column.
        col: usize,
    },
    /// Values so large that distances overflow to infinity.
    #[error("vector {query} has a squared norm of {squared_norm:.3e}, so large that its distances overflow (the limit is {:.1e}); scale the vectors down", crate::types::MAX_SQUARED_NORM)]
    VectorTooLarge {
        /// Position in the batch.
        query: usize,
        /// Its squared norm.
        squared_norm: f64,
    },
    /// Searching a pool with no rows.
    #[error("the pool is empty: import vectors before searching")]
    EmptyPool,
    /// A parameter outside its range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Offered value.
        value: String,
        /// Accepted range.
        reason: &'static str,
    },
    /// The index has more rows than the vectors it was given.
    #[error(
        "the index covers {index_rows} rows but the pool has {pool_rows}; it belongs to other data"
    )]
    AheadOfStore {
        /// Rows indexed.
        index_rows: usize,
        /// Rows in the pool.
        pool_rows: usize,
    },
    /// A damaged or foreign index file.
    #[error("index file {path} is unusable: {reason}")]
    CorruptIndexFile {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// The hnsw_rs backend failed.
    #[error("hnsw_rs backend: {0}")]
    Backend(String),
    /// File system error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

impl IndexError {
    /// What kind of failure this is (the gRPC code and exit code follow from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::Io { source, .. } if crate::files::is_disk_full(source) => {
                ErrorKind::ResourceExhausted
            }
            IndexError::InvalidK { .. }
            | IndexError::DimensionMismatch { .. }
            | IndexError::NonFiniteQuery { .. }
            | IndexError::VectorTooLarge { .. }
            | IndexError::InvalidParameter { .. } => ErrorKind::InvalidArgument,
            IndexError::EmptyPool => ErrorKind::FailedPrecondition,
            IndexError::AheadOfStore { .. }
            | IndexError::CorruptIndexFile { .. }
            | IndexError::Backend(_)
            | IndexError::Io { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
        let path = path.into();
        move |source| IndexError::Io { path, source }
    }
}
