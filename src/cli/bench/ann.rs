//! `dcd bench ann`: build an HNSW index and sweep its search beam: recall, queries/s, build
//! time and memory, as `scripts/bench_peers.py` reports them for hnswlib and faiss.

use std::time::Instant;

use serde::Serialize;

use crate::config::BenchAnnArgs;
use crate::error::{Error, Result};
use crate::formats::{read_ivecs, read_vectors};
use crate::index::distance::kernel_name;
use crate::index::exact::ExactIndex;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::index::{AnnIndex, SearchParams};
use crate::types::VectorView;

use super::{check_dims, peak_rss_mb, recall, timed_passes};

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

pub(super) fn ann(args: BenchAnnArgs) -> Result<()> {
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
        crate::cli::print_json(&report);
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
