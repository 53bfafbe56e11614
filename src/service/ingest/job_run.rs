//! The body of one ingestion job, on its own thread.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::watch;

use super::admit::{admit, content_hash_bytes, Candidate, Target};
use super::source::{self, Entry};
use super::ItemContent;
use crate::service::{Result, Service, ServiceError};
use crate::store::{EntryOutcome, JobRecord, JobState, StoreError};

/// Entries read, hashed and embedded per commit.
const CHUNK: usize = 64;

// What a job's stop flag says: go on; stop as cancelled; stop for a shutdown, staying
// `running` so that the next start resumes it.
pub(super) const RUN: u8 = 0;
pub(super) const CANCEL: u8 = 1;
pub(super) const SHUTDOWN: u8 = 2;

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
        Err(ServiceError::Internal {
            what: format!(
                "the job stopped on an unexpected error ({}); please report it",
                crate::features::pipeline::panic_message(&panic)
            ),
        })
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
    let started = Instant::now();
    let mut processed = 0usize;
    // The tally as committed so far, kept up to date here rather than recounted from the
    // catalog after every commit (a recount grows with the job).
    let mut record = store.job(id)?;
    tx.send_replace(record.clone());
    let max_file_bytes = settings.models.pipeline.limits.max_file_bytes;
    let target = Target {
        service,
        pool: handle.as_ref(),
        job: Some(id),
    };
    for chunk in chunks(&todo, settings.limits.job_chunk_bytes, alone) {
        if stop.load(Ordering::SeqCst) != RUN {
            return Ok(());
        }
        // Read and hash in parallel; a file that cannot be read is a failed entry.
        let candidates: Vec<Candidate> = chunk
            .par_iter()
            .map(|e| {
                let read = read_entry(service, e, max_file_bytes);
                let hash = match &read {
                    Ok(bytes) => content_hash_bytes(bytes),
                    Err(_) => String::new(),
                };
                Candidate {
                    key: e.key.clone(),
                    label: e.label.clone(),
                    metadata: e.metadata.clone(),
                    content: read.map(ItemContent::Image),
                    hash,
                    by_content: true,
                }
            })
            .collect();
        let outcomes = admit(&target, candidates)?;
        processed += chunk.len();
        for outcome in &outcomes {
            let t = &mut record.tally;
            match outcome {
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
    match handle.catch_up_index(true) {
        Ok(()) | Err(ServiceError::Store(StoreError::PoolDeleted { .. })) => {}
        Err(e) => {
            tracing::warn!(error = %e, "index refresh after the job failed; the next search retries")
        }
    }
    Ok(())
}

/// The bytes of an entry's file, or why they cannot be had.
fn read_entry(
    service: &Service,
    entry: &Entry,
    max_file_bytes: u64,
) -> std::result::Result<Vec<u8>, String> {
    if let Some(why) = &entry.refused {
        return Err(why.clone());
    }
    service
        .settings()
        .roots
        .check(&entry.path)
        .map_err(|err| err.to_string())?;
    crate::files::read_regular(&entry.path, max_file_bytes).map_err(|err| err.to_string())
}
