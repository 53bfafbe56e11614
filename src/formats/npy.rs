//! NumPy `.npy`: 2-D arrays of float32, float16 or float64 in C order (npyz does the parsing).

use std::io::BufReader;
use std::path::Path;

use npyz::WriterBuilder;

use super::FormatError;
use crate::types::Matrix;

/// Reads a 2-D `.npy` array as f32 (float16 and float64 are converted).
pub fn read_npy(path: &Path) -> Result<Matrix, FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
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
    let truncated = |e: std::io::Error| {
        FormatError::malformed(
            path,
            format!("data does not match the header ({e}): truncated?"),
        )
    };
    let data: Vec<f32> = match npy.try_data::<f32>() {
        Ok(r) => r.collect::<Result<_, _>>().map_err(truncated)?,
        Err(npy) => match npy.try_data::<half::f16>() {
            Ok(r) => r
                .map(|v| v.map(f32::from))
                .collect::<Result<_, _>>()
                .map_err(truncated)?,
            Err(npy) => match npy.try_data::<f64>() {
                Ok(r) => r
                    .map(|v| v.map(|x| x as f32))
                    .collect::<Result<_, _>>()
                    .map_err(truncated)?,
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
    if data.len() != rows * dim {
        return Err(FormatError::malformed(
            path,
            "data is shorter than the header says",
        ));
    }
    Ok(Matrix::new(rows, dim, data))
}

/// Writes a matrix as a float32 `.npy` file.
pub fn write_npy(path: &Path, m: &Matrix) -> Result<(), FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[m.rows as u64, m.dim as u64])
        .writer(file)
        .begin_nd()
        .map_err(io)?;
    w.extend(m.data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)
}
