//! `dcd bench ann|exact`: the measurements `scripts/bench_peers.py` repeats for faiss-cpu and
//! hnswlib, with the same arguments and JSON fields, so results line up in one table.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{BenchAnnArgs, BenchCommand, BenchExactArgs, BenchGenArgs};
use crate::error::{Error, Result};
use crate::formats::{read_ivecs, read_vectors, write_fvecs, write_ivecs};
use crate::gpu::stage_times::StageTime;
use crate::index::distance::{kernel_name, to_f16};
use crate::index::exact::ExactIndex;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::index::{AnnIndex, SearchParams};
use crate::synth::ClusterSpec;
use crate::types::{Matrix, Neighbor, VectorView};

/// Minimum time spent timing one setting; passes over the queries repeat until it is reached.
const MIN_TIMED: Duration = Duration::from_millis(1000);

pub(super) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ann(args) => ann(args),
        BenchCommand::Exact(args) => exact(args),
        BenchCommand::Gen(args) => generate(args),
        BenchCommand::Embed(args) => super::bench_embed::run(args),
        BenchCommand::Service(args) => super::bench_service::run(args),
    }
}

fn generate(args: BenchGenArgs) -> Result<()> {
    if args.n == 0 || args.nq == 0 || args.dim == 0 || args.gt_k == 0 || args.gt_k > args.n {
        return Err(Error::Usage(
            "--n, --queries, --dim and --gt-k must be positive, and --gt-k at most --n".into(),
        ));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| {
        Error::Format(crate::formats::FormatError::Io {
            path: args.out.clone(),
            source,
        })
    })?;
    let spec = ClusterSpec {
        dim: args.dim,
        clusters: args.clusters.unwrap_or((args.n / 1000).max(10)),
        seed: args.seed,
    };
    let base = spec.sample(args.n, 0);
    let queries = spec.sample(args.nq, 1);
    let view = VectorView::f32(&base.data, base.dim);
    let gt = ExactIndex::build(view).search_batch(view, &queries, &SearchParams::k(args.gt_k))?;
    let ids: Vec<i32> = gt
        .iter()
        .flat_map(|h| h.iter().map(|n| n.id as i32))
        .collect();
    write_fvecs(&args.out.join("base.fvecs"), &base)?;
    write_fvecs(&args.out.join("queries.fvecs"), &queries)?;
    write_ivecs(&args.out.join("gt.ivecs"), args.gt_k, &ids)?;
    println!(
        "wrote {} base and {} query vectors ({}-d, {} clusters) and exact top-{} to {}",
        args.n,
        args.nq,
        args.dim,
        spec.clusters,
        args.gt_k,
        args.out.display()
    );
    Ok(())
}

#[derive(Serialize)]
struct AnnPoint {
    ef: usize,
    recall: f64,
    qps: f64,
}

#[derive(Serialize)]
struct AnnReport {
    library: &'static str,
    engine: String,
    n: usize,
    dim: usize,
    queries: usize,
    k: usize,
    m: usize,
    ef_construction: usize,
    threads: usize,
    kernel: &'static str,
    build_seconds: f64,
    peak_rss_mb: f64,
    vector_mb: f64,
    results: Vec<AnnPoint>,
}

fn ann(args: BenchAnnArgs) -> Result<()> {
    if args.engine == Engine::Exact {
        return Err(Error::Usage(
            "bench ann measures native or hnsw-rs; use `dcd bench exact` for brute force".into(),
        ));
    }
    let base = read_vectors(&args.base)?;
    let queries = read_vectors(&args.queries)?;
    check_dims(&base, &queries)?;
    let view = VectorView::f32(&base.data, base.dim);
    let gt = match &args.gt {
        Some(p) => {
            let (rows, dim, ids) = read_ivecs(p)?;
            if rows != queries.rows || dim < args.k {
                return Err(Error::Usage(format!(
                    "{} has {rows} rows of {dim} ids; need {} rows of at least k = {}",
                    p.display(),
                    queries.rows,
                    args.k
                )));
            }
            (0..rows)
                .map(|r| {
                    ids[r * dim..r * dim + args.k]
                        .iter()
                        .map(|&i| i as u32)
                        .collect()
                })
                .collect::<Vec<Vec<u32>>>()
        }
        None => {
            let exact = ExactIndex::build(view);
            exact
                .search_batch(view, &queries, &SearchParams::k(args.k))?
                .into_iter()
                .map(|hits| hits.into_iter().map(|h| h.id).collect())
                .collect()
        }
    };
    let params = HnswParams {
        m: args.m,
        ef_construction: args.ef_construction,
        ..HnswParams::default()
    };
    let t = Instant::now();
    let index = manager::build(args.engine, view, params)?;
    let build_seconds = t.elapsed().as_secs_f64();
    let mut results = Vec::new();
    for &ef in &args.ef {
        let search = SearchParams {
            k: args.k,
            ef: Some(ef),
            filter: None,
        };
        let (hits, qps) =
            timed_passes(queries.rows, || index.search_batch(view, &queries, &search))?;
        results.push(AnnPoint {
            ef,
            recall: recall(&hits, &gt, args.k),
            qps,
        });
    }
    let report = AnnReport {
        library: "dcd",
        engine: args.engine.to_string(),
        n: base.rows,
        dim: base.dim,
        queries: queries.rows,
        k: args.k,
        m: args.m,
        ef_construction: args.ef_construction,
        threads: rayon::current_num_threads(),
        kernel: kernel_name(),
        build_seconds,
        peak_rss_mb: peak_rss_mb(),
        vector_mb: (base.data.len() * 4) as f64 / 1e6,
        results,
    };
    if args.json {
        super::print_json(&report);
    } else {
        println!(
            "{} n={} d={} m={} efC={} threads={} build {:.1}s peak RSS {:.0} MB",
            report.engine,
            report.n,
            report.dim,
            report.m,
            report.ef_construction,
            report.threads,
            report.build_seconds,
            report.peak_rss_mb
        );
        println!("{:>6} {:>10} {:>12}", "ef", "recall@k", "queries/s");
        for p in &report.results {
            println!("{:>6} {:>10.4} {:>12.0}", p.ef, p.recall, p.qps);
        }
    }
    Ok(())
}

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

/// `--gpu-stages N`: N more calls of a setting timed stage by stage.
#[derive(Serialize)]
struct StageReport {
    calls: usize,
    /// Median wall time of those calls, in ms (the events add a little to each).
    call_ms: f64,
    /// Each stage's median over the calls.
    stages: Vec<StageTime>,
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

fn exact(args: BenchExactArgs) -> Result<()> {
    if args.gpu_stages > 0 && args.device == "cpu" {
        return Err(Error::Usage(
            "--gpu-stages times the GPU path's stages: add --device cuda (the CPU path has none)"
                .into(),
        ));
    }
    if args.gpu_plans == "measure" && args.device == "cpu" {
        return Err(Error::Usage(
            "--gpu-plans measure times the GPU plans: add --device cuda (the CPU path has one)"
                .into(),
        ));
    }
    // Before the data is made or read: a bad GPU option or a machine without the GPU says so
    // at once.
    if args.gpu_certify
        && (args.device == "cpu"
            || args.dtype == "f32"
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
    let halves = (args.device == "cpu" && args.dtype == "f16").then(|| to_f16(&base.data));
    let mut searcher = ExactSearcher::new(&args, &base, &queries, halves.as_deref(), gpu)?;
    let plans = if args.device == "cpu" {
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
                super::print_json(&report);
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
        dtype: args.dtype.clone(),
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

/// The GPU `dcd bench exact --device cuda[:N]` runs on, opened, and the pool type it copies to.
#[cfg(feature = "cuda")]
struct GpuTarget {
    device: candle_core::Device,
    dtype: crate::gpu::GpuDtype,
}

/// None in a build without CUDA.
#[cfg(not(feature = "cuda"))]
enum GpuTarget {}

impl GpuTarget {
    /// The device `--device` names (none for the CPU), with the GPU options checked.
    #[cfg(feature = "cuda")]
    fn open(args: &BenchExactArgs) -> Result<Option<GpuTarget>> {
        use crate::gpu::GpuDtype;
        if args.device == "cpu" {
            return Ok(None);
        }
        for plan in args.gpu_plan.iter().filter(|p| *p != "auto") {
            plan.parse::<crate::gpu::GpuPlan>()
                .map_err(|e| Error::Usage(format!("--gpu-plan: {e}")))?;
        }
        let ordinal = crate::config::cuda_ordinal(&args.device).ok_or_else(|| {
            Error::Usage(format!("--device {}: use cpu, cuda or cuda:N", args.device))
        })?;
        let dtype = match args.dtype.as_str() {
            "f32" => GpuDtype::F32,
            "f16" => GpuDtype::F16,
            "bf16" => GpuDtype::BF16,
            other => {
                return Err(Error::Usage(format!(
                    "--dtype {other}: use f32, f16 or bf16"
                )))
            }
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
    fn open(args: &BenchExactArgs) -> Result<Option<GpuTarget>> {
        if args.device == "cpu" {
            return Ok(None);
        }
        Err(Error::Usage(format!(
            "--device {}: this dcd was built without CUDA; rebuild with --features cuda, or use --device cpu",
            args.device
        )))
    }
}

/// What `dcd bench exact` times: the CPU exact index or the GPU one, built once.
enum ExactSearcher<'a> {
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
    fn new(
        args: &BenchExactArgs,
        base: &'a Matrix,
        queries: &Matrix,
        halves: Option<&'a [half::f16]>,
        gpu: Option<GpuTarget>,
    ) -> Result<ExactSearcher<'a>> {
        if let Some(target) = gpu {
            return Self::gpu(args, base, queries, target);
        }
        let view = match (args.dtype.as_str(), halves) {
            ("f32", _) => VectorView::f32(&base.data, base.dim),
            ("f16", Some(data)) => VectorView::F16 {
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
        if args.gpu_plans == "measure" {
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
    fn set_plan(&mut self, name: &str) -> Result<()> {
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
    fn search(&mut self, batch: &Matrix, k: usize) -> Result<String> {
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
    fn stages(
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

    fn engine(&self) -> &'static str {
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

fn check_dims(base: &Matrix, queries: &Matrix) -> Result<()> {
    if base.rows == 0 || queries.rows == 0 {
        return Err(Error::Usage(
            "base and query files must hold at least one row".into(),
        ));
    }
    if base.dim != queries.dim {
        return Err(Error::Usage(format!(
            "base vectors are {}-d but queries are {}-d",
            base.dim, queries.dim
        )));
    }
    Ok(())
}

/// Runs whole passes over the queries until `MIN_TIMED` has passed; returns the last pass's
/// results and queries per second over all passes.
fn timed_passes(
    n_queries: usize,
    mut pass: impl FnMut() -> std::result::Result<Vec<Vec<Neighbor>>, crate::index::IndexError>,
) -> Result<(Vec<Vec<Neighbor>>, f64)> {
    let t = Instant::now();
    let mut passes = 0usize;
    loop {
        let hits = pass()?;
        passes += 1;
        let elapsed = t.elapsed();
        if elapsed >= MIN_TIMED {
            return Ok((hits, (passes * n_queries) as f64 / elapsed.as_secs_f64()));
        }
    }
}

/// Mean fraction of the true k nearest found among the returned k.
pub fn recall(hits: &[Vec<Neighbor>], gt: &[Vec<u32>], k: usize) -> f64 {
    let found: usize = hits
        .iter()
        .zip(gt)
        .map(|(h, g)| h.iter().take(k).filter(|n| g[..k].contains(&n.id)).count())
        .sum();
    found as f64 / (k * hits.len()).max(1) as f64
}

/// Peak resident set size of this process in MB (Linux `VmHWM`; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}
