//! Model-free scores of a debug-train set: how near it comes to failures it was not built
//! from, against a random set of the same size. Seen from the failures: does each have a set
//! item (of its true label) nearer than a random set's? Seen from the items: is each near the
//! failures, and does it carry the label the labelled failures near it vote for? A wrong
//! label teaches the model the wrong thing however near the item is.

use crate::index::distance::l2_squared;

/// A point of a set or a held-out failure: its vector and label.
#[derive(Clone, Copy, Debug)]
pub struct Point<'a> {
    /// Its vector, in the pool's space.
    pub vector: &'a [f32],
    /// Its label: the one a set item hands to training, or a failure's true label.
    pub label: Option<&'a str>,
}

/// How near a set comes to one held-out failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reach {
    /// Squared ℓ2 to the nearest item of the set (infinite for an empty set).
    pub any: f32,
    /// Squared ℓ2 to the nearest item carrying the failure's true label (None: the failure
    /// is unlabelled; infinite: no item has its label).
    pub labelled: Option<f32>,
}

/// How near `set` comes to each of `held_out`.
pub fn reach(held_out: &[Point<'_>], set: &[Point<'_>]) -> Vec<Reach> {
    held_out
        .iter()
        .map(|h| {
            let mut any = f32::INFINITY;
            let mut labelled = f32::INFINITY;
            for s in set {
                let d = l2_squared(h.vector, s.vector);
                any = any.min(d);
                if h.label.is_some() && s.label == h.label {
                    labelled = labelled.min(d);
                }
            }
            Reach {
                any,
                labelled: h.label.map(|_| labelled),
            }
        })
        .collect()
}

/// A set's reach against random sets of the same size, over the same held-out failures.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Share of (failure, random draw) pairs where the set's nearest item is nearer than the
    /// random set's (ties count half): 0.5 is no better than random.
    pub win_rate: f32,
    /// The same with only items carrying the failure's true label (labelled failures only).
    pub label_win_rate: Option<f32>,
    /// Median squared ℓ2 from a failure to the set's nearest item.
    pub nearest: f32,
    /// The same for the random sets.
    pub random_nearest: f32,
    /// Share of failures with a set item within each distance threshold, beside the random
    /// sets' share, in the thresholds' order.
    pub covered: Vec<(f32, f32)>,
    /// The same with only items carrying the failure's true label.
    pub label_covered: Option<Vec<(f32, f32)>>,
    /// The set seen from its items: how many look useful, beside random sets'.
    pub items: ItemScore,
}

/// What one item of a set looks like from the held-out failures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemView {
    /// Squared ℓ2 to the nearest held-out failure.
    pub nearest: f32,
    /// Whether the item's label wins the vote of the labelled held-out failures nearest to
    /// it (each weighs 1 / distance); None where no held-out failure is labelled.
    pub agrees: Option<bool>,
}

/// Held-out failures that vote on an item's label.
pub const VOTERS: usize = 5;

/// How each of `items` looks from `held_out`.
pub fn view_items(items: &[Point<'_>], held_out: &[Point<'_>]) -> Vec<ItemView> {
    let labelled: Vec<&Point<'_>> = held_out.iter().filter(|h| h.label.is_some()).collect();
    items
        .iter()
        .map(|item| {
            let mut nearest = f32::INFINITY;
            let mut votes: Vec<(f32, Option<&str>)> = Vec::with_capacity(labelled.len());
            for h in held_out {
                let d = l2_squared(item.vector, h.vector);
                nearest = nearest.min(d);
                if h.label.is_some() {
                    votes.push((d, h.label));
                }
            }
            let agrees = (!votes.is_empty()).then(|| {
                let take = VOTERS.min(votes.len());
                votes.select_nth_unstable_by(take - 1, |a, b| a.0.total_cmp(&b.0));
                let weight = |d: f32| 1.0 / d.max(1e-12);
                let total: f32 = votes[..take].iter().map(|v| weight(v.0)).sum();
                let own: f32 = votes[..take]
                    .iter()
                    .filter(|v| item.label.is_some() && v.1 == item.label)
                    .map(|v| weight(v.0))
                    .sum();
                own >= 0.5 * total
            });
            ItemView { nearest, agrees }
        })
        .collect()
}

/// A set's items against random sets' items.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ItemScore {
    /// Share of the set's items that look useful: nearer to a held-out failure than the
    /// median random item is, and (where failures are labelled) carrying the label their
    /// nearest labelled failures vote for.
    pub useful: f32,
    /// The same share for the random sets.
    pub random_useful: f32,
    /// Share of the set's items nearer than the median random item (random: about 0.5).
    pub near: f32,
    /// Share of the set's items whose label the vote supports (None: no labelled failure).
    pub agree: Option<f32>,
    /// The same for the random sets.
    pub random_agree: Option<f32>,
}

/// Scores `set`'s items against `random`'s (all draws together).
pub fn score_items(set: &[ItemView], random: &[ItemView]) -> ItemScore {
    let radius = median(random.iter().map(|v| v.nearest).collect());
    let useful =
        |views: &[ItemView]| share(views, |v| v.nearest <= radius && v.agrees != Some(false));
    let agree = |views: &[ItemView]| {
        let judged: Vec<ItemView> = views
            .iter()
            .filter(|v| v.agrees.is_some())
            .copied()
            .collect();
        (!judged.is_empty()).then(|| share(&judged, |v| v.agrees == Some(true)))
    };
    ItemScore {
        useful: useful(set),
        random_useful: useful(random),
        near: share(set, |v| v.nearest <= radius),
        agree: agree(set),
        random_agree: agree(random),
    }
}

fn share(views: &[ItemView], pred: impl Fn(&ItemView) -> bool) -> f32 {
    if views.is_empty() {
        return 0.0;
    }
    views.iter().filter(|v| pred(v)).count() as f32 / views.len() as f32
}

impl Comparison {
    /// The score that ranks sets: the share of its items that look useful (near the
    /// failures, and with the label the labelled failures near them vote for). Measured on
    /// the public cases it ranks sets as retraining does where the failure-side win rates do
    /// not: those reward sheer size and cannot see wrong labels (docs/evaluation.md).
    pub fn score(&self) -> f32 {
        self.items.useful
    }
}

/// Compares the set's reach with each random draw's (each over the same failures, in the same
/// order), and the shares within each of `thresholds` (squared ℓ2).
pub fn compare(set: &[Reach], random: &[Vec<Reach>], thresholds: &[f32]) -> Comparison {
    let any = |r: &Reach| Some(r.any);
    let labelled = |r: &Reach| r.labelled;
    let random_all: Vec<Reach> = random.iter().flatten().copied().collect();
    let label_win_rate = win_rate(set, random, labelled);
    Comparison {
        win_rate: win_rate(set, random, any).unwrap_or(0.5),
        nearest: median(set.iter().map(|r| r.any).collect()),
        random_nearest: median(random_all.iter().map(|r| r.any).collect()),
        covered: thresholds
            .iter()
            .map(|&t| (share_within(set, t, any), share_within(&random_all, t, any)))
            .collect(),
        label_covered: label_win_rate.map(|_| {
            thresholds
                .iter()
                .map(|&t| {
                    (
                        share_within(set, t, labelled),
                        share_within(&random_all, t, labelled),
                    )
                })
                .collect()
        }),
        label_win_rate,
        items: ItemScore::default(),
    }
}

fn win_rate(
    set: &[Reach],
    random: &[Vec<Reach>],
    d: impl Fn(&Reach) -> Option<f32>,
) -> Option<f32> {
    let mut wins = 0.0f64;
    let mut pairs = 0usize;
    for draw in random {
        for (s, r) in set.iter().zip(draw) {
            let (Some(a), Some(b)) = (d(s), d(r)) else {
                continue;
            };
            wins += if a < b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
            pairs += 1;
        }
    }
    (pairs > 0).then(|| (wins / pairs as f64) as f32)
}

fn share_within(reach: &[Reach], threshold: f32, d: impl Fn(&Reach) -> Option<f32>) -> f32 {
    let values: Vec<f32> = reach.iter().filter_map(&d).collect();
    if values.is_empty() {
        return 0.0;
    }
    values.iter().filter(|&&v| v <= threshold).count() as f32 / values.len() as f32
}

fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return f32::INFINITY;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Spearman's rank correlation between two score lists (ties get their mean rank); None for
/// fewer than two pairs or a constant list.
pub fn rank_correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean).powi(2);
        vb += (y - mean).powi(2);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            out[o] = rank;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(v: &'a [f32], label: Option<&'a str>) -> Point<'a> {
        Point { vector: v, label }
    }

    #[test]
    fn reach_finds_the_nearest_item_and_the_nearest_with_the_label() {
        let held = [p(&[0.0, 0.0], Some("cat")), p(&[5.0, 0.0], None)];
        let set = [p(&[1.0, 0.0], Some("dog")), p(&[0.0, 2.0], Some("cat"))];
        let r = reach(&held, &set);
        assert_eq!(
            r[0],
            Reach {
                any: 1.0,
                labelled: Some(4.0)
            }
        );
        assert_eq!(
            r[1],
            Reach {
                any: 16.0,
                labelled: None
            }
        );
        let none = reach(&held, &set[..1]);
        assert_eq!(none[0].labelled, Some(f32::INFINITY));
    }

    #[test]
    fn compare_counts_wins_ties_and_shares() {
        let r = |any: f32, labelled: Option<f32>| Reach { any, labelled };
        let set = [r(1.0, Some(1.0)), r(3.0, Some(f32::INFINITY))];
        let random = vec![
            vec![r(2.0, Some(2.0)), r(3.0, Some(f32::INFINITY))],
            vec![r(0.5, Some(9.0)), r(9.0, Some(9.0))],
        ];
        let c = compare(&set, &random, &[1.0, 4.0]);
        // Draw 1: win, tie; draw 2: loss, win.
        assert_eq!(c.win_rate, 2.5 / 4.0);
        // Labelled: win, tie (both infinite); win, loss.
        assert_eq!(c.label_win_rate, Some(2.5 / 4.0));
        // Random within 4: 2, 3 and 0.5 of 2, 3, 0.5, 9.
        assert_eq!(c.covered, vec![(0.5, 0.25), (1.0, 0.75)]);
        assert_eq!(c.nearest, 3.0);
        assert_eq!(c.score(), 0.0, "no item views given");
    }

    #[test]
    fn items_are_useful_when_near_and_carrying_the_label_their_failures_vote_for() {
        let held = [
            p(&[0.0, 0.0], Some("cat")),
            p(&[0.0, 1.0], Some("cat")),
            p(&[10.0, 0.0], Some("dog")),
        ];
        let set = [p(&[0.1, 0.0], Some("cat")), p(&[0.1, 0.5], Some("dog"))];
        let views = view_items(&set, &held);
        assert_eq!(views[0].agrees, Some(true));
        assert_eq!(views[1].agrees, Some(false), "two cats nearer than the dog");
        assert!((views[0].nearest - 0.01).abs() < 1e-6);
        let random = view_items(
            &[p(&[5.0, 5.0], Some("cat")), p(&[9.0, 0.0], Some("dog"))],
            &held,
        );
        let s = score_items(&views, &random);
        assert_eq!((s.useful, s.near, s.agree), (0.5, 1.0, Some(0.5)));
        assert_eq!(
            s.random_agree,
            Some(1.0),
            "each random item sits by its own label"
        );
        let unlabelled = [p(&[0.0, 0.0], None)];
        assert_eq!(view_items(&set, &unlabelled)[1].agrees, None);
    }

    #[test]
    fn rank_correlation_is_one_for_the_same_order_and_minus_one_reversed() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(rank_correlation(&a, &[10.0, 20.0, 30.0, 40.0]), Some(1.0));
        assert_eq!(rank_correlation(&a, &[4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(rank_correlation(&a, &[1.0, 1.0, 1.0, 1.0]), None);
        let tied = rank_correlation(&a, &[1.0, 1.0, 2.0, 3.0]).unwrap();
        assert!(tied > 0.9 && tied < 1.0, "{tied}");
    }
}
