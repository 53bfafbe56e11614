//! `dcd report`: one self-contained HTML page of a debug-train set — its overview (size,
//! labels handed to training, distances, failure modes, the why-not funnel) and, for each
//! error sample, every pool image it found in the set, beside a map of the error samples, the
//! set and a random sample of the pool of the same size, and a strip of the set beside that
//! sample. From a set file (`--set`, written by `dcd debug-set` with the overview in its
//! summary) or a saved set (`--saved`, local or `--server`), which adds its reviews.

mod html;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::export::read_set;
use super::target::{Access, Target};
use crate::config::ReportArgs;
use crate::debugset::Quantiles;
use crate::error::{Error, Result};
use crate::service::{AllowedRoots, SavedDebugSet, SetOverview};
use crate::store::Verdict;

/// What the page shows, from either source.
pub(super) struct Report {
    title: String,
    pool: String,
    pool_items: u64,
    backbone: String,
    engine: String,
    items: Vec<Item>,
    errors: Vec<ErrorEntry>,
    label_counts: BTreeMap<String, u64>,
    distances: Option<Quantiles>,
    modes: Vec<ModeRow>,
    funnel: Vec<(String, u64)>,
    chance: Option<SetOverview>,
}

/// An item of the set.
struct Item {
    key: String,
    label: Option<String>,
    train_label: Option<String>,
    distance: f32,
    /// (error sample, rank in its list).
    found_by: Vec<(usize, usize)>,
    review: Option<String>,
}

/// An error sample: what it was, where its image is (when it is a file here), what it found.
struct ErrorEntry {
    name: String,
    image: Option<String>,
    found: u64,
    kept: u64,
    unusable: Option<String>,
}

struct ModeRow {
    mode: u64,
    errors: Vec<u64>,
    budget: Option<u64>,
    kept: u64,
}

pub(super) fn run(data_dir: &Path, args: ReportArgs) -> Result<()> {
    let report = match (&args.set, &args.saved) {
        (Some(file), None) => from_file(file)?,
        (None, Some(name)) => {
            let mut target = Target::open(data_dir, &args.target, Access::Read, || {
                crate::app::settings(AllowedRoots::Any, &Default::default(), None)
            })?;
            let saved = target.saved_debug_set(name)?;
            let chance = target.set_overview(name)?;
            from_saved(&saved, chance)
        }
        _ => return Err(Error::Usage("give --set FILE or --saved NAME".into())),
    };
    let page = html::render(&report, args.per_error, args.thumb.clamp(16, 512));
    std::fs::write(&args.out, page)
        .map_err(Error::io(format!("cannot write {}", args.out.display())))?;
    println!(
        "report of {} error samples and {} items written to {}",
        report.errors.len(),
        report.items.len(),
        args.out.display()
    );
    Ok(())
}

fn from_file(file: &Path) -> Result<Report> {
    let items = read_set(file)?;
    let summary_file = super::debug_set::summary_path(file);
    let summary: serde_json::Value = std::fs::read_to_string(&summary_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "cannot read {} (written by `dcd debug-set` beside the set)",
                summary_file.display()
            ))
        })?;
    let names: Vec<String> = summary["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let errors = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let image = Path::new(name)
                .is_file()
                .then(|| name.split('#').next().unwrap_or(name).to_owned());
            error_entry(name.clone(), image, &summary["coverage"][i])
        })
        .collect();
    let items = items
        .into_iter()
        .map(|it| Item {
            train_label: it.train_label().map(str::to_owned),
            found_by: it.found_by.iter().map(|f| (f.error, f.rank)).collect(),
            key: it.key,
            label: it.label,
            distance: it.best_distance,
            review: None,
        })
        .collect();
    Ok(Report {
        title: format!("Debug-train set {}", file.display()),
        // Summaries written before `dcd debug-set` kept the overview have none: no map.
        chance: serde_json::from_value(summary["overview"].clone()).ok(),
        ..common(&summary, items, errors)
    })
}

fn from_saved(saved: &SavedDebugSet, chance: SetOverview) -> Report {
    let m = &saved.manifest;
    let reviews: HashMap<&str, String> = saved
        .reviews
        .iter()
        .map(|r| {
            let text = match &r.verdict {
                Verdict::Accept => "accepted".to_owned(),
                Verdict::Reject => "rejected".to_owned(),
                Verdict::Relabel(l) => format!("relabelled {l}"),
                Verdict::Clear => String::new(),
            };
            (r.key.as_str(), format!("{text} by {}", r.reviewer))
        })
        .collect();
    // Saved items keep who found them, not at which rank: rank them by distance per sample.
    let mut lists: BTreeMap<usize, Vec<(f32, usize)>> = BTreeMap::new();
    for (i, it) in saved.items.iter().enumerate() {
        for &e in &it.found_by {
            lists.entry(e).or_default().push((it.distance, i));
        }
    }
    let mut rank: HashMap<(usize, usize), usize> = HashMap::new();
    for (e, list) in &mut lists {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (r, &(_, i)) in list.iter().enumerate() {
            rank.insert((*e, i), r + 1);
        }
    }
    let items = saved
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| Item {
            key: it.key.clone(),
            label: it.label.clone(),
            train_label: it.train_label.clone(),
            distance: it.distance,
            found_by: it
                .found_by
                .iter()
                .map(|&e| (e, rank.get(&(e, i)).copied().unwrap_or(0)))
                .collect(),
            review: reviews.get(it.key.as_str()).cloned(),
        })
        .collect();
    let errors = m
        .errors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let short = &e.digest[..e.digest.len().min(12)];
            let (name, image) = match e.sent.as_str() {
                "key" => (format!("{i}: item {}", e.digest), Some(e.digest.clone())),
                sent => (format!("{i}: {sent} {short}…"), None),
            };
            let name = match &e.label {
                Some(l) => format!("{name} (true label {l})"),
                None => name,
            };
            error_entry(name, image, &saved.summary["coverage"][i])
        })
        .collect();
    let mut r = common(&saved.summary, items, errors);
    r.title = format!("Saved set {}", saved.record.name);
    r.pool = m.pool.name.clone();
    r.chance = Some(chance);
    r
}

fn error_entry(name: String, image: Option<String>, c: &serde_json::Value) -> ErrorEntry {
    ErrorEntry {
        name,
        image,
        found: c["found"].as_u64().unwrap_or(0),
        kept: c["kept"].as_u64().unwrap_or(0),
        unusable: c["error"].as_str().map(str::to_owned),
    }
}

/// The parts both summaries spell alike.
fn common(summary: &serde_json::Value, items: Vec<Item>, errors: Vec<ErrorEntry>) -> Report {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let modes = summary["modes"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| ModeRow {
                    mode: m["mode"].as_u64().unwrap_or(0),
                    errors: m["errors"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
                        .unwrap_or_default(),
                    budget: m["budget"].as_u64(),
                    kept: m["kept"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let funnel = summary["funnel"]
        .as_object()
        .map(|f| {
            f.iter()
                .filter_map(|(k, v)| v.as_u64().filter(|&n| n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default();
    Report {
        title: String::new(),
        pool: text(&summary["request"]["pool"]),
        pool_items: summary["pool_items"].as_u64().unwrap_or(0),
        backbone: Some(text(&summary["backbone"]))
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "raw vectors".into()),
        engine: text(&summary["engine"]),
        label_counts: serde_json::from_value(summary["label_counts"].clone()).unwrap_or_default(),
        distances: serde_json::from_value(summary["distances"].clone()).ok(),
        modes,
        funnel,
        chance: None,
        items,
        errors,
    }
}
