//! What `dcd bench exact` times: the CPU exact index, or dcd's GPU path with the bench's
//! experiment knobs (plans, tiles, buffer events, the memory pool, stage clocks).

use serde::Serialize;

use crate::config::BenchExactArgs;
use crate::error::{Error, Result};
use crate::index::distance::kernel_name;
use crate::index::exact::ExactIndex;
use crate::index::{AnnIndex, SearchParams};
use crate::settings::{Device, Precision};
use crate::types::{Matrix, VectorView};

#[cfg(feature = "cuda")]
use crate::gpu::plan_cache::PlanMode;
use crate::gpu::stage_times::StageTime;
#[cfg(feature = "cuda")]
use std::time::Instant;

/// `--gpu-stages N`: N more calls of a setting timed stage by stage.
#[derive(Serialize)]
pub(super) struct StageReport {
    pub(super) calls: usize,
    /// Median wall time of those calls, in ms (the events add a little to each).
    pub(super) call_ms: f64,
    /// Each stage's median over the calls.
    pub(super) stages: Vec<StageTime>,
}

/// The GPU `dcd bench exact --device cuda[:N]` runs on, opened, and the pool type it copies to.
#[cfg(feature = "cuda")]
pub(super) struct GpuTarget {
    device: candle_core::Device,
    dtype: crate::gpu::GpuDtype,
}

/// None in a build without CUDA.
#[cfg(not(feature = "cuda"))]
pub(super) enum GpuTarget {}

impl GpuTarget {
    /// The device `--device` names (none for the CPU), with the GPU options checked.
    #[cfg(feature = "cuda")]
    pub(super) fn open(args: &BenchExactArgs) -> Result<Option<GpuTarget>> {
        use crate::gpu::GpuDtype;
        let ordinal = match args.device {
            Device::Cpu => return Ok(None),
            Device::Cuda(ordinal) => ordinal,
        };
        for plan in args.gpu_plan.iter().filter(|p| *p != "auto") {
            plan.parse::<crate::gpu::GpuPlan>()
                .map_err(|e| Error::Usage(format!("--gpu-plan: {e}")))?;
        }
        let dtype = match args.dtype {
            Precision::F32 => GpuDtype::F32,
            Precision::F16 => GpuDtype::F16,
            Precision::Bf16 => GpuDtype::BF16,
        };
        let device = crate::gpu::device(ordinal)?;
        if !args.gpu_buffer_events && !crate::gpu::drop_buffer_events(&device)? {
            eprintln!("gpu: buffers keep their events: the context has streams of its own");
        }
        if args.gpu_pool_keep && !crate::gpu::keep_pool_memory(&device)? {
            eprintln!("gpu: no memory pool to keep memory in: the device allocates without one");
        }
        Ok(Some(GpuTarget { device, dtype }))
    }

    #[cfg(not(feature = "cuda"))]
    pub(super) fn open(args: &BenchExactArgs) -> Result<Option<GpuTarget>> {
        if args.device == Device::Cpu {
            return Ok(None);
        }
        Err(Error::Usage(format!(
            "--device {}: this dcd was built without CUDA; rebuild with --features cuda, or use --device cpu",
            args.device
        )))
    }
}

/// What `dcd bench exact` times: the CPU exact index or the GPU one, built once.
pub(super) enum ExactSearcher<'a> {
    Cpu {
        index: ExactIndex,
        view: VectorView<'a>,
    },
    #[cfg(feature = "cuda")]
    Gpu {
        index: Box<crate::gpu::GpuExact>,
        plan: Option<crate::gpu::GpuPlan>,
        /// `--gpu-certify`: the f32 rows and what is known of their half copy.
        certified: Option<(VectorView<'a>, crate::gpu::certified::HalfBounds)>,
    },
}

impl<'a> ExactSearcher<'a> {
    /// `halves`: the base as f16 when the CPU path stores it so.
    pub(super) fn new(
        args: &BenchExactArgs,
        base: &'a Matrix,
        queries: &Matrix,
        halves: Option<&'a [half::f16]>,
        gpu: Option<GpuTarget>,
    ) -> Result<ExactSearcher<'a>> {
        if let Some(target) = gpu {
            return Self::gpu(args, base, queries, target);
        }
        let view = match (args.dtype, halves) {
            (Precision::F32, _) => VectorView::f32(&base.data, base.dim),
            (Precision::F16, Some(data)) => VectorView::F16 {
                data,
                dim: base.dim,
            },
            (other, _) => {
                return Err(Error::Usage(format!(
                    "--dtype {other}: the CPU path stores f32 or f16"
                )))
            }
        };
        Ok(ExactSearcher::Cpu {
            index: ExactIndex::build(view),
            view,
        })
    }

    #[cfg(feature = "cuda")]
    fn gpu(
        args: &BenchExactArgs,
        base: &'a Matrix,
        queries: &Matrix,
        GpuTarget { device, dtype }: GpuTarget,
    ) -> Result<ExactSearcher<'a>> {
        use crate::gpu::GpuExact;
        // The copy is made without the last rows, which are then appended, so that each run
        // also reports what a pool's growth costs beside a whole upload.
        let (n, dim) = (base.rows, base.dim);
        let held = (n / 1000).clamp(1, 4096).min(n - 1);
        let (view, first) = (
            VectorView::f32(&base.data, dim),
            VectorView::f32(&base.data[..(n - held) * dim], dim),
        );
        let started = Instant::now();
        // --gpu-certify: a half copy with its bounds, grown as the service grows one.
        let (mut index, mut bounds) = if args.gpu_certify {
            let (index, bounds) = GpuExact::new_half_copy(&device, first, dtype)
                .map_err(|e| Error::Usage(format!("--gpu-certify: {e}")))?;
            (index, Some(bounds))
        } else {
            (GpuExact::new(&device, first, dtype)?, None)
        };
        let upload = started.elapsed().as_secs_f64();
        let started = Instant::now();
        if let Some(bounds) = &mut bounds {
            bounds
                .extend(view)
                .map_err(|e| Error::Usage(format!("--gpu-certify: {e}")))?;
        }
        let growth = index.append(view)?;
        let append = started.elapsed().as_secs_f64();
        eprintln!(
            "gpu copy: {} rows uploaded in {upload:.3} s with the kernels loaded ({:.2} GB/s of host f32 \
             rows), {held} rows appended in {:.3} ms ({growth:?}), {} segments",
            n - held,
            ((n - held) * dim * 4) as f64 / upload / 1e9,
            append * 1e3,
            index.segments()
        );
        if let Some(mib) = args.gpu_tile_mib {
            index.set_tile_bytes(mib << 20);
        }
        if args.gpu_plans != PlanMode::Builtin {
            let started = Instant::now();
            let budget = std::time::Duration::from_secs(120);
            let timings = index.measure_plans(queries, &[args.k], budget)?;
            eprint!("{}", crate::gpu::plan::timings_table(&timings));
            eprintln!(
                "gpu plans: {} ({:.1} s to measure)",
                index.plan_choice(),
                started.elapsed().as_secs_f64()
            );
        }
        let certified = bounds.map(|b| (view, b));
        Ok(ExactSearcher::Gpu {
            index: Box::new(index),
            plan: None,
            certified,
        })
    }

    #[cfg(not(feature = "cuda"))]
    fn gpu(
        _: &BenchExactArgs,
        _: &'a Matrix,
        _: &Matrix,
        target: GpuTarget,
    ) -> Result<ExactSearcher<'a>> {
        match target {}
    }

    /// Forces the GPU plan for the next searches ("auto": the heuristic's); the CPU has one.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub(super) fn set_plan(&mut self, name: &str) -> Result<()> {
        match self {
            ExactSearcher::Cpu { .. } => Ok(()),
            #[cfg(feature = "cuda")]
            ExactSearcher::Gpu { plan, .. } => {
                *plan = match name {
                    "auto" => None,
                    other => Some(other.parse().map_err(Error::Usage)?),
                };
                Ok(())
            }
        }
    }

    /// Searches one batch; returns the kernel (CPU) or plan (GPU) that ran.
    pub(super) fn search(&mut self, batch: &Matrix, k: usize) -> Result<String> {
        match self {
            ExactSearcher::Cpu { index, view, .. } => {
                index.search_batch(*view, batch, &SearchParams::k(k))?;
                Ok(kernel_name().to_string())
            }
            #[cfg(feature = "cuda")]
            ExactSearcher::Gpu {
                index,
                certified: Some((view, bounds)),
                ..
            } => {
                let (_, how) = index.search_certified(batch, k, None, *view, bounds)?;
                Ok(format!(
                    "{}+certified(k'={}: {} of {} first, {} wider, {} cpu)",
                    how.plan.map_or("none".to_string(), |p| p.to_string()),
                    how.first_candidates,
                    how.first_pass,
                    batch.rows,
                    how.later_passes,
                    how.on_cpu
                ))
            }
            #[cfg(feature = "cuda")]
            ExactSearcher::Gpu { index, plan, .. } => {
                let (_, used) = index.search_with(batch, k, None, *plan)?;
                Ok(used.to_string())
            }
        }
    }

    /// Times `calls` more searches stage by stage (the GPU path's; the CPU path has no stages
    /// to report): each stage's median and the median call.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub(super) fn stages(
        &mut self,
        batches: &[Matrix],
        k: usize,
        calls: usize,
    ) -> Result<Option<StageReport>> {
        match self {
            ExactSearcher::Cpu { .. } => Ok(None),
            #[cfg(feature = "cuda")]
            ExactSearcher::Gpu { index, plan, .. } => {
                index.time_stages(true);
                let timed = time_stage_calls(index, *plan, batches, k, calls);
                index.time_stages(false);
                let (per_call, mut walls) = timed?;
                walls.sort_by(f64::total_cmp);
                Ok(Some(StageReport {
                    calls,
                    call_ms: walls[walls.len() / 2],
                    stages: crate::gpu::stage_times::median_stages(&per_call),
                }))
            }
        }
    }

    pub(super) fn engine(&self) -> &'static str {
        match self {
            ExactSearcher::Cpu { .. } => "exact",
            #[cfg(feature = "cuda")]
            ExactSearcher::Gpu { .. } => "gpu",
        }
    }
}

/// `calls` searches cycling through `batches` with the stage clock on: each call's stages and
/// wall time (ms).
#[cfg(feature = "cuda")]
fn time_stage_calls(
    index: &crate::gpu::GpuExact,
    plan: Option<crate::gpu::GpuPlan>,
    batches: &[Matrix],
    k: usize,
    calls: usize,
) -> Result<(Vec<Vec<StageTime>>, Vec<f64>)> {
    let mut per_call = Vec::with_capacity(calls);
    let mut walls = Vec::with_capacity(calls);
    for b in batches.iter().cycle().take(calls) {
        let t = Instant::now();
        index.search_with(b, k, None, plan)?;
        walls.push(t.elapsed().as_secs_f64() * 1e3);
        per_call.push(index.stage_times()?);
    }
    Ok((per_call, walls))
}
