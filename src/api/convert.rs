//! Conversions between the generated wire types and the service's domain types.

use std::collections::{BTreeMap, HashMap};

use tonic::Status;

use super::pb;
use crate::debugset::{ErrorLabel, Finding, Funnel, LabelPolicy, Merge, MergeParams, Quantiles};
use crate::service::{
    DebugItem, DebugSetRequest, DebugSetResult, ErrorSample, EstimateReport, Hit, IngestItem,
    ItemContent, PoolDetails, QueryInput, ReferenceReport, StreamSummary,
};
use crate::store::{EntryOutcome, JobRecord, JobState, PoolRecord};
use crate::types::Dtype;

pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid {field}: {reason}"))
}

pub fn dtype(d: i32) -> Result<Dtype, Status> {
    match pb::Dtype::try_from(d) {
        Ok(pb::Dtype::Unspecified | pb::Dtype::F32) => Ok(Dtype::F32),
        Ok(pb::Dtype::F16) => Ok(Dtype::F16),
        Err(_) => Err(invalid(
            "dtype",
            format!("{d} is not a dtype; use DTYPE_F32 or DTYPE_F16"),
        )),
    }
}

/// A pool's ViT pooling; empty means the default.
pub fn pooling(p: &str) -> Result<Option<crate::settings::Pooling>, Status> {
    if p.is_empty() {
        return Ok(None);
    }
    p.parse().map(Some).map_err(|e| invalid("pooling", e))
}

/// The wire's name of a storage type.
pub fn dtype_pb(d: Dtype) -> pb::Dtype {
    match d {
        Dtype::F32 => pb::Dtype::F32,
        Dtype::F16 => pb::Dtype::F16,
    }
}

pub fn pool(r: &PoolRecord) -> pb::Pool {
    pb::Pool {
        name: r.name.clone(),
        dim: r.dim as u32,
        dtype: dtype_pb(r.dtype) as i32,
        backbone: r.backbone.clone().unwrap_or_default(),
        items: r.rows,
        created_unix_ms: r.created_at * 1000,
        weights: r.weights.clone().unwrap_or_default(),
        pooling: r.pooling.clone().unwrap_or_default(),
    }
}

pub fn pool_details(d: &PoolDetails, jobs: Vec<pb::Job>) -> pb::PoolDetails {
    let unlabelled = d.labels.get("").copied().unwrap_or(0);
    let indexed = d.index.indexed_rows.unwrap_or(0) as u64;
    pb::PoolDetails {
        pool: Some(pool(&d.record)),
        label_counts: d
            .labels
            .iter()
            .filter(|(l, _)| !l.is_empty())
            .map(|(l, n)| (l.clone(), *n))
            .collect(),
        unlabelled,
        index: Some(pb::IndexState {
            engine: "native".into(),
            indexed_items: indexed,
            up_to_date: d.index.indexed_rows.is_some() && indexed == d.record.rows,
            m: d.index.params.map_or(0, |p| p.m as u32),
            ef_construction: d.index.params.map_or(0, |p| p.ef_construction as u32),
            problem: d.index.problem.clone().unwrap_or_default(),
        }),
        jobs_total: jobs.len() as u64,
        jobs,
    }
}

pub fn query(i: usize, q: pb::Query) -> Result<QueryInput, Status> {
    match q.source {
        Some(pb::query::Source::Image(bytes)) => Ok(QueryInput::Image {
            name: format!("query {i}"),
            bytes,
        }),
        Some(pb::query::Source::Vector(v)) => Ok(QueryInput::Vector(v.values)),
        Some(pb::query::Source::ItemKey(k)) => Ok(QueryInput::Key(k)),
        None => Err(invalid(
            "queries",
            format!("query {i} is empty: set image, vector or item_key"),
        )),
    }
}

pub fn hit(h: Hit) -> pb::Hit {
    pb::Hit {
        row: h.row as u64,
        key: h.key,
        label: h.label.unwrap_or_default(),
        distance: h.distance,
    }
}

pub fn ingest_item(item: pb::IngestItem) -> Result<IngestItem, Status> {
    let content = match item.content {
        Some(pb::ingest_item::Content::Image(b)) => ItemContent::Image(b),
        Some(pb::ingest_item::Content::Vector(v)) => ItemContent::Vector(v.values),
        None => {
            return Err(invalid(
                "items",
                format!("item {:?} has no content: set image or vector", item.key),
            ))
        }
    };
    Ok(IngestItem {
        key: item.key,
        label: Some(item.label).filter(|l| !l.is_empty()),
        metadata: Some(item.metadata_json).filter(|m| !m.is_empty()),
        content,
        content_sha256: Some(item.content_sha256).filter(|h| !h.is_empty()),
    })
}

pub fn ingest_summary(s: StreamSummary) -> pb::IngestSummary {
    pb::IngestSummary {
        received: s.received,
        stored: s.stored,
        duplicates: s.duplicates,
        failed: s.failed,
        errors: s
            .errors
            .into_iter()
            .map(|(key, reason)| pb::ItemError { key, reason })
            .collect(),
        pool_items: s.pool_items,
        present: s.present,
        outcomes: s
            .outcomes
            .into_iter()
            .map(|(key, outcome)| {
                let (outcome, reason) = match outcome {
                    EntryOutcome::Stored => (pb::IngestOutcome::Stored, String::new()),
                    EntryOutcome::Present => (pb::IngestOutcome::Present, String::new()),
                    EntryOutcome::Duplicate(of) => (pb::IngestOutcome::Duplicate, of),
                    EntryOutcome::Failed(reason) => (pb::IngestOutcome::Failed, reason),
                };
                pb::ItemOutcome {
                    key,
                    outcome: outcome as i32,
                    reason,
                }
            })
            .collect(),
    }
}

pub fn job(j: &JobRecord, problems: Vec<(String, String, String)>) -> pb::Job {
    let state = match j.state {
        JobState::Pending => pb::JobState::Pending,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    };
    pb::Job {
        id: j.id.clone(),
        pool: j.pool.clone(),
        state: state as i32,
        total: j.total,
        done: j.tally.done(),
        stored: j.tally.stored,
        duplicates: j.tally.duplicates,
        failed: j.tally.failed,
        errors: problems
            .into_iter()
            .map(|(key, outcome, detail)| pb::ItemError {
                key,
                reason: if outcome == "duplicate" {
                    format!("duplicate of {detail}")
                } else {
                    detail
                },
            })
            .collect(),
        error: j.error.clone().unwrap_or_default(),
        created_unix_ms: j.created_at * 1000,
        finished_unix_ms: j.finished_at.unwrap_or(0) * 1000,
        present: j.tally.present,
        source: j.source.path().display().to_string(),
    }
}

pub fn debug_set_request(r: &pb::BuildDebugSetRequest) -> Result<DebugSetRequest, Status> {
    let merge = match pb::Merge::try_from(r.merge) {
        Ok(pb::Merge::Unspecified | pb::Merge::Union) => Merge::Union,
        Ok(pb::Merge::RoundRobin) => Merge::RoundRobin,
        Ok(pb::Merge::GlobalTop) => Merge::GlobalTop,
        Ok(pb::Merge::Mean) => Merge::Mean,
        Err(_) => return Err(invalid("merge", format!("{} is not a merge mode", r.merge))),
    };
    let errors = r
        .errors
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| error_sample(i, e))
        .collect::<Result<_, _>>()?;
    if pb::LabelPolicy::try_from(r.label_policy).is_err() {
        return Err(invalid(
            "label_policy",
            format!("{} is not a label policy", r.label_policy),
        ));
    }
    let label_policy = label_policy_of(r.label_policy);
    Ok(DebugSetRequest {
        pool: r.pool.clone(),
        errors,
        errors_pool: Some(r.errors_pool.clone()).filter(|p| !p.is_empty()),
        k: r.k as usize,
        merge: MergeParams {
            merge,
            budget: r.budget.map(|b| b as usize),
            max_distance: r.max_distance,
            keep_duplicates: r.keep_duplicates,
            min_support: (r.min_support as usize).max(1),
        },
        labels: r.labels.clone(),
        exclude_keys: r.exclude_keys.clone(),
        exact: r.exact,
        exact_rerank: r.exact_rerank,
        ef: Some(r.ef as usize).filter(|&e| e > 0),
        label_policy,
        negatives: r
            .negatives
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, q)| query(i, q))
            .collect::<Result<_, _>>()?,
        negative_pool: Some(r.negative_pool.clone()).filter(|p| !p.is_empty()),
        negative_margin: r.negative_margin.unwrap_or(1.0),
        holdout: r
            .holdout
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, q)| query(i, q))
            .collect::<Result<_, _>>()?,
        holdout_pool: Some(r.holdout_pool.clone()).filter(|p| !p.is_empty()),
        holdout_radius: r.holdout_radius.unwrap_or(0.0),
        dedup_distance: r.dedup_distance,
        reference_pool: Some(r.reference_pool.clone()).filter(|p| !p.is_empty()),
        min_gap_percentile: r.min_gap_percentile,
        max_distance_percentile: r.max_distance_percentile,
        max_modes: r.max_modes.map(|m| m as usize),
        mmr_lambda: r.mmr_lambda,
        max_per_label: r.max_per_label.map(|m| m as usize),
        label_caps: counts_of(&r.label_caps),
        label_targets: counts_of(&r.label_targets),
        from_set: Some(r.from_set.clone()).filter(|s| !s.is_empty()),
        accepted_weight: r.accepted_weight,
        overview: r.overview,
    })
}

/// A debug-set request on the wire (the client's side of [`debug_set_request`]).
pub fn wire_debug_set_request(req: &DebugSetRequest) -> pb::BuildDebugSetRequest {
    pb::BuildDebugSetRequest {
        pool: req.pool.clone(),
        errors: req.errors.iter().map(wire_error_sample).collect(),
        errors_pool: req.errors_pool.clone().unwrap_or_default(),
        k: req.k as u32,
        // Saving is the caller's to ask (RemoteService::save_debug_set).
        save_as: String::new(),
        parent: String::new(),
        merge: wire_merge(req.merge.merge) as i32,
        budget: req.merge.budget.map(|b| b as u32),
        max_distance: req.merge.max_distance,
        labels: req.labels.clone(),
        exclude_keys: req.exclude_keys.clone(),
        exact_rerank: req.exact_rerank,
        exact: req.exact,
        ef: req.ef.unwrap_or(0) as u32,
        keep_duplicates: req.merge.keep_duplicates,
        min_support: req.merge.min_support as u32,
        label_policy: req
            .label_policy
            .map_or(pb::LabelPolicy::Unspecified, label_policy) as i32,
        negatives: req.negatives.iter().map(wire_query).collect(),
        negative_pool: req.negative_pool.clone().unwrap_or_default(),
        negative_margin: Some(req.negative_margin),
        holdout: req.holdout.iter().map(wire_query).collect(),
        holdout_pool: req.holdout_pool.clone().unwrap_or_default(),
        holdout_radius: Some(req.holdout_radius),
        dedup_distance: req.dedup_distance,
        reference_pool: req.reference_pool.clone().unwrap_or_default(),
        min_gap_percentile: req.min_gap_percentile,
        max_distance_percentile: req.max_distance_percentile,
        max_modes: req.max_modes.map(|m| m as u32),
        mmr_lambda: req.mmr_lambda,
        max_per_label: req.max_per_label.map(|m| m as u32),
        label_caps: wire_counts(&req.label_caps),
        label_targets: wire_counts(&req.label_targets),
        from_set: req.from_set.clone().unwrap_or_default(),
        accepted_weight: req.accepted_weight,
        overview: req.overview,
    }
}

/// A merge on the wire.
fn wire_merge(m: Merge) -> pb::Merge {
    match m {
        Merge::Union => pb::Merge::Union,
        Merge::RoundRobin => pb::Merge::RoundRobin,
        Merge::GlobalTop => pb::Merge::GlobalTop,
        Merge::Mean => pb::Merge::Mean,
    }
}

/// An error sample on the wire.
pub fn wire_error_sample(e: &ErrorSample) -> pb::ErrorSample {
    pb::ErrorSample {
        label: e.truth.label.clone().unwrap_or_default(),
        weight: e.truth.weight,
        ..wire_query(&e.input).into()
    }
}

/// Per-label counts on the wire.
fn wire_counts(m: &BTreeMap<String, usize>) -> HashMap<String, u32> {
    m.iter().map(|(l, &c)| (l.clone(), c as u32)).collect()
}

/// Per-label counts off the wire, in label order.
fn counts_of(m: &HashMap<String, u32>) -> BTreeMap<String, usize> {
    m.iter().map(|(l, &c)| (l.clone(), c as usize)).collect()
}

/// An error sample off the wire: its input as a query, an empty label as none, weight 0 as 1.
pub fn error_sample(i: usize, e: pb::ErrorSample) -> Result<ErrorSample, Status> {
    let source = e.source.map(|s| match s {
        pb::error_sample::Source::Image(b) => pb::query::Source::Image(b),
        pb::error_sample::Source::Vector(v) => pb::query::Source::Vector(v),
        pb::error_sample::Source::ItemKey(k) => pb::query::Source::ItemKey(k),
    });
    Ok(ErrorSample {
        input: query(i, pb::Query { source })?,
        truth: ErrorLabel {
            label: Some(e.label).filter(|l| !l.is_empty()),
            weight: if e.weight == 0.0 { 1.0 } else { e.weight },
        },
    })
}

/// The wire form of a label policy.
pub fn label_policy(p: LabelPolicy) -> pb::LabelPolicy {
    match p {
        LabelPolicy::Keep => pb::LabelPolicy::Keep,
        LabelPolicy::Drop => pb::LabelPolicy::Drop,
        LabelPolicy::Replace => pb::LabelPolicy::Replace,
    }
}

/// A query on the wire.
pub fn wire_query(q: &QueryInput) -> pb::Query {
    pb::Query {
        source: Some(match q {
            QueryInput::Image { bytes, .. } => pb::query::Source::Image(bytes.clone()),
            QueryInput::Vector(v) => pb::query::Source::Vector(pb::Vector { values: v.clone() }),
            QueryInput::Key(k) => pb::query::Source::ItemKey(k.clone()),
        }),
    }
}

/// A label policy off the wire (unspecified or unknown: None, the server's default).
pub fn label_policy_of(p: i32) -> Option<LabelPolicy> {
    match pb::LabelPolicy::try_from(p) {
        Ok(pb::LabelPolicy::Keep) => Some(LabelPolicy::Keep),
        Ok(pb::LabelPolicy::Drop) => Some(LabelPolicy::Drop),
        Ok(pb::LabelPolicy::Replace) => Some(LabelPolicy::Replace),
        Ok(pb::LabelPolicy::Unspecified) | Err(_) => None,
    }
}

/// A funnel off the wire.
pub fn funnel_of(f: &pb::Funnel) -> Funnel {
    Funnel {
        candidates: f.candidates as usize,
        distance_cap: f.distance_cap as usize,
        negatives: f.negatives as usize,
        gap: f.gap as usize,
        dedup: f.dedup as usize,
        holdout: f.holdout as usize,
        min_support: f.min_support as usize,
        label_policy: f.label_policy as usize,
        label_cap: f.label_cap as usize,
        diversity: f.diversity as usize,
        budget: f.budget as usize,
        kept: f.kept as usize,
    }
}

fn funnel(f: &Funnel) -> pb::Funnel {
    pb::Funnel {
        candidates: f.candidates as u32,
        distance_cap: f.distance_cap as u32,
        negatives: f.negatives as u32,
        gap: f.gap as u32,
        dedup: f.dedup as u32,
        holdout: f.holdout as u32,
        min_support: f.min_support as u32,
        label_policy: f.label_policy as u32,
        label_cap: f.label_cap as u32,
        diversity: f.diversity as u32,
        budget: f.budget as u32,
        kept: f.kept as u32,
    }
}

fn finding(f: &Finding) -> pb::Finding {
    pb::Finding {
        error_index: f.error as u32,
        rank: f.rank as u32,
        distance: f.distance,
    }
}

pub fn debug_item(i: DebugItem) -> pb::DebugItem {
    pb::DebugItem {
        row: i.row as u64,
        key: i.key,
        label: i.label.unwrap_or_default(),
        best_distance: i.best_distance,
        found_by: i.found_by.iter().map(finding).collect(),
        support: i.support as u32,
        suggested_label: i.labels.suggested_label,
        label_confidence: i.labels.label_confidence,
        weak_label_plausible: i.labels.weak_label_plausible,
        gap: i.gap,
        gap_percentile: i.gap_percentile,
        distance_percentile: i.distance_percentile,
        mode: i.mode as u32,
    }
}

/// The reference report on the wire.
pub fn reference(r: &ReferenceReport) -> pb::Reference {
    pb::Reference {
        pool: r.pool.clone(),
        items: r.items,
        gap_sample: r.gap_sample as u32,
        label_estimate: r.label_estimate.as_ref().map(|e| pb::LabelEstimate {
            classes: e.classes.clone(),
            fitted_on: e.fitted_on as u32,
            error_samples: e.error_samples as u32,
            train_accuracy: e.train_accuracy,
        }),
        no_label_estimate: r.no_label_estimate.clone().unwrap_or_default(),
    }
}

/// The reference report off the wire.
pub fn reference_of(r: &pb::Reference) -> ReferenceReport {
    ReferenceReport {
        pool: r.pool.clone(),
        items: r.items,
        gap_sample: r.gap_sample as usize,
        label_estimate: r.label_estimate.as_ref().map(|e| EstimateReport {
            classes: e.classes.clone(),
            fitted_on: e.fitted_on as usize,
            error_samples: e.error_samples as usize,
            train_accuracy: e.train_accuracy,
        }),
        no_label_estimate: Some(r.no_label_estimate.clone()).filter(|w| !w.is_empty()),
    }
}

fn quantiles(q: Quantiles) -> pb::Quantiles {
    pb::Quantiles {
        min: q.min,
        p10: q.p10,
        p50: q.p50,
        p90: q.p90,
        max: q.max,
    }
}

/// The summary, with the request echoed as applied (defaults filled in).
pub fn debug_set_summary(
    r: &DebugSetResult,
    wire: &pb::BuildDebugSetRequest,
) -> pb::DebugSetSummary {
    let mut applied = wire.clone();
    applied.errors.clear();
    applied.negatives.clear();
    applied.holdout.clear();
    applied.holdout_radius = Some(r.request.holdout_radius);
    applied.negative_margin = Some(r.request.negative_margin);
    applied.merge = wire_merge(r.request.merge.merge) as i32;
    applied.min_support = r.request.merge.min_support as u32;
    applied.max_distance = r.request.merge.max_distance;
    if let Some(p) = r.request.label_policy {
        applied.label_policy = label_policy(p) as i32;
    }
    pb::DebugSetSummary {
        // Set by the handler that saved it.
        saved_as: String::new(),
        round: r.round.as_ref().map(|r| pb::Round {
            from_set: r.from_set.clone(),
            accepted: r.accepted as u32,
            rejected: r.rejected as u32,
            first_accepted_error: r.first_accepted_error as u32,
            inherited_inputs: r.inherited_inputs,
        }),
        coverage: r
            .coverage
            .iter()
            .enumerate()
            .map(|(i, c)| pb::ErrorCoverage {
                error_index: i as u32,
                found: c.found as u32,
                kept: c.kept as u32,
                nearest: c.nearest.unwrap_or(0.0),
                error: c.error.clone().unwrap_or_default(),
                funnel: Some(funnel(&c.funnel)),
                mode: c.mode as u32,
            })
            .collect(),
        label_counts: r.label_counts.clone().into_iter().collect(),
        distances: r.distances.map(quantiles),
        parameters: Some(applied),
        backbone: r.backbone.clone().unwrap_or_default(),
        engine: r.engine.clone(),
        pool_items: r.pool_items,
        excluded: r.excluded as u32,
        funnel: Some(funnel(&r.funnel)),
        vetoes: r
            .vetoes
            .iter()
            .map(|v| pb::Veto {
                row: v.row as u64,
                key: v.key.clone(),
                distance: v.distance,
                negative: v.negative.clone(),
                negative_distance: v.negative_distance,
            })
            .collect(),
        collisions: r
            .collisions
            .iter()
            .map(|c| pb::Collision {
                row: c.row as u64,
                key: c.key.clone(),
                held_out: c.held_out.clone(),
                distance: c.distance,
            })
            .collect(),
        reference: r.reference.as_ref().map(reference),
        modes: r
            .modes
            .iter()
            .map(|m| pb::FailureMode {
                mode: m.mode as u32,
                error_indices: m.errors.iter().map(|&e| e as u32).collect(),
                budget: m.budget.map(|b| b as u32),
                kept: m.kept as u32,
                funnel: Some(funnel(&m.funnel)),
            })
            .collect(),
        mode_silhouette: r.mode_silhouette,
        label_shortfall: r
            .label_shortfall
            .iter()
            .map(|(l, &n)| (l.clone(), n as u32))
            .collect(),
        overview_json: r
            .overview
            .as_ref()
            .map(|o| serde_json::to_string(o).expect("an overview is plain data"))
            .unwrap_or_default(),
    }
}
