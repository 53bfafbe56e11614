//! Where weights come from: a file, a directory (a saved Hugging Face model or a folder with
//! one checkpoint), or a model id such as `facebook/dino-vits16` looked up in the local Hugging
//! Face hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
//! dcd never downloads: fetch a model once with `huggingface-cli download ORG/NAME`.

use std::path::{Path, PathBuf};

use super::error::{FeatureError, FeatureResult};

/// Checkpoint file names tried in a model directory, in order.
const CHECKPOINT_NAMES: [&str; 4] = [
    "model.safetensors",
    "pytorch_model.bin",
    "model.pth",
    "model.pt",
];

/// A resolved checkpoint: its file and, for Hugging Face models, the `config.json` beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The weights file.
    pub weights: PathBuf,
    /// `config.json` in the same directory, when there is one.
    pub config: Option<PathBuf>,
}

/// Finds the checkpoint named by `spec`: a path, or a hub model id in the local cache.
pub fn resolve(spec: &str) -> FeatureResult<Checkpoint> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(with_config(path.to_path_buf()));
    }
    if path.is_dir() {
        return in_directory(path).ok_or_else(|| FeatureError::WeightsNotFound {
            what: spec.to_string(),
            hint: format!(
                "the directory holds none of {} nor a single .safetensors/.pth file",
                CHECKPOINT_NAMES.join(", ")
            ),
        });
    }
    let looks_like_id =
        spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.contains('\\');
    if !looks_like_id {
        return Err(FeatureError::WeightsNotFound {
            what: spec.to_string(),
            hint: "no such file or directory; give a .safetensors/.pth path, a model directory or a Hugging Face model id (ORG/NAME)".into(),
        });
    }
    let cache = hub_cache_dir();
    let model_dir = cache.join(format!("models--{}", spec.replace('/', "--")));
    let snapshot = snapshot_dir(&model_dir);
    snapshot
        .as_deref()
        .and_then(in_directory)
        .ok_or_else(|| FeatureError::WeightsNotFound {
            what: spec.to_string(),
            hint: format!(
                "not in the local Hugging Face cache ({}); fetch it once with `huggingface-cli download {spec}` (or set HF_HUB_CACHE), or pass --weights PATH",
                model_dir.display()
            ),
        })
}

/// The hub cache directory, from the same variables as `huggingface_hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// `snapshots/<rev>` for the revision `refs/main` points at, else the only snapshot there is.
fn snapshot_dir(model_dir: &Path) -> Option<PathBuf> {
    let snapshots = model_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(model_dir.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    (dirs.len() == 1).then(|| dirs.remove(0))
}

fn in_directory(dir: &Path) -> Option<Checkpoint> {
    for name in CHECKPOINT_NAMES {
        let p = dir.join(name);
        if p.is_file() {
            return Some(with_config(p));
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("safetensors" | "pth" | "pt")
            )
        })
        .collect();
    (found.len() == 1).then(|| with_config(found.remove(0)))
}

fn with_config(weights: PathBuf) -> Checkpoint {
    let config = weights
        .parent()
        .map(|d| d.join("config.json"))
        .filter(|c| c.is_file());
    Checkpoint { weights, config }
}
