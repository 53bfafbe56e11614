//! [`GpuExact`]: a pool's rows resident on one GPU (f32, f16 or bf16), split into segments
//! that fit the device's share of free memory (the rest streamed from the host), and the plans
//! that search it. Searching is in `search.rs`, growing the copy in `segment.rs`.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use super::certified::HalfBounds;
use super::gemm::Gemm;
use super::host::HostRows;
use super::kernels::{Kernels, Rows};
use super::plan::{GpuPlan, PlanChoice};
use super::sample;
use super::segment::{Place, Segment};
use super::stage_clock::StageClock;
use super::stage_times::StageTime;
use super::{GpuDtype, GpuError};
use crate::types::VectorView;

/// Largest k the fused and gemm plans select on an H100 (their running lists live in one
/// block's shared memory; cards with less allow less, see [`GpuExact::max_one_pass_k`]).
pub const MAX_GPU_K: usize = 4096;
/// Largest k of the wide plan on an H100 (the merge's selected list is in shared memory).
pub const MAX_WIDE_K: usize = 16384;
/// Candidate pairs kept on the device per launch (nq x parts x k), in bytes.
pub(super) const PARTIAL_BYTES: usize = 256 << 20;
/// The GEMM path's tile of cross terms (nq x cols f32): large enough that per-tile costs (a
/// launch pair, each part's state in and out) stay small beside the tile's own traffic.
pub(super) const TILE_BYTES: usize = 128 << 20;
/// Queries per launch at most: the merge and wide kernels put queries on the grid's y axis.
pub(super) const MAX_GRID_Y: usize = 65_535;
/// Share of the free device memory the pool may take.
pub(super) const POOL_SHARE: f64 = 0.7;

/// A pool resident on one GPU, searched exactly.
pub struct GpuExact {
    /// candle's device, kept to rebuild the copy when an append does not fit.
    pub(super) device: candle_core::Device,
    pub(super) kernels: Kernels,
    pub(super) gemm: Gemm,
    pub(super) segments: Vec<Segment>,
    /// Device rows the host segments are copied into, one at a time.
    pub(super) staging: Option<std::sync::Mutex<Rows>>,
    pub(super) dtype: GpuDtype,
    pub(super) dim: usize,
    pub(super) len: usize,
    /// Rows one segment may hold (the staging buffer's, when the pool streams).
    pub(super) segment_rows: usize,
    /// The caller's limits, kept for a rebuild (see [`GpuExact::with_limits`]).
    pub(super) limit_rows: usize,
    pub(super) limit_resident: usize,
    pub(super) max_tile_cols: usize,
    pub(super) tile_bytes: usize,
    /// Candidates per query the mma plan sizes its sample for ([`sample::EXPECTED_CANDIDATES`]).
    pub(super) mma_expected: usize,
    /// Timing events at each search stage, when asked for ([`GpuExact::time_stages`]).
    pub(super) stages: Option<StageClock>,
    /// Which one-pass plan serves a batch ([`GpuExact::plan_for`]).
    pub(super) choice: PlanChoice,
}

/// candle's CUDA device `ordinal` (its context and stream are the ones dcd uses), once the
/// driver and libraries it needs are known to be there (see `libraries.rs`); a missing device,
/// a broken driver, or a GPU older than the kernels' compute capability is reported too.
pub fn device(ordinal: usize) -> Result<candle_core::Device, GpuError> {
    super::libraries::check()?;
    let device = candle_core::Device::new_cuda(ordinal).map_err(|e| GpuError::NoDevice {
        ordinal,
        reason: e.to_string(),
    })?;
    super::kernels::check_capability(stream_of(&device)?.context())?;
    Ok(device)
}

/// Stops cudarc from giving each device buffer made from now on its pair of events (two
/// driver calls to create them and two to destroy them, per buffer, several buffers a search).
/// cudarc records into them only once the context has streams of its own; dcd and candle issue
/// everything on the per-thread default stream and order threads by synchronising, so the
/// events order nothing. Affects the whole context (candle's tensors too). False, and nothing
/// changed, where the context does have streams of its own. `dcd bench exact
/// --gpu-buffer-events false` measures it; dcd does not call it otherwise.
pub fn drop_buffer_events(device: &candle_core::Device) -> Result<bool, GpuError> {
    let stream = stream_of(device)?;
    let ctx = stream.context();
    if ctx.is_in_multi_stream_mode() {
        return Ok(false);
    }
    // SAFETY: the context has no stream of its own (checked above; dcd never makes one), so
    // cudarc would never record into these events: no buffer depends on them for ordering.
    unsafe { ctx.disable_event_tracking() };
    Ok(true)
}

pub(super) fn stream_of(device: &candle_core::Device) -> Result<Arc<CudaStream>, GpuError> {
    match device {
        candle_core::Device::Cuda(d) => Ok(d.cuda_stream()),
        other => Err(GpuError::NotCuda {
            device: format!("{other:?}"),
        }),
    }
}

pub(super) fn upload<T: cudarc::driver::DeviceRepr>(
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
        Self::build(device, vectors, dtype, max_rows, max_resident, None)
    }

    /// A half copy (`dtype` f16 or bf16) of the f32 rows `vectors`, made as
    /// [`GpuExact::new`] makes one, with the bounds that certify its answers
    /// ([`GpuExact::search_certified`]), measured while converting the rows (no second pass
    /// over the pool). A value beyond the type's range stops the upload at its segment.
    pub fn new_half_copy(
        device: &candle_core::Device,
        vectors: VectorView<'_>,
        dtype: GpuDtype,
    ) -> Result<(GpuExact, HalfBounds), GpuError> {
        Self::half_copy_with_limits(device, vectors, dtype, usize::MAX, usize::MAX)
    }

    /// As [`GpuExact::new_half_copy`], under [`GpuExact::with_limits`]' limits.
    pub fn half_copy_with_limits(
        device: &candle_core::Device,
        vectors: VectorView<'_>,
        dtype: GpuDtype,
        max_rows: usize,
        max_resident: usize,
    ) -> Result<(GpuExact, HalfBounds), GpuError> {
        let rows = match vectors {
            VectorView::F32 { .. } => "f32",
            VectorView::F16 { .. } => "f16",
        };
        if dtype == GpuDtype::F32 || rows != "f32" {
            return Err(GpuError::NotHalfCopy {
                copy: dtype.name(),
                rows,
            });
        }
        let mut bounds = HalfBounds::new(dtype, vectors.dim());
        let index = Self::build(
            device,
            vectors,
            dtype,
            max_rows,
            max_resident,
            Some(&mut bounds),
        )?;
        Ok((index, bounds))
    }

    /// The copy under the limits; with `bounds`, the rounding of each segment's rows is taken
    /// into them as the rows are converted.
    fn build(
        device: &candle_core::Device,
        vectors: VectorView<'_>,
        dtype: GpuDtype,
        max_rows: usize,
        max_resident: usize,
        mut bounds: Option<&mut HalfBounds>,
    ) -> Result<GpuExact, GpuError> {
        let stream = stream_of(device)?;
        let kernels = Kernels::load(stream.clone())?;
        let gemm = Gemm::new(stream.clone())?;
        let (n, dim) = (vectors.len(), vectors.dim());
        let free = super::memory_pool::free_bytes(&stream)?;
        let elem = dtype.bytes();
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
        while first < n {
            let len = per_segment.min(n - first);
            let host = match bounds.as_deref_mut() {
                Some(bounds) => {
                    let (rows, norms, rounding) =
                        HostRows::convert_rounding(vectors, first, first + len, dtype);
                    bounds.take(first + len, rounding)?;
                    (rows, norms)
                }
                None => HostRows::convert(vectors, first, first + len, dtype),
            };
            // A host segment's norms have room for the rows appends may add to it.
            let segment = if segments.len() < resident {
                Segment::on_device(&stream, host, first, len)?
            } else {
                Segment::on_host(&stream, host, first, per_segment)?
            };
            segments.push(segment);
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
        // Other threads search on their own (per-thread) streams: the copy must be complete
        // before the index is shared.
        stream
            .synchronize()
            .map_err(GpuError::driver("finishing the pool's upload"))?;
        Ok(GpuExact {
            device: device.clone(),
            kernels,
            gemm,
            segments,
            staging,
            dtype,
            dim,
            len: n,
            segment_rows: per_segment,
            limit_rows: max_rows,
            limit_resident: max_resident,
            max_tile_cols: usize::MAX,
            tile_bytes: TILE_BYTES,
            mma_expected: sample::EXPECTED_CANDIDATES,
            stages: None,
            choice: PlanChoice::builtin(dtype),
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
    pub(super) fn device_rows<'s: 'g, 'g>(
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

    /// Sizes the mma plan's sample for `expected` candidates per query (default
    /// [`sample::EXPECTED_CANDIDATES`]): tests use a small one to exercise the sample on small
    /// pools and to make candidate lists overflow.
    pub fn limit_mma_candidates(&mut self, expected: usize) {
        self.mma_expected = expected.max(1);
    }

    /// Times the stages of each search with CUDA events (`dcd bench exact --gpu-stages`), read
    /// back with [`GpuExact::stage_times`]. Off by default: a mark costs a driver call. Meant
    /// for one search at a time; concurrent searches would mix their marks.
    pub fn time_stages(&mut self, on: bool) {
        self.stages = on.then(StageClock::new);
    }

    /// The stages of the last search while [`GpuExact::time_stages`] is on (none when off),
    /// once the device has finished them.
    pub fn stage_times(&self) -> Result<Vec<StageTime>, GpuError> {
        match &self.stages {
            Some(clock) => clock.read(),
            None => Ok(Vec::new()),
        }
    }

    /// Marks the end of a search stage when stages are timed.
    pub(super) fn mark(&self, stage: &'static str) -> Result<(), GpuError> {
        match &self.stages {
            Some(clock) => clock.mark(&self.kernels.stream, stage),
            None => Ok(()),
        }
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
    /// plan beyond [`GpuExact::max_one_pass_k`], else the one-pass plan the choice in force
    /// names ([`GpuExact::plan_choice`]; built in, or measured on this card by
    /// [`GpuExact::measure_plans`]).
    pub fn plan_for(&self, queries: usize, k: usize) -> GpuPlan {
        if k > self.max_one_pass_k() {
            return GpuPlan::Wide;
        }
        self.choice.pick(queries, k)
    }

    /// Which one-pass plan serves a batch: built in until [`GpuExact::measure_plans`] or
    /// [`GpuExact::set_plan_choice`] replaces it.
    pub fn plan_choice(&self) -> &PlanChoice {
        &self.choice
    }

    /// Replaces the choice of one-pass plans (one measured on a copy of the same pool, say).
    pub fn set_plan_choice(&mut self, choice: PlanChoice) {
        self.choice = choice;
    }
}
