//! Beam search over the layers: greedy descent on the upper layers, then a best-first beam of
//! width `ef` on layer 0. Per-thread scratch (visited marks, heaps, buffers) is reused.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Entry, HnswGraph};
use crate::index::distance::{l2_squared, row_f32};
use crate::index::topk::Scored;
use crate::index::RowFilter;
use crate::types::{Neighbor, VectorView};

/// Visited marks by epoch: a node is visited when its mark equals the current epoch, so
/// clearing is one increment.
pub(super) struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `id`; returns true if it was already marked.
    #[inline]
    fn test_and_set(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        let seen = *m == self.epoch;
        *m = self.epoch;
        seen
    }
}

/// Reusable per-thread search state.
pub(super) struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Reverse<Scored>>,
    pub(super) results: BinaryHeap<Scored>,
    pub(super) neighbors: Vec<u32>,
    fresh: Vec<u32>,
    row_buf: Vec<f32>,
    pub(super) query_buf: Vec<f32>,
    pub(super) pair_a: Vec<f32>,
    pub(super) pair_b: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch {
        visited: Visited { marks: Vec::new(), epoch: 0 },
        candidates: BinaryHeap::new(),
        results: BinaryHeap::new(),
        neighbors: Vec::new(),
        fresh: Vec::new(),
        row_buf: Vec::new(),
        query_buf: Vec::new(),
        pair_a: Vec::new(),
        pair_b: Vec::new(),
    }) };
}

/// Runs `f` with this thread's scratch.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// Cache lines of a row to prefetch; the hardware prefetcher streams the rest.
const PREFETCH_LINES: usize = 4;

/// Asks the CPU to start loading `bytes` bytes (up to `PREFETCH_LINES` lines) at `ptr`.
#[inline(always)]
fn prefetch(ptr: *const i8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..bytes.div_ceil(64).min(PREFETCH_LINES) {
        // SAFETY: a prefetch is a hint that never faults, whatever the address; callers pass
        // addresses inside a live slice anyway. SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                ptr.wrapping_add(line * 64),
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
}

/// Starts loading row `id` of the pool.
#[inline(always)]
fn prefetch_row(vectors: &VectorView<'_>, id: u32) {
    let (ptr, bytes) = match *vectors {
        VectorView::F32 { data, dim } => (
            data.as_ptr().wrapping_add(id as usize * dim) as *const i8,
            dim * 4,
        ),
        VectorView::F16 { data, dim } => (
            data.as_ptr().wrapping_add(id as usize * dim) as *const i8,
            dim * 2,
        ),
    };
    prefetch(ptr, bytes);
}

#[inline]
pub(super) fn dist(vectors: &VectorView<'_>, q: &[f32], id: u32, buf: &mut Vec<f32>) -> f32 {
    l2_squared(q, row_f32(vectors, id as usize, buf))
}

/// Width, layer and filter of one beam search.
#[derive(Clone, Copy)]
pub(super) struct Beam<'a> {
    pub(super) ef: usize,
    pub(super) level: u8,
    pub(super) filter: Option<&'a RowFilter>,
}

impl HnswGraph {
    pub(super) fn entry(&self) -> Option<Entry> {
        *self.entry.read()
    }

    /// Greedy walk on `level` from `(cur, cur_dist)` to a local minimum.
    pub(super) fn greedy(
        &self,
        vectors: &VectorView<'_>,
        q: &[f32],
        mut cur: u32,
        mut cur_dist: f32,
        level: u8,
        s: &mut Scratch,
    ) -> (u32, f32) {
        loop {
            let mut changed = false;
            self.neighbors_into(cur, level, &mut s.neighbors);
            for i in 0..s.neighbors.len() {
                let nb = s.neighbors[i];
                let d = dist(vectors, q, nb, &mut s.row_buf);
                if d < cur_dist {
                    cur = nb;
                    cur_dist = d;
                    changed = true;
                }
            }
            if !changed {
                return (cur, cur_dist);
            }
        }
    }

    /// Best-first beam of width `beam.ef` on `beam.level` from one entry; leaves the best
    /// `ef` allowed nodes in `s.results` (a max-heap).
    pub(super) fn search_layer(
        &self,
        vectors: &VectorView<'_>,
        q: &[f32],
        ep: Scored,
        beam: Beam<'_>,
        s: &mut Scratch,
    ) {
        let Beam { ef, level, filter } = beam;
        s.visited.start(self.levels.len());
        s.candidates.clear();
        s.results.clear();
        s.visited.test_and_set(ep.id);
        s.candidates.push(Reverse(ep));
        if filter.is_none_or(|f| f.allows(ep.id)) {
            s.results.push(ep);
        }
        let mut bound = if s.results.len() >= ef {
            s.results.peek().map_or(f32::INFINITY, |r| r.dist)
        } else {
            f32::INFINITY
        };
        while let Some(Reverse(c)) = s.candidates.pop() {
            if c.dist > bound {
                break;
            }
            // Mark and prefetch every new neighbour first, so the row loads overlap.
            self.neighbors_into(c.id, level, &mut s.neighbors);
            s.fresh.clear();
            for &nb in &s.neighbors {
                if !s.visited.test_and_set(nb) {
                    prefetch_row(vectors, nb);
                    s.fresh.push(nb);
                }
            }
            for i in 0..s.fresh.len() {
                let nb = s.fresh[i];
                let d = dist(vectors, q, nb, &mut s.row_buf);
                if d < bound || s.results.len() < ef {
                    // Its links are read when it is expanded; start loading them now.
                    let slot = self.slot(nb, level);
                    prefetch(slot.as_ptr() as *const i8, slot.len() * 4);
                    s.candidates.push(Reverse(Scored { dist: d, id: nb }));
                    if filter.is_none_or(|f| f.allows(nb)) {
                        s.results.push(Scored { dist: d, id: nb });
                        if s.results.len() > ef {
                            s.results.pop();
                        }
                        if s.results.len() >= ef {
                            bound = s.results.peek().map_or(f32::INFINITY, |r| r.dist);
                        }
                    }
                }
            }
        }
    }

    /// Full k-NN search: descend, then beam on layer 0.
    pub(super) fn knn(
        &self,
        vectors: VectorView<'_>,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&RowFilter>,
    ) -> Vec<Neighbor> {
        let Some(entry) = self.entry() else {
            return Vec::new();
        };
        with_scratch(|s| {
            let d0 = dist(&vectors, q, entry.node, &mut s.row_buf);
            let (mut cur, mut cur_d) = (entry.node, d0);
            for level in (1..=entry.level).rev() {
                (cur, cur_d) = self.greedy(&vectors, q, cur, cur_d, level, s);
            }
            let ep = Scored {
                dist: cur_d,
                id: cur,
            };
            self.search_layer(
                &vectors,
                q,
                ep,
                Beam {
                    ef,
                    level: 0,
                    filter,
                },
                s,
            );
            let mut out: Vec<Neighbor> = s
                .results
                .drain()
                .map(|r| Neighbor {
                    id: r.id,
                    distance: r.dist,
                })
                .collect();
            out.sort_by(Neighbor::rank_cmp);
            out.truncate(k);
            out
        })
    }
}
