//! `dcd vectors import`: reads a vector file (plus optional keys and labels) and appends it to
//! a pool in durable batches, then brings the index up to date.

use std::path::Path;
use std::time::Instant;

use crate::config::{ImportArgs, VectorsCommand};
use crate::error::{Error, Result};
use crate::formats::{read_lines, VectorStream};
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::store::{NewItem, Store};

pub(super) fn run(data_dir: &Path, cmd: VectorsCommand) -> Result<()> {
    match cmd {
        VectorsCommand::Import(args) => import(data_dir, args),
    }
}

fn import(data_dir: &Path, args: ImportArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".into()));
    }
    let store = Store::open(data_dir)?;
    let mut pool = store.open_pool(&args.pool)?;
    let mut vectors = VectorStream::open(&args.file)?;
    let n = vectors.rows();
    let keys = match &args.keys {
        Some(p) => Some(lines_for(p, n, "keys")?),
        None => None,
    };
    let labels = match &args.labels {
        Some(p) => Some(lines_for(p, n, "labels")?),
        None => None,
    };
    let stem = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("vectors")
        .to_string();
    let t = Instant::now();
    let first = pool.len();
    let mut start = 0;
    while let Some(batch) = vectors.next_batch(args.batch)? {
        let end = start + batch.rows;
        let items: Vec<NewItem> = (start..end)
            .map(|i| NewItem {
                key: keys
                    .as_ref()
                    .map_or_else(|| format!("{stem}#{i}"), |k| k[i].clone()),
                label: labels
                    .as_ref()
                    .map(|l| l[i].clone())
                    .filter(|l| !l.is_empty()),
                content_hash: None,
                metadata: None,
            })
            .collect();
        pool.append(&batch, &items).inspect_err(|_| {
            if start > 0 {
                tracing::warn!(
                    committed_rows = start,
                    "import stopped; rows before the failing batch are stored"
                );
            }
        })?;
        start = end;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "imported {n} vectors into {} (rows {first}..{}) in {secs:.2}s",
        args.pool,
        pool.len()
    );
    if !args.no_index && args.index.engine == Engine::Native {
        let t = Instant::now();
        let params = HnswParams {
            m: args.index.m,
            ef_construction: args.index.ef_construction,
            ..HnswParams::default()
        };
        let index = manager::open(&pool, Engine::Native, params)?;
        println!(
            "index covers {} rows ({:.2}s)",
            index.len(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn lines_for(path: &Path, n: usize, what: &str) -> Result<Vec<String>> {
    let mut lines = read_lines(path)?;
    if lines.len() == n + 1 && lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.len() != n {
        return Err(Error::Usage(format!(
            "{} has {} {what} lines but the vector file has {n} rows; give one line per vector",
            path.display(),
            lines.len()
        )));
    }
    Ok(lines)
}
