//! An open pool shared by requests: its store handle and its indexes behind one lock.
//! Searches share the read side; appends and index catch-up take the write side. The native
//! HNSW graph is opened (or built) on first use and caught up with the store lazily, so a
//! search always covers every committed row.

use parking_lot::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard};

use crate::error::Result;
use crate::index::exact::ExactIndex;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::index::{AnnIndex, IndexError};
use crate::store::{JobBatch, NewItem, Pool, PoolRecord};
use crate::types::Matrix;

/// One open pool.
pub struct PoolHandle {
    state: RwLock<OpenPool>,
    params: HnswParams,
}

/// What the lock guards.
pub struct OpenPool {
    /// The store's pool.
    pub pool: Pool,
    graph: Option<Box<dyn AnnIndex>>,
    exact: ExactIndex,
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

    /// The index asked for.
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
}

impl PoolHandle {
    /// Wraps a pool opened from the store.
    pub fn new(pool: Pool, params: HnswParams) -> PoolHandle {
        let exact = ExactIndex::new(pool.dim());
        PoolHandle {
            state: RwLock::new(OpenPool {
                pool,
                graph: None,
                exact,
            }),
            params,
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

    /// Read access with `engine`'s index caught up with the store.
    pub fn ready(&self, engine: Engine) -> Result<ReadyPool<'_>> {
        let guard = self.state.upgradable_read();
        let behind = |s: &OpenPool| match engine {
            Engine::Exact => s.exact.len() < s.pool.len(),
            _ => s.graph.as_ref().is_none_or(|g| g.len() < s.pool.len()),
        };
        let guard = if behind(&guard) {
            let mut w = RwLockUpgradableReadGuard::upgrade(guard);
            bring_up_to_date(&mut w, engine, self.params)?;
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
        Ok(self
            .state
            .write()
            .pool
            .append_for_job(vectors, items, job)?)
    }

    /// Catches the native graph up with the store now (after an ingest), if it is open or
    /// the pool has rows.
    pub fn refresh_graph(&self) -> Result<()> {
        let mut w = self.state.write();
        if w.pool.is_empty() {
            return Ok(());
        }
        bring_up_to_date(&mut w, Engine::Native, self.params)
    }
}

fn bring_up_to_date(state: &mut OpenPool, engine: Engine, params: HnswParams) -> Result<()> {
    let OpenPool { pool, graph, exact } = state;
    match engine {
        Engine::Exact => exact.extend(pool.vectors())?,
        _ => match graph {
            Some(g) => manager::catch_up(pool, g.as_mut())?,
            None => *graph = Some(manager::open(pool, engine, params)?),
        },
    }
    Ok(())
}
