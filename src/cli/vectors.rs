//! `dcd vectors import`: reads a vector file (plus optional keys and labels) and appends it to
//! a pool in durable batches, then brings the index up to date. Resumable: a key already
//! stored with the same vector (an import cut short and run again) is skipped; one stored
//! with a different vector stops the import, naming it.

use std::path::Path;
use std::time::Instant;

use super::progress::Progress;
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
    if args.commit_rows == 0 {
        return Err(Error::Usage("--commit-rows must be at least 1".into()));
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
    let mut present = 0usize;
    let mut progress = Progress::new(n as u64, "import", "vectors");
    while let Some(batch) = vectors.next_batch(args.commit_rows)? {
        let end = start + batch.rows;
        let mut items: Vec<NewItem> = (start..end)
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
        let (batch, skipped) = without_stored(&pool, batch, &mut items)?;
        present += skipped;
        if items.is_empty() {
            start = end;
            progress.update(n as u64, end as u64, "");
            continue;
        }
        pool.append(&batch, &items).inspect_err(|_| {
            if start > 0 {
                tracing::warn!(
                    committed_rows = start,
                    "import stopped; rows before the failing batch are stored"
                );
            }
        })?;
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
        "imported {} vectors into {} (rows {first}..{}) in {secs:.2}s{already}",
        n - present,
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

/// The batch without the rows whose keys the pool holds already with the same vector (as
/// stored: f16 pools compare after rounding); a key stored with another vector is an error.
fn without_stored(
    pool: &crate::store::Pool,
    batch: crate::types::Matrix,
    items: &mut Vec<NewItem>,
) -> Result<(crate::types::Matrix, usize)> {
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let stored = pool.existing_keys(&keys)?;
    if stored.is_empty() {
        return Ok((batch, 0));
    }
    let f16 = pool.record().dtype == crate::types::Dtype::F16;
    let as_stored = |v: f32| {
        if f16 {
            half::f16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    let mut data = Vec::with_capacity(batch.data.len());
    let mut kept = Vec::with_capacity(items.len());
    for (item, row) in items.drain(..).zip(batch.iter_rows()) {
        if !stored.contains(&item.key) {
            data.extend_from_slice(row);
            kept.push(item);
            continue;
        }
        let at = pool.row_of_key(&item.key)?.expect("the key was just found");
        let same = pool
            .vectors()
            .row_f32(at as usize)
            .iter()
            .zip(row)
            .all(|(a, b)| a.to_bits() == as_stored(*b).to_bits());
        if !same {
            return Err(Error::Usage(format!(
                "key {:?} is stored already (row {at}) with a different vector; give it another key, or delete the pool to import afresh",
                item.key
            )));
        }
    }
    let skipped = batch.rows - kept.len();
    *items = kept;
    Ok((
        crate::types::Matrix::new(items.len(), batch.dim, data),
        skipped,
    ))
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
