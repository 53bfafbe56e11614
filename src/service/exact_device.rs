//! Where a pool's exact engine runs: the CPU (the `ExactIndex` beside the graph), or a CUDA
//! device holding a copy of the pool (`--exact-device cuda[:N]`, a `--features cuda` build):
//! exact searches, `exact` debug sets and the distances of exact re-ranking then run on dcd's
//! kernels ([`crate::gpu`]); rows the pool gains are appended to the copy.

use crate::error::{Error, Result};
use crate::index::SearchParams;
use crate::store::Pool;
use crate::types::{Matrix, Neighbor};

/// The exact engine's device, opened once when the service starts.
#[derive(Clone, Debug)]
pub enum ExactDevice {
    /// The CPU exact index.
    Cpu,
    /// A CUDA device (candle's, so models and search share one context).
    #[cfg(feature = "cuda")]
    Cuda {
        /// Its ordinal.
        ordinal: usize,
        /// The opened device.
        device: candle_core::Device,
    },
}

impl ExactDevice {
    /// `cpu`, `cuda` or `cuda:N`; a CUDA device is opened now, so a missing one is reported
    /// at start rather than at the first exact query.
    pub fn open(spec: &str) -> Result<ExactDevice> {
        if spec == "cpu" {
            return Ok(ExactDevice::Cpu);
        }
        let ordinal = crate::config::cuda_ordinal(spec).ok_or_else(|| {
            Error::Usage(format!("--exact-device {spec}: use cpu, cuda or cuda:N"))
        })?;
        Self::cuda(ordinal)
    }

    #[cfg(feature = "cuda")]
    fn cuda(ordinal: usize) -> Result<ExactDevice> {
        Ok(ExactDevice::Cuda {
            ordinal,
            device: crate::gpu::device(ordinal)?,
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(ordinal: usize) -> Result<ExactDevice> {
        Err(Error::Usage(format!(
            "--exact-device cuda:{ordinal}: this dcd was built without CUDA; rebuild with \
             --features cuda, or run exact searches on the CPU (--exact-device cpu)"
        )))
    }

    /// True for a GPU.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, ExactDevice::Cpu)
    }

    /// A copy of `pool`'s rows on the device, in the pool's element type.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn upload(&self, pool: &Pool) -> Result<Resident> {
        match self {
            ExactDevice::Cpu => Err(Error::Usage(
                "the CPU exact engine keeps no device copy".into(),
            )),
            #[cfg(feature = "cuda")]
            ExactDevice::Cuda { ordinal, device } => {
                use crate::gpu::{GpuDtype, GpuExact};
                let dtype = match pool.record().dtype {
                    crate::types::Dtype::F32 => GpuDtype::F32,
                    crate::types::Dtype::F16 => GpuDtype::F16,
                };
                let started = std::time::Instant::now();
                let index = GpuExact::new(device, pool.vectors(), dtype)?;
                tracing::info!(
                    pool = %pool.record().name,
                    rows = index.len(),
                    segments = index.segments(),
                    seconds = started.elapsed().as_secs_f64(),
                    "pool resident on cuda:{ordinal} for exact search"
                );
                Ok(Resident {
                    index,
                    name: format!("exact-cuda:{ordinal}"),
                })
            }
        }
    }
}

/// A pool's rows resident on a GPU.
#[cfg(feature = "cuda")]
pub struct Resident {
    index: crate::gpu::GpuExact,
    name: String,
}

/// A pool's rows resident on a GPU (none exist in a build without CUDA).
#[cfg(not(feature = "cuda"))]
pub enum Resident {}

#[cfg(feature = "cuda")]
impl Resident {
    /// Rows copied.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The engine as reported to callers.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Exact k-NN of each query (the plan by batch size, see [`crate::gpu::GpuExact`]).
    pub fn search(
        &self,
        queries: &Matrix,
        params: &SearchParams<'_>,
    ) -> Result<Vec<Vec<Neighbor>>> {
        self.index.search(queries, params.k, params.filter)
    }

    /// Exact distances of each list's rows to its query, in place.
    pub fn rerank(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>]) -> Result<()> {
        self.index.rescore(queries, lists)
    }

    /// Copies the rows `pool` gained since the copy was made or last appended to.
    pub fn append(&mut self, pool: &Pool) -> Result<()> {
        let (before, started) = (self.index.len(), std::time::Instant::now());
        let growth = self.index.append(pool.vectors())?;
        tracing::info!(
            pool = %pool.record().name,
            rows = self.index.len() - before,
            segments = self.index.segments(),
            seconds = started.elapsed().as_secs_f64(),
            ?growth,
            "rows appended to the copy on {}",
            self.name
        );
        Ok(())
    }
}

#[cfg(not(feature = "cuda"))]
impl Resident {
    /// Rows copied.
    pub fn len(&self) -> usize {
        match *self {}
    }

    /// The engine as reported to callers.
    pub fn name(&self) -> String {
        match *self {}
    }

    /// Exact k-NN of each query.
    pub fn search(&self, _: &Matrix, _: &SearchParams<'_>) -> Result<Vec<Vec<Neighbor>>> {
        match *self {}
    }

    /// Exact distances of each list's rows to its query, in place.
    pub fn rerank(&self, _: &Matrix, _: &mut [Vec<Neighbor>]) -> Result<()> {
        match *self {}
    }

    /// Copies the rows the pool gained.
    pub fn append(&mut self, _: &Pool) -> Result<()> {
        match *self {}
    }
}
