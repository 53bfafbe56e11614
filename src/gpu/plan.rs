//! The plans a GPU search can take ([`GpuPlan`]) and which one serves a batch of a given size
//! ([`PlanChoice`]): the choice built in from measurements on an H100, or one measured on the
//! card and pool at hand (`GpuExact::measure_plans`, `dcd serve --exact-plans measure`) from
//! each plan's time at a ladder of batch sizes, the way cuDNN's benchmark mode picks its
//! algorithms. Pure: compiled and tested on every build.

use serde::{Deserialize, Serialize};

use super::GpuDtype;

/// How a batch is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuPlan {
    /// One kernel: ℓ2 on the CUDA cores with the top-k selection fused in.
    Fused,
    /// cuBLAS cross term on the tensor cores, fused add-norms-and-select, exact re-scoring.
    Gemm,
    /// For k beyond `GpuExact::max_one_pass_k`: cuBLAS cross term, each tile's pairs merged
    /// with the best k so far by the radix merge in global memory, exact re-scoring.
    Wide,
    /// A bound per query from a strided sample (as `gemm`), then dcd's own tensor-core kernel
    /// (f32 pools as 3xTF32) with the selection against the bound in its epilogue, the radix
    /// merge and exact re-scoring. Not in the built-in choice (not yet measured on a GPU); a
    /// measured choice takes it where it wins.
    Mma,
}

impl std::fmt::Display for GpuPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GpuPlan::Fused => "fused",
            GpuPlan::Gemm => "gemm",
            GpuPlan::Wide => "wide",
            GpuPlan::Mma => "mma",
        })
    }
}

impl std::str::FromStr for GpuPlan {
    type Err = String;
    fn from_str(s: &str) -> Result<GpuPlan, String> {
        match s {
            "fused" => Ok(GpuPlan::Fused),
            "gemm" => Ok(GpuPlan::Gemm),
            "wide" => Ok(GpuPlan::Wide),
            "mma" => Ok(GpuPlan::Mma),
            other => Err(format!(
                "unknown GPU plan {other:?}: use fused, gemm, wide or mma"
            )),
        }
    }
}

/// The one-pass plans a measured choice compares (the wide plan serves only k beyond them).
pub const ONE_PASS_PLANS: [GpuPlan; 3] = [GpuPlan::Fused, GpuPlan::Gemm, GpuPlan::Mma];

/// Batch sizes a measurement times: powers of two up to this.
pub const LARGEST_MEASURED_BATCH: usize = 1024;

/// How much faster a plan must measure than the one serving the batch below before it takes
/// over: timings a few per cent apart are noise, and a choice that flips on noise would
/// change plans between neighbouring batch sizes for nothing.
pub const SWITCH_MARGIN: f64 = 0.05;

/// A plan that measures this many times the best plan's time is not timed at larger
/// batches: the fused plan only falls further behind as batches grow.
pub const DROP_RATIO: f64 = 2.0;

/// Batches from which the built-in choice takes the tensor-core path: where the GEMM plan
/// overtook the fused one on an H100 (1M rows, d 384 and 768, k 100; `scripts/bench_gpu.py
/// --plans fused,gemm`).
const GEMM_FROM_F32: usize = 8;
const GEMM_FROM_HALF: usize = 4;

/// One plan's time for one batch size at one k.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanTiming {
    /// Queries in the batch.
    pub batch: usize,
    /// The plan timed.
    pub plan: GpuPlan,
    /// Its time per call (the least of a few).
    pub seconds: f64,
}

/// Timings per k, k increasing: what [`PlanChoice::measured`] chooses from.
pub type Timings = Vec<(usize, Vec<PlanTiming>)>;

/// The batch sizes a measurement times for a pool searched with up to `queries` queries at
/// hand: 1, 2, 4, ... up to [`LARGEST_MEASURED_BATCH`] and `queries`.
pub fn measured_batches(queries: usize) -> Vec<usize> {
    let top = queries.clamp(1, LARGEST_MEASURED_BATCH);
    std::iter::successors(Some(1usize), |b| Some(b * 2))
        .take_while(|&b| b <= top)
        .collect()
}

/// For one k: the plan serving batches from each step's size up to the next step's.
#[derive(Clone, Debug, PartialEq)]
struct Steps {
    k: usize,
    /// (first batch size, plan), the first from 1, sizes increasing.
    steps: Vec<(usize, GpuPlan)>,
}

/// Which one-pass plan serves a batch of a given size and k.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanChoice {
    /// One table per k measured (the built-in choice has one), k increasing.
    tables: Vec<Steps>,
    /// The pool's rows when measured; None for the built-in choice.
    measured_rows: Option<usize>,
}

impl PlanChoice {
    /// The choice built in for a pool of `dtype`: fused for small batches, gemm from the
    /// batch size where it overtook fused on an H100.
    pub fn builtin(dtype: GpuDtype) -> PlanChoice {
        let from = match dtype {
            GpuDtype::F32 => GEMM_FROM_F32,
            GpuDtype::F16 | GpuDtype::BF16 => GEMM_FROM_HALF,
        };
        PlanChoice {
            tables: vec![Steps {
                k: 100,
                steps: vec![(1, GpuPlan::Fused), (from, GpuPlan::Gemm)],
            }],
            measured_rows: None,
        }
    }

    /// The choice from timings on a pool of `rows` rows, per k: at each batch size in turn,
    /// the plan serving the size below keeps it unless another measured at least
    /// [`SWITCH_MARGIN`] faster (or it was not timed there). None when nothing was timed.
    pub fn measured(rows: usize, timings: &[(usize, Vec<PlanTiming>)]) -> Option<PlanChoice> {
        let mut tables: Vec<Steps> = timings
            .iter()
            .filter_map(|(k, times)| steps_from(times).map(|steps| Steps { k: *k, steps }))
            .collect();
        if tables.is_empty() {
            return None;
        }
        tables.sort_by_key(|t| t.k);
        tables.dedup_by_key(|t| t.k);
        Some(PlanChoice {
            tables,
            measured_rows: Some(rows),
        })
    }

    /// The plan for a batch of `batch` queries at `k`: from the table of the k nearest on a
    /// log scale, the step the batch size falls in (sizes past the last measured one keep
    /// its plan).
    pub fn pick(&self, batch: usize, k: usize) -> GpuPlan {
        let log = |k: usize| (k.max(1) as f64).ln();
        let table = self
            .tables
            .iter()
            .min_by(|a, b| {
                let (da, db) = ((log(a.k) - log(k)).abs(), (log(b.k) - log(k)).abs());
                da.total_cmp(&db)
            })
            .expect("a choice has a table");
        table
            .steps
            .iter()
            .rev()
            .find(|(from, _)| *from <= batch)
            .map_or(table.steps[0].1, |(_, plan)| *plan)
    }

    /// True when measured on this card rather than built in.
    pub fn is_measured(&self) -> bool {
        self.measured_rows.is_some()
    }
}

/// The steps of one k's timings; None when it has none.
fn steps_from(times: &[PlanTiming]) -> Option<Vec<(usize, GpuPlan)>> {
    let mut batches: Vec<usize> = times.iter().map(|t| t.batch).collect();
    batches.sort_unstable();
    batches.dedup();
    let time_of = |batch: usize, plan: GpuPlan| {
        times
            .iter()
            .filter(|t| t.batch == batch && t.plan == plan && t.seconds.is_finite())
            .map(|t| t.seconds)
            .min_by(f64::total_cmp)
    };
    let mut steps: Vec<(usize, GpuPlan)> = Vec::new();
    for batch in batches {
        let best = times
            .iter()
            .filter(|t| t.batch == batch && t.seconds.is_finite())
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds).then(a.plan.cmp(&b.plan)));
        let Some(best) = best else { continue };
        let serving = steps.last().map(|s| s.1);
        let keep = serving.is_some_and(|plan| {
            time_of(batch, plan).is_some_and(|t| best.seconds >= t * (1.0 - SWITCH_MARGIN))
        });
        if !keep && serving != Some(best.plan) {
            let from = if steps.is_empty() { 1 } else { batch };
            steps.push((from, best.plan));
        }
    }
    (!steps.is_empty()).then_some(steps)
}

/// Timings as a table, a line per k and batch size: `k 100, batch 4: fused 0.210 ms, gemm
/// 0.180 ms, mma 0.150 ms`.
pub fn timings_table(timings: &[(usize, Vec<PlanTiming>)]) -> String {
    let mut out = String::new();
    for (k, times) in timings {
        let mut batches: Vec<usize> = times.iter().map(|t| t.batch).collect();
        batches.dedup();
        for batch in batches {
            let cells: Vec<String> = times
                .iter()
                .filter(|t| t.batch == batch)
                .map(|t| format!("{} {:.3} ms", t.plan, t.seconds * 1e3))
                .collect();
            out.push_str(&format!("k {k}, batch {batch}: {}\n", cells.join(", ")));
        }
    }
    out
}

impl std::fmt::Display for PlanChoice {
    /// `measured on 1000000 rows: k 100: fused 1-7, gemm 8-255, mma 256+`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.measured_rows {
            Some(rows) => write!(f, "measured on {rows} rows")?,
            None => f.write_str("built in (H100)")?,
        }
        for table in &self.tables {
            write!(f, "; k {}:", table.k)?;
            for (i, (from, plan)) in table.steps.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                match table.steps.get(i + 1) {
                    Some((next, _)) if next - 1 == *from => write!(f, "{sep}{plan} {from}")?,
                    Some((next, _)) => write!(f, "{sep}{plan} {from}-{}", next - 1)?,
                    None => write!(f, "{sep}{plan} {from}+")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GpuPlan::{Fused, Gemm, Mma};

    fn t(batch: usize, plan: GpuPlan, ms: f64) -> PlanTiming {
        PlanTiming {
            batch,
            plan,
            seconds: ms / 1e3,
        }
    }

    #[test]
    fn the_builtin_choice_is_the_h100_thresholds() {
        let f32 = PlanChoice::builtin(GpuDtype::F32);
        assert_eq!(f32.pick(1, 100), Fused);
        assert_eq!(f32.pick(7, 100), Fused);
        assert_eq!(f32.pick(8, 5000), Gemm);
        let half = PlanChoice::builtin(GpuDtype::F16);
        assert_eq!(half.pick(3, 1), Fused);
        assert_eq!(half.pick(4, 100), Gemm);
        assert!(!half.is_measured());
        assert_eq!(
            half.to_string(),
            "built in (H100); k 100: fused 1-3, gemm 4+"
        );
    }

    #[test]
    fn the_fastest_plan_serves_each_measured_batch() {
        let times = vec![
            t(1, Fused, 1.0),
            t(1, Gemm, 3.0),
            t(1, Mma, 4.0),
            t(2, Fused, 1.2),
            t(2, Gemm, 3.0),
            t(2, Mma, 4.0),
            t(4, Fused, 3.5),
            t(4, Gemm, 3.0),
            t(4, Mma, 4.0),
            t(8, Gemm, 3.2),
            t(8, Mma, 2.0),
        ];
        let choice = PlanChoice::measured(1_000_000, &[(100, times)]).unwrap();
        assert_eq!(choice.pick(1, 100), Fused);
        assert_eq!(choice.pick(3, 100), Fused);
        assert_eq!(choice.pick(4, 100), Gemm);
        assert_eq!(choice.pick(7, 100), Gemm);
        // Beyond the largest measured batch the last plan stays.
        assert_eq!(choice.pick(100_000, 100), Mma);
        assert!(choice.is_measured());
        assert_eq!(
            choice.to_string(),
            "measured on 1000000 rows; k 100: fused 1-3, gemm 4-7, mma 8+"
        );
    }

    #[test]
    fn a_plan_within_the_margin_does_not_take_over() {
        // gemm is 3% faster at 16: noise, fused keeps serving; at 32 it is 20% faster.
        let times = vec![
            t(8, Fused, 1.0),
            t(8, Gemm, 1.5),
            t(16, Fused, 1.0),
            t(16, Gemm, 0.97),
            t(32, Fused, 1.0),
            t(32, Gemm, 0.8),
            // Back within the margin: gemm keeps serving rather than flapping.
            t(64, Fused, 0.98),
            t(64, Gemm, 1.0),
        ];
        let choice = PlanChoice::measured(10, &[(10, times)]).unwrap();
        assert_eq!(choice.pick(1, 10), Fused, "sizes below the first measured");
        assert_eq!(choice.pick(16, 10), Fused);
        assert_eq!(choice.pick(32, 10), Gemm);
        assert_eq!(choice.pick(64, 10), Gemm);
    }

    #[test]
    fn a_plan_no_longer_timed_hands_over_to_the_best() {
        // Fused dropped after batch 2 (too slow): the best timed plan serves from 4 even
        // though it is slower than fused was.
        let times = vec![
            t(2, Fused, 1.0),
            t(2, Gemm, 2.5),
            t(4, Gemm, 3.0),
            t(4, Mma, 3.1),
        ];
        let choice = PlanChoice::measured(10, &[(100, times)]).unwrap();
        assert_eq!(choice.pick(2, 100), Fused);
        assert_eq!(choice.pick(4, 100), Gemm);
    }

    #[test]
    fn the_nearest_k_on_a_log_scale_decides_the_table() {
        let small = vec![t(1, Fused, 1.0), t(1, Gemm, 2.0)];
        let large = vec![t(1, Fused, 2.0), t(1, Gemm, 1.0)];
        let choice = PlanChoice::measured(10, &[(1000, large), (100, small)]).unwrap();
        assert_eq!(choice.pick(1, 10), Fused);
        assert_eq!(choice.pick(1, 300), Fused);
        assert_eq!(choice.pick(1, 400), Gemm);
        assert_eq!(choice.pick(1, 4096), Gemm);
        assert_eq!(
            choice.to_string(),
            "measured on 10 rows; k 100: fused 1+; k 1000: gemm 1+"
        );
    }

    #[test]
    fn nothing_timed_is_no_choice_and_failed_timings_are_ignored() {
        assert_eq!(PlanChoice::measured(10, &[]), None);
        assert_eq!(PlanChoice::measured(10, &[(100, vec![])]), None);
        let nan = vec![t(1, Gemm, f64::NAN), t(1, Fused, 2.0)];
        let choice = PlanChoice::measured(10, &[(100, nan), (5, vec![])]).unwrap();
        assert_eq!(choice.pick(1, 5), Fused);
    }

    #[test]
    fn ties_go_to_the_plan_listed_first() {
        let times = vec![t(1, Mma, 1.0), t(1, Gemm, 1.0), t(1, Fused, 1.0)];
        let choice = PlanChoice::measured(10, &[(100, times)]).unwrap();
        assert_eq!(choice.pick(1, 100), Fused);
    }

    #[test]
    fn measured_batches_are_powers_of_two_up_to_the_queries_at_hand() {
        assert_eq!(measured_batches(0), vec![1]);
        assert_eq!(measured_batches(1), vec![1]);
        assert_eq!(measured_batches(100), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(measured_batches(1 << 20).last(), Some(&1024));
        assert_eq!(measured_batches(1 << 20).len(), 11);
    }

    #[test]
    fn the_timings_table_has_a_line_per_k_and_batch() {
        let timings = vec![
            (
                100,
                vec![t(1, Fused, 0.2), t(1, Gemm, 0.5), t(2, Gemm, 0.25)],
            ),
            (1000, vec![t(1, Mma, 1.0)]),
        ];
        assert_eq!(
            timings_table(&timings),
            "k 100, batch 1: fused 0.200 ms, gemm 0.500 ms\n\
             k 100, batch 2: gemm 0.250 ms\n\
             k 1000, batch 1: mma 1.000 ms\n"
        );
    }

    #[test]
    fn plans_parse_as_they_print() {
        for plan in [Fused, Gemm, GpuPlan::Wide, Mma] {
            assert_eq!(plan.to_string().parse::<GpuPlan>(), Ok(plan));
        }
        assert!("tensor".parse::<GpuPlan>().unwrap_err().contains("fused"));
    }
}
