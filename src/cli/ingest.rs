//! `dcd ingest`: fill a pool from an ImageFolder tree or a manifest, locally or through a
//! server, with progress (a bar on a terminal, a line every few seconds otherwise).
//! Re-running the same command after a crash resumes the job.

use std::path::Path;

use super::progress::Progress;
use super::target::{Access, Target};
use crate::config::IngestArgs;
use crate::error::{Error, Result};
use crate::service::{AllowedRoots, CreatePool};
use crate::store::{JobRecord, JobSource, JobState};

pub(super) fn run(data_dir: &Path, args: IngestArgs) -> Result<()> {
    let source = source_of(&args.source)?;
    let mut target = Target::open(data_dir, &args.target, Access::Write, || {
        crate::app::settings(AllowedRoots::Any, &args.runtime, None)
    })?;
    let created = target.ensure_pool(&CreatePool {
        name: args.pool.clone(),
        backbone: args.backbone.clone(),
        weights: args.weights.clone(),
        pooling: args.pooling,
        dim: None,
        dtype: crate::types::Dtype::F32,
    })?;
    if let Some(rec) = created {
        eprintln!(
            "created pool {} ({}-d, {})",
            rec.name,
            rec.dim,
            rec.backbone.as_deref().unwrap_or("")
        );
    }
    let job = target.start_job(&args.pool, &source)?;
    if job.tally.done() > 0 {
        eprintln!(
            "resuming job {} ({} of {} entries done)",
            job.id,
            job.tally.done(),
            job.total
        );
    }
    let mut progress = Progress::new(job.total, "ingest", "images");
    let (record, problems) = target.watch_job(&job.id, |now| {
        progress.update(now.total, now.tally.done(), &tally_note(now));
    })?;
    progress.finish();
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

fn tally_note(job: &JobRecord) -> String {
    format!(
        "{} failed, {} duplicates",
        job.tally.failed, job.tally.duplicates
    )
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
