//! Merging per-error-sample neighbour lists into one debug-train set.

use std::collections::HashMap;

use super::labels::{judge, LabelVerdict};
use super::rules::{Collision, Rules, Veto};
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
    /// What the label vote said of its weak label.
    pub labels: LabelVerdict,
}

/// Why candidates did not make the set: distinct rows removed by each rule, in the order the
/// rules apply. Each candidate is counted once, under the first rule it failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Funnel {
    /// Rows the searches returned.
    pub candidates: usize,
    /// Beyond the distance cap.
    pub distance_cap: usize,
    /// Nearer to a negative than to the error samples.
    pub negatives: usize,
    /// Found by fewer than `min_support` error samples.
    pub min_support: usize,
    /// Removed by the label policy.
    pub label_policy: usize,
    /// Within `dedup_distance` of a row already in the set.
    pub dedup: usize,
    /// Within the holdout radius of a held-out item.
    pub holdout: usize,
    /// Passed every rule, but the budget was spent.
    pub budget: usize,
    /// In the set.
    pub kept: usize,
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
    /// Where the rows of its own list went.
    pub funnel: Funnel,
}

/// The merged set, in the merge's order, with per-sample coverage.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Assembled {
    /// Entries: by best distance for union/global_top, by selection round for round_robin.
    pub entries: Vec<DebugEntry>,
    /// One per error sample, in request order.
    pub coverage: Vec<Coverage>,
    /// Where the candidates went, over all error samples.
    pub funnel: Funnel,
    /// Candidates the negatives removed, in the merge's order.
    pub vetoes: Vec<Veto>,
    /// Candidates the holdout removed, in the merge's order.
    pub collisions: Vec<Collision>,
}

/// The first rule a row failed, or where it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    DistanceCap,
    Negative,
    MinSupport,
    LabelPolicy,
    Duplicate,
    Holdout,
    Budget,
    Kept,
}

/// Merges `lists` (one per error sample, best first) under `params` and `rules`. Each list
/// is used up to its length, so callers search each sample `params.search_depth(k)` deep.
pub fn assemble(lists: &[Vec<Neighbor>], params: &MergeParams, rules: &Rules<'_>) -> Assembled {
    let cap = params.max_distance.unwrap_or(f32::INFINITY);
    let capped: Vec<&[Neighbor]> = lists
        .iter()
        .map(|l| {
            let within = l.iter().take_while(|n| n.distance <= cap).count();
            &l[..within]
        })
        .collect();
    // Every finding of every row, so an entry lists all samples that found it, even those
    // whose turn came after the budget ran out.
    let mut findings: HashMap<RowId, Vec<Finding>> = HashMap::new();
    for (error, list) in capped.iter().enumerate() {
        for (i, n) in list.iter().enumerate() {
            findings.entry(n.id).or_default().push(Finding {
                error,
                rank: i + 1,
                distance: n.distance,
            });
        }
    }
    let mut outcome: HashMap<RowId, Outcome> = HashMap::new();
    let mut verdicts: HashMap<RowId, LabelVerdict> = HashMap::new();
    let order = selection_order(&capped, params.merge, rules.mean_distance);
    let budget = params.budget.unwrap_or(usize::MAX);
    let min_support = params.min_support.max(1);
    let mut entries = Vec::new();
    let mut vetoes = Vec::new();
    let mut collisions = Vec::new();
    let mut kept_rows: Vec<RowId> = Vec::new();
    let mut taken: HashMap<(RowId, Option<usize>), ()> = HashMap::new();
    for (error, rank) in order {
        let n = capped[error][rank];
        if let Some(
            Outcome::Negative
            | Outcome::MinSupport
            | Outcome::LabelPolicy
            | Outcome::Duplicate
            | Outcome::Holdout,
        ) = outcome.get(&n.id)
        {
            continue;
        }
        let nearest_error = findings[&n.id]
            .iter()
            .map(|f| f.distance)
            .fold(f32::INFINITY, f32::min);
        if let Some(neg) = &rules.negatives {
            if let Some(hit) = neg.nearest.get(&n.id) {
                if hit.distance < neg.margin * nearest_error {
                    outcome.insert(n.id, Outcome::Negative);
                    vetoes.push(Veto {
                        row: n.id,
                        distance: nearest_error,
                        negative: *hit,
                    });
                    continue;
                }
            }
        }
        let support = findings[&n.id].len();
        let verdict = verdicts.entry(n.id).or_insert_with(|| match &rules.labels {
            Some(t) => judge(
                t.policy,
                t.weak.get(&n.id).and_then(|l| l.as_deref()),
                &findings[&n.id],
                t.errors,
            ),
            None => LabelVerdict {
                keep: true,
                ..Default::default()
            },
        });
        if support < min_support {
            outcome.insert(n.id, Outcome::MinSupport);
            continue;
        }
        if !verdict.keep {
            outcome.insert(n.id, Outcome::LabelPolicy);
            continue;
        }
        if let Some(d) = &rules.dedup {
            // A row already in the set (listed again for another finder) is no duplicate
            // of itself; the merge's order puts the nearest first, so the nearest is kept.
            if outcome.get(&n.id) != Some(&Outcome::Kept)
                && kept_rows.iter().any(|&k| (d.distance)(k, n.id) <= d.radius)
            {
                outcome.insert(n.id, Outcome::Duplicate);
                continue;
            }
        }
        if let Some(h) = &rules.holdout {
            if let Some(hit) = h.nearest.get(&n.id) {
                if hit.distance <= h.radius {
                    outcome.insert(n.id, Outcome::Holdout);
                    collisions.push(Collision {
                        row: n.id,
                        held_out: *hit,
                    });
                    continue;
                }
            }
        }
        if entries.len() >= budget {
            outcome.entry(n.id).or_insert(Outcome::Budget);
            continue;
        }
        let key = (n.id, params.keep_duplicates.then_some(error));
        if taken.insert(key, ()).is_some() {
            continue;
        }
        if outcome.insert(n.id, Outcome::Kept) != Some(Outcome::Kept) {
            kept_rows.push(n.id);
        }
        let found_by = if params.keep_duplicates {
            vec![Finding {
                error,
                rank: rank + 1,
                distance: n.distance,
            }]
        } else {
            findings[&n.id].clone()
        };
        let best_distance = found_by
            .iter()
            .map(|f| f.distance)
            .fold(f32::INFINITY, f32::min);
        entries.push(DebugEntry {
            row: n.id,
            best_distance,
            support,
            found_by,
            labels: verdict.clone(),
        });
    }
    let mut funnel = Funnel::default();
    let mut coverage: Vec<Coverage> = Vec::with_capacity(lists.len());
    let mut seen: HashMap<RowId, ()> = HashMap::new();
    for (list, within) in lists.iter().zip(&capped) {
        let mut own = Funnel::default();
        for n in list.iter() {
            let o = outcome.get(&n.id).copied().unwrap_or(Outcome::DistanceCap);
            own.count(o);
            if seen.insert(n.id, ()).is_none() {
                funnel.count(o);
            }
        }
        coverage.push(Coverage {
            found: within.len(),
            kept: 0,
            nearest: within.first().map(|n| n.distance),
            funnel: own,
        });
    }
    for e in &entries {
        for f in &e.found_by {
            coverage[f.error].kept += 1;
        }
    }
    Assembled {
        entries,
        coverage,
        funnel,
        vetoes,
        collisions,
    }
}

impl Funnel {
    fn count(&mut self, o: Outcome) {
        self.candidates += 1;
        match o {
            Outcome::DistanceCap => self.distance_cap += 1,
            Outcome::Negative => self.negatives += 1,
            Outcome::MinSupport => self.min_support += 1,
            Outcome::LabelPolicy => self.label_policy += 1,
            Outcome::Duplicate => self.dedup += 1,
            Outcome::Holdout => self.holdout += 1,
            Outcome::Budget => self.budget += 1,
            Outcome::Kept => self.kept += 1,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debugset::labels::{ErrorLabel, LabelPolicy};
    use crate::debugset::rules::{Dedup, Holdout, ItemRef, LabelTrust, NearestItem, Negatives};

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
        let a = assemble(&lists, &params(Merge::Union, None), &Rules::default());
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
        let rr = assemble(
            &lists,
            &params(Merge::RoundRobin, Some(4)),
            &Rules::default(),
        );
        assert_eq!(rows(&rr), vec![1, 7, 2, 8]);
        let top = assemble(
            &lists,
            &params(Merge::GlobalTop, Some(4)),
            &Rules::default(),
        );
        assert_eq!(rows(&top), vec![1, 2, 3, 7]);
        assert_eq!(top.coverage[1].kept, 1);
    }

    #[test]
    fn round_robin_skips_rows_taken_and_keeps_going() {
        let lists = vec![vec![n(1, 0.1), n(2, 0.2)], vec![n(1, 0.3), n(5, 0.4)]];
        let a = assemble(
            &lists,
            &params(Merge::RoundRobin, Some(3)),
            &Rules::default(),
        );
        assert_eq!(rows(&a), vec![1, 2, 5]);
        assert_eq!(a.entries[0].found_by.len(), 2);
    }

    #[test]
    fn distance_cap_and_budget() {
        let lists = vec![vec![n(1, 0.1), n(2, 0.5), n(3, 2.0)]];
        let mut p = params(Merge::Union, Some(1));
        p.max_distance = Some(1.0);
        let a = assemble(&lists, &p, &Rules::default());
        assert_eq!(rows(&a), vec![1]);
        assert_eq!(a.coverage[0].found, 2);
        p.budget = None;
        assert_eq!(rows(&assemble(&lists, &p, &Rules::default())), vec![1, 2]);
    }

    #[test]
    fn keep_duplicates_lists_a_row_per_finder() {
        let lists = vec![vec![n(4, 0.1)], vec![n(4, 0.3)]];
        let mut p = params(Merge::Union, None);
        p.keep_duplicates = true;
        let a = assemble(&lists, &p, &Rules::default());
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
            let a = assemble(&lists, &p, &Rules::default());
            let mut got = rows(&a);
            got.sort();
            assert_eq!(got, vec![2, 3], "{merge}");
            let two = a.entries.iter().find(|e| e.row == 2).unwrap();
            assert_eq!(two.support, 3);
            assert_eq!(a.coverage[2].found, 2);
            assert_eq!(a.coverage[2].kept, 1);
            p.min_support = 3;
            assert_eq!(
                rows(&assemble(&lists, &p, &Rules::default())),
                vec![2],
                "{merge}"
            );
        }
        // The budget counts rows that passed, not rows looked at.
        let mut p = params(Merge::Union, Some(1));
        p.min_support = 2;
        assert_eq!(rows(&assemble(&lists, &p, &Rules::default())), vec![2]);
        // With duplicates listed, each finder's line carries the row's whole support.
        p.keep_duplicates = true;
        p.budget = None;
        let a = assemble(&lists, &p, &Rules::default());
        assert!(a.entries.iter().all(|e| e.support >= 2));
        assert_eq!(a.entries.iter().filter(|e| e.row == 2).count(), 3);
    }

    #[test]
    fn label_policy_drops_rows_the_vote_does_not_support() {
        // Sample 0 is a "3", sample 1 a "5"; row 2 is weakly "3" but nearer sample 1.
        let lists = vec![vec![n(1, 0.1), n(2, 0.9)], vec![n(2, 0.1), n(4, 0.2)]];
        let errors = vec![
            ErrorLabel {
                label: Some("3".into()),
                weight: 1.0,
            },
            ErrorLabel {
                label: Some("5".into()),
                weight: 1.0,
            },
        ];
        let weak: HashMap<RowId, Option<String>> = [
            (1, Some("3".to_owned())),
            (2, Some("3".to_owned())),
            (4, None),
        ]
        .into_iter()
        .collect();
        let trust = LabelTrust {
            policy: LabelPolicy::Drop,
            errors: &errors,
            weak: &weak,
        };
        let a = assemble(
            &lists,
            &params(Merge::Union, None),
            &Rules {
                labels: Some(trust),
                ..Default::default()
            },
        );
        assert_eq!(rows(&a), vec![1]);
        assert_eq!(a.entries[0].labels.weak_label_plausible, Some(true));
        assert_eq!(
            a.funnel,
            Funnel {
                candidates: 3,
                label_policy: 2,
                kept: 1,
                ..Default::default()
            }
        );
        assert_eq!(a.coverage[1].funnel.label_policy, 2);
        assert_eq!(a.coverage[1].kept, 0);
        // Keep reports the same vote and drops nothing.
        let keep = LabelTrust {
            policy: LabelPolicy::Keep,
            ..trust
        };
        let a = assemble(
            &lists,
            &params(Merge::Union, None),
            &Rules {
                labels: Some(keep),
                ..Default::default()
            },
        );
        assert_eq!(rows(&a), vec![1, 2, 4]);
        assert_eq!(a.entries[1].labels.weak_label_plausible, Some(false));
        // The budget counts rows that passed the policy.
        let a = assemble(
            &lists,
            &params(Merge::Union, Some(1)),
            &Rules {
                labels: Some(trust),
                ..Default::default()
            },
        );
        assert_eq!(rows(&a), vec![1]);
    }

    #[test]
    fn negatives_veto_candidates_nearer_to_them_than_to_the_failures() {
        let lists = vec![vec![n(1, 1.0), n(2, 2.0), n(3, 4.0)], vec![n(3, 3.0)]];
        let nearest: HashMap<RowId, NearestItem> = [
            // Nearer to the negative (0.5) than to its error sample (1.0): vetoed.
            (
                1,
                NearestItem {
                    item: ItemRef::Listed(0),
                    distance: 0.5,
                },
            ),
            // 2.5 vs 2.0: kept at margin 1, vetoed at margin 1.5.
            (
                2,
                NearestItem {
                    item: ItemRef::PoolRow(70),
                    distance: 2.5,
                },
            ),
            // Judged against its nearest error sample (3.0, not 4.0): kept at margin 1.5
            // (5.0 > 4.5), where 4.0 would have vetoed it.
            (
                3,
                NearestItem {
                    item: ItemRef::Listed(1),
                    distance: 5.0,
                },
            ),
        ]
        .into_iter()
        .collect();
        let rules = |margin| Rules {
            negatives: Some(Negatives {
                nearest: &nearest,
                margin,
            }),
            ..Default::default()
        };
        let a = assemble(&lists, &params(Merge::Union, None), &rules(1.0));
        assert_eq!(rows(&a), vec![2, 3]);
        assert_eq!(
            a.vetoes,
            vec![Veto {
                row: 1,
                distance: 1.0,
                negative: nearest[&1],
            }]
        );
        assert_eq!(a.funnel.negatives, 1);
        assert_eq!(a.coverage[0].funnel.negatives, 1);
        assert_eq!(a.coverage[1].funnel.negatives, 0);
        let a = assemble(&lists, &params(Merge::Union, None), &rules(1.5));
        assert_eq!(rows(&a), vec![3]);
        assert_eq!(a.vetoes.len(), 2);
        // A veto comes before the budget: the budget is spent on rows that passed.
        let a = assemble(&lists, &params(Merge::Union, Some(1)), &rules(1.0));
        assert_eq!(rows(&a), vec![2]);
        assert_eq!(a.funnel.budget, 1);
    }

    #[test]
    fn holdout_removes_candidates_within_its_radius_and_reports_each() {
        let lists = vec![vec![n(1, 1.0), n(2, 2.0), n(3, 3.0)]];
        let near = |row: RowId, distance: f32| NearestItem {
            item: ItemRef::PoolRow(row + 100),
            distance,
        };
        let nearest: HashMap<RowId, NearestItem> =
            [(1, near(1, 0.0)), (2, near(2, 0.5)), (3, near(3, 0.6))]
                .into_iter()
                .collect();
        let rules = |radius| Rules {
            holdout: Some(Holdout {
                nearest: &nearest,
                radius,
            }),
            ..Default::default()
        };
        let a = assemble(&lists, &params(Merge::Union, None), &rules(0.5));
        assert_eq!(rows(&a), vec![3]);
        assert_eq!(a.funnel.holdout, 2);
        assert_eq!(
            a.collisions,
            vec![
                Collision {
                    row: 1,
                    held_out: near(1, 0.0)
                },
                Collision {
                    row: 2,
                    held_out: near(2, 0.5)
                }
            ]
        );
        // Radius 0: only exact copies.
        let a = assemble(&lists, &params(Merge::Union, None), &rules(0.0));
        assert_eq!(rows(&a), vec![2, 3]);
        // A holdout that collides with everything: an empty set, and the funnel says why.
        let a = assemble(&lists, &params(Merge::Union, None), &rules(1.0));
        assert!(a.entries.is_empty());
        assert_eq!((a.funnel.candidates, a.funnel.holdout), (3, 3));
    }

    #[test]
    fn dedup_keeps_the_nearest_of_near_duplicates() {
        // Rows 1 and 2 are 0.1 apart, 3 is far from both; row 2 is found first by sample 1
        // but row 1 is nearer to its error sample.
        let lists = vec![vec![n(1, 0.5), n(3, 0.9)], vec![n(2, 0.7)]];
        let at = |r: RowId| match r {
            1 => 0.0,
            2 => 0.1,
            _ => 10.0,
        };
        let between = |a: RowId, b: RowId| {
            let d: f32 = at(a) - at(b);
            d * d
        };
        let rules = |radius| Rules {
            dedup: Some(Dedup {
                radius,
                distance: &between,
            }),
            ..Default::default()
        };
        let a = assemble(&lists, &params(Merge::Union, None), &rules(0.05));
        assert_eq!(rows(&a), vec![1, 3]);
        assert_eq!(a.funnel.dedup, 1);
        assert_eq!(a.coverage[1].funnel.dedup, 1);
        // Under the radius nothing is a duplicate.
        let a = assemble(&lists, &params(Merge::Union, None), &rules(0.001));
        assert_eq!(rows(&a), vec![1, 2, 3]);
        // A row listed once per finder is not a duplicate of itself.
        let mut p = params(Merge::Union, None);
        p.keep_duplicates = true;
        let both = vec![vec![n(1, 0.5)], vec![n(1, 0.6)]];
        assert_eq!(rows(&assemble(&both, &p, &rules(0.05))), vec![1, 1]);
    }

    #[test]
    fn mean_ranks_rows_near_many_failures_first() {
        // Row 9 is the nearest to sample 0 but far from the other two; row 5 is found by
        // sample 1 only, yet sits near all three.
        let lists = vec![vec![n(9, 0.1), n(4, 1.0)], vec![n(5, 0.5)], vec![n(4, 0.6)]];
        let mean: HashMap<RowId, f32> = [(9, 30.0), (4, 1.0), (5, 0.8)].into_iter().collect();
        let rules = Rules {
            mean_distance: Some(&mean),
            ..Default::default()
        };
        let a = assemble(&lists, &params(Merge::Mean, None), &rules);
        assert_eq!(rows(&a), vec![5, 4, 9]);
        assert_eq!(a.entries[1].best_distance, 0.6);
        let a = assemble(&lists, &params(Merge::Mean, Some(2)), &rules);
        assert_eq!(rows(&a), vec![5, 4]);
        assert_eq!(a.funnel.budget, 1);
        // Without the scores it falls back to nearest first.
        let a = assemble(&lists, &params(Merge::Mean, None), &Rules::default());
        assert_eq!(rows(&a), vec![9, 5, 4]);
    }

    #[test]
    fn funnel_counts_each_row_under_the_first_rule_it_failed() {
        let lists = vec![
            vec![n(1, 0.1), n(2, 0.2), n(3, 5.0)],
            vec![n(1, 0.3), n(2, 0.4), n(6, 0.5), n(7, 9.0)],
        ];
        let mut p = params(Merge::Union, Some(1));
        p.max_distance = Some(1.0);
        p.min_support = 2;
        let a = assemble(&lists, &p, &Rules::default());
        assert_eq!(rows(&a), vec![1]);
        assert_eq!(
            a.funnel,
            Funnel {
                candidates: 5,
                distance_cap: 2,
                negatives: 0,
                min_support: 1,
                label_policy: 0,
                dedup: 0,
                holdout: 0,
                budget: 1,
                kept: 1,
            }
        );
        assert_eq!(
            a.coverage[0].funnel,
            Funnel {
                candidates: 3,
                distance_cap: 1,
                budget: 1,
                kept: 1,
                ..Default::default()
            }
        );
        assert_eq!(a.coverage[1].funnel.candidates, 4);
        assert_eq!(a.coverage[1].funnel.min_support, 1);
    }

    #[test]
    fn empty_lists_give_an_empty_set_with_coverage() {
        let a = assemble(
            &[vec![], vec![]],
            &params(Merge::Union, None),
            &Rules::default(),
        );
        assert!(a.entries.is_empty());
        assert_eq!(a.coverage.len(), 2);
        assert_eq!(a.coverage[0].nearest, None);
    }
}
