//! `dcd pool create|list|info|delete`.

use std::path::Path;

use crate::api::client::RemoteService;
use crate::config::{PoolCommand, PoolCreateArgs};
use crate::error::Result;
use crate::index::manager;
use crate::service::{AllowedRoots, CreatePool, Service};
use crate::store::Store;

pub(super) fn run(data_dir: &Path, cmd: PoolCommand) -> Result<()> {
    // Commands that only read work beside a running server, and on a read-only copy.
    let reading = || Store::open_for_reading(data_dir);
    match cmd {
        PoolCommand::Create(args) => create(data_dir, *args)?,
        PoolCommand::List { json } => {
            let store = reading()?;
            let pools = store.pools()?;
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
        PoolCommand::Info { name, json } => {
            let store = reading()?;
            let pool = store.open_pool(&name)?;
            let labels = pool.label_histogram()?;
            let index = manager::status(&pool);
            let bytes = std::fs::metadata(pool.dir().join("vectors.bin"))
                .map(|m| m.len())
                .unwrap_or(0);
            if json {
                super::print_json(&serde_json::json!({
                    "pool": pool.record(),
                    "vector_file_bytes": bytes,
                    "labels": labels,
                    "index": index,
                }));
            } else {
                let r = pool.record();
                println!("pool      {}", r.name);
                println!(
                    "vectors   {} x {}-d {} ({bytes} bytes)",
                    r.rows, r.dim, r.dtype
                );
                println!("metric    squared l2");
                println!("backbone  {}", r.backbone.as_deref().unwrap_or("-"));
                match (index.indexed_rows, index.params) {
                    (Some(rows), Some(p)) => println!(
                        "index     native hnsw, {rows} rows (m={}, ef_construction={}, ef={})",
                        p.m, p.ef_construction, p.ef_search
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
        }
        PoolCommand::Delete { name } => {
            Store::open(data_dir)?.delete_pool(&name)?;
            println!("deleted pool {name}");
        }
        PoolCommand::Verify { name } => verify(&reading()?, name)?,
    }
    Ok(())
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
    let (name, dim, dtype) = match &args.target.server {
        Some(url) => {
            let mut client = RemoteService::connect(url, args.target.api_key.as_deref())?;
            client.create_pool(&req)?
        }
        None => {
            let settings = crate::app::settings(AllowedRoots::Any, &args.runtime, None);
            let rec = Service::open(data_dir, settings)?.create_pool(&req)?;
            (rec.name, rec.dim, rec.dtype)
        }
    };
    println!("created pool {name} ({dim}-d {dtype})");
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
