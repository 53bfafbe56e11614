//! The order in which a merge considers its candidates: fixed by the merge (nearest first,
//! round by round, or by mean distance), or built as it goes by maximal marginal relevance
//! (MMR), which trades nearness to the failures against distance from the items already
//! taken, so a budget is not spent on one tight clump of near-copies.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::rules::Diversity;
use super::Merge;
use crate::index::distance::l2_squared_rows;
use crate::types::{Neighbor, RowId};

/// Hands out (error sample, 0-based rank) positions in the order the merge takes them.
pub(super) struct Picker<'a> {
    /// The merge's own order.
    order: Vec<(usize, usize)>,
    /// Next position of `order` (fixed order, and MMR until something is taken).
    cursor: usize,
    /// Positions already handed out (MMR hands them out of order).
    handed: Vec<bool>,
    mmr: Option<Mmr<'a>>,
}

/// MMR, picked lazily: a position's score only falls as items are taken (its distance to
/// the nearest taken item can only shrink), so a score computed earlier bounds it from
/// above. The heap holds those bounds; the top is brought up to date against the items taken
/// since, and handed out when it still beats the next bound. Most candidates are never
/// brought up to date against most items, where the plain loop measured every pair.
struct Mmr<'a> {
    lambda: f32,
    /// Relevance (ℓ2 to the failures: smaller is more relevant) and distinct-row index of
    /// each position of the merge's order.
    relevance: Vec<f32>,
    row_of: Vec<usize>,
    /// Per distinct row: its vector, its ℓ2 to the nearest item taken among the first
    /// `folded` taken (of those with a vector), and that count.
    vectors: Vec<Option<&'a [f32]>>,
    spread: Vec<f32>,
    folded: Vec<usize>,
    /// Distinct-row index of each candidate row.
    index: HashMap<RowId, usize>,
    /// Vectors of the items taken, in order, one after another (copied, so that a fold reads
    /// them as one block), their width, and how many were taken in all.
    taken_rows: Vec<f32>,
    dim: usize,
    taken: usize,
    /// Distances from one row to a block of taken rows.
    scratch: Vec<f32>,
    bounds: BinaryHeap<Bound>,
}

/// An upper bound on a position's score; the heap's top is the highest, ties to the earlier
/// position of the merge's order.
#[derive(Clone, Copy, PartialEq)]
struct Bound {
    score: f32,
    position: usize,
}

impl Eq for Bound {}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.position.cmp(&self.position))
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
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
            let mut index: HashMap<RowId, usize> = HashMap::new();
            let mut vectors = Vec::new();
            let mut row_of = Vec::with_capacity(order.len());
            let mut relevance = Vec::with_capacity(order.len());
            for &(e, r) in &order {
                let n = lists[e][r];
                let next = index.len();
                let u = *index.entry(n.id).or_insert(next);
                if u == vectors.len() {
                    vectors.push(d.vectors.get(&n.id).map(Vec::as_slice));
                }
                row_of.push(u);
                let squared = match (merge, mean_distance) {
                    (Merge::Mean, Some(m)) => m.get(&n.id).copied().unwrap_or(f32::INFINITY),
                    _ => n.distance,
                };
                relevance.push(squared.max(0.0).sqrt());
            }
            Mmr {
                lambda: d.lambda,
                spread: vec![f32::INFINITY; vectors.len()],
                folded: vec![0; vectors.len()],
                dim: vectors.iter().flatten().next().map_or(0, |v| v.len()),
                vectors,
                relevance,
                row_of,
                index,
                taken_rows: Vec::new(),
                taken: 0,
                scratch: Vec::new(),
                bounds: BinaryHeap::new(),
            }
        });
        Picker {
            handed: vec![false; order.len()],
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
            if let Some(v) = m.index.get(&row).and_then(|&u| m.vectors[u]) {
                m.taken_rows.extend_from_slice(v);
            }
            m.taken += 1;
        }
    }

    /// Tells the picker the set is full: what comes next can no longer join it, so its
    /// order no longer matters and the rest is handed out in the merge's own order.
    pub(super) fn set_full(&mut self) {
        self.mmr = None;
    }

    /// The next position to consider, or None when every position was handed out.
    pub(super) fn next_position(&mut self) -> Option<(usize, usize)> {
        let pick = match &mut self.mmr {
            // Nothing taken yet: every row is infinitely far from the set, so relevance
            // decides, as in the merge's own order.
            Some(m) if m.taken > 0 => m.best(&self.handed)?,
            _ => {
                let i = (self.cursor..self.order.len()).find(|&i| !self.handed[i])?;
                self.cursor = i + 1;
                i
            }
        };
        self.handed[pick] = true;
        self.order.get(pick).copied()
    }
}

impl Mmr<'_> {
    /// The position's score with its row's spread brought up to date.
    fn score(&mut self, position: usize) -> f32 {
        let u = self.row_of[position];
        let count = self.taken_rows.len() / self.dim.max(1);
        if self.folded[u] < count {
            if let Some(v) = self.vectors[u] {
                let from = self.folded[u];
                self.scratch.resize(count - from, 0.0);
                l2_squared_rows(
                    v,
                    &self.taken_rows[from * self.dim..count * self.dim],
                    &mut self.scratch,
                );
                let nearest = self.scratch.iter().copied().fold(f32::INFINITY, f32::min);
                self.spread[u] = self.spread[u].min(nearest.max(0.0).sqrt());
            }
            self.folded[u] = count;
        }
        (1.0 - self.lambda) * self.spread[u] - self.lambda * self.relevance[position]
    }

    /// The position not yet handed out with the highest MMR score.
    fn best(&mut self, handed: &[bool]) -> Option<usize> {
        if self.bounds.is_empty() {
            // First call after the first item was taken: every position's score, once.
            for (p, &done) in handed.iter().enumerate() {
                if !done {
                    let score = self.score(p);
                    self.bounds.push(Bound { score, position: p });
                }
            }
        }
        while let Some(top) = self.bounds.pop() {
            if handed[top.position] {
                continue;
            }
            let score = self.score(top.position);
            let current = Bound {
                score,
                position: top.position,
            };
            if self.bounds.peek().is_none_or(|next| current >= *next) {
                return Some(top.position);
            }
            self.bounds.push(current);
        }
        None
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
