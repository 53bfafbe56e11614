//! The part of the GPU path that talks to the device (`--features cuda`): opening it and its
//! libraries, the kernels and cuBLAS, the resident copy and its segments, the plans' searches,
//! measuring them, and the GPU's errors. It builds on the parts of [`crate::gpu`] that compile
//! everywhere (the plans and their choice, tile shapes, growth, host conversion, the
//! certificate), which the modules here reach as `super::NAME`.

mod buffers;
mod certified_search;
mod error;
mod exact;
mod gemm;
mod kernels;
mod libraries;
mod memory_pool;
mod mma;
mod plan_measure;
mod search;
mod segment;
mod stage_clock;

use super::{
    certified, growth, host, mma_shape, plan, plan_cache, sample, stage_times, topk_shape,
    GpuDtype, GpuPlan,
};

pub use certified_search::Certification;
pub use error::GpuError;
pub use exact::{device, drop_buffer_events, GpuExact, MAX_GPU_K, MAX_WIDE_K};
pub use memory_pool::keep_pool_memory;
pub use segment::Growth;
