//! The `mma` plan on one segment. Each query's k-th distance over an evenly strided sample of
//! the segment (cuBLAS and the select kernel, as the gemm plan, on every stride-th row) bounds
//! its k-th over the whole segment. One kernel of dcd's own (`kernels/l2_mma.cu`) then computes
//! every cross term on the tensor cores (f16/bf16 as they are, f32 as 3xTF32: about f32's
//! accuracy at three TF32 products a term, where cuBLAS's SGEMM takes the CUDA cores) and
//! appends, per query, the rows at or below the bound to a candidate list; the radix merge
//! takes the best k of each list and their distances are recomputed exactly. No tile of cross
//! terms reaches global memory, which is where the gemm plan spends its time.
//!
//! A segment too small for a sample to pay ([`sample::sample`]), a query whose list overflows
//! its room (a sample that misjudged the data), or a device whose blocks cannot hold the
//! kernel's shared memory, sends the segment to the gemm plan; the search then reports gemm.

use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

use super::exact::GpuExact;
use super::gemm::GemmQueries;
use super::kernels::{Lists, Rows, THREADS};
use super::search::{GemmBatch, SegmentBatch};
use super::GpuError;
use super::{mma_shape, sample, GpuDtype};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/l2_mma.ptx"));

/// The mma plan's kernels, loaded once with the others.
pub(super) struct MmaKernels {
    f16: CudaFunction,
    bf16: CudaFunction,
    f32: CudaFunction,
    fill_tail: CudaFunction,
    /// False on devices whose blocks cannot have the kernels' shared memory.
    usable: bool,
}

impl MmaKernels {
    /// Loads l2_mma.cu's module; `shared` is the shared memory a block may opt into.
    pub(super) fn load(ctx: &Arc<CudaContext>, shared: usize) -> Result<MmaKernels, GpuError> {
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(PTX))
            .map_err(GpuError::driver("loading dcd's mma kernels"))?;
        let function = |name: &str| {
            module
                .load_function(name)
                .map_err(GpuError::driver("finding a kernel"))
        };
        let (f16, bf16) = (function("l2_mma_f16")?, function("l2_mma_bf16")?);
        let f32 = function("l2_mma_f32")?;
        let dtypes = [GpuDtype::F16, GpuDtype::BF16, GpuDtype::F32];
        let usable = dtypes.iter().all(|&d| shared >= mma_shape::shared_bytes(d));
        if usable {
            for (f, dtype) in [&f16, &bf16, &f32].into_iter().zip(dtypes) {
                f.set_attribute(
                    CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    mma_shape::shared_bytes(dtype) as i32,
                )
                .map_err(GpuError::driver("raising a kernel's shared memory limit"))?;
            }
        }
        Ok(MmaKernels {
            f16,
            bf16,
            f32,
            fill_tail: function("fill_tail")?,
            usable,
        })
    }

    /// Appends to `cand` (room pairs per query; `count` zeroed, nq) every row of the segment
    /// whose distance to query q is at most `bound[q * bound_stride]` plus the kernel's slack.
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        stream: &Arc<CudaStream>,
        sms: usize,
        on: &SegmentBatch<'_>,
        dim: usize,
        gemm: &GemmBatch,
        bound: &CudaView<'_, f32>,
        bound_stride: usize,
        count: &mut CudaSlice<u32>,
        cand: &mut Lists,
    ) -> Result<(), GpuError> {
        let (seg, rows, nq, filter) = (on.seg, on.rows, on.nq, on.filter);
        let (queries, qnorm) = (&gemm.queries, &gemm.norms);
        let func = match rows {
            Rows::F16(_) => &self.f16,
            Rows::BF16(_) => &self.bf16,
            Rows::F32(_) => &self.f32,
        };
        let shared = mma_shape::shared_bytes(rows.dtype());
        let per_sm = func
            .occupancy_max_active_blocks_per_multiprocessor(THREADS, shared, None)
            .map_err(GpuError::driver("reading occupancy"))?
            .max(1) as usize;
        // One wave of blocks, each striding over row tiles; the blocks of a part run side by
        // side over the same rows, so the pool comes from memory about once.
        let query_tiles = nq.div_ceil(mma_shape::QUERIES_PER_TILE);
        let row_tiles = seg.len.div_ceil(mma_shape::rows_per_tile(rows.dtype()));
        let parts = (sms * per_sm)
            .div_ceil(query_tiles)
            .clamp(1, row_tiles.clamp(1, 65_535));
        let cfg = LaunchConfig {
            grid_dim: (query_tiles as u32, parts as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let (n32, dim32, off32, nq32) = (seg.len as u32, dim as u32, seg.first as u32, nq as u32);
        let (stride32, room32) = (bound_stride as u32, cand.per_query as u32);
        let null = 0u64;
        let mut launch = stream.launch_builder(func);
        match rows {
            Rows::F16(r) => launch.arg(r),
            Rows::BF16(r) => launch.arg(r),
            Rows::F32(r) => launch.arg(r),
        };
        launch.arg(&n32).arg(&dim32).arg(&off32);
        match queries {
            GemmQueries::F16(q) => launch.arg(q),
            GemmQueries::BF16(q) => launch.arg(q),
            GemmQueries::F32(q) => launch.arg(q),
        };
        launch.arg(&nq32).arg(qnorm).arg(&seg.norms);
        match filter {
            Some(f) => launch.arg(f),
            None => launch.arg(&null),
        };
        launch
            .arg(bound)
            .arg(&stride32)
            .arg(&room32)
            .arg(count)
            .arg(&mut cand.dist)
            .arg(&mut cand.ids);
        // The kernel traps on less shared memory than its type's (allowed at load: usable).
        // SAFETY: arguments in `l2_mma_*` 's order: the segment's len x dim rows and len norms,
        // nq x dim queries of the pool's type and nq norms, bound at q * bound_stride for q <
        // nq, count nq, cand nq x room.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the mma kernel"))?;
        Ok(())
    }

    /// Pads each query's list past its count with empty pairs up to `m`.
    fn fill_tail(
        &self,
        stream: &Arc<CudaStream>,
        count: &CudaSlice<u32>,
        nq: usize,
        m: usize,
        cand: &mut Lists,
    ) -> Result<(), GpuError> {
        assert!(m <= cand.per_query, "padding past the room");
        let cfg = LaunchConfig {
            grid_dim: (nq as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (room32, m32) = (cand.per_query as u32, m as u32);
        let mut launch = stream.launch_builder(&self.fill_tail);
        launch
            .arg(count)
            .arg(&room32)
            .arg(&m32)
            .arg(&mut cand.dist)
            .arg(&mut cand.ids);
        // SAFETY: `fill_tail(count, cap, m, d, id)`: count nq, lists nq x cap, m <= cap.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the fill kernel"))?;
        Ok(())
    }
}

impl GpuExact {
    /// The mma plan on one segment: nq x k lists with exact distances, or `None` where the
    /// gemm plan must search the segment instead (see the module's header).
    pub(super) fn mma_segment(
        &self,
        on: &SegmentBatch<'_>,
        gemm: &GemmBatch,
    ) -> Result<Option<Lists>, GpuError> {
        let (seg, nq, k) = (on.seg, on.nq, on.k);
        let kernels = &self.kernels;
        if !kernels.mma.usable {
            return Ok(None);
        }
        let expected = sample::expected(k, self.mma_expected);
        let Some(sample) = sample::sample(seg.len, k, expected) else {
            return Ok(None);
        };
        let stream = &kernels.stream;
        let bound = self.gemm_best(on, gemm, sample.stride, sample.rows)?;
        let room = sample::room(k, expected);
        let mut cand = Lists::new(stream, nq, room)?;
        let mut count = stream
            .alloc_zeros::<u32>(nq)
            .map_err(GpuError::driver("allocating candidate counts"))?;
        // Query q's k-th over the sample is pair k - 1 of its sorted list.
        kernels.mma.scan(
            stream,
            kernels.sms,
            on,
            self.dim,
            gemm,
            &bound.dist.slice(k - 1..),
            k,
            &mut count,
            &mut cand,
        )?;
        self.mark("mma scan")?;
        let counts = stream
            .clone_dtoh(&count)
            .map_err(GpuError::driver("reading candidate counts"))?;
        self.mark("counts read")?;
        let most = counts.iter().copied().max().unwrap_or(0) as usize;
        if most > room {
            tracing::debug!(
                most,
                room,
                rows = seg.len,
                "mma plan: a candidate list overflowed; the gemm plan searches this segment"
            );
            return Ok(None);
        }
        let m = most.max(k);
        kernels.mma.fill_tail(stream, &count, nq, m, &mut cand)?;
        let mut lists = kernels.merge_prefix(&cand, nq, m, k)?;
        self.mark("candidate merge")?;
        self.refine_lists(on, &mut lists)?;
        self.mark("refine")?;
        Ok(Some(lists))
    }
}
