//! NumPy `.npy`: 2-D arrays of float32, float16 or float64 in C order (npyz does the parsing),
//! read as a stream of f32 values.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use npyz::WriterBuilder;

use super::FormatError;
use crate::types::Matrix;

/// The values of an `.npy` file, converted to f32 as they are read.
pub(super) type NpyValues = Box<dyn Iterator<Item = std::io::Result<f32>> + Send>;

/// Opens a 2-D `.npy` array; returns (rows, dim, values in row-major order).
pub(super) fn open_npy(path: &Path) -> Result<(usize, usize, NpyValues), FormatError> {
    let file = File::open(path).map_err(|source| FormatError::Io {
        path: path.to_owned(),
        source,
    })?;
    let npy = npyz::NpyFile::new(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| FormatError::malformed(path, format!("not a readable .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 {
        return Err(FormatError::malformed(
            path,
            format!("array has shape {shape:?}; expected 2-D (rows, dim)"),
        ));
    }
    if npy.order() != npyz::Order::C {
        return Err(FormatError::malformed(
            path,
            "array is in Fortran order; save it with np.ascontiguousarray(x)",
        ));
    }
    let (rows, dim) = (shape[0] as usize, shape[1] as usize);
    let dtype = npy.dtype().descr();
    check_length(path, rows * dim, &dtype)?;
    let values: NpyValues = match npy.try_data::<f32>() {
        Ok(r) => Box::new(r),
        Err(npy) => match npy.try_data::<half::f16>() {
            Ok(r) => Box::new(r.map(|v| v.map(f32::from))),
            Err(npy) => match npy.try_data::<f64>() {
                Ok(r) => Box::new(r.map(|v| v.map(|x| x as f32))),
                Err(_) => {
                    return Err(FormatError::malformed(
                        path,
                        format!(
                            "dtype {dtype} is not supported; convert with x.astype(np.float32)"
                        ),
                    ))
                }
            },
        },
    };
    Ok((rows, dim, values))
}

/// Refuses a file whose data part is not exactly `values` elements long, before anything is
/// read, so a truncated file is not half imported.
fn check_length(path: &Path, values: usize, dtype: &str) -> Result<(), FormatError> {
    use std::io::Read;
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    // npyz spells a plain dtype as Python does, quoted: 'f4' as '<f4'.
    let item = match dtype
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '|', '='])
    {
        "f2" => 2,
        "f4" => 4,
        "f8" => 8,
        _ => return Ok(()), // refused later with the dtype named
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len() as usize;
    let mut pre = [0u8; 12];
    file.read_exact(&mut pre).map_err(io)?;
    // Magic (6) + version (2) + header length: u16 in format 1, u32 in formats 2 and 3.
    let header = match pre[6] {
        1 => 10 + u16::from_le_bytes([pre[8], pre[9]]) as usize,
        _ => 12 + u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize,
    };
    let want = header + values * item;
    if len != want {
        return Err(FormatError::malformed(
            path,
            format!("file is {len} bytes but its header describes {want}: truncated or padded?"),
        ));
    }
    Ok(())
}

/// Writes a matrix as a float32 `.npy` file.
pub fn write_npy(path: &Path, m: &Matrix) -> Result<(), FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::io::BufWriter::new(File::create(path).map_err(io)?);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[m.rows as u64, m.dim as u64])
        .writer(file)
        .begin_nd()
        .map_err(io)?;
    w.extend(m.data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)
}
