//! `.fvecs` and `.ivecs`: rows of `[dim: i32 LE][dim values LE]`.

use std::io::Write;
use std::path::Path;

use super::FormatError;
use crate::types::Matrix;

fn read_rows(path: &Path) -> Result<(usize, usize, Vec<[u8; 4]>), FormatError> {
    let bytes = std::fs::read(path).map_err(|source| FormatError::Io {
        path: path.to_owned(),
        source,
    })?;
    if bytes.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    if bytes.len() < 4 {
        return Err(FormatError::malformed(path, "shorter than one row header"));
    }
    let dim = i32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if dim <= 0 || dim > 1 << 20 {
        return Err(FormatError::malformed(
            path,
            format!("first row declares dimension {dim}; not an fvecs/ivecs file?"),
        ));
    }
    let dim = dim as usize;
    let row_bytes = 4 * (dim + 1);
    if bytes.len() % row_bytes != 0 {
        return Err(FormatError::malformed(
            path,
            format!(
                "{} bytes is not a whole number of {dim}-d rows ({row_bytes} bytes each): truncated?",
                bytes.len()
            ),
        ));
    }
    let rows = bytes.len() / row_bytes;
    let mut out = Vec::with_capacity(rows * dim);
    for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let d = i32::from_le_bytes(row[0..4].try_into().expect("4 bytes"));
        if d as usize != dim {
            return Err(FormatError::malformed(
                path,
                format!("row {r} declares dimension {d}, the first row {dim}"),
            ));
        }
        out.extend(
            row[4..]
                .chunks_exact(4)
                .map(|c| <[u8; 4]>::try_from(c).expect("4 bytes")),
        );
    }
    Ok((rows, dim, out))
}

/// Reads an `.fvecs` file.
pub fn read_fvecs(path: &Path) -> Result<Matrix, FormatError> {
    let (rows, dim, raw) = read_rows(path)?;
    Ok(Matrix::new(
        rows,
        dim,
        raw.into_iter().map(f32::from_le_bytes).collect(),
    ))
}

/// Reads an `.ivecs` file as rows of i32.
pub fn read_ivecs(path: &Path) -> Result<(usize, usize, Vec<i32>), FormatError> {
    let (rows, dim, raw) = read_rows(path)?;
    Ok((rows, dim, raw.into_iter().map(i32::from_le_bytes).collect()))
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
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
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
