//! Pool storage on disk: a data directory holding the SQLite catalog and one folder per pool
//! with its `vectors.bin` (and index files, which the index layer manages).
//!
//! ```text
//! <data-dir>/catalog.sqlite
//! <data-dir>/LOCK
//! <data-dir>/pools/<name>/vectors.bin
//! ```

mod catalog;
mod catalog_items;
mod error;
mod header;
mod item_limits;
mod job_records;
mod jobs;
mod pool;
mod saved_sets;
mod set_reviews;
mod set_schema;
mod vectors;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub use catalog::{Item, NewItem, PoolRecord};
pub use error::StoreError;
pub use header::VectorHeader;
pub use item_limits::{
    check_item, check_item_fields, MAX_KEY_BYTES, MAX_LABEL_BYTES, MAX_METADATA_BYTES,
};
pub use job_records::{EntryOutcome, JobBatch, JobEntry, JobRecord, JobSource, JobState, JobTally};
pub use pool::Pool;
pub use saved_sets::{SavedItem, SavedSet};
pub use set_reviews::{latest_reviews, Review, Verdict};
pub use vectors::{VectorFile, VectorSnapshot};

use crate::types::{Dtype, Metric};
use catalog::Catalog;

/// Largest dimension a pool accepts.
pub const MAX_DIM: usize = 65_536;
/// Largest row count a pool can address (row ids are u32).
pub const MAX_ROWS: u64 = u32::MAX as u64;

/// What `create_pool` needs.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    /// Unique name: letters, digits, `_`, `-`, `.`; 1 to 64 characters.
    pub name: String,
    /// Vector dimension.
    pub dim: usize,
    /// Storage element type.
    pub dtype: Dtype,
    /// Backbone id the vectors come from, if any.
    pub backbone: Option<String>,
    /// The backbone's weights (path or model id; None: its default).
    pub weights: Option<String>,
    /// ViT pooling recorded with the backbone.
    pub pooling: Option<String>,
}

impl PoolSpec {
    /// A pool of raw vectors, with no model.
    pub fn raw(name: &str, dim: usize, dtype: Dtype) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            dim,
            dtype,
            backbone: None,
            weights: None,
            pooling: None,
        }
    }
}

/// Where a deleted pool's folder waits for removal: `pools/.deleted-<name>-<random>` (pool
/// names cannot start with '.').
const TRASH_PREFIX: &str = ".deleted-";
/// Where a folder the catalog does not know is kept: `pools/.orphan-<name>-<random>`.
pub const ORPHAN_PREFIX: &str = ".orphan-";

/// The data directory: catalog plus pool folders, locked for this process.
pub struct Store {
    root: PathBuf,
    catalog: Arc<Mutex<Catalog>>,
    /// None when opened read-only (no lock: a server may hold it).
    _lock: Option<File>,
}

impl Store {
    /// Opens or creates the data directory at `root`, taking its lock.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root.join("pools"))
            .map_err(StoreError::io_or_not_writable(root, root))?;
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io_or_not_writable(root, &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::DataDirLocked {
                    path: root.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path)(e)),
        }
        let catalog = Catalog::open(&root.join("catalog.sqlite"))?;
        Store::sweep_trash(root);
        Ok(Store {
            root: root.to_owned(),
            catalog: Arc::new(Mutex::new(catalog)),
            _lock: Some(lock),
        })
    }

    /// Opens the data directory at `root` for reading only: no lock is taken (a server may
    /// hold it), nothing is created, repaired, swept or written, and every write is refused
    /// with [`StoreError::ReadOnly`]. Rows committed after the open are not seen; a pool whose
    /// last append was interrupted shows its committed rows only.
    pub fn open_read_only(root: &Path) -> Result<Store, StoreError> {
        let catalog = Catalog::open_read_only(&root.join("catalog.sqlite"))?;
        Ok(Store {
            root: root.to_owned(),
            catalog: Arc::new(Mutex::new(catalog)),
            _lock: None,
        })
    }

    /// Opens read-write, or read-only when a server holds the directory's lock or the
    /// directory cannot be written (a read-only copy); says which on stderr-bound logs.
    pub fn open_for_reading(root: &Path) -> Result<Store, StoreError> {
        match Store::open(root) {
            Ok(store) => Ok(store),
            Err(StoreError::DataDirLocked { .. }) => {
                tracing::warn!(dir = %root.display(), "a running server holds this data directory; reading it read-only");
                Store::open_read_only(root)
            }
            Err(StoreError::NotWritable { .. }) => {
                tracing::warn!(dir = %root.display(), "the data directory cannot be written; reading it read-only");
                Store::open_read_only(root)
            }
            Err(e) => Err(e),
        }
    }

    /// True when opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self._lock.is_none()
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.is_read_only() {
            return Err(StoreError::ReadOnly {
                path: self.root.clone(),
            });
        }
        Ok(())
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folder of the pool `name`.
    pub fn pool_dir(&self, name: &str) -> PathBuf {
        self.root.join("pools").join(name)
    }

    /// Creates an empty pool.
    pub fn create_pool(&self, spec: &PoolSpec) -> Result<PoolRecord, StoreError> {
        self.writable()?;
        validate_pool_name(&spec.name)?;
        if spec.dim == 0 || spec.dim > MAX_DIM {
            return Err(StoreError::InvalidDimension {
                dim: spec.dim,
                max: MAX_DIM,
            });
        }
        let mut catalog = self.catalog.lock();
        if catalog.pool(&spec.name)?.is_some() {
            return Err(StoreError::PoolExists {
                name: spec.name.clone(),
            });
        }
        let dir = self.pool_dir(&spec.name);
        if dir.exists() {
            self.quarantine(&dir, &spec.name)?;
        }
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let uid: [u8; 16] = rand::random();
        VectorFile::create(&dir.join("vectors.bin"), spec.dim, spec.dtype, uid)?;
        // The catalog row comes last: a crash before it leaves only a folder that the next
        // create of that name moves aside.
        catalog.insert_pool(spec, Metric::L2, now_unix(), uid)
    }

    /// Moves a pool folder the catalog does not know out of the way, keeping it: an
    /// interrupted create leaves an empty one, but a lost or replaced catalog leaves real
    /// data, which dcd never deletes on its own.
    fn quarantine(&self, dir: &Path, name: &str) -> Result<(), StoreError> {
        let aside = self.root.join("pools").join(format!(
            "{ORPHAN_PREFIX}{name}-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::rename(dir, &aside).map_err(StoreError::io(dir))?;
        tracing::warn!(
            dir = %dir.display(),
            kept = %aside.display(),
            "a pool folder the catalog does not know was moved aside, not deleted; remove it when it is not needed"
        );
        Ok(())
    }

    /// All pools.
    pub fn pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        self.catalog.lock().pools()
    }

    /// One pool's record.
    pub fn pool_record(&self, name: &str) -> Result<PoolRecord, StoreError> {
        self.catalog
            .lock()
            .pool(name)?
            .ok_or_else(|| StoreError::PoolNotFound { name: name.into() })
    }

    /// Deletes a pool: catalog first (the commit point), then its folder.
    pub fn delete_pool(&self, name: &str) -> Result<(), StoreError> {
        use rand::Rng;
        self.writable()?;
        validate_pool_name(name)?;
        let dir = self.pool_dir(name);
        let trash = self.root.join("pools").join(format!(
            "{TRASH_PREFIX}{name}-{:016x}",
            rand::thread_rng().gen::<u64>()
        ));
        {
            let mut catalog = self.catalog.lock();
            if !catalog.delete_pool(name)? {
                return Err(StoreError::PoolNotFound { name: name.into() });
            }
            // The folder leaves the name under the catalog lock, so a create of the same
            // name that follows finds the name free and clears nothing of its own.
            if dir.exists() {
                if let Err(e) = std::fs::rename(&dir, &trash) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot move a deleted pool's folder aside; removing it in place");
                    std::fs::remove_dir_all(&dir).map_err(StoreError::io(&dir))?;
                    return Ok(());
                }
            } else {
                return Ok(());
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            // The pool is gone from the catalog; the next open sweeps what is left.
            tracing::warn!(dir = %trash.display(), error = %e, "cannot remove a deleted pool's folder; the next start retries");
        }
        Ok(())
    }

    /// Removes deleted pools' folders that a crash or an I/O error left behind.
    fn sweep_trash(root: &Path) {
        let pools = root.join("pools");
        let Ok(entries) = std::fs::read_dir(&pools) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(TRASH_PREFIX)
            {
                let path = entry.path();
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a deleted pool's folder");
                }
            }
        }
    }

    /// Creates a pending ingestion job for `pool`, forgetting its finished jobs beyond the
    /// newest `keep_finished` (their entries too; the items they stored stay); returns its
    /// record.
    pub fn create_job(
        &self,
        pool: &str,
        source: &JobSource,
        keep_finished: usize,
    ) -> Result<JobRecord, StoreError> {
        use rand::Rng;
        self.writable()?;
        let record = self.pool_record(pool)?;
        let id = format!("job-{:016x}", rand::thread_rng().gen::<u64>());
        let mut catalog = self.catalog.lock();
        catalog.insert_job(&id, record.id, source, now_unix(), keep_finished)?;
        catalog
            .job(&id)?
            .ok_or_else(|| StoreError::JobNotFound { id: id.clone() })
    }

    /// One job with its tally.
    pub fn job(&self, id: &str) -> Result<JobRecord, StoreError> {
        self.catalog
            .lock()
            .job(id)?
            .ok_or_else(|| StoreError::JobNotFound { id: id.into() })
    }

    /// Jobs that are pending or were running when the process stopped.
    pub fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.catalog.lock().unfinished_jobs()
    }

    /// A pool's newest `limit` jobs, newest first.
    pub fn jobs_of_pool(&self, pool: &str, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        let record = self.pool_record(pool)?;
        self.catalog.lock().jobs_of_pool(record.id, limit)
    }

    /// How many jobs a pool keeps.
    pub fn job_count(&self, pool: &str) -> Result<u64, StoreError> {
        let record = self.pool_record(pool)?;
        self.catalog.lock().job_count(record.id)
    }

    /// Moves a job to `state`.
    pub fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.catalog
            .lock()
            .set_job_state(id, state, error, now_unix())
    }

    /// Records the size of a job's source.
    pub fn set_job_total(&self, id: &str, total: u64) -> Result<(), StoreError> {
        self.catalog.lock().set_job_total(id, total)
    }

    /// Records the entries a job hands to the model now (see
    /// [`Store::job_inflight`]); empty: none.
    pub fn set_job_inflight(&self, id: &str, keys: &[String]) -> Result<(), StoreError> {
        self.catalog.lock().set_job_inflight(id, keys)
    }

    /// The entries a job had handed to the model when its process last stopped: if it died,
    /// one of them may be what killed it.
    pub fn job_inflight(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.catalog.lock().job_inflight(id)
    }

    /// Keys the job has already dealt with.
    pub fn job_done_keys(&self, id: &str) -> Result<std::collections::HashSet<String>, StoreError> {
        self.catalog.lock().job_done_keys(id)
    }

    /// Refuses a set name that cannot be used (before any work is done for the set).
    pub fn check_set_name(name: &str) -> Result<(), StoreError> {
        saved_sets::validate_set_name(name)
    }

    /// Saves a debug-train set with its items, whole or not at all; the name must be free.
    pub fn save_set(&self, set: &SavedSet, items: &[SavedItem]) -> Result<(), StoreError> {
        self.writable()?;
        saved_sets::validate_set_name(&set.name)?;
        self.catalog.lock().insert_saved_set(set, items)
    }

    /// The saved set `name`.
    pub fn saved_set(&self, name: &str) -> Result<SavedSet, StoreError> {
        // A catalog of an older build opened read-only has no set tables (a read-write open
        // adds them): it holds no set.
        let found = match self.catalog.lock().saved_set(name) {
            Err(e) if self.is_read_only() && is_missing_table(&e) => None,
            other => other?,
        };
        found.ok_or_else(|| StoreError::SetNotFound { name: name.into() })
    }

    /// Every saved set (of `pool` when given), newest first.
    pub fn saved_sets(&self, pool: Option<&str>) -> Result<Vec<SavedSet>, StoreError> {
        match self.catalog.lock().saved_sets(pool) {
            Err(e) if self.is_read_only() && is_missing_table(&e) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The items of the saved set `name`, in order.
    pub fn saved_set_items(&self, name: &str) -> Result<Vec<SavedItem>, StoreError> {
        self.saved_set(name)?;
        self.catalog.lock().saved_set_items(name)
    }

    /// Deletes the saved set `name`.
    pub fn delete_saved_set(&self, name: &str) -> Result<(), StoreError> {
        self.writable()?;
        match self.catalog.lock().delete_saved_set(name)? {
            true => Ok(()),
            false => Err(StoreError::SetNotFound { name: name.into() }),
        }
    }

    /// Records `verdict` by `reviewer` for each of `keys` in the saved set `set`, all or none
    /// (a key the set lacks stores nothing). Returns how many items were reviewed.
    pub fn review_set(
        &self,
        set: &str,
        keys: &[String],
        verdict: &Verdict,
        reviewer: &str,
    ) -> Result<usize, StoreError> {
        self.writable()?;
        self.saved_set(set)?;
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.catalog
            .lock()
            .insert_reviews(set, keys, verdict, reviewer, at_ms)
    }

    /// Every verdict given on the saved set's items, oldest first.
    pub fn set_review_history(&self, set: &str) -> Result<Vec<Review>, StoreError> {
        self.saved_set(set)?;
        match self.catalog.lock().review_history(set) {
            Err(e) if self.is_read_only() && is_missing_table(&e) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Deletes every set drawn from `pool`; returns how many.
    pub fn delete_saved_sets_of(&self, pool: &str) -> Result<usize, StoreError> {
        self.writable()?;
        self.catalog.lock().delete_saved_sets_of(pool)
    }

    /// The job's failed and duplicate entries (key, outcome, detail), at most `limit`.
    pub fn job_problems(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        self.catalog.lock().job_problems(id, limit)
    }

    /// Opens a pool for reading and appending, repairing an interrupted append.
    pub fn open_pool(&self, name: &str) -> Result<Pool, StoreError> {
        validate_pool_name(name)?;
        let record = self.pool_record(name)?;
        let dir = self.pool_dir(name);
        // Rows and items must agree before anything is served: a missing item would pair
        // keys with the wrong rows.
        let items = self.catalog.lock().item_count(record.id, record.rows)?;
        if items != record.rows {
            return Err(StoreError::ItemsDisagree {
                pool: name.into(),
                rows: record.rows,
                items,
            });
        }
        let expected = vectors::Expected {
            dim: record.dim,
            dtype: record.dtype,
            pool_uid: record.uid,
            committed: record.rows,
        };
        let path = dir.join("vectors.bin");
        let vectors = if self.is_read_only() {
            VectorFile::open_read_only(&path, &expected)?
        } else {
            VectorFile::open(&path, &expected)?
        };
        Ok(Pool {
            record,
            dir,
            vectors,
            catalog: Arc::clone(&self.catalog),
            read_only: self.is_read_only(),
        })
    }
}

fn validate_pool_name(name: &str) -> Result<(), StoreError> {
    match name_problem(name, 64, "use 1 to 64 characters") {
        Some(reason) => Err(StoreError::InvalidPoolName {
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Why `name` cannot name a pool (a folder) or a saved set, if it cannot: empty or over
/// `max` bytes (`length_rule` says so), a leading '.', or a character a path, a shell or a
/// URL would need quoted.
fn name_problem(name: &str, max: usize, length_rule: &'static str) -> Option<&'static str> {
    if name.is_empty() || name.len() > max {
        Some(length_rule)
    } else if name.starts_with('.') {
        Some("a name may not start with '.'")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Some("use only ASCII letters, digits, '_', '-' and '.'")
    } else {
        None
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// True for SQLite's "no such table".
fn is_missing_table(e: &StoreError) -> bool {
    matches!(e, StoreError::Catalog { source: rusqlite::Error::SqliteFailure(_, Some(m)), .. } if m.starts_with("no such table"))
}
