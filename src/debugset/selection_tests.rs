//! Tests of what decides among candidates that passed every rule: per-label caps and
//! targets, and diversity.

use std::collections::{BTreeMap, HashMap};

use super::merge::{assemble, Assembled, Funnel};
use super::rules::{Diversity, LabelQuotas};
use super::{Merge, MergeParams, Rules};
use crate::types::{Neighbor, RowId};

fn one_list(ids: &[RowId]) -> Vec<Vec<Neighbor>> {
    vec![ids
        .iter()
        .enumerate()
        .map(|(i, &id)| Neighbor {
            id,
            distance: 0.1 * (i + 1) as f32,
        })
        .collect()]
}

fn params(budget: Option<usize>) -> MergeParams {
    MergeParams {
        merge: Merge::Union,
        budget,
        max_distance: None,
        keep_duplicates: false,
        min_support: 1,
    }
}

fn weak_labels(labels: &[(RowId, &str)]) -> HashMap<RowId, Option<String>> {
    labels
        .iter()
        .map(|&(row, l)| (row, Some(l.to_owned())))
        .collect()
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|&(l, n)| (l.to_owned(), n)).collect()
}

fn rows(a: &Assembled) -> Vec<RowId> {
    a.entries.iter().map(|e| e.row).collect()
}

#[test]
fn label_caps_stop_a_label_at_its_cap_and_count_what_they_removed() {
    let lists = one_list(&[1, 2, 3, 4, 5, 6]);
    let weak = weak_labels(&[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")]);
    let caps = counts(&[("b", 1)]);
    let none = BTreeMap::new();
    let rules = Rules {
        label_quotas: Some(LabelQuotas {
            weak: &weak,
            max_per_label: Some(2),
            caps: &caps,
            targets: &none,
        }),
        ..Default::default()
    };
    let a = assemble(&lists, &params(None), &rules);
    assert_eq!(rows(&a), vec![1, 2, 4, 6]);
    assert_eq!(
        a.funnel,
        Funnel {
            candidates: 6,
            label_cap: 2,
            kept: 4,
            ..Default::default()
        }
    );
}

#[test]
fn label_targets_hold_budget_for_a_label_and_release_what_it_cannot_fill() {
    let lists = one_list(&[1, 2, 3, 4, 5]);
    let weak = weak_labels(&[(1, "a"), (2, "a"), (3, "a"), (4, "a"), (5, "b")]);
    let none = BTreeMap::new();
    let run = |targets: &BTreeMap<String, usize>| {
        let rules = Rules {
            label_quotas: Some(LabelQuotas {
                weak: &weak,
                max_per_label: None,
                caps: &none,
                targets,
            }),
            ..Default::default()
        };
        assemble(&lists, &params(Some(3)), &rules)
    };
    assert_eq!(rows(&run(&none)), vec![1, 2, 3]);
    // One slot is held for "b", so its one row beats the nearer "a" rows.
    assert_eq!(rows(&run(&counts(&[("b", 1)]))), vec![1, 2, 5]);
    // Two slots held for "b", which has one row: the other slot goes back to "a" at the end.
    let a = run(&counts(&[("b", 2)]));
    assert_eq!(rows(&a), vec![1, 5, 2]);
    assert_eq!(a.funnel.budget, 2);
    assert_eq!(a.funnel.kept, 3);
}

/// Rows on a line: 1, 2, 3 in a tight clump nearest the failure, 4 a little farther off
/// but far from the clump.
fn line() -> (Vec<Vec<Neighbor>>, HashMap<RowId, Vec<f32>>) {
    let vectors = [(1, 0.0f32), (2, 0.01), (3, 0.02), (4, 1.0)]
        .into_iter()
        .map(|(r, x)| (r, vec![x]))
        .collect();
    let lists = vec![vec![
        Neighbor {
            id: 1,
            distance: 0.01,
        },
        Neighbor {
            id: 2,
            distance: 0.11,
        },
        Neighbor {
            id: 3,
            distance: 0.12,
        },
        Neighbor {
            id: 4,
            distance: 0.5,
        },
    ]];
    (lists, vectors)
}

#[test]
fn diversity_takes_a_farther_item_over_a_near_copy() {
    let (lists, vectors) = line();
    let with = |lambda: f32| Rules {
        diversity: Some(Diversity {
            lambda,
            vectors: &vectors,
        }),
        ..Default::default()
    };
    assert_eq!(
        rows(&assemble(&lists, &params(Some(2)), &Rules::default())),
        vec![1, 2]
    );
    // λ = 1 is nearness alone: the merge's own order.
    assert_eq!(
        rows(&assemble(&lists, &params(Some(2)), &with(1.0))),
        vec![1, 2]
    );
    let a = assemble(&lists, &params(Some(2)), &with(0.5));
    assert_eq!(rows(&a), vec![1, 4]);
    assert_eq!(
        a.funnel.diversity, 1,
        "row 2 made the budget by nearness alone"
    );
    assert_eq!(a.funnel.budget, 1);
    // Without a budget the same rows come back, in the order diversity took them.
    let all = assemble(&lists, &params(None), &with(0.5));
    assert_eq!(rows(&all), vec![1, 4, 2, 3]);
}

#[test]
fn lazy_diversity_picks_what_scoring_every_candidate_each_time_picks() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let points: HashMap<RowId, Vec<f32>> = (0..60)
        .map(|r| {
            (
                r,
                vec![rng.gen_range(-1.0..1.0f32), rng.gen_range(-1.0..1.0f32)],
            )
        })
        .collect();
    let failures = [[0.0f32, 0.0], [0.5, 0.5], [-0.6, 0.2]];
    let lists: Vec<Vec<Neighbor>> = failures
        .iter()
        .map(|f| {
            let mut l: Vec<Neighbor> = points
                .iter()
                .map(|(&id, v)| Neighbor {
                    id,
                    distance: (v[0] - f[0]).powi(2) + (v[1] - f[1]).powi(2),
                })
                .collect();
            l.sort_by(|a, b| a.rank_cmp(b));
            l.truncate(25);
            l
        })
        .collect();
    for lambda in [0.2f32, 0.5, 0.8] {
        let rules = Rules {
            diversity: Some(Diversity {
                lambda,
                vectors: &points,
            }),
            ..Default::default()
        };
        let got = rows(&assemble(&lists, &params(None), &rules));
        // Every position scored afresh at every step.
        let mut order: Vec<(usize, usize)> = (0..lists.len())
            .flat_map(|e| (0..lists[e].len()).map(move |r| (e, r)))
            .collect();
        order.sort_by(|&(ea, ra), &(eb, rb)| {
            lists[ea][ra].rank_cmp(&lists[eb][rb]).then(ea.cmp(&eb))
        });
        let mut handed = vec![false; order.len()];
        let mut taken: Vec<RowId> = Vec::new();
        while let Some(pick) = (0..order.len())
            .filter(|&i| !handed[i])
            .map(|i| {
                let n = lists[order[i].0][order[i].1];
                let spread = taken
                    .iter()
                    .map(|t| {
                        let (a, b) = (&points[t], &points[&n.id]);
                        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
                    })
                    .fold(f32::INFINITY, f32::min);
                let score = if taken.is_empty() {
                    -(i as f32)
                } else {
                    (1.0 - lambda) * spread - lambda * n.distance.sqrt()
                };
                (i, score)
            })
            .fold(None, |best: Option<(usize, f32)>, (i, s)| match best {
                Some((_, b)) if b >= s => best,
                _ => Some((i, s)),
            })
        {
            handed[pick.0] = true;
            let row = lists[order[pick.0].0][order[pick.0].1].id;
            if !taken.contains(&row) {
                taken.push(row);
            }
        }
        assert_eq!(got, taken, "lambda {lambda}");
    }
}

#[test]
fn near_duplicates_after_the_budget_is_spent_count_as_before() {
    use super::rules::Dedup;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // 400 candidates in clumps of near-copies, one list nearest first.
    let centres: Vec<[f32; 3]> = (0..60)
        .map(|_| {
            [
                rng.gen_range(-5.0..5.0),
                rng.gen_range(-5.0..5.0),
                rng.gen_range(-5.0..5.0),
            ]
        })
        .collect();
    let vectors: HashMap<RowId, Vec<f32>> = (0..400)
        .map(|r| {
            let c = centres[rng.gen_range(0..centres.len())];
            (
                r,
                c.iter().map(|x| x + rng.gen_range(-0.01..0.01)).collect(),
            )
        })
        .collect();
    let norm = |v: &Vec<f32>| v.iter().map(|x| x * x).sum::<f32>();
    let mut list: Vec<Neighbor> = vectors
        .iter()
        .map(|(&id, v)| Neighbor {
            id,
            distance: norm(v),
        })
        .collect();
    list.sort_by(|a, b| a.rank_cmp(b));
    let radius = 0.01;
    for budget in [10, 45, 1000] {
        let rules = Rules {
            dedup: Some(Dedup {
                radius,
                vectors: &vectors,
            }),
            ..Default::default()
        };
        let a = assemble(&[list.clone()], &params(Some(budget)), &rules);
        // Each candidate against the items kept so far, one by one.
        let (mut kept, mut dedup, mut over) = (Vec::<RowId>::new(), 0, 0);
        for n in &list {
            let v = &vectors[&n.id];
            let d2 = |k: &RowId| {
                let w = &vectors[k];
                v.iter().zip(w).map(|(x, y)| (x - y) * (x - y)).sum::<f32>()
            };
            if kept.iter().any(|k| d2(k) <= radius) {
                dedup += 1;
            } else if kept.len() >= budget {
                over += 1;
            } else {
                kept.push(n.id);
            }
        }
        assert_eq!(rows(&a), kept, "budget {budget}");
        assert_eq!(
            (a.funnel.dedup, a.funnel.budget),
            (dedup, over),
            "budget {budget}"
        );
    }
}
