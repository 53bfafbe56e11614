//! `dcd embed`: images → feature vectors (.npy) plus the path of each row, through the
//! batching pipeline. A bad image is reported and skipped; the others are embedded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::EmbedArgs;
use crate::error::{Error, Result};
use crate::features::pipeline::{Embedder, ImageInput, PipelineConfig};
use crate::features::FeatureExtractor;
use crate::types::Matrix;

/// The files named, with folders expanded recursively in sorted order (symlink loops listed
/// once; FIFOs, devices and unreadable folders reported on stderr and skipped).
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let listing = crate::files::walk(
                p,
                &crate::service::source::is_image,
                None,
                &crate::files::WalkLimits::default(),
                &|| false,
            )
            .map_err(|e| Error::Usage(e.to_string()))?;
            for s in listing.skipped {
                eprintln!("skipped {}: {}", s.path.display(), s.reason);
            }
            out.extend(listing.files);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(Error::Usage(format!(
                "{}: no such file or folder",
                p.display()
            )));
        }
    }
    Ok(out)
}

pub(super) fn run(args: EmbedArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".into()));
    }
    let files = collect_images(&args.images)?;
    if files.is_empty() {
        return Err(Error::Usage(
            "no images found in the given folders (looked for .jpg .jpeg .png .webp .bmp .tif .tiff .gif)".into(),
        ));
    }
    let model = args.model.choice().load(false)?;
    let preprocess = *model.preprocess();
    let dim = model.dim();
    let mut config = PipelineConfig {
        max_batch: args.batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue: 4 * args.batch,
        // The global pool is sized by --threads.
        model_threads: rayon::current_num_threads(),
        limits: args.limits.limits(),
        ..PipelineConfig::default()
    };
    if let Some(t) = args.decode_threads {
        config.decode_threads = t.max(1);
    }
    let model: Arc<dyn FeatureExtractor> = Arc::new(model);
    let (embedder, stats) = Embedder::start(model, preprocess, &config)
        .map_err(|e| Error::Internal(format!("cannot start the embedding threads: {e}")))?;
    let started = Instant::now();
    let results = embedder.embed(files.iter().cloned().map(ImageInput::Path).collect());
    let elapsed = started.elapsed().as_secs_f64();
    drop(embedder);
    let mut data = Vec::with_capacity(results.len() * dim);
    let mut keys = String::new();
    let mut failed = 0usize;
    for (path, r) in files.iter().zip(results) {
        match r {
            Ok(v) => {
                data.extend_from_slice(&v);
                keys.push_str(&path.display().to_string());
                keys.push('\n');
            }
            Err(e) => {
                failed += 1;
                eprintln!("skipped {e}");
            }
        }
    }
    let rows = data.len() / dim;
    if rows == 0 {
        return Err(Error::Usage(format!(
            "none of the {} images could be embedded (reasons above)",
            files.len()
        )));
    }
    crate::formats::write_npy(&args.out, &Matrix::new(rows, dim, data))?;
    let keys_out = args
        .keys_out
        .clone()
        .unwrap_or_else(|| args.out.with_extension("keys.txt"));
    std::fs::write(&keys_out, keys)
        .map_err(Error::io(format!("cannot write {}", keys_out.display())))?;
    let s = stats.lock().clone();
    println!(
        "embedded {rows} images ({dim}-d) into {} in {elapsed:.1} s ({:.1} images/s, {} batches); {failed} skipped; row paths in {}",
        args.out.display(),
        rows as f64 / elapsed,
        s.batches,
        keys_out.display()
    );
    Ok(())
}
