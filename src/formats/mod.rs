//! Vector file formats read and written by the CLI and benchmarks: `.fvecs` / `.ivecs`
//! (the TEXMEX layout: per row a little-endian i32 dimension, then the values) and NumPy
//! `.npy` (2-D, C order, float32 / float16 / float64). Imports stream them in batches
//! ([`VectorStream`]); both formats are checked against their headers before any row is read.

mod npy;
mod vecs;

use std::path::{Path, PathBuf};

pub use npy::write_npy;
pub use vecs::{read_ivecs, write_fvecs, write_ivecs};

use crate::error_kind::ErrorKind;
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
    /// What kind of failure this is (the gRPC code and exit code follow from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            FormatError::Unsupported { .. } | FormatError::Malformed { .. } => {
                ErrorKind::InvalidArgument
            }
            FormatError::Io { source, .. } if crate::files::is_disk_full(source) => {
                ErrorKind::ResourceExhausted
            }
            FormatError::Io { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn malformed(path: &Path, reason: impl Into<String>) -> FormatError {
        FormatError::Malformed {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A vector file read in batches of rows, so an import never holds the whole file.
pub struct VectorStream {
    path: PathBuf,
    source: Source,
    rows: usize,
    dim: usize,
    read: usize,
}

enum Source {
    Vecs(vecs::VecsReader),
    Npy(npy::NpyValues),
}

impl VectorStream {
    /// Opens `.npy` or `.fvecs` by extension and checks its header.
    pub fn open(path: &Path) -> Result<VectorStream, FormatError> {
        let (source, rows, dim) = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => {
                let (rows, dim, values) = npy::open_npy(path)?;
                (Source::Npy(values), rows, dim)
            }
            Some("fvecs") => {
                let r = vecs::VecsReader::open(path)?;
                let (rows, dim) = (r.rows, r.dim);
                (Source::Vecs(r), rows, dim)
            }
            _ => {
                return Err(FormatError::Unsupported {
                    path: path.to_owned(),
                })
            }
        };
        Ok(VectorStream {
            path: path.to_owned(),
            source,
            rows,
            dim,
            read: 0,
        })
    }

    /// Rows in the file.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The next up to `max_rows` rows (None at the end).
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<Matrix>, FormatError> {
        let n = max_rows.max(1).min(self.rows - self.read);
        if n == 0 {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(n * self.dim);
        match &mut self.source {
            Source::Vecs(r) => {
                for _ in 0..n {
                    r.next_row(&self.path, f32::from_le_bytes, &mut data)?;
                }
            }
            Source::Npy(values) => {
                for _ in 0..n * self.dim {
                    match values.next() {
                        Some(Ok(v)) => data.push(v),
                        Some(Err(e)) => {
                            return Err(FormatError::malformed(
                                &self.path,
                                format!("data does not match the header ({e}): truncated?"),
                            ))
                        }
                        None => {
                            return Err(FormatError::malformed(
                                &self.path,
                                "data is shorter than the header says: truncated?",
                            ))
                        }
                    }
                }
            }
        }
        self.read += n;
        Ok(Some(Matrix::new(n, self.dim, data)))
    }
}

/// Reads a whole `.npy` or `.fvecs` file.
pub fn read_vectors(path: &Path) -> Result<Matrix, FormatError> {
    let mut stream = VectorStream::open(path)?;
    let (rows, dim) = (stream.rows(), stream.dim());
    Ok(stream
        .next_batch(rows)?
        .unwrap_or_else(|| Matrix::new(0, dim, Vec::new())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    fn write_typed<T: npyz::AutoSerialize + Copy>(path: &Path, rows: u64, dim: u64, v: &[T]) {
        let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[rows, dim])
            .writer(file)
            .begin_nd()
            .unwrap();
        w.extend(v.iter().copied()).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn npy_float64_and_float16_read_as_f32_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f64> = (0..21).map(|i| i as f64 * 0.5).collect();
        let p64 = dir.path().join("a.npy");
        write_typed(&p64, 7, 3, &values);
        let p16 = dir.path().join("h.npy");
        let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f64(v)).collect();
        write_typed(&p16, 7, 3, &halves);
        for p in [&p64, &p16] {
            let mut s = VectorStream::open(p).unwrap();
            assert_eq!((s.rows(), s.dim()), (7, 3));
            let mut got = Vec::new();
            let mut sizes = Vec::new();
            while let Some(b) = s.next_batch(3).unwrap() {
                sizes.push(b.rows);
                got.extend(b.data);
            }
            assert_eq!(sizes, vec![3, 3, 1]);
            assert_eq!(got, values.iter().map(|&v| v as f32).collect::<Vec<_>>());
        }
        let ints = dir.path().join("i.npy");
        write_typed(&ints, 2, 2, &[1i32, 2, 3, 4]);
        let e = VectorStream::open(&ints).err().unwrap();
        assert!(e.to_string().contains("astype(np.float32)"), "{e}");
    }

    /// A cut or padded `.npy` is refused when it is opened, before any row is handed out: an
    /// import never stores the part before the cut.
    #[test]
    fn npy_of_the_wrong_length_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        npy::write_npy(&p, &crate::synth::uniform(40, 6, 1)).unwrap();
        let whole = std::fs::read(&p).unwrap();
        for (name, bytes) in [
            ("cut", whole[..whole.len() - 4].to_vec()),
            ("padded", [whole.as_slice(), &[0u8; 4]].concat()),
        ] {
            let f = dir.path().join(format!("{name}.npy"));
            std::fs::write(&f, bytes).unwrap();
            let e = VectorStream::open(&f).err().unwrap();
            assert!(e.to_string().contains("truncated or padded"), "{name}: {e}");
        }
        assert_eq!(VectorStream::open(&p).unwrap().rows(), 40);
    }

    #[test]
    fn fvecs_round_trip_and_row_checks() {
        let dir = tempfile::tempdir().unwrap();
        let m = crate::synth::uniform(5, 4, 1);
        let p = dir.path().join("v.fvecs");
        write_fvecs(&p, &m).unwrap();
        assert_eq!(read_vectors(&p).unwrap(), m);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[20..24].copy_from_slice(&5i32.to_le_bytes()); // row 1 claims 5 dimensions
        std::fs::write(&p, &bytes).unwrap();
        let e = read_vectors(&p).unwrap_err();
        assert!(e.to_string().contains("row 1 declares dimension 5"), "{e}");
    }
}
