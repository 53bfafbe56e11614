//! The order in which a merge considers its candidates: fixed by the merge (nearest first,
//! round by round, or by mean distance), or built as it goes by maximal marginal relevance
//! (MMR), which trades nearness to the failures against distance from the items already
//! taken, so a budget is not spent on one tight clump of near-copies.

use std::collections::HashMap;

use super::rules::Diversity;
use super::Merge;
use crate::types::{Neighbor, RowId};

/// Hands out (error sample, 0-based rank) positions in the order the merge takes them.
pub(super) struct Picker<'a> {
    /// The merge's own order.
    order: Vec<(usize, usize)>,
    /// Next position of `order` (fixed order only).
    cursor: usize,
    mmr: Option<Mmr<'a>>,
}

/// MMR state: each position's relevance, and each row's distance to the items taken.
struct Mmr<'a> {
    lambda: f32,
    distance: &'a dyn Fn(RowId, RowId) -> f32,
    /// Row and relevance (ℓ2 to the failures: smaller is more relevant) of each position
    /// of the merge's order.
    rows: Vec<RowId>,
    relevance: Vec<f32>,
    handed: Vec<bool>,
    /// ℓ2 distance of each candidate row to the nearest row taken so far.
    spread: HashMap<RowId, f32>,
    /// Rows taken since the spreads were last brought up to date.
    pending: Vec<RowId>,
    taken_any: bool,
}

impl<'a> Picker<'a> {
    /// The order for `merge` over `lists` (already cut at the distance cap); with
    /// `diversity`, positions are handed out by MMR instead (relevance as the merge ranks:
    /// the finder's distance, or the mean distance for `Merge::Mean`).
    pub(super) fn new(
        lists: &[&[Neighbor]],
        merge: Merge,
        mean_distance: Option<&HashMap<RowId, f32>>,
        diversity: Option<Diversity<'a>>,
    ) -> Self {
        let order = selection_order(lists, merge, mean_distance);
        let mmr = diversity.map(|d| {
            let rows: Vec<RowId> = order.iter().map(|&(e, r)| lists[e][r].id).collect();
            let relevance = order
                .iter()
                .map(|&(e, r)| {
                    let n = lists[e][r];
                    let squared = match (merge, mean_distance) {
                        (Merge::Mean, Some(m)) => m.get(&n.id).copied().unwrap_or(f32::INFINITY),
                        _ => n.distance,
                    };
                    squared.max(0.0).sqrt()
                })
                .collect();
            let spread = rows.iter().map(|&r| (r, f32::INFINITY)).collect();
            Mmr {
                lambda: d.lambda,
                distance: d.distance,
                handed: vec![false; rows.len()],
                rows,
                relevance,
                spread,
                pending: Vec::new(),
                taken_any: false,
            }
        });
        Picker {
            order,
            cursor: 0,
            mmr,
        }
    }

    /// The merge's own order, whatever the picker hands out.
    pub(super) fn merge_order(&self) -> &[(usize, usize)] {
        &self.order
    }

    /// Tells the picker `row` joined the set.
    pub(super) fn taken(&mut self, row: RowId) {
        if let Some(m) = &mut self.mmr {
            m.pending.push(row);
            m.taken_any = true;
        }
    }

    /// The next position to consider, or None when every position was handed out.
    pub(super) fn next_position(&mut self) -> Option<(usize, usize)> {
        let Some(m) = &mut self.mmr else {
            let next = self.order.get(self.cursor).copied();
            self.cursor += 1;
            return next;
        };
        let pick = if m.taken_any {
            m.update_spread();
            m.best()
        } else {
            // Nothing taken yet: every row is infinitely far from the set, so relevance decides.
            m.handed.iter().position(|h| !h)
        }?;
        m.handed[pick] = true;
        Some(self.order[pick])
    }
}

impl Mmr<'_> {
    fn update_spread(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for (row, spread) in self.spread.iter_mut() {
            for &taken in &pending {
                let d = (self.distance)(taken, *row).max(0.0).sqrt();
                if d < *spread {
                    *spread = d;
                }
            }
        }
    }

    /// The position not yet handed out with the highest MMR score; ties go to the earlier
    /// position of the merge's order.
    fn best(&self) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &handed) in self.handed.iter().enumerate() {
            if handed {
                continue;
            }
            let spread = self.spread[&self.rows[i]];
            let score = (1.0 - self.lambda) * spread - self.lambda * self.relevance[i];
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// (error sample, 0-based rank) pairs in the order the merge takes them.
fn selection_order(
    lists: &[&[Neighbor]],
    merge: Merge,
    mean_distance: Option<&HashMap<RowId, f32>>,
) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize)> = Vec::new();
    match merge {
        Merge::RoundRobin => {
            let depth = lists.iter().map(|l| l.len()).max().unwrap_or(0);
            for rank in 0..depth {
                for (error, list) in lists.iter().enumerate() {
                    if rank < list.len() {
                        order.push((error, rank));
                    }
                }
            }
        }
        Merge::Mean if mean_distance.is_some() => {
            let mean = mean_distance.expect("checked");
            let score = |id: RowId| mean.get(&id).copied().unwrap_or(f32::INFINITY);
            for (error, list) in lists.iter().enumerate() {
                order.extend((0..list.len()).map(|rank| (error, rank)));
            }
            // Lowest mean first; ties by row id, then by error sample, so the order is total.
            order.sort_by(|&(ea, ra), &(eb, rb)| {
                let (a, b) = (lists[ea][ra].id, lists[eb][rb].id);
                score(a)
                    .total_cmp(&score(b))
                    .then(a.cmp(&b))
                    .then(ea.cmp(&eb))
            });
        }
        Merge::Union | Merge::GlobalTop | Merge::Mean => {
            for (error, list) in lists.iter().enumerate() {
                order.extend((0..list.len()).map(|rank| (error, rank)));
            }
            // Nearest first; ties by row id, then by error sample, so the order is total.
            order.sort_by(|&(ea, ra), &(eb, rb)| {
                lists[ea][ra].rank_cmp(&lists[eb][rb]).then(ea.cmp(&eb))
            });
        }
    }
    order
}
