//! Server-side ingestion jobs: walk a folder or manifest, read and hash each file, and admit
//! the entries in commits with a record of every entry's outcome. Jobs run on their own
//! threads; a job interrupted by a crash or a shutdown stays `running` in the catalog and
//! resumes from its last commit when the service starts again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::job_run::{self, CANCEL, RUN, SHUTDOWN};
use super::source;
use crate::service::Result;
use crate::service::{Service, ServiceError};
use crate::store::{JobRecord, JobSource, JobState};

struct Control {
    stop: Arc<AtomicU8>,
    progress: watch::Sender<JobRecord>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The jobs running in this process.
#[derive(Default)]
pub struct Jobs {
    running: Mutex<HashMap<String, Control>>,
}

impl Jobs {
    /// Asks the jobs of `pool` to stop as cancelled (before the pool is deleted) and waits.
    pub fn cancel_pool(&self, pool: &str) {
        let threads: Vec<_> = {
            let mut running = self.running.lock();
            running
                .iter_mut()
                .filter(|(_, c)| c.progress.borrow().pool == pool)
                .map(|(_, c)| {
                    c.stop.store(CANCEL, Ordering::SeqCst);
                    c.thread.take()
                })
                .collect()
        };
        for t in threads.into_iter().flatten() {
            let _ = t.join();
        }
    }

    /// Stops every job at its next commit, leaving it `running` in the catalog so that the
    /// next start resumes it; waits for the threads.
    pub fn shutdown(&self) {
        let threads: Vec<_> = {
            let mut running = self.running.lock();
            running
                .values_mut()
                .map(|c| {
                    c.stop.store(SHUTDOWN, Ordering::SeqCst);
                    c.thread.take()
                })
                .collect()
        };
        for t in threads.into_iter().flatten() {
            let _ = t.join();
        }
    }

    /// Jobs running now.
    pub fn running_count(&self) -> usize {
        self.running.lock().len()
    }

    fn finished(&self, id: &str) {
        self.running.lock().remove(id);
    }
}

/// Creates a job over `source` for `pool` and starts it; or, when an unfinished job over the
/// same source exists, resumes that one instead.
pub fn start(service: &Arc<Service>, pool: &str, source: JobSource) -> Result<JobRecord> {
    let store = service.store();
    let source = match source {
        JobSource::Folder(p) => JobSource::Folder(service.check_path(&p)?),
        JobSource::Manifest(p) => JobSource::Manifest(service.check_path(&p)?),
    };
    // Listing first: a source with nothing to ingest is refused before a job exists.
    let settings = service.settings();
    source::list(
        &source,
        &settings.roots,
        &settings.limits,
        &crate::cancel::requested,
    )?;
    let record = store.pool_record(pool)?;
    if record.backbone.is_none() {
        return Err(ServiceError::NoModel { pool: record.name });
    }
    let existing = store
        .unfinished_jobs()?
        .into_iter()
        .find(|j| j.pool == pool && j.source == source);
    let job = match existing {
        Some(j) => j,
        None => store.create_job(pool, &source, settings.limits.jobs_kept)?,
    };
    launch(service, job)
}

/// Resumes every job a previous run left pending or running.
pub fn resume_unfinished(service: &Arc<Service>) -> Result<Vec<JobRecord>> {
    let jobs = service.store().unfinished_jobs()?;
    let mut out = Vec::new();
    for job in jobs {
        tracing::info!(job = %job.id, pool = %job.pool, done = job.tally.done(), total = job.total, "resuming ingestion job");
        out.push(launch(service, job)?);
    }
    Ok(out)
}

fn launch(service: &Arc<Service>, job: JobRecord) -> Result<JobRecord> {
    let mut running = service.jobs().running.lock();
    if running.contains_key(&job.id) {
        return Ok(job);
    }
    let stop = Arc::new(AtomicU8::new(RUN));
    let (tx, _) = watch::channel(job.clone());
    let thread = {
        let (service, id, stop, tx) = (service.clone(), job.id.clone(), stop.clone(), tx.clone());
        std::thread::Builder::new()
            .name(format!("dcd-{}", job.id))
            .spawn(move || {
                job_run::run(&service, &id, &stop, &tx);
                service.jobs().finished(&id);
            })
            .map_err(|e| ServiceError::Internal {
                what: format!("cannot start the job thread: {e}"),
            })?
    };
    running.insert(
        job.id.clone(),
        Control {
            stop,
            progress: tx,
            thread: Some(thread),
        },
    );
    Ok(job)
}

/// Progress of a job: a live feed while it runs here, else its final record once.
pub fn watch(service: &Service, id: &str) -> Result<watch::Receiver<JobRecord>> {
    if let Some(c) = service.jobs().running.lock().get(id) {
        return Ok(c.progress.subscribe());
    }
    let record = service.store().job(id)?;
    let (_tx, rx) = watch::channel(record);
    Ok(rx)
}

/// Cancels a job; it stops at its next commit (what was committed stays stored).
pub fn cancel(service: &Service, id: &str) -> Result<JobRecord> {
    let record = service.store().job(id)?;
    if record.state.is_final() {
        return Err(ServiceError::JobFinished {
            id: id.into(),
            state: record.state.to_string(),
        });
    }
    let thread = service.jobs().running.lock().get_mut(id).and_then(|c| {
        c.stop.store(CANCEL, Ordering::SeqCst);
        c.thread.take()
    });
    match thread {
        Some(t) => {
            let _ = t.join();
        }
        // Not running here (e.g. pending in a catalog no process serves): cancel on disk.
        None => service
            .store()
            .set_job_state(id, JobState::Cancelled, None)?,
    }
    Ok(service.store().job(id)?)
}

/// Waits for a job started here to end; returns its final record.
pub fn wait(service: &Service, id: &str) -> Result<JobRecord> {
    let thread = service
        .jobs()
        .running
        .lock()
        .get_mut(id)
        .and_then(|c| c.thread.take());
    if let Some(t) = thread {
        let _ = t.join();
    }
    Ok(service.store().job(id)?)
}
