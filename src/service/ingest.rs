//! Items streamed in by a client (the `Ingest` RPC): batched, de-duplicated, embedded when
//! they are images, and appended durably batch by batch. A batch is committed whole or not
//! at all, so a stream cut off midway leaves every earlier batch stored and nothing partial.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::types::hex;

use super::{PoolHandle, Service, ServiceError};
use crate::error::Result;
use crate::features::pipeline::ImageInput;
use crate::index::IndexError;
use crate::store::NewItem;
use crate::types::Matrix;

/// Vectors per commit.
const VECTOR_BATCH: usize = 8192;
/// Images per commit (each batch is embedded first).
const IMAGE_BATCH: usize = 64;
/// Content bytes per commit: a batch of large images (or wide vectors) commits before its
/// count is reached.
pub const BATCH_BYTES: usize = 64 << 20;
/// Item errors kept for the summary.
const MAX_REPORTED_ERRORS: usize = 100;

/// What an item carries.
#[derive(Clone, Debug)]
pub enum ItemContent {
    /// An encoded image, embedded with the pool's backbone.
    Image(Vec<u8>),
    /// A vector of the pool's dimension.
    Vector(Vec<f32>),
}

/// One streamed item.
#[derive(Clone, Debug)]
pub struct IngestItem {
    /// Unique key (URI); empty: derived from the content hash.
    pub key: String,
    /// Weak label.
    pub label: Option<String>,
    /// JSON metadata.
    pub metadata: Option<String>,
    /// Image or vector.
    pub content: ItemContent,
}

/// The outcome of a stream.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StreamSummary {
    /// Items received.
    pub received: u64,
    /// New items stored.
    pub stored: u64,
    /// Images whose content was already stored (under another key).
    pub duplicates: u64,
    /// Items whose key was already in the pool (skipped: re-sending is safe).
    pub present: u64,
    /// Items that could not be used.
    pub failed: u64,
    /// The first item errors: (key, reason).
    pub errors: Vec<(String, String)>,
    /// Items in the pool afterwards.
    pub pool_items: u64,
}

/// A stream in progress.
pub struct StreamIngest {
    service: Arc<Service>,
    pool: Arc<PoolHandle>,
    dim: usize,
    pending: Vec<IngestItem>,
    pending_images: usize,
    pending_bytes: usize,
    summary: StreamSummary,
}

impl StreamIngest {
    /// Starts a stream into `pool`.
    pub fn start(service: Arc<Service>, pool: &str) -> Result<StreamIngest> {
        let handle = service.pool(pool)?;
        let dim = handle.record().dim;
        Ok(StreamIngest {
            service,
            pool: handle,
            dim,
            pending: Vec::new(),
            pending_images: 0,
            pending_bytes: 0,
            summary: StreamSummary::default(),
        })
    }

    /// The pool's name.
    pub fn pool_name(&self) -> String {
        self.pool.record().name
    }

    /// Takes one item; commits a batch when enough are pending. A vector of the wrong
    /// dimension or with NaN stops the stream (batches before it stay stored).
    pub fn push(&mut self, item: IngestItem) -> Result<()> {
        let position = self.summary.received as usize;
        self.summary.received += 1;
        match &item.content {
            ItemContent::Vector(v) => {
                if let Err(e) = crate::index::validate_query(self.dim, v, 1, position) {
                    // Everything before the bad item is committed, so the caller knows
                    // exactly what is stored: the items ahead of it.
                    self.flush()?;
                    return Err(ServiceError::InvalidArgument {
                        field: "items",
                        reason: format!(
                            "item {position} (key {:?}): {}; the {} items before it are stored",
                            item.key,
                            match e {
                                IndexError::DimensionMismatch { expected, got, .. } => format!(
                                    "the vector is {got}-d but the pool stores {expected}-d vectors"
                                ),
                                other => other.to_string(),
                            },
                            self.summary.stored + self.summary.present + self.summary.duplicates
                        ),
                    }
                    .into());
                }
            }
            ItemContent::Image(bytes) => {
                self.pending_images += 1;
                self.pending_bytes += bytes.len();
            }
        }
        if let ItemContent::Vector(v) = &item.content {
            self.pending_bytes += 4 * v.len();
        }
        self.pending.push(item);
        if self.pending_images >= IMAGE_BATCH
            || self.pending_bytes >= BATCH_BYTES
            || self.pending.len() >= VECTOR_BATCH
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Commits what is pending now (a caller short of memory asks for it early).
    pub fn commit(&mut self) -> Result<()> {
        self.flush()
    }

    /// Items received but not yet committed (0 right after a commit: whatever the caller
    /// holds for them, such as a share of a memory budget, can be let go).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Commits what is pending and returns the summary; the index catches up in the
    /// background.
    pub fn finish(mut self) -> Result<StreamSummary> {
        self.flush()?;
        self.summary.pool_items = self.pool.record().rows;
        if self.summary.stored > 0 {
            // One build thread per pool however many streams finish; searches scan the new
            // rows until it is done.
            self.pool.refresh_in_background();
        }
        Ok(self.summary)
    }

    fn fail(&mut self, key: &str, reason: String) {
        self.summary.failed += 1;
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push((key.to_owned(), reason));
        }
    }

    fn flush(&mut self) -> Result<()> {
        let mut batch = std::mem::take(&mut self.pending);
        self.pending_images = 0;
        self.pending_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        // Keys and hashes first: re-sent items and duplicate images are skipped before the
        // model sees them.
        // Vectors with a key need no hash (they are not de-duplicated by content), and
        // hashing is a fifth of a vector batch's cost.
        let mut hashes = Vec::with_capacity(batch.len());
        for item in &mut batch {
            let needs_hash = item.key.is_empty() || matches!(item.content, ItemContent::Image(_));
            let hash = if needs_hash {
                content_hash(&item.content)
            } else {
                String::new()
            };
            if item.key.is_empty() {
                item.key = format!("sha256:{hash}");
            }
            hashes.push(hash);
        }
        let keys: Vec<&str> = batch.iter().map(|i| i.key.as_str()).collect();
        let (present, by_hash) = {
            let open = self.pool.read();
            let image_hashes: Vec<&str> = batch
                .iter()
                .zip(&hashes)
                .filter(|(i, _)| matches!(i.content, ItemContent::Image(_)))
                .map(|(_, h)| h.as_str())
                .collect();
            (
                open.pool.existing_keys(&keys)?,
                open.pool.keys_by_hash(&image_hashes)?,
            )
        };
        let mut seen_keys = HashSet::new();
        let mut seen_hashes: HashMap<String, String> = by_hash;
        let mut kept = Vec::new();
        for (item, hash) in batch.into_iter().zip(hashes) {
            if present.contains(&item.key) || !seen_keys.insert(item.key.clone()) {
                self.summary.present += 1;
                continue;
            }
            if let Some(meta) = &item.metadata {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(meta) {
                    self.fail(&item.key, format!("metadata is not valid JSON: {e}"));
                    continue;
                }
            }
            // Keys, labels and metadata within the store's limits, one item at a time (the
            // store would refuse the whole batch).
            let limits = crate::store::check_item_fields(
                &item.key,
                item.label.as_deref(),
                item.metadata.as_deref(),
            );
            if let Err(reason) = limits {
                let key = crate::types::clip_for_message(&item.key, 200);
                self.fail(&key, reason);
                continue;
            }
            if matches!(item.content, ItemContent::Image(_)) {
                if let Some(of) = seen_hashes.get(&hash) {
                    self.summary.duplicates += 1;
                    if self.summary.errors.len() < MAX_REPORTED_ERRORS {
                        self.summary
                            .errors
                            .push((item.key.clone(), format!("duplicate of {of}")));
                    }
                    continue;
                }
                seen_hashes.insert(hash.clone(), item.key.clone());
            }
            kept.push((item, hash));
        }
        let vectors = self.vectors_of(&mut kept)?;
        let mut data = Vec::with_capacity(kept.len() * self.dim);
        let mut items = Vec::with_capacity(kept.len());
        for ((item, hash), v) in kept.into_iter().zip(vectors) {
            match v {
                Ok(v) => {
                    data.extend_from_slice(&v);
                    items.push(NewItem {
                        key: item.key,
                        label: item.label.filter(|l| !l.is_empty()),
                        content_hash: Some(hash).filter(|h| !h.is_empty()),
                        metadata: item.metadata.filter(|m| !m.is_empty()),
                    });
                }
                Err(reason) => self.fail(&item.key, reason),
            }
        }
        let rows = items.len();
        let t = std::time::Instant::now();
        self.pool
            .append(&Matrix::new(rows, self.dim, data), &items, None)?;
        tracing::debug!(
            rows,
            append_ms = t.elapsed().as_secs_f64() * 1e3,
            "ingest batch committed"
        );
        self.summary.stored += rows as u64;
        Ok(())
    }

    /// Vectors of the kept items: given, or embedded (a bad image gets its own error). The
    /// contents move out of the items: a batch of images is held once, not twice.
    fn vectors_of(
        &self,
        kept: &mut [(IngestItem, String)],
    ) -> Result<Vec<std::result::Result<Vec<f32>, String>>> {
        let mut out: Vec<std::result::Result<Vec<f32>, String>> = Vec::with_capacity(kept.len());
        let mut images = Vec::new();
        for (i, (item, _)) in kept.iter_mut().enumerate() {
            match &mut item.content {
                ItemContent::Vector(v) => out.push(Ok(std::mem::take(v))),
                ItemContent::Image(bytes) => {
                    images.push((
                        i,
                        ImageInput::Bytes {
                            name: item.key.clone(),
                            bytes: std::mem::take(bytes),
                        },
                    ));
                    out.push(Err(String::new()));
                }
            }
        }
        if !images.is_empty() {
            let model = self.service.pool_model(&self.pool.record())?;
            let (idx, inputs): (Vec<usize>, Vec<ImageInput>) = images.into_iter().unzip();
            self.service.count_embedded(inputs.len());
            for (i, r) in idx.into_iter().zip(model.embed(inputs)) {
                out[i] = r.map_err(|e| e.error.to_string());
            }
        }
        Ok(out)
    }
}

/// Hex SHA-256 of an item's content (image bytes, or the vector's little-endian f32 bytes).
pub fn content_hash(content: &ItemContent) -> String {
    let mut h = Sha256::new();
    match content {
        ItemContent::Image(bytes) => h.update(bytes),
        ItemContent::Vector(v) => h.update(bytemuck::cast_slice::<f32, u8>(v)),
    }
    hex(&h.finalize())
}

/// Hex SHA-256 of a file's bytes.
pub fn content_hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
