//! `.fvecs` and `.ivecs`: rows of `[dim: i32 LE][dim values LE]`.

use std::io::Write;
use std::path::Path;

use super::FormatError;
use crate::types::Matrix;

/// Reads every row of an fvecs/ivecs file as raw 4-byte values, streaming so that peak memory
/// is the values alone (not the file plus the values).
fn read_rows<T>(
    path: &Path,
    decode: fn([u8; 4]) -> T,
) -> Result<(usize, usize, Vec<T>), FormatError> {
    use std::io::Read;
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len() as usize;
    if len == 0 {
        return Ok((0, 0, Vec::new()));
    }
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 4];
    r.read_exact(&mut head)
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
            format!("{len} bytes is not a whole number of {dim}-d rows ({row_bytes} bytes each): truncated?"),
        ));
    }
    let rows = len / row_bytes;
    let mut out: Vec<T> = Vec::with_capacity(rows * dim);
    let mut row = vec![0u8; row_bytes];
    for r_i in 0..rows {
        if r_i == 0 {
            row[..4].copy_from_slice(&head);
            r.read_exact(&mut row[4..]).map_err(io)?;
        } else {
            r.read_exact(&mut row).map_err(io)?;
        }
        let d = i32::from_le_bytes(row[0..4].try_into().expect("4 bytes"));
        if d as usize != dim {
            return Err(FormatError::malformed(
                path,
                format!("row {r_i} declares dimension {d}, the first row {dim}"),
            ));
        }
        out.extend(
            row[4..]
                .chunks_exact(4)
                .map(|c| decode(c.try_into().expect("4 bytes"))),
        );
    }
    Ok((rows, dim, out))
}

/// Reads an `.fvecs` file.
pub fn read_fvecs(path: &Path) -> Result<Matrix, FormatError> {
    let (rows, dim, values) = read_rows(path, f32::from_le_bytes)?;
    Ok(Matrix::new(rows, dim, values))
}

/// Reads an `.ivecs` file as rows of i32.
pub fn read_ivecs(path: &Path) -> Result<(usize, usize, Vec<i32>), FormatError> {
    read_rows(path, i32::from_le_bytes)
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
