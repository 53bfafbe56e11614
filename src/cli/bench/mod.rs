//! `dcd bench ann|exact`: the measurements `scripts/bench_peers.py` repeats for faiss-cpu and
//! hnswlib, with the same arguments and JSON fields, so results line up in one table.

use std::time::{Duration, Instant};

use crate::config::BenchCommand;
use crate::error::{Error, Result};
use crate::types::{Matrix, Neighbor};

/// Minimum time spent timing one setting; passes over the queries repeat until it is reached.
const MIN_TIMED: Duration = Duration::from_millis(1000);

mod ann;
mod embed;
mod exact;
mod gen;
mod searcher;
mod service;

pub(super) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ann(args) => ann::ann(args),
        BenchCommand::Exact(args) => exact::exact(args),
        BenchCommand::Gen(args) => gen::generate(args),
        BenchCommand::Embed(args) => embed::run(args),
        BenchCommand::Service(args) => service::run(args),
    }
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
