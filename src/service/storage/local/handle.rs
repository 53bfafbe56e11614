//! An open pool shared by requests: its store handle and its indexes behind one lock.
//! Searches share the read side; appends take the write side. The native HNSW graph is built
//! (or loaded, and caught up with the store) from a snapshot of the rows with no lock held,
//! and swapped in under the write lock for a moment: a build of minutes never holds up
//! appends, pool details or other pools' calls. Meanwhile a search uses the graph it has and
//! scans the rows the graph lacks exactly, so it always covers every committed row. In the
//! server builds run in the background; local commands build before their search. With an
//! exact device (`dcd serve --exact-device
//! cuda`), the exact engine is a copy of the pool resident on that GPU, uploaded on first use
//! and appended to after the pool grew; exact re-ranking computes its distances there too.
//! Deleting a pool retires its handle under the write lock, so a call that still holds the
//! handle (a search, an ingest stream, the index refresh after an ingest) finds it retired
//! and writes nothing more: least of all a graph file into a new pool of the same name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockUpgradableReadGuard};

use super::exact_device::ExactDevice;
use crate::index::exact::ExactIndex;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine, IndexSource, IndexStatus};
use crate::index::{AnnIndex, IndexError, SearchParams};
use crate::service::storage::{Lookup, PoolRows, PoolSearch, StoredPool};
use crate::service::{Result, ServiceError};
use crate::store::{JobBatch, NewItem, Pool, PoolRecord, StoreError};
use crate::types::{Matrix, Neighbor};

/// How a local pool's engines are set up.
#[derive(Clone, Debug)]
pub struct Engines {
    /// Parameters of new HNSW graphs.
    pub params: HnswParams,
    /// Serve a saved graph's links from a memory map instead of reading them in.
    pub mmap_graph: bool,
    /// Where the exact engine runs.
    pub device: ExactDevice,
    /// Graph builds run on a thread of their own (the server) rather than in the call that
    /// finds the graph behind (local commands).
    pub background: bool,
}

/// One open pool.
pub struct PoolHandle {
    /// Itself, for the background build thread to hold.
    me: Weak<PoolHandle>,
    state: RwLock<OpenPool>,
    engines: Engines,
    /// One graph build at a time.
    build: Mutex<()>,
    /// A background build is queued or running.
    building: AtomicBool,
}

/// What the lock guards.
pub(super) struct OpenPool {
    pub(super) pool: Pool,
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

/// A pool held for reading; with an engine, one that covers every committed row.
pub struct ReadyPool<'a> {
    pub(super) guard: RwLockReadGuard<'a, OpenPool>,
    /// None for a view that only reads rows.
    engine: Option<Engine>,
}

impl ReadyPool<'_> {
    /// Rows the graph covers (the rest are scanned exactly).
    fn graph_rows(&self) -> usize {
        self.guard.graph.as_ref().map_or(0, |g| g.len())
    }

    /// The engine that answers, as reported to callers (`exact-cuda:0` for the GPU copy;
    /// `native+scan` while the graph catches up and the rows it lacks are scanned).
    fn engine(&self) -> String {
        match (&self.engine, &self.guard.resident) {
            (None, _) => "none".into(),
            (Some(Engine::Exact), Some(r)) => r.name(),
            (Some(Engine::Exact), None) => self.guard.exact.engine().to_string(),
            _ if self.graph_rows() < self.guard.pool.len() => "native+scan".into(),
            _ => "native".into(),
        }
    }

    /// One list per query: the exact engine on the GPU when the pool is resident there, the
    /// exact engine on the CPU, or the graph over the rows it covers merged with an exact
    /// scan of the rows it does not cover yet.
    fn search_batch(&self, queries: &Matrix, lookup: &Lookup<'_>) -> Result<Vec<Vec<Neighbor>>> {
        let view = self.guard.pool.vectors();
        let params = &SearchParams {
            k: lookup.k,
            ef: lookup.ef,
            filter: lookup.within.and_then(|s| s.rows.as_ref()),
        };
        match (&self.engine, &self.guard.resident) {
            (None, _) => Err(ServiceError::Internal {
                what: "a search on a pool view opened without an engine".into(),
            }),
            (Some(Engine::Exact), Some(r)) => r.search(&self.guard.pool, queries, params),
            (Some(Engine::Exact), None) => {
                Ok(self.guard.exact.search_batch(view, queries, params)?)
            }
            _ => {
                let covered = self.graph_rows();
                let mut lists = match &self.guard.graph {
                    Some(g) if covered > 0 => g.search_batch(view, queries, params)?,
                    _ => vec![Vec::new(); queries.rows],
                };
                crate::index::exact::merge_tail(view, covered, queries, params, &mut lists)?;
                Ok(lists)
            }
        }
    }

    /// Exact distances of `lists`' rows to their queries, re-sorted and cut to `k`: on the
    /// GPU when a copy of the pool is resident there, else on the CPU.
    fn rerank_lists(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>], k: usize) -> Result<()> {
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

impl PoolSearch for ReadyPool<'_> {
    fn engine_name(&self) -> String {
        self.engine()
    }

    fn search(&self, queries: &Matrix, lookup: &Lookup<'_>) -> Result<Vec<Vec<Neighbor>>> {
        self.search_batch(queries, lookup)
    }

    fn rerank(&self, queries: &Matrix, lists: &mut [Vec<Neighbor>], k: usize) -> Result<()> {
        self.rerank_lists(queries, lists, k)
    }
}

impl PoolHandle {
    /// Wraps a pool opened from the store, searched with `engines`.
    pub fn new(pool: Pool, engines: Engines) -> Arc<PoolHandle> {
        let exact = ExactIndex::new(pool.dim());
        Arc::new_cyclic(|me| PoolHandle {
            me: me.clone(),
            state: RwLock::new(OpenPool {
                pool,
                graph: None,
                exact,
                resident: None,
                retired: false,
            }),
            engines,
            build: Mutex::new(()),
            building: AtomicBool::new(false),
        })
    }

    /// Read access with `engine`'s index caught up with the store (and, with an exact
    /// device, the pool resident on it: exact searches and re-ranking run there).
    pub fn ready_pool(&self, engine: Engine, rerank: bool) -> Result<ReadyPool<'_>> {
        if engine != Engine::Exact && self.graph_behind()? {
            if self.engines.background {
                self.refresh_in_background();
            } else {
                self.refresh_graph()?;
            }
        }
        let guard = self.state.upgradable_read();
        guard.check_live()?;
        let on_device = self.engines.device.is_gpu() && (engine == Engine::Exact || rerank);
        let behind = |s: &OpenPool| {
            let index = engine == Engine::Exact && !on_device && s.exact.len() < s.pool.len();
            let resident = on_device && s.resident.as_ref().is_none_or(|r| r.len() < s.pool.len());
            index || resident
        };
        let guard = if behind(&guard) {
            let mut w = RwLockUpgradableReadGuard::upgrade(guard);
            if engine == Engine::Exact && !on_device {
                let OpenPool { pool, exact, .. } = &mut *w;
                exact.extend(pool.vectors())?;
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
                    None => *resident = Some(self.engines.device.upload(pool)?),
                }
            }
            parking_lot::RwLockWriteGuard::downgrade(w)
        } else {
            RwLockUpgradableReadGuard::downgrade(guard)
        };
        if guard.pool.is_empty() {
            return Err(IndexError::EmptyPool.into());
        }
        Ok(ReadyPool {
            guard,
            engine: Some(engine),
        })
    }

    /// True when the native graph covers fewer rows than the store committed.
    fn graph_behind(&self) -> Result<bool> {
        let s = self.state.read();
        s.check_live()?;
        Ok(s.graph.as_ref().map_or(0, |g| g.len()) < s.pool.len())
    }

    /// Starts a build on a thread of its own unless one is queued or running; that one
    /// builds again until the graph covers the rows committed meanwhile. So however many
    /// ingests and searches ask, one thread builds, one build after another.
    pub fn refresh_in_background(&self) {
        let Some(handle) = self.me.upgrade() else {
            return;
        };
        if self.building.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("dcd-index-build".into())
            .spawn(move || loop {
                let result = handle.refresh_graph();
                handle.building.store(false, Ordering::Release);
                match result {
                    Ok(()) => {}
                    Err(ServiceError::Store(StoreError::PoolDeleted { .. })) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "index build failed; searches scan the rows it lacks, the next one retries");
                        return;
                    }
                }
                // Rows committed during the build, whose request to build found this one
                // running: build again, unless another thread took the flag meanwhile.
                let behind = handle.graph_behind().unwrap_or(false);
                if !behind || handle.building.swap(true, Ordering::AcqRel) {
                    return;
                }
            });
        if let Err(e) = spawned {
            self.building.store(false, Ordering::Release);
            tracing::warn!(error = %e, "cannot start an index build thread; the next search retries");
        }
    }

    /// Catches the native graph up with the store now (after an ingest), if the pool has
    /// rows. The graph is built from a snapshot with no lock held (the saved file loaded and
    /// caught up, or built), saved under the read lock (a deleted pool's handle, retired
    /// under the write lock, saves nothing), and swapped in under the write lock.
    pub fn refresh_graph(&self) -> Result<()> {
        let _one = self.build.lock();
        // A read-only store (beside a running server, or on read-only media) keeps its graph
        // in memory: nothing is written.
        let (snapshot, dir, name, read_only) = {
            let s = self.state.read();
            s.check_live()?;
            let have = s.graph.as_ref().map_or(0, |g| g.len());
            if s.pool.is_empty() || have >= s.pool.len() {
                return Ok(());
            }
            (
                s.pool.snapshot(),
                s.pool.dir().to_owned(),
                s.pool.record().name.clone(),
                s.pool.read_only(),
            )
        };
        let source = IndexSource {
            vectors: snapshot.view(),
            dir: &dir,
            name: &name,
            read_only,
        };
        let prepare =
            || manager::prepare_native(&source, self.engines.params, self.engines.mmap_graph);
        let (graph, saved_rows) = match build_threads() {
            Some(threads) => threads.install(prepare)?,
            None => prepare()?,
        };
        if saved_rows != Some(graph.len()) {
            let s = self.state.read();
            s.check_live()?;
            manager::save(&source, graph.as_ref());
        }
        let mut w = self.state.write();
        w.check_live()?;
        if w.graph.as_ref().map_or(0, |g| g.len()) < graph.len() {
            w.graph = Some(graph);
        }
        Ok(())
    }
}

impl StoredPool for PoolHandle {
    fn record(&self) -> PoolRecord {
        self.state.read().pool.record().clone()
    }

    fn rows(&self) -> Result<Box<dyn PoolRows + '_>> {
        let guard = self.state.read();
        guard.check_live()?;
        Ok(Box::new(ReadyPool {
            guard,
            engine: None,
        }))
    }

    fn ready(&self, engine: Engine, rerank: bool) -> Result<Box<dyn PoolSearch + '_>> {
        Ok(Box::new(self.ready_pool(engine, rerank)?))
    }

    /// Appends a batch durably (see [`Pool::append_for_job`]).
    fn append(
        &self,
        vectors: &Matrix,
        items: &[NewItem],
        job: Option<&JobBatch<'_>>,
    ) -> Result<std::ops::Range<u64>> {
        let mut w = self.state.write();
        w.check_live()?;
        Ok(w.pool.append_for_job(vectors, items, job)?)
    }

    fn index_status(&self) -> IndexStatus {
        manager::status(&self.state.read().pool)
    }

    fn index_building(&self) -> bool {
        self.building.load(Ordering::Acquire)
    }

    fn catch_up_index(&self, wait: bool) -> Result<()> {
        if wait {
            self.refresh_graph()
        } else {
            // Local commands build in the search that needs the graph.
            if self.engines.background {
                self.refresh_in_background();
            }
            Ok(())
        }
    }

    /// Marks the pool deleted once the calls using it now are done (it waits for the write
    /// lock), and frees its indexes and GPU copy. Later calls on this handle fail with
    /// [`StoreError::PoolDeleted`] and touch no file.
    fn retire(&self) {
        let mut w = self.state.write();
        w.retired = true;
        w.graph = None;
        w.resident = None;
        w.exact = ExactIndex::new(w.pool.dim());
    }
}

/// Threads of their own for graph builds: on rayon's global pool a build of minutes would
/// queue every search's scan behind its tasks; on its own threads the OS shares the cores.
/// None when the machine refused the threads (the build then shares the global pool).
fn build_threads() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("dcd-index-{i}"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "cannot start index build threads; builds share the search threads"))
            .ok()
    })
    .as_ref()
}
