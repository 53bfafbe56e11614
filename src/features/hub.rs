//! Where weights come from: a file, a directory (a saved Hugging Face model or a folder with
//! one checkpoint), or a model id such as `facebook/dino-vits16` looked up in the local Hugging
//! Face hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`) and,
//! when it is not there, downloaded into that cache (hf-hub; `$HF_ENDPOINT` and the cached
//! token are honoured). `HF_HUB_OFFLINE=1` forbids the download, as in `huggingface_hub`.
//! These variables are read here rather than in `config` because they are the hub's own.

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
    if !looks_like_model_id(spec) {
        return Err(FeatureError::WeightsNotFound {
            what: spec.to_string(),
            hint: "no such file or directory; give a .safetensors/.pth path, a model directory or a Hugging Face model id (ORG/NAME)".into(),
        });
    }
    let cache = hub_cache_dir();
    let model_dir = cache.join(format!("models--{}", spec.replace('/', "--")));
    if let Some(found) = snapshot_dir(&model_dir).as_deref().and_then(in_directory) {
        return Ok(found);
    }
    let offline =
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if offline {
        return Err(FeatureError::WeightsNotFound {
            what: spec.to_string(),
            hint: format!(
                "not in the local Hugging Face cache ({}) and HF_HUB_OFFLINE forbids downloading; fetch it once with `huggingface-cli download {spec}` (or set HF_HUB_CACHE), or pass --weights PATH",
                model_dir.display()
            ),
        });
    }
    download(spec, &cache).map_err(|reason| FeatureError::WeightsNotFound {
        what: spec.to_string(),
        hint: format!(
            "not in the local Hugging Face cache ({}) and the download failed: {reason}; check the model id and the network (or HF_ENDPOINT), fetch it with `huggingface-cli download {spec}`, or pass --weights PATH",
            model_dir.display()
        ),
    })
}

/// Downloads `config.json` (when the model has one) and the first checkpoint file found into
/// the hub cache layout; the error is a reason for the user.
fn download(id: &str, cache: &Path) -> Result<Checkpoint, String> {
    use std::io::IsTerminal;
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(std::io::stderr().is_terminal())
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(id.to_string());
    let mut last_error = String::new();
    for name in &CHECKPOINT_NAMES[..2] {
        tracing::info!(
            model = id,
            file = name,
            "downloading from the Hugging Face hub"
        );
        match repo.get(name) {
            Ok(weights) => {
                let config = repo.get("config.json").ok();
                return Ok(Checkpoint { weights, config });
            }
            Err(e) => last_error = format!("{name}: {e}"),
        }
    }
    Err(last_error)
}

/// `ORG/NAME` with hub-legal characters, not a missing local path such as `weights/m.pth`
/// (which must fail as a path, not trigger a download).
fn looks_like_model_id(spec: &str) -> bool {
    let Some((org, name)) = spec.split_once('/') else {
        return false;
    };
    let legal = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let weights_ext = [".safetensors", ".pth", ".pt", ".bin", ".ckpt"]
        .iter()
        .any(|e| name.ends_with(e));
    legal(org) && legal(name) && !weights_ext && !Path::new(org).is_dir()
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
