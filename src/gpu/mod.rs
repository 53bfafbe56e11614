//! Exact k-NN on the GPU with dcd's own kernels (`kernels/l2_topk.cu`, PTX built by build.rs).
//! The pool is resident on the device (f32, f16 or bf16; distances accumulated in f32), split
//! into segments that fit the free device memory, each searched on the device and the
//! per-segment lists merged on the host. Two plans ([`GpuPlan`]): `fused` computes squared ℓ2
//! and keeps each query's running top-k in one kernel, so no distance matrix exists at all;
//! `gemm` gets the cross term of a pool tile from cuBLAS on the tensor cores and a fused
//! add-norms-and-select kernel consumes the tile, then re-computes the chosen rows' distances
//! exactly. [`GpuExact::plan_for`] picks by query batch size ([`plan`]): from thresholds
//! measured on an H100, or from timings on the card at hand ([`GpuExact::measure_plans`]).
//! Both keep the running lists in shared memory, which caps k; beyond it the `wide` plan keeps
//! them in global memory and folds each GEMM tile into them with the radix merge. The `mma`
//! plan (taken only when asked for or measured faster) puts the cross term on the tensor
//! cores in a kernel of dcd's own (f32 pools as 3xTF32) that selects in its epilogue, against
//! a bound from a strided sample.
//! An f32 pool can be held as an f16 or bf16 copy and still answered exactly
//! ([`GpuExact::search_certified`]): the copy proposes candidates, the host scores them from
//! the f32 rows and certifies that no other row can be among the best ([`certified`]).
//! Runs on candle's context and stream for the device, so the backbones and the search share
//! one CUDA context. A pool that grows is appended to the copy ([`GpuExact::append`]), not
//! uploaded again.
//!
//! Two rooms: `cuda/`, everything that talks to the device, behind the one `cuda` feature;
//! and the modules here, compiled and tested on every build: [`certified`] (the certificate
//! of a half copy's answers), [`growth`] (how the copy takes appended rows), [`host`] (rows
//! converted to the device's element type), [`mma_shape`] and [`sample`] (the mma plan's tile
//! shapes and sizing), [`plan`] (the plans and the choice among them from timings),
//! [`plan_cache`] (those timings saved beside a pool), [`stage_times`] (the arithmetic of a
//! search's stage timings) and [`topk_shape`] (the top-k kernels' shared memory).

pub mod certified;
pub mod growth;
pub mod host;
pub mod mma_shape;
pub mod plan;
pub mod plan_cache;
pub mod sample;
pub mod stage_times;
pub mod topk_shape;

#[cfg(feature = "cuda")]
mod cuda;

#[cfg(feature = "cuda")]
pub use cuda::{
    device, drop_buffer_events, keep_pool_memory, Certification, GpuError, GpuExact, Growth,
    MAX_GPU_K, MAX_WIDE_K,
};
pub use host::GpuDtype;
pub use plan::{GpuPlan, PlanChoice};
