//! Exact k-NN on the GPU with dcd's own kernels (`kernels/l2_topk.cu`, PTX built by build.rs).
//! The pool is resident on the device (f32, f16 or bf16; distances accumulated in f32), split
//! into segments that fit the free device memory, each searched on the device and the
//! per-segment lists merged on the host. Two plans ([`GpuPlan`]): `fused` computes squared ℓ2
//! and keeps each query's running top-k in one kernel, so no distance matrix exists at all;
//! `gemm` gets the cross term of a pool tile from cuBLAS on the tensor cores and a fused
//! add-norms-and-select kernel consumes the tile, then re-computes the chosen rows' distances
//! exactly. [`GpuExact::plan_for`] picks by query batch size, from measurements on an H100.
//! Both keep the running lists in shared memory, which caps k; beyond it the `wide` plan keeps
//! them in global memory and folds each GEMM tile into them with the radix merge.
//! Runs on candle's context and stream for the device, so the backbones and the search share
//! one CUDA context.

mod error;
mod gemm;
mod kernels;
mod libraries;

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use half::{bf16, f16};

pub use error::GpuError;

use self::gemm::{Gemm, GemmQueries};
use self::kernels::{padded_lists, Kernels, Lists, Rows, SelectState};
use crate::index::topk::TopK;
use crate::index::{validate_queries, IndexError, RowFilter};
use crate::types::{Matrix, Neighbor, VectorView};

/// Largest k the fused and gemm plans select on an H100 (their running lists live in one
/// block's shared memory; cards with less allow less, see [`GpuExact::max_one_pass_k`]).
pub const MAX_GPU_K: usize = 4096;
/// Largest k of the wide plan on an H100 (the merge's selected list is in shared memory).
pub const MAX_WIDE_K: usize = 16384;
/// Candidate pairs kept on the device per launch (nq x parts x k), in bytes.
const PARTIAL_BYTES: usize = 256 << 20;
/// The GEMM path's tile of cross terms (nq x cols f32): large enough that per-tile costs (a
/// launch pair, each part's state in and out) stay small beside the tile's own traffic.
const TILE_BYTES: usize = 128 << 20;
/// Queries per launch at most: the merge and wide kernels put queries on the grid's y axis.
const MAX_GRID_Y: usize = 65_535;
/// Share of the free device memory the pool may take.
const POOL_SHARE: f64 = 0.7;

/// Element type of the resident pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuDtype {
    /// binary32.
    F32,
    /// binary16.
    F16,
    /// bfloat16.
    BF16,
}

/// How a batch is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuPlan {
    /// One kernel: ℓ2 on the CUDA cores with the top-k selection fused in.
    Fused,
    /// cuBLAS cross term on the tensor cores, fused add-norms-and-select, exact re-scoring.
    Gemm,
    /// For k beyond [`GpuExact::max_one_pass_k`]: cuBLAS cross term, each tile's pairs merged
    /// with the best k so far by the radix merge in global memory, exact re-scoring.
    Wide,
}

impl std::fmt::Display for GpuPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GpuPlan::Fused => "fused",
            GpuPlan::Gemm => "gemm",
            GpuPlan::Wide => "wide",
        })
    }
}

impl std::str::FromStr for GpuPlan {
    type Err = String;
    fn from_str(s: &str) -> Result<GpuPlan, String> {
        match s {
            "fused" => Ok(GpuPlan::Fused),
            "gemm" => Ok(GpuPlan::Gemm),
            "wide" => Ok(GpuPlan::Wide),
            other => Err(format!(
                "unknown GPU plan {other:?}: use fused, gemm or wide"
            )),
        }
    }
}

/// Where a segment's rows live: on the device, or (a pool larger than the device's share) on
/// the host, copied into the staging buffer for each search.
enum Place {
    Device(Rows),
    Host(HostRows),
}

enum HostRows {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

struct Segment {
    place: Place,
    /// Squared norms of the rows as stored (the GEMM path's epilogue adds them).
    norms: CudaSlice<f32>,
    first: usize,
    len: usize,
}

/// A pool resident on one GPU, searched exactly.
pub struct GpuExact {
    kernels: Kernels,
    gemm: Gemm,
    segments: Vec<Segment>,
    /// Device rows the host segments are copied into, one at a time.
    staging: Option<std::sync::Mutex<Rows>>,
    dtype: GpuDtype,
    dim: usize,
    len: usize,
    max_tile_cols: usize,
    tile_bytes: usize,
}

/// candle's CUDA device `ordinal` (its context and stream are the ones dcd uses), once the
/// driver and libraries it needs are known to be there (see [`libraries`]); a missing device
/// or a broken driver is reported too.
pub fn device(ordinal: usize) -> Result<candle_core::Device, GpuError> {
    libraries::check()?;
    candle_core::Device::new_cuda(ordinal).map_err(|e| GpuError::NoDevice {
        ordinal,
        reason: e.to_string(),
    })
}

fn stream_of(device: &candle_core::Device) -> Result<Arc<CudaStream>, GpuError> {
    match device {
        candle_core::Device::Cuda(d) => Ok(d.cuda_stream()),
        other => Err(GpuError::NotCuda {
            device: format!("{other:?}"),
        }),
    }
}

fn upload<T: cudarc::driver::DeviceRepr>(
    stream: &Arc<CudaStream>,
    data: &[T],
    what: &'static str,
) -> Result<CudaSlice<T>, GpuError> {
    stream.clone_htod(data).map_err(GpuError::driver(what))
}

impl GpuExact {
    /// Uploads `vectors` to `device` as `dtype`, in as many segments as free memory needs.
    pub fn new(
        device: &candle_core::Device,
        vectors: VectorView<'_>,
        dtype: GpuDtype,
    ) -> Result<GpuExact, GpuError> {
        Self::with_segment_rows(device, vectors, dtype, usize::MAX)
    }

    /// As [`GpuExact::new`], with at most `max_rows` rows per segment (tests use it to
    /// exercise the segment merge without a pool larger than the device).
    pub fn with_segment_rows(
        device: &candle_core::Device,
        vectors: VectorView<'_>,
        dtype: GpuDtype,
        max_rows: usize,
    ) -> Result<GpuExact, GpuError> {
        Self::with_limits(device, vectors, dtype, max_rows, usize::MAX)
    }

    /// As [`GpuExact::with_segment_rows`], keeping at most `max_resident` segments on the
    /// device; the others stay on the host and are streamed through a staging buffer at each
    /// search, as happens on its own when the pool exceeds the device's share of memory.
    pub fn with_limits(
        device: &candle_core::Device,
        vectors: VectorView<'_>,
        dtype: GpuDtype,
        max_rows: usize,
        max_resident: usize,
    ) -> Result<GpuExact, GpuError> {
        let stream = stream_of(device)?;
        let kernels = Kernels::load(stream.clone())?;
        let gemm = Gemm::new(stream.clone())?;
        let (n, dim) = (vectors.len(), vectors.dim());
        let (free, _) = stream
            .context()
            .mem_get_info()
            .map_err(GpuError::driver("reading free memory"))?;
        let elem = match dtype {
            GpuDtype::F32 => 4,
            GpuDtype::F16 | GpuDtype::BF16 => 2,
        };
        let budget = ((free as f64 * POOL_SHARE) as usize).max(elem * dim);
        // Rows the budget holds (with their norms); a pool beyond it keeps half the budget for
        // the staging buffer its host segments pass through.
        let fit = (budget / ((elem + 4) * dim.max(1))).max(1);
        let per_segment = if n <= fit { fit } else { (fit / 2).max(1) }
            .min(max_rows)
            .clamp(1, u32::MAX as usize / 2);
        let resident = if n <= fit {
            usize::MAX
        } else {
            (fit - per_segment) / per_segment
        }
        .min(max_resident);
        let mut segments = Vec::new();
        let mut first = 0;
        let mut scratch = Vec::new();
        while first < n {
            let len = per_segment.min(n - first);
            let on_device = segments.len() < resident;
            scratch.resize(len * dim, 0.0f32);
            vectors.copy_rows_f32(first, first + len, &mut scratch);
            // Norms of the values as stored, so the GEMM path's |x|^2 + |q|^2 - 2<x, q> is the
            // distance to the stored row.
            let (host, norms) = match dtype {
                GpuDtype::F32 => {
                    let norms = row_norms(&scratch, dim, |v| v);
                    (HostRows::F32(std::mem::take(&mut scratch)), norms)
                }
                GpuDtype::F16 => {
                    let h: Vec<f16> = scratch.iter().map(|&v| f16::from_f32(v)).collect();
                    let norms = row_norms(&h, dim, f16::to_f32);
                    (HostRows::F16(h), norms)
                }
                GpuDtype::BF16 => {
                    let h: Vec<bf16> = scratch.iter().map(|&v| bf16::from_f32(v)).collect();
                    let norms = row_norms(&h, dim, bf16::to_f32);
                    (HostRows::BF16(h), norms)
                }
            };
            let place = if on_device {
                Place::Device(host.upload(&stream)?)
            } else {
                Place::Host(host)
            };
            let norms = upload(&stream, &norms, "uploading row norms")?;
            segments.push(Segment {
                place,
                norms,
                first,
                len,
            });
            first += len;
        }
        let staging = match segments.iter().any(|s| matches!(s.place, Place::Host(_))) {
            false => None,
            true => Some(std::sync::Mutex::new(Rows::zeros(
                &stream,
                dtype,
                per_segment * dim,
            )?)),
        };
        Ok(GpuExact {
            kernels,
            gemm,
            segments,
            staging,
            dtype,
            dim,
            len: n,
            max_tile_cols: usize::MAX,
            tile_bytes: TILE_BYTES,
        })
    }

    /// Rows resident.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no row is resident.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device segments the pool was split into (more than one when it exceeds memory).
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Segments kept on the host and streamed to the device at each search.
    pub fn streamed_segments(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s.place, Place::Host(_)))
            .count()
    }

    /// The segment's rows on the device: its own, or the staging buffer (held by the guard
    /// until the segment's search is done) after copying its host rows in.
    fn device_rows<'s: 'g, 'g>(
        &'s self,
        seg: &'s Segment,
        staged: &'g mut Option<std::sync::MutexGuard<'s, Rows>>,
    ) -> Result<&'g Rows, GpuError> {
        match &seg.place {
            Place::Device(rows) => Ok(rows),
            Place::Host(host) => {
                let staging = self.staging.as_ref().expect("host segments have staging");
                let mut guard = staging.lock().unwrap_or_else(|p| p.into_inner());
                host.copy_into(&self.kernels.stream, &mut guard)?;
                Ok(&**staged.insert(guard))
            }
        }
    }

    /// Caps the GEMM plan's tiles at `cols` pool rows (tests use it to carry the running lists
    /// across tiles on small pools; the default sizes tiles by [`TILE_BYTES`]).
    pub fn limit_tile_columns(&mut self, cols: usize) {
        self.max_tile_cols = cols.max(1);
    }

    /// Sets the GEMM plan's tile of cross terms to `bytes` (default [`TILE_BYTES`]; `dcd bench
    /// exact --gpu-tile-mib` measures the trade between L2 residency and per-tile costs).
    pub fn set_tile_bytes(&mut self, bytes: usize) {
        self.tile_bytes = bytes.max(1 << 20);
    }

    /// Largest k a search selects on this device (the wide plan's cap).
    pub fn max_k(&self) -> usize {
        self.kernels
            .max_wide_k
            .min(MAX_WIDE_K)
            .max(self.max_one_pass_k())
    }

    /// Largest k of the fused and gemm plans on this device; larger k takes the wide plan.
    pub fn max_one_pass_k(&self) -> usize {
        self.kernels.max_k.min(MAX_GPU_K)
    }

    /// Element type of the resident pool.
    pub fn dtype(&self) -> GpuDtype {
        self.dtype
    }

    /// The plan [`GpuExact::search`] uses for a batch of `queries` queries and `k`: the wide
    /// plan beyond [`GpuExact::max_one_pass_k`], else the tensor-core path once the batch is
    /// large enough to pay for the tile round trip through memory.
    pub fn plan_for(&self, queries: usize, k: usize) -> GpuPlan {
        if k > self.max_one_pass_k() {
            return GpuPlan::Wide;
        }
        let from = match self.dtype {
            GpuDtype::F32 => GEMM_FROM_F32,
            GpuDtype::F16 | GpuDtype::BF16 => GEMM_FROM_HALF,
        };
        if queries >= from {
            GpuPlan::Gemm
        } else {
            GpuPlan::Fused
        }
    }

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
            for seg in &self.segments {
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
        let (queries, norms) = match self.dtype {
            GpuDtype::F32 => (
                GemmQueries::F32(upload(stream, part, "uploading queries")?),
                row_norms(part, self.dim, |v| v),
            ),
            GpuDtype::F16 => {
                let h: Vec<f16> = part.iter().map(|&v| f16::from_f32(v)).collect();
                let norms = row_norms(&h, self.dim, f16::to_f32);
                (
                    GemmQueries::F16(upload(stream, &h, "uploading queries")?),
                    norms,
                )
            }
            GpuDtype::BF16 => {
                let h: Vec<bf16> = part.iter().map(|&v| bf16::from_f32(v)).collect();
                let norms = row_norms(&h, self.dim, bf16::to_f32);
                (
                    GemmQueries::BF16(upload(stream, &h, "uploading queries")?),
                    norms,
                )
            }
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
}

impl GpuExact {
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

impl HostRows {
    fn upload(&self, stream: &Arc<CudaStream>) -> Result<Rows, GpuError> {
        const WHAT: &str = "uploading the pool";
        Ok(match self {
            HostRows::F32(v) => Rows::F32(upload(stream, v, WHAT)?),
            HostRows::F16(v) => Rows::F16(upload(stream, v, WHAT)?),
            HostRows::BF16(v) => Rows::BF16(upload(stream, v, WHAT)?),
        })
    }

    /// Copies these rows to the front of `staging` (same element type, at least as long).
    fn copy_into(&self, stream: &Arc<CudaStream>, staging: &mut Rows) -> Result<(), GpuError> {
        let copy = GpuError::driver("streaming a segment to the device");
        match (self, staging) {
            (HostRows::F32(v), Rows::F32(d)) => stream.memcpy_htod(v, &mut d.slice_mut(0..v.len())),
            (HostRows::F16(v), Rows::F16(d)) => stream.memcpy_htod(v, &mut d.slice_mut(0..v.len())),
            (HostRows::BF16(v), Rows::BF16(d)) => {
                stream.memcpy_htod(v, &mut d.slice_mut(0..v.len()))
            }
            _ => unreachable!("staging is allocated in the pool's element type"),
        }
        .map_err(copy)
    }
}

/// Batches from which [`GpuExact::plan_for`] takes the tensor-core path: where the GEMM plan
/// overtook the fused one on an H100 (1M rows, d 384 and 768, k 100; `scripts/bench_gpu.py
/// --plans fused,gemm`).
const GEMM_FROM_F32: usize = 8;
const GEMM_FROM_HALF: usize = 4;

fn row_norms<T: Copy>(data: &[T], dim: usize, to_f32: impl Fn(T) -> f32) -> Vec<f32> {
    data.chunks(dim.max(1))
        .map(|row| row.iter().map(|&v| to_f32(v) * to_f32(v)).sum())
        .collect()
}
