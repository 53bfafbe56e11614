//! Merging per-error-sample neighbour lists into one debug-train set.

use std::collections::HashMap;

use super::{Merge, MergeParams};
use crate::types::{Neighbor, RowId};

/// One error sample finding a row.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// Index of the error sample in the request.
    pub error: usize,
    /// 1-based rank of the row in that sample's neighbour list.
    pub rank: usize,
    /// Squared ℓ2 distance between the two.
    pub distance: f32,
}

/// A row of the debug-train set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DebugEntry {
    /// Pool row.
    pub row: RowId,
    /// Smallest distance to any error sample that found it.
    pub best_distance: f32,
    /// How many error samples found it (within their lists and the distance cap).
    pub support: usize,
    /// Every error sample whose list holds the row (with `keep_duplicates`: just one).
    pub found_by: Vec<Finding>,
}

/// What the set does for one error sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Coverage {
    /// Neighbours found within the distance cap, before merging.
    pub found: usize,
    /// Entries of the set this sample found.
    pub kept: usize,
    /// Distance to its nearest neighbour, if it has any.
    pub nearest: Option<f32>,
}

/// The merged set, in the merge's order, with per-sample coverage.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Assembled {
    /// Entries: by best distance for union/global_top, by selection round for round_robin.
    pub entries: Vec<DebugEntry>,
    /// One per error sample, in request order.
    pub coverage: Vec<Coverage>,
}

/// Merges `lists` (one per error sample, best first) under `params`. Each list is used up to
/// its length, so callers search each sample `params.search_depth(k)` deep.
pub fn assemble(lists: &[Vec<Neighbor>], params: &MergeParams) -> Assembled {
    let cap = params.max_distance.unwrap_or(f32::INFINITY);
    let lists: Vec<&[Neighbor]> = lists
        .iter()
        .map(|l| {
            let within = l.iter().take_while(|n| n.distance <= cap).count();
            &l[..within]
        })
        .collect();
    // Every finding of every row, so an entry lists all samples that found it, even those
    // whose turn came after the budget ran out.
    let mut findings: HashMap<RowId, Vec<Finding>> = HashMap::new();
    for (error, list) in lists.iter().enumerate() {
        for (i, n) in list.iter().enumerate() {
            findings.entry(n.id).or_default().push(Finding {
                error,
                rank: i + 1,
                distance: n.distance,
            });
        }
    }
    let order = selection_order(&lists, params.merge);
    let budget = params.budget.unwrap_or(usize::MAX);
    let min_support = params.min_support.max(1);
    let mut entries = Vec::new();
    let mut taken: HashMap<(RowId, Option<usize>), ()> = HashMap::new();
    for (error, rank) in order {
        if entries.len() >= budget {
            break;
        }
        let n = lists[error][rank];
        let support = findings[&n.id].len();
        if support < min_support {
            continue;
        }
        let key = (n.id, params.keep_duplicates.then_some(error));
        if taken.insert(key, ()).is_some() {
            continue;
        }
        let entry = if params.keep_duplicates {
            DebugEntry {
                row: n.id,
                best_distance: n.distance,
                support,
                found_by: vec![Finding {
                    error,
                    rank: rank + 1,
                    distance: n.distance,
                }],
            }
        } else {
            let found_by = findings[&n.id].clone();
            let best = found_by
                .iter()
                .map(|f| f.distance)
                .fold(f32::INFINITY, f32::min);
            DebugEntry {
                row: n.id,
                best_distance: best,
                support,
                found_by,
            }
        };
        entries.push(entry);
    }
    let mut coverage: Vec<Coverage> = lists
        .iter()
        .map(|l| Coverage {
            found: l.len(),
            kept: 0,
            nearest: l.first().map(|n| n.distance),
        })
        .collect();
    for e in &entries {
        for f in &e.found_by {
            coverage[f.error].kept += 1;
        }
    }
    Assembled { entries, coverage }
}

/// (error sample, 0-based rank) pairs in the order the merge takes them.
fn selection_order(lists: &[&[Neighbor]], merge: Merge) -> Vec<(usize, usize)> {
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
        Merge::Union | Merge::GlobalTop => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: RowId, distance: f32) -> Neighbor {
        Neighbor { id, distance }
    }

    fn params(merge: Merge, budget: Option<usize>) -> MergeParams {
        MergeParams {
            merge,
            budget,
            max_distance: None,
            keep_duplicates: false,
            min_support: 1,
        }
    }

    fn rows(a: &Assembled) -> Vec<RowId> {
        a.entries.iter().map(|e| e.row).collect()
    }

    #[test]
    fn union_dedupes_and_records_every_finder() {
        let lists = vec![vec![n(1, 0.1), n(2, 0.5)], vec![n(2, 0.2), n(3, 0.9)]];
        let a = assemble(&lists, &params(Merge::Union, None));
        assert_eq!(rows(&a), vec![1, 2, 3]);
        let two = &a.entries[1];
        assert_eq!(two.best_distance, 0.2);
        assert_eq!(
            two.found_by,
            vec![
                Finding {
                    error: 0,
                    rank: 2,
                    distance: 0.5
                },
                Finding {
                    error: 1,
                    rank: 1,
                    distance: 0.2
                }
            ]
        );
        assert_eq!(a.coverage[0].kept, 2);
        assert_eq!(a.coverage[1].kept, 2);
        assert_eq!(a.coverage[1].nearest, Some(0.2));
    }

    #[test]
    fn round_robin_gives_each_sample_its_share() {
        // Sample 0 has everything closer; global order would take only its rows.
        let lists = vec![
            vec![n(1, 0.1), n(2, 0.2), n(3, 0.3)],
            vec![n(7, 5.0), n(8, 6.0), n(9, 7.0)],
        ];
        let rr = assemble(&lists, &params(Merge::RoundRobin, Some(4)));
        assert_eq!(rows(&rr), vec![1, 7, 2, 8]);
        let top = assemble(&lists, &params(Merge::GlobalTop, Some(4)));
        assert_eq!(rows(&top), vec![1, 2, 3, 7]);
        assert_eq!(top.coverage[1].kept, 1);
    }

    #[test]
    fn round_robin_skips_rows_taken_and_keeps_going() {
        let lists = vec![vec![n(1, 0.1), n(2, 0.2)], vec![n(1, 0.3), n(5, 0.4)]];
        let a = assemble(&lists, &params(Merge::RoundRobin, Some(3)));
        assert_eq!(rows(&a), vec![1, 2, 5]);
        assert_eq!(a.entries[0].found_by.len(), 2);
    }

    #[test]
    fn distance_cap_and_budget() {
        let lists = vec![vec![n(1, 0.1), n(2, 0.5), n(3, 2.0)]];
        let mut p = params(Merge::Union, Some(1));
        p.max_distance = Some(1.0);
        let a = assemble(&lists, &p);
        assert_eq!(rows(&a), vec![1]);
        assert_eq!(a.coverage[0].found, 2);
        p.budget = None;
        assert_eq!(rows(&assemble(&lists, &p)), vec![1, 2]);
    }

    #[test]
    fn keep_duplicates_lists_a_row_per_finder() {
        let lists = vec![vec![n(4, 0.1)], vec![n(4, 0.3)]];
        let mut p = params(Merge::Union, None);
        p.keep_duplicates = true;
        let a = assemble(&lists, &p);
        assert_eq!(rows(&a), vec![4, 4]);
        assert_eq!(a.entries[1].found_by[0].error, 1);
        assert_eq!(a.entries[1].best_distance, 0.3);
    }

    #[test]
    fn min_support_keeps_rows_several_samples_found() {
        // Row 2 is found by all three samples, row 3 by two, the rest by one.
        let lists = vec![
            vec![n(1, 0.1), n(2, 0.2), n(3, 0.3)],
            vec![n(2, 0.4), n(3, 0.5), n(4, 0.6)],
            vec![n(5, 0.1), n(2, 0.9)],
        ];
        for merge in [Merge::Union, Merge::RoundRobin, Merge::GlobalTop] {
            let mut p = params(merge, None);
            p.min_support = 2;
            let a = assemble(&lists, &p);
            let mut got = rows(&a);
            got.sort();
            assert_eq!(got, vec![2, 3], "{merge}");
            let two = a.entries.iter().find(|e| e.row == 2).unwrap();
            assert_eq!(two.support, 3);
            assert_eq!(a.coverage[2].found, 2);
            assert_eq!(a.coverage[2].kept, 1);
            p.min_support = 3;
            assert_eq!(rows(&assemble(&lists, &p)), vec![2], "{merge}");
        }
        // The budget counts rows that passed, not rows looked at.
        let mut p = params(Merge::Union, Some(1));
        p.min_support = 2;
        assert_eq!(rows(&assemble(&lists, &p)), vec![2]);
        // With duplicates listed, each finder's line carries the row's whole support.
        p.keep_duplicates = true;
        p.budget = None;
        let a = assemble(&lists, &p);
        assert!(a.entries.iter().all(|e| e.support >= 2));
        assert_eq!(a.entries.iter().filter(|e| e.row == 2).count(), 3);
    }

    #[test]
    fn empty_lists_give_an_empty_set_with_coverage() {
        let a = assemble(&[vec![], vec![]], &params(Merge::Union, None));
        assert!(a.entries.is_empty());
        assert_eq!(a.coverage.len(), 2);
        assert_eq!(a.coverage[0].nearest, None);
    }
}
