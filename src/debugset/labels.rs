//! Label trust: what the error samples' true labels say about a candidate's weak label, and
//! what the label policy does with it.
//!
//! Every labelled error sample that found a candidate votes for its own label with weight
//! `sample weight / distance`: the nearer the failure, the more its label says about the item.
//! Measured on the public cases (docs/evaluation.md), dropping items whose weak label has
//! under half the vote lifts the accuracy of the labels handed to training from ~0.70 to
//! 0.92–0.98; replacing weak labels by the vote's winner hurts, because the features group
//! images by how they fail (the corruption), not by class.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::Finding;

/// What happens to a candidate whose weak label the vote does not support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelPolicy {
    /// Hand every weak label to training; the vote is only reported.
    Keep,
    /// Drop candidates whose weak label has under half the vote.
    Drop,
    /// Train with the vote's winner where it has over half; drop candidates with a split vote
    /// and an implausible weak label.
    Replace,
}

impl LabelPolicy {
    /// The policy when the request names none: drop where there is evidence, else keep.
    pub fn default_for(any_error_label: bool) -> Self {
        if any_error_label {
            LabelPolicy::Drop
        } else {
            LabelPolicy::Keep
        }
    }

    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LabelPolicy::Keep => "keep",
            LabelPolicy::Drop => "drop",
            LabelPolicy::Replace => "replace",
        }
    }
}

impl fmt::Display for LabelPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LabelPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(LabelPolicy::Keep),
            "drop" => Ok(LabelPolicy::Drop),
            "replace" => Ok(LabelPolicy::Replace),
            other => Err(format!(
                "unknown label policy {other:?}: use keep, drop or replace"
            )),
        }
    }
}

/// What is known of one error sample beyond its input.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ErrorLabel {
    /// Its true label, where the caller gave one.
    pub label: Option<String>,
    /// Its say in label votes (positive, finite).
    pub weight: f32,
}

impl Default for ErrorLabel {
    fn default() -> Self {
        ErrorLabel {
            label: None,
            weight: 1.0,
        }
    }
}

/// The policy's decision on one candidate.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LabelVerdict {
    /// Whether the candidate stays in the set.
    #[serde(skip)]
    pub keep: bool,
    /// The label to train with, where the policy replaced the weak one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_label: Option<String>,
    /// Share of the vote for the label handed to training; None without a vote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_confidence: Option<f32>,
    /// Whether the weak label has at least half the vote; None without a vote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weak_label_plausible: Option<bool>,
}

/// A weak label needs this share of the vote to count as plausible.
const PLAUSIBLE_SHARE: f32 = 0.5;

/// Distances below this count as this, so that an exact copy of an error sample has a large
/// but finite say.
const MIN_VOTE_DISTANCE: f32 = 1e-12;

/// Judges `weak` (the candidate's weak label) given the samples that found it.
pub fn judge(
    policy: LabelPolicy,
    weak: Option<&str>,
    found_by: &[Finding],
    errors: &[ErrorLabel],
) -> LabelVerdict {
    let mut votes: BTreeMap<&str, f64> = BTreeMap::new();
    for f in found_by {
        let e = &errors[f.error];
        if let Some(label) = e.label.as_deref() {
            *votes.entry(label).or_insert(0.0) +=
                e.weight as f64 / f.distance.max(MIN_VOTE_DISTANCE) as f64;
        }
    }
    let total: f64 = votes.values().sum();
    if votes.is_empty() || total <= 0.0 || !total.is_finite() {
        return LabelVerdict {
            keep: true,
            ..Default::default()
        };
    }
    let share = |label: &str| (votes.get(label).copied().unwrap_or(0.0) / total) as f32;
    let weak_share = weak.map_or(0.0, share);
    let plausible = weak_share >= PLAUSIBLE_SHARE;
    // Ties go to the label that sorts first, so the verdict does not depend on hash order.
    let (winner, winner_votes) =
        votes.iter().fold(
            ("", -1.0),
            |best, (l, v)| {
                if *v > best.1 {
                    (*l, *v)
                } else {
                    best
                }
            },
        );
    let winner_share = (winner_votes / total) as f32;
    apply(policy, plausible, weak_share, (winner, winner_share))
}

/// What `policy` does with a candidate, given whether its weak label is plausible, the
/// evidence's share for it, and the evidence's favourite label with its share.
fn apply(
    policy: LabelPolicy,
    plausible: bool,
    weak_share: f32,
    (winner, winner_share): (&str, f32),
) -> LabelVerdict {
    let kept_weak = |keep| LabelVerdict {
        keep,
        suggested_label: None,
        label_confidence: Some(weak_share),
        weak_label_plausible: Some(plausible),
    };
    match policy {
        LabelPolicy::Keep => kept_weak(true),
        LabelPolicy::Drop => kept_weak(plausible),
        LabelPolicy::Replace if plausible => kept_weak(true),
        LabelPolicy::Replace if winner_share > PLAUSIBLE_SHARE => LabelVerdict {
            keep: true,
            suggested_label: Some(winner.to_owned()),
            label_confidence: Some(winner_share),
            weak_label_plausible: Some(false),
        },
        LabelPolicy::Replace => kept_weak(false),
    }
}

/// Each candidate's class probabilities from a label estimate (a probe fitted on a trusted
/// reference), and the classes they refer to.
#[derive(Clone, Debug, Default)]
pub struct LabelEstimates {
    /// The classes, in the order of every probability vector.
    pub classes: Vec<String>,
    /// Class probabilities per candidate row.
    pub probabilities: std::collections::HashMap<crate::types::RowId, Vec<f32>>,
}

/// Judges `weak` by a label estimate's class probabilities. The weak label is plausible when
/// the estimate gives it at least chance (1 / classes): the probe rarely gives a right label of
/// a failing image the top spot, but seldom gives it less than chance (docs/debug-sets.md).
pub fn judge_estimate(
    policy: LabelPolicy,
    weak: Option<&str>,
    classes: &[String],
    probabilities: &[f32],
) -> LabelVerdict {
    if classes.is_empty() || probabilities.len() != classes.len() {
        return LabelVerdict {
            keep: true,
            ..Default::default()
        };
    }
    let (weak_p, plausible) = estimated(weak, classes, probabilities);
    // Ties go to the first class, which sorts first.
    let (winner, winner_p) =
        probabilities
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &q)| {
                if q > best.1 {
                    (i, q)
                } else {
                    best
                }
            });
    apply(policy, plausible, weak_p, (&classes[winner], winner_p))
}

/// A label estimate's say on a candidate the failures' vote already judged. Under `drop` and
/// `replace` it drops a candidate the vote kept when the estimate gives the label handed to
/// training (the suggestion, else the weak label) less than chance: the vote only knows the
/// labels of nearby failures, so a clean image whose weak label happens to match one of them
/// passes it, while the estimate was fitted on what each class looks like.
pub fn second_opinion(
    policy: LabelPolicy,
    vote: LabelVerdict,
    weak: Option<&str>,
    classes: &[String],
    probabilities: &[f32],
) -> LabelVerdict {
    if policy == LabelPolicy::Keep || !vote.keep || probabilities.len() != classes.len() {
        return vote;
    }
    let Some(label) = vote.suggested_label.as_deref().or(weak) else {
        return vote;
    };
    let (_, keep) = estimated(Some(label), classes, probabilities);
    LabelVerdict { keep, ..vote }
}

/// The estimate's probability for `label` (0 for a label it does not know, or none), and
/// whether that is at least chance (1 / classes).
fn estimated(label: Option<&str>, classes: &[String], probabilities: &[f32]) -> (f32, bool) {
    let p = label
        .and_then(|l| classes.iter().position(|c| c == l))
        .map_or(0.0, |i| probabilities[i]);
    (p, p >= 1.0 / classes.len().max(1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pairs: &[(usize, f32)]) -> Vec<Finding> {
        pairs
            .iter()
            .map(|&(error, distance)| Finding {
                error,
                rank: 1,
                distance,
            })
            .collect()
    }

    fn labelled(labels: &[Option<&str>]) -> Vec<ErrorLabel> {
        labels
            .iter()
            .map(|l| ErrorLabel {
                label: l.map(str::to_owned),
                weight: 1.0,
            })
            .collect()
    }

    #[test]
    fn nearer_samples_have_more_say() {
        let errors = labelled(&[Some("cat"), Some("dog")]);
        // "cat" at distance 1 outvotes "dog" at distance 4: 1 vs 0.25.
        let f = found(&[(0, 1.0), (1, 4.0)]);
        let v = judge(LabelPolicy::Drop, Some("cat"), &f, &errors);
        assert!(v.keep);
        assert_eq!(v.weak_label_plausible, Some(true));
        assert!((v.label_confidence.unwrap() - 0.8).abs() < 1e-6);
        let v = judge(LabelPolicy::Drop, Some("dog"), &f, &errors);
        assert!(!v.keep);
        assert_eq!(v.weak_label_plausible, Some(false));
        let v = judge(LabelPolicy::Keep, Some("dog"), &f, &errors);
        assert!(v.keep);
        assert!((v.label_confidence.unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(v.suggested_label, None);
    }

    #[test]
    fn weights_scale_votes() {
        let mut errors = labelled(&[Some("cat"), Some("dog")]);
        errors[1].weight = 8.0;
        let f = found(&[(0, 1.0), (1, 4.0)]);
        assert!(!judge(LabelPolicy::Drop, Some("cat"), &f, &errors).keep);
        assert!(judge(LabelPolicy::Drop, Some("dog"), &f, &errors).keep);
    }

    #[test]
    fn replace_takes_a_majority_and_drops_split_votes() {
        let errors = labelled(&[Some("cat"), Some("dog"), Some("fox")]);
        let v = judge(
            LabelPolicy::Replace,
            Some("fox"),
            &found(&[(0, 1.0), (1, 4.0)]),
            &errors,
        );
        assert!(v.keep);
        assert_eq!(v.suggested_label.as_deref(), Some("cat"));
        assert_eq!(v.weak_label_plausible, Some(false));
        // Three equal votes: nobody has half; the weak label ("fox") has a third.
        let split = found(&[(0, 1.0), (1, 1.0), (2, 1.0)]);
        let v = judge(LabelPolicy::Replace, Some("fox"), &split, &errors);
        assert!(!v.keep);
        let v = judge(
            LabelPolicy::Replace,
            Some("cat"),
            &found(&[(0, 1.0)]),
            &errors,
        );
        assert!(v.keep);
        assert_eq!(v.suggested_label, None);
    }

    #[test]
    fn no_vote_without_labelled_finders() {
        let errors = labelled(&[None, Some("cat")]);
        let v = judge(LabelPolicy::Drop, Some("dog"), &found(&[(0, 1.0)]), &errors);
        assert_eq!(
            v,
            LabelVerdict {
                keep: true,
                ..Default::default()
            }
        );
        // An unlabelled finder has no say beside a labelled one.
        let v = judge(
            LabelPolicy::Drop,
            Some("dog"),
            &found(&[(0, 0.001), (1, 1.0)]),
            &errors,
        );
        assert!(!v.keep);
    }

    #[test]
    fn an_unlabelled_candidate_is_implausible_where_there_is_a_vote() {
        let errors = labelled(&[Some("cat")]);
        let v = judge(LabelPolicy::Drop, None, &found(&[(0, 1.0)]), &errors);
        assert!(!v.keep);
        let v = judge(LabelPolicy::Replace, None, &found(&[(0, 1.0)]), &errors);
        assert_eq!(v.suggested_label.as_deref(), Some("cat"));
    }

    #[test]
    fn an_exact_copy_has_a_finite_say() {
        let errors = labelled(&[Some("cat"), Some("dog")]);
        let v = judge(
            LabelPolicy::Keep,
            Some("cat"),
            &found(&[(0, 0.0), (1, 0.0)]),
            &errors,
        );
        assert_eq!(v.label_confidence, Some(0.5));
        assert_eq!(v.weak_label_plausible, Some(true));
    }

    #[test]
    fn an_estimate_judges_by_chance_and_majority() {
        let classes: Vec<String> = ["cat", "dog", "fox"].map(String::from).to_vec();
        let probs = [0.6, 0.3, 0.1];
        // Chance is a third: dog (0.3) is implausible, cat plausible.
        let v = judge_estimate(LabelPolicy::Drop, Some("dog"), &classes, &probs);
        assert!(!v.keep);
        assert_eq!(v.label_confidence, Some(0.3));
        assert!(judge_estimate(LabelPolicy::Drop, Some("cat"), &classes, &probs).keep);
        assert!(judge_estimate(LabelPolicy::Keep, Some("fox"), &classes, &probs).keep);
        let v = judge_estimate(LabelPolicy::Replace, Some("fox"), &classes, &probs);
        assert_eq!(v.suggested_label.as_deref(), Some("cat"));
        assert_eq!(v.label_confidence, Some(0.6));
        // A weak label the reference never saw is implausible.
        assert!(!judge_estimate(LabelPolicy::Drop, Some("owl"), &classes, &probs).keep);
        // No majority: replace drops an implausible weak label.
        let flat = [0.45, 0.45, 0.1];
        assert!(!judge_estimate(LabelPolicy::Replace, Some("fox"), &classes, &flat).keep);
    }

    #[test]
    fn an_estimate_vetoes_what_the_vote_let_through() {
        let classes: Vec<String> = ["cat", "dog", "fox"].map(String::from).to_vec();
        let probs = [0.6, 0.3, 0.1];
        let errors = labelled(&[Some("dog"), Some("fox")]);
        let by = found(&[(0, 1.0)]);
        // The vote keeps "dog" (the only finder is a dog); the estimate gives it under chance.
        let vote = judge(LabelPolicy::Drop, Some("dog"), &by, &errors);
        assert!(vote.keep);
        let v = second_opinion(
            LabelPolicy::Drop,
            vote.clone(),
            Some("dog"),
            &classes,
            &probs,
        );
        assert!(!v.keep);
        // What the verdict reports is still the vote's.
        assert_eq!(v.label_confidence, vote.label_confidence);
        assert_eq!(v.weak_label_plausible, Some(true));
        // At or above chance it stays; keep hands every weak label on whatever the estimate says.
        let even = [0.2, 1.0 / 3.0, 0.5];
        assert!(
            second_opinion(
                LabelPolicy::Drop,
                vote.clone(),
                Some("dog"),
                &classes,
                &even
            )
            .keep
        );
        assert!(second_opinion(LabelPolicy::Keep, vote, Some("dog"), &classes, &probs).keep);
        // Under replace the suggestion is what is checked, not the weak label.
        let vote = judge(LabelPolicy::Replace, Some("cat"), &by, &errors);
        assert_eq!(vote.suggested_label.as_deref(), Some("dog"));
        assert!(!second_opinion(LabelPolicy::Replace, vote, Some("cat"), &classes, &probs).keep);
        // A candidate the vote dropped stays dropped.
        let vote = judge(LabelPolicy::Drop, Some("cat"), &by, &errors);
        assert!(!second_opinion(LabelPolicy::Drop, vote, Some("cat"), &classes, &probs).keep);
    }

    #[test]
    fn names_round_trip() {
        for p in [LabelPolicy::Keep, LabelPolicy::Drop, LabelPolicy::Replace] {
            assert_eq!(p.name().parse::<LabelPolicy>(), Ok(p));
        }
        assert!("trust".parse::<LabelPolicy>().is_err());
    }
}
