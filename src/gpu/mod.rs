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
//! Everything here but [`certified`], [`growth`], [`host`], [`mma_shape`], [`plan`],
//! [`plan_cache`], [`sample`], [`stage_times`] and [`topk_shape`] needs `--features cuda`:
//! `certified` is the certificate of a half copy's answers, `growth` the pure plan of how the
//! copy takes appended rows, `host` the conversion of rows to the device's element type,
//! `mma_shape` and `sample` the mma plan's tile shapes and sizing, `plan` the plans and the
//! choice among them from timings, `plan_cache` those timings saved beside a pool for the next
//! start, `stage_times` the arithmetic of a search's stage timings, `topk_shape` the shared
//! memory of the top-k kernels; all are compiled and tested on every build.

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
mod certified_search;
#[cfg(feature = "cuda")]
mod error;
#[cfg(feature = "cuda")]
mod exact;
#[cfg(feature = "cuda")]
mod gemm;
#[cfg(feature = "cuda")]
mod kernels;
#[cfg(feature = "cuda")]
mod libraries;
#[cfg(feature = "cuda")]
mod memory_pool;
#[cfg(feature = "cuda")]
mod mma;
#[cfg(feature = "cuda")]
mod plan_measure;
#[cfg(feature = "cuda")]
mod search;
#[cfg(feature = "cuda")]
mod segment;
#[cfg(feature = "cuda")]
mod stage_clock;

#[cfg(feature = "cuda")]
pub use certified_search::Certification;
#[cfg(feature = "cuda")]
pub use error::GpuError;
#[cfg(feature = "cuda")]
pub use exact::{device, drop_buffer_events, GpuExact, MAX_GPU_K, MAX_WIDE_K};
pub use host::GpuDtype;
#[cfg(feature = "cuda")]
pub use memory_pool::keep_pool_memory;
pub use plan::{GpuPlan, PlanChoice};
#[cfg(feature = "cuda")]
pub use segment::Growth;
