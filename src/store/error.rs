//! Errors of the storage layer. Each variant names what was wrong and how to fix it.

use std::path::{Path, PathBuf};

use crate::error_kind::ErrorKind;

/// Everything that can go wrong while reading or writing a pool on disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by another dcd process; stop it or pass a different --data-dir")]
    DataDirLocked {
        /// The data directory.
        path: PathBuf,
    },
    /// A pool name that cannot be used as a directory name.
    #[error("invalid pool name {name:?}: {reason}")]
    InvalidPoolName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `create` with a name that is taken.
    #[error("pool {name:?} already exists; pick another name or delete it first (dcd pool delete {name})")]
    PoolExists {
        /// The taken name.
        name: String,
    },
    /// A pool that is not in the catalog.
    #[error("no pool named {name:?}; list pools with `dcd pool list`")]
    PoolNotFound {
        /// The missing name.
        name: String,
    },
    /// A pool deleted while a call was still using it.
    #[error(
        "pool {name:?} was deleted while this call was using it; nothing more was written to it"
    )]
    PoolDeleted {
        /// The deleted pool's name.
        name: String,
    },
    /// No saved debug-train set of that name.
    #[error("no saved debug-train set named {name:?}; list them with `dcd sets list`")]
    SetNotFound {
        /// The name asked for.
        name: String,
    },
    /// Saving a set under a name that is taken.
    #[error("a saved debug-train set named {name:?} exists; pick another name or delete it first (dcd sets delete {name})")]
    SetExists {
        /// The taken name.
        name: String,
    },
    /// A review naming an item the set does not hold.
    #[error("saved set {set:?} has no item {key:?}; only the set's own items can be reviewed (see them with `dcd sets show {set}`)")]
    NotInSet {
        /// The set.
        set: String,
        /// The key it lacks.
        key: String,
    },
    /// A set name that cannot be used.
    #[error("invalid set name {name:?}: {reason}")]
    InvalidSetName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// No job with that id.
    #[error("no ingestion job {id:?}; list a pool's jobs with `dcd pool info`")]
    JobNotFound {
        /// The id asked for.
        id: String,
    },
    /// Pool dimension 0 or absurdly large.
    #[error("invalid dimension {dim}: a pool's dimension must be between 1 and {max}")]
    InvalidDimension {
        /// The rejected dimension.
        dim: usize,
        /// Largest accepted dimension.
        max: usize,
    },
    /// Vectors whose length is not the pool's dimension.
    #[error("dimension mismatch: pool {pool:?} stores {expected}-d vectors but got {got}-d; embed with the pool's backbone or create a pool with --dim {got}")]
    DimensionMismatch {
        /// Pool name.
        pool: String,
        /// The pool's dimension.
        expected: usize,
        /// The offered dimension.
        got: usize,
    },
    /// NaN or ±Inf inside a vector.
    #[error("vector {row} has a non-finite value (NaN or Inf) at position {col}; nothing was stored. Clean the input (e.g. np.nan_to_num) and retry")]
    NonFinite {
        /// Row within the offered batch.
        row: usize,
        /// Column of the first bad value.
        col: usize,
    },
    /// Values so large that distances overflow.
    #[error("vector {row} has a squared norm of {squared_norm:.3e}, so large that its distances overflow (the limit is {:.1e}); nothing was stored. Scale the vectors down", crate::types::MAX_SQUARED_NORM)]
    VectorTooLarge {
        /// Row within the offered batch.
        row: usize,
        /// Its squared norm.
        squared_norm: f64,
    },
    /// A key, label or metadata beyond its limits.
    #[error("item {key:?}: {reason}; nothing was stored")]
    InvalidItem {
        /// The key (clipped).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The number of item records does not match the number of vectors.
    #[error(
        "{items} item records for {vectors} vectors: give exactly one key/label record per vector"
    )]
    ItemCountMismatch {
        /// Item records offered.
        items: usize,
        /// Vectors offered.
        vectors: usize,
    },
    /// An external key already present in the pool (or twice in one batch).
    #[error("key {key:?} already exists in pool {pool:?}; keys are unique per pool. Use distinct keys or delete the pool first")]
    DuplicateKey {
        /// Pool name.
        pool: String,
        /// The repeated key.
        key: String,
    },
    /// Metadata that is not a JSON document.
    #[error("metadata of key {key:?} is not valid JSON: {reason}")]
    InvalidMetadata {
        /// The item's key.
        key: String,
        /// Parser message.
        reason: String,
    },
    /// A pool would exceed the row-id space.
    #[error("pool {pool:?} would hold {rows} rows, more than the {max} a pool can address; split the data over several pools")]
    PoolFull {
        /// Pool name.
        pool: String,
        /// Rows it would hold.
        rows: u64,
        /// The limit.
        max: u64,
    },
    /// A vector file whose header is not ours, damaged, or of another version.
    #[error("vector file {path} is not a valid dcd vector file: {reason}")]
    CorruptVectorFile {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// A vector file holding fewer rows than the catalog has committed.
    #[error("vector file {path} holds {found} rows but the catalog committed {committed}; the file was truncated outside dcd. Restore it from a backup or re-import the pool")]
    TruncatedVectorFile {
        /// The file.
        path: PathBuf,
        /// Rows the file holds.
        found: u64,
        /// Rows the catalog committed.
        committed: u64,
    },
    /// A row the catalog should hold an item for, and does not.
    #[error("pool #{pool_id}: row {row} has no item in the catalog (the catalog was damaged or edited); run `dcd pool verify`")]
    MissingItem {
        /// The pool's catalog id.
        pool_id: i64,
        /// The row.
        row: crate::types::RowId,
    },
    /// Catalog items and vector rows disagree in number.
    #[error("pool {pool:?} has {rows} committed rows but {items} items in the catalog (the catalog was damaged or edited); run `dcd pool verify`, restore the catalog from a backup, or re-import the pool")]
    ItemsDisagree {
        /// The pool.
        pool: String,
        /// Committed rows.
        rows: u64,
        /// Items recorded.
        items: u64,
    },
    /// The SQLite catalog cannot be opened or read.
    #[error("catalog {path} is unreadable ({reason}); restore it from a backup or point --data-dir elsewhere")]
    CatalogUnreadable {
        /// The catalog file.
        path: PathBuf,
        /// SQLite's message.
        reason: String,
    },
    /// A catalog operation failed.
    #[error("catalog error while {action}: {source}")]
    Catalog {
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A write to a data directory opened read-only.
    #[error("{path} is open read-only (a running server holds it, or it cannot be written); stop the server, or send the command to it with --server")]
    ReadOnly {
        /// The data directory or pool folder.
        path: PathBuf,
    },
    /// A data directory on read-only media, or without write permission, opened to write.
    #[error("data directory {path} cannot be written ({source}); the commands that only read work on it as it is; to change it, copy it to writable storage or fix its permissions")]
    NotWritable {
        /// The data directory.
        path: PathBuf,
        /// The file system's refusal.
        #[source]
        source: std::io::Error,
    },
    /// File system error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// What kind of failure this is (the gRPC code and exit code follow from it).
    pub fn kind(&self) -> ErrorKind {
        if self.is_disk_full() {
            return ErrorKind::ResourceExhausted;
        }
        match self {
            StoreError::PoolNotFound { .. }
            | StoreError::PoolDeleted { .. }
            | StoreError::JobNotFound { .. }
            | StoreError::SetNotFound { .. }
            | StoreError::NotInSet { .. } => ErrorKind::NotFound,
            StoreError::PoolExists { .. }
            | StoreError::DuplicateKey { .. }
            | StoreError::SetExists { .. } => ErrorKind::AlreadyExists,
            StoreError::InvalidPoolName { .. }
            | StoreError::InvalidSetName { .. }
            | StoreError::InvalidDimension { .. }
            | StoreError::DimensionMismatch { .. }
            | StoreError::NonFinite { .. }
            | StoreError::VectorTooLarge { .. }
            | StoreError::InvalidItem { .. }
            | StoreError::ItemCountMismatch { .. }
            | StoreError::InvalidMetadata { .. } => ErrorKind::InvalidArgument,
            StoreError::PoolFull { .. } => ErrorKind::ResourceExhausted,
            StoreError::DataDirLocked { .. } => ErrorKind::Unavailable,
            StoreError::ReadOnly { .. } | StoreError::NotWritable { .. } => {
                ErrorKind::FailedPrecondition
            }
            StoreError::CorruptVectorFile { .. }
            | StoreError::TruncatedVectorFile { .. }
            | StoreError::MissingItem { .. }
            | StoreError::ItemsDisagree { .. }
            | StoreError::CatalogUnreadable { .. } => ErrorKind::DataLoss,
            StoreError::Catalog { .. } | StoreError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// True when the disk (or the user's quota) is full: the file system's or SQLite's word.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => crate::files::is_disk_full(source),
            StoreError::Catalog { source, .. } => matches!(
                source,
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull
            ),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }

    /// Like [`StoreError::io`], but a refusal to write (read-only media, no permission)
    /// becomes [`StoreError::NotWritable`] for the data directory `root`.
    pub(crate) fn io_or_not_writable(
        root: &Path,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let (root, path) = (root.to_owned(), path.to_owned());
        move |source| match source.raw_os_error() {
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => {
                StoreError::NotWritable { path: root, source }
            }
            _ => StoreError::Io { path, source },
        }
    }

    pub(crate) fn catalog(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Catalog { action, source }
    }
}
