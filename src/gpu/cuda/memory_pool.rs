//! CUDA's stream-ordered memory pool, which every device buffer of dcd and candle comes from
//! (cudarc allocates with `cuMemAllocAsync` on a device that has pools). Its release threshold
//! is 0 unless set: at every synchronisation the pool hands the memory it holds but does not
//! use back to the driver, and the next allocations map it again. A search allocates its
//! candidate lists and merge levels, frees some before it synchronises to read its answer,
//! and so may pay for that mapping at every call. [`keep_pool_memory`] raises the threshold so
//! freed memory stays in the pool; [`free_bytes`] reads the free device memory with what the
//! pool holds unused given back first, so sizing the resident pool is the same either way.

use std::sync::Arc;

use cudarc::driver::sys::{CUmemPool_attribute, CUmemoryPool};
use cudarc::driver::{result, CudaContext, CudaStream};

use super::exact::stream_of;
use super::GpuError;

/// The device's current memory pool, where cudarc allocates from one.
fn pool_of(ctx: &CudaContext) -> Result<Option<CUmemoryPool>, GpuError> {
    if !ctx.has_async_alloc() {
        return Ok(None);
    }
    ctx.bind_to_thread()
        .map_err(GpuError::driver("binding the context"))?;
    // SAFETY: the device handle is the context's own, valid while the context lives.
    let pool = unsafe { result::device::get_mem_pool(ctx.cu_device()) }
        .map_err(GpuError::driver("reading the device's memory pool"))?;
    Ok(Some(pool))
}

/// Makes the device's memory pool keep the memory dcd and candle free instead of returning it
/// to the driver at each synchronisation (CUDA's default). The process then holds its
/// high-water mark of device memory, as PyTorch's caching allocator does; [`free_bytes`] still
/// counts it as free. False, and nothing changed, on a device without memory pools (cudarc
/// then allocates and frees synchronously). `dcd bench exact --gpu-pool-keep true` measures
/// it; dcd does not call it otherwise.
pub fn keep_pool_memory(device: &candle_core::Device) -> Result<bool, GpuError> {
    let stream = stream_of(device)?;
    let Some(pool) = pool_of(stream.context())? else {
        return Ok(false);
    };
    let mut threshold: u64 = u64::MAX;
    // SAFETY: `pool` is the device's live pool; the release threshold is a cuuint64_t, and
    // `threshold` is one, alive for the call.
    unsafe {
        result::mem_pool::set_attribute(
            pool,
            CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
    }
    .map_err(GpuError::driver(
        "setting the memory pool's release threshold",
    ))?;
    Ok(true)
}

/// Bytes of device memory free for a new buffer: the driver's count once the pool has handed
/// back what it holds unused (which it keeps after [`keep_pool_memory`]).
pub(super) fn free_bytes(stream: &Arc<CudaStream>) -> Result<usize, GpuError> {
    let ctx = stream.context();
    if let Some(pool) = pool_of(ctx)? {
        // SAFETY: `pool` is the device's live pool; trimming releases only memory no
        // allocation uses, so no buffer is touched.
        unsafe { result::mem_pool::trim_to(pool, 0) }
            .map_err(GpuError::driver("trimming the memory pool"))?;
    }
    let (free, _) = ctx
        .mem_get_info()
        .map_err(GpuError::driver("reading free memory"))?;
    Ok(free)
}
