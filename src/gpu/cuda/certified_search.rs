//! Exact search of an f32 pool through its half-precision copy ([`super::certified`]): the
//! copy proposes k' candidates per query with the plan [`GpuExact::plan_for`] picks, the host
//! scores them from the f32 rows, and the queries whose certificate fails are asked again
//! with four times the candidates; past the largest k' the copy offers, the CPU scans the f32
//! rows for them.

use rayon::prelude::*;

use super::certified::{certify, HalfBounds, Selection};
use super::{GpuError, GpuExact, GpuPlan};
use crate::index::exact::scan_one;
use crate::index::{validate_queries, RowFilter};
use crate::types::{Matrix, Neighbor, VectorView};

/// How a certified search went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Certification {
    /// Candidates per query of the first pass.
    pub first_candidates: usize,
    /// The plan of the first pass.
    pub plan: Option<GpuPlan>,
    /// Queries certified by the first pass.
    pub first_pass: usize,
    /// Queries certified by a later, wider pass.
    pub later_passes: usize,
    /// Queries the CPU answered from the f32 rows.
    pub on_cpu: usize,
}

/// Candidates per query of the first pass: twice k, and at least 32 more.
fn first_width(k: usize) -> usize {
    (2 * k).max(k + 32)
}

impl GpuExact {
    /// The `k` nearest rows of `originals` (the f32 rows this half-precision copy was made
    /// from; `bounds` made from them too) to each query, exactly as the CPU exact path finds
    /// them; only rows `filter` allows when given.
    pub fn search_certified(
        &self,
        queries: &Matrix,
        k: usize,
        filter: Option<&RowFilter>,
        originals: VectorView<'_>,
        bounds: &HalfBounds,
    ) -> Result<(Vec<Vec<Neighbor>>, Certification), GpuError> {
        validate_queries(self.dim, queries, k)?;
        if bounds.dtype() != self.dtype || originals.len() != self.len || bounds.len() != self.len {
            return Err(GpuError::Contract {
                what: format!(
                    "a certified search needs the f32 rows of this {} copy and their bounds: {} \
                 rows given and {} bounded for a copy of {}",
                    self.dtype.name(),
                    originals.len(),
                    bounds.len(),
                    self.len
                ),
            });
        }
        if originals.dim() != self.dim {
            return Err(GpuError::Contract {
                what: format!(
                    "a certified search needs the f32 rows of this {}-d copy: they are {}-d",
                    self.dim,
                    originals.dim()
                ),
            });
        }
        let cap = self.max_k().min(self.len);
        let mut answers: Vec<Option<Vec<Neighbor>>> = vec![None; queries.rows];
        let mut pending: Vec<usize> = (0..queries.rows).collect();
        let mut report = Certification::default();
        let mut width = first_width(k).min(cap);
        report.first_candidates = width;
        let mut first = true;
        while !pending.is_empty() {
            let mut data = Vec::with_capacity(pending.len() * self.dim);
            for &q in &pending {
                data.extend_from_slice(queries.row(q));
            }
            let batch = Matrix::new(pending.len(), self.dim, data);
            let (lists, plan) = self.search_with(&batch, width, filter, None)?;
            report.plan.get_or_insert(plan);
            let selection = match plan {
                GpuPlan::Fused => Selection::Direct,
                GpuPlan::Gemm | GpuPlan::Wide | GpuPlan::Mma => Selection::Expanded,
            };
            let settled: Vec<Option<Vec<Neighbor>>> = lists
                .par_iter()
                .zip(pending.par_iter())
                .map(|(list, &q)| {
                    let query = queries.row(q);
                    let worst = list.last().map_or(0.0, |n| n.distance);
                    let floor = bounds.floor(query, selection, worst);
                    // Fewer than asked for, or every row: nothing was left out.
                    let complete = list.len() < width || width >= self.len;
                    certify(&originals, query, list, k, complete, floor)
                })
                .collect();
            let mut still = Vec::new();
            for (answer, q) in settled.into_iter().zip(pending) {
                match answer {
                    Some(a) => {
                        answers[q] = Some(a);
                        if first {
                            report.first_pass += 1;
                        } else {
                            report.later_passes += 1;
                        }
                    }
                    None => still.push(q),
                }
            }
            pending = still;
            first = false;
            if width == cap && !pending.is_empty() {
                for &q in &pending {
                    answers[q] = Some(scan_one(originals, queries.row(q), k, filter));
                }
                report.on_cpu = pending.len();
                pending.clear();
            }
            width = (width * 4).min(cap);
        }
        let answers = answers
            .into_iter()
            .map(|a| a.expect("every query answered"))
            .collect();
        Ok((answers, report))
    }
}
