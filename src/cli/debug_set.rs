//! `dcd debug-set`: send error samples (images or vectors), get the debug-train set, write it
//! as JSONL or CSV with a `.summary.json` beside it (coverage, labels, distances, and the
//! parameters that rebuild the same set).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::target::{Access, Target};
use crate::config::{BuildSetArgs, DebugSetArgs};
use crate::debugset::{ErrorLabel, MergeParams};
use crate::error::{Error, Result};
use crate::service::{AllowedRoots, DebugSetRequest, DebugSetResult, ErrorSample, QueryInput};

/// The summary file written beside a set.
pub fn summary_path(set: &Path) -> PathBuf {
    set.with_extension("summary.json")
}

/// The true label of an image found under the folder `root`: the name of the subfolder of
/// `root` it lies in (ImageFolder); None for images directly in `root`.
fn folder_label(root: &Path, image: &Path) -> Option<String> {
    let rel = image.strip_prefix(root).ok()?;
    let mut parts = rel.components();
    let first = parts.next()?;
    parts.next()?;
    Some(first.as_os_str().to_string_lossy().into_owned())
}

/// Error samples from files: images (folders expanded, labelled by subfolder unless
/// `unlabelled`), and .npy/.fvecs rows (unlabelled).
pub(super) fn error_samples(
    paths: &[PathBuf],
    unlabelled: bool,
) -> Result<(Vec<ErrorSample>, Vec<String>)> {
    let mut queries = Vec::new();
    let mut names = Vec::new();
    let (vector_files, image_paths): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.iter().cloned().partition(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "npy" | "fvecs"))
        });
    for f in vector_files {
        let m = crate::formats::read_vectors(&f)?;
        for (i, row) in m.iter_rows().enumerate() {
            queries.push(QueryInput::Vector(row.to_vec()).into());
            names.push(format!("{}#{i}", f.display()));
        }
    }
    for root in image_paths {
        for p in super::embed::collect_images(std::slice::from_ref(&root))? {
            let label = if unlabelled || !root.is_dir() {
                None
            } else {
                folder_label(&root, &p)
            };
            let bytes = crate::features::preprocess::read_image_file(&p, &Default::default())
                .map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?;
            let abs = std::path::absolute(&p).unwrap_or(p);
            names.push(abs.display().to_string());
            queries.push(ErrorSample {
                input: QueryInput::Image {
                    name: abs.display().to_string(),
                    bytes,
                },
                truth: ErrorLabel { label, weight: 1.0 },
            });
        }
    }
    if queries.is_empty() {
        return Err(Error::Usage(
            "no error samples found: give image files or folders, or .npy/.fvecs vectors".into(),
        ));
    }
    Ok((queries, names))
}

/// The request `args` describe, and a name for each error sample (its path, or file#row);
/// with `unlabelled`, folder names give no labels.
pub(super) fn request_of(
    args: &DebugSetArgs,
    unlabelled: bool,
) -> Result<(DebugSetRequest, Vec<String>)> {
    let (errors, names) = error_samples(&args.errors, unlabelled)?;
    let negatives: Vec<QueryInput> = match &args.negatives {
        Some(paths) => error_samples(paths, true)?
            .0
            .into_iter()
            .map(|s| s.input)
            .collect(),
        None => Vec::new(),
    };
    let holdout: Vec<QueryInput> = match &args.holdout {
        Some(paths) => error_samples(paths, true)?
            .0
            .into_iter()
            .map(|s| s.input)
            .collect(),
        None => Vec::new(),
    };
    let exclude_keys = match &args.exclude {
        Some(p) => std::fs::read_to_string(p)
            .map_err(Error::io(format!("cannot read {}", p.display())))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let req = DebugSetRequest {
        pool: args.pool.clone(),
        errors,
        errors_pool: None,
        k: args.k,
        merge: MergeParams {
            merge: args.merge,
            budget: args.budget,
            max_distance: args.max_distance,
            keep_duplicates: args.keep_duplicates,
            min_support: args.min_support,
        },
        labels: args.label.clone(),
        exclude_keys,
        exact: args.exact,
        exact_rerank: args.exact_rerank,
        ef: args.ef,
        label_policy: args.label_policy,
        negatives,
        negative_pool: args.negative_pool.clone(),
        negative_margin: args.negative_margin,
        holdout,
        holdout_pool: args.holdout_pool.clone(),
        holdout_radius: args.holdout_radius,
        dedup_distance: args.dedup_distance,
        reference_pool: args.reference.clone(),
        min_gap_percentile: args.min_gap_percentile,
        max_distance_percentile: args.max_distance_percentile,
        max_modes: args.max_modes,
        mmr_lambda: args.mmr_lambda,
        max_per_label: args.max_per_label,
        label_caps: args.label_caps.iter().cloned().collect(),
        label_targets: args.label_targets.iter().cloned().collect(),
        from_set: None,
        accepted_weight: None,
        // The summary file keeps the map and the random sample for `dcd report`.
        overview: true,
    };
    Ok((req, names))
}

/// `dcd debug-set`.
pub(super) fn run(data_dir: &Path, build: BuildSetArgs) -> Result<()> {
    let BuildSetArgs {
        set: args,
        save,
        parent,
        from_set,
        accepted_weight,
    } = build;
    let format = match args.out.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => "jsonl",
        Some("csv") => "csv",
        _ => {
            return Err(Error::Usage(format!(
                "--out {}: name a .jsonl or .csv file",
                args.out.display()
            )))
        }
    };
    let (mut req, names) = request_of(&args, args.errors_unlabelled)?;
    req.from_set = from_set;
    req.accepted_weight = accepted_weight;
    let error_labels: std::collections::BTreeSet<String> = req
        .errors
        .iter()
        .filter_map(|e| e.truth.label.clone())
        .collect();
    let started = std::time::Instant::now();
    // Saving writes to the data directory; building alone only reads it.
    let access = match save {
        Some(_) => Access::Write,
        None => Access::Read,
    };
    let mut target = Target::open(data_dir, &args.target, access, || {
        crate::app::settings(AllowedRoots::Any, &args.runtime, None)
    })?;
    let (result, saved_as) = match &save {
        Some(name) => {
            let (result, saved) = target.save_debug_set(&req, name, parent.as_deref())?;
            (result, Some(saved))
        }
        None => (target.debug_set(&req)?, None),
    };
    let secs = started.elapsed().as_secs_f64();
    write_set(&args.out, format, &result)?;
    let summary = serde_json::json!({
        "errors": names,
        "items": result.items.len(),
        "coverage": result.coverage,
        "label_counts": result.label_counts,
        "funnel": result.funnel,
        "vetoes": result.vetoes,
        "collisions": result.collisions,
        "reference": result.reference,
        "modes": result.modes,
        "mode_silhouette": result.mode_silhouette,
        "label_shortfall": result.label_shortfall,
        "error_labels": error_labels,
        "distances": result.distances,
        "request": result.request,
        "backbone": result.backbone,
        "engine": result.engine,
        "pool_items": result.pool_items,
        "excluded": result.excluded,
        "saved_as": saved_as,
        "overview": result.overview,
    });
    let summary_file = summary_path(&args.out);
    std::fs::write(
        &summary_file,
        serde_json::to_string_pretty(&summary).expect("plain data serialises"),
    )
    .map_err(Error::io(format!(
        "cannot write {}",
        summary_file.display()
    )))?;
    for (i, c) in result.coverage.iter().enumerate() {
        if let Some(e) = &c.error {
            eprintln!("error sample {} ({}) skipped: {e}", i, names[i]);
        }
    }
    let unused = result
        .coverage
        .iter()
        .filter(|c| c.error.is_none() && c.kept == 0)
        .count();
    let f = &result.funnel;
    if let Some(why) = result
        .reference
        .as_ref()
        .and_then(|r| r.no_label_estimate.as_ref())
    {
        eprintln!("no label estimate from the reference pool: {why}");
    }
    if f.label_policy > 0 && result.items.is_empty() {
        eprintln!(
            "the label policy removed all {} candidates: no weak label near them matched the labels of the error samples that found them ({}); if the --errors subfolders are not class labels, pass --errors-unlabelled or --label-policy keep",
            f.label_policy,
            error_labels.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "debug-train set: {} items from pool {} ({} error samples, {} found nothing kept) in {:.2} s -> {} (+ {})",
        result.items.len(),
        args.pool,
        names.len(),
        unused,
        secs,
        args.out.display(),
        summary_file.display()
    );
    if let Some(name) = saved_as {
        println!("saved as {name} (dcd sets show {name})");
    }
    Ok(())
}

fn write_set(out: &Path, format: &str, result: &DebugSetResult) -> Result<()> {
    let io = |e: std::io::Error| Error::io(format!("cannot write {}", out.display()))(e);
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    match format {
        "jsonl" => {
            for item in &result.items {
                serde_json::to_writer(&mut w, item).expect("plain data serialises");
                w.write_all(b"\n").map_err(io)?;
            }
        }
        _ => {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record([
                "key",
                "label",
                "best_distance",
                "support",
                "row",
                "found_by",
                "suggested_label",
                "label_confidence",
                "weak_label_plausible",
                "gap",
                "gap_percentile",
                "distance_percentile",
                "mode",
            ])
            .map_err(|e| io(e.into()))?;
            for item in &result.items {
                let found: Vec<String> = item
                    .found_by
                    .iter()
                    .map(|f| format!("{}@{}", f.error, f.rank))
                    .collect();
                csv.write_record([
                    item.key.as_str(),
                    item.label.as_deref().unwrap_or(""),
                    &item.best_distance.to_string(),
                    &item.support.to_string(),
                    &item.row.to_string(),
                    &found.join(";"),
                    item.labels.suggested_label.as_deref().unwrap_or(""),
                    &item
                        .labels
                        .label_confidence
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    &item
                        .labels
                        .weak_label_plausible
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    &item.gap.map(|g| g.to_string()).unwrap_or_default(),
                    &item
                        .gap_percentile
                        .map(|g| g.to_string())
                        .unwrap_or_default(),
                    &item
                        .distance_percentile
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    &item.mode.to_string(),
                ])
                .map_err(|e| io(e.into()))?;
            }
            csv.flush().map_err(io)?;
            return Ok(());
        }
    }
    w.flush().map_err(io)
}
