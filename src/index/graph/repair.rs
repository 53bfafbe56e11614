//! Reachability repair. The neighbour heuristic can prune every in-link of a node, leaving a
//! point that no search reaches (hnsw_rs issue #32 reports this for parallel builds). After
//! each `extend`, every new row is searched for itself (a narrow beam first, the check beam
//! only for those it misses), and every node without a layer-0 in-link is found by a scan of
//! the link array; each lost row gets links from its nearest neighbours and is checked again,
//! with the neighbours those links displaced.

use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::search::{dist, with_scratch};
use super::HnswGraph;
use crate::types::VectorView;

/// Beam used to decide whether a row finds itself.
const CHECK_EF: usize = 64;
/// Cheap first beam: most rows are found with it, and only misses pay for `CHECK_EF`.
const QUICK_EF: usize = 16;
/// Nearest neighbours that receive a link to a lost row.
const LINKS_PER_REPAIR: usize = 2;
/// Check-and-link rounds before giving up (a round rarely leaves anything behind).
const ROUNDS: usize = 6;

impl HnswGraph {
    /// True when a search for row `r` returns it (or an identical row) at rank 1.
    pub(super) fn finds_itself(&self, vectors: VectorView<'_>, r: u32, ef: usize) -> bool {
        let q = vectors.row_f32(r as usize);
        let hits = self.knn(vectors, &q, 1, ef, None);
        hits.first().is_some_and(|h| h.id == r || h.distance == 0.0)
    }

    /// Layer-0 in-degree of every node.
    fn in_degrees(&self) -> Vec<u32> {
        let mut deg = vec![0u32; self.levels.len()];
        let w = self.m0() + 1;
        for group in self.links0.chunks_exact(w) {
            let count = (group[0].load(Ordering::Acquire) as usize).min(w - 1);
            for a in &group[1..=count] {
                deg[a.load(Ordering::Relaxed) as usize] += 1;
            }
        }
        deg
    }

    /// Nodes no other node links to on layer 0 (the entry point aside).
    fn orphans(&self, deg: &[u32]) -> Vec<u32> {
        let entry = self.entry().map(|e| e.node);
        (0..deg.len() as u32)
            .filter(|&r| deg[r as usize] == 0 && Some(r) != entry)
            .collect()
    }

    /// Finds the lost rows among `new_rows` and the orphans, links them in, and checks them
    /// again; returns rows still not found after a few rounds.
    pub(super) fn repair(
        &self,
        vectors: VectorView<'_>,
        new_rows: std::ops::Range<u32>,
    ) -> Vec<u32> {
        let ef = CHECK_EF.max(self.params.ef_search);
        let mut deg = self.in_degrees();
        let mut lost: Vec<u32> = new_rows
            .into_par_iter()
            .filter(|&r| {
                !self.finds_itself(vectors, r, QUICK_EF) && !self.finds_itself(vectors, r, ef)
            })
            .chain(self.orphans(&deg))
            .collect();
        lost.sort_unstable();
        lost.dedup();
        for _ in 0..ROUNDS {
            if lost.is_empty() {
                break;
            }
            tracing::debug!(rows = lost.len(), "linking in rows a search does not reach");
            // A full list that takes a lost row gives up a neighbour, which may then be lost
            // in turn: those are checked again with the rows just linked.
            let mut displaced = Vec::new();
            for &r in &lost {
                self.link_in(vectors, r, ef, &mut deg, &mut displaced);
            }
            lost.extend(displaced);
            lost.sort_unstable();
            lost.dedup();
            lost = lost
                .into_par_iter()
                .filter(|&r| !self.finds_itself(vectors, r, ef))
                .chain(self.orphans(&deg))
                .collect();
            lost.sort_unstable();
            lost.dedup();
        }
        lost
    }

    /// Adds `r` to the layer-0 lists of the best nodes a search for it returns with beam `ef`.
    /// Every node in a final beam was expanded, so the same search then meets `r`. A full list
    /// gives up its farthest neighbour among those with another in-link, so no node is
    /// orphaned; a list whose every neighbour hangs on it alone is skipped for the next hit.
    /// The neighbours given up are added to `displaced`.
    fn link_in(
        &self,
        vectors: VectorView<'_>,
        r: u32,
        ef: usize,
        deg: &mut [u32],
        displaced: &mut Vec<u32>,
    ) {
        let q = vectors.row_f32(r as usize);
        let hits = self.knn(vectors, &q, 2 * LINKS_PER_REPAIR + 1, ef, None);
        let cap = self.m0();
        let mut linked = 0;
        for h in hits.iter().filter(|h| h.id != r) {
            if linked == LINKS_PER_REPAIR {
                break;
            }
            let e = h.id;
            let _g = self.locks[e as usize].lock();
            let slot = self.slot(e, 0);
            let count = slot[0].load(Ordering::Acquire) as usize;
            let ids: Vec<u32> = slot[1..=count]
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect();
            if ids.contains(&r) {
                linked += 1;
                continue;
            }
            if count < cap {
                slot[count + 1].store(r, Ordering::Relaxed);
                slot[0].store(count as u32 + 1, Ordering::Release);
                deg[r as usize] += 1;
                linked += 1;
                continue;
            }
            let e_row = vectors.row_f32(e as usize);
            let farthest = with_scratch(|s| {
                ids.iter()
                    .enumerate()
                    .filter(|&(_, &o)| deg[o as usize] > 1)
                    .map(|(i, &o)| (i, dist(&vectors, &e_row, o, &mut s.pair_b)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(i, _)| i)
            });
            if let Some(i) = farthest {
                displaced.push(ids[i]);
                deg[ids[i] as usize] -= 1;
                deg[r as usize] += 1;
                slot[i + 1].store(r, Ordering::Relaxed);
                linked += 1;
            }
        }
    }
}
