//! dcd's own HNSW (Malkov & Yashunin), compact and lock-free to read.
//!
//! The graph stores neighbour ids only; distances read rows from the pool's [`VectorView`].
//! Layer 0 is one flat array of `n × (1 + 2M)` slots (a count, then ids), upper layers a small
//! array per node that has them. Slots are `AtomicU32` so that parallel inserts (each holding
//! the node's mutex while it rewrites that node's list) and searches can share the graph
//! without read locks; every id ever written is a valid row, so a reader racing a writer sees
//! an old or new neighbour, never garbage.
//!
//! - [`search`]: beam search per layer with a reused visited set and prefetch.
//! - [`insert`]: insertion with the neighbour-selection heuristic, parallel batches.
//! - [`persist`]: the on-disk format with a checksum.

mod insert;
mod links;
pub(crate) mod persist;
mod repair;
mod search;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use links::LinkStore;
use parking_lot::{Mutex, RwLock};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::progress::BuildProgress;
use super::{check_extend, exact, validate_query, AnnIndex, IndexError, SearchParams};
use crate::types::{Neighbor, RowId, VectorView};

/// Highest layer a node may get (the file format stores levels in a byte).
const MAX_LEVEL: u8 = 15;
/// Filters allowing fewer rows than this (or under 1/16 of the pool) are answered exactly.
const FILTER_EXACT_BELOW: usize = 4096;

/// Build and search settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HnswParams {
    /// Links per node on upper layers; layer 0 keeps `2 * m`.
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Default beam width while searching.
    pub ef_search: usize,
    /// Seed of the level generator.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            seed: 0x05ee_ddcd,
        }
    }
}

impl HnswParams {
    /// Checks the ranges the graph supports.
    pub fn validate(&self) -> Result<(), IndexError> {
        if !(2..=128).contains(&self.m) {
            return Err(IndexError::InvalidParameter {
                name: "m",
                value: self.m.to_string(),
                reason: "use 2..=128 (16 is a good default)",
            });
        }
        if self.ef_construction == 0 || self.ef_construction > 4096 {
            return Err(IndexError::InvalidParameter {
                name: "ef_construction",
                value: self.ef_construction.to_string(),
                reason: "use 1..=4096 (200 is a good default)",
            });
        }
        if self.ef_search == 0 || self.ef_search > 65_536 {
            return Err(IndexError::InvalidParameter {
                name: "ef",
                value: self.ef_search.to_string(),
                reason: "use 1..=65536",
            });
        }
        Ok(())
    }
}

/// Entry point of the graph: the node on the highest layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    node: u32,
    level: u8,
}

/// The HNSW graph.
pub struct HnswGraph {
    params: HnswParams,
    dim: usize,
    levels: Vec<u8>,
    links0: LinkStore,
    upper: Vec<Box<[AtomicU32]>>,
    locks: Vec<Mutex<()>>,
    entry: RwLock<Option<Entry>>,
    /// Held by an insert that raises the top layer, as hnswlib does.
    top_lock: Mutex<()>,
}

impl HnswGraph {
    /// An empty graph.
    pub fn new(dim: usize, params: HnswParams) -> Result<HnswGraph, IndexError> {
        params.validate()?;
        Ok(HnswGraph {
            params,
            dim,
            levels: Vec::new(),
            links0: LinkStore::Owned(Vec::new()),
            upper: Vec::new(),
            locks: Vec::new(),
            entry: RwLock::new(None),
            top_lock: Mutex::new(()),
        })
    }

    /// Builds over every row of `vectors` with the current rayon pool.
    pub fn build(vectors: VectorView<'_>, params: HnswParams) -> Result<HnswGraph, IndexError> {
        let mut g = HnswGraph::new(vectors.dim(), params)?;
        g.extend(vectors)?;
        Ok(g)
    }

    /// Settings the graph was built with.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    fn m0(&self) -> usize {
        2 * self.params.m
    }

    /// Neighbour slot of `node` on `level`: `[count, id, id, ...]`.
    #[inline]
    fn slot(&self, node: u32, level: u8) -> &[AtomicU32] {
        let n = node as usize;
        if level == 0 {
            let w = self.m0() + 1;
            &self.links0[n * w..(n + 1) * w]
        } else {
            let w = self.params.m + 1;
            let l = level as usize - 1;
            &self.upper[n][l * w..(l + 1) * w]
        }
    }

    /// Current neighbours of `node` on `level`, copied out.
    #[inline]
    fn neighbors_into(&self, node: u32, level: u8, out: &mut Vec<u32>) {
        let slot = self.slot(node, level);
        let count = (slot[0].load(Ordering::Acquire) as usize).min(slot.len() - 1);
        out.clear();
        out.extend(slot[1..=count].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    /// Replaces the neighbour list of `node` on `level` (caller holds the node's lock).
    fn set_neighbors(&self, node: u32, level: u8, ids: &[u32]) {
        let slot = self.slot(node, level);
        debug_assert!(ids.len() < slot.len());
        for (a, &id) in slot[1..].iter().zip(ids) {
            a.store(id, Ordering::Relaxed);
        }
        slot[0].store(ids.len() as u32, Ordering::Release);
    }

    /// Grows the per-node arrays to `n` nodes and draws their levels.
    fn reserve(&mut self, n: usize) {
        let start = self.levels.len();
        if n <= start {
            return;
        }
        let mult = 1.0 / (self.params.m as f64).ln();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.params.seed ^ start as u64);
        let w0 = self.m0() + 1;
        let w = self.params.m + 1;
        let links0 = self.links0.make_owned();
        links0.reserve((n - start) * w0);
        for _ in start..n {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let level = ((-u.ln() * mult).floor() as u64).min(MAX_LEVEL as u64) as u8;
            self.levels.push(level);
            links0.extend((0..w0).map(|_| AtomicU32::new(0)));
            self.upper
                .push((0..level as usize * w).map(|_| AtomicU32::new(0)).collect());
            self.locks.push(Mutex::new(()));
        }
    }

    /// Rows that a search for themselves (beam `ef`) does not return first. `extend` repairs
    /// such rows, so after a build this is empty (hnsw_rs issue #32 reports otherwise there).
    pub fn unreachable_rows(&self, vectors: VectorView<'_>, ef: usize) -> Vec<RowId> {
        let vectors = vectors.prefix(self.len());
        (0..self.len() as RowId)
            .into_par_iter()
            .filter(|&r| !self.finds_itself(vectors, r, ef))
            .collect()
    }

    /// Loads a graph written by [`AnnIndex::save`], checking it against the pool's dimension.
    /// With `mmap`, the layer-0 links stay in a private memory map of the file (paged in on
    /// use) instead of being read into memory.
    pub fn load(path: &Path, dim: usize, mmap: bool) -> Result<HnswGraph, IndexError> {
        persist::load(path, dim, mmap)
    }

    /// True when the layer-0 links are served from a memory map.
    pub fn is_mapped(&self) -> bool {
        self.links0.is_mapped()
    }
}

impl AnnIndex for HnswGraph {
    fn engine(&self) -> &'static str {
        "native-hnsw"
    }

    fn len(&self) -> usize {
        self.levels.len()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn extend(&mut self, vectors: VectorView<'_>) -> Result<(), IndexError> {
        check_extend(self.len(), self.dim, &vectors)?;
        let (start, end) = (self.len(), vectors.len());
        if end == start {
            return Ok(());
        }
        self.reserve(end);
        let this = &*self;
        let progress = BuildProgress::new(end - start);
        let mut first = start;
        if this.entry.read().is_none() {
            this.insert(vectors, first as u32);
            progress.row_done();
            first += 1;
        }
        (first..end).into_par_iter().with_min_len(16).for_each(|i| {
            this.insert(vectors, i as u32);
            progress.row_done();
        });
        let lost = this.repair(vectors, start as u32..end as u32);
        if !lost.is_empty() {
            tracing::warn!(rows = lost.len(), "rows a search cannot reach after repair");
        }
        Ok(())
    }

    fn search(
        &self,
        vectors: VectorView<'_>,
        query: &[f32],
        params: &SearchParams<'_>,
    ) -> Result<Vec<Neighbor>, IndexError> {
        validate_query(self.dim, query, params.k, 0)?;
        let n = self.len();
        if n == 0 {
            return Err(IndexError::EmptyPool);
        }
        let vectors = vectors.prefix(n);
        if let Some(f) = params.filter {
            // A graph walk that may keep only a few visited nodes degenerates into a scan.
            if f.count() < FILTER_EXACT_BELOW || f.count() * 16 < n {
                return Ok(exact::scan_one(vectors, query, params.k, Some(f)));
            }
        }
        let ef = params.ef.unwrap_or(self.params.ef_search).max(params.k);
        Ok(self.knn(vectors, query, params.k, ef, params.filter))
    }

    fn persistent(&self) -> bool {
        true
    }

    fn save(&self, path: &Path) -> Result<(), IndexError> {
        persist::save(self, path)
    }
}
