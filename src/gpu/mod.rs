//! Exact k-NN on the GPU with dcd's own kernels (`kernels/l2_topk.cu`, PTX built by build.rs):
//! squared ℓ2 fused with per-query top-k, so the distance matrix never reaches global memory.
//! The pool is resident on the device (f32, f16 or bf16; distances accumulated in f32), split
//! into segments that fit the free device memory, each searched with the same kernels and the
//! per-segment lists merged on the host. Runs on candle's context and stream for the device,
//! so the backbones and the search share one CUDA context.

mod error;

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use half::{bf16, f16};

pub use error::GpuError;

use crate::index::topk::TopK;
use crate::index::{validate_queries, IndexError, RowFilter};
use crate::types::{Matrix, Neighbor, VectorView};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/l2_topk.ptx"));

/// Largest k one selection pass holds (half the rows a block sorts).
pub const MAX_GPU_K: usize = 1024;
/// Threads per block.
const THREADS: u32 = 256;
/// Partial lists (q x chunks x k pairs) kept under this many bytes per launch.
const PARTIAL_BYTES: usize = 256 << 20;
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

enum Rows {
    F32(CudaSlice<f32>),
    F16(CudaSlice<f16>),
    BF16(CudaSlice<bf16>),
}

struct Segment {
    rows: Rows,
    first: usize,
    len: usize,
}

/// A pool resident on one GPU, searched exactly.
pub struct GpuExact {
    stream: Arc<CudaStream>,
    chunk_f32: CudaFunction,
    chunk_f16: CudaFunction,
    chunk_bf16: CudaFunction,
    merge: CudaFunction,
    segments: Vec<Segment>,
    dim: usize,
    len: usize,
}

/// candle's CUDA device `ordinal` (its context and stream are the ones dcd uses).
///
/// candle links libcuda dynamically at build time, so a `cuda` build does not start at all
/// where no driver is installed; a missing device or a broken driver is reported here.
pub fn device(ordinal: usize) -> Result<candle_core::Device, GpuError> {
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
        let stream = stream_of(device)?;
        let ctx = stream.context().clone();
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(PTX))
            .map_err(GpuError::driver("loading dcd's kernels"))?;
        let load = |name: &'static str| {
            module
                .load_function(name)
                .map_err(GpuError::driver("finding a kernel"))
        };
        let (n, dim) = (vectors.len(), vectors.dim());
        let (free, _) = ctx
            .mem_get_info()
            .map_err(GpuError::driver("reading free memory"))?;
        let elem = match dtype {
            GpuDtype::F32 => 4,
            GpuDtype::F16 | GpuDtype::BF16 => 2,
        };
        let budget = ((free as f64 * POOL_SHARE) as usize).max(elem * dim);
        let per_segment = (budget / (elem * dim.max(1)))
            .min(max_rows)
            .clamp(1, u32::MAX as usize);
        let mut segments = Vec::new();
        let mut first = 0;
        let mut scratch = Vec::new();
        while first < n {
            let len = per_segment.min(n - first);
            scratch.resize(len * dim, 0.0f32);
            vectors.copy_rows_f32(first, first + len, &mut scratch);
            let rows = match dtype {
                GpuDtype::F32 => Rows::F32(
                    stream
                        .clone_htod(&scratch)
                        .map_err(GpuError::driver("uploading the pool"))?,
                ),
                GpuDtype::F16 => {
                    let h: Vec<f16> = scratch.iter().map(|&v| f16::from_f32(v)).collect();
                    Rows::F16(
                        stream
                            .clone_htod(&h)
                            .map_err(GpuError::driver("uploading the pool"))?,
                    )
                }
                GpuDtype::BF16 => {
                    let h: Vec<bf16> = scratch.iter().map(|&v| bf16::from_f32(v)).collect();
                    Rows::BF16(
                        stream
                            .clone_htod(&h)
                            .map_err(GpuError::driver("uploading the pool"))?,
                    )
                }
            };
            segments.push(Segment { rows, first, len });
            first += len;
        }
        Ok(GpuExact {
            chunk_f32: load("l2_topk_chunk_f32")?,
            chunk_f16: load("l2_topk_chunk_f16")?,
            chunk_bf16: load("l2_topk_chunk_bf16")?,
            merge: load("merge_topk")?,
            stream,
            segments,
            dim,
            len: n,
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

    /// The `k` nearest rows to each query, best first, ties by row id; only rows `filter`
    /// allows when given.
    pub fn search(
        &self,
        queries: &Matrix,
        k: usize,
        filter: Option<&RowFilter>,
    ) -> Result<Vec<Vec<Neighbor>>, crate::error::Error> {
        validate_queries(self.dim, queries, k)?;
        if self.is_empty() {
            return Err(IndexError::EmptyPool.into());
        }
        if k > MAX_GPU_K {
            return Err(GpuError::KTooLarge { k, max: MAX_GPU_K }.into());
        }
        let bitmap = match filter {
            Some(f) => Some(
                self.stream
                    .clone_htod(&f.words32(self.len))
                    .map_err(GpuError::driver("uploading the filter"))?,
            ),
            None => None,
        };
        let mut heaps: Vec<TopK> = (0..queries.rows).map(|_| TopK::new(k)).collect();
        for seg in &self.segments {
            let k_seg = k.min(seg.len);
            let rows = block_rows(k_seg);
            let chunks = seg.len.div_ceil(rows);
            let batch = (PARTIAL_BYTES / (chunks * k_seg * 8).max(1)).clamp(1, 65_535);
            for start in (0..queries.rows).step_by(batch) {
                let end = (start + batch).min(queries.rows);
                let (dist, ids) =
                    self.search_segment(seg, queries, start..end, k_seg, rows, bitmap.as_ref())?;
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
        Ok(heaps.into_iter().map(TopK::into_neighbors).collect())
    }

    fn search_segment(
        &self,
        seg: &Segment,
        queries: &Matrix,
        range: std::ops::Range<usize>,
        k: usize,
        rows: usize,
        filter: Option<&CudaSlice<u32>>,
    ) -> Result<(Vec<f32>, Vec<u32>), GpuError> {
        let nq = range.len();
        let chunks = seg.len.div_ceil(rows);
        let q = self
            .stream
            .clone_htod(&queries.data[range.start * self.dim..range.end * self.dim])
            .map_err(GpuError::driver("uploading queries"))?;
        let partial = nq * chunks * k;
        let mut part_d = self
            .stream
            .alloc_zeros::<f32>(partial)
            .map_err(GpuError::driver("allocating partial lists"))?;
        let mut part_i = self
            .stream
            .alloc_zeros::<u32>(partial)
            .map_err(GpuError::driver("allocating partial lists"))?;
        let shared = (rows * 8) as u32;
        let cfg = LaunchConfig {
            grid_dim: (chunks as u32, nq as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: shared,
        };
        let (n, dim, offset) = (seg.len as u32, self.dim as u32, seg.first as u32);
        let (rows32, k32) = (rows as u32, k as u32);
        let null: u64 = 0;
        let func = match &seg.rows {
            Rows::F32(_) => &self.chunk_f32,
            Rows::F16(_) => &self.chunk_f16,
            Rows::BF16(_) => &self.chunk_bf16,
        };
        let mut launch = self.stream.launch_builder(func);
        match &seg.rows {
            Rows::F32(r) => launch.arg(r),
            Rows::F16(r) => launch.arg(r),
            Rows::BF16(r) => launch.arg(r),
        };
        launch.arg(&n).arg(&dim).arg(&offset).arg(&q);
        match filter {
            Some(f) => launch.arg(f),
            None => launch.arg(&null),
        };
        launch
            .arg(&rows32)
            .arg(&k32)
            .arg(&mut part_d)
            .arg(&mut part_i);
        // SAFETY: arguments as `l2_topk_chunk_*` (kernels/l2_topk.cu) declares them; outputs
        // of nq * chunks * k, grid chunks x nq, shared memory = the `rows` pairs it indexes.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the distance kernel"))?;
        let mut out_d = self
            .stream
            .alloc_zeros::<f32>(nq * k)
            .map_err(GpuError::driver("allocating results"))?;
        let mut out_i = self
            .stream
            .alloc_zeros::<u32>(nq * k)
            .map_err(GpuError::driver("allocating results"))?;
        let lists = chunks as u32;
        let cfg = LaunchConfig {
            grid_dim: (nq as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: shared,
        };
        let mut merge = self.stream.launch_builder(&self.merge);
        merge
            .arg(&part_d)
            .arg(&part_i)
            .arg(&lists)
            .arg(&k32)
            .arg(&rows32)
            .arg(&mut out_d)
            .arg(&mut out_i);
        // SAFETY: matches `merge_topk` (in_dist, in_ids, lists, k, rows, out_dist, out_ids);
        // the inputs hold nq * lists * k pairs, the outputs nq * k, rows >= 2k.
        unsafe { merge.launch(cfg) }.map_err(GpuError::driver("launching the merge kernel"))?;
        let dist = self
            .stream
            .clone_dtoh(&out_d)
            .map_err(GpuError::driver("reading results"))?;
        let ids = self
            .stream
            .clone_dtoh(&out_i)
            .map_err(GpuError::driver("reading results"))?;
        Ok((dist, ids))
    }
}

/// Rows one block sorts: a power of two at least twice k (so a merge step adds as many
/// candidates as it keeps) and at least 2048.
fn block_rows(k: usize) -> usize {
    (2 * k).next_power_of_two().max(2048)
}
