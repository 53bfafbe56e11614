//! What a debug-set request must satisfy before any pool is opened; each refusal names the
//! field and says how to fix it.

use super::DebugSetRequest;
use crate::debugset::{LabelPolicy, Merge};
use crate::index::MAX_K;
use crate::service::query::check_k;
use crate::service::Result;
use crate::service::ServiceError;

/// Checks everything about a request that needs no pool: sizes, distances, margins, the
/// error samples' labels and weights. Returns the label policy as applied and how deep each
/// error sample is searched.
pub(super) fn check_request(req: &DebugSetRequest) -> Result<(LabelPolicy, usize)> {
    check_k(req.k)?;
    if req.merge.budget == Some(0) {
        return Err(ServiceError::InvalidArgument {
            field: "budget",
            reason: "a budget must be at least 1 (leave it out for no limit)".into(),
        });
    }
    if let Some(d) = req.merge.max_distance {
        if !(d.is_finite() && d > 0.0) {
            return Err(ServiceError::InvalidArgument {
                field: "max_distance",
                reason: format!(
                    "{d} must be a positive squared distance (leave it out for no cap)"
                ),
            });
        }
    }
    if let Some(p) = req.max_distance_percentile {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ServiceError::InvalidArgument {
                field: "max_distance_percentile",
                reason: format!(
                    "{p} must be a share above 0 and at most 1 of the pool's nearest-neighbour distances (0.2: no farther than the closest 20% of pairs)"
                ),
            });
        }
        if req.merge.max_distance.is_some() {
            return Err(ServiceError::InvalidArgument {
                field: "max_distance_percentile",
                reason: "give the distance cap once: as max_distance or as a percentile".into(),
            });
        }
    }
    if let Some(m) = req.max_modes {
        if m == 0 || m > super::request::MAX_MODES {
            return Err(ServiceError::InvalidArgument {
                field: "max_modes",
                reason: format!(
                    "{m} modes: give 1 (no grouping) to {}",
                    super::request::MAX_MODES
                ),
            });
        }
    }
    if !req.errors.is_empty() && req.merge.min_support > req.errors.len() {
        return Err(ServiceError::InvalidArgument {
            field: "min_support",
            reason: format!(
                "{} is more than the {} error samples sent: no item could be found that often; lower it or send more error samples",
                req.merge.min_support,
                req.errors.len()
            ),
        });
    }
    let policy = check_rules(req)?;
    check_selection(req)?;
    let depth = req.merge.search_depth(req.k);
    if depth > MAX_K {
        return Err(ServiceError::InvalidArgument {
            field: "budget",
            reason: format!(
                "global_top searches each error sample as deep as the budget ({depth}); keep it at most {MAX_K}"
            ),
        });
    }
    Ok((policy, depth))
}

/// Checks the negative margin and the error samples' labels and weights, and settles the
/// label policy.
fn check_rules(req: &DebugSetRequest) -> Result<LabelPolicy> {
    let m = req.negative_margin;
    if !(m.is_finite() && m > 0.0) {
        return Err(ServiceError::InvalidArgument {
            field: "negative_margin",
            reason: format!(
                "{m} must be a positive ratio of squared distances (1: drop candidates plainly nearer to a negative)"
            ),
        });
    }
    if let Some(d) = req.dedup_distance {
        if !(d.is_finite() && d > 0.0) {
            return Err(ServiceError::InvalidArgument {
                field: "dedup_distance",
                reason: format!(
                    "{d} must be a positive squared distance (leave it out to keep near-duplicates)"
                ),
            });
        }
    }
    let r = req.holdout_radius;
    if !(r.is_finite() && r >= 0.0) {
        return Err(ServiceError::InvalidArgument {
            field: "holdout_radius",
            reason: format!(
                "{r} must be a squared distance of 0 or more (0: only identical vectors collide)"
            ),
        });
    }
    for (i, e) in req.errors.iter().enumerate() {
        let w = e.truth.weight;
        if !(w.is_finite() && w > 0.0) {
            return Err(ServiceError::InvalidArgument {
                field: "errors",
                reason: format!(
                    "error sample {i} has weight {w}: give a positive, finite weight (or none for 1)"
                ),
            });
        }
        if let Some(label) = &e.truth.label {
            if label.is_empty() || label.len() > crate::store::MAX_LABEL_BYTES {
                return Err(ServiceError::InvalidArgument {
                    field: "errors",
                    reason: format!(
                        "error sample {i} has a label of {} bytes: give 1 to {} bytes, or none",
                        label.len(),
                        crate::store::MAX_LABEL_BYTES
                    ),
                });
            }
        }
    }
    if let Some(p) = req.min_gap_percentile {
        if !(0.0..=1.0).contains(&p) {
            return Err(ServiceError::InvalidArgument {
                field: "min_gap_percentile",
                reason: format!("{p} must be a share between 0 and 1 (0.5: farther from the reference than half the pool)"),
            });
        }
        if req.reference_pool.is_none() {
            return Err(ServiceError::InvalidArgument {
                field: "min_gap_percentile",
                reason: "a gap is the distance to a reference pool, and none was named: name one (e.g. the model's training set) or leave the minimum out".into(),
            });
        }
    }
    let labelled = req.errors.iter().any(|e| e.truth.label.is_some());
    let evidence = labelled || req.reference_pool.is_some();
    match req.label_policy {
        Some(p @ (LabelPolicy::Drop | LabelPolicy::Replace)) if !evidence => {
            Err(ServiceError::InvalidArgument {
                field: "label_policy",
                reason: format!(
                    "{p} judges weak labels by the error samples' true labels or a reference pool, and neither was given: label the error samples (e.g. an ImageFolder of them), name a reference pool, or use keep"
                ),
            })
        }
        Some(p) => Ok(p),
        // A reference alone does not make drop the default: its estimate, applied, cost
        // mnist-zigzag its gain over random (docs/debug-sets.md); it is reported instead.
        None => Ok(LabelPolicy::default_for(labelled)),
    }
}

/// Checks diversity and the per-label caps and targets.
fn check_selection(req: &DebugSetRequest) -> Result<()> {
    let invalid = |field: &'static str, reason: String| -> Result<()> {
        Err(ServiceError::InvalidArgument { field, reason })
    };
    if let Some(l) = req.mmr_lambda {
        if !(0.0..=1.0).contains(&l) {
            return invalid(
                "mmr_lambda",
                format!("{l} must be between 0 (spread only) and 1 (nearness only, no diversity)"),
            );
        }
        if req.merge.merge == Merge::RoundRobin {
            return invalid(
                "mmr_lambda",
                "round_robin fixes its own order (rank by rank); use union, global_top or mean with diversity".into(),
            );
        }
    }
    if req.max_per_label == Some(0) {
        return invalid(
            "max_per_label",
            "0 would leave the set empty: give at least 1, or leave it out for no cap".into(),
        );
    }
    for (field, counts) in [
        ("label_caps", &req.label_caps),
        ("label_targets", &req.label_targets),
    ] {
        if let Some((label, _)) = counts.iter().find(|(_, &n)| n == 0) {
            return invalid(
                field,
                format!("{label:?} has 0: give at least 1, or leave the label out"),
            );
        }
    }
    if req.label_targets.is_empty() {
        return Ok(());
    }
    let Some(budget) = req.merge.budget else {
        return invalid(
            "label_targets",
            "targets hold part of a budget for some labels, and there is no budget: set one".into(),
        );
    };
    let held: usize = req.label_targets.values().sum();
    if held > budget {
        return invalid(
            "label_targets",
            format!("the targets add up to {held} items, more than the budget of {budget}: lower them or raise the budget"),
        );
    }
    for (label, &target) in &req.label_targets {
        let cap = req.label_caps.get(label).copied().or(req.max_per_label);
        if let Some(cap) = cap.filter(|&c| c < target) {
            return invalid(
                "label_targets",
                format!("{label:?} has a target of {target} but a cap of {cap}: the target could never be met"),
            );
        }
    }
    Ok(())
}
