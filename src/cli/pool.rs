//! `dcd pool create|list|info|delete`.

use std::path::Path;

use super::target::{Access, Target};
use crate::config::{PoolCommand, PoolCreateArgs, TargetArgs};
use crate::error::Result;
use crate::index::manager;
use crate::service::{AllowedRoots, CreatePool, PoolDetails, ServiceSettings};
use crate::store::Store;

pub(super) fn run(data_dir: &Path, cmd: PoolCommand) -> Result<()> {
    let settings = || crate::app::settings(AllowedRoots::Any, &Default::default(), None);
    match cmd {
        PoolCommand::Create(args) => create(data_dir, *args)?,
        PoolCommand::List { json, target } => {
            let pools = open(data_dir, &target, Access::Read, settings)?.list_pools()?;
            if json {
                super::print_json(&pools);
            } else {
                println!(
                    "{:<24} {:>6} {:>5} {:>12}  backbone",
                    "name", "dim", "dtype", "rows"
                );
                for p in pools {
                    println!(
                        "{:<24} {:>6} {:>5} {:>12}  {}",
                        p.name,
                        p.dim,
                        p.dtype,
                        p.rows,
                        p.backbone.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        PoolCommand::Info { name, json, target } => {
            let details = open(data_dir, &target, Access::Read, settings)?.pool_details(&name)?;
            info(&details, json);
        }
        PoolCommand::Delete { name, target } => {
            let items = open(data_dir, &target, Access::Write, settings)?.delete_pool(&name)?;
            println!("deleted pool {name} ({items} items)");
        }
        // Checks the files themselves: only where they are.
        PoolCommand::Verify { name } => verify(&Store::open_for_reading(data_dir)?, name)?,
    }
    Ok(())
}

fn open(
    data_dir: &Path,
    target: &TargetArgs,
    access: Access,
    settings: impl FnOnce() -> ServiceSettings,
) -> Result<Target> {
    Target::open(data_dir, target, access, settings)
}

/// `dcd pool info`: the pool's record, its vectors' size, labels and index.
fn info(details: &PoolDetails, json: bool) {
    let r = &details.record;
    let bytes = r.rows * r.dim as u64 * r.dtype.size() as u64;
    let index = &details.index;
    let labels = &details.labels;
    if json {
        super::print_json(&serde_json::json!({
            "pool": r,
            "vector_bytes": bytes,
            "labels": labels,
            "index": index,
        }));
        return;
    }
    println!("pool      {}", r.name);
    println!(
        "vectors   {} x {}-d {} ({bytes} bytes)",
        r.rows, r.dim, r.dtype
    );
    println!("metric    squared l2");
    println!("backbone  {}", r.backbone.as_deref().unwrap_or("-"));
    match (index.indexed_rows, index.params) {
        (Some(rows), Some(p)) => println!(
            "index     native hnsw, {rows} rows (m={}, ef_construction={})",
            p.m, p.ef_construction
        ),
        _ => println!(
            "index     none: {}",
            index.problem.as_deref().unwrap_or("unknown")
        ),
    }
    println!("labels    {}", labels.len());
    for (label, n) in labels.iter().take(20) {
        let shown = if label.is_empty() { "(none)" } else { label };
        println!("  {shown:<30} {n}");
    }
    if labels.len() > 20 {
        println!("  ... {} more (use --json)", labels.len() - 20);
    }
}

/// `dcd pool create`: the service's `CreatePool`, in this process or on `--server`, so the
/// checks are one: with a backbone the dimension is the model's (loaded to learn it), and
/// weights or a pooling without a backbone are refused.
fn create(data_dir: &Path, args: PoolCreateArgs) -> Result<()> {
    let req = CreatePool {
        name: args.name,
        backbone: args.backbone,
        weights: args.weights,
        pooling: args.pooling,
        dim: args.dim,
        dtype: args.dtype,
    };
    let settings = || crate::app::settings(AllowedRoots::Any, &args.runtime, None);
    let rec = open(data_dir, &args.target, Access::Write, settings)?.create_pool(&req)?;
    println!("created pool {} ({}-d {})", rec.name, rec.dim, rec.dtype);
    Ok(())
}

/// `dcd pool verify`: one line per pool; the first failure is the command's error.
fn verify(store: &Store, name: Option<String>) -> Result<()> {
    let names = match name {
        Some(n) => vec![store.pool_record(&n)?.name],
        None => store.pools()?.into_iter().map(|p| p.name).collect(),
    };
    let mut first_failure = None;
    for name in names {
        let checked = store.open_pool(&name).and_then(|p| {
            let rows = p.verify_deep()?;
            Ok((rows, manager::status(&p)))
        });
        match checked {
            Ok((rows, index)) => {
                let index = match (index.indexed_rows, index.problem) {
                    (Some(n), _) if n as u64 == rows => "index up to date".to_string(),
                    (Some(n), _) => format!("index covers {n} rows, caught up at the next search"),
                    (None, problem) => format!(
                        "no usable index ({}), rebuilt at the next search",
                        problem.unwrap_or_default()
                    ),
                };
                println!("ok      {name}: {rows} rows, catalog and vectors agree; {index}");
            }
            Err(e) => {
                println!("FAILED  {name}: {e}");
                first_failure.get_or_insert(e);
            }
        }
    }
    match first_failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
