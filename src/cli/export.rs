//! `dcd export`: a debug-train set (.jsonl from `dcd debug-set`) as CSV, JSONL, or an
//! ImageFolder tree (one subfolder per label to train with, symlinks or copies) that
//! torchvision's `ImageFolder` loads as it is. The label to train with is the item's
//! `suggested_label` where the label policy replaced its weak label, else the weak label.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::{ExportArgs, ExportFormat};
use crate::error::{Error, Result};

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

/// A folder name for a weak label (path separators and dots made safe).
fn label_dir(label: Option<&str>) -> String {
    let l = label.filter(|l| !l.is_empty()).unwrap_or("unlabelled");
    let safe: String = l
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if safe == "." || safe == ".." {
        format!("_{safe}")
    } else {
        safe
    }
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
            let (made, missing) = image_folder(&items, &args.out, args.copy)?;
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

/// Writes `out/<label>/<row>_<file name>` for every item whose key is a readable file.
fn image_folder(items: &[SetItem], out: &Path, copy: bool) -> Result<(usize, Vec<String>)> {
    let io = |p: &Path, e: std::io::Error| Error::io(format!("cannot write {}", p.display()))(e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut made = 0;
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for it in items {
        let src = PathBuf::from(&it.key);
        if !src.is_file() || !seen.insert(it.row) {
            if !src.is_file() {
                missing.push(it.key.clone());
            }
            continue;
        }
        let dir = out.join(label_dir(it.train_label()));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let dst = dir.join(format!("{}_{name}", it.row));
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
