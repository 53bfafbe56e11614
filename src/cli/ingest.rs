//! `dcd ingest`: fill a pool from an ImageFolder tree or a manifest, locally or through a
//! server, with progress (a bar on a terminal, a line every few seconds otherwise).
//! Re-running the same command after a crash resumes the job.

use std::path::Path;
use std::time::Duration;

use super::progress::Progress;
use crate::api::client::RemoteService;
use crate::config::IngestArgs;
use crate::error::{Error, Result};
use crate::service::{AllowedRoots, CreatePool, Service, ServiceError};
use crate::store::{JobRecord, JobSource, JobState, StoreError};

pub(super) fn run(data_dir: &Path, args: IngestArgs) -> Result<()> {
    let source = source_of(&args.source)?;
    let (record, problems) = match &args.target.server {
        Some(url) => remote(url, &args, &source)?,
        None => local(data_dir, &args, &source)?,
    };
    report(&record, &problems, args.json);
    match record.state {
        JobState::Succeeded => Ok(()),
        state => Err(Error::JobEnded {
            id: record.id.clone(),
            state,
            reason: match state {
                JobState::Cancelled => "cancelled before it finished".into(),
                _ => record
                    .error
                    .clone()
                    .unwrap_or_else(|| "see the server log".into()),
            },
        }),
    }
}

fn source_of(path: &Path) -> Result<JobSource> {
    let abs =
        std::path::absolute(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let is_manifest = abs
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "csv" | "jsonl" | "ndjson"));
    Ok(if is_manifest {
        JobSource::Manifest(abs)
    } else {
        JobSource::Folder(abs)
    })
}

fn local(
    data_dir: &Path,
    args: &IngestArgs,
    source: &JobSource,
) -> Result<(JobRecord, Vec<(String, String)>)> {
    let settings = crate::app::settings(AllowedRoots::Any, &args.runtime, None);
    let service = Service::open(data_dir, settings)?;
    match service.pool_record(&args.pool) {
        Ok(_) => {}
        Err(ServiceError::Store(StoreError::PoolNotFound { .. })) if args.backbone.is_some() => {
            let rec = service.create_pool(&CreatePool {
                name: args.pool.clone(),
                backbone: args.backbone.clone(),
                weights: args.weights.clone(),
                pooling: args.pooling,
                dim: None,
                dtype: crate::types::Dtype::F32,
            })?;
            eprintln!("created pool {} ({}-d, {})", rec.name, rec.dim, args.backbone.as_deref().unwrap_or(""));
        }
        Err(ServiceError::Store(StoreError::PoolNotFound { name })) => {
            return Err(Error::Usage(format!(
                "no pool named {name:?}; pass --backbone NAME to create it, or create it with `dcd pool create`"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    let job = crate::service::jobs::start(&service, &args.pool, source.clone())?;
    if job.tally.done() > 0 {
        eprintln!(
            "resuming job {} ({} of {} entries done)",
            job.id,
            job.tally.done(),
            job.total
        );
    }
    let mut progress = Progress::new(job.total, "ingest", "images");
    loop {
        let now = service.store().job(&job.id)?;
        progress.update(now.total, now.tally.done(), &tally_note(&now));
        if now.state.is_final() || service.jobs().running_count() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let record = crate::service::jobs::wait(&service, &job.id)?;
    progress.finish();
    let problems = service
        .store()
        .job_problems(&job.id, 20)?
        .into_iter()
        .map(|(k, outcome, detail)| (k, describe(&outcome, &detail)))
        .collect();
    Ok((record, problems))
}

fn tally_note(job: &JobRecord) -> String {
    format!(
        "{} failed, {} duplicates",
        job.tally.failed, job.tally.duplicates
    )
}

fn describe(outcome: &str, detail: &str) -> String {
    if outcome == "duplicate" {
        format!("duplicate of {detail}")
    } else {
        detail.to_owned()
    }
}

fn remote(
    url: &str,
    args: &IngestArgs,
    source: &JobSource,
) -> Result<(JobRecord, Vec<(String, String)>)> {
    let mut client = RemoteService::connect(url, args.target.api_key.as_deref())?;
    client.ensure_pool(
        &args.pool,
        args.backbone.as_deref(),
        args.weights.as_deref(),
        args.pooling.map(|p| p.name()),
    )?;
    let job = client.start_job(&args.pool, source)?;
    let mut progress = Progress::new(job.record.total, "ingest", "images");
    let last = client.watch_job(&job.record.id, |j| {
        progress.update(
            j.record.total,
            j.record.tally.done(),
            &tally_note(&j.record),
        );
    })?;
    progress.finish();
    Ok((last.record, last.problems.into_iter().take(20).collect()))
}

fn report(job: &JobRecord, problems: &[(String, String)], json: bool) {
    if json {
        super::print_json(&serde_json::json!({
            "job": job,
            "problems": problems.iter().map(|(k, r)| serde_json::json!({"key": k, "reason": r})).collect::<Vec<_>>(),
        }));
        return;
    }
    for (key, reason) in problems {
        eprintln!("  {key}: {reason}");
    }
    let t = &job.tally;
    println!(
        "job {} {}: {} stored, {} duplicates, {} failed, {} already in the pool, of {} entries",
        job.id, job.state, t.stored, t.duplicates, t.failed, t.present, job.total
    );
}
