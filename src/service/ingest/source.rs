//! What an ingestion job reads: the entries of an ImageFolder tree (subfolder = weak label)
//! or of a CSV / JSONL manifest (path, label, metadata), in a stable order so that a resumed
//! job walks the same list. Listings are bounded ([`ServiceLimits`]) and stop when asked;
//! what cannot be listed (an unreadable subfolder, a FIFO named like an image, a symlink out
//! of the allowed roots, a folder too deep) becomes a failed entry with its reason instead of
//! failing the job.

use std::path::{Path, PathBuf};

use crate::files::{self, WalkError};
use crate::service::Result;
use crate::service::{AllowedRoots, ServiceError, ServiceLimits};
use crate::store::JobSource;

/// Extensions taken from folders.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// One image to ingest.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The file.
    pub path: PathBuf,
    /// Its key in the pool: the absolute path.
    pub key: String,
    /// Weak label.
    pub label: Option<String>,
    /// JSON metadata (manifests only).
    pub metadata: Option<String>,
    /// Set when the manifest names a path the server may not read.
    pub refused: Option<String>,
}

/// Lists a job's entries. Paths are checked against `roots`; a folder or manifest outside
/// them is refused outright, a manifest entry outside them becomes a failed entry. `stop` is
/// asked now and then: a cancelled job or a client gone ends the listing.
pub fn list(
    source: &JobSource,
    roots: &AllowedRoots,
    limits: &ServiceLimits,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Entry>> {
    let entries = match source {
        JobSource::Folder(dir) => {
            let dir = roots.check(dir)?;
            if !dir.is_dir() {
                return Err(ServiceError::InvalidArgument {
                    field: "folder",
                    reason: format!(
                        "{} is a file; give a folder (or use a manifest)",
                        dir.display()
                    ),
                });
            }
            folder(&dir, roots, limits, stop)?
        }
        JobSource::Manifest(file) => {
            let file = roots.check(file)?;
            manifest(&file, roots, limits)?
        }
    };
    if entries.iter().all(|e| e.refused.is_some()) {
        let first_failure = entries
            .first()
            .and_then(|e| Some(format!("; {}: {}", e.key, e.refused.as_ref()?)))
            .unwrap_or_default();
        return Err(ServiceError::NoImages {
            path: source.path().to_owned(),
            hint: match source {
                JobSource::Folder(_) => {
                    format!("; an ImageFolder has one subfolder per weak label{first_failure}")
                }
                JobSource::Manifest(_) => first_failure,
            },
        });
    }
    Ok(entries)
}

fn folder(
    root: &Path,
    roots: &AllowedRoots,
    limits: &ServiceLimits,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Entry>> {
    let within = match roots {
        AllowedRoots::Any => None,
        AllowedRoots::Only(r) => Some(r.as_slice()),
    };
    let listing =
        files::walk(root, &is_image, within, &limits.walk, stop).map_err(|e| match e {
            WalkError::Root {
                path,
                reason,
                permission: true,
            } => ServiceError::PathPermissionDenied { path, reason },
            WalkError::Root { path, reason, .. } => ServiceError::PathUnreadable { path, reason },
            WalkError::TooManyEntries { path, max } => ServiceError::OverLimit {
                what: format!("{} holds more than {max} entries", path.display()),
                fix: "split it into several jobs",
                flag: "--max-job-entries",
            },
            WalkError::Stopped { .. } => ServiceError::Cancelled {
                what: "listing the folder",
            },
        })?;
    let label_of = |p: &Path| {
        p.strip_prefix(root).ok().and_then(|rel| {
            let mut c = rel.components();
            let first = c.next()?;
            c.next()
                .map(|_| first.as_os_str().to_string_lossy().into_owned())
        })
    };
    let mut out: Vec<Entry> = listing
        .files
        .into_iter()
        .map(|p| Entry {
            key: p.to_string_lossy().into_owned(),
            label: label_of(&p),
            path: p,
            metadata: None,
            refused: None,
        })
        .collect();
    // Failed entries after the files: their keys are paths too, so a resumed job finds them
    // done; a folder that later becomes readable is listed by a new job.
    out.extend(listing.skipped.into_iter().map(|s| Entry {
        key: s.path.to_string_lossy().into_owned(),
        label: label_of(&s.path),
        path: s.path,
        metadata: None,
        refused: Some(s.reason),
    }));
    Ok(out)
}

/// True for the file names a folder listing takes (by extension, any case).
pub fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads a manifest: `.jsonl` (one object per line with `path`, optional `label` and
/// `metadata`) or CSV with a header naming `path` and optionally `label` and `metadata`.
fn manifest(file: &Path, roots: &AllowedRoots, limits: &ServiceLimits) -> Result<Vec<Entry>> {
    let bytes = files::read_regular(file, limits.max_manifest_bytes).map_err(|e| match e {
        files::ReadError::TooLarge { bytes, max } => ServiceError::OverLimit {
            what: format!("manifest {} is {bytes} bytes, above {max}", file.display()),
            fix: "split it into several manifests",
            flag: "--max-manifest-mib",
        },
        other => ServiceError::PathUnreadable {
            path: file.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let text = String::from_utf8(bytes).map_err(|e| ServiceError::BadManifest {
        path: file.to_owned(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        reason: "not UTF-8 text".into(),
    })?;
    let base = file.parent().unwrap_or(Path::new("/"));
    let bad = |line: usize, reason: String| ServiceError::BadManifest {
        path: file.to_owned(),
        line,
        reason,
    };
    let mut rows: Vec<(usize, String, Option<String>, Option<String>)> = Vec::new();
    let is_jsonl = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"));
    if is_jsonl {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not JSON: {e}")))?;
            let path = v
                .get("path")
                .and_then(|p| p.as_str())
                .ok_or_else(|| bad(i + 1, "needs a string field \"path\"".into()))?;
            let label = v.get("label").and_then(|l| l.as_str()).map(str::to_owned);
            let metadata = v.get("metadata").map(|m| m.to_string());
            rows.push((i + 1, path.to_owned(), label, metadata));
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let path_col = col("path").ok_or_else(|| {
            bad(
                1,
                "the header must name a \"path\" column (optionally \"label\" and \"metadata\")"
                    .into(),
            )
        })?;
        let (label_col, meta_col) = (col("label"), col("metadata"));
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| bad(line, e.to_string()))?;
            let get = |c: Option<usize>| {
                c.and_then(|c| rec.get(c))
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let metadata = get(meta_col);
            if let Some(m) = &metadata {
                serde_json::from_str::<serde_json::Value>(m)
                    .map_err(|e| bad(line, format!("metadata is not JSON: {e}")))?;
            }
            rows.push((line, rec[path_col].to_owned(), get(label_col), metadata));
        }
    }
    if rows.len() > limits.walk.max_entries {
        return Err(ServiceError::OverLimit {
            what: format!(
                "manifest {} lists {} entries, more than {}",
                file.display(),
                rows.len(),
                limits.walk.max_entries
            ),
            fix: "split it into several manifests",
            flag: "--max-job-entries",
        });
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = std::collections::HashSet::new();
    for (line, path, label, metadata) in rows {
        let p = Path::new(&path);
        let full = if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        };
        let (key, refused) = match roots.check(&full) {
            Ok(real) => (real.to_string_lossy().into_owned(), None),
            Err(e) => (full.to_string_lossy().into_owned(), Some(e.to_string())),
        };
        if !seen.insert(key.clone()) {
            return Err(bad(line, format!("{path} is listed twice")));
        }
        out.push(Entry {
            path: full,
            key,
            label,
            metadata,
            refused,
        });
    }
    Ok(out)
}
