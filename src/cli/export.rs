//! `dcd export`: a debug-train set (.jsonl from `dcd debug-set`) as CSV, JSONL, or an
//! ImageFolder tree (one subfolder per label to train with, symlinks or copies) that
//! torchvision's `ImageFolder` loads as it is. The label to train with is the item's
//! `suggested_label` where the label policy replaced its weak label, else the weak label.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::{ExportArgs, ExportFormat};
use crate::error::{Error, Result};
use crate::service::export::image_folder_path;
use crate::types::RowId;

/// One item of a set file, as written by `dcd debug-set`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct SetItem {
    /// Pool row.
    pub row: u32,
    /// Item key (the image path for ingested folders).
    pub key: String,
    /// Weak label.
    pub label: Option<String>,
    /// Smallest distance to an error sample.
    pub best_distance: f32,
    /// How many error samples found it (0 in sets written before it was recorded).
    #[serde(default)]
    pub support: usize,
    /// Which error samples found it.
    pub found_by: Vec<crate::debugset::Finding>,
    /// The label to train with, where the label policy replaced the weak one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_label: Option<String>,
    /// Share of the label vote for the label to train with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_confidence: Option<f32>,
    /// Whether the weak label had at least half the vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weak_label_plausible: Option<bool>,
}

impl SetItem {
    /// The label to train with: the suggested one, else the weak one.
    pub fn train_label(&self) -> Option<&str> {
        self.suggested_label.as_deref().or(self.label.as_deref())
    }
}

/// Reads a set file.
pub fn read_set(path: &Path) -> Result<Vec<SetItem>> {
    let text = std::fs::read_to_string(path)
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::Usage(format!(
                    "{} line {}: not a debug-set item ({e}); give the .jsonl written by `dcd debug-set`",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

pub(super) fn run(args: ExportArgs) -> Result<()> {
    let items = read_set(&args.set)?;
    let io = |p: &Path, e: std::io::Error| Error::io(format!("cannot write {}", p.display()))(e);
    match args.format {
        ExportFormat::Jsonl => {
            let mut text = String::new();
            for it in &items {
                text.push_str(&serde_json::to_string(it).expect("plain data serialises"));
                text.push('\n');
            }
            std::fs::write(&args.out, text).map_err(|e| io(&args.out, e))?;
        }
        ExportFormat::Csv => {
            let csv_io = |e: csv::Error| io(&args.out, e.into());
            let mut w = csv::Writer::from_path(&args.out).map_err(csv_io)?;
            w.write_record(["path", "label", "distance", "weak_label"])
                .map_err(csv_io)?;
            for it in &items {
                w.write_record([
                    it.key.as_str(),
                    it.train_label().unwrap_or(""),
                    &it.best_distance.to_string(),
                    it.label.as_deref().unwrap_or(""),
                ])
                .map_err(csv_io)?;
            }
            w.flush().map_err(|e| io(&args.out, e))?;
        }
        ExportFormat::Imagefolder => {
            let rows: Vec<(RowId, &str, Option<&str>)> = items
                .iter()
                .map(|it| (it.row as RowId, it.key.as_str(), it.train_label()))
                .collect();
            let (made, missing) = image_folder(&rows, &args.out, args.copy)?;
            for key in &missing {
                eprintln!("skipped {key}: not a file on this machine");
            }
            println!(
                "exported {made} images into {} ({}); {} skipped",
                args.out.display(),
                if args.copy { "copies" } else { "symlinks" },
                missing.len()
            );
            return Ok(());
        }
    }
    println!("exported {} items to {}", items.len(), args.out.display());
    Ok(())
}

/// Writes `out/<label>/<row>_<file name>` for every (row, key, label) whose key is a
/// readable file; returns how many, and the keys that were not files here.
pub(super) fn image_folder(
    items: &[(RowId, &str, Option<&str>)],
    out: &Path,
    copy: bool,
) -> Result<(usize, Vec<String>)> {
    let io = |p: &Path, e: std::io::Error| Error::io(format!("cannot write {}", p.display()))(e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut made = 0;
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for &(row, key, label) in items {
        let src = PathBuf::from(key);
        if !src.is_file() {
            missing.push(key.to_owned());
            continue;
        }
        if !seen.insert(row) {
            continue;
        }
        let dst = out.join(image_folder_path(row, key, label));
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        if dst.symlink_metadata().is_ok() {
            std::fs::remove_file(&dst).map_err(|e| io(&dst, e))?;
        }
        if copy {
            std::fs::copy(&src, &dst).map_err(|e| io(&dst, e))?;
        } else {
            let abs = src.canonicalize().map_err(|e| io(&src, e))?;
            std::os::unix::fs::symlink(&abs, &dst).map_err(|e| io(&dst, e))?;
        }
        made += 1;
    }
    Ok((made, missing))
}
