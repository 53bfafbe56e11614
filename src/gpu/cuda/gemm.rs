//! The cross term <x, q> of a pool tile with a query batch on the tensor cores (cuBLAS, on the
//! index's stream): f16/bf16 operands with f32 accumulation and output, or plain f32 (no TF32:
//! the f32 path keeps f32 accuracy).

use std::sync::{Arc, Mutex};

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t,
};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::kernels::Rows;
use super::GpuError;

/// Queries converted to the pool's element type, as the GEMM reads them.
pub(super) enum GemmQueries {
    F32(CudaSlice<f32>),
    F16(CudaSlice<half::f16>),
    BF16(CudaSlice<half::bf16>),
}

/// One cuBLAS handle bound to the index's stream (calls are serialised: a handle is not
/// meant for concurrent use).
pub(super) struct Gemm {
    blas: Mutex<CudaBlas>,
}

impl Gemm {
    pub(super) fn new(stream: Arc<CudaStream>) -> Result<Gemm, GpuError> {
        let blas = CudaBlas::new(stream).map_err(GpuError::cublas("creating a cuBLAS handle"))?;
        Ok(Gemm {
            blas: Mutex::new(blas),
        })
    }

    /// dots[q * cols + c] = <row first + c * stride of `rows`, query q> for c < cols, q < nq
    /// (stride 1 but for the mma plan's strided sample).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cross(
        &self,
        stream: &CudaStream,
        rows: &Rows,
        first: usize,
        cols: usize,
        stride: usize,
        dim: usize,
        queries: &GemmQueries,
        nq: usize,
        dots: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let blas = self.blas.lock().unwrap_or_else(|p| p.into_inner());
        let (a, a_type, elem) = match rows {
            Rows::F32(r) => (r.device_ptr(stream), cudaDataType_t::CUDA_R_32F, 4),
            Rows::F16(r) => (r.device_ptr(stream), cudaDataType_t::CUDA_R_16F, 2),
            Rows::BF16(r) => (r.device_ptr(stream), cudaDataType_t::CUDA_R_16BF, 2),
        };
        let b = match queries {
            GemmQueries::F32(q) => q.device_ptr(stream),
            GemmQueries::F16(q) => q.device_ptr(stream),
            GemmQueries::BF16(q) => q.device_ptr(stream),
        };
        let (c, _c_sync) = dots.device_ptr_mut(stream);
        let a_tile = a.0 + (first * dim * elem) as u64;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Column-major view: the tile is a dim x cols matrix (lda = dim * stride: every
        // stride-th row), the queries dim x nq; cols x nq = tile^T . queries is the row-major
        // nq x cols the select kernel reads. The caller keeps first + (cols - 1) * stride below
        // the segment's length; alpha and beta are host f32 as CUBLAS_COMPUTE_32F wants.
        // SAFETY: a_tile points at `cols` rows of `dim` elements, `stride` rows apart, inside
        // the segment, b at nq x dim query elements of the same type, c at nq x cols f32.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                cols as i32,
                nq as i32,
                dim as i32,
                (&alpha as *const f32).cast(),
                a_tile as *const std::ffi::c_void,
                a_type,
                (dim * stride) as i32,
                b.0 as *const std::ffi::c_void,
                a_type,
                dim as i32,
                (&beta as *const f32).cast(),
                c as *mut std::ffi::c_void,
                cudaDataType_t::CUDA_R_32F,
                cols as i32,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(GpuError::cublas("running the cuBLAS cross-term GEMM"))
    }
}
