//! Rounds of review: a set built `from_set` a reviewed saved set. The saved set's accepted
//! and relabelled items join the error samples (under the reviewer's label, else the label
//! they were handed, with `accepted_weight`), its rejected items join the negatives, and every
//! item reviewed in it or in the rounds before it is excluded. What a round carries forward
//! is kept in its manifest by key and row, so the chain accumulates and a saved round rebuilds
//! exactly even after its parent is reviewed further.

use std::collections::HashMap;

use serde::Serialize;

use super::manifest::{inputs_of, CarriedItem, ReviewCarry, SetManifest};
use super::{DebugSetRequest, ErrorSample};
use crate::debugset::ErrorLabel;
use crate::service::{QueryInput, Result, Service, ServiceError};
use crate::store::Verdict;
use crate::types::RowId;

/// How a round used its parent's reviews.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundReport {
    /// The reviewed set it follows.
    pub from_set: String,
    /// Accepted items that joined the error samples (this round's and earlier ones').
    pub accepted: usize,
    /// Rejected items that joined the negatives.
    pub rejected: usize,
    /// Index of the first error sample that came from a review (the ones before it were
    /// sent, or taken from the parent).
    pub first_accepted_error: usize,
    /// Whether the error samples, negatives and held-out inputs were the parent's (the
    /// request sent none).
    pub inherited_inputs: bool,
}

/// Weight of an accepted item as an error sample when the request names none.
pub const DEFAULT_ACCEPTED_WEIGHT: f32 = 1.0;

impl Service {
    /// The round `req` asks for: its own inputs (or, where it sends no error samples, its
    /// parent's), and what the reviews carry. Nothing is resolved against the carry yet.
    pub(super) fn round_of(
        &self,
        req: &DebugSetRequest,
        parent: &str,
    ) -> Result<(DebugSetRequest, ReviewCarry, bool)> {
        let weight = req.accepted_weight.unwrap_or(DEFAULT_ACCEPTED_WEIGHT);
        if !(weight.is_finite() && weight > 0.0) {
            return Err(ServiceError::InvalidArgument {
                field: "accepted_weight",
                reason: format!(
                    "{weight} must be a positive weight for accepted items as error samples (1: as much say as a sent one)"
                ),
            });
        }
        let saved = self.saved_debug_set(parent)?;
        if saved.record.pool != req.pool {
            return Err(ServiceError::InvalidArgument {
                field: "from_set",
                reason: format!(
                    "saved set {parent:?} was drawn from pool {:?}, not {:?}; a round draws from its parent's pool",
                    saved.record.pool, req.pool
                ),
            });
        }
        let items: HashMap<&str, &crate::store::SavedItem> =
            saved.items.iter().map(|i| (i.key.as_str(), i)).collect();
        let mut carry = saved.manifest.carry.clone();
        let reviewed: std::collections::HashSet<&str> =
            saved.reviews.iter().map(|r| r.key.as_str()).collect();
        carry
            .accepted
            .retain(|c| !reviewed.contains(c.key.as_str()));
        carry
            .rejected
            .retain(|c| !reviewed.contains(c.key.as_str()));
        for r in &saved.reviews {
            let Some(item) = items.get(r.key.as_str()) else {
                continue;
            };
            let carried = |label: Option<String>| CarriedItem {
                key: item.key.clone(),
                row: item.row,
                label,
                weight,
            };
            match &r.verdict {
                Verdict::Accept => carry.accepted.push(carried(item.train_label.clone())),
                Verdict::Relabel(l) => carry.accepted.push(carried(Some(l.clone()))),
                Verdict::Reject => carry.rejected.push(carried(None)),
                Verdict::Clear => {}
            }
        }
        let inherit = req.errors.is_empty();
        let mut base = req.clone();
        if inherit {
            let (errors, negatives, holdout) = inputs_of(&saved.manifest);
            base.errors = errors;
            base.negatives = negatives;
            base.holdout = holdout;
            base.errors_pool = None;
        }
        Ok((base, carry, inherit))
    }

    /// `base` with the carry applied: accepted items appended to the error samples, rejected
    /// ones to the negatives, every carried key excluded; the vectors read from the pool.
    pub(super) fn with_carry(
        &self,
        base: &DebugSetRequest,
        carry: &ReviewCarry,
    ) -> Result<DebugSetRequest> {
        let mut req = base.clone();
        req.from_set = None;
        if carry.accepted.is_empty() && carry.rejected.is_empty() {
            return Ok(req);
        }
        let handle = self.pool(&base.pool)?;
        let rows = handle.rows()?;
        let vectors = |items: &[CarriedItem]| -> Result<Vec<Vec<f32>>> {
            let ids: Vec<RowId> = items.iter().map(|c| c.row).collect();
            if let Some(bad) = ids.iter().find(|&&r| r as usize >= rows.len()) {
                return Err(ServiceError::Internal {
                    what: format!(
                        "a reviewed item's row {bad} is past the end of pool {:?}",
                        base.pool
                    ),
                });
            }
            let m = rows.vectors(&ids)?;
            Ok(m.iter_rows().map(<[f32]>::to_vec).collect())
        };
        for (c, v) in carry.accepted.iter().zip(vectors(&carry.accepted)?) {
            req.errors.push(ErrorSample {
                input: QueryInput::Vector(v),
                truth: ErrorLabel {
                    label: c.label.clone(),
                    weight: c.weight,
                },
            });
        }
        req.negatives.extend(
            vectors(&carry.rejected)?
                .into_iter()
                .map(QueryInput::Vector),
        );
        req.exclude_keys.extend(carry.keys().map(str::to_owned));
        Ok(req)
    }
}

/// The next round after the saved set `parent` (whose manifest is `m`): the same
/// parameters, no inputs of its own (so the parent's are used), following `parent`.
pub fn next_round_request(parent: &str, m: &SetManifest) -> DebugSetRequest {
    let mut req = m.request.clone();
    req.errors.clear();
    req.negatives.clear();
    req.holdout.clear();
    req.errors_pool = None;
    req.from_set = Some(parent.to_owned());
    req
}

/// The report of a round built from `base` (its own inputs) and `carry`.
pub(super) fn round_report(
    parent: &str,
    base: &DebugSetRequest,
    carry: &ReviewCarry,
    inherited: bool,
) -> RoundReport {
    RoundReport {
        from_set: parent.to_owned(),
        accepted: carry.accepted.len(),
        rejected: carry.rejected.len(),
        first_accepted_error: base.errors.len(),
        inherited_inputs: inherited,
    }
}

/// The round report of a saved round, from its manifest.
pub(super) fn round_of_manifest(m: &SetManifest) -> Option<RoundReport> {
    let parent = m.request.from_set.as_deref()?;
    let (base_errors, _, _) = inputs_of(m);
    let mut base = m.request.clone();
    base.errors = base_errors;
    Some(round_report(parent, &base, &m.carry, m.inherited_inputs))
}
