//! Bounded top-k selection: keeps the k smallest (distance, id) pairs seen so far without
//! sorting whole rows. The worst kept pair sits at the root of a max-heap, so a candidate that
//! cannot enter costs one comparison.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::types::{Neighbor, RowId};

/// A (distance, id) pair ordered by distance, then id: the ranking used everywhere.
#[derive(Clone, Copy, Debug)]
pub struct Scored {
    /// Squared distance.
    pub dist: f32,
    /// Row id.
    pub id: RowId,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.id.cmp(&other.id))
    }
}

/// Keeps the `k` best pairs.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    /// An empty selection of capacity `k`.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers a pair; returns true if it was kept.
    #[inline]
    pub fn push(&mut self, dist: f32, id: RowId) -> bool {
        let s = Scored { dist, id };
        if self.heap.len() < self.k {
            self.heap.push(s);
            true
        } else if let Some(mut top) = self.heap.peek_mut() {
            if s < *top {
                *top = s;
                true
            } else {
                false
            }
        } else {
            false
        }
    }

    /// Distance a new pair must beat to enter (infinity until `k` pairs are held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |s| s.dist)
        }
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True when `k` pairs are held.
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// Moves every pair of `other` in.
    pub fn merge(&mut self, other: TopK) {
        for s in other.heap {
            self.push(s.dist, s.id);
        }
    }

    /// The kept pairs, best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }

    /// The kept pairs as neighbours, best first.
    pub fn into_neighbors(self) -> Vec<Neighbor> {
        self.into_sorted()
            .into_iter()
            .map(|s| Neighbor {
                id: s.id,
                distance: s.dist,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest_with_ties_by_id() {
        let mut t = TopK::new(3);
        for (d, id) in [(5.0, 1), (1.0, 9), (1.0, 2), (7.0, 3), (0.5, 4), (1.0, 1)] {
            t.push(d, id);
        }
        let ids: Vec<_> = t.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![4, 1, 2]);
    }
}
