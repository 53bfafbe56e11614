//! dcd's CUDA kernels (`kernels/l2_topk.cu`, PTX built by build.rs): loaded once per index and
//! launched with the argument lists the `.cu` file declares. Every launch here is one `unsafe`
//! block whose SAFETY note names the buffer sizes it relies on.

use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute_enum};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};

pub(super) use super::buffers::{Lists, Rows};
use super::mma::MmaKernels;
use super::topk_shape::{best_bytes, list_pairs, merge_bytes, ROUND};
use super::{GpuDtype, GpuError};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/l2_topk.ptx"));

/// Threads per block of the scan, select and refine kernels.
pub(super) const THREADS: u32 = 256;
/// Threads per block of the radix merge (it owns two histogram bins per thread).
const MERGE_THREADS: u32 = 1024;
/// Shared memory past the 48 KiB default that the large-k launches may use (H100 allows 227
/// KiB per block; older cards less, read at load).
const MAX_SHARED: usize = 160 << 10;
/// Queries one block serves: the kernels are instantiated for these group sizes.
const GROUPS: [usize; 4] = [1, 2, 4, 8];

/// The loaded kernels and what launching them needs to know about the device.
pub(super) struct Kernels {
    pub(super) stream: Arc<CudaStream>,
    scan: [[CudaFunction; 4]; 3],
    select: [CudaFunction; 4],
    refine: [CudaFunction; 3],
    merge: CudaFunction,
    fill: CudaFunction,
    wide: CudaFunction,
    /// The mma plan's kernels (a module of their own, kernels/l2_mma.cu).
    pub(super) mma: MmaKernels,
    pub(super) sms: usize,
    /// Largest k one block's shared memory holds on this device.
    pub(super) max_k: usize,
    /// Largest k the merge kernel selects (the wide plan's cap).
    pub(super) max_wide_k: usize,
}

fn dtype_index(dtype: GpuDtype) -> usize {
    match dtype {
        GpuDtype::F32 => 0,
        GpuDtype::F16 => 1,
        GpuDtype::BF16 => 2,
    }
}

/// Lists one merge block folds; more are merged in a tree of such steps.
const FANIN: usize = 128;

/// Lists per query to allocate for `parts` block outputs: padded to a multiple of FANIN when
/// the merge takes more than one step, so every step's blocks read whole groups.
pub(super) fn padded_lists(parts: usize) -> usize {
    if parts <= FANIN {
        parts
    } else {
        parts.next_multiple_of(FANIN)
    }
}

/// A launch shape: queries per block, query groups, parts of the pool per group, lists per
/// query in the output (parts, padded for the merge tree).
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub(super) group: usize,
    pub(super) groups: usize,
    pub(super) parts: usize,
    pub(super) lists: usize,
    pub(super) kp: usize,
}

/// The compute capability the kernels' PTX was built for (build.rs, `CUDA_COMPUTE_CAP`).
fn built_for() -> u32 {
    env!("DCD_CUDA_COMPUTE_CAP")
        .parse()
        .expect("build.rs writes DCD_CUDA_COMPUTE_CAP as a number")
}

/// The device's compute capability, 10 * major + minor.
pub(super) fn compute_capability(ctx: &CudaContext) -> Result<u32, GpuError> {
    let attribute = |a| {
        ctx.attribute(a)
            .map_err(GpuError::driver("reading the compute capability"))
    };
    let major = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok((major.max(0) * 10 + minor.max(0)) as u32)
}

/// Refuses a GPU older than the kernels' compute capability: the driver JIT-compiles PTX for
/// that capability and newer only, and would otherwise fail at the first load with a bare
/// "invalid PTX".
pub(super) fn check_capability(ctx: &CudaContext) -> Result<(), GpuError> {
    let device = compute_capability(ctx)?;
    let built = built_for();
    if device < built {
        return Err(GpuError::ComputeCapability { device, built });
    }
    Ok(())
}

impl Kernels {
    pub(super) fn load(stream: Arc<CudaStream>) -> Result<Kernels, GpuError> {
        let ctx = stream.context().clone();
        check_capability(&ctx)?;
        let shared = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(GpuError::driver("reading the shared memory limit"))?
            .max(48 << 10) as usize;
        let shared = shared.min(MAX_SHARED);
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(PTX))
            .map_err(GpuError::driver("loading dcd's kernels"))?;
        let load = |name: String| -> Result<CudaFunction, GpuError> {
            let f = module
                .load_function(&name)
                .map_err(GpuError::driver("finding a kernel"))?;
            f.set_attribute(
                CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shared as i32,
            )
            .map_err(GpuError::driver("raising a kernel's shared memory limit"))?;
            Ok(f)
        };
        let by_group = |prefix: &str| -> Result<[CudaFunction; 4], GpuError> {
            Ok([
                load(format!("{prefix}_g1"))?,
                load(format!("{prefix}_g2"))?,
                load(format!("{prefix}_g4"))?,
                load(format!("{prefix}_g8"))?,
            ])
        };
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(GpuError::driver("reading the multiprocessor count"))?
            .max(1) as usize;
        Ok(Kernels {
            scan: [
                by_group("l2_scan_f32")?,
                by_group("l2_scan_f16")?,
                by_group("l2_scan_bf16")?,
            ],
            select: by_group("l2_select")?,
            refine: [
                load("l2_refine_f32".into())?,
                load("l2_refine_f16".into())?,
                load("l2_refine_bf16".into())?,
            ],
            merge: load("merge_k".into())?,
            fill: load("fill_empty".into())?,
            wide: load("wide_tile".into())?,
            mma: MmaKernels::load(&ctx, shared)?,
            sms,
            max_k: max_k(shared),
            max_wide_k: max_wide_k(shared),
            stream,
        })
    }

    /// How to spread `nq` queries over `rows` pool rows (the scan of `scan` pools) or tile
    /// columns (the select kernel, `None`): groups of up to 8 queries, and enough parts of the rows that the device holds about one full wave of
    /// blocks, within `partial_pairs` output pairs.
    pub(super) fn shape(
        &self,
        scan: Option<GpuDtype>,
        nq: usize,
        rows: usize,
        k: usize,
        partial_pairs: usize,
    ) -> Result<Shape, GpuError> {
        let kp = list_pairs(k);
        // The select kernel serves one query per block: its queries share no memory traffic
        // (each reads its own row of cross terms), and a fold sorts every list of the block.
        let widest = if scan.is_some() { GROUPS.len() - 1 } else { 0 };
        let mut gi = GROUPS
            .iter()
            .position(|&g| g >= nq)
            .unwrap_or(widest)
            .min(widest);
        while gi > 0 && best_bytes(GROUPS[gi], kp) > 48 << 10 {
            gi -= 1;
        }
        let group = GROUPS[gi];
        let groups = nq.div_ceil(group);
        let kernel = match scan {
            Some(dtype) => self.scan_function(dtype, group),
            None => self.select_function(group),
        };
        let per_sm = kernel
            .occupancy_max_active_blocks_per_multiprocessor(THREADS, best_bytes(group, kp), None)
            .map_err(GpuError::driver("reading occupancy"))?
            .max(1) as usize;
        let wave = self.sms * per_sm;
        let parts = wave
            .div_ceil(groups)
            .min(rows.div_ceil(ROUND))
            .min(partial_pairs / (nq * k).max(1) / 2)
            .clamp(1, 65_535);
        Ok(Shape {
            group,
            groups,
            parts,
            lists: padded_lists(parts),
            kp,
        })
    }

    fn scan_function(&self, dtype: GpuDtype, group: usize) -> &CudaFunction {
        &self.scan[dtype_index(dtype)][group_index(group)]
    }

    fn select_function(&self, group: usize) -> &CudaFunction {
        &self.select[group_index(group)]
    }

    /// Fused distance + running top-k over one segment: `out` gets nq x parts x k pairs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan(
        &self,
        rows: &Rows,
        len: usize,
        dim: usize,
        row_offset: usize,
        queries: &CudaSlice<f32>,
        nq: usize,
        filter: Option<&CudaSlice<u32>>,
        k: usize,
        shape: Shape,
        out: &mut Lists,
    ) -> Result<(), GpuError> {
        assert_eq!(out.per_query, shape.lists * k, "scan output lists");
        let mut gthr = self.thresholds(nq)?;
        let func = self.scan_function(rows.dtype(), shape.group);
        let lists32 = shape.lists as u32;
        let cfg = LaunchConfig {
            grid_dim: (shape.groups as u32, shape.parts as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: best_bytes(shape.group, shape.kp) as u32,
        };
        let (n32, dim32, off32, nq32) = (len as u32, dim as u32, row_offset as u32, nq as u32);
        let (k32, kp32) = (k as u32, shape.kp as u32);
        let null = 0u64;
        let mut launch = self.stream.launch_builder(func);
        match rows {
            Rows::F32(r) => launch.arg(r),
            Rows::F16(r) => launch.arg(r),
            Rows::BF16(r) => launch.arg(r),
        };
        launch
            .arg(&n32)
            .arg(&dim32)
            .arg(&off32)
            .arg(queries)
            .arg(&nq32);
        match filter {
            Some(f) => launch.arg(f),
            None => launch.arg(&null),
        };
        launch
            .arg(&k32)
            .arg(&kp32)
            .arg(&mut gthr)
            .arg(&lists32)
            .arg(&mut out.dist)
            .arg(&mut out.ids);
        // SAFETY: arguments in `l2_scan_*` 's order; pool len x dim, queries nq x dim, gthr nq,
        // out nq x lists x k (asserted above), filter over every row; smem as best_bytes.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the scan kernel"))?;
        Ok(())
    }

    /// The GEMM path's epilogue for one tile (column c: segment row first + c * stride):
    /// continues the lists in `state`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn select(
        &self,
        dots: &CudaSlice<f32>,
        cols: usize,
        first: usize,
        stride: usize,
        row_offset: usize,
        xnorm: &CudaSlice<f32>,
        qnorm: &CudaSlice<f32>,
        nq: usize,
        filter: Option<&CudaSlice<u32>>,
        k: usize,
        shape: Shape,
        gthr: &mut CudaSlice<u32>,
        state: &mut SelectState,
        last: bool,
    ) -> Result<(), GpuError> {
        assert_eq!(state.best.per_query, shape.lists * k, "select state lists");
        assert_eq!(
            state.buffered.per_query,
            shape.lists * 3 * shape.kp,
            "select buffers"
        );
        let last32 = u32::from(last);
        let func = self.select_function(shape.group);
        let lists32 = shape.lists as u32;
        let cfg = LaunchConfig {
            grid_dim: (shape.groups as u32, shape.parts as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: best_bytes(shape.group, shape.kp) as u32,
        };
        let (cols32, first32, stride32, off32, nq32) = (
            cols as u32,
            first as u32,
            stride as u32,
            row_offset as u32,
            nq as u32,
        );
        let (k32, kp32) = (k as u32, shape.kp as u32);
        let null = 0u64;
        let mut launch = self.stream.launch_builder(func);
        launch
            .arg(dots)
            .arg(&cols32)
            .arg(&cols32)
            .arg(&first32)
            .arg(&stride32)
            .arg(&off32)
            .arg(xnorm)
            .arg(qnorm)
            .arg(&nq32);
        match filter {
            Some(f) => launch.arg(f),
            None => launch.arg(&null),
        };
        launch
            .arg(&k32)
            .arg(&kp32)
            .arg(gthr)
            .arg(&lists32)
            .arg(&mut state.best.dist)
            .arg(&mut state.best.ids)
            .arg(&mut state.buffered.dist)
            .arg(&mut state.buffered.ids)
            .arg(&mut state.counts)
            .arg(&last32);
        // SAFETY: arguments in `l2_select_*` 's order; dots nq x cols, xnorm longer than
        // first + (cols - 1) * stride, qnorm/gthr nq, state and buffers as asserted above
        // (counts zeroed); smem as the scan.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the select kernel"))?;
        Ok(())
    }

    /// The best k of each query's lists (`lists.per_query / k` of them, k pairs each), sorted:
    /// nq x k pairs. More than FANIN lists are folded FANIN at a time, level by level, so each
    /// block of the radix merge reads a few thousand pairs and many blocks run at once.
    pub(super) fn merge(&self, lists: Lists, nq: usize, k: usize) -> Result<Lists, GpuError> {
        let mut lists = lists;
        loop {
            let per_query = lists.per_query / k;
            if per_query == 1 {
                return Ok(lists);
            }
            let fan = per_query.min(FANIN);
            let groups = per_query / fan;
            let next = padded_lists(groups);
            let mut out = Lists::new(&self.stream, nq, next * k)?;
            if next != groups {
                self.clear(&mut out)?;
            }
            self.merge_step(&lists, nq, groups, next, fan * k, k, &mut out)?;
            lists = out;
        }
    }

    /// The best k of the first m pairs of each query's list (k <= m <= per_query), sorted:
    /// nq x k pairs, in one merge step per query.
    pub(super) fn merge_prefix(
        &self,
        lists: &Lists,
        nq: usize,
        m: usize,
        k: usize,
    ) -> Result<Lists, GpuError> {
        assert!(
            k <= m && m <= lists.per_query,
            "merge of {m} pairs for k = {k}"
        );
        let mut out = Lists::new(&self.stream, nq, k)?;
        self.merge_step(lists, nq, 1, 1, m, k, &mut out)?;
        Ok(out)
    }

    /// One level: block (q, g) folds pairs [g * m, (g + 1) * m) of query q into list g of
    /// `out` (`out_lists` lists per query).
    #[allow(clippy::too_many_arguments)]
    fn merge_step(
        &self,
        lists: &Lists,
        nq: usize,
        groups: usize,
        out_lists: usize,
        m: usize,
        k: usize,
        out: &mut Lists,
    ) -> Result<(), GpuError> {
        let kp = k.next_power_of_two();
        let cfg = LaunchConfig {
            grid_dim: (groups as u32, nq as u32, 1),
            block_dim: (MERGE_THREADS, 1, 1),
            shared_mem_bytes: merge_bytes(kp) as u32,
        };
        let (m32, k32, kp32) = (m as u32, k as u32, kp as u32);
        let (in_stride, out_stride) = ((lists.per_query) as u64, (out_lists * k) as u64);
        let mut launch = self.stream.launch_builder(&self.merge);
        launch
            .arg(&lists.dist)
            .arg(&lists.ids)
            .arg(&in_stride)
            .arg(&m32)
            .arg(&k32)
            .arg(&kp32)
            .arg(&out_stride)
            .arg(&mut out.dist)
            .arg(&mut out.ids);
        // SAFETY: arguments in `merge_k` 's order; block (g, q) reads q * in_stride + g * m ..
        // + m (groups * m <= per_query) and writes k pairs inside out; m >= k; smem merge_bytes.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the merge kernel"))?;
        Ok(())
    }

    /// Replaces the distances of `lists` (nq x k, ids global) by exact ones.
    pub(super) fn refine(
        &self,
        rows: &Rows,
        dim: usize,
        row_offset: usize,
        queries: &CudaSlice<f32>,
        nq: usize,
        lists: &mut Lists,
    ) -> Result<(), GpuError> {
        let k = lists.per_query;
        let func = &self.refine[dtype_index(rows.dtype())];
        let cfg = LaunchConfig {
            grid_dim: (nq as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (dim32, off32, k32) = (dim as u32, row_offset as u32, k as u32);
        let mut launch = self.stream.launch_builder(func);
        match rows {
            Rows::F32(r) => launch.arg(r),
            Rows::F16(r) => launch.arg(r),
            Rows::BF16(r) => launch.arg(r),
        };
        launch
            .arg(&dim32)
            .arg(&off32)
            .arg(queries)
            .arg(&k32)
            .arg(&mut lists.dist)
            .arg(&lists.ids);
        // SAFETY: `l2_refine_*(pool, dim, row_offset, queries, k, dist, ids)`: ids are rows
        // of this segment (row_offset + local) or NO_ROW, queries nq x dim, lists nq x k.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the refine kernel"))?;
        Ok(())
    }

    /// The wide plan's candidates for one tile: per query the `carried` best k (none: the
    /// first tile) then `span` slots, the first `cols` of them the tile's columns. `out` must
    /// hold k + span pairs per query.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn wide_tile(
        &self,
        dots: &CudaSlice<f32>,
        cols: usize,
        first: usize,
        row_offset: usize,
        xnorm: &CudaSlice<f32>,
        qnorm: &CudaSlice<f32>,
        nq: usize,
        filter: Option<&CudaSlice<u32>>,
        k: usize,
        carried: Option<&Lists>,
        out: &mut Lists,
    ) -> Result<(), GpuError> {
        assert!(out.per_query >= k + cols, "wide tile output");
        if let Some(c) = carried {
            assert_eq!(c.per_query, k, "carried lists");
        }
        let span = out.per_query - k;
        let cfg = LaunchConfig {
            grid_dim: (
                out.per_query.div_ceil(THREADS as usize).clamp(1, 1024) as u32,
                nq as u32,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (cols32, span32, first32, off32, k32) = (
            cols as u32,
            span as u32,
            first as u32,
            row_offset as u32,
            k as u32,
        );
        let null = 0u64;
        let mut launch = self.stream.launch_builder(&self.wide);
        launch
            .arg(dots)
            .arg(&cols32)
            .arg(&span32)
            .arg(&first32)
            .arg(&off32)
            .arg(xnorm)
            .arg(qnorm);
        match filter {
            Some(f) => launch.arg(f),
            None => launch.arg(&null),
        };
        launch.arg(&k32);
        match carried {
            Some(c) => launch.arg(&c.dist).arg(&c.ids),
            None => launch.arg(&null).arg(&null),
        };
        launch.arg(&mut out.dist).arg(&mut out.ids);
        // SAFETY: arguments in `wide_tile` 's order; dots nq x cols (row stride cols), xnorm >=
        // first + cols, qnorm nq, carried nq x k (asserted) or null, out nq x (k + span).
        unsafe { launch.launch(cfg) }
            .map_err(GpuError::driver("launching the wide tile kernel"))?;
        Ok(())
    }

    /// Per-query shared thresholds, +inf to start.
    pub(super) fn thresholds(&self, nq: usize) -> Result<CudaSlice<u32>, GpuError> {
        self.stream
            .clone_htod(&vec![f32::INFINITY.to_bits(); nq])
            .map_err(GpuError::driver("uploading thresholds"))
    }

    /// Sets every pair of `lists` to (+inf, no row).
    pub(super) fn clear(&self, lists: &mut Lists) -> Result<(), GpuError> {
        let n = lists.dist.len();
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(THREADS as usize).clamp(1, 4096) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let n64 = n as u64;
        let mut launch = self.stream.launch_builder(&self.fill);
        launch.arg(&mut lists.dist).arg(&mut lists.ids).arg(&n64);
        // SAFETY: `fill_empty(d, id, n)` writes n floats and n ids, the lengths of both.
        unsafe { launch.launch(cfg) }.map_err(GpuError::driver("launching the fill kernel"))?;
        Ok(())
    }
}

fn group_index(group: usize) -> usize {
    GROUPS.iter().position(|&g| g == group).unwrap_or(0)
}

/// Largest power-of-two k whose scan (one query per block) and merge fit `shared` bytes.
fn max_k(shared: usize) -> usize {
    let mut k = 1;
    while best_bytes(1, list_pairs(2 * k)) <= shared && merge_bytes(list_pairs(2 * k)) <= shared {
        k *= 2;
    }
    k
}

/// Largest power-of-two k whose merge (the only shared-memory list of the wide plan) fits.
fn max_wide_k(shared: usize) -> usize {
    let mut k = 1;
    while merge_bytes(2 * k) <= shared {
        k *= 2;
    }
    k
}

/// What the select kernel carries from one tile to the next: each part's best k and its
/// unfolded buffer.
pub(super) struct SelectState {
    pub(super) best: Lists,
    pub(super) buffered: Lists,
    pub(super) counts: CudaSlice<u32>,
}

impl SelectState {
    pub(super) fn new(
        kernels: &Kernels,
        nq: usize,
        k: usize,
        shape: Shape,
    ) -> Result<Self, GpuError> {
        let mut best = Lists::new(&kernels.stream, nq, shape.lists * k)?;
        kernels.clear(&mut best)?;
        Ok(SelectState {
            best,
            buffered: Lists::new(&kernels.stream, nq, shape.lists * 3 * shape.kp)?,
            counts: kernels
                .stream
                .alloc_zeros::<u32>(nq * shape.lists)
                .map_err(GpuError::driver("allocating buffer counts"))?,
        })
    }
}
