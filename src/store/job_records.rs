//! Ingestion jobs in the catalog: one row per job, and one row per source entry the job has
//! dealt with (stored, duplicate, failed, already present). Entry rows are written in the same
//! transaction as the items they produced, so after a crash a job resumes exactly where its
//! last commit left it: every entry is either done (and recorded) or not started. This file
//! holds the records and the writing of entry rows inside a commit; the queries on them are
//! in [`super::jobs`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rusqlite::{params, Transaction};

use super::error::StoreError;

pub(super) const JOBS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    pool_id      INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    source_kind  TEXT NOT NULL,
    source       TEXT NOT NULL,
    state        TEXT NOT NULL,
    total        INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE TABLE IF NOT EXISTS job_entries (
    job_id   TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    detail   TEXT,
    PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_inflight (
    job_id   TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    keys     TEXT NOT NULL
);
";

/// Where a job's images come from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum JobSource {
    /// ImageFolder layout: each subfolder's name is the weak label of the images in it.
    Folder(PathBuf),
    /// A CSV or JSONL manifest of (path, label, metadata).
    Manifest(PathBuf),
}

impl JobSource {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            JobSource::Folder(_) => "folder",
            JobSource::Manifest(_) => "manifest",
        }
    }

    /// The folder or manifest file.
    pub fn path(&self) -> &std::path::Path {
        match self {
            JobSource::Folder(p) | JobSource::Manifest(p) => p,
        }
    }
}

/// Life cycle of a job. `Running` survives a crash; the next start resumes such jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Created, not started.
    Pending,
    /// Started (or interrupted by a crash, to be resumed).
    Running,
    /// Every entry dealt with.
    Succeeded,
    /// Stopped by an error that is not about one entry (see the job's error).
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// True once the job will not run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}

/// What a job did with one source entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Embedded and stored as a new item.
    Stored,
    /// Same content as an item already in the pool (its key).
    Duplicate(String),
    /// Could not be read or decoded (why).
    Failed(String),
    /// Its key was already in the pool before this job reached it.
    Present,
}

impl EntryOutcome {
    fn parts(&self) -> (&'static str, Option<&str>) {
        match self {
            EntryOutcome::Stored => ("stored", None),
            EntryOutcome::Duplicate(of) => ("duplicate", Some(of)),
            EntryOutcome::Failed(why) => ("failed", Some(why)),
            EntryOutcome::Present => ("present", None),
        }
    }
}

/// One source entry and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEntry {
    /// The entry's key (its URI in the pool).
    pub key: String,
    /// What happened to it.
    pub outcome: EntryOutcome,
}

/// The entries a commit settles for a job.
#[derive(Clone, Copy, Debug)]
pub struct JobBatch<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Entries dealt with in this commit.
    pub entries: &'a [JobEntry],
}

/// Entries per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobTally {
    /// New items stored.
    pub stored: u64,
    /// Entries whose content was already stored under another key.
    pub duplicates: u64,
    /// Entries that could not be read or decoded.
    pub failed: u64,
    /// Entries whose key was already in the pool.
    pub present: u64,
}

impl JobTally {
    /// Entries dealt with so far.
    pub fn done(&self) -> u64 {
        self.stored + self.duplicates + self.failed + self.present
    }
}

/// A job as recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JobRecord {
    /// Unique id.
    pub id: String,
    /// Pool it fills.
    pub pool: String,
    /// Folder or manifest.
    pub source: JobSource,
    /// Where it stands.
    pub state: JobState,
    /// Entries in the source (0 until listed).
    pub total: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
    /// When it reached a final state.
    pub finished_at: Option<i64>,
    /// Entries per outcome.
    pub tally: JobTally,
}

pub(super) fn record_entries(tx: &Transaction<'_>, batch: &JobBatch<'_>) -> Result<(), StoreError> {
    let mut ins = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO job_entries (job_id, key, outcome, detail) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(StoreError::catalog("recording job progress"))?;
    for e in batch.entries {
        let (outcome, detail) = e.outcome.parts();
        ins.execute(params![batch.job_id, e.key, outcome, detail])
            .map_err(StoreError::catalog("recording job progress"))?;
    }
    Ok(())
}
