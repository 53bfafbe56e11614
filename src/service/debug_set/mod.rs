//! Debug-train sets: the request, the error samples' searches, the merge with its rules
//! (consensus, negatives, the label vote), and the set with its summary.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::nearest;
use super::query::{check_k, check_same_space, label_filter, run_queries};
use super::PoolHandle;
use super::{QueryInput, Service, ServiceError};
use crate::debugset::{
    self, Dedup, ErrorLabel, Finding, Funnel, Holdout, ItemRef, LabelPolicy, LabelTrust,
    LabelVerdict, MergeParams, Negatives, Quantiles, Rules,
};
use crate::error::Result;
use crate::index::manager::Engine;
use crate::index::{SearchParams, MAX_K};
use crate::types::{Neighbor, RowId};

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

/// A debug-train set request.
#[derive(Clone, Debug, serde::Serialize)]
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
}

impl Service {
    /// Builds a debug-train set.
    pub fn build_debug_set(&self, req: &DebugSetRequest) -> Result<DebugSetResult> {
        check_k(req.k)?;
        if req.merge.budget == Some(0) {
            return Err(ServiceError::InvalidArgument {
                field: "budget",
                reason: "a budget must be at least 1 (leave it out for no limit)".into(),
            }
            .into());
        }
        if let Some(d) = req.merge.max_distance {
            if !(d.is_finite() && d > 0.0) {
                return Err(ServiceError::InvalidArgument {
                    field: "max_distance",
                    reason: format!(
                        "{d} must be a positive squared distance (leave it out for no cap)"
                    ),
                }
                .into());
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
            }
            .into());
        }
        let policy = check_rules(req)?;
        let depth = req.merge.search_depth(req.k);
        if depth > MAX_K {
            return Err(ServiceError::InvalidArgument {
                field: "budget",
                reason: format!(
                    "global_top searches each error sample as deep as the budget ({depth}); keep it at most {MAX_K}"
                ),
            }
            .into());
        }
        self.check_hits(req.errors.len(), depth, "error samples")?;
        let handle = self.pool(&req.pool)?;
        let key_pool = match &req.errors_pool {
            Some(name) if name != &req.pool => {
                let other = self.pool(name)?;
                check_same_space(&handle, &other)?;
                other
            }
            _ => handle.clone(),
        };
        let inputs: Vec<&QueryInput> = req.errors.iter().map(|e| &e.input).collect();
        let resolved = self.resolve(&handle, &key_pool, &inputs, "error samples")?;
        let listed_negatives =
            self.resolve_listed(&handle, &key_pool, &req.negatives, "negatives")?;
        nearest::check_negatives_differ(&listed_negatives, &resolved)?;
        let negative_pool = self.other_pool(&handle, req, &req.negative_pool, "negative_pool")?;
        let listed_holdout = self.resolve_listed(&handle, &key_pool, &req.holdout, "holdout")?;
        let holdout_pool = self.other_pool(&handle, req, &req.holdout_pool, "holdout_pool")?;
        let engine = if req.exact {
            Engine::Exact
        } else {
            Engine::Native
        };
        let rerank = req.exact_rerank && !req.exact;
        let ready = handle.ready(engine, rerank)?;
        let pool = ready.pool();
        let (filter, excluded) = match label_filter(pool, &req.labels, &req.exclude_keys)? {
            Some((f, n)) => (Some(f), n),
            None => (None, 0),
        };
        let params = SearchParams {
            k: depth,
            ef: req.ef,
            filter: filter.as_ref(),
        };
        let lists = run_queries(&ready, &resolved, &params, rerank)?;
        let usable: Vec<Vec<Neighbor>> = lists
            .iter()
            .map(|r| r.clone().unwrap_or_default())
            .collect();
        let truths: Vec<ErrorLabel> = req.errors.iter().map(|e| e.truth.clone()).collect();
        let judged = truths.iter().any(|t| t.label.is_some());
        let mut candidates: Vec<RowId> = usable.iter().flatten().map(|n| n.id).collect();
        candidates.sort_unstable();
        candidates.dedup();
        let negatives_ready = match &negative_pool {
            Some(h) => Some(h.ready(engine, false)?),
            None => None,
        };
        let nearest = if listed_negatives.is_empty() && negatives_ready.is_none() {
            None
        } else {
            Some(nearest::nearest_items(
                pool,
                &candidates,
                &listed_negatives,
                negatives_ready.as_ref(),
                req.ef,
            )?)
        };
        // Leakage is checked by exact search, never by an approximate index.
        let holdout_ready = match &holdout_pool {
            Some(h) => Some(h.ready(Engine::Exact, false)?),
            None => None,
        };
        let held_out = if listed_holdout.is_empty() && holdout_ready.is_none() {
            None
        } else {
            Some(nearest::nearest_items(
                pool,
                &candidates,
                &listed_holdout,
                holdout_ready.as_ref(),
                None,
            )?)
        };
        // Near-duplicates are judged on the candidates' stored vectors, read once.
        let vectors: HashMap<RowId, Vec<f32>> = if req.dedup_distance.is_some() {
            let view = pool.vectors();
            candidates
                .iter()
                .map(|&r| (r, view.row_f32(r as usize)))
                .collect()
        } else {
            HashMap::new()
        };
        let between = |a: RowId, b: RowId| match (vectors.get(&a), vectors.get(&b)) {
            (Some(x), Some(y)) => crate::index::distance::l2_squared(x, y),
            _ => f32::INFINITY,
        };
        // The vote needs the weak label of every candidate, not only of the rows kept.
        let mut items = if judged {
            items_by_row(pool, &candidates)?
        } else {
            HashMap::new()
        };
        let weak: HashMap<RowId, Option<String>> = items
            .iter()
            .map(|(&row, item)| (row, item.label.clone()))
            .collect();
        let trust = LabelTrust {
            policy,
            errors: &truths,
            weak: &weak,
        };
        let rules = Rules {
            negatives: nearest.as_ref().map(|nearest| Negatives {
                nearest,
                margin: req.negative_margin,
            }),
            labels: judged.then_some(trust),
            holdout: held_out.as_ref().map(|nearest| Holdout {
                nearest,
                radius: req.holdout_radius,
            }),
            dedup: req.dedup_distance.map(|radius| Dedup {
                radius,
                distance: &between,
            }),
        };
        let assembled = debugset::assemble(&usable, &req.merge, &rules);
        let reported = &assembled.vetoes[..assembled.vetoes.len().min(MAX_VETOES_REPORTED)];
        let collided =
            &assembled.collisions[..assembled.collisions.len().min(MAX_COLLISIONS_REPORTED)];
        let mut missing: Vec<RowId> = assembled
            .entries
            .iter()
            .map(|e| e.row)
            .chain(reported.iter().map(|v| v.row))
            .chain(collided.iter().map(|c| c.row))
            .filter(|r| !items.contains_key(r))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        items.extend(items_by_row(pool, &missing)?);
        let negative_names = names(
            reported.iter().map(|v| v.negative.item),
            "negatives",
            negatives_ready.as_ref(),
        )?;
        let vetoes = reported
            .iter()
            .map(|v| VetoReport {
                row: v.row,
                key: key_of(&items, v.row),
                distance: v.distance,
                negative: negative_names[&v.negative.item].clone(),
                negative_distance: v.negative.distance,
            })
            .collect();
        let held_out_names = names(
            collided.iter().map(|c| c.held_out.item),
            "holdout",
            holdout_ready.as_ref(),
        )?;
        let collisions = collided
            .iter()
            .map(|c| CollisionReport {
                row: c.row,
                key: key_of(&items, c.row),
                held_out: held_out_names[&c.held_out.item].clone(),
                distance: c.held_out.distance,
            })
            .collect();
        let mut label_counts = BTreeMap::new();
        let mut out = Vec::with_capacity(assembled.entries.len());
        for entry in assembled.entries {
            let item = items
                .get(&entry.row)
                .cloned()
                .expect("every entry's row was fetched");
            let item = DebugItem {
                row: entry.row,
                key: item.key,
                label: item.label,
                best_distance: entry.best_distance,
                support: entry.support,
                found_by: entry.found_by,
                labels: entry.labels,
            };
            *label_counts
                .entry(item.train_label().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
            out.push(item);
        }
        let best: Vec<f32> = out.iter().map(|i| i.best_distance).collect();
        let coverage = assembled
            .coverage
            .into_iter()
            .zip(&lists)
            .map(|(c, r)| ErrorCoverage {
                found: c.found,
                kept: c.kept,
                nearest: c.nearest,
                error: r.as_ref().err().cloned(),
                funnel: c.funnel,
            })
            .collect();
        let mut request = req.clone();
        request.label_policy = Some(policy);
        Ok(DebugSetResult {
            items: out,
            coverage,
            label_counts,
            funnel: assembled.funnel,
            vetoes,
            collisions,
            distances: debugset::quantiles(&best),
            request,
            backbone: pool.record().backbone.clone(),
            engine: ready.engine_name(),
            pool_items: pool.len() as u64,
            excluded,
        })
    }
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
        }
        .into());
    }
    if let Some(d) = req.dedup_distance {
        if !(d.is_finite() && d > 0.0) {
            return Err(ServiceError::InvalidArgument {
                field: "dedup_distance",
                reason: format!(
                    "{d} must be a positive squared distance (leave it out to keep near-duplicates)"
                ),
            }
            .into());
        }
    }
    let r = req.holdout_radius;
    if !(r.is_finite() && r >= 0.0) {
        return Err(ServiceError::InvalidArgument {
            field: "holdout_radius",
            reason: format!(
                "{r} must be a squared distance of 0 or more (0: only identical vectors collide)"
            ),
        }
        .into());
    }
    for (i, e) in req.errors.iter().enumerate() {
        let w = e.truth.weight;
        if !(w.is_finite() && w > 0.0) {
            return Err(ServiceError::InvalidArgument {
                field: "errors",
                reason: format!(
                    "error sample {i} has weight {w}: give a positive, finite weight (or none for 1)"
                ),
            }
            .into());
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
                }
                .into());
            }
        }
    }
    let labelled = req.errors.iter().any(|e| e.truth.label.is_some());
    match req.label_policy {
        Some(p @ (LabelPolicy::Drop | LabelPolicy::Replace)) if !labelled => {
            Err(ServiceError::InvalidArgument {
                field: "label_policy",
                reason: format!(
                    "{p} judges weak labels by the error samples' true labels, and none was given: label the error samples (e.g. an ImageFolder of them) or use keep"
                ),
            }
            .into())
        }
        Some(p) => Ok(p),
        None => Ok(LabelPolicy::default_for(labelled)),
    }
}

impl Service {
    /// The pool named by `field` (negative_pool, holdout_pool), in the same space as the
    /// pool the set is drawn from and not that pool itself.
    fn other_pool(
        &self,
        handle: &PoolHandle,
        req: &DebugSetRequest,
        name: &Option<String>,
        field: &'static str,
    ) -> Result<Option<Arc<PoolHandle>>> {
        match name {
            Some(name) if name == &req.pool => Err(ServiceError::InvalidArgument {
                field,
                reason: format!(
                    "{name} is the pool the set is drawn from: every candidate would match itself; name another pool"
                ),
            }
            .into()),
            Some(name) => {
                let other = self.pool(name)?;
                check_same_space(handle, &other)?;
                Ok(Some(other))
            }
            None => Ok(None),
        }
    }
}

/// A name for each of `refs`: "{listed}[i]" for listed items, the key for pool rows.
fn names(
    refs: impl Iterator<Item = ItemRef>,
    listed: &str,
    pool: Option<&super::pools::ReadyPool<'_>>,
) -> Result<HashMap<ItemRef, String>> {
    let refs: Vec<ItemRef> = refs.collect();
    let mut rows: Vec<RowId> = refs
        .iter()
        .filter_map(|r| match r {
            ItemRef::PoolRow(row) => Some(*row),
            ItemRef::Listed(_) => None,
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let keys: HashMap<RowId, String> = match pool {
        Some(p) if !rows.is_empty() => items_by_row(p.pool(), &rows)?
            .into_iter()
            .map(|(r, it)| (r, it.key))
            .collect(),
        _ => HashMap::new(),
    };
    Ok(refs
        .into_iter()
        .map(|r| {
            let name = match r {
                ItemRef::Listed(i) => format!("{listed}[{i}]"),
                ItemRef::PoolRow(row) => keys.get(&row).cloned().unwrap_or_default(),
            };
            (r, name)
        })
        .collect())
}

fn key_of(items: &HashMap<RowId, crate::store::Item>, row: RowId) -> String {
    items.get(&row).map(|i| i.key.clone()).unwrap_or_default()
}

/// The items of `rows`, by row.
fn items_by_row(
    pool: &crate::store::Pool,
    rows: &[RowId],
) -> Result<HashMap<RowId, crate::store::Item>> {
    let items = pool.items(rows)?;
    Ok(rows.iter().copied().zip(items).collect())
}
