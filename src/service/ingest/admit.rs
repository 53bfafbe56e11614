//! The one admit step of ingestion, shared by the `Ingest` stream and the jobs: a batch of
//! candidates goes in; keys the pool already holds (or the batch repeats) are skipped, fields
//! beyond the store's limits or metadata that is not JSON fail their item alone, images whose
//! content is already stored are duplicates, the rest are embedded and appended in one commit
//! (with the job's entry records, for a job). Every candidate gets exactly one outcome.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::ItemContent;
use crate::features::pipeline::ImageInput;
use crate::service::storage::{PoolRows, StoredPool};
use crate::service::Result;
use crate::service::Service;
use crate::store::{EntryOutcome, JobBatch, JobEntry, NewItem};
use crate::types::{hex, Matrix};

/// One item offered to a pool.
pub(super) struct Candidate {
    /// Its key (never empty here: a stream derives one from the content hash first).
    pub key: String,
    /// Weak label (empty means none).
    pub label: Option<String>,
    /// JSON metadata.
    pub metadata: Option<String>,
    /// What it carries, or why that could not be read.
    pub content: std::result::Result<ItemContent, String>,
    /// Hex SHA-256 of the content (of the image a vector was made from, where the sender
    /// names it); empty for a keyed vector without one (hashing is a fifth of a vector
    /// batch's cost).
    pub hash: String,
    /// De-duplicated by `hash` against the pool's images: images, and vectors sent with the
    /// hash of their image.
    pub by_content: bool,
}

/// A candidate that passed the checks made before the model sees it.
struct Admissible {
    key: String,
    label: Option<String>,
    metadata: Option<String>,
    content: ItemContent,
    hash: String,
    by_content: bool,
}

/// Where a batch goes: a pool, and the job it belongs to (whose entry records commit with
/// it, and which notes what the model holds in case the process dies on it).
pub(super) struct Target<'a> {
    pub service: &'a Service,
    pub pool: &'a dyn StoredPool,
    pub job: Option<&'a str>,
}

/// Admits `batch` into the target's pool: one outcome per candidate, in order. An error
/// here (the store, the catalog) means nothing of the batch was committed.
pub(super) fn admit(target: &Target<'_>, batch: Vec<Candidate>) -> Result<Vec<EntryOutcome>> {
    let keys: Vec<String> = batch.iter().map(|c| c.key.clone()).collect();
    let (present, mut by_hash, changed) = {
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let image_hashes: Vec<&str> = batch
            .iter()
            .filter(|c| c.by_content && c.content.is_ok())
            .map(|c| c.hash.as_str())
            .collect();
        let rows = target.pool.rows()?;
        let present = rows.existing_keys(&key_refs)?;
        let changed = changed_vectors(rows.as_ref(), &batch, &present)?;
        (present, rows.keys_by_hash(&image_hashes)?, changed)
    };
    let mut outcomes: Vec<Option<EntryOutcome>> = vec![None; batch.len()];
    let mut seen_keys = HashSet::new();
    let mut kept: Vec<(usize, Admissible)> = Vec::new();
    for (i, c) in batch.into_iter().enumerate() {
        match screen(c, &present, &changed, &mut seen_keys, &mut by_hash) {
            Err(outcome) => outcomes[i] = Some(outcome),
            Ok(a) => kept.push((i, a)),
        }
    }
    let inflight: Vec<String> = kept
        .iter()
        .filter(|(_, a)| matches!(a.content, ItemContent::Image(_)))
        .map(|(_, a)| a.key.clone())
        .collect();
    // The originals of this batch's duplicates: its images and its vectors of named images.
    let firsts: Vec<String> = kept
        .iter()
        .filter(|(_, a)| a.by_content)
        .map(|(_, a)| a.key.clone())
        .collect();
    if let Some(job) = target.job {
        // Committed before decoding: if this kills the process, the next run knows which
        // entries the model held (see the job runner's quarantine).
        target.service.store().set_job_inflight(job, &inflight)?;
    }
    let vectors = vectors_of(target, &mut kept)?;
    let dim = target.pool.record().dim;
    let mut data = Vec::with_capacity(kept.len() * dim);
    let mut items = Vec::with_capacity(kept.len());
    for ((i, c), v) in kept.into_iter().zip(vectors) {
        outcomes[i] = Some(match v {
            Ok(v) => {
                data.extend_from_slice(&v);
                items.push(NewItem {
                    key: c.key,
                    label: c.label.filter(|l| !l.is_empty()),
                    content_hash: Some(c.hash).filter(|h| !h.is_empty()),
                    metadata: c.metadata.filter(|m| !m.is_empty()),
                });
                EntryOutcome::Stored
            }
            Err(reason) => EntryOutcome::Failed(reason),
        });
    }
    // The contents this batch brought first: a duplicate of any other has its original in
    // the pool already.
    let originals: HashSet<&str> = firsts.iter().map(String::as_str).collect();
    let stored_keys: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let outcomes: Vec<EntryOutcome> = outcomes
        .into_iter()
        .map(|o| match o.expect("every candidate has an outcome") {
            // A duplicate of an image of this batch that could not be embedded fails too:
            // its original is not in the pool.
            EntryOutcome::Duplicate(of)
                if originals.contains(of.as_str()) && !stored_keys.contains(of.as_str()) =>
            {
                EntryOutcome::Failed(format!("same content as {of}, which could not be embedded"))
            }
            other => other,
        })
        .collect();
    let entries: Option<Vec<JobEntry>> = target.job.map(|_| {
        keys.iter()
            .zip(&outcomes)
            .map(|(key, outcome)| JobEntry {
                key: key.clone(),
                outcome: outcome.clone(),
            })
            .collect()
    });
    let job_batch = target
        .job
        .zip(entries.as_deref())
        .map(|(job_id, entries)| JobBatch { job_id, entries });
    let rows = items.len();
    let started = std::time::Instant::now();
    target
        .pool
        .append(&Matrix::new(rows, dim, data), &items, job_batch.as_ref())?;
    if let (Some(job), false) = (target.job, inflight.is_empty()) {
        target.service.store().set_job_inflight(job, &[])?;
    }
    tracing::debug!(
        rows,
        append_ms = started.elapsed().as_secs_f64() * 1e3,
        "ingest batch committed"
    );
    Ok(outcomes)
}

/// The candidate, ready to embed, or its outcome when one is decided before the model sees
/// it.
fn screen(
    c: Candidate,
    present: &HashSet<String>,
    changed: &HashMap<String, String>,
    seen_keys: &mut HashSet<String>,
    by_hash: &mut HashMap<String, String>,
) -> std::result::Result<Admissible, EntryOutcome> {
    if let Some(reason) = changed.get(&c.key) {
        return Err(EntryOutcome::Failed(reason.clone()));
    }
    if present.contains(&c.key) || !seen_keys.insert(c.key.clone()) {
        return Err(EntryOutcome::Present);
    }
    let content = c.content.map_err(EntryOutcome::Failed)?;
    if let Some(meta) = &c.metadata {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(meta) {
            return Err(EntryOutcome::Failed(format!(
                "metadata is not valid JSON: {e}"
            )));
        }
    }
    // Keys, labels and metadata within the store's limits, one item at a time (the store
    // would refuse the whole batch).
    if let Err(reason) =
        crate::store::check_item_fields(&c.key, c.label.as_deref(), c.metadata.as_deref())
    {
        return Err(EntryOutcome::Failed(reason));
    }
    if c.by_content {
        if let Some(of) = by_hash.get(&c.hash) {
            return Err(EntryOutcome::Duplicate(of.clone()));
        }
        by_hash.insert(c.hash.clone(), c.key.clone());
    }
    Ok(Admissible {
        key: c.key,
        label: c.label,
        metadata: c.metadata,
        content,
        hash: c.hash,
        by_content: c.by_content,
    })
}

/// The vectors sent under keys the pool holds with another vector (compared as stored: an
/// f16 pool's after rounding), by key, with the reason: re-sending an item is harmless, but
/// a different vector under a stored key is a mistake that skipping would hide.
fn changed_vectors(
    rows: &dyn PoolRows,
    batch: &[Candidate],
    present: &HashSet<String>,
) -> Result<HashMap<String, String>> {
    let mut changed = HashMap::new();
    if present.is_empty() {
        return Ok(changed);
    }
    let f16 = rows.record().dtype == crate::types::Dtype::F16;
    let as_stored = |v: f32| {
        if f16 {
            half::f16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    for c in batch {
        let Ok(ItemContent::Vector(sent)) = &c.content else {
            continue;
        };
        if !present.contains(&c.key) || changed.contains_key(&c.key) {
            continue;
        }
        let Some(row) = rows.row_of_key(&c.key)? else {
            continue;
        };
        let stored = rows.vectors(&[row])?;
        let same = stored.data.len() == sent.len()
            && stored
                .data
                .iter()
                .zip(sent)
                .all(|(a, b)| a.to_bits() == as_stored(*b).to_bits());
        if !same {
            changed.insert(
                c.key.clone(),
                format!("stored already (row {row}) with a different vector; give it another key, or delete the pool to import afresh"),
            );
        }
    }
    Ok(changed)
}

/// Vectors of the kept candidates: given, or embedded (a bad image gets its own reason). The
/// contents move out of the candidates: a batch of images is held once, not twice.
fn vectors_of(
    target: &Target<'_>,
    kept: &mut [(usize, Admissible)],
) -> Result<Vec<std::result::Result<Vec<f32>, String>>> {
    let mut out: Vec<std::result::Result<Vec<f32>, String>> = Vec::with_capacity(kept.len());
    let mut images = Vec::new();
    for (i, (_, c)) in kept.iter_mut().enumerate() {
        match &mut c.content {
            ItemContent::Vector(v) => out.push(Ok(std::mem::take(v))),
            ItemContent::Image(bytes) => {
                images.push((
                    i,
                    ImageInput::Bytes {
                        name: c.key.clone(),
                        bytes: std::mem::take(bytes),
                    },
                ));
                out.push(Err(String::new()));
            }
        }
    }
    if !images.is_empty() {
        let model = target.service.pool_model(&target.pool.record())?;
        let (idx, inputs): (Vec<usize>, Vec<ImageInput>) = images.into_iter().unzip();
        let embedded = model.embed(inputs);
        target
            .service
            .count_embedded(embedded.iter().filter(|v| v.is_ok()).count());
        for (i, r) in idx.into_iter().zip(embedded) {
            out[i] = r.map_err(|e| e.error.to_string());
        }
    }
    Ok(out)
}

/// Hex SHA-256 of an item's content (image bytes, or the vector's little-endian f32 bytes).
pub(super) fn content_hash(content: &ItemContent) -> String {
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
