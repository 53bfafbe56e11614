//! `dcd bench ann|exact`: the measurements `scripts/bench_peers.py` repeats for faiss-cpu and
//! hnswlib, with the same arguments and JSON fields, so results line up in one table.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{BenchAnnArgs, BenchCommand, BenchExactArgs, BenchGenArgs};
use crate::error::{Error, Result};
use crate::formats::{read_ivecs, read_vectors, write_fvecs, write_ivecs};
use crate::index::distance::{kernel_name, to_f16};
use crate::index::exact::ExactIndex;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::index::{AnnIndex, SearchParams};
use crate::synth::ClusterSpec;
use crate::types::{Dtype, Matrix, Neighbor, VectorView};

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
    dtype: Dtype,
    n: usize,
    dim: usize,
    queries: usize,
    batch: usize,
    k: usize,
    threads: usize,
    kernel: &'static str,
    seconds: f64,
    qps: f64,
    gflops: f64,
}

fn exact(args: BenchExactArgs) -> Result<()> {
    let base = read_vectors(&args.base)?;
    let queries = read_vectors(&args.queries)?;
    check_dims(&base, &queries)?;
    let halves;
    let view = match args.dtype {
        Dtype::F32 => VectorView::f32(&base.data, base.dim),
        Dtype::F16 => {
            halves = to_f16(&base.data);
            VectorView::F16 {
                data: &halves,
                dim: base.dim,
            }
        }
    };
    let batch = args.batch.unwrap_or(queries.rows).clamp(1, queries.rows);
    let batches: Vec<Matrix> = queries
        .data
        .chunks(batch * queries.dim)
        .map(|c| Matrix::new(c.len() / queries.dim, queries.dim, c.to_vec()))
        .collect();
    let mut best = f64::INFINITY;
    let (engine, kernel) = if args.device == "cpu" {
        let index = ExactIndex::build(view);
        let search = SearchParams::k(args.k);
        for _ in 0..args.repeat.max(1) {
            let t = Instant::now();
            for b in &batches {
                index.search_batch(view, b, &search)?;
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        ("exact", kernel_name())
    } else {
        best = gpu_exact(&args, view, &batches)?;
        ("gpu-fused", "l2_topk")
    };
    let flops = 2.0 * queries.rows as f64 * base.rows as f64 * base.dim as f64;
    let report = ExactReport {
        library: "dcd",
        engine,
        dtype: args.dtype,
        n: base.rows,
        dim: base.dim,
        queries: queries.rows,
        batch,
        k: args.k,
        threads: rayon::current_num_threads(),
        kernel,
        seconds: best,
        qps: queries.rows as f64 / best,
        gflops: flops / best / 1e9,
    };
    if args.json {
        super::print_json(&report);
    } else {
        println!(
            "exact {} n={} d={} q={} batch={} k={} threads={}: {:.3}s, {:.1} queries/s, {:.1} GFLOP/s",
            report.dtype,
            report.n,
            report.dim,
            report.queries,
            report.batch,
            report.k,
            report.threads,
            report.seconds,
            report.qps,
            report.gflops
        );
    }
    Ok(())
}

/// Best time over `--repeat` passes of the batches through dcd's CUDA kernels (the pool
/// uploaded once, outside the timing; results copied back inside it).
#[cfg(feature = "cuda")]
fn gpu_exact(args: &BenchExactArgs, view: VectorView<'_>, batches: &[Matrix]) -> Result<f64> {
    use crate::gpu::{GpuDtype, GpuExact};
    let ordinal = crate::config::cuda_ordinal(&args.device).ok_or_else(|| {
        Error::Usage(format!("--device {}: use cpu, cuda or cuda:N", args.device))
    })?;
    let device = crate::gpu::device(ordinal)?;
    let dtype = match args.dtype {
        Dtype::F32 => GpuDtype::F32,
        Dtype::F16 => GpuDtype::F16,
    };
    let index = GpuExact::new(&device, view, dtype)?;
    index.search(&batches[0], args.k, None)?;
    let mut best = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        for b in batches {
            index.search(b, args.k, None)?;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

#[cfg(not(feature = "cuda"))]
fn gpu_exact(args: &BenchExactArgs, _: VectorView<'_>, _: &[Matrix]) -> Result<f64> {
    Err(Error::Usage(format!(
        "--device {}: this dcd was built without CUDA; rebuild with --features cuda, or use --device cpu",
        args.device
    )))
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
