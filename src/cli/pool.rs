//! `dcd pool create|list|info|delete`.

use std::path::Path;

use crate::config::PoolCommand;
use crate::error::Result;
use crate::index::manager;
use crate::store::{PoolSpec, Store};

pub(super) fn run(data_dir: &Path, cmd: PoolCommand) -> Result<()> {
    let store = Store::open(data_dir)?;
    match cmd {
        PoolCommand::Create {
            name,
            dim,
            dtype,
            backbone,
        } => {
            let rec = store.create_pool(&PoolSpec {
                weights: None,
                pooling: None,
                name,
                dim,
                dtype,
                backbone,
            })?;
            println!("created pool {} ({}-d {})", rec.name, rec.dim, rec.dtype);
        }
        PoolCommand::List { json } => {
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
            store.delete_pool(&name)?;
            println!("deleted pool {name}");
        }
    }
    Ok(())
}
