//! Where a pool's exact engine runs: the CPU (the `ExactIndex` beside the graph), or a CUDA
//! device holding a copy of the pool (`--exact-device cuda[:N]`, a `--features cuda` build):
//! exact searches, `exact` debug sets and the distances of exact re-ranking then run on dcd's
//! kernels ([`crate::gpu`]); rows the pool gains are appended to the copy. An f32 pool's copy
//! may be f16 or bf16 (`--exact-device-copy`): searches are then certified exact against the
//! f32 rows ([`crate::gpu::GpuExact::search_certified`]) and re-ranking scores candidates
//! from the f32 rows on the host. With `--exact-plans measure` each copy picks its plan by
//! batch size from timings on its own pool: those saved beside the pool when they were taken
//! on this card and binary for a pool of about this size, else timed when the copy is made and
//! saved ([`crate::gpu::plan_cache`]); `remeasure` always times them.

use crate::gpu::plan_cache::PlanMode;
use crate::gpu::GpuDtype;
use crate::index::SearchParams;
use crate::service::{Result, ServiceError};
use crate::settings::{Device, ExactCopy};
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
        /// The copy's element type for f32 pools, when not f32 (`--exact-device-copy`).
        half_copy: Option<GpuDtype>,
        /// How each copy's plan choice is made (`--exact-plans`).
        plans: PlanMode,
    },
}

/// The k each copy's plans are timed at under `--exact-plans measure`: a typical debug set's
/// neighbours per error sample, and a large one (other k take the nearer's choice).
#[cfg(feature = "cuda")]
const MEASURED_KS: [usize; 2] = [100, 1000];

/// Most time a copy's plans are timed for; the choice is made from what was timed by then.
#[cfg(feature = "cuda")]
const MEASURE_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

impl ExactDevice {
    /// The exact engine on `device`, with the copy's element type for f32 pools and how its
    /// plans are chosen (see [`PlanMode`]); a CUDA device is opened now, so a missing one is
    /// reported at start rather than at the first exact query.
    pub fn open(device: Device, copy: ExactCopy, plans: PlanMode) -> Result<ExactDevice> {
        let half_copy = match copy {
            ExactCopy::Stored => None,
            ExactCopy::F16 => Some(GpuDtype::F16),
            ExactCopy::Bf16 => Some(GpuDtype::BF16),
        };
        let ordinal = match device {
            Device::Cuda(ordinal) => ordinal,
            Device::Cpu if plans != PlanMode::Builtin => {
                return Err(ServiceError::BadSetting {
                    flag: "exact-plans",
                    value: plans.to_string(),
                    reason: "it times the GPU's search plans: add --exact-device cuda, or drop \
                             it (the CPU exact path has one plan)",
                })
            }
            Device::Cpu if half_copy.is_some() => {
                return Err(ServiceError::BadSetting {
                    flag: "exact-device-copy",
                    value: copy.to_string(),
                    reason: "it sets the element type of a GPU's copy of the pools: add \
                             --exact-device cuda, or drop it (the CPU searches the stored rows)",
                })
            }
            Device::Cpu => return Ok(ExactDevice::Cpu),
        };
        Self::cuda(ordinal, half_copy, plans)
    }

    #[cfg(feature = "cuda")]
    fn cuda(ordinal: usize, half_copy: Option<GpuDtype>, plans: PlanMode) -> Result<ExactDevice> {
        Ok(ExactDevice::Cuda {
            ordinal,
            device: crate::gpu::device(ordinal)?,
            half_copy,
            plans,
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(ordinal: usize, _: Option<GpuDtype>, _: PlanMode) -> Result<ExactDevice> {
        Err(ServiceError::BadSetting {
            flag: "exact-device",
            value: format!("cuda:{ordinal}"),
            reason: "this dcd was built without CUDA; rebuild with --features cuda, or run \
                     exact searches on the CPU (--exact-device cpu)",
        })
    }

    /// True for a GPU.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, ExactDevice::Cpu)
    }

    /// A copy of `pool`'s rows on the device, in the pool's element type.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn upload(&self, pool: &Pool) -> Result<Resident> {
        match self {
            ExactDevice::Cpu => Err(ServiceError::Internal {
                what: "the CPU exact engine keeps no device copy".into(),
            }),
            #[cfg(feature = "cuda")]
            ExactDevice::Cuda {
                ordinal,
                device,
                half_copy,
                plans,
            } => {
                use crate::gpu::GpuExact;
                let started = std::time::Instant::now();
                let view = pool.vectors();
                // A half copy of an f32 pool measures its bounds while converting the rows.
                let (mut index, bounds) = match (pool.record().dtype, half_copy) {
                    (crate::types::Dtype::F32, Some(half)) => {
                        let (index, bounds) = GpuExact::new_half_copy(device, view, *half)?;
                        (index, Some(bounds))
                    }
                    (crate::types::Dtype::F32, None) => {
                        (GpuExact::new(device, view, GpuDtype::F32)?, None)
                    }
                    (crate::types::Dtype::F16, _) => {
                        (GpuExact::new(device, view, GpuDtype::F16)?, None)
                    }
                };
                tracing::info!(
                    pool = %pool.record().name,
                    rows = index.len(),
                    segments = index.segments(),
                    seconds = started.elapsed().as_secs_f64(),
                    "pool resident on cuda:{ordinal} for exact search"
                );
                if *plans != PlanMode::Builtin {
                    choose_plans(&mut index, pool, *plans);
                }
                let name = match &bounds {
                    Some(b) => format!("exact-cuda:{ordinal}-{}-certified", b.dtype().name()),
                    None => format!("exact-cuda:{ordinal}"),
                };
                Ok(Resident {
                    index,
                    name,
                    bounds,
                })
            }
        }
    }
}

/// Sets `index`'s plan choice from the timings saved beside `pool` when `mode` allows and
/// they hold here, else from timing the plans with queries drawn from the pool's rows
/// (strided), saved for the next start; logs the choice and where it came from. A failure is
/// logged and leaves the built-in choice, since searches still work.
#[cfg(feature = "cuda")]
fn choose_plans(index: &mut crate::gpu::GpuExact, pool: &Pool, mode: PlanMode) {
    use crate::gpu::plan_cache::{self, Source};
    let started = std::time::Instant::now();
    let name = &pool.record().name;
    let on = index
        .measured_on()
        .map_err(
            |e| tracing::warn!(pool = %name, error = %e, "the GPU plan timings will not be saved"),
        )
        .ok();
    let rows = index.len();
    let chosen = plan_cache::choose(
        pool.dir(),
        on.as_ref(),
        rows,
        mode == PlanMode::Measure,
        || {
            let queries = strided_rows(pool.vectors(), crate::gpu::plan::LARGEST_MEASURED_BATCH);
            index.measure_plans(&queries, &MEASURED_KS, MEASURE_BUDGET)
        },
    );
    let chosen = match chosen {
        Ok(chosen) => chosen,
        Err(e) => {
            tracing::warn!(pool = %name, error = %e, "timing the GPU plans failed; the built-in choice stays");
            return;
        }
    };
    if let Some(choice) = chosen.choice {
        index.set_plan_choice(choice);
    }
    let timings = crate::gpu::plan::timings_table(&chosen.timings);
    let seconds = started.elapsed().as_secs_f64();
    let file = plan_cache::path_in(pool.dir());
    match chosen.source {
        Source::Saved { measured_unix, .. } => tracing::info!(
            pool = %name, seconds, %timings, file = %file.display(), measured_unix,
            "GPU plans {} (loaded: saved by an earlier start; --exact-plans remeasure times them again)",
            index.plan_choice()
        ),
        Source::Measured { why, saved } => {
            tracing::info!(pool = %name, seconds, %timings, why = %why, "GPU plans {}", index.plan_choice());
            if let Err(e) = saved {
                tracing::warn!(pool = %name, error = %e, "the GPU plan timings were not saved; the next start times them again");
            }
        }
    }
}

/// Up to `most` rows of `vectors`, evenly spaced, as f32 queries.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn strided_rows(vectors: crate::types::VectorView<'_>, most: usize) -> Matrix {
    let (n, dim) = (vectors.len(), vectors.dim());
    let m = n.min(most);
    let mut data = vec![0.0f32; m * dim];
    for (i, row) in data.chunks_exact_mut(dim.max(1)).enumerate() {
        let r = i * n / m;
        vectors.copy_rows_f32(r, r + 1, row);
    }
    Matrix::new(m, dim, data)
}

/// A pool's rows resident on a GPU.
#[cfg(feature = "cuda")]
pub struct Resident {
    index: crate::gpu::GpuExact,
    name: String,
    /// For a half copy of an f32 pool: what certifies its answers.
    bounds: Option<crate::gpu::certified::HalfBounds>,
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

    /// Exact k-NN of each query among `pool`'s rows (the plan by batch size, see
    /// [`crate::gpu::GpuExact`]; a half copy's answers certified against the f32 rows).
    pub fn search(
        &self,
        pool: &Pool,
        queries: &Matrix,
        params: &SearchParams<'_>,
    ) -> Result<Vec<Vec<Neighbor>>> {
        match &self.bounds {
            Some(bounds) => {
                let (lists, how) = self.index.search_certified(
                    queries,
                    params.k,
                    params.filter,
                    pool.vectors(),
                    bounds,
                )?;
                tracing::debug!(?how, "certified search");
                Ok(lists)
            }
            None => Ok(self.index.search(queries, params.k, params.filter)?),
        }
    }

    /// True when re-ranking's distances come from the copy (false for a half copy, whose
    /// distances are to rounded rows: the caller scores from the stored rows instead).
    pub fn reranks(&self) -> bool {
        self.bounds.is_none()
    }

    /// Exact distances of each list's rows to its query, in place.
    pub fn rerank(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>]) -> Result<()> {
        Ok(self.index.rescore(queries, lists)?)
    }

    /// Copies the rows `pool` gained since the copy was made or last appended to.
    pub fn append(&mut self, pool: &Pool) -> Result<()> {
        let (before, started) = (self.index.len(), std::time::Instant::now());
        if let Some(bounds) = &mut self.bounds {
            bounds
                .extend(pool.vectors())
                .map_err(crate::gpu::GpuError::from)?;
        }
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
    pub fn search(&self, _: &Pool, _: &Matrix, _: &SearchParams<'_>) -> Result<Vec<Vec<Neighbor>>> {
        match *self {}
    }

    /// True when re-ranking's distances come from the copy.
    pub fn reranks(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::{strided_rows, Device, ExactCopy, ExactDevice, PlanMode};

    #[test]
    fn a_half_copy_needs_a_gpu() {
        assert!(matches!(
            ExactDevice::open(Device::Cpu, ExactCopy::Stored, PlanMode::Builtin),
            Ok(ExactDevice::Cpu)
        ));
        let err = ExactDevice::open(Device::Cpu, ExactCopy::F16, PlanMode::Builtin)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--exact-device-copy f16"), "{err}");
        assert!(err.contains("--exact-device cuda"), "{err}");
    }

    #[test]
    fn measured_plans_need_a_gpu() {
        for plans in [PlanMode::Measure, PlanMode::Remeasure] {
            let err = ExactDevice::open(Device::Cpu, ExactCopy::Stored, plans)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("--exact-plans {plans}")), "{err}");
            assert!(err.contains("--exact-device cuda"), "{err}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cuda_device_needs_a_cuda_build() {
        let err = ExactDevice::open(Device::Cuda(1), ExactCopy::Stored, PlanMode::Builtin)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--exact-device cuda:1: "), "{err}");
        assert!(err.contains("--features cuda"), "{err}");
    }

    #[test]
    fn strided_rows_spread_over_the_pool() {
        let m = crate::synth::uniform(10, 3, 1);
        let view = crate::types::VectorView::f32(&m.data, 3);
        let rows = strided_rows(view, 4);
        assert_eq!((rows.rows, rows.dim), (4, 3));
        for (i, r) in [0usize, 2, 5, 7].iter().enumerate() {
            assert_eq!(rows.data[i * 3..i * 3 + 3], m.data[r * 3..r * 3 + 3]);
        }
        assert_eq!(strided_rows(view, 100).data, m.data);
    }
}
