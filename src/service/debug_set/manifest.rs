//! What a saved set's manifest holds: the pool as it was, every input as the vector it
//! resolved to (with a digest of what was sent), and what reviews of earlier rounds carried
//! into it; and the inputs a manifest rebuilds.

use serde::{Deserialize, Serialize};

use super::{DebugSetRequest, ErrorSample};
use crate::debugset::ErrorLabel;
use crate::service::QueryInput;
use crate::types::RowId;

/// The pool a set was drawn from, as it was when the set was saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolAtSave {
    /// Its name.
    pub name: String,
    /// Rows it held (a pool only grows: more rows now means it changed).
    pub rows: u64,
    /// Its identity (hex), where the backend keeps one.
    pub uid: Option<String>,
    /// Vector dimension.
    pub dim: usize,
    /// Backbone that made its vectors.
    pub backbone: Option<String>,
    /// The backbone's weights, as named.
    pub weights: Option<String>,
    /// SHA-256 of the weights file, where the weights are one local file.
    pub weights_sha256: Option<String>,
    /// ViT pooling.
    pub pooling: Option<String>,
}

/// One input of a saved request (an error sample, a negative, a held-out item): the vector
/// it resolved to, or why it could not be used, and a digest of what was sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedInput {
    /// What was sent: `image`, `vector` or `key`.
    pub sent: String,
    /// SHA-256 of the image bytes or of the vector's little-endian f32 bytes; the key itself
    /// for a key.
    pub digest: String,
    /// The vector it resolved to (None: it could not be used).
    pub vector: Option<Vec<f32>>,
    /// Why it could not be used.
    pub failed: Option<String>,
    /// An error sample's true label.
    #[serde(default)]
    pub label: Option<String>,
    /// An error sample's weight.
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// Everything needed to build a saved set again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetManifest {
    /// The dcd that built it.
    pub dcd_version: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The pool as it was.
    pub pool: PoolAtSave,
    /// The other pools the request names (`errors_pool`, `negative_pool`, `holdout_pool`,
    /// `reference_pool`), as they were, by role.
    #[serde(default)]
    pub other_pools: std::collections::BTreeMap<String, PoolAtSave>,
    /// Every parameter of the request (its inputs are below).
    pub request: DebugSetRequest,
    /// The error samples, in order.
    pub errors: Vec<SavedInput>,
    /// The listed negatives.
    pub negatives: Vec<SavedInput>,
    /// The listed held-out inputs.
    pub holdout: Vec<SavedInput>,
    /// What the reviews of earlier rounds added (with `request.from_set`): the error samples,
    /// negatives and exclusions above are the request's own.
    #[serde(default)]
    pub carry: ReviewCarry,
    /// Whether the inputs above were the parent round's (the request sent none).
    #[serde(default)]
    pub inherited_inputs: bool,
}

/// One reviewed item carried into later rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CarriedItem {
    /// Its key.
    pub key: String,
    /// Its row in the pool (rows never change: the pool only grows).
    pub row: RowId,
    /// The label it is trusted with (accepted items; None: unlabelled).
    pub label: Option<String>,
    /// Its weight as an error sample (accepted items).
    pub weight: f32,
}

/// What the reviews of earlier rounds hand to a round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewCarry {
    /// Accepted and relabelled items: extra error samples.
    pub accepted: Vec<CarriedItem>,
    /// Rejected items: extra negatives.
    pub rejected: Vec<CarriedItem>,
}

impl ReviewCarry {
    /// Every carried key: none of them is offered again.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.accepted
            .iter()
            .chain(&self.rejected)
            .map(|c| c.key.as_str())
    }
}

/// A manifest's inputs as the vectors they resolved to: error samples, negatives, held-out
/// inputs. An error sample that could not be used is an empty image, which fails again the
/// same way, so the failure modes and budget shares come out as they did.
pub(super) fn inputs_of(m: &SetManifest) -> (Vec<ErrorSample>, Vec<QueryInput>, Vec<QueryInput>) {
    let errors = m
        .errors
        .iter()
        .enumerate()
        .map(|(i, e)| ErrorSample {
            input: match &e.vector {
                Some(v) => QueryInput::Vector(v.clone()),
                None => QueryInput::Image {
                    name: format!(
                        "error sample {i} ({})",
                        e.failed
                            .as_deref()
                            .unwrap_or("could not be used when saved")
                    ),
                    bytes: Vec::new(),
                },
            },
            truth: ErrorLabel {
                label: e.label.clone(),
                weight: e.weight,
            },
        })
        .collect();
    let vectors = |inputs: &[SavedInput]| -> Vec<QueryInput> {
        inputs
            .iter()
            .filter_map(|i| i.vector.clone().map(QueryInput::Vector))
            .collect()
    };
    (errors, vectors(&m.negatives), vectors(&m.holdout))
}
