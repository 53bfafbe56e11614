//! Searching a resident pool: each query batch over every segment with the plan asked for
//! (or [`GpuExact::plan_for`]'s), the per-segment lists merged on the host; and re-scoring
//! given candidate lists (exact re-ranking) where the rows live.

use cudarc::driver::CudaSlice;

use super::exact::{upload, GpuExact, MAX_GRID_Y, PARTIAL_BYTES};
use super::gemm::GemmQueries;
use super::host::HostRows;
use super::kernels::{padded_lists, Lists, Rows, SelectState};
use super::segment::Segment;
use super::{GpuError, GpuPlan};
use crate::index::topk::TopK;
use crate::index::{validate_queries, IndexError, RowFilter};
use crate::types::{Matrix, Neighbor};

impl GpuExact {
    /// The `k` nearest rows to each query, best first, ties by row id; only rows `filter`
    /// allows when given. The plan is [`GpuExact::plan_for`]'s.
    pub fn search(
        &self,
        queries: &Matrix,
        k: usize,
        filter: Option<&RowFilter>,
    ) -> Result<Vec<Vec<Neighbor>>, crate::error::Error> {
        Ok(self.search_with(queries, k, filter, None)?.0)
    }

    /// As [`GpuExact::search`] with the plan forced (or `None` for the heuristic's); returns
    /// the plan used.
    pub fn search_with(
        &self,
        queries: &Matrix,
        k: usize,
        filter: Option<&RowFilter>,
        plan: Option<GpuPlan>,
    ) -> Result<(Vec<Vec<Neighbor>>, GpuPlan), crate::error::Error> {
        validate_queries(self.dim, queries, k)?;
        if self.is_empty() {
            return Err(IndexError::EmptyPool.into());
        }
        let plan = plan.unwrap_or_else(|| self.plan_for(queries.rows, k));
        let max = match plan {
            GpuPlan::Fused | GpuPlan::Gemm => self.max_one_pass_k(),
            GpuPlan::Wide => self.max_k(),
        };
        if k > max {
            return Err(GpuError::KTooLarge { k, max }.into());
        }
        let stream = &self.kernels.stream;
        let bitmap = match filter {
            Some(f) => Some(upload(
                stream,
                &f.words32(self.len),
                "uploading the filter",
            )?),
            None => None,
        };
        let mut heaps: Vec<TopK> = (0..queries.rows).map(|_| TopK::new(k)).collect();
        let batch = match plan {
            GpuPlan::Fused => (PARTIAL_BYTES / (8 * k)).max(1),
            // A tile at least 1024 columns wide.
            GpuPlan::Gemm => (self.tile_bytes / (4 * 1024))
                .min(PARTIAL_BYTES / (8 * k))
                .max(1),
            // The carried lists and the merge tree's first level, k pairs per query each.
            GpuPlan::Wide => (PARTIAL_BYTES / (16 * k)).max(1),
        }
        .min(MAX_GRID_Y);
        for start in (0..queries.rows).step_by(batch) {
            let end = (start + batch).min(queries.rows);
            let part = &queries.data[start * self.dim..end * self.dim];
            let nq = end - start;
            let q32 = upload(stream, part, "uploading queries")?;
            let gemm_queries = match plan {
                GpuPlan::Fused => None,
                GpuPlan::Gemm | GpuPlan::Wide => Some(self.gemm_queries(part)?),
            };
            // A segment an interrupted append left empty has nothing to offer.
            for seg in self.segments.iter().filter(|s| s.len > 0) {
                let k_seg = k.min(seg.len);
                let mut staged = None;
                let rows = self.device_rows(seg, &mut staged)?;
                let filter = bitmap.as_ref();
                let lists = match (&gemm_queries, plan) {
                    (Some((gq, qn)), GpuPlan::Gemm) => {
                        self.gemm_segment(seg, rows, &q32, gq, qn, nq, k_seg, filter)?
                    }
                    (Some((gq, qn)), GpuPlan::Wide) => {
                        self.wide_segment(seg, rows, &q32, gq, qn, nq, k_seg, filter)?
                    }
                    _ => self.fused_segment(seg, rows, &q32, nq, k_seg, filter)?,
                };
                let (dist, ids) = lists.download(stream)?;
                for (qi, heap) in heaps[start..end].iter_mut().enumerate() {
                    for j in 0..k_seg {
                        let id = ids[qi * k_seg + j];
                        if id != u32::MAX {
                            heap.push(dist[qi * k_seg + j], id);
                        }
                    }
                }
            }
        }
        Ok((heaps.into_iter().map(TopK::into_neighbors).collect(), plan))
    }

    /// Replaces each list's distances by the exact squared ℓ2 of its rows to its query
    /// (re-ranking HNSW candidates), computed where the rows live. Lists keep their order.
    pub fn rescore(
        &self,
        queries: &Matrix,
        lists: &mut [Vec<Neighbor>],
    ) -> Result<(), crate::error::Error> {
        validate_queries(self.dim, queries, 1)?;
        if lists.len() != queries.rows {
            return Err(crate::error::Error::Usage(format!(
                "{} candidate lists for {} queries",
                lists.len(),
                queries.rows
            )));
        }
        let width = lists.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return Ok(());
        }
        if let Some(n) = lists.iter().flatten().find(|n| n.id as usize >= self.len) {
            return Err(IndexError::InvalidParameter {
                name: "candidate row",
                value: n.id.to_string(),
                reason: "beyond the rows resident on the GPU",
            }
            .into());
        }
        let stream = &self.kernels.stream;
        let nq = queries.rows;
        let q32 = upload(stream, &queries.data, "uploading queries")?;
        for seg in &self.segments {
            let range = seg.first..seg.first + seg.len;
            let mut ids = vec![u32::MAX; nq * width];
            let mut any = false;
            for (qi, list) in lists.iter().enumerate() {
                for (j, n) in list.iter().enumerate() {
                    if range.contains(&(n.id as usize)) {
                        ids[qi * width + j] = n.id;
                        any = true;
                    }
                }
            }
            if !any {
                continue;
            }
            let mut rows = Lists {
                ids: upload(stream, &ids, "uploading candidate rows")?,
                dist: stream
                    .alloc_zeros::<f32>(nq * width)
                    .map_err(GpuError::driver("allocating distances"))?,
                per_query: width,
            };
            let mut staged = None;
            let seg_rows = self.device_rows(seg, &mut staged)?;
            self.kernels
                .refine(seg_rows, self.dim, seg.first, &q32, nq, &mut rows)?;
            let (dist, _) = rows.download(stream)?;
            for (qi, list) in lists.iter_mut().enumerate() {
                for (j, n) in list.iter_mut().enumerate() {
                    if ids[qi * width + j] != u32::MAX {
                        n.distance = dist[qi * width + j];
                    }
                }
            }
        }
        Ok(())
    }

    /// The queries in the pool's element type and their squared norms as such.
    fn gemm_queries(&self, part: &[f32]) -> Result<(GemmQueries, CudaSlice<f32>), GpuError> {
        let stream = &self.kernels.stream;
        let nq = part.len() / self.dim;
        let view = crate::types::VectorView::f32(part, self.dim);
        let (rows, norms) = HostRows::convert(view, 0, nq, self.dtype);
        const WHAT: &str = "uploading queries";
        let queries = match rows {
            HostRows::F32(v) => GemmQueries::F32(upload(stream, &v, WHAT)?),
            HostRows::F16(v) => GemmQueries::F16(upload(stream, &v, WHAT)?),
            HostRows::BF16(v) => GemmQueries::BF16(upload(stream, &v, WHAT)?),
        };
        Ok((queries, upload(stream, &norms, "uploading query norms")?))
    }

    /// The fused plan on one segment: nq x k lists, best first.
    fn fused_segment(
        &self,
        seg: &Segment,
        rows: &Rows,
        queries: &CudaSlice<f32>,
        nq: usize,
        k: usize,
        filter: Option<&CudaSlice<u32>>,
    ) -> Result<Lists, GpuError> {
        let kernels = &self.kernels;
        let shape = kernels.shape(Some(rows.dtype()), nq, seg.len, k, PARTIAL_BYTES / 8)?;
        let mut out = Lists::new(&kernels.stream, nq, shape.lists * k)?;
        if shape.lists != shape.parts {
            kernels.clear(&mut out)?;
        }
        kernels.scan(
            rows, seg.len, self.dim, seg.first, queries, nq, filter, k, shape, &mut out,
        )?;
        kernels.merge(out, nq, k)
    }

    /// The tensor-core plan on one segment: tiles of cross terms from cuBLAS, each consumed by
    /// the select kernel, then the lists merged and their distances recomputed exactly.
    #[allow(clippy::too_many_arguments)]
    fn gemm_segment(
        &self,
        seg: &Segment,
        rows: &Rows,
        q32: &CudaSlice<f32>,
        gq: &GemmQueries,
        qnorm: &CudaSlice<f32>,
        nq: usize,
        k: usize,
        filter: Option<&CudaSlice<u32>>,
    ) -> Result<Lists, GpuError> {
        let kernels = &self.kernels;
        let stream = &kernels.stream;
        let cols = (self.tile_bytes / (4 * nq))
            .max(1024)
            .min(self.max_tile_cols)
            .min(seg.len);
        let mut dots = stream
            .alloc_zeros::<f32>(nq * cols)
            .map_err(GpuError::driver("allocating the cross-term tile"))?;
        let shape = kernels.shape(None, nq, cols, k, PARTIAL_BYTES / 8)?;
        let mut state = SelectState::new(kernels, nq, k, shape)?;
        let mut gthr = kernels.thresholds(nq)?;
        for first in (0..seg.len).step_by(cols) {
            let width = cols.min(seg.len - first);
            self.gemm
                .cross(stream, rows, first, width, self.dim, gq, nq, &mut dots)?;
            let last = first + width == seg.len;
            kernels.select(
                &dots, width, first, seg.first, &seg.norms, qnorm, nq, filter, k, shape, &mut gthr,
                &mut state, last,
            )?;
        }
        let mut lists = kernels.merge(state.best, nq, k)?;
        kernels.refine(rows, self.dim, seg.first, q32, nq, &mut lists)?;
        Ok(lists)
    }

    /// The wide plan on one segment: tiles of cross terms from cuBLAS; per tile, each query's
    /// best k so far and the tile's pairs are laid out as lists of k and folded back to k by
    /// the radix merge tree; the chosen rows' distances are then recomputed exactly.
    #[allow(clippy::too_many_arguments)]
    fn wide_segment(
        &self,
        seg: &Segment,
        rows: &Rows,
        q32: &CudaSlice<f32>,
        gq: &GemmQueries,
        qnorm: &CudaSlice<f32>,
        nq: usize,
        k: usize,
        filter: Option<&CudaSlice<u32>>,
    ) -> Result<Lists, GpuError> {
        let kernels = &self.kernels;
        let stream = &kernels.stream;
        // Pairs per query in flight: the tile's and the carried k, within PARTIAL_BYTES.
        let cols = (PARTIAL_BYTES / (8 * nq))
            .saturating_sub(k)
            .min(self.tile_bytes / (4 * nq))
            .max(1024)
            .min(self.max_tile_cols)
            .min(seg.len);
        let mut dots = stream
            .alloc_zeros::<f32>(nq * cols)
            .map_err(GpuError::driver("allocating the cross-term tile"))?;
        // Lists of k per query: the carried one, then the tile's, padded as the merge tree
        // wants (wide_tile writes empties past the tile).
        let lists = padded_lists(1 + cols.div_ceil(k));
        let mut best: Option<Lists> = None;
        for first in (0..seg.len).step_by(cols) {
            let width = cols.min(seg.len - first);
            self.gemm
                .cross(stream, rows, first, width, self.dim, gq, nq, &mut dots)?;
            let mut pairs = Lists::new(stream, nq, lists * k)?;
            kernels.wide_tile(
                &dots,
                width,
                first,
                seg.first,
                &seg.norms,
                qnorm,
                nq,
                filter,
                k,
                best.as_ref(),
                &mut pairs,
            )?;
            best = Some(kernels.merge(pairs, nq, k)?);
        }
        let mut best = best.expect("a segment has at least one row");
        kernels.refine(rows, self.dim, seg.first, q32, nq, &mut best)?;
        Ok(best)
    }
}
