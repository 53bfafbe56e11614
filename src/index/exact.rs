//! Exact k-NN by brute force: the recall oracle, the `exact` search path and the re-ranker.
//!
//! One query: a SIMD scan of squared distances, rayon across chunks of rows.
//! Many queries: ‖q‖² + ‖p‖² − 2⟨q,p⟩ with pool norms precomputed and the cross term as a
//! tiled GEMM (the `gemm` crate), rayon across (query block, pool range) tasks, memory bounded
//! by the tile. GEMM rounding differs from the direct formula, so each query keeps 2k
//! candidates, re-ranks them with the exact distance, and checks a forward error bound: if a
//! row outside the candidates could still beat the k-th, that query is rescanned exactly.
//! Results therefore equal a direct scan, ties broken by row id.

use std::path::Path;

use rayon::prelude::*;

use super::distance::{distance_to_row, l2_squared, norm_squared, row_norm};
use super::topk::TopK;
use super::{
    check_extend, validate_queries, validate_query, AnnIndex, IndexError, RowFilter, SearchParams,
};
use crate::types::{Matrix, Neighbor, RowId, VectorView};

/// Rows per rayon task in the single-query scan.
const SCAN_CHUNK: usize = 16_384;
/// Queries per GEMM block.
const QUERY_BLOCK: usize = 256;
/// Pool rows per GEMM tile: QUERY_BLOCK x POOL_TILE f32 = 1 MiB of distances per task.
const POOL_TILE: usize = 1024;
/// Batches up to this many queries are scanned directly instead of through GEMM.
const DIRECT_MAX_QUERIES: usize = 4;

/// Brute-force index: only the pool norms, which the batched path needs.
#[derive(Clone, Debug)]
pub struct ExactIndex {
    dim: usize,
    norms: Vec<f32>,
    max_norm: f32,
}

impl ExactIndex {
    /// An empty index for `dim`-d vectors.
    pub fn new(dim: usize) -> ExactIndex {
        ExactIndex {
            dim,
            norms: Vec::new(),
            max_norm: 0.0,
        }
    }

    /// Builds over every row of `vectors`.
    pub fn build(vectors: VectorView<'_>) -> ExactIndex {
        let mut idx = ExactIndex::new(vectors.dim());
        idx.extend_norms(vectors);
        idx
    }

    fn extend_norms(&mut self, vectors: VectorView<'_>) {
        let start = self.norms.len();
        let n = vectors.len();
        if n <= start {
            return;
        }
        let new: Vec<f32> = (start..n)
            .into_par_iter()
            .with_min_len(4096)
            .map_init(Vec::new, |scratch, i| row_norm(&vectors, i, scratch))
            .collect();
        self.max_norm = new.iter().fold(self.max_norm, |m, &v| m.max(v));
        self.norms.extend(new);
    }
}

impl AnnIndex for ExactIndex {
    fn engine(&self) -> &'static str {
        "exact"
    }

    fn len(&self) -> usize {
        self.norms.len()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn extend(&mut self, vectors: VectorView<'_>) -> Result<(), IndexError> {
        check_extend(self.len(), self.dim, &vectors)?;
        self.extend_norms(vectors);
        Ok(())
    }

    fn search(
        &self,
        vectors: VectorView<'_>,
        query: &[f32],
        params: &SearchParams<'_>,
    ) -> Result<Vec<Neighbor>, IndexError> {
        validate_query(self.dim, query, params.k, 0)?;
        if self.is_empty() {
            return Err(IndexError::EmptyPool);
        }
        Ok(scan_one(
            vectors.prefix(self.len()),
            query,
            params.k,
            params.filter,
        ))
    }

    fn search_batch(
        &self,
        vectors: VectorView<'_>,
        queries: &Matrix,
        params: &SearchParams<'_>,
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        validate_queries(self.dim, queries, params.k)?;
        if self.is_empty() {
            return Err(IndexError::EmptyPool);
        }
        let vectors = vectors.prefix(self.len());
        if queries.rows <= DIRECT_MAX_QUERIES {
            return Ok(queries
                .iter_rows()
                .map(|q| scan_one(vectors, q, params.k, params.filter))
                .collect());
        }
        Ok(gemm_search(
            vectors,
            &self.norms,
            self.max_norm,
            queries,
            params.k,
            params.filter,
        ))
    }

    /// Nothing to write: the norms are derived from the vectors on open.
    fn save(&self, _path: &Path) -> Result<(), IndexError> {
        Ok(())
    }
}

/// Exact k-NN of one query by a direct scan, rayon across chunks of rows.
pub fn scan_one(
    vectors: VectorView<'_>,
    query: &[f32],
    k: usize,
    filter: Option<&RowFilter>,
) -> Vec<Neighbor> {
    let n = vectors.len();
    if let Some(f) = filter {
        // A sparse filter is cheaper to walk than the whole pool.
        if f.count() * 8 < n {
            let rows: Vec<RowId> = f.rows().collect();
            let best = rows
                .par_chunks(SCAN_CHUNK / 4)
                .map(|chunk| {
                    let mut top = TopK::new(k);
                    let mut scratch = Vec::new();
                    for &r in chunk {
                        top.push(
                            distance_to_row(&vectors, query, r as usize, &mut scratch),
                            r,
                        );
                    }
                    top
                })
                .reduce(|| TopK::new(k), merged);
            return best.into_neighbors();
        }
    }
    let chunks = n.div_ceil(SCAN_CHUNK);
    (0..chunks)
        .into_par_iter()
        .map(|c| {
            let start = c * SCAN_CHUNK;
            let end = (start + SCAN_CHUNK).min(n);
            scan_range(vectors, query, start, end, k, filter)
        })
        .reduce(|| TopK::new(k), merged)
        .into_neighbors()
}

/// Merges into each of `lists` (one per query, from an index covering rows `..from`) the
/// exact nearest of the rows from `from` on, so that a search covers every row while its
/// index catches up with the store; each list ends sorted and cut to `k`.
pub fn merge_tail(
    vectors: VectorView<'_>,
    from: usize,
    queries: &Matrix,
    params: &SearchParams<'_>,
    lists: &mut [Vec<Neighbor>],
) -> Result<(), IndexError> {
    validate_queries(vectors.dim(), queries, params.k)?;
    let n = vectors.len();
    if from >= n {
        return Ok(());
    }
    for (list, query) in lists.iter_mut().zip(queries.iter_rows()) {
        let chunks = (n - from).div_ceil(SCAN_CHUNK);
        let tail = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let start = from + c * SCAN_CHUNK;
                let end = (start + SCAN_CHUNK).min(n);
                scan_range(vectors, query, start, end, params.k, params.filter)
            })
            .reduce(|| TopK::new(params.k), merged)
            .into_neighbors();
        list.extend(tail);
        list.sort_by(|a, b| a.rank_cmp(b));
        list.truncate(params.k);
    }
    Ok(())
}

fn merged(mut a: TopK, b: TopK) -> TopK {
    a.merge(b);
    a
}

fn scan_range(
    vectors: VectorView<'_>,
    query: &[f32],
    start: usize,
    end: usize,
    k: usize,
    filter: Option<&RowFilter>,
) -> TopK {
    let mut top = TopK::new(k);
    let dim = vectors.dim();
    let allowed = |i: usize| filter.is_none_or(|f| f.allows(i as RowId));
    match vectors {
        VectorView::F32 { data, .. } => {
            for i in start..end {
                if allowed(i) {
                    top.push(l2_squared(query, &data[i * dim..(i + 1) * dim]), i as RowId);
                }
            }
        }
        VectorView::F16 { .. } => {
            const BLOCK: usize = 64;
            let mut buf = vec![0.0f32; BLOCK * dim];
            let mut s = start;
            while s < end {
                let e = (s + BLOCK).min(end);
                let rows = &mut buf[..(e - s) * dim];
                vectors.copy_rows_f32(s, e, rows);
                for (j, row) in rows.chunks_exact(dim).enumerate() {
                    if allowed(s + j) {
                        top.push(l2_squared(query, row), (s + j) as RowId);
                    }
                }
                s = e;
            }
        }
    }
    top
}

/// Bound on |fl(‖q‖² + ‖p‖² − 2⟨q,p⟩) − fl(Σ(q−p)²)| for any summation order: both are within
/// γ(d+2)·2(‖q‖² + ‖p‖²) of the true value (Higham, Accuracy and Stability, §3.1), plus 50%.
fn rounding_bound(dim: usize, q_norm: f32, max_p_norm: f32) -> f32 {
    let u = f32::EPSILON as f64 / 2.0;
    let nu = (dim as f64 + 2.0) * u;
    let gamma = nu / (1.0 - nu);
    (6.0 * gamma * (q_norm as f64 + max_p_norm as f64)) as f32
}

/// Batched exact k-NN through GEMM; see the module header for the exactness argument.
pub fn gemm_search(
    vectors: VectorView<'_>,
    norms: &[f32],
    max_norm: f32,
    queries: &Matrix,
    k: usize,
    filter: Option<&RowFilter>,
) -> Vec<Vec<Neighbor>> {
    let n = vectors.len();
    let dim = vectors.dim();
    let cand = (2 * k).max(k + 16);
    let blocks = queries.rows.div_ceil(QUERY_BLOCK);
    let tiles = n.div_ceil(POOL_TILE).max(1);
    // Enough tasks to keep every thread busy even with one query block.
    let parts = (rayon::current_num_threads() * 2)
        .div_ceil(blocks)
        .clamp(1, tiles);
    let tiles_per_part = tiles.div_ceil(parts);

    let partial: Vec<(usize, Vec<TopK>)> = (0..blocks * parts)
        .into_par_iter()
        .map(|task| {
            let (b, part) = (task / parts, task % parts);
            let q0 = b * QUERY_BLOCK;
            let q1 = (q0 + QUERY_BLOCK).min(queries.rows);
            let r0 = (part * tiles_per_part * POOL_TILE).min(n);
            let r1 = ((part + 1) * tiles_per_part * POOL_TILE).min(n);
            let tops = gemm_block(
                vectors,
                norms,
                &queries.data[q0 * dim..q1 * dim],
                q1 - q0,
                r0..r1,
                cand,
                filter,
            );
            (b, tops)
        })
        .collect();

    let mut per_query: Vec<TopK> = (0..queries.rows).map(|_| TopK::new(cand)).collect();
    for (b, tops) in partial {
        for (i, t) in tops.into_iter().enumerate() {
            per_query[b * QUERY_BLOCK + i].merge(t);
        }
    }

    per_query
        .into_par_iter()
        .enumerate()
        .map(|(qi, top)| {
            let q = queries.row(qi);
            let q_norm = norm_squared(q);
            let full = top.is_full();
            let worst = top.threshold() + q_norm;
            let mut scratch = Vec::new();
            let mut exact: Vec<Neighbor> = top
                .into_sorted()
                .into_iter()
                .map(|s| Neighbor {
                    id: s.id,
                    distance: distance_to_row(&vectors, q, s.id as usize, &mut scratch),
                })
                .collect();
            exact.sort_by(Neighbor::rank_cmp);
            exact.truncate(k);
            let certified = !full
                || exact.len() < k
                || worst - rounding_bound(dim, q_norm, max_norm) > exact[k - 1].distance;
            if certified {
                exact
            } else {
                scan_one(vectors, q, k, filter)
            }
        })
        .collect()
}

/// Approximate top-`cand` of each query in a block over pool rows `rows`, by GEMM tiles.
/// Scores are ‖p‖² − 2⟨q,p⟩ (the query norm is added by the caller).
fn gemm_block(
    vectors: VectorView<'_>,
    norms: &[f32],
    qblock: &[f32],
    nq: usize,
    rows: std::ops::Range<usize>,
    cand: usize,
    filter: Option<&RowFilter>,
) -> Vec<TopK> {
    let dim = vectors.dim();
    let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(cand)).collect();
    let mut dots = vec![0.0f32; nq * POOL_TILE];
    let mut converted = match vectors {
        VectorView::F16 { .. } => vec![0.0f32; POOL_TILE * dim],
        VectorView::F32 { .. } => Vec::new(),
    };
    let mut p0 = rows.start;
    while p0 < rows.end {
        let p1 = (p0 + POOL_TILE).min(rows.end);
        let t = p1 - p0;
        let tile: &[f32] = match vectors {
            VectorView::F32 { data, .. } => &data[p0 * dim..p1 * dim],
            VectorView::F16 { .. } => {
                vectors.copy_rows_f32(p0, p1, &mut converted[..t * dim]);
                &converted[..t * dim]
            }
        };
        // SAFETY: dst is nq x t with row stride t inside `dots` (nq * POOL_TILE >= nq * t);
        // lhs is nq x dim row-major (`qblock.len() == nq * dim`); rhs is the dim x t matrix
        // whose column j is tile row j (`tile.len() == t * dim`). No aliasing between them.
        unsafe {
            gemm::gemm(
                nq,
                t,
                dim,
                dots.as_mut_ptr(),
                1,
                t as isize,
                false,
                qblock.as_ptr(),
                1,
                dim as isize,
                tile.as_ptr(),
                dim as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let tile_norms = &norms[p0..p1];
        for (qi, top) in tops.iter_mut().enumerate() {
            let row = &mut dots[qi * t..(qi + 1) * t];
            for (v, &pn) in row.iter_mut().zip(tile_norms) {
                *v = pn - 2.0 * *v;
            }
            let mut thr = top.threshold();
            for (j, &v) in row.iter().enumerate() {
                if v <= thr {
                    let id = (p0 + j) as RowId;
                    if filter.is_none_or(|f| f.allows(id)) && top.push(v, id) {
                        thr = top.threshold();
                    }
                }
            }
        }
        p0 = p1;
    }
    tops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_bound_is_small_for_unit_vectors() {
        let b = rounding_bound(384, 1.0, 1.0);
        assert!(b > 1e-5 && b < 1e-3, "{b}");
    }
}
