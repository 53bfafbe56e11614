//! Thumbnails of pool images for the review page: the item's key read as a server-side path
//! (only below `--allow-root`), decoded within the image limits, shrunk once to a JPEG and
//! kept in `<data-dir>/thumbs/`, named by the file's path, size and modification time, so a
//! changed image gets a new thumbnail and an unchanged one is never decoded twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Result, Service, ServiceError};
use crate::types::{hex, RowId};

/// Longest side of a thumbnail, in pixels.
pub const THUMB_SIDE: u32 = 160;

impl Service {
    /// A JPEG thumbnail of the image of row `row` in `pool`, whose key is its path.
    pub fn thumbnail(&self, pool: &str, row: RowId) -> Result<Vec<u8>> {
        let handle = self.pool(pool)?;
        let rows = handle.rows()?;
        if row as usize >= rows.len() {
            return Err(ServiceError::InvalidArgument {
                field: "row",
                reason: format!(
                    "pool {pool:?} has {} rows; row {row} is not one",
                    rows.len()
                ),
            });
        }
        let key = rows.items(&[row])?.pop().map(|i| i.key).unwrap_or_default();
        let path = Path::new(&key);
        if !path.is_absolute() {
            return Err(ServiceError::InvalidArgument {
                field: "key",
                reason: format!(
                    "item {key:?} is not an image path on the server (its key is not an absolute path): no thumbnail"
                ),
            });
        }
        let real = self.settings.roots.check(path)?;
        let meta = std::fs::metadata(&real).map_err(|e| ServiceError::PathUnreadable {
            path: real.clone(),
            reason: e.to_string(),
        })?;
        let cached = self.thumb_path(&real, &meta);
        if let Ok(bytes) = std::fs::read(&cached) {
            return Ok(bytes);
        }
        let limits = &self.settings.models.pipeline.limits;
        let unusable = |reason: String| ServiceError::InvalidArgument {
            field: "image",
            reason: format!("{} cannot be shown: {reason}", real.display()),
        };
        let bytes = crate::features::preprocess::read_image_file(&real, limits)
            .map_err(|e| unusable(e.to_string()))?;
        let image = crate::features::preprocess::decode_within(&bytes, limits)
            .map_err(|e| unusable(e.to_string()))?;
        let jpeg = crate::features::thumbnail::thumbnail_jpeg(image, THUMB_SIDE).map_err(|e| {
            ServiceError::Internal {
                what: format!("a thumbnail of {}: {e}", real.display()),
            }
        })?;
        // A cache that cannot be written only costs a decode next time.
        if let Err(e) = write_atomically(&cached, &jpeg) {
            tracing::debug!(path = %cached.display(), error = %e, "thumbnail not cached");
        }
        Ok(jpeg)
    }

    fn thumb_path(&self, real: &Path, meta: &std::fs::Metadata) -> PathBuf {
        let mut h = Sha256::new();
        h.update(real.as_os_str().as_encoded_bytes());
        h.update(meta.len().to_le_bytes());
        if let Ok(t) = meta.modified() {
            if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                h.update(d.as_nanos().to_le_bytes());
            }
        }
        h.update(THUMB_SIDE.to_le_bytes());
        let name = hex(&h.finalize()[..16]);
        self.store()
            .root()
            .join("thumbs")
            .join(&name[..2])
            .join(format!("{name}.jpg"))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path)
}

/// A new file beside the cache entry (unique per thread and call).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let p = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let f = std::fs::File::create(&p)?;
    Ok((p, f))
}
