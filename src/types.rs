//! Plain value types shared by every layer: element types, dense matrices, neighbours.
//!
//! A leaf module: it depends on nothing else in the crate.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Row id of a vector inside one pool: rows are numbered densely from 0 in append order.
pub type RowId = u32;

/// How vector elements are stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary16; half the disk and memory, computed in f32.
    F16,
}

impl Dtype {
    /// Bytes taken by one element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    /// Stable numeric code used in file headers.
    pub fn code(self) -> u32 {
        match self {
            Dtype::F32 => 1,
            Dtype::F16 => 2,
        }
    }

    /// Inverse of [`Dtype::code`].
    pub fn from_code(code: u32) -> Option<Dtype> {
        match code {
            1 => Some(Dtype::F32),
            2 => Some(Dtype::F16),
            _ => None,
        }
    }

    /// Lower-case name as used on the command line and in the catalog.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Dtype::F32),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            other => Err(format!("unknown dtype {other:?}: use f32 or f16")),
        }
    }
}

/// Distance used to compare vectors. Only squared Euclidean today, which is what the
/// data-centric debugging method uses; the enum keeps the catalog column honest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared ℓ2 distance, Σ (x_i − y_i)².
    L2,
}

impl Metric {
    /// Name as stored in the catalog.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
        }
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            other => Err(format!("unknown metric {other:?}: only l2 is supported")),
        }
    }
}

/// A dense row-major matrix of f32, the in-memory form of a batch of vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns (the vector dimension).
    pub dim: usize,
    /// `rows * dim` values, row after row.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Wraps `data` as `rows x dim`; panics if the length disagrees (a programming error).
    pub fn new(rows: usize, dim: usize, data: Vec<f32>) -> Matrix {
        assert_eq!(rows * dim, data.len(), "matrix data length");
        Matrix { rows, dim, data }
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Iterates over rows.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// The first non-finite value as (row, column), if any.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        let pos = self.data.iter().position(|v| !v.is_finite())?;
        Some((pos / self.dim, pos % self.dim))
    }

    /// The first row whose squared norm exceeds [`MAX_SQUARED_NORM`], with that norm.
    pub fn first_too_large(&self) -> Option<(usize, f64)> {
        self.iter_rows().enumerate().find_map(|(i, row)| {
            let n = squared_norm(row);
            (n > MAX_SQUARED_NORM).then_some((i, n))
        })
    }
}

/// Largest squared norm a stored vector or query may have: the squared distance of two such
/// vectors is at most 4x this, which still fits in f32. Beyond it distances overflow to inf
/// and every ranking is meaningless.
pub const MAX_SQUARED_NORM: f64 = f32::MAX as f64 / 4.0;

/// Squared ℓ2 norm, summed in f64 (no overflow for any finite f32 input).
pub fn squared_norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum()
}

/// One search hit: a pool row and its squared ℓ2 distance to the query.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Neighbor {
    /// Row id in the pool.
    pub id: RowId,
    /// Squared ℓ2 distance.
    pub distance: f32,
}

impl Neighbor {
    /// Total order used everywhere results are ranked: distance, then id.
    pub fn rank_cmp(&self, other: &Neighbor) -> std::cmp::Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// Borrowed rows of a pool, in their stored element type.
#[derive(Clone, Copy, Debug)]
pub enum VectorView<'a> {
    /// f32 rows, `len = count * dim`.
    F32 {
        /// Row-major values.
        data: &'a [f32],
        /// Dimension.
        dim: usize,
    },
    /// f16 rows, `len = count * dim`.
    F16 {
        /// Row-major values.
        data: &'a [half::f16],
        /// Dimension.
        dim: usize,
    },
}

impl<'a> VectorView<'a> {
    /// A view over f32 rows.
    pub fn f32(data: &'a [f32], dim: usize) -> VectorView<'a> {
        VectorView::F32 { data, dim }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match *self {
            VectorView::F32 { dim, .. } | VectorView::F16 { dim, .. } => dim,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match *self {
            VectorView::F32 { data, dim } => data.len() / dim.max(1),
            VectorView::F16 { data, dim } => data.len() / dim.max(1),
        }
    }

    /// True when the view holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            VectorView::F32 { .. } => Dtype::F32,
            VectorView::F16 { .. } => Dtype::F16,
        }
    }

    /// The first `rows` rows only.
    pub fn prefix(&self, rows: usize) -> VectorView<'a> {
        match *self {
            VectorView::F32 { data, dim } => VectorView::F32 {
                data: &data[..rows * dim],
                dim,
            },
            VectorView::F16 { data, dim } => VectorView::F16 {
                data: &data[..rows * dim],
                dim,
            },
        }
    }

    /// Copies rows `start..end` into `out` as f32 (`out.len() == (end-start) * dim`).
    pub fn copy_rows_f32(&self, start: usize, end: usize, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match *self {
            VectorView::F32 { data, dim } => out.copy_from_slice(&data[start * dim..end * dim]),
            VectorView::F16 { data, dim } => data[start * dim..end * dim].convert_to_f32_slice(out),
        }
    }

    /// Row `i` as owned f32 values.
    pub fn row_f32(&self, i: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.dim()];
        self.copy_rows_f32(i, i + 1, &mut out);
        out
    }
}

/// `text` cut to at most `max` bytes (at a character boundary) with a note of what was cut:
/// user-given names are echoed in error messages, and a 1 MiB name must not become a 1 MiB
/// `grpc-message` header.
pub fn clip_for_message(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
