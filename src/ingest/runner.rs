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

/// Runs job `id` to its end (or until `stop` says otherwise), publishing progress on `tx`.
pub(super) fn run(service: &Service, id: &str, stop: &AtomicU8, tx: &watch::Sender<JobRecord>) {
    let result = run_inner(service, id, stop, tx);
    let store = service.store();
    let outcome = match result {
        Ok(()) => match stop.load(Ordering::SeqCst) {
            RUN => store.set_job_state(id, JobState::Succeeded, None),
            CANCEL => store.set_job_state(id, JobState::Cancelled, None),
            // Shutdown: stays running, resumed by the next start.
            _ => Ok(()),
        },
        Err(e) => {
            tracing::warn!(job = id, error = %e, "ingestion job failed");
            store.set_job_state(id, JobState::Failed, Some(&e.to_string()))
        }
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
    let entries = source::list(&job.source, &service.settings().roots)?;
    let total = entries.len() as u64;
    store.set_job_total(id, total)?;
    let done = store.job_done_keys(id)?;
    let todo: Vec<Entry> = entries
        .into_iter()
        .filter(|e| !done.contains(&e.key))
        .collect();
    let handle = service.pool(&job.pool)?;
    let model = service.pool_model(&handle.record())?;
    let dim = handle.record().dim;
    let started = Instant::now();
    let mut processed = 0usize;
    // The tally as committed so far, kept up to date here rather than recounted from the
    // catalog after every commit (a recount grows with the job).
    let mut record = store.job(id)?;
    tx.send_replace(record.clone());
    for chunk in todo.chunks(CHUNK) {
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
                let bytes =
                    std::fs::read(&e.path).map_err(|err| format!("cannot read the file: {err}"))?;
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
