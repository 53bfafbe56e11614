//! Insertion: find the new node's neighbours layer by layer, keep a diverse subset with the
//! HNSW heuristic, link both ways and shrink lists that overflow.

use std::sync::atomic::Ordering;

use super::search::{dist, with_scratch, Beam, Scratch};
use super::{Entry, HnswGraph};
use crate::index::distance::{l2_squared, row_f32};
use crate::index::topk::Scored;
use crate::types::VectorView;

impl HnswGraph {
    /// Inserts node `id` (its row must exist in `vectors`, its arrays be reserved).
    pub(super) fn insert(&self, vectors: VectorView<'_>, id: u32) {
        let level = self.levels[id as usize];
        with_scratch(|s| {
            let mut q = std::mem::take(&mut s.query_buf);
            q.clear();
            q.extend_from_slice(row_f32(&vectors, id as usize, &mut s.pair_a));
            self.insert_with(vectors, id, level, &q, s);
            s.query_buf = q;
        });
    }

    fn insert_with(&self, vectors: VectorView<'_>, id: u32, level: u8, q: &[f32], s: &mut Scratch) {
        let mut top_guard = None;
        let mut entry = self.entry();
        if entry.is_none_or(|e| level > e.level) {
            top_guard = Some(self.top_lock.lock());
            entry = self.entry();
        }
        let Some(entry) = entry else {
            *self.entry.write() = Some(Entry { node: id, level });
            return;
        };

        let mut cur = entry.node;
        let mut cur_d = dist(&vectors, q, cur, &mut s.pair_a);
        for l in (level as usize + 1..=entry.level as usize).rev() {
            (cur, cur_d) = self.greedy(&vectors, q, cur, cur_d, l as u8, s);
        }
        let mut selected = Vec::with_capacity(self.m0());
        for l in (0..=level.min(entry.level)).rev() {
            let ep = Scored {
                dist: cur_d,
                id: cur,
            };
            let beam = Beam {
                ef: self.params.ef_construction,
                level: l,
                filter: None,
            };
            self.search_layer(&vectors, q, ep, beam, s);
            let mut found: Vec<Scored> = s.results.drain().filter(|c| c.id != id).collect();
            found.sort();
            if let Some(best) = found.first() {
                cur = best.id;
                cur_d = best.dist;
            }
            self.select_neighbors(&vectors, &found, self.params.m, &mut selected, s);
            {
                let _g = self.locks[id as usize].lock();
                s.neighbors.clear();
                s.neighbors.extend(selected.iter().map(|c| c.id));
                self.set_neighbors(id, l, &s.neighbors);
            }
            for nb in &selected {
                self.link_back(&vectors, nb.id, id, nb.dist, l, s);
            }
        }
        if level > entry.level {
            *self.entry.write() = Some(Entry { node: id, level });
        }
        drop(top_guard);
    }

    /// Adds `new` to the list of `node` on `level`, re-selecting when the list is full.
    fn link_back(
        &self,
        vectors: &VectorView<'_>,
        node: u32,
        new: u32,
        d: f32,
        level: u8,
        s: &mut Scratch,
    ) {
        let cap = if level == 0 { self.m0() } else { self.params.m };
        let _g = self.locks[node as usize].lock();
        let slot = self.slot(node, level);
        let count = slot[0].load(Ordering::Acquire) as usize;
        if (1..=count).any(|i| slot[i].load(Ordering::Relaxed) == new) {
            return;
        }
        if count < cap {
            slot[count + 1].store(new, Ordering::Relaxed);
            slot[0].store(count as u32 + 1, Ordering::Release);
            return;
        }
        let mut cands: Vec<Scored> = Vec::with_capacity(count + 1);
        cands.push(Scored { dist: d, id: new });
        for a in &slot[1..=count] {
            let other = a.load(Ordering::Relaxed);
            cands.push(Scored {
                dist: pair_dist(vectors, node, other, s),
                id: other,
            });
        }
        cands.sort();
        let mut kept = Vec::with_capacity(cap);
        self.select_neighbors(vectors, &cands, cap, &mut kept, s);
        s.neighbors.clear();
        s.neighbors.extend(kept.iter().map(|c| c.id));
        self.set_neighbors(node, level, &s.neighbors);
    }

    /// The HNSW heuristic (paper, Alg. 4; as hnswlib): walk candidates nearest first and keep
    /// one only if it is closer to the base than to every kept one, up to `m`.
    fn select_neighbors(
        &self,
        vectors: &VectorView<'_>,
        sorted: &[Scored],
        m: usize,
        out: &mut Vec<Scored>,
        s: &mut Scratch,
    ) {
        out.clear();
        if sorted.len() <= m {
            out.extend_from_slice(sorted);
            return;
        }
        for &c in sorted {
            if out.len() >= m {
                break;
            }
            if out
                .iter()
                .all(|k| pair_dist(vectors, c.id, k.id, s) >= c.dist)
            {
                out.push(c);
            }
        }
    }
}

/// Distance between two pool rows, converting f16 rows through the scratch buffers.
#[inline]
fn pair_dist(vectors: &VectorView<'_>, a: u32, b: u32, s: &mut Scratch) -> f32 {
    match *vectors {
        VectorView::F32 { data, dim } => {
            let (a, b) = (a as usize, b as usize);
            l2_squared(&data[a * dim..(a + 1) * dim], &data[b * dim..(b + 1) * dim])
        }
        VectorView::F16 { .. } => {
            let ra = row_f32(vectors, a as usize, &mut s.pair_a);
            let rb = row_f32(vectors, b as usize, &mut s.pair_b);
            l2_squared(ra, rb)
        }
    }
}
