//! Merging per-error-sample neighbour lists into one debug-train set.

use std::collections::{HashMap, HashSet};

use super::labels::{judge, judge_estimate, second_opinion, LabelVerdict};
use super::near::{spread_direction, KeptNear, Keys};
use super::order::Picker;
use super::rules::{Collision, Rules, Veto};
use super::MergeParams;
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
    /// Failure mode of the nearest error sample that found it (0 without modes).
    pub mode: usize,
}

/// What the set does for one failure mode.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ModeCoverage {
    /// Its error samples, by request index.
    pub errors: Vec<usize>,
    /// Its share of the budget, where the budget was split.
    pub budget: Option<usize>,
    /// Entries of the set in this mode.
    pub kept: usize,
    /// Where the candidates of its samples' lists went (each counted once per mode).
    pub funnel: Funnel,
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
    /// Under the minimum gap percentile: too near what the model was trained on.
    pub gap: usize,
    /// Found by fewer than `min_support` error samples.
    pub min_support: usize,
    /// Removed by the label policy.
    pub label_policy: usize,
    /// Within `dedup_distance` of a row already in the set.
    pub dedup: usize,
    /// Within the holdout radius of a held-out item.
    pub holdout: usize,
    /// Its label (the one handed to training) already had its cap.
    pub label_cap: usize,
    /// Would have made the budget by nearness alone, but diversity took farther items.
    pub diversity: usize,
    /// Passed every rule, but the budget (or its mode's share) was spent.
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
    /// One per failure mode (one mode without a split).
    pub modes: Vec<ModeCoverage>,
}

/// The first rule a row failed, or where it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    DistanceCap,
    Negative,
    Gap,
    MinSupport,
    LabelPolicy,
    Duplicate,
    Holdout,
    LabelCap,
    Diversity,
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
    let keys = rules
        .dedup
        .and_then(|d| spread_direction(d.vectors))
        .map(Keys::new);
    let mut picker = Picker::new(&capped, params.merge, rules.mean_distance, rules.diversity);
    let budget = params.budget.unwrap_or(usize::MAX);
    let min_support = params.min_support.max(1);
    let mut entries = Vec::new();
    let mut vetoes = Vec::new();
    let mut collisions = Vec::new();
    // Vectors of the rows kept, for near-duplicates.
    let mut kept_near = keys.map(KeptNear::new);
    let mode_count = rules.modes.map_or(1, |m| m.count.max(1));
    let mode_of = |row: RowId| -> usize {
        let Some(m) = rules.modes else { return 0 };
        findings[&row]
            .iter()
            .min_by(|a, b| {
                a.distance
                    .total_cmp(&b.distance)
                    .then(a.error.cmp(&b.error))
            })
            .map_or(0, |f| m.of_error.get(f.error).copied().unwrap_or(0))
    };
    let mut kept_per_mode = vec![0usize; mode_count];
    let mut kept_per_label: HashMap<String, usize> = HashMap::new();
    let mut taken: HashMap<(RowId, Option<usize>), ()> = HashMap::new();
    // Candidates turned away only because the rest of the budget was held for label
    // targets; they get a second turn, in order, once every candidate was considered.
    let mut held_back: Vec<(usize, usize)> = Vec::new();
    let mut second_turn: Option<std::vec::IntoIter<(usize, usize)>> = None;
    loop {
        let next = match &mut second_turn {
            Some(turn) => turn.next(),
            None => picker.next_position(),
        };
        let Some((error, rank)) = next else {
            if second_turn.is_none() && !held_back.is_empty() {
                second_turn = Some(std::mem::take(&mut held_back).into_iter());
                continue;
            }
            break;
        };
        let n = capped[error][rank];
        if let Some(
            Outcome::Negative
            | Outcome::Gap
            | Outcome::MinSupport
            | Outcome::LabelPolicy
            | Outcome::Duplicate
            | Outcome::Holdout
            | Outcome::LabelCap,
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
        if let Some(g) = &rules.gap {
            if g.percentile.get(&n.id).map_or(g.min > 0.0, |&p| p < g.min) {
                outcome.insert(n.id, Outcome::Gap);
                continue;
            }
        }
        let support = findings[&n.id].len();
        let verdict = verdicts.entry(n.id).or_insert_with(|| {
            let Some(t) = &rules.labels else {
                return LabelVerdict {
                    keep: true,
                    ..Default::default()
                };
            };
            let weak = t.weak.get(&n.id).and_then(|l| l.as_deref());
            let vote = judge(t.policy, weak, &findings[&n.id], t.errors);
            let Some((e, p)) = t
                .estimate
                .and_then(|e| e.probabilities.get(&n.id).map(|p| (e, p)))
            else {
                return vote;
            };
            // The failures' own labels judge where any labelled sample found the row: they
            // know which classes the model gets wrong. The estimate speaks for the rest, and
            // may still veto a label the vote let through.
            match vote.label_confidence {
                None => judge_estimate(t.policy, weak, &e.classes, p),
                Some(_) => second_opinion(t.policy, vote, weak, &e.classes, p),
            }
        });
        if support < min_support {
            outcome.insert(n.id, Outcome::MinSupport);
            continue;
        }
        if !verdict.keep {
            outcome.insert(n.id, Outcome::LabelPolicy);
            continue;
        }
        let already_kept = outcome.get(&n.id) == Some(&Outcome::Kept);
        if let Some(d) = &rules.dedup {
            // A row already in the set (listed again for another finder) is no duplicate
            // of itself; the merge's order puts the nearest first, so the nearest is kept.
            if let (false, Some(v), Some(near)) = (already_kept, d.vectors.get(&n.id), &kept_near) {
                if near.any_within(v, d.radius) {
                    outcome.insert(n.id, Outcome::Duplicate);
                    continue;
                }
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
        let label = rules.label_quotas.map(|q| {
            verdict
                .suggested_label
                .clone()
                .or_else(|| q.weak.get(&n.id).cloned().flatten())
                .unwrap_or_default()
        });
        if let (Some(q), Some(l)) = (rules.label_quotas, &label) {
            let have = kept_per_label.get(l).copied().unwrap_or(0);
            if have >= q.cap_of(l) && !already_kept {
                outcome.insert(n.id, Outcome::LabelCap);
                continue;
            }
        }
        let mode = mode_of(n.id);
        let mode_full = rules
            .modes
            .and_then(|m| m.quota)
            .is_some_and(|q| kept_per_mode[mode] >= q.get(mode).copied().unwrap_or(0));
        if entries.len() >= budget || mode_full {
            outcome.entry(n.id).or_insert(Outcome::Budget);
            continue;
        }
        if let (Some(q), Some(l), None) = (rules.label_quotas, &label, &second_turn) {
            let unmet = |name: &String, target: &usize| {
                target.saturating_sub(kept_per_label.get(name).copied().unwrap_or(0))
            };
            let own_unmet = q.targets.get(l).is_some_and(|t| unmet(l, t) > 0);
            let held_for_others: usize = q
                .targets
                .iter()
                .filter(|(name, _)| *name != l)
                .map(|(name, t)| unmet(name, t))
                .sum();
            if !own_unmet && budget.saturating_sub(entries.len()) <= held_for_others {
                outcome.entry(n.id).or_insert(Outcome::Budget);
                held_back.push((error, rank));
                continue;
            }
        }
        let key = (n.id, params.keep_duplicates.then_some(error));
        if taken.insert(key, ()).is_some() {
            continue;
        }
        if outcome.insert(n.id, Outcome::Kept) != Some(Outcome::Kept) {
            if let (Some(v), Some(near)) = (
                rules.dedup.and_then(|d| d.vectors.get(&n.id)),
                &mut kept_near,
            ) {
                near.insert(v);
            }
            picker.taken(n.id);
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
        kept_per_mode[mode] += 1;
        if let Some(l) = label {
            *kept_per_label.entry(l).or_insert(0) += 1;
        }
        entries.push(DebugEntry {
            row: n.id,
            best_distance,
            support,
            found_by,
            labels: verdict.clone(),
            mode,
        });
        if entries.len() >= budget {
            picker.set_full();
        }
    }
    if rules.diversity.is_some() && params.budget.is_some() {
        // Rows the budget left out that nearness alone would have taken: diversity's doing.
        let mut eligible: Vec<RowId> = Vec::new();
        let mut seen_rows: HashSet<RowId> = HashSet::new();
        for &(e, r) in picker.merge_order() {
            let row = capped[e][r].id;
            let passed = matches!(outcome.get(&row), Some(Outcome::Kept | Outcome::Budget));
            if passed && seen_rows.insert(row) {
                eligible.push(row);
                if eligible.len() == budget {
                    break;
                }
            }
        }
        for row in eligible {
            if let Some(o @ Outcome::Budget) = outcome.get_mut(&row) {
                *o = Outcome::Diversity;
            }
        }
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
    let mut modes: Vec<ModeCoverage> = (0..mode_count)
        .map(|m| ModeCoverage {
            budget: rules
                .modes
                .and_then(|s| s.quota)
                .and_then(|q| q.get(m).copied()),
            kept: kept_per_mode[m],
            ..Default::default()
        })
        .collect();
    let mut seen_in_mode: HashMap<(usize, RowId), ()> = HashMap::new();
    for (error, list) in lists.iter().enumerate() {
        let m = rules
            .modes
            .and_then(|s| s.of_error.get(error).copied())
            .unwrap_or(0)
            .min(mode_count - 1);
        modes[m].errors.push(error);
        for n in list {
            if seen_in_mode.insert((m, n.id), ()).is_none() {
                let o = outcome.get(&n.id).copied().unwrap_or(Outcome::DistanceCap);
                modes[m].funnel.count(o);
            }
        }
    }
    Assembled {
        entries,
        coverage,
        funnel,
        vetoes,
        collisions,
        modes,
    }
}

impl Funnel {
    fn count(&mut self, o: Outcome) {
        self.candidates += 1;
        match o {
            Outcome::DistanceCap => self.distance_cap += 1,
            Outcome::Negative => self.negatives += 1,
            Outcome::Gap => self.gap += 1,
            Outcome::MinSupport => self.min_support += 1,
            Outcome::LabelPolicy => self.label_policy += 1,
            Outcome::Duplicate => self.dedup += 1,
            Outcome::Holdout => self.holdout += 1,
            Outcome::LabelCap => self.label_cap += 1,
            Outcome::Diversity => self.diversity += 1,
            Outcome::Budget => self.budget += 1,
            Outcome::Kept => self.kept += 1,
        }
    }
}
