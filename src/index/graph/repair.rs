//! Reachability repair. The neighbour heuristic can prune every in-link of a node, leaving a
//! point that no search reaches (hnsw_rs issue #32 reports this for parallel builds). After
//! each `extend`, the rows that were added or lost an in-link are searched for themselves;
//! each one that is not found gets a layer-0 link from its nearest reachable neighbours.

use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::search::{dist, with_scratch};
use super::HnswGraph;
use crate::types::VectorView;

/// Beam used to decide whether a row finds itself.
const CHECK_EF: usize = 64;
/// Nearest neighbours that receive a link to a lost row.
const LINKS_PER_REPAIR: usize = 2;
/// Check-and-link rounds before giving up (a round rarely leaves anything behind).
const ROUNDS: usize = 3;

impl HnswGraph {
    /// True when a search for row `r` returns it (or an identical row) at rank 1.
    pub(super) fn finds_itself(&self, vectors: VectorView<'_>, r: u32, ef: usize) -> bool {
        let q = vectors.row_f32(r as usize);
        let hits = self.knn(vectors, &q, 1, ef, None);
        hits.first().is_some_and(|h| h.id == r || h.distance == 0.0)
    }

    /// Checks `candidates` and links in those that cannot be found. Returns rows still lost.
    pub(super) fn repair(&self, vectors: VectorView<'_>, mut candidates: Vec<u32>) -> Vec<u32> {
        let ef = CHECK_EF.max(self.params.ef_search);
        for _ in 0..ROUNDS {
            let lost: Vec<u32> = candidates
                .into_par_iter()
                .filter(|&r| !self.finds_itself(vectors, r, ef))
                .collect();
            if lost.is_empty() {
                return lost;
            }
            tracing::debug!(rows = lost.len(), "linking rows no search reached");
            for &r in &lost {
                self.link_in(vectors, r);
            }
            candidates = lost;
        }
        candidates
            .into_iter()
            .filter(|&r| !self.finds_itself(vectors, r, ef))
            .collect()
    }

    /// Adds `r` to the layer-0 lists of its nearest found neighbours, replacing their farthest
    /// neighbour when a list is full.
    fn link_in(&self, vectors: VectorView<'_>, r: u32) {
        let q = vectors.row_f32(r as usize);
        let hits = self.knn(
            vectors,
            &q,
            LINKS_PER_REPAIR + 1,
            self.params.ef_construction,
            None,
        );
        let cap = self.m0();
        for h in hits.iter().filter(|h| h.id != r).take(LINKS_PER_REPAIR) {
            let e = h.id;
            let _g = self.locks[e as usize].lock();
            let slot = self.slot(e, 0);
            let count = slot[0].load(Ordering::Acquire) as usize;
            let ids: Vec<u32> = slot[1..=count]
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect();
            if ids.contains(&r) {
                continue;
            }
            if count < cap {
                slot[count + 1].store(r, Ordering::Relaxed);
                slot[0].store(count as u32 + 1, Ordering::Release);
                continue;
            }
            let e_row = vectors.row_f32(e as usize);
            let farthest = with_scratch(|s| {
                ids.iter()
                    .enumerate()
                    .map(|(i, &o)| (i, dist(&vectors, &e_row, o, &mut s.pair_b)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(i, _)| i)
            });
            if let Some(i) = farthest {
                slot[i + 1].store(r, Ordering::Relaxed);
                self.pruned[ids[i] as usize].store(true, Ordering::Relaxed);
            }
        }
    }
}
