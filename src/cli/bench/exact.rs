//! `dcd bench exact`: exact search timed per batch size, on the CPU or a GPU.

use std::time::Instant;

use serde::Serialize;

use crate::config::BenchExactArgs;
use crate::error::{Error, Result};
use crate::formats::read_vectors;
use crate::gpu::plan_cache::PlanMode;
use crate::index::distance::to_f16;
use crate::settings::{Device, Precision};
use crate::types::Matrix;

use super::check_dims;
use super::searcher::{ExactSearcher, GpuTarget, StageReport};

#[derive(Serialize)]
struct ExactReport {
    library: &'static str,
    engine: &'static str,
    dtype: String,
    n: usize,
    dim: usize,
    queries: usize,
    batch: usize,
    k: usize,
    threads: usize,
    kernel: String,
    /// One pass over all the queries, in calls of `batch` (extrapolated from the timed calls).
    seconds: f64,
    /// One search call of `batch` queries (best repetition's mean).
    per_call_seconds: f64,
    qps: f64,
    gflops: f64,
    /// With --gpu-stages: where the time of that many more calls went.
    #[serde(skip_serializing_if = "Option::is_none")]
    stages: Option<StageReport>,
}

/// The pool and queries of `dcd bench exact`: read, or generated with --random.
fn exact_inputs(args: &BenchExactArgs) -> Result<(Matrix, Matrix)> {
    match (&args.random, &args.base, &args.queries) {
        (Some(spec), _, _) => {
            let (n, dim) = spec
                .split_once('x')
                .and_then(|(n, d)| Some((n.parse::<usize>().ok()?, d.parse::<usize>().ok()?)))
                .filter(|&(n, d)| n > 0 && d > 0)
                .ok_or_else(|| {
                    Error::Usage(format!("--random {spec}: expected NxD, e.g. 1000000x384"))
                })?;
            if args.random_queries == 0 {
                return Err(Error::Usage("--random-queries must be at least 1".into()));
            }
            Ok((
                crate::synth::uniform_parallel(n, dim, 1),
                crate::synth::uniform_parallel(args.random_queries, dim, 2),
            ))
        }
        (None, Some(base), Some(queries)) => Ok((read_vectors(base)?, read_vectors(queries)?)),
        _ => Err(Error::Usage(
            "give --base and --queries, or --random NxD".into(),
        )),
    }
}

pub(super) fn exact(args: BenchExactArgs) -> Result<()> {
    if args.gpu_stages > 0 && args.device == Device::Cpu {
        return Err(Error::Usage(
            "--gpu-stages times the GPU path's stages: add --device cuda (the CPU path has none)"
                .into(),
        ));
    }
    if args.gpu_plans != PlanMode::Builtin && args.device == Device::Cpu {
        return Err(Error::Usage(format!(
            "--gpu-plans {} times the GPU plans: add --device cuda (the CPU path has one)",
            args.gpu_plans
        )));
    }
    // Before the data is made or read: a bad GPU option or a machine without the GPU says so
    // at once.
    if args.gpu_certify
        && (args.device == Device::Cpu
            || args.dtype == Precision::F32
            || args.gpu_stages > 0
            || args.gpu_plan.iter().any(|p| p != "auto"))
    {
        return Err(Error::Usage(
            "--gpu-certify answers an f32 pool through a half copy on the GPU with the plan the \
             batch size picks: use it with --device cuda and --dtype f16 or bf16, without \
             --gpu-plan or --gpu-stages"
                .into(),
        ));
    }
    let gpu = GpuTarget::open(&args)?;
    let (base, queries) = exact_inputs(&args)?;
    check_dims(&base, &queries)?;
    let sizes = if args.batch.is_empty() {
        vec![queries.rows]
    } else {
        args.batch.clone()
    };
    let halves =
        (args.device == Device::Cpu && args.dtype == Precision::F16).then(|| to_f16(&base.data));
    let mut searcher = ExactSearcher::new(&args, &base, &queries, halves.as_deref(), gpu)?;
    let plans = if args.device == Device::Cpu {
        vec!["auto".to_string()]
    } else {
        args.gpu_plan.clone()
    };
    for size in sizes {
        let batch = size.clamp(1, queries.rows);
        let batches: Vec<Matrix> = queries
            .data
            .chunks(batch * queries.dim)
            .map(|c| Matrix::new(c.len() / queries.dim, queries.dim, c.to_vec()))
            .collect();
        for plan in &plans {
            searcher.set_plan(plan)?;
            let mut report = time_exact(&mut searcher, &args, &base, &batches, batch)?;
            if args.gpu_stages > 0 {
                report.stages = searcher.stages(&batches, args.k, args.gpu_stages)?;
            }
            if args.json {
                crate::cli::print_json(&report);
            } else {
                println!(
                    "exact {} {} n={} d={} batch={} k={} kernel={}: {:.3} ms per call, {:.1} queries/s, {:.1} GFLOP/s",
                    report.engine,
                    report.dtype,
                    report.n,
                    report.dim,
                    report.batch,
                    report.k,
                    report.kernel,
                    report.per_call_seconds * 1e3,
                    report.qps,
                    report.gflops
                );
                if let Some(stages) = &report.stages {
                    print_stages(stages);
                }
            }
        }
    }
    Ok(())
}

/// The `--gpu-stages` table under a setting's line.
fn print_stages(report: &StageReport) {
    println!(
        "  stages, median of {} calls (ms; gpu: device time since the previous stage ended, \
         idle waits included; host: time the CPU took to issue it):",
        report.calls
    );
    for stage in &report.stages {
        println!(
            "    {:<20} gpu {:>9.4}  host {:>9.4}",
            stage.name, stage.gpu_ms, stage.host_ms
        );
    }
    let gpu: f64 = report.stages.iter().map(|s| s.gpu_ms).sum();
    println!(
        "    {:<20} gpu {gpu:>9.4}  (a call with the events: {:.4} ms)",
        "stages together", report.call_ms
    );
}

/// Best mean time per call over `--repeat` rounds of up to `--calls` calls (as many as fit in
/// about a second), after a warm-up call.
fn time_exact(
    searcher: &mut ExactSearcher<'_>,
    args: &BenchExactArgs,
    base: &Matrix,
    batches: &[Matrix],
    batch: usize,
) -> Result<ExactReport> {
    searcher.search(&batches[0], args.k)?;
    let t = Instant::now();
    searcher.search(&batches[batches.len() - 1], args.k)?;
    let once = t.elapsed().as_secs_f64().max(1e-6);
    let calls = ((1.0 / once) as usize).clamp(1, args.calls.clamp(1, batches.len()));
    let mut best = f64::INFINITY;
    let mut kernel = String::new();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        for b in batches.iter().cycle().take(calls) {
            kernel = searcher.search(b, args.k)?;
        }
        best = best.min(t.elapsed().as_secs_f64() / calls as f64);
    }
    let flops = 2.0 * batch as f64 * base.rows as f64 * base.dim as f64;
    Ok(ExactReport {
        library: "dcd",
        engine: searcher.engine(),
        dtype: args.dtype.to_string(),
        n: base.rows,
        dim: base.dim,
        queries: batches.iter().map(|b| b.rows).sum(),
        batch,
        k: args.k,
        threads: rayon::current_num_threads(),
        kernel,
        seconds: best * batches.len() as f64,
        per_call_seconds: best,
        qps: batch as f64 / best,
        gflops: flops / best / 1e9,
        stages: None,
    })
}
