//! Exact answers for an f32 pool from a half-precision copy of it: the copy (half the device
//! memory and half the bytes a scan reads) proposes each query's best k' rows, the host
//! computes their distances from the f32 rows as the CPU exact path does (`l2_squared`, the
//! definition of exact in dcd), and a certificate shows that no row outside the k' can be
//! among the best k. A query whose certificate fails is asked again with a larger k'
//! (`certified_search.rs`).
//!
//! The certificate. Let x~ be a row as the copy holds it and q~ the query as the tensor-core
//! plans round it. Two facts bound what the copy's search saw from below:
//! - Direct form (the `fused` plan's distances, and every plan's refined ones): f32 sums of
//!   squares of f32 differences, so the computed value is within `gamma` (relative) of
//!   |q - x~|^2, in any summation order, as is the CPU's |q - x|^2.
//! - Expanded form (how the `gemm`, `wide` and `mma` plans select): |q~|^2 + |x~|^2 - 2 q~.x~
//!   with f32 sums of exact products (tensor cores may truncate, so twice f32's rounding
//!   unit is allowed), within `gamma_expanded * (|q~| + |x~|)^2` of |q~ - x~|^2.
//!
//! And the triangle inequality turns |q - x~| into |q - x|: |q - x| >= |q~ - x~| - |q - q~| -
//! |x - x~|, where |x - x~| is at most the copy's largest rounding error over its rows (kept
//! here) and |q - q~| is computed per query. Every row outside the candidates scored at least
//! the worst candidate (per segment, then in the host's merge), which gives a floor under the
//! CPU's distance of every such row; when the k-th best candidate is strictly below it, the
//! k best candidates are the CPU's exact answer, ties by row id included.

use super::host::{error_and_norm, round_to, rounding_of, Rounding};
use super::GpuDtype;
use crate::index::distance::{l2_squared, row_f32};
use crate::index::topk::TopK;
use crate::types::{Neighbor, VectorView};

/// f32's unit roundoff.
const F32_UNIT: f64 = 1.0 / (1u64 << 24) as f64;

/// How the copy's search picked its candidates, which decides the floor's error terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// By directly computed distances (the `fused` plan); the list's distances are those.
    Direct,
    /// By |q~|^2 + |x~|^2 - 2 q~.x~ (`gemm`, `wide`, `mma`); the list's distances are the
    /// candidates' refined (direct) ones.
    Expanded,
}

/// What is known about a half-precision copy of an f32 pool: its type, the largest distance
/// between a row and its copy, and the largest norm of a copied row.
#[derive(Clone, Debug, PartialEq)]
pub struct HalfBounds {
    dtype: GpuDtype,
    dim: usize,
    rows: usize,
    max_error: f64,
    max_norm: f64,
}

/// A row the half type cannot hold (a value beyond its largest finite one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "row {row} holds {value}, beyond the largest {dtype} value: its copy would be infinite and \
     no answer could be certified; keep the pool's GPU copy in f32 (dcd serve \
     --exact-device-copy stored)"
)]
pub struct OutOfRange {
    /// The row.
    pub row: usize,
    /// The value out of range.
    pub value: f32,
    /// The copy's type.
    pub dtype: &'static str,
}

impl HalfBounds {
    /// Bounds for a copy in `dtype` (f16 or bf16) of rows of `dim` values; no rows yet.
    pub fn new(dtype: GpuDtype, dim: usize) -> HalfBounds {
        assert!(dtype != GpuDtype::F32, "an f32 copy needs no certificate");
        HalfBounds {
            dtype,
            dim,
            rows: 0,
            max_error: 0.0,
            max_norm: 0.0,
        }
    }

    /// Bounds for a copy of all of `vectors`.
    pub fn of(dtype: GpuDtype, vectors: VectorView<'_>) -> Result<HalfBounds, OutOfRange> {
        let mut bounds = HalfBounds::new(dtype, vectors.dim());
        bounds.extend(vectors)?;
        Ok(bounds)
    }

    /// Rows covered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is covered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The copy's element type.
    pub fn dtype(&self) -> GpuDtype {
        self.dtype
    }

    /// Takes in rows `len()..vectors.len()` (the rows a pool gained), measured on all cores.
    /// On an error (the first row out of range) nothing is taken.
    pub fn extend(&mut self, vectors: VectorView<'_>) -> Result<(), OutOfRange> {
        let rounding = rounding_of(vectors, self.rows, vectors.len(), self.dtype);
        self.take(vectors.len(), rounding)
    }

    /// Takes in the rows that follow those covered, up to `rows` in all, from what rounding
    /// them did (as [`super::host::HostRows::convert_rounding`] measures it while making the
    /// copy). On a row out of range nothing is taken.
    pub fn take(&mut self, rows: usize, rounding: Rounding) -> Result<(), OutOfRange> {
        if let Some((row, value)) = rounding.out_of_range {
            return Err(OutOfRange {
                row,
                value,
                dtype: self.dtype.name(),
            });
        }
        self.max_error = self.max_error.max(rounding.max_error);
        self.max_norm = self.max_norm.max(rounding.max_norm);
        self.rows = rows.max(self.rows);
        Ok(())
    }

    /// `values` as the copy holds them, back in f32.
    fn round(&self, values: &[f32], out: &mut Vec<f32>) {
        out.resize(values.len(), 0.0);
        round_to(self.dtype, values, out);
    }

    /// Relative error of a direct f32 sum of `dim` squared differences (each term two
    /// roundings, then the sum's): gamma_{dim + 2}, doubled for margin.
    fn gamma(&self) -> f64 {
        let n = (self.dim + 2) as f64;
        2.0 * n * F32_UNIT / (1.0 - n * F32_UNIT)
    }

    /// Error of the expanded form relative to (|q~| + |x~|)^2: norms and the dot product as
    /// f32 sums (the dot's at twice the rounding unit, for tensor cores that truncate), then
    /// the two additions; doubled for margin.
    fn gamma_expanded(&self) -> f64 {
        let n = (self.dim + 4) as f64;
        let u = 2.0 * F32_UNIT;
        2.0 * n * u / (1.0 - n * u)
    }

    /// A floor under the CPU's distance from `query` to every row the copy's search left out,
    /// given the largest distance in the query's candidate list (`worst`) and how the
    /// candidates were picked. 0 when nothing can be said.
    pub fn floor(&self, query: &[f32], selection: Selection, worst: f32) -> f64 {
        let gamma = self.gamma();
        // |q - x~|^2 of any left-out row, from below.
        let seen = worst as f64 / (1.0 + gamma);
        let (reach, query_error) = match selection {
            Selection::Direct => (seen, 0.0),
            Selection::Expanded => {
                let mut q_copy = Vec::new();
                self.round(query, &mut q_copy);
                let (eq, nq) = error_and_norm(query, &q_copy);
                let slack = self.gamma_expanded() * (nq + self.max_norm).powi(2);
                // The worst candidate's expanded score, from below; every left-out row
                // scored at least that (in its segment, or was dropped by the host's merge
                // with a direct distance at least `worst`, which is the stronger fact).
                let scored = (seen.sqrt() - eq).max(0.0).powi(2) - slack;
                // |q~ - x~|^2 of a left-out row, from below, then |q - x~|.
                ((scored - slack).max(0.0), eq)
            }
        };
        let distance = (reach.sqrt() - query_error - self.max_error).max(0.0);
        distance * distance * (1.0 - gamma)
    }
}

/// The exact best `k` of `candidates` (rows of `originals`, any order), scored from the f32
/// rows as the CPU exact path scores them, best first with ties by row id; `None` unless the
/// list is `complete` (it holds every row the search could return) or the k-th distance is
/// strictly below `floor`.
pub fn certify(
    originals: &VectorView<'_>,
    query: &[f32],
    candidates: &[Neighbor],
    k: usize,
    complete: bool,
    floor: f64,
) -> Option<Vec<Neighbor>> {
    let mut best = TopK::new(k);
    let mut scratch = Vec::new();
    for c in candidates {
        let x = row_f32(originals, c.id as usize, &mut scratch);
        best.push(l2_squared(query, x), c.id);
    }
    let best = best.into_neighbors();
    let kth = best.last().map_or(f32::INFINITY, |n| n.distance);
    let certified = complete || (best.len() == k && (kth as f64) < floor);
    certified.then_some(best)
}

#[cfg(test)]
#[path = "certified_tests.rs"]
mod tests;
