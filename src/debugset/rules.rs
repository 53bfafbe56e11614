//! The rules a merge applies beyond its parameters, as plain data the service fills in:
//! the label vote, negatives, the gap to a reference and the holdout, each with what it
//! removed.

use std::collections::{BTreeMap, HashMap};

use super::labels::{ErrorLabel, LabelEstimates, LabelPolicy};
use crate::types::RowId;

/// The label evidence a merge applies.
#[derive(Clone, Copy, Debug)]
pub struct LabelTrust<'a> {
    /// What to do with implausible weak labels.
    pub policy: LabelPolicy,
    /// Every error sample's label and weight, in request order.
    pub errors: &'a [ErrorLabel],
    /// The weak label of every candidate row (rows missing here count as unlabelled).
    pub weak: &'a HashMap<RowId, Option<String>>,
    /// A label estimate from a trusted reference; it judges the rows no labelled error
    /// sample found (all rows when the error samples are unlabelled).
    pub estimate: Option<&'a LabelEstimates>,
}

/// The gap rule: how far each candidate is from what the model was trained on.
#[derive(Clone, Copy, Debug)]
pub struct Gap<'a> {
    /// Each candidate's gap percentile: the share of the pool nearer to the reference than
    /// it is (rows missing here have none and are dropped when `min` > 0).
    pub percentile: &'a HashMap<RowId, f32>,
    /// Candidates under this gap percentile are dropped.
    pub min: f32,
}

/// An item a candidate is checked against: a negative or a held-out item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemRef {
    /// One the request lists, by index.
    Listed(usize),
    /// A row of the pool the request names.
    PoolRow(RowId),
}

/// A candidate's nearest negative or held-out item.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct NearestItem {
    /// Which item.
    pub item: ItemRef,
    /// Squared ℓ2 distance from the candidate.
    pub distance: f32,
}

/// The negatives a merge applies: every candidate's nearest negative, and the margin.
#[derive(Clone, Copy, Debug)]
pub struct Negatives<'a> {
    /// Nearest negative of each candidate row (rows missing here have none).
    pub nearest: &'a HashMap<RowId, NearestItem>,
    /// A candidate is dropped when its nearest negative is nearer than `margin` times its
    /// distance to the nearest error sample (squared ℓ2; 1: plainly nearer; above 1 drops more).
    pub margin: f32,
}

/// The held-out items a merge keeps the set away from.
#[derive(Clone, Copy, Debug)]
pub struct Holdout<'a> {
    /// Nearest held-out item of each candidate row (rows missing here have none).
    pub nearest: &'a HashMap<RowId, NearestItem>,
    /// A candidate this near (squared ℓ2) or nearer to a held-out item is dropped.
    pub radius: f32,
}

/// A candidate within the holdout radius of a held-out item.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Collision {
    /// The candidate.
    pub row: RowId,
    /// The held-out item it collides with.
    pub held_out: NearestItem,
}

/// A candidate a negative removed.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Veto {
    /// The candidate.
    pub row: RowId,
    /// Its distance to the nearest error sample.
    pub distance: f32,
    /// The negative nearer to it.
    pub negative: NearestItem,
}

/// Near-duplicate removal: no two rows of the set within `radius` of each other.
#[derive(Clone, Copy, Debug)]
pub struct Dedup<'a> {
    /// Squared ℓ2 distance at or under which two rows are near-duplicates.
    pub radius: f32,
    /// The candidates' vectors (a row missing here is nobody's duplicate).
    pub vectors: &'a HashMap<RowId, Vec<f32>>,
}

/// The error samples' failure modes, and each mode's share of the budget.
#[derive(Clone, Copy, Debug)]
pub struct ModeSplit<'a> {
    /// Mode of each error sample, in request order.
    pub of_error: &'a [usize],
    /// Number of modes.
    pub count: usize,
    /// Most items per mode (None: only the overall budget).
    pub quota: Option<&'a [usize]>,
}

/// Per-label caps and targets on the labels the set hands to training (the suggested label
/// where the policy replaced the weak one, else the weak label; unlabelled items count under
/// the empty label).
#[derive(Clone, Copy, Debug)]
pub struct LabelQuotas<'a> {
    /// The weak label of every candidate row (rows missing here count as unlabelled).
    pub weak: &'a HashMap<RowId, Option<String>>,
    /// Most items of any one label.
    pub max_per_label: Option<usize>,
    /// Most items of the named labels (these override `max_per_label`).
    pub caps: &'a BTreeMap<String, usize>,
    /// Part of the budget held for the named labels until each has this many items; what
    /// a label could not fill goes to the others once every candidate was considered.
    pub targets: &'a BTreeMap<String, usize>,
}

impl LabelQuotas<'_> {
    /// Most items `label` may have.
    pub fn cap_of(&self, label: &str) -> usize {
        self.caps
            .get(label)
            .copied()
            .or(self.max_per_label)
            .unwrap_or(usize::MAX)
    }
}

/// Diversity by maximal marginal relevance: each next item maximises
/// `lambda * -(ℓ2 to the failures) + (1 - lambda) * (ℓ2 to the nearest item already taken)`.
#[derive(Clone, Copy, Debug)]
pub struct Diversity<'a> {
    /// Weight of nearness to the failures, in [0, 1]; 1 is the merge's own order.
    pub lambda: f32,
    /// The candidates' vectors (a row missing here is infinitely far from every other).
    pub vectors: &'a HashMap<RowId, Vec<f32>>,
}

/// The rules a merge applies beyond its parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules<'a> {
    /// Negatives, where the request has any.
    pub negatives: Option<Negatives<'a>>,
    /// The gap rule, where the request asks for a minimum gap percentile.
    pub gap: Option<Gap<'a>>,
    /// The label vote, where any error sample is labelled.
    pub labels: Option<LabelTrust<'a>>,
    /// Held-out items, where the request has any.
    pub holdout: Option<Holdout<'a>>,
    /// Near-duplicate removal, where the request asks for it.
    pub dedup: Option<Dedup<'a>>,
    /// Failure modes: each row belongs to the mode of its nearest finder.
    pub modes: Option<ModeSplit<'a>>,
    /// Each candidate's mean squared distance to all error samples, for `Merge::Mean` (rows
    /// missing here rank last).
    pub mean_distance: Option<&'a HashMap<RowId, f32>>,
    /// Per-label caps and targets, where the request names any.
    pub label_quotas: Option<LabelQuotas<'a>>,
    /// MMR diversity, where the request asks for it.
    pub diversity: Option<Diversity<'a>>,
}
