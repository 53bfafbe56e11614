//! Tests of the merge and its rules.

use super::merge::*;
use super::{Merge, MergeParams, Rules};
use crate::debugset::labels::{ErrorLabel, LabelPolicy};
use crate::debugset::rules::{
    Collision, Dedup, Holdout, ItemRef, LabelTrust, NearestItem, Negatives, Veto,
};
use crate::types::{Neighbor, RowId};
use std::collections::HashMap;

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
        estimate: None,
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
    let vectors: HashMap<RowId, Vec<f32>> = [(1, vec![0.0]), (2, vec![0.1]), (3, vec![10.0])]
        .into_iter()
        .collect();
    let rules = |radius| Rules {
        dedup: Some(Dedup {
            radius,
            vectors: &vectors,
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
            gap: 0,
            min_support: 1,
            label_policy: 0,
            dedup: 0,
            holdout: 0,
            label_cap: 0,
            diversity: 0,
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

#[test]
fn the_gap_rule_and_an_estimate_apply_in_order() {
    // Rows 1, 2, 3 found by one sample; row 2 is too near the reference, row 3's weak
    // label is implausible by the estimate.
    let lists = vec![vec![n(1, 1.0), n(2, 2.0), n(3, 3.0)]];
    let percentile: HashMap<RowId, f32> = [(1, 0.9), (2, 0.1), (3, 0.8)].into_iter().collect();
    let weak: HashMap<RowId, Option<String>> = [
        (1, Some("a".to_owned())),
        (2, Some("a".to_owned())),
        (3, Some("a".to_owned())),
    ]
    .into_iter()
    .collect();
    let estimate = crate::debugset::LabelEstimates {
        classes: vec!["a".into(), "b".into()],
        probabilities: [
            (1, vec![0.7, 0.3]),
            (2, vec![0.7, 0.3]),
            (3, vec![0.2, 0.8]),
        ]
        .into_iter()
        .collect(),
    };
    let errors = vec![ErrorLabel::default()];
    let a = assemble(
        &lists,
        &params(Merge::Union, None),
        &Rules {
            gap: Some(crate::debugset::Gap {
                percentile: &percentile,
                min: 0.5,
            }),
            labels: Some(LabelTrust {
                policy: LabelPolicy::Drop,
                errors: &errors,
                weak: &weak,
                estimate: Some(&estimate),
            }),
            ..Default::default()
        },
    );
    assert_eq!(rows(&a), vec![1]);
    assert_eq!(a.entries[0].labels.label_confidence, Some(0.7));
    assert_eq!(
        a.funnel,
        Funnel {
            candidates: 3,
            gap: 1,
            label_policy: 1,
            kept: 1,
            ..Default::default()
        }
    );
    // A labelled error sample's vote judges the rows it found; the estimate still vetoes
    // row 3, whose weak label it gives under chance.
    let labelled = vec![ErrorLabel {
        label: Some("a".into()),
        weight: 1.0,
    }];
    let a = assemble(
        &lists,
        &params(Merge::Union, None),
        &Rules {
            labels: Some(LabelTrust {
                policy: LabelPolicy::Drop,
                errors: &labelled,
                weak: &weak,
                estimate: Some(&estimate),
            }),
            ..Default::default()
        },
    );
    assert_eq!(rows(&a), vec![1, 2]);
    assert!(a
        .entries
        .iter()
        .all(|e| e.labels.label_confidence == Some(1.0)));
    assert_eq!(a.funnel.label_policy, 1);
    // Under keep the estimate has no say on what the vote judged.
    let a = assemble(
        &lists,
        &params(Merge::Union, None),
        &Rules {
            labels: Some(LabelTrust {
                policy: LabelPolicy::Keep,
                errors: &labelled,
                weak: &weak,
                estimate: Some(&estimate),
            }),
            ..Default::default()
        },
    );
    assert_eq!(rows(&a), vec![1, 2, 3]);
}
