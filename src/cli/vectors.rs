//! `dcd vectors import`: reads a vector file (plus optional keys and labels) and sends it to a
//! pool through the `Ingest` call, in this process or on `--server`, a commit at a time; then
//! brings the index up to date (a server does that in the background). Resumable: a key
//! already stored with the same vector (an import cut short and run again) is skipped; one
//! stored with a different vector, or an item the pool refuses, stops the import, naming it.

use std::path::Path;
use std::time::Instant;

use super::progress::Progress;
use super::target::{Access, Target};
use crate::config::{ImportArgs, VectorsCommand};
use crate::error::{Error, Result};
use crate::formats::{read_lines, VectorStream};
use crate::service::{AllowedRoots, IngestItem, ItemContent, ServiceError};
use crate::store::StoreError;

pub(super) fn run(data_dir: &Path, cmd: VectorsCommand) -> Result<()> {
    match cmd {
        VectorsCommand::Import(args) => import(data_dir, args),
    }
}

fn import(data_dir: &Path, args: ImportArgs) -> Result<()> {
    if args.commit_rows == 0 {
        return Err(Error::Usage("--commit-rows must be at least 1".into()));
    }
    let mut target = Target::open(data_dir, &args.target, Access::Write, || {
        crate::app::settings(AllowedRoots::Any, &Default::default(), Some(&args.index))
    })?;
    // Refused before anything is sent: a missing pool, a file of another dimension.
    let pool = target.pool_details(&args.pool)?.record;
    let first = pool.rows;
    let mut vectors = VectorStream::open(&args.file)?;
    if vectors.dim() != pool.dim {
        return Err(StoreError::DimensionMismatch {
            pool: pool.name,
            expected: pool.dim,
            got: vectors.dim(),
        }
        .into());
    }
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
    let mut start = 0;
    let (mut present, mut pool_items) = (0u64, first);
    let mut progress = Progress::new(n as u64, "import", "vectors");
    while let Some(batch) = vectors.next_batch(args.commit_rows)? {
        let end = start + batch.rows;
        // A bad value stops the import before its batch is sent: the batch is stored whole
        // or not at all, as the batches before it were.
        if let Some((row, col)) = batch.first_non_finite() {
            return Err(stopped(
                start,
                StoreError::NonFinite {
                    row: start + row,
                    col,
                },
            ));
        }
        if let Some((row, squared_norm)) = batch.first_too_large() {
            let row = start + row;
            return Err(stopped(
                start,
                StoreError::VectorTooLarge { row, squared_norm },
            ));
        }
        let items: Vec<IngestItem> = (start..end)
            .zip(batch.iter_rows())
            .map(|(i, row)| IngestItem {
                key: keys
                    .as_ref()
                    .map_or_else(|| format!("{stem}#{i}"), |k| k[i].clone()),
                label: labels
                    .as_ref()
                    .map(|l| l[i].clone())
                    .filter(|l| !l.is_empty()),
                metadata: None,
                content_sha256: None,
                content: ItemContent::Vector(row.to_vec()),
            })
            .collect();
        // The rows live on in the items: the batch is let go before the stream copies them.
        drop(batch);
        let summary = target
            .ingest(&args.pool, items)
            .inspect_err(|_| warn_stored(start))?;
        if let Some((key, reason)) = summary.errors.first() {
            return Err(ServiceError::InvalidArgument {
                field: "items",
                reason: format!(
                    "import stopped at the batch of rows {start}..{end}: key {key:?} {reason}; the rows before that batch and the {} of it that could be are stored; fix it and run the import again (stored keys are skipped)",
                    summary.stored
                ),
            }
            .into());
        }
        present += summary.present;
        pool_items = summary.pool_items;
        start = end;
        progress.update(n as u64, end as u64, "");
    }
    progress.finish();
    let secs = t.elapsed().as_secs_f64();
    let already = if present > 0 {
        format!("; {present} were stored already and skipped")
    } else {
        String::new()
    };
    println!(
        "imported {} vectors into {} (rows {first}..{pool_items}) in {secs:.2}s{already}",
        n as u64 - present,
        args.pool,
    );
    if !args.no_index {
        let t = Instant::now();
        match target.catch_up_index(&args.pool)? {
            Some(details) => println!(
                "index covers {} rows ({:.2}s)",
                details.index.indexed_rows.unwrap_or(0),
                t.elapsed().as_secs_f64()
            ),
            None => println!("the server indexes the new rows in the background"),
        }
    }
    Ok(())
}

/// The import's error, after saying what earlier batches stored.
fn stopped(committed_rows: usize, e: StoreError) -> Error {
    warn_stored(committed_rows);
    e.into()
}

fn warn_stored(committed_rows: usize) {
    if committed_rows > 0 {
        tracing::warn!(
            committed_rows,
            "import stopped; rows before the failing batch are stored"
        );
    }
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
