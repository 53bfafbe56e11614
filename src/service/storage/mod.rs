//! The storage seam: the only way the service reaches pools. A backend keeps pools (create,
//! list, open, delete); an open pool appends batches and hands out read views; a view reads
//! rows (vectors, items, keys, labels) and, once its engine is ready, searches them exactly
//! or approximately within a selection of labels and excluded keys. The debug-set logic, the
//! queries and the ingest path see only these traits, so a backend that keeps its pools
//! elsewhere (a distributed vector database) slots in without touching them.
//!
//! Rows are numbered densely from 0 in the order they were appended, and a pool only grows:
//! a view's rows stay valid while it is held, and caches keyed by (pool id, rows) stay right.
//! Distances are squared ℓ2, whatever the backend answers in.
//!
//! Today's backend is [`local`]: the data directory's memory-mapped vectors and SQLite catalog
//! with dcd's own indexes (HNSW graph, exact CPU scan, an optional GPU copy).

pub mod local;
#[cfg(feature = "qdrant")]
pub mod qdrant;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use crate::index::manager::{Engine, IndexStatus};
use crate::index::RowFilter;
use crate::service::Result;
use crate::store::{Item, JobBatch, NewItem, PoolRecord, PoolSpec};
use crate::types::{Matrix, Neighbor, RowId};

/// A pool as of one moment: its catalog id and row count (a pool grown, or deleted and made
/// again under its name, is another generation). Caches of per-pool work are keyed by it.
pub type Generation = (i64, usize);

/// Where pools are kept.
pub trait PoolStorage: Send + Sync {
    /// What and where, for logs (`local store at /data`).
    fn describe(&self) -> String;
    /// Makes an empty pool; fails with `PoolExists` when the name is taken.
    fn create(&self, spec: &PoolSpec) -> Result<PoolRecord>;
    /// Every pool's record, by name.
    fn list(&self) -> Result<Vec<PoolRecord>>;
    /// One pool's record as stored now.
    fn record(&self, name: &str) -> Result<PoolRecord>;
    /// Opens a pool for reading, searching and appending.
    fn open(&self, name: &str) -> Result<Arc<dyn StoredPool>>;
    /// Removes a pool and everything stored for it. Handles opened before must be retired
    /// first ([`StoredPool::retire`]): the service does so.
    fn delete(&self, name: &str) -> Result<()>;
}

/// One open pool, shared by the calls using it.
pub trait StoredPool: Send + Sync {
    /// The pool's record as of now.
    fn record(&self) -> PoolRecord;
    /// A read view without preparing any search engine (key lookups, items, labels).
    fn rows(&self) -> Result<Box<dyn PoolRows + '_>>;
    /// A view whose `engine` covers every committed row (with `rerank`, exact re-ranking
    /// prepared too); fails with `EmptyPool` on a pool with no rows.
    fn ready(&self, engine: Engine, rerank: bool) -> Result<Box<dyn PoolSearch + '_>>;
    /// Appends a batch durably, with the job's progress in the same commit when there is a
    /// job; returns the rows it took.
    fn append(
        &self,
        vectors: &Matrix,
        items: &[NewItem],
        job: Option<&JobBatch<'_>>,
    ) -> Result<Range<u64>>;
    /// The approximate index's state, as reported to callers.
    fn index_status(&self) -> IndexStatus;
    /// True while the approximate index is being caught up in the background.
    fn index_building(&self) -> bool;
    /// Catches the approximate index up with the rows now (`wait`), or lets it catch up in
    /// the background where the backend does that (otherwise the next search does it).
    fn catch_up_index(&self, wait: bool) -> Result<()>;
    /// Ends the handle: calls holding it finish first, later ones fail with `PoolDeleted`
    /// and write nothing.
    fn retire(&self);
}

/// Reading one pool's rows.
pub trait PoolRows {
    /// The pool's record (its row count may lag [`PoolRows::len`]'s by a commit).
    fn record(&self) -> &PoolRecord;
    /// Rows committed.
    fn len(&self) -> usize;
    /// True without rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Vector dimension.
    fn dim(&self) -> usize {
        self.record().dim
    }
    /// This pool as of now, for caches.
    fn generation(&self) -> Generation {
        (self.record().id, self.len())
    }
    /// The stored vectors of `rows` as f32, one matrix row each, in order.
    fn vectors(&self, rows: &[RowId]) -> Result<Matrix>;
    /// The items of `rows`, in order.
    fn items(&self, rows: &[RowId]) -> Result<Vec<Item>>;
    /// The row of `key`, if stored.
    fn row_of_key(&self, key: &str) -> Result<Option<RowId>>;
    /// Which of `keys` are stored.
    fn existing_keys(&self, keys: &[&str]) -> Result<HashSet<String>>;
    /// The key of an item with each of these content hashes, where one is stored.
    fn keys_by_hash(&self, hashes: &[&str]) -> Result<HashMap<String, String>>;
    /// The weak label of every row in `from..to` (None: unlabelled), by row.
    fn labels_in_range(&self, from: usize, to: usize) -> Result<Vec<(RowId, Option<String>)>>;
    /// Items per weak label ("" for unlabelled).
    fn label_histogram(&self) -> Result<BTreeMap<String, u64>>;
    /// The rows a search may return: weak label one of `labels` (any when empty), key not
    /// one of `exclude_keys`. None when both are empty.
    fn select(&self, labels: &[String], exclude_keys: &[String]) -> Result<Option<Selection>>;
}

/// Searching one pool, its engine ready.
pub trait PoolSearch: PoolRows {
    /// The engine that answers, as reported to callers (`native`, `exact-cpu`, ...).
    fn engine_name(&self) -> String;
    /// The `lookup.k` nearest rows of each query, nearest first.
    fn search(&self, queries: &Matrix, lookup: &Lookup<'_>) -> Result<Vec<Vec<Neighbor>>>;
    /// Exact distances of `lists`' rows to their queries, re-sorted and cut to `k`.
    fn rerank(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>], k: usize) -> Result<()>;
}

/// A search: how many neighbours, how wide a beam, among which rows.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    /// Neighbours wanted.
    pub k: usize,
    /// Beam width for approximate search (`None`: the engine's default).
    pub ef: Option<usize>,
    /// Only rows of this selection may be returned.
    pub within: Option<&'a Selection>,
}

impl Lookup<'_> {
    /// Plain k-NN with the engine's default beam, over every row.
    pub fn k(k: usize) -> Lookup<'static> {
        Lookup {
            k,
            ef: None,
            within: None,
        }
    }
}

/// Rows a search may return, as asked (labels and excluded keys, which any backend can turn
/// into its own filter) and as the backend resolved it.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Weak labels allowed (any when empty).
    pub labels: Vec<String>,
    /// Keys never returned.
    pub exclude_keys: Vec<String>,
    /// How many of `exclude_keys` are stored in the pool.
    pub excluded: usize,
    /// The allowed rows, where the backend filters by row (the local one).
    pub rows: Option<RowFilter>,
}
