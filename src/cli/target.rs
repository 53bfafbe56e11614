//! Where a data command runs: in this process on `--data-dir`, or on `--server`. Both answer
//! in the service's types, so each command is written once and a local run makes the same
//! checks as the server. Commands that only read open the data directory read-only when a
//! running server holds it (or it cannot be written), so they work beside the server.

use std::path::Path;
use std::sync::Arc;

use crate::api::client::RemoteService;
use crate::config::TargetArgs;
use crate::error::Error;
use crate::error::Result;
use crate::error_kind::ErrorKind;
use crate::service::{
    CreatePool, DebugSetRequest, DebugSetResult, EvaluationRequest, EvaluationResult, IngestItem,
    PoolDetails, ReviewRequest, SavedDebugSet, SearchOutcome, SearchRequest, Service,
    ServiceSettings, SetDiff, SetOverview, StreamIngest, StreamSummary,
};
use crate::store::{JobRecord, JobSource, PoolRecord, SavedSet};

/// A job's first problems: (key, reason) of failed and duplicate entries.
pub(super) type Problems = Vec<(String, String)>;

/// Problems a finished job reports.
const JOB_PROBLEMS: usize = 20;

/// What a command does to the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// Reads only: works beside a running server and on read-only media.
    Read,
    /// Writes: takes the data directory's lock.
    Write,
}

/// A data directory in this process, or a server.
pub(super) enum Target {
    /// The service in this process.
    Local(Arc<Service>),
    /// A dcd server.
    Remote(Box<RemoteService>),
}

impl Target {
    /// `--server` when given, else the data directory opened for `access` with `settings`.
    pub fn open(
        data_dir: &Path,
        target: &TargetArgs,
        access: Access,
        settings: impl FnOnce() -> ServiceSettings,
    ) -> Result<Target> {
        Ok(match &target.server {
            Some(url) => Target::Remote(Box::new(RemoteService::connect(
                url,
                target.api_key.as_deref(),
            )?)),
            None => Target::Local(match access {
                Access::Read => Service::open_for_reading(data_dir, settings())?,
                Access::Write => Service::open(data_dir, settings())?,
            }),
        })
    }

    /// `CreatePool`.
    pub fn create_pool(&mut self, req: &CreatePool) -> Result<PoolRecord> {
        match self {
            Target::Local(s) => Ok(s.create_pool(req)?),
            Target::Remote(r) => r.create_pool(req),
        }
    }

    /// The pool `req.name`, created from `req` when missing and `req` names a backbone;
    /// returns the record when it was created.
    pub fn ensure_pool(&mut self, req: &CreatePool) -> Result<Option<PoolRecord>> {
        let found = match self {
            Target::Local(s) => s.pool_record(&req.name).map_err(Error::from),
            Target::Remote(r) => r.pool_details(&req.name).map(|d| d.record),
        };
        match found {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => match req.backbone {
                Some(_) => Ok(Some(self.create_pool(req)?)),
                None => Err(Error::Usage(format!(
                    "no pool named {:?}; pass --backbone NAME to create it, or create it with `dcd pool create`",
                    req.name
                ))),
            },
            Err(e) => Err(e),
        }
    }

    /// `StartIngestJob`: a new job over `source`, or the unfinished one over it, resumed.
    pub fn start_job(&mut self, pool: &str, source: &JobSource) -> Result<JobRecord> {
        match self {
            Target::Local(s) => Ok(crate::service::jobs::start(s, pool, source.clone())?),
            Target::Remote(r) => Ok(r.start_job(pool, source)?.record),
        }
    }

    /// Follows a job until it ends (`WatchJob`), calling `progress` with each state; returns
    /// the last one and its first problems.
    pub fn watch_job(
        &mut self,
        id: &str,
        mut progress: impl FnMut(&JobRecord),
    ) -> Result<(JobRecord, Problems)> {
        match self {
            Target::Local(s) => {
                loop {
                    let now = s.store().job(id)?;
                    progress(&now);
                    if now.state.is_final() || s.jobs().running_count() == 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                let record = crate::service::jobs::wait(s, id)?;
                let problems = s
                    .store()
                    .job_problems(id, JOB_PROBLEMS)?
                    .into_iter()
                    .map(|(key, outcome, detail)| match outcome.as_str() {
                        "duplicate" => (key, format!("duplicate of {detail}")),
                        _ => (key, detail),
                    })
                    .collect();
                Ok((record, problems))
            }
            Target::Remote(r) => {
                let last = r.watch_job(id, |j| progress(&j.record))?;
                Ok((
                    last.record,
                    last.problems.into_iter().take(JOB_PROBLEMS).collect(),
                ))
            }
        }
    }

    /// `ListPools`.
    pub fn list_pools(&mut self) -> Result<Vec<PoolRecord>> {
        match self {
            Target::Local(s) => Ok(s.list_pools()?),
            Target::Remote(r) => r.list_pools(),
        }
    }

    /// `GetPool`.
    pub fn pool_details(&mut self, name: &str) -> Result<PoolDetails> {
        match self {
            Target::Local(s) => Ok(s.pool_details(name)?),
            Target::Remote(r) => r.pool_details(name),
        }
    }

    /// `DeletePool`: how many items the pool held.
    pub fn delete_pool(&mut self, name: &str) -> Result<u64> {
        match self {
            Target::Local(s) => Ok(s.delete_pool(name)?),
            Target::Remote(r) => r.delete_pool(name),
        }
    }

    /// `Search`: per query its hits or why it has none, and the engine that answered.
    pub fn search(&mut self, req: &SearchRequest) -> Result<(SearchOutcome, String)> {
        match self {
            Target::Local(s) => Ok(s.search(req)?),
            Target::Remote(r) => r.search(req),
        }
    }

    /// `BuildDebugSet`.
    pub fn debug_set(&mut self, req: &DebugSetRequest) -> Result<DebugSetResult> {
        match self {
            Target::Local(s) => Ok(s.build_debug_set(req)?),
            Target::Remote(r) => r.debug_set(req),
        }
    }

    /// `BuildDebugSet` with `save_as`: the set, and the name it was saved under.
    pub fn save_debug_set(
        &mut self,
        req: &DebugSetRequest,
        name: &str,
        parent: Option<&str>,
    ) -> Result<(DebugSetResult, String)> {
        match self {
            Target::Local(s) => {
                let (result, record) = s.build_and_save_debug_set(req, name, parent)?;
                Ok((result, record.name))
            }
            Target::Remote(r) => r.save_debug_set(req, name, parent),
        }
    }

    /// `GetDebugSet`.
    pub fn saved_debug_set(&mut self, name: &str) -> Result<SavedDebugSet> {
        match self {
            Target::Local(s) => Ok(s.saved_debug_set(name)?),
            Target::Remote(r) => r.saved_debug_set(name),
        }
    }

    /// `ListDebugSets`.
    pub fn saved_debug_sets(&mut self, pool: Option<&str>) -> Result<Vec<SavedSet>> {
        match self {
            Target::Local(s) => Ok(s.saved_debug_sets(pool)?),
            Target::Remote(r) => r.saved_debug_sets(pool),
        }
    }

    /// `DeleteDebugSet`.
    pub fn delete_saved_debug_set(&mut self, name: &str) -> Result<()> {
        match self {
            Target::Local(s) => Ok(s.delete_saved_debug_set(name)?),
            Target::Remote(r) => r.delete_saved_debug_set(name),
        }
    }

    /// `GetDebugSet` with `overview`: the set's map and a random sample of its pool.
    pub fn set_overview(&mut self, name: &str) -> Result<SetOverview> {
        match self {
            Target::Local(s) => Ok(s.set_overview(name)?),
            Target::Remote(r) => r.set_overview(name),
        }
    }

    /// `ReviewDebugSet`: how many items the verdict was recorded for.
    pub fn review_debug_set(&mut self, req: &ReviewRequest) -> Result<usize> {
        match self {
            Target::Local(s) => Ok(s.review_debug_set(req)?),
            Target::Remote(r) => r.review_debug_set(req),
        }
    }

    /// `DiffDebugSets`.
    pub fn diff_saved_debug_sets(&mut self, from: &str, to: &str) -> Result<SetDiff> {
        match self {
            Target::Local(s) => Ok(s.diff_saved_debug_sets(from, to)?),
            Target::Remote(r) => r.diff_saved_debug_sets(from, to),
        }
    }

    /// `EvaluateDebugSet`.
    pub fn evaluate_debug_set(&mut self, req: &EvaluationRequest) -> Result<EvaluationResult> {
        match self {
            Target::Local(s) => Ok(s.evaluate_debug_set(req)?),
            Target::Remote(r) => r.evaluate_debug_set(req),
        }
    }

    /// One `Ingest` stream of `items` into `pool`.
    pub fn ingest(&mut self, pool: &str, items: Vec<IngestItem>) -> Result<StreamSummary> {
        match self {
            Target::Local(s) => {
                let mut stream = StreamIngest::start(s.clone(), pool)?;
                for item in items {
                    stream.push(item)?;
                }
                Ok(stream.finish()?)
            }
            Target::Remote(r) => r.ingest(pool, items),
        }
    }

    /// Brings the pool's approximate index up to date now (in this process); a server does
    /// it in the background on its own, so there this returns None.
    pub fn catch_up_index(&mut self, pool: &str) -> Result<Option<PoolDetails>> {
        match self {
            Target::Local(s) => {
                s.pool(pool)?.catch_up_index(true)?;
                Ok(Some(s.pool_details(pool)?))
            }
            Target::Remote(_) => Ok(None),
        }
    }
}
