//! `dcd sets list|show|diff|review|next|export|delete`: saved debug-train sets, their
//! review and the rounds that follow it, in the data directory or on `--server`.

use std::path::Path;

use super::target::{Access, Target};
use crate::config::{ExportFormat, SetsCommand, TargetArgs, VerdictArg};
use crate::error::{Error, Result};
use crate::service::export::{csv_text, export_rows, jsonl_text};
use crate::service::{next_round_request, AllowedRoots, ItemSelector, ReviewRequest};
use crate::store::{Review, SavedItem, Verdict};

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
                    "reviews": set.reviews,
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
            let reviews: std::collections::HashMap<&str, &Review> =
                set.reviews.iter().map(|r| (r.key.as_str(), r)).collect();
            let count = |name: &str| {
                set.reviews
                    .iter()
                    .filter(|r| r.verdict.name() == name)
                    .count()
            };
            println!(
                "items     {} ({} accepted, {} relabelled, {} rejected)",
                set.items.len(),
                count("accept"),
                count("relabel"),
                count("reject")
            );
            for it in set.items.iter().take(SHOWN) {
                let mark = match reviews.get(it.key.as_str()).map(|r| &r.verdict) {
                    Some(Verdict::Accept) => "accepted".to_owned(),
                    Some(Verdict::Reject) => "rejected".to_owned(),
                    Some(Verdict::Relabel(l)) => format!("relabelled {l}"),
                    _ => String::new(),
                };
                println!("  {}  {mark}", line(it));
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
        SetsCommand::Review {
            name,
            verdict,
            label,
            keys,
            all,
            mode,
            weak_label,
            error_index,
            unreviewed_only,
            reviewer,
            target,
        } => {
            let verdict = match (verdict, label) {
                (VerdictArg::Accept, None) => Verdict::Accept,
                (VerdictArg::Reject, None) => Verdict::Reject,
                (VerdictArg::Clear, None) => Verdict::Clear,
                (VerdictArg::Relabel, Some(l)) => Verdict::Relabel(l),
                (VerdictArg::Relabel, None) => {
                    return Err(Error::Usage("relabel needs --label LABEL".into()))
                }
                (_, Some(_)) => return Err(Error::Usage("--label goes with relabel only".into())),
            };
            let req = ReviewRequest {
                set: name.clone(),
                select: ItemSelector {
                    keys,
                    all,
                    mode,
                    weak_label,
                    error_index,
                    unreviewed_only,
                },
                verdict,
                reviewer: reviewer
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_default(),
            };
            let n = open(&target, Access::Write)?.review_debug_set(&req)?;
            println!("{}: {n} items marked {}", name, req.verdict.name());
        }
        SetsCommand::Next {
            parent,
            save,
            accepted_weight,
            budget,
            json,
            target,
        } => {
            let mut target = open(&target, Access::Write)?;
            let saved = target.saved_debug_set(&parent)?;
            let mut req = next_round_request(&parent, &saved.manifest);
            req.accepted_weight = accepted_weight;
            if budget.is_some() {
                req.merge.budget = budget;
            }
            let (result, name) = target.save_debug_set(&req, &save, Some(&parent))?;
            if json {
                super::print_json(&serde_json::json!({
                    "saved_as": name,
                    "items": result.items.len(),
                    "round": result.round,
                    "label_counts": result.label_counts,
                    "funnel": result.funnel,
                }));
                return Ok(());
            }
            let round = result.round.as_ref();
            println!(
                "saved {name}: {} items, after {parent} ({} accepted as error samples, {} rejected as negatives, reviewed items left out)",
                result.items.len(),
                round.map_or(0, |r| r.accepted),
                round.map_or(0, |r| r.rejected)
            );
        }
        SetsCommand::Export {
            name,
            out,
            format,
            unreviewed,
            copy,
            target,
        } => {
            let set = open(&target, Access::Read)?.saved_debug_set(&name)?;
            let rows = export_rows(&set, unreviewed);
            let io = |e| Error::io(format!("cannot write {}", out.display()))(e);
            match format {
                ExportFormat::Csv => std::fs::write(&out, csv_text(&rows)).map_err(io)?,
                ExportFormat::Jsonl => std::fs::write(&out, jsonl_text(&rows)).map_err(io)?,
                ExportFormat::Imagefolder => {
                    let items: Vec<_> = rows
                        .iter()
                        .map(|r| (r.row, r.key.as_str(), r.label.as_deref()))
                        .collect();
                    let (made, missing) = super::export::image_folder(&items, &out, copy)?;
                    for key in &missing {
                        eprintln!("skipped {key}: not a file on this machine");
                    }
                    println!(
                        "exported {made} images of {name} into {}; {} skipped",
                        out.display(),
                        missing.len()
                    );
                    return Ok(());
                }
            }
            println!(
                "exported {} items of {name} to {}",
                rows.len(),
                out.display()
            );
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
