//! The catalog's queries on ingestion jobs (their records and entry rows are in
//! [`super::job_records`]).

use std::collections::HashSet;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};

use super::catalog::Catalog;
use super::error::StoreError;
use super::job_records::{record_entries, JobBatch, JobRecord, JobSource, JobState, JobTally};

impl Catalog {
    /// Records entries that stored nothing (all failed, duplicate or present).
    pub fn record_job_entries(&mut self, batch: &JobBatch<'_>) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::catalog("recording job progress"))?;
        record_entries(&tx, batch)?;
        tx.commit()
            .map_err(StoreError::catalog("recording job progress"))
    }

    /// Creates a pending job.
    pub fn insert_job(
        &mut self,
        id: &str,
        pool_id: i64,
        source: &JobSource,
        now: i64,
        keep_finished: usize,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::catalog("creating a job"))?;
        // Finished jobs beyond the newest `keep_finished` go, with their entries (the items
        // they stored stay): a pool's job list cannot grow without bound.
        tx.execute(
            "DELETE FROM jobs WHERE id IN (
                 SELECT id FROM jobs
                 WHERE pool_id = ?1 AND state IN ('succeeded', 'failed', 'cancelled')
                 ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?2)",
            params![pool_id, keep_finished.saturating_sub(1) as i64],
        )
        .map_err(StoreError::catalog("forgetting old jobs"))?;
        tx.execute(
            "INSERT INTO jobs (id, pool_id, source_kind, source, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
            params![
                id,
                pool_id,
                source.kind(),
                source.path().to_string_lossy(),
                now
            ],
        )
        .map_err(StoreError::catalog("creating a job"))?;
        tx.commit().map_err(StoreError::catalog("creating a job"))
    }

    /// Records the entries handed to the model now (empty: none), committed before they are
    /// decoded: if the process dies meanwhile, the next run knows which entries to suspect.
    pub fn set_job_inflight(&mut self, id: &str, keys: &[String]) -> Result<(), StoreError> {
        let result = if keys.is_empty() {
            self.conn
                .execute("DELETE FROM job_inflight WHERE job_id = ?1", [id])
        } else {
            let keys = serde_json::to_string(keys).expect("strings serialise");
            self.conn.execute(
                "INSERT INTO job_inflight (job_id, keys) VALUES (?1, ?2)
                 ON CONFLICT (job_id) DO UPDATE SET keys = excluded.keys",
                params![id, keys],
            )
        };
        result
            .map(|_| ())
            .map_err(StoreError::catalog("recording the entries in flight"))
    }

    /// The entries a job had handed to the model when it last stopped (empty: none).
    pub fn job_inflight(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let keys: Option<String> = self
            .conn
            .query_row(
                "SELECT keys FROM job_inflight WHERE job_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::catalog("reading the entries in flight"))?;
        // A record this build cannot read only costs the suspicion: treated as none.
        Ok(keys
            .and_then(|k| serde_json::from_str(&k).ok())
            .unwrap_or_default())
    }

    /// Jobs a pool keeps.
    pub fn job_count(&self, pool_id: i64) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE pool_id = ?1",
                [pool_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(StoreError::catalog("counting jobs"))
    }

    /// Sets a job's state (and error, and finish time for final states).
    pub fn set_job_state(
        &mut self,
        id: &str,
        state: JobState,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let finished = state.is_final().then_some(now);
        self.conn
            .execute(
                "UPDATE jobs SET state = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, state.name(), error, finished],
            )
            .map_err(StoreError::catalog("updating a job"))?;
        Ok(())
    }

    /// Records how many entries the job's source holds.
    pub fn set_job_total(&mut self, id: &str, total: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET total = ?2 WHERE id = ?1",
                params![id, total as i64],
            )
            .map_err(StoreError::catalog("updating a job"))?;
        Ok(())
    }

    /// One job, with its tally.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let found = self
            .conn
            .query_row(&format!("{JOB_SELECT} WHERE j.id = ?1"), [id], row_to_job)
            .optional()
            .map_err(StoreError::catalog("reading a job"))?;
        match found {
            Some(job) => {
                let mut job = job?;
                job.tally = self.job_tally(id)?;
                Ok(Some(job))
            }
            None => Ok(None),
        }
    }

    /// Jobs not in a final state, oldest first (to resume after a restart).
    pub fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.jobs_where(
            "j.state IN ('pending', 'running') ORDER BY j.created_at, j.id",
            [],
        )
    }

    /// All jobs of a pool, newest first.
    pub fn jobs_of_pool(&self, pool_id: i64, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        self.jobs_where(
            "j.pool_id = ?1 ORDER BY j.created_at DESC, j.id DESC LIMIT ?2",
            params![pool_id, limit.min(i64::MAX as usize) as i64],
        )
    }

    fn jobs_where<P: rusqlite::Params>(
        &self,
        clause: &str,
        params: P,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{JOB_SELECT} WHERE {clause}"))
            .map_err(StoreError::catalog("listing jobs"))?;
        let rows = stmt
            .query_map(params, row_to_job)
            .map_err(StoreError::catalog("listing jobs"))?;
        let mut out = Vec::new();
        for r in rows {
            let mut job = r.map_err(StoreError::catalog("listing jobs"))??;
            job.tally = self.job_tally(&job.id)?;
            out.push(job);
        }
        Ok(out)
    }

    /// Entries per outcome.
    pub fn job_tally(&self, id: &str) -> Result<JobTally, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT outcome, COUNT(*) FROM job_entries WHERE job_id = ?1 GROUP BY 1",
            )
            .map_err(StoreError::catalog("counting job entries"))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(StoreError::catalog("counting job entries"))?;
        let mut t = JobTally::default();
        for r in rows {
            let (outcome, n) = r.map_err(StoreError::catalog("counting job entries"))?;
            match outcome.as_str() {
                "stored" => t.stored = n,
                "duplicate" => t.duplicates = n,
                "failed" => t.failed = n,
                _ => t.present = n,
            }
        }
        Ok(t)
    }

    /// The job's failed and duplicate entries: (key, outcome, detail), at most `limit`.
    pub fn job_problems(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, outcome, COALESCE(detail, '') FROM job_entries
                 WHERE job_id = ?1 AND outcome IN ('failed', 'duplicate') ORDER BY key LIMIT ?2",
            )
            .map_err(StoreError::catalog("listing job problems"))?;
        let rows = stmt
            .query_map(params![id, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(StoreError::catalog("listing job problems"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::catalog("listing job problems"))
    }

    /// Keys of the entries the job has dealt with.
    pub fn job_done_keys(&self, id: &str) -> Result<HashSet<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM job_entries WHERE job_id = ?1")
            .map_err(StoreError::catalog("reading job progress"))?;
        let rows = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(StoreError::catalog("reading job progress"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::catalog("reading job progress"))
    }
}

const JOB_SELECT: &str = "SELECT j.id, p.name, j.source_kind, j.source, j.state, j.total, j.error,
    j.created_at, j.finished_at FROM jobs j JOIN pools p ON p.id = j.pool_id";

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JobRecord, StoreError>> {
    let id: String = r.get(0)?;
    let kind: String = r.get(2)?;
    let path = PathBuf::from(r.get::<_, String>(3)?);
    let source = match kind.as_str() {
        "folder" => JobSource::Folder(path),
        _ => JobSource::Manifest(path),
    };
    let state = match r.get::<_, String>(4)?.parse::<JobState>() {
        Ok(s) => s,
        Err(reason) => {
            return Ok(Err(StoreError::CatalogUnreadable {
                path: PathBuf::from("catalog.sqlite"),
                reason: format!("job {id}: {reason}"),
            }))
        }
    };
    Ok(Ok(JobRecord {
        id,
        pool: r.get(1)?,
        source,
        state,
        total: r.get::<_, i64>(5)? as u64,
        error: r.get(6)?,
        created_at: r.get(7)?,
        finished_at: r.get(8)?,
        tally: JobTally::default(),
    }))
}
