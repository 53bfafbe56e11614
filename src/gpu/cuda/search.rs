//! Searching a resident pool: each query batch over every segment with the plan asked for
//! (or [`GpuExact::plan_for`]'s), the per-segment lists merged on the host; and re-scoring
//! given candidate lists (exact re-ranking) where the rows live.

use cudarc::driver::CudaSlice;

use super::exact::{upload, GpuExact, MAX_GRID_Y, PARTIAL_BYTES};
use super::gemm::GemmQueries;
use super::host::HostRows;
use super::kernels::{padded_lists, Lists, Rows, SelectState};
use super::sample;
use super::segment::{Place, Segment};
use super::{GpuError, GpuPlan};
use crate::index::topk::TopK;
use crate::index::{validate_queries, IndexError, RowFilter};
use crate::types::{Matrix, Neighbor};

/// One query batch against one segment: what every plan's segment search reads.
#[derive(Clone, Copy)]
pub(super) struct SegmentBatch<'a> {
    pub(super) seg: &'a Segment,
    /// The segment's rows on the device.
    pub(super) rows: &'a Rows,
    /// The queries in f32 (the fused plan's input, and the exact re-scoring's).
    pub(super) q32: &'a CudaSlice<f32>,
    pub(super) nq: usize,
    /// At most the segment's length.
    pub(super) k: usize,
    pub(super) filter: Option<&'a CudaSlice<u32>>,
}

/// The batch as the GEMM-based plans read it: queries in the pool's element type and their
/// squared norms as such.
pub(super) struct GemmBatch {
    pub(super) queries: GemmQueries,
    pub(super) norms: CudaSlice<f32>,
}

impl GpuExact {
    /// The `k` nearest rows to each query, best first, ties by row id; only rows `filter`
    /// allows when given. The plan is [`GpuExact::plan_for`]'s.
    pub fn search(
        &self,
        queries: &Matrix,
        k: usize,
        filter: Option<&RowFilter>,
    ) -> Result<Vec<Vec<Neighbor>>, GpuError> {
        Ok(self.search_with(queries, k, filter, None)?.0)
    }

    /// As [`GpuExact::search`] with the plan forced (or `None` for the heuristic's); returns
    /// the plan used (`gemm` for an `mma` search that sent any segment to the gemm plan).
    pub fn search_with(
        &self,
        queries: &Matrix,
        k: usize,
        filter: Option<&RowFilter>,
        plan: Option<GpuPlan>,
    ) -> Result<(Vec<Vec<Neighbor>>, GpuPlan), GpuError> {
        validate_queries(self.dim, queries, k)?;
        if self.is_empty() {
            return Err(IndexError::EmptyPool.into());
        }
        let mut plan = plan.unwrap_or_else(|| self.plan_for(queries.rows, k));
        let max = match plan {
            GpuPlan::Fused | GpuPlan::Gemm | GpuPlan::Mma => self.max_one_pass_k(),
            GpuPlan::Wide => self.max_k(),
        };
        if k > max {
            return Err(GpuError::KTooLarge { k, max });
        }
        let stream = &self.kernels.stream;
        if let Some(clock) = &self.stages {
            clock.start(stream)?;
        }
        let bitmap = match filter {
            Some(f) => Some(upload(
                stream,
                &f.words32(self.len),
                "uploading the filter",
            )?),
            None => None,
        };
        if bitmap.is_some() {
            self.mark("filter up")?;
        }
        let mut heaps: Vec<TopK> = (0..queries.rows).map(|_| TopK::new(k)).collect();
        let mut sent_to_gemm = false;
        let batch = match plan {
            GpuPlan::Fused => (PARTIAL_BYTES / (8 * k)).max(1),
            // A tile at least 1024 columns wide.
            GpuPlan::Gemm => (self.tile_bytes / (4 * 1024))
                .min(PARTIAL_BYTES / (8 * k))
                .max(1),
            // The gemm plan's (for the sample, and a segment sent back to it), within the
            // candidate lists' room.
            GpuPlan::Mma => (self.tile_bytes / (4 * 1024))
                .min(PARTIAL_BYTES / (8 * k))
                .min(PARTIAL_BYTES / (8 * sample::room(k, sample::expected(k, self.mma_expected))))
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
            let gemm = match plan {
                GpuPlan::Fused => None,
                GpuPlan::Gemm | GpuPlan::Wide | GpuPlan::Mma => Some(self.gemm_queries(part)?),
            };
            self.mark("queries up")?;
            // A segment an interrupted append left empty has nothing to offer.
            for seg in self.segments.iter().filter(|s| s.len > 0) {
                let k_seg = k.min(seg.len);
                let mut staged = None;
                let on = SegmentBatch {
                    seg,
                    rows: self.device_rows(seg, &mut staged)?,
                    q32: &q32,
                    nq,
                    k: k_seg,
                    filter: bitmap.as_ref(),
                };
                if matches!(seg.place, Place::Host(_)) {
                    self.mark("rows staged")?;
                }
                let lists = match (&gemm, plan) {
                    (Some(g), GpuPlan::Gemm) => self.gemm_segment(&on, g)?,
                    (Some(g), GpuPlan::Wide) => self.wide_segment(&on, g)?,
                    (Some(g), GpuPlan::Mma) => match self.mma_segment(&on, g)? {
                        Some(lists) => lists,
                        None => {
                            sent_to_gemm = true;
                            self.gemm_segment(&on, g)?
                        }
                    },
                    _ => self.fused_segment(&on)?,
                };
                let (dist, ids) = lists.download(stream)?;
                self.mark("download")?;
                for (qi, heap) in heaps[start..end].iter_mut().enumerate() {
                    for j in 0..k_seg {
                        let id = ids[qi * k_seg + j];
                        if id != u32::MAX {
                            heap.push(dist[qi * k_seg + j], id);
                        }
                    }
                }
                self.mark("host merge")?;
            }
        }
        if sent_to_gemm {
            plan = GpuPlan::Gemm;
        }
        Ok((heaps.into_iter().map(TopK::into_neighbors).collect(), plan))
    }

    /// Replaces each list's distances by the exact squared ℓ2 of its rows to its query
    /// (re-ranking HNSW candidates), computed where the rows live. Lists keep their order.
    pub fn rescore(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>]) -> Result<(), GpuError> {
        validate_queries(self.dim, queries, 1)?;
        if lists.len() != queries.rows {
            return Err(GpuError::Contract {
                what: format!(
                    "{} candidate lists for {} queries",
                    lists.len(),
                    queries.rows
                ),
            });
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
    fn gemm_queries(&self, part: &[f32]) -> Result<GemmBatch, GpuError> {
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
        Ok(GemmBatch {
            queries,
            norms: upload(stream, &norms, "uploading query norms")?,
        })
    }

    /// The fused plan on one segment: nq x k lists, best first.
    fn fused_segment(&self, on: &SegmentBatch<'_>) -> Result<Lists, GpuError> {
        let (seg, rows, queries, nq, k, filter) = (on.seg, on.rows, on.q32, on.nq, on.k, on.filter);
        let kernels = &self.kernels;
        let shape = kernels.shape(Some(rows.dtype()), nq, seg.len, k, PARTIAL_BYTES / 8)?;
        let mut out = Lists::new(&kernels.stream, nq, shape.lists * k)?;
        if shape.lists != shape.parts {
            kernels.clear(&mut out)?;
        }
        kernels.scan(
            rows, seg.len, self.dim, seg.first, queries, nq, filter, k, shape, &mut out,
        )?;
        self.mark("scan")?;
        let lists = kernels.merge(out, nq, k)?;
        self.mark("merge")?;
        Ok(lists)
    }

    /// The tensor-core plan on one segment: tiles of cross terms from cuBLAS, each consumed by
    /// the select kernel, then the lists merged and their distances recomputed exactly.
    fn gemm_segment(&self, on: &SegmentBatch<'_>, gemm: &GemmBatch) -> Result<Lists, GpuError> {
        let mut lists = self.gemm_best(on, gemm, 1, on.seg.len)?;
        self.refine_lists(on, &mut lists)?;
        self.mark("refine")?;
        Ok(lists)
    }

    /// Recomputes the distances of the segment's chosen rows exactly.
    pub(super) fn refine_lists(
        &self,
        on: &SegmentBatch<'_>,
        lists: &mut Lists,
    ) -> Result<(), GpuError> {
        self.kernels
            .refine(on.rows, self.dim, on.seg.first, on.q32, on.nq, lists)
    }

    /// The best k of `count` rows of the segment, every `stride`-th from its first (all of it,
    /// or the mma plan's sample), by the GEMM-formed distances: nq x k lists, sorted.
    pub(super) fn gemm_best(
        &self,
        on: &SegmentBatch<'_>,
        gemm: &GemmBatch,
        stride: usize,
        count: usize,
    ) -> Result<Lists, GpuError> {
        let (seg, rows, nq, k, filter) = (on.seg, on.rows, on.nq, on.k, on.filter);
        let (gq, qnorm) = (&gemm.queries, &gemm.norms);
        let kernels = &self.kernels;
        let stream = &kernels.stream;
        let cols = (self.tile_bytes / (4 * nq))
            .max(1024)
            .min(self.max_tile_cols)
            .min(count);
        let mut dots = stream
            .alloc_zeros::<f32>(nq * cols)
            .map_err(GpuError::driver("allocating the cross-term tile"))?;
        let shape = kernels.shape(None, nq, cols, k, PARTIAL_BYTES / 8)?;
        let mut state = SelectState::new(kernels, nq, k, shape)?;
        let mut gthr = kernels.thresholds(nq)?;
        // The mma plan's sample (every stride-th row) is told apart from a whole segment.
        let names = match stride {
            1 => ["cross terms", "select", "merge"],
            _ => ["sample cross terms", "sample select", "sample merge"],
        };
        for start in (0..count).step_by(cols) {
            let width = cols.min(count - start);
            let first = start * stride;
            self.gemm.cross(
                stream, rows, first, width, stride, self.dim, gq, nq, &mut dots,
            )?;
            self.mark(names[0])?;
            let last = start + width == count;
            kernels.select(
                &dots, width, first, stride, seg.first, &seg.norms, qnorm, nq, filter, k, shape,
                &mut gthr, &mut state, last,
            )?;
            self.mark(names[1])?;
        }
        let lists = kernels.merge(state.best, nq, k)?;
        self.mark(names[2])?;
        Ok(lists)
    }

    /// The wide plan on one segment: tiles of cross terms from cuBLAS; per tile, each query's
    /// best k so far and the tile's pairs are laid out as lists of k and folded back to k by
    /// the radix merge tree; the chosen rows' distances are then recomputed exactly.
    fn wide_segment(&self, on: &SegmentBatch<'_>, gemm: &GemmBatch) -> Result<Lists, GpuError> {
        let (seg, rows, nq, k, filter) = (on.seg, on.rows, on.nq, on.k, on.filter);
        let (gq, qnorm) = (&gemm.queries, &gemm.norms);
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
                .cross(stream, rows, first, width, 1, self.dim, gq, nq, &mut dots)?;
            self.mark("cross terms")?;
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
            self.mark("wide tile")?;
            best = Some(kernels.merge(pairs, nq, k)?);
            self.mark("merge")?;
        }
        let mut best = best.expect("a segment has at least one row");
        self.refine_lists(on, &mut best)?;
        self.mark("refine")?;
        Ok(best)
    }
}
