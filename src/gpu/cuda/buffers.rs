//! Device buffers the kernels read and write: a segment's rows in its element type, and
//! candidate lists of (distance, row id) pairs.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use super::{GpuDtype, GpuError};

/// Device buffers of one device-side pool segment's element type.
pub(super) enum Rows {
    F32(CudaSlice<f32>),
    F16(CudaSlice<half::f16>),
    BF16(CudaSlice<half::bf16>),
}

impl Rows {
    /// `len` zeroed elements of `dtype` (the staging buffer of streamed segments).
    pub(super) fn zeros(
        stream: &Arc<CudaStream>,
        dtype: GpuDtype,
        len: usize,
    ) -> Result<Rows, GpuError> {
        let alloc = GpuError::driver("allocating the staging buffer");
        Ok(match dtype {
            GpuDtype::F32 => Rows::F32(stream.alloc_zeros(len).map_err(alloc)?),
            GpuDtype::F16 => Rows::F16(stream.alloc_zeros(len).map_err(alloc)?),
            GpuDtype::BF16 => Rows::BF16(stream.alloc_zeros(len).map_err(alloc)?),
        })
    }

    pub(super) fn dtype(&self) -> GpuDtype {
        match self {
            Rows::F32(_) => GpuDtype::F32,
            Rows::F16(_) => GpuDtype::F16,
            Rows::BF16(_) => GpuDtype::BF16,
        }
    }
}

/// Candidate lists on the device: per query `per_query` (distance, row id) pairs.
pub(super) struct Lists {
    pub(super) dist: CudaSlice<f32>,
    pub(super) ids: CudaSlice<u32>,
    pub(super) per_query: usize,
}

impl Lists {
    /// Lists with unspecified contents: every caller has a kernel (or [`Kernels::clear`]) write
    /// each pair before anything reads it, so the memset of a zeroed allocation is skipped.
    pub(super) fn new(
        stream: &Arc<CudaStream>,
        nq: usize,
        per_query: usize,
    ) -> Result<Lists, GpuError> {
        let n = nq * per_query;
        // SAFETY: f32 and u32 accept any bit pattern, and no pair is read before it is
        // written (see above), so uninitialised device memory is never observed.
        let (dist, ids) = unsafe { (stream.alloc::<f32>(n), stream.alloc::<u32>(n)) };
        Ok(Lists {
            dist: dist.map_err(GpuError::driver("allocating candidate lists"))?,
            ids: ids.map_err(GpuError::driver("allocating candidate lists"))?,
            per_query,
        })
    }

    /// Copies the lists to the host.
    pub(super) fn download(
        &self,
        stream: &Arc<CudaStream>,
    ) -> Result<(Vec<f32>, Vec<u32>), GpuError> {
        let dist = stream
            .clone_dtoh(&self.dist)
            .map_err(GpuError::driver("reading results"))?;
        let ids = stream
            .clone_dtoh(&self.ids)
            .map_err(GpuError::driver("reading results"))?;
        Ok((dist, ids))
    }
}
