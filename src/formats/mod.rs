//! Vector file formats read and written by the CLI and benchmarks: `.fvecs` / `.ivecs`
//! (the TEXMEX layout: per row a little-endian i32 dimension, then the values) and NumPy
//! `.npy` (2-D, C order, float32 / float16 / float64).

mod npy;
mod vecs;

use std::path::{Path, PathBuf};

pub use npy::{read_npy, write_npy};
pub use vecs::{read_fvecs, read_ivecs, write_fvecs, write_ivecs};

use crate::types::Matrix;

/// A vector file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Extension we do not read.
    #[error(
        "{path}: unsupported vector file type; use .npy (2-D float32/float16/float64) or .fvecs"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
    /// Content that does not follow the format.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// File system error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

impl FormatError {
    pub(crate) fn malformed(path: &Path, reason: impl Into<String>) -> FormatError {
        FormatError::Malformed {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads `.npy` or `.fvecs` by extension.
pub fn read_vectors(path: &Path) -> Result<Matrix, FormatError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => read_npy(path),
        Some("fvecs") => read_fvecs(path),
        _ => Err(FormatError::Unsupported {
            path: path.to_owned(),
        }),
    }
}

/// Reads a text file with one entry per line (keys or labels), trailing newline optional.
pub fn read_lines(path: &Path) -> Result<Vec<String>, FormatError> {
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}
