//! The debug-train set, as a pure computation: given each error sample's nearest pool rows
//! (already filtered by label and exclusions, best first), merge them into one set with a
//! budget, a distance cap, consensus, a label policy and de-duplication, remembering which
//! error samples found each row at which rank and why the other candidates were left out.
//! No I/O: the service layer runs the searches and fetches the items.

mod evaluation;
mod labels;
mod merge;
#[cfg(test)]
mod merge_tests;
mod modes;
mod near;
mod order;
mod probe;
mod rules;
#[cfg(test)]
mod selection_tests;
mod summary;

pub use evaluation::{
    compare, rank_correlation, reach, score_items, view_items, Comparison, ItemScore, ItemView,
    Point, Reach,
};
pub use labels::{
    judge, judge_estimate, second_opinion, ErrorLabel, LabelEstimates, LabelPolicy, LabelVerdict,
};
pub use merge::{assemble, Assembled, Coverage, DebugEntry, Finding, Funnel};
pub use modes::{find_modes, split_budget, Modes};
pub use probe::{FitParams, LabelProbe, ProbeError, TrainingSet};
pub use rules::{
    Collision, Dedup, Diversity, Gap, Holdout, ItemRef, LabelQuotas, LabelTrust, ModeSplit,
    NearestItem, Negatives, Rules, Veto,
};
pub use summary::{quantiles, Quantiles};

use std::fmt;
use std::str::FromStr;

/// How the per-error-sample neighbour lists become one set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Every error sample's `k` nearest, de-duplicated; over the budget, the nearest are kept.
    #[default]
    Union,
    /// Rank 1 of every error sample, then rank 2, ... until the budget: each error sample
    /// gets its fair share even when some have much closer neighbours than others.
    RoundRobin,
    /// The `budget` rows nearest to any error sample (each sample is searched `budget` deep).
    GlobalTop,
    /// Every error sample's `k` nearest, ranked by their mean distance to all error samples:
    /// rows near many failures first, rows near one outlier failure last.
    Mean,
}

impl Merge {
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Merge::Union => "union",
            Merge::RoundRobin => "round_robin",
            Merge::GlobalTop => "global_top",
            Merge::Mean => "mean",
        }
    }
}

impl fmt::Display for Merge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Merge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.replace('-', "_").as_str() {
            "union" => Ok(Merge::Union),
            "round_robin" => Ok(Merge::RoundRobin),
            "global_top" => Ok(Merge::GlobalTop),
            "mean" => Ok(Merge::Mean),
            other => Err(format!(
                "unknown merge {other:?}: use union, round_robin, global_top or mean"
            )),
        }
    }
}

/// Parameters of the merge.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergeParams {
    /// Merge strategy.
    pub merge: Merge,
    /// Most rows in the set (None: no limit beyond the lists themselves).
    pub budget: Option<usize>,
    /// Rows farther than this (squared ℓ2) from every error sample are dropped.
    pub max_distance: Option<f32>,
    /// List a row once per error sample that found it instead of once.
    pub keep_duplicates: bool,
    /// Rows found by fewer error samples than this (within their lists) are dropped: 1 keeps
    /// every row. Consensus: a row several failures point at is more likely from their slice.
    pub min_support: usize,
}

impl MergeParams {
    /// How deep each error sample must be searched for this merge, given `k` per sample.
    pub fn search_depth(&self, k: usize) -> usize {
        match (self.merge, self.budget) {
            (Merge::GlobalTop, Some(b)) => b,
            _ => k,
        }
    }
}
