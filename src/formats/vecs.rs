//! `.fvecs` and `.ivecs`: rows of `[dim: i32 LE][dim values LE]`.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use super::FormatError;
use crate::types::Matrix;

/// A row-at-a-time reader of an fvecs/ivecs file whose size was checked against its dimension.
pub(super) struct VecsReader {
    reader: BufReader<File>,
    row: Vec<u8>,
    first: Option<[u8; 4]>,
    pub(super) dim: usize,
    pub(super) rows: usize,
    next: usize,
}

impl VecsReader {
    pub(super) fn open(path: &Path) -> Result<VecsReader, FormatError> {
        let io = |source| FormatError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        if len == 0 {
            return Ok(VecsReader {
                reader,
                row: Vec::new(),
                first: None,
                dim: 0,
                rows: 0,
                next: 0,
            });
        }
        let mut head = [0u8; 4];
        reader
            .read_exact(&mut head)
            .map_err(|_| FormatError::malformed(path, "shorter than one row header"))?;
        let dim = i32::from_le_bytes(head);
        if dim <= 0 || dim > 1 << 20 {
            return Err(FormatError::malformed(
                path,
                format!("first row declares dimension {dim}; not an fvecs/ivecs file?"),
            ));
        }
        let dim = dim as usize;
        let row_bytes = 4 * (dim + 1);
        if !len.is_multiple_of(row_bytes) {
            return Err(FormatError::malformed(
                path,
                format!(
                    "{len} bytes is not a whole number of {dim}-d rows ({row_bytes} bytes each): truncated?"
                ),
            ));
        }
        Ok(VecsReader {
            reader,
            row: vec![0u8; row_bytes],
            first: Some(head),
            dim,
            rows: len / row_bytes,
            next: 0,
        })
    }

    /// Decodes the next row's values into `out`; false at the end.
    pub(super) fn next_row<T>(
        &mut self,
        path: &Path,
        decode: fn([u8; 4]) -> T,
        out: &mut Vec<T>,
    ) -> Result<bool, FormatError> {
        if self.next == self.rows {
            return Ok(false);
        }
        let io = |source| FormatError::Io {
            path: path.to_owned(),
            source,
        };
        match self.first.take() {
            Some(head) => {
                self.row[..4].copy_from_slice(&head);
                self.reader.read_exact(&mut self.row[4..]).map_err(io)?;
            }
            None => self.reader.read_exact(&mut self.row).map_err(io)?,
        }
        let d = i32::from_le_bytes(self.row[0..4].try_into().expect("4 bytes"));
        if d as usize != self.dim {
            return Err(FormatError::malformed(
                path,
                format!(
                    "row {} declares dimension {d}, the first row {}",
                    self.next, self.dim
                ),
            ));
        }
        out.extend(
            self.row[4..]
                .chunks_exact(4)
                .map(|c| decode(c.try_into().expect("4 bytes"))),
        );
        self.next += 1;
        Ok(true)
    }
}

/// Reads an `.ivecs` file as rows of i32.
pub fn read_ivecs(path: &Path) -> Result<(usize, usize, Vec<i32>), FormatError> {
    let mut r = VecsReader::open(path)?;
    let mut out = Vec::with_capacity(r.rows * r.dim);
    while r.next_row(path, i32::from_le_bytes, &mut out)? {}
    Ok((r.rows, r.dim, out))
}

fn write_rows<T: Copy>(
    path: &Path,
    dim: usize,
    values: &[T],
    enc: impl Fn(T) -> [u8; 4],
) -> Result<(), FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    let mut w = std::io::BufWriter::new(File::create(path).map_err(io)?);
    for row in values.chunks_exact(dim.max(1)) {
        w.write_all(&(dim as i32).to_le_bytes()).map_err(io)?;
        for &v in row {
            w.write_all(&enc(v)).map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

/// Writes a matrix as `.fvecs`.
pub fn write_fvecs(path: &Path, m: &Matrix) -> Result<(), FormatError> {
    write_rows(path, m.dim, &m.data, f32::to_le_bytes)
}

/// Writes rows of i32 as `.ivecs`.
pub fn write_ivecs(path: &Path, dim: usize, values: &[i32]) -> Result<(), FormatError> {
    write_rows(path, dim, values, i32::to_le_bytes)
}
