//! `dcd sets list|show|diff|delete`: saved debug-train sets, in the data directory or on
//! `--server`.

use std::path::Path;

use super::target::{Access, Target};
use crate::config::{SetsCommand, TargetArgs};
use crate::error::Result;
use crate::service::AllowedRoots;
use crate::store::SavedItem;

/// Items `show` prints as text (all of them with --json).
const SHOWN: usize = 20;

pub(super) fn run(data_dir: &Path, cmd: SetsCommand) -> Result<()> {
    let open = |target: &TargetArgs, access| {
        Target::open(data_dir, target, access, || {
            crate::app::settings(AllowedRoots::Any, &Default::default(), None)
        })
    };
    match cmd {
        SetsCommand::List { pool, json, target } => {
            let sets = open(&target, Access::Read)?.saved_debug_sets(pool.as_deref())?;
            if json {
                let listed: Vec<serde_json::Value> = sets
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name, "pool": s.pool, "parent": s.parent,
                            "created_at": s.created_at, "items": s.items,
                        })
                    })
                    .collect();
                super::print_json(&listed);
                return Ok(());
            }
            println!("{:<28} {:<20} {:>8}  parent", "name", "pool", "items");
            for s in sets {
                println!(
                    "{:<28} {:<20} {:>8}  {}",
                    s.name,
                    s.pool,
                    s.items,
                    s.parent.as_deref().unwrap_or("-")
                );
            }
        }
        SetsCommand::Show { name, json, target } => {
            let set = open(&target, Access::Read)?.saved_debug_set(&name)?;
            if json {
                super::print_json(&serde_json::json!({
                    "name": set.record.name,
                    "pool": set.record.pool,
                    "parent": set.record.parent,
                    "created_at": set.record.created_at,
                    "manifest": set.manifest,
                    "summary": set.summary,
                    "items": set.items,
                }));
                return Ok(());
            }
            let m = &set.manifest;
            println!("set       {}", set.record.name);
            println!(
                "pool      {} ({} rows, {}-d, {} when saved)",
                m.pool.name,
                m.pool.rows,
                m.pool.dim,
                m.pool.backbone.as_deref().unwrap_or("raw vectors")
            );
            if let Some(p) = &set.record.parent {
                println!("parent    {p}");
            }
            println!(
                "built     k {}, {} error samples, {} negatives, {} held out; dcd {}",
                m.request.k,
                m.errors.len(),
                m.negatives.len(),
                m.holdout.len(),
                m.dcd_version
            );
            println!("items     {}", set.items.len());
            for it in set.items.iter().take(SHOWN) {
                println!("  {}", line(it));
            }
            if set.items.len() > SHOWN {
                println!("  ... {} more (use --json)", set.items.len() - SHOWN);
            }
        }
        SetsCommand::Diff {
            from,
            to,
            json,
            target,
        } => {
            let d = open(&target, Access::Read)?.diff_saved_debug_sets(&from, &to)?;
            if json {
                super::print_json(&d);
                return Ok(());
            }
            println!(
                "{from} -> {to}: {} added, {} removed, {} relabelled",
                d.added.len(),
                d.removed.len(),
                d.relabelled.len()
            );
            for it in &d.added {
                println!("+ {}", line(it));
            }
            for it in &d.removed {
                println!("- {}", line(it));
            }
            for (a, b) in &d.relabelled {
                println!(
                    "~ {}: {} -> {}",
                    a.key,
                    a.train_label.as_deref().unwrap_or("(none)"),
                    b.train_label.as_deref().unwrap_or("(none)")
                );
            }
        }
        SetsCommand::Delete { name, target } => {
            open(&target, Access::Write)?.delete_saved_debug_set(&name)?;
            println!("deleted set {name}");
        }
    }
    Ok(())
}

fn line(it: &SavedItem) -> String {
    format!(
        "{}  {}  d={:.4}  mode {}  support {}",
        it.key,
        it.train_label.as_deref().unwrap_or("(no label)"),
        it.distance,
        it.mode,
        it.support
    )
}
