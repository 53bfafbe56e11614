//! Items streamed in by a client (the `Ingest` RPC): batched, de-duplicated, embedded when
//! they are images, and appended durably batch by batch. A batch is committed whole or not
//! at all, so a stream cut off midway leaves every earlier batch stored and nothing partial.

use std::sync::Arc;

use super::admit::{admit, content_hash, Candidate, Target};
use crate::index::IndexError;
use crate::service::storage::StoredPool;
use crate::service::Result;
use crate::service::{Service, ServiceError};
use crate::store::EntryOutcome;

/// Vectors per commit.
const VECTOR_BATCH: usize = 8192;
/// Images per commit (each batch is embedded first).
const IMAGE_BATCH: usize = 64;
/// Content bytes per commit: a batch of large images (or wide vectors) commits before its
/// count is reached.
const BATCH_BYTES: usize = 64 << 20;
/// Item errors kept for the summary.
const MAX_REPORTED_ERRORS: usize = 100;
/// Most items of a stream that reports each item's outcome (the answer holds them all).
pub const MAX_ITEMIZED: u64 = 100_000;

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
    /// Hex SHA-256 of the image a vector was made from: the vector is then de-duplicated by
    /// content like an image (for an image, checked against its bytes).
    pub content_sha256: Option<String>,
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
    /// Every item's outcome, in the order received (when asked: [`StreamIngest::itemize`]).
    #[serde(skip)]
    pub outcomes: Vec<(String, EntryOutcome)>,
}

/// A stream in progress.
pub struct StreamIngest {
    service: Arc<Service>,
    pool: Arc<dyn StoredPool>,
    dim: usize,
    pending: Vec<IngestItem>,
    pending_images: usize,
    pending_bytes: usize,
    summary: StreamSummary,
    itemize: bool,
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
            itemize: false,
        })
    }

    /// Reports each item's outcome in the summary (for streams of up to [`MAX_ITEMIZED`]
    /// items: a worker's batch, not a whole pool).
    pub fn itemize(&mut self) {
        self.itemize = true;
    }

    /// The pool's name.
    pub fn pool_name(&self) -> String {
        self.pool.record().name
    }

    /// Takes one item; commits a batch when enough are pending. A vector of the wrong
    /// dimension or with NaN stops the stream (batches before it stay stored).
    pub fn push(&mut self, item: IngestItem) -> Result<()> {
        if self.itemize && self.summary.received >= MAX_ITEMIZED {
            self.flush()?;
            return Err(ServiceError::InvalidArgument {
                field: "itemize",
                reason: format!(
                    "a stream that reports each item's outcome holds at most {MAX_ITEMIZED} items; the {} before this one are stored: send the rest in another stream",
                    self.summary.received
                ),
            });
        }
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
                    });
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
            if let Err(e) = self.pool.catch_up_index(false) {
                tracing::warn!(error = %e, "cannot start the index catch-up; the next search retries");
            }
        }
        Ok(self.summary)
    }

    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_images = 0;
        self.pending_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let candidates: Vec<Candidate> = batch
            .into_iter()
            .map(|item| {
                let image = matches!(item.content, ItemContent::Image(_));
                let named = item.content_sha256.as_deref().map(image_hash);
                let hash = match &named {
                    _ if image => content_hash(&item.content),
                    Some(Ok(h)) => h.clone(),
                    _ if item.key.is_empty() => content_hash(&item.content),
                    _ => String::new(),
                };
                let content = match named {
                    Some(Err(reason)) => Err(reason),
                    Some(Ok(h)) if image && h != hash => Err(format!(
                        "content_sha256 {h} is not the SHA-256 of the image's bytes ({hash})"
                    )),
                    _ => Ok(item.content),
                };
                Candidate {
                    key: if item.key.is_empty() {
                        format!("sha256:{hash}")
                    } else {
                        item.key
                    },
                    label: item.label,
                    metadata: item.metadata,
                    content,
                    by_content: image || item.content_sha256.is_some(),
                    // (a malformed content_sha256 has failed the item above)
                    hash,
                }
            })
            .collect();
        let keys: Vec<String> = candidates.iter().map(|c| c.key.clone()).collect();
        let target = Target {
            service: &self.service,
            pool: self.pool.as_ref(),
            job: None,
        };
        for (key, outcome) in keys.into_iter().zip(admit(&target, candidates)?) {
            let s = &mut self.summary;
            if self.itemize {
                s.outcomes.push((key.clone(), outcome.clone()));
            }
            let reported = match outcome {
                EntryOutcome::Stored => {
                    s.stored += 1;
                    None
                }
                EntryOutcome::Present => {
                    s.present += 1;
                    None
                }
                EntryOutcome::Duplicate(of) => {
                    s.duplicates += 1;
                    Some(format!("duplicate of {of}"))
                }
                EntryOutcome::Failed(reason) => {
                    s.failed += 1;
                    Some(reason)
                }
            };
            if let Some(reason) = reported {
                if s.errors.len() < MAX_REPORTED_ERRORS {
                    s.errors
                        .push((crate::types::clip_for_message(&key, 200), reason));
                }
            }
        }
        Ok(())
    }
}

/// A sender's hex SHA-256 of an image, lower-cased, or why it is not one.
fn image_hash(h: &str) -> std::result::Result<String, String> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(format!(
            "content_sha256 {:?} is not a SHA-256 in hex (64 hex digits)",
            crate::types::clip_for_message(h, 80)
        ))
    }
}
