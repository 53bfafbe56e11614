//! The debug-train set's request and result types.

use std::collections::BTreeMap;

use crate::debugset::{
    ErrorLabel, Finding, Funnel, LabelPolicy, LabelVerdict, MergeParams, Quantiles,
};
use crate::service::QueryInput;
use crate::types::RowId;

/// An error sample: an input the model gets wrong, and what is known of it beyond that.
#[derive(Clone, Debug)]
pub struct ErrorSample {
    /// The input.
    pub input: QueryInput,
    /// Its true label (where known) and weight.
    pub truth: ErrorLabel,
}

impl From<QueryInput> for ErrorSample {
    /// An unlabelled sample of weight 1.
    fn from(input: QueryInput) -> Self {
        ErrorSample {
            input,
            truth: ErrorLabel::default(),
        }
    }
}

/// A debug-train set request. Its serialized form holds every parameter but not the
/// inputs (error samples, negatives, held-out items), which a saved set's manifest keeps as
/// the vectors they resolved to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DebugSetRequest {
    /// The pool to draw from.
    pub pool: String,
    /// Error samples.
    #[serde(skip)]
    pub errors: Vec<ErrorSample>,
    /// Where `QueryInput::Key` error samples live (None: `pool`).
    pub errors_pool: Option<String>,
    /// Neighbours per error sample.
    pub k: usize,
    /// Merge, budget, distance cap, duplicates.
    pub merge: MergeParams,
    /// Only items with one of these weak labels.
    pub labels: Vec<String>,
    /// Keys never returned (e.g. a held-out set).
    pub exclude_keys: Vec<String>,
    /// Brute force instead of HNSW.
    pub exact: bool,
    /// Widen the HNSW candidates 4x and re-rank them by exact distance.
    pub exact_rerank: bool,
    /// HNSW beam (None: the index default).
    pub ef: Option<usize>,
    /// What to do with weak labels the error samples' labels do not support (None: drop
    /// when any error sample is labelled, else keep).
    pub label_policy: Option<LabelPolicy>,
    /// Inputs the model already handles (keys looked up like the error samples').
    #[serde(skip)]
    pub negatives: Vec<QueryInput>,
    /// A pool whose every item is a negative.
    pub negative_pool: Option<String>,
    /// A candidate whose nearest negative is nearer than this times its distance to the
    /// nearest error sample (squared ℓ2) is dropped.
    pub negative_margin: f32,
    /// Held-out inputs (e.g. the user's test images) the set must stay away from.
    #[serde(skip)]
    pub holdout: Vec<QueryInput>,
    /// A pool whose every item is held out.
    pub holdout_pool: Option<String>,
    /// A candidate this near (squared ℓ2) or nearer to a held-out item is dropped; 0: only
    /// identical vectors (re-encoded copies need a radius).
    pub holdout_radius: f32,
    /// No two items of the set within this squared ℓ2 distance (the nearest to an error
    /// sample is kept); None: no near-duplicate removal.
    pub dedup_distance: Option<f32>,
    /// A trusted reference pool (the model's training set, clean labels): every item gets
    /// its gap to it, and a label estimate fitted on it judges weak labels.
    pub reference_pool: Option<String>,
    /// Candidates whose gap percentile is under this are dropped (needs `reference_pool`).
    pub min_gap_percentile: Option<f32>,
    /// The distance cap as a percentile of the pool's nearest-neighbour distances (instead
    /// of `merge.max_distance`, which the result's request carries as applied).
    pub max_distance_percentile: Option<f32>,
    /// Most failure modes the error samples are grouped into (None: `DEFAULT_MAX_MODES`;
    /// 1: one mode). With a budget, each mode gets a share by its samples' weights.
    pub max_modes: Option<usize>,
    /// MMR diversity: the weight of nearness to the failures against spread, in [0, 1]
    /// (None or 1: the merge's own order).
    pub mmr_lambda: Option<f32>,
    /// Most items of any one label handed to training.
    pub max_per_label: Option<usize>,
    /// Most items of the named labels (override `max_per_label`).
    pub label_caps: BTreeMap<String, usize>,
    /// Budget held for the named labels until each has this many items.
    pub label_targets: BTreeMap<String, usize>,
    /// The reviewed saved set this round follows: its accepted items join the error samples,
    /// its rejected ones the negatives, every item reviewed in it or the rounds before it is
    /// excluded. With no error samples, the set's own inputs are used.
    #[serde(default)]
    pub from_set: Option<String>,
    /// Weight of an accepted item as an error sample (None: 1).
    #[serde(default)]
    pub accepted_weight: Option<f32>,
    /// Also the map and a random sample of the pool of the set's size
    /// ([`DebugSetResult::overview`]). How the set is shown, not how it is built: never in a
    /// manifest.
    #[serde(skip)]
    pub overview: bool,
}

impl DebugSetRequest {
    /// The plain request: each error sample's `k` nearest in `pool`, merged by union, no
    /// rule beyond the server's defaults.
    pub fn new(pool: impl Into<String>, errors: Vec<ErrorSample>, k: usize) -> Self {
        DebugSetRequest {
            pool: pool.into(),
            errors,
            errors_pool: None,
            k,
            merge: MergeParams {
                merge: Default::default(),
                budget: None,
                max_distance: None,
                keep_duplicates: false,
                min_support: 1,
            },
            labels: Vec::new(),
            exclude_keys: Vec::new(),
            exact: false,
            exact_rerank: false,
            ef: None,
            label_policy: None,
            negatives: Vec::new(),
            negative_pool: None,
            negative_margin: 1.0,
            holdout: Vec::new(),
            holdout_pool: None,
            holdout_radius: 0.0,
            dedup_distance: None,
            reference_pool: None,
            min_gap_percentile: None,
            max_distance_percentile: None,
            max_modes: None,
            mmr_lambda: None,
            max_per_label: None,
            label_caps: BTreeMap::new(),
            label_targets: BTreeMap::new(),
            from_set: None,
            accepted_weight: None,
            overview: false,
        }
    }
}

/// Modes the error samples may be grouped into when the request names no cap.
pub const DEFAULT_MAX_MODES: usize = 8;
/// The largest cap a request may name.
pub const MAX_MODES: usize = 64;

/// One failure mode of the set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModeReport {
    /// Its index.
    pub mode: usize,
    /// Its error samples, by request index.
    pub errors: Vec<usize>,
    /// Its share of the budget, where the budget was split.
    pub budget: Option<usize>,
    /// Items of the set in it.
    pub kept: usize,
    /// Where its candidates went.
    pub funnel: Funnel,
}

/// What the reference pool was used for.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReferenceReport {
    /// Its name.
    pub pool: String,
    /// Its items when the set was built.
    pub items: u64,
    /// Pool rows whose gaps rank the items' gaps.
    pub gap_sample: usize,
    /// The label estimate, where one could be fitted.
    pub label_estimate: Option<EstimateReport>,
    /// Why there is no label estimate.
    pub no_label_estimate: Option<String>,
}

/// The label estimate fitted on the reference.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EstimateReport {
    /// Its classes.
    pub classes: Vec<String>,
    /// Items it was fitted on (a sample of the reference, and the labelled error samples).
    pub fitted_on: usize,
    /// Labelled error samples among them.
    pub error_samples: usize,
    /// Share of those items it labels as given.
    pub train_accuracy: f32,
}

/// A candidate the holdout removed, as reported.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CollisionReport {
    /// Pool row of the candidate.
    pub row: RowId,
    /// Its key.
    pub key: String,
    /// The held-out item: "holdout[i]", or the key of the holdout pool's item.
    pub held_out: String,
    /// Distance between the two.
    pub distance: f32,
}

/// Collisions listed in a summary (all are counted in the funnel).
pub const MAX_COLLISIONS_REPORTED: usize = 10_000;

/// A candidate a negative removed, as reported.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VetoReport {
    /// Pool row of the candidate.
    pub row: RowId,
    /// Its key.
    pub key: String,
    /// Its distance to the nearest error sample.
    pub distance: f32,
    /// The negative: "negatives[i]", or the key of the negative pool's item.
    pub negative: String,
    /// Distance between the two.
    pub negative_distance: f32,
}

/// Vetoes listed in a summary (all are counted in the funnel).
pub const MAX_VETOES_REPORTED: usize = 1000;

/// An item of the debug-train set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DebugItem {
    /// Pool row.
    pub row: RowId,
    /// Item key (URI).
    pub key: String,
    /// Weak label.
    pub label: Option<String>,
    /// Smallest distance to an error sample.
    pub best_distance: f32,
    /// How many error samples found it.
    pub support: usize,
    /// Which error samples found it, at which rank.
    pub found_by: Vec<Finding>,
    /// Squared ℓ2 to the nearest reference item (with a reference pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<f32>,
    /// Share of the pool nearer to the reference than this item (with a reference pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_percentile: Option<f32>,
    /// Share of the pool's nearest-neighbour distances under `best_distance` (with a
    /// percentile distance cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_percentile: Option<f32>,
    /// Failure mode of the nearest error sample that found it.
    pub mode: usize,
    /// The label vote on its weak label, and the label to train with where replaced.
    #[serde(flatten)]
    pub labels: LabelVerdict,
}

impl DebugItem {
    /// The label handed to training: the suggested one, else the weak one.
    pub fn train_label(&self) -> Option<&str> {
        self.labels
            .suggested_label
            .as_deref()
            .or(self.label.as_deref())
    }
}

/// What the set does for one error sample.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ErrorCoverage {
    /// Neighbours found within the distance cap.
    pub found: usize,
    /// Of them in the set.
    pub kept: usize,
    /// Distance to its nearest neighbour.
    pub nearest: Option<f32>,
    /// Why this error sample could not be used (its image did not decode, ...).
    pub error: Option<String>,
    /// Where the candidates of its own list went.
    pub funnel: Funnel,
    /// Its failure mode.
    pub mode: usize,
}

/// A debug-train set and its summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DebugSetResult {
    /// The items, in the merge's order.
    pub items: Vec<DebugItem>,
    /// One per error sample, in request order.
    pub coverage: Vec<ErrorCoverage>,
    /// Items per label handed to training (suggested, else weak; "" for unlabelled).
    pub label_counts: BTreeMap<String, u64>,
    /// Where the candidates went, over all error samples.
    pub funnel: Funnel,
    /// Candidates the negatives removed (the first `MAX_VETOES_REPORTED`).
    pub vetoes: Vec<VetoReport>,
    /// Candidates the holdout removed (the first `MAX_COLLISIONS_REPORTED`).
    pub collisions: Vec<CollisionReport>,
    /// What the reference pool was used for.
    pub reference: Option<ReferenceReport>,
    /// One per failure mode.
    pub modes: Vec<ModeReport>,
    /// Mean silhouette of the modes (None: one mode).
    pub mode_silhouette: Option<f32>,
    /// Label targets not met: how many items each is short.
    pub label_shortfall: BTreeMap<String, usize>,
    /// Best distances of the items.
    pub distances: Option<Quantiles>,
    /// The request as applied (defaults filled in).
    pub request: DebugSetRequest,
    /// Backbone of the pool (None: raw vectors).
    pub backbone: Option<String>,
    /// Search engine used.
    pub engine: String,
    /// Items in the pool when the set was built.
    pub pool_items: u64,
    /// Exclusion keys that matched a pool item.
    pub excluded: usize,
    /// How the reviews of the set it follows were used (with `from_set`).
    pub round: Option<super::RoundReport>,
    /// Where the set lies against a random sample of the pool (with `overview`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overview: Option<super::SetOverview>,
}
