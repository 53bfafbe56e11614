//! The body of one ingestion job, on its own thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::watch;

use super::source::{self, Entry};
use super::{CANCEL, CHUNK, RUN};
use crate::error::{Error, Result};
use crate::features::pipeline::ImageInput;
use crate::service::{content_hash_bytes, Service};
use crate::store::{EntryOutcome, JobBatch, JobEntry, JobRecord, JobState, NewItem, StoreError};
use crate::types::Matrix;

/// What the entries the model held when the process last stopped (`inflight`, those not
/// done) say about `todo`. If the process died on them, one may have killed it: with several,
/// each is moved to the front to be embedded alone (returns how many); with one, alone
/// already, it is failed as quarantined instead of resumed, so a file that kills the server
/// cannot do it at every restart.
fn quarantine(inflight: Vec<String>, todo: &mut Vec<Entry>) -> usize {
    let suspects: std::collections::HashSet<String> = inflight.into_iter().collect();
    let (mut front, back): (Vec<Entry>, Vec<Entry>) =
        todo.drain(..).partition(|e| suspects.contains(&e.key));
    if front.len() == 1 {
        tracing::warn!(key = %front[0].key, "quarantining an entry the server stopped on when it was embedded alone");
        front[0].refused = Some(
            "quarantined: the server stopped while embedding this file, twice (the second time alone); it is not tried again".into(),
        );
    } else if !front.is_empty() {
        tracing::warn!(
            entries = front.len(),
            "the server stopped while embedding these entries; embedding each alone"
        );
    }
    let alone = if front.len() > 1 { front.len() } else { 0 };
    front.extend(back);
    *todo = front;
    alone
}

/// `todo` cut into commits of at most [`CHUNK`] entries whose files add up to at most
/// `max_bytes` (one file alone may exceed it): what a chunk reads ahead of the model is
/// bounded in bytes, not only in count. The first `alone` entries are a chunk each.
fn chunks(todo: &[Entry], max_bytes: u64, alone: usize) -> impl Iterator<Item = &[Entry]> {
    let mut rest = todo;
    let mut alone = alone;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if alone > 0 {
            alone -= 1;
            let (chunk, tail) = rest.split_at(1);
            rest = tail;
            return Some(chunk);
        }
        let mut bytes = 0u64;
        let mut n = 0;
        while n < rest.len().min(CHUNK) {
            let e = &rest[n];
            let size = match e.refused {
                Some(_) => 0,
                // A file that cannot be examined fails when it is read.
                None => crate::files::regular_size(&e.path).unwrap_or(0),
            };
            if n > 0 && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Runs job `id` to its end (or until `stop` says otherwise), publishing progress on `tx`.
pub(super) fn run(service: &Service, id: &str, stop: &AtomicU8, tx: &watch::Sender<JobRecord>) {
    // A panic would leave the job `running` with no thread behind it: it fails the job.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_inner(service, id, stop, tx)
    }))
    .unwrap_or_else(|panic| {
        Err(crate::service::ServiceError::Internal {
            what: format!(
                "the job stopped on an unexpected error ({}); please report it",
                crate::features::pipeline::panic_message(&panic)
            ),
        }
        .into())
    });
    let store = service.store();
    let outcome = match (result, stop.load(Ordering::SeqCst)) {
        (Ok(()), RUN) => store.set_job_state(id, JobState::Succeeded, None),
        (Err(e), RUN) => {
            tracing::warn!(job = id, error = %e, "ingestion job failed");
            store.set_job_state(id, JobState::Failed, Some(&e.to_string()))
        }
        // Asked to stop: whatever ended the run (a listing cut short, say), it ends as asked.
        (_, CANCEL) => store.set_job_state(id, JobState::Cancelled, None),
        // Shutdown: stays running, resumed by the next start.
        _ => Ok(()),
    };
    if let Err(e) = outcome {
        tracing::error!(job = id, error = %e, "cannot record the job's end");
    }
    if let Ok(record) = store.job(id) {
        tracing::info!(job = id, state = %record.state, stored = record.tally.stored, duplicates = record.tally.duplicates, failed = record.tally.failed, "ingestion job ended");
        tx.send_replace(record);
    }
}

fn run_inner(
    service: &Service,
    id: &str,
    stop: &AtomicU8,
    tx: &watch::Sender<JobRecord>,
) -> Result<()> {
    let store = service.store();
    let job = store.job(id)?;
    store.set_job_state(id, JobState::Running, None)?;
    let settings = service.settings();
    let entries = source::list(&job.source, &settings.roots, &settings.limits, &|| {
        stop.load(Ordering::SeqCst) != RUN
    })?;
    let total = entries.len() as u64;
    store.set_job_total(id, total)?;
    let done = store.job_done_keys(id)?;
    let mut todo: Vec<Entry> = entries
        .into_iter()
        .filter(|e| !done.contains(&e.key))
        .collect();
    let alone = quarantine(store.job_inflight(id)?, &mut todo);
    let handle = service.pool(&job.pool)?;
    let model = service.pool_model(&handle.record())?;
    let dim = handle.record().dim;
    let started = Instant::now();
    let mut processed = 0usize;
    // The tally as committed so far, kept up to date here rather than recounted from the
    // catalog after every commit (a recount grows with the job).
    let mut record = store.job(id)?;
    tx.send_replace(record.clone());
    let max_file_bytes = settings.models.pipeline.limits.max_file_bytes;
    for chunk in chunks(&todo, settings.limits.job_chunk_bytes, alone) {
        if stop.load(Ordering::SeqCst) != RUN {
            return Ok(());
        }
        // Read and hash in parallel; a file that cannot be read is a failed entry.
        let read: Vec<std::result::Result<(Vec<u8>, String), String>> = chunk
            .par_iter()
            .map(|e| {
                if let Some(why) = &e.refused {
                    return Err(why.clone());
                }
                service
                    .settings()
                    .roots
                    .check(&e.path)
                    .map_err(|err| err.to_string())?;
                let bytes = crate::files::read_regular(&e.path, max_file_bytes)
                    .map_err(|err| err.to_string())?;
                let hash = content_hash_bytes(&bytes);
                Ok((bytes, hash))
            })
            .collect();
        let keys: Vec<&str> = chunk.iter().map(|e| e.key.as_str()).collect();
        let hashes: Vec<&str> = read
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|(_, h)| h.as_str()))
            .collect();
        let (present, mut by_hash) = {
            let open = handle.read();
            (
                open.pool.existing_keys(&keys)?,
                open.pool.keys_by_hash(&hashes)?,
            )
        };
        let mut outcomes: Vec<Option<EntryOutcome>> = vec![None; chunk.len()];
        let mut to_embed: Vec<(usize, ImageInput, String)> = Vec::new();
        for (i, (entry, r)) in chunk.iter().zip(read).enumerate() {
            if present.contains(&entry.key) {
                outcomes[i] = Some(EntryOutcome::Present);
                continue;
            }
            match r {
                Err(why) => outcomes[i] = Some(EntryOutcome::Failed(why)),
                Ok((bytes, hash)) => {
                    if let Some(of) = by_hash.get(&hash) {
                        outcomes[i] = Some(EntryOutcome::Duplicate(of.clone()));
                        continue;
                    }
                    by_hash.insert(hash.clone(), entry.key.clone());
                    to_embed.push((
                        i,
                        ImageInput::Bytes {
                            name: entry.key.clone(),
                            bytes,
                        },
                        hash,
                    ));
                }
            }
        }
        let (idx, rest): (Vec<usize>, Vec<(ImageInput, String)>) = to_embed
            .into_iter()
            .map(|(i, input, h)| (i, (input, h)))
            .unzip();
        let (inputs, hashes): (Vec<ImageInput>, Vec<String>) = rest.into_iter().unzip();
        let inflight: Vec<String> = idx.iter().map(|&i| chunk[i].key.clone()).collect();
        // Committed before decoding: if this kills the process, the next run knows (see
        // `quarantine`).
        store.set_job_inflight(id, &inflight)?;
        let vectors = model.embed(inputs);
        service.count_embedded(vectors.iter().filter(|v| v.is_ok()).count());
        let mut data = Vec::with_capacity(idx.len() * dim);
        let mut items = Vec::with_capacity(idx.len());
        let mut stored_hash: HashMap<String, String> = HashMap::new();
        for ((i, v), hash) in idx.into_iter().zip(vectors).zip(hashes) {
            let entry = &chunk[i];
            match v {
                Ok(v) => {
                    data.extend_from_slice(&v);
                    stored_hash.insert(hash.clone(), entry.key.clone());
                    items.push(NewItem {
                        key: entry.key.clone(),
                        label: entry.label.clone(),
                        content_hash: Some(hash),
                        metadata: entry.metadata.clone(),
                    });
                    outcomes[i] = Some(EntryOutcome::Stored);
                }
                Err(e) => outcomes[i] = Some(EntryOutcome::Failed(e.error.to_string())),
            }
        }
        // A duplicate of an image whose embedding failed in this chunk is a failure too:
        // its original is not in the pool.
        for (o, entry) in outcomes.iter_mut().zip(chunk) {
            if let Some(EntryOutcome::Duplicate(of)) = o {
                let of_in_chunk = chunk.iter().any(|e| &e.key == of);
                if of_in_chunk && !stored_hash.values().any(|k| k == of) {
                    *o = Some(EntryOutcome::Failed(format!(
                        "same content as {of}, which could not be embedded"
                    )));
                }
            }
            debug_assert!(o.is_some(), "{} has an outcome", entry.key);
        }
        let job_entries: Vec<JobEntry> = chunk
            .iter()
            .zip(outcomes)
            .map(|(e, o)| JobEntry {
                key: e.key.clone(),
                outcome: o.expect("every entry has an outcome"),
            })
            .collect();
        let rows = items.len();
        handle.append(
            &Matrix::new(rows, dim, data),
            &items,
            Some(&JobBatch {
                job_id: id,
                entries: &job_entries,
            }),
        )?;
        if !inflight.is_empty() {
            store.set_job_inflight(id, &[])?;
        }
        processed += chunk.len();
        for e in &job_entries {
            let t = &mut record.tally;
            match e.outcome {
                EntryOutcome::Stored => t.stored += 1,
                EntryOutcome::Duplicate(_) => t.duplicates += 1,
                EntryOutcome::Failed(_) => t.failed += 1,
                EntryOutcome::Present => t.present += 1,
            }
        }
        record.state = JobState::Running;
        record.total = total;
        tx.send_replace(record.clone());
        tracing::debug!(
            job = id,
            processed,
            rate = processed as f64 / started.elapsed().as_secs_f64(),
            "job progress"
        );
    }
    match handle.refresh_graph() {
        Ok(()) | Err(Error::Store(StoreError::PoolDeleted { .. })) => {}
        Err(e) => {
            tracing::warn!(error = %e, "index refresh after the job failed; the next search retries")
        }
    }
    Ok(())
}
