//! Measuring which one-pass plan serves each batch size on the card and pool at hand: each
//! plan timed as a caller sees it (queries in, lists on the host) at batches of 1, 2, 4, ...
//! queries, and the choice made from the timings by [`PlanChoice::measured`]. Built-in
//! thresholds come from one card; where the tensor cores stand against the CUDA cores, and
//! whether dcd's own tensor-core kernel beats cuBLAS, differ from card to card.

use std::time::{Duration, Instant};

use super::plan::{measured_batches, GpuPlan, PlanChoice, PlanTiming, DROP_RATIO, ONE_PASS_PLANS};
use super::plan_cache::{build_identity, MeasuredOn};
use super::{GpuError, GpuExact};
use crate::index::{validate_queries, IndexError};
use crate::types::Matrix;

/// Timed calls per plan and batch after the warm-up; the least is kept (the others were
/// slowed by something else).
const REPEATS: usize = 3;

impl GpuExact {
    /// Times the one-pass plans (fused, gemm, mma) on this pool for each k of `ks` (clamped
    /// to what one pass selects), at batches of 1, 2, 4, ... up to 1024 queries taken from the
    /// front of `queries`, and from then on picks plans by what was measured
    /// ([`GpuExact::plan_for`]). Each setting: one call to warm up, then the least of three
    /// calls' times. The fused plan is not timed at larger batches once it takes twice the
    /// best plan's time. Once `budget` has passed no further batch is started; what was timed
    /// by then makes the choice, and when nothing was, the choice in force stays
    /// ([`GpuExact::plan_choice`]). Returns the timings, per k.
    pub fn measure_plans(
        &mut self,
        queries: &Matrix,
        ks: &[usize],
        budget: Duration,
    ) -> Result<Vec<(usize, Vec<PlanTiming>)>, GpuError> {
        validate_queries(self.dim, queries, 1)?;
        if self.is_empty() {
            return Err(IndexError::EmptyPool.into());
        }
        let cap = self.max_one_pass_k().min(self.len);
        let mut ks: Vec<usize> = ks.iter().map(|&k| k.clamp(1, cap)).collect();
        ks.sort_unstable();
        ks.dedup();
        if ks.is_empty() {
            return Err(IndexError::InvalidParameter {
                name: "k",
                value: "none".into(),
                reason: "measuring the GPU plans needs at least one k to time them at",
            }
            .into());
        }
        let started = Instant::now();
        let mut timings = Vec::new();
        'ks: for k in ks {
            let mut times = Vec::new();
            let mut fused = true;
            for batch in measured_batches(queries.rows) {
                if started.elapsed() >= budget {
                    timings.push((k, times));
                    break 'ks;
                }
                let part = Matrix::new(batch, self.dim, queries.data[..batch * self.dim].to_vec());
                let here: Vec<PlanTiming> = ONE_PASS_PLANS
                    .iter()
                    .filter(|&&plan| fused || plan != GpuPlan::Fused)
                    .map(|&plan| {
                        let seconds = self.time_plan(&part, k, plan)?;
                        Ok(PlanTiming {
                            batch,
                            plan,
                            seconds,
                        })
                    })
                    .collect::<Result<_, GpuError>>()?;
                let best = here.iter().map(|t| t.seconds).fold(f64::INFINITY, f64::min);
                fused &= here
                    .iter()
                    .any(|t| t.plan == GpuPlan::Fused && t.seconds <= DROP_RATIO * best);
                times.extend(here);
            }
            timings.push((k, times));
        }
        if let Some(choice) = PlanChoice::measured(self.len, &timings) {
            self.choice = choice;
        }
        Ok(timings)
    }

    /// Where this copy's plans are timed, for saving the timings ([`super::plan_cache`]):
    /// the card's name and compute capability, the driver's CUDA version, this binary, the
    /// copy's element type and dimension.
    pub fn measured_on(&self) -> Result<MeasuredOn, GpuError> {
        let stream = super::exact::stream_of(&self.device)?;
        let ctx = stream.context();
        let build = build_identity().ok_or(GpuError::Unidentified {
            what: "this dcd binary (its file could not be read)",
        })?;
        Ok(MeasuredOn {
            card: ctx
                .name()
                .map_err(GpuError::driver("reading the card's name"))?,
            compute_capability: super::kernels::compute_capability(ctx)?,
            driver: super::libraries::driver_version()?,
            build,
            copy: self.dtype.name().into(),
            dim: self.dim,
        })
    }

    /// The least of [`REPEATS`] calls' wall times with `plan`, after a call to warm up.
    fn time_plan(&self, batch: &Matrix, k: usize, plan: GpuPlan) -> Result<f64, GpuError> {
        self.search_with(batch, k, None, Some(plan))?;
        let mut best = f64::INFINITY;
        for _ in 0..REPEATS {
            let t = Instant::now();
            self.search_with(batch, k, None, Some(plan))?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    }
}
