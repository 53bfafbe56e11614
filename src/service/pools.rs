//! An open pool shared by requests: its store handle and its indexes behind one lock.
//! Searches share the read side; appends and index catch-up take the write side. The native
//! HNSW graph is opened (or built) on first use and caught up with the store lazily, so a
//! search always covers every committed row. With an exact device (`dcd serve --exact-device
//! cuda`), the exact engine is a copy of the pool resident on that GPU, uploaded on first use
//! and appended to after the pool grew; exact re-ranking computes its distances there too.
//! Deleting a pool retires its handle under the write lock, so a call that still holds the
//! handle (a search, an ingest stream, the index refresh after an ingest) finds it retired
//! and writes nothing more: least of all a graph file into a new pool of the same name.

use parking_lot::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard};

use super::exact_device::ExactDevice;
use crate::error::Result;
use crate::index::exact::ExactIndex;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::index::{AnnIndex, IndexError, SearchParams};
use crate::store::{JobBatch, NewItem, Pool, PoolRecord, StoreError};
use crate::types::{Matrix, Neighbor};

/// One open pool.
pub struct PoolHandle {
    state: RwLock<OpenPool>,
    params: HnswParams,
    device: ExactDevice,
}

/// What the lock guards.
pub struct OpenPool {
    /// The store's pool.
    pub pool: Pool,
    graph: Option<Box<dyn AnnIndex>>,
    exact: ExactIndex,
    resident: Option<super::exact_device::Resident>,
    retired: bool,
}

impl OpenPool {
    /// Fails once the pool was deleted.
    fn check_live(&self) -> Result<()> {
        if self.retired {
            return Err(StoreError::PoolDeleted {
                name: self.pool.record().name.clone(),
            }
            .into());
        }
        Ok(())
    }
}

/// A pool whose index covers every committed row, held for reading.
pub struct ReadyPool<'a> {
    guard: RwLockReadGuard<'a, OpenPool>,
    engine: Engine,
}

impl ReadyPool<'_> {
    /// The store's pool.
    pub fn pool(&self) -> &Pool {
        &self.guard.pool
    }

    /// The index asked for (on the CPU; see [`ReadyPool::search_batch`] for the GPU).
    pub fn index(&self) -> &dyn AnnIndex {
        match self.engine {
            Engine::Exact => &self.guard.exact,
            _ => self
                .guard
                .graph
                .as_deref()
                .expect("ready() opened the graph"),
        }
    }

    /// The engine that answers, as reported to callers (`exact-cuda:0` for the GPU copy).
    pub fn engine_name(&self) -> String {
        match (&self.engine, &self.guard.resident) {
            (Engine::Exact, Some(r)) => r.name(),
            _ => self.index().engine().to_string(),
        }
    }

    /// One list per query: the exact engine on the GPU when the pool is resident there,
    /// else the index asked for.
    pub fn search_batch(
        &self,
        queries: &Matrix,
        params: &SearchParams<'_>,
    ) -> Result<Vec<Vec<Neighbor>>> {
        match (&self.engine, &self.guard.resident) {
            (Engine::Exact, Some(r)) => r.search(&self.guard.pool, queries, params),
            _ => Ok(self
                .index()
                .search_batch(self.guard.pool.vectors(), queries, params)?),
        }
    }

    /// Exact distances of `lists`' rows to their queries, re-sorted and cut to `k`: on the
    /// GPU when a copy of the pool is resident there, else on the CPU.
    pub fn rerank(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>], k: usize) -> Result<()> {
        match &self.guard.resident {
            Some(r) if r.reranks() => r.rerank(queries, lists)?,
            _ => {
                let view = self.guard.pool.vectors();
                let mut scratch = Vec::new();
                for (list, q) in lists.iter_mut().zip(queries.iter_rows()) {
                    for n in list.iter_mut() {
                        n.distance = crate::index::distance::distance_to_row(
                            &view,
                            q,
                            n.id as usize,
                            &mut scratch,
                        );
                    }
                }
            }
        }
        for list in lists.iter_mut() {
            list.sort_by(|a, b| a.rank_cmp(b));
            list.truncate(k);
        }
        Ok(())
    }
}

impl PoolHandle {
    /// Wraps a pool opened from the store; `device` is where its exact engine runs.
    pub fn new(pool: Pool, params: HnswParams, device: ExactDevice) -> PoolHandle {
        let exact = ExactIndex::new(pool.dim());
        PoolHandle {
            state: RwLock::new(OpenPool {
                pool,
                graph: None,
                exact,
                resident: None,
                retired: false,
            }),
            params,
            device,
        }
    }

    /// The pool's record as of now.
    pub fn record(&self) -> PoolRecord {
        self.state.read().pool.record().clone()
    }

    /// Read access without touching the indexes.
    pub fn read(&self) -> RwLockReadGuard<'_, OpenPool> {
        self.state.read()
    }

    /// Read access with `engine`'s index caught up with the store (and, with an exact
    /// device, the pool resident on it: exact searches and re-ranking run there).
    pub fn ready(&self, engine: Engine, rerank: bool) -> Result<ReadyPool<'_>> {
        let guard = self.state.upgradable_read();
        guard.check_live()?;
        let on_device = self.device.is_gpu() && (engine == Engine::Exact || rerank);
        let behind = |s: &OpenPool| {
            let index = match engine {
                Engine::Exact => !on_device && s.exact.len() < s.pool.len(),
                _ => s.graph.as_ref().is_none_or(|g| g.len() < s.pool.len()),
            };
            let resident = on_device && s.resident.as_ref().is_none_or(|r| r.len() < s.pool.len());
            index || resident
        };
        let guard = if behind(&guard) {
            let mut w = RwLockUpgradableReadGuard::upgrade(guard);
            if engine != Engine::Exact || !on_device {
                bring_up_to_date(&mut w, engine, self.params)?;
            }
            if on_device && !w.pool.is_empty() {
                let OpenPool { pool, resident, .. } = &mut *w;
                match resident {
                    Some(r) if r.len() < pool.len() => {
                        if let Err(e) = r.append(pool) {
                            // The next call starts from a fresh copy.
                            *resident = None;
                            return Err(e);
                        }
                    }
                    Some(_) => {}
                    None => *resident = Some(self.device.upload(pool)?),
                }
            }
            parking_lot::RwLockWriteGuard::downgrade(w)
        } else {
            RwLockUpgradableReadGuard::downgrade(guard)
        };
        if guard.pool.is_empty() {
            return Err(IndexError::EmptyPool.into());
        }
        Ok(ReadyPool { guard, engine })
    }

    /// Appends a batch durably (see [`Pool::append_for_job`]).
    pub fn append(
        &self,
        vectors: &Matrix,
        items: &[NewItem],
        job: Option<&JobBatch<'_>>,
    ) -> Result<std::ops::Range<u64>> {
        let mut w = self.state.write();
        w.check_live()?;
        Ok(w.pool.append_for_job(vectors, items, job)?)
    }

    /// Catches the native graph up with the store now (after an ingest), if it is open or
    /// the pool has rows.
    pub fn refresh_graph(&self) -> Result<()> {
        let mut w = self.state.write();
        w.check_live()?;
        if w.pool.is_empty() {
            return Ok(());
        }
        bring_up_to_date(&mut w, Engine::Native, self.params)
    }

    /// Marks the pool deleted once the calls using it now are done (it waits for the write
    /// lock), and frees its indexes and GPU copy. Later calls on this handle fail with
    /// [`StoreError::PoolDeleted`] and touch no file.
    pub fn retire(&self) {
        let mut w = self.state.write();
        w.retired = true;
        w.graph = None;
        w.resident = None;
        w.exact = ExactIndex::new(w.pool.dim());
    }
}

fn bring_up_to_date(state: &mut OpenPool, engine: Engine, params: HnswParams) -> Result<()> {
    let OpenPool {
        pool, graph, exact, ..
    } = state;
    match engine {
        Engine::Exact => exact.extend(pool.vectors())?,
        _ => match graph {
            Some(g) => manager::catch_up(pool, g.as_mut())?,
            None => *graph = Some(manager::open(pool, engine, params)?),
        },
    }
    Ok(())
}
