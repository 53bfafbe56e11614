//! Searches and debug-train sets: turning queries (image bytes, vectors, stored items) into
//! vectors in the pool's feature space, running them through the pool's index with the
//! label and exclusion filters, and assembling the debug-train set with its summary.

use std::collections::{BTreeMap, HashMap};

use super::{PoolHandle, Service, ServiceError};
use crate::debugset::{
    self, ErrorLabel, Finding, Funnel, LabelPolicy, LabelTrust, LabelVerdict, MergeParams,
    Quantiles,
};
use crate::error::Result;
use crate::features::pipeline::ImageInput;
use crate::index::manager::Engine;
use crate::index::{IndexError, RowFilter, SearchParams, MAX_K};
use crate::types::{Matrix, Neighbor, RowId};

/// One query or error sample.
#[derive(Clone, Debug)]
pub enum QueryInput {
    /// An encoded image, embedded with the pool's backbone.
    Image {
        /// Shown in errors.
        name: String,
        /// The file's bytes.
        bytes: Vec<u8>,
    },
    /// A vector in the pool's feature space.
    Vector(Vec<f32>),
    /// An item already stored (in the pool, or in the debug set's errors pool).
    Key(String),
}

/// A k-NN search.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    /// Pool to search.
    pub pool: String,
    /// The queries.
    pub queries: Vec<QueryInput>,
    /// Neighbours per query.
    pub k: usize,
    /// HNSW beam (None: the index default).
    pub ef: Option<usize>,
    /// Brute force instead of HNSW.
    pub exact: bool,
    /// Only items with one of these weak labels (empty: all).
    pub labels: Vec<String>,
}

/// One neighbour.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Pool row.
    pub row: RowId,
    /// Item key (URI).
    pub key: String,
    /// Weak label.
    pub label: Option<String>,
    /// Squared ℓ2 distance.
    pub distance: f32,
}

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
}

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

/// Queries searched per step (a cancelled call stops between steps; large enough for the
/// batched exact path's blocking to pay off).
const QUERY_STEP: usize = 256;

/// Per query: its vector, or why it has none.
type Resolved = Vec<std::result::Result<Vec<f32>, String>>;

/// Per query: its hits, or why it has none.
pub type SearchOutcome = Vec<std::result::Result<Vec<Hit>, String>>;

impl Service {
    /// k-NN search; one result (or per-query error) per query, and the engine used.
    pub fn search(&self, req: &SearchRequest) -> Result<(SearchOutcome, String)> {
        check_k(req.k)?;
        self.check_hits(req.queries.len(), req.k, "queries")?;
        let handle = self.pool(&req.pool)?;
        let queries: Vec<&QueryInput> = req.queries.iter().collect();
        let resolved = self.resolve(&handle, &handle, &queries, "queries")?;
        let engine = if req.exact {
            Engine::Exact
        } else {
            Engine::Native
        };
        let ready = handle.ready(engine, false)?;
        let pool = ready.pool();
        let filter = label_filter(pool, &req.labels, &[])?.map(|(f, _)| f);
        let params = SearchParams {
            k: req.k,
            ef: req.ef,
            filter: filter.as_ref(),
        };
        let lists = run_queries(&ready, &resolved, &params, false)?;
        let mut out = Vec::with_capacity(lists.len());
        for r in lists {
            out.push(match r {
                Ok(list) => Ok(hits(pool, &list)?),
                Err(e) => Err(e),
            });
        }
        Ok((out, ready.engine_name()))
    }

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
        let policy = check_error_labels(req)?;
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
        // The vote needs the weak label of every candidate, not only of the rows kept.
        let mut items = if judged {
            let mut rows: Vec<RowId> = usable.iter().flatten().map(|n| n.id).collect();
            rows.sort_unstable();
            rows.dedup();
            items_by_row(pool, &rows)?
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
        let assembled = debugset::assemble(&usable, &req.merge, judged.then_some(&trust));
        if !judged {
            let rows: Vec<RowId> = assembled.entries.iter().map(|e| e.row).collect();
            items = items_by_row(pool, &rows)?;
        }
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
            distances: debugset::quantiles(&best),
            request,
            backbone: pool.record().backbone.clone(),
            engine: ready.engine_name(),
            pool_items: pool.len() as u64,
            excluded,
        })
    }

    /// Turns queries into vectors of `target`'s space; keys are looked up in `key_pool`.
    /// Images that fail give a per-query error; a wrong vector or unknown key fails the call.
    fn resolve(
        &self,
        target: &PoolHandle,
        key_pool: &PoolHandle,
        queries: &[&QueryInput],
        what: &'static str,
    ) -> Result<Resolved> {
        if queries.is_empty() {
            return Err(ServiceError::InvalidArgument {
                field: if what == "queries" {
                    "queries"
                } else {
                    "errors"
                },
                reason: format!(
                    "send at least one of the {what} (image bytes, a vector or an item key)"
                ),
            }
            .into());
        }
        let images = queries
            .iter()
            .filter(|q| matches!(q, QueryInput::Image { .. }))
            .count();
        self.check_images(images)?;
        let record = target.record();
        let mut out: Resolved = Vec::with_capacity(queries.len());
        let mut images = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            match q {
                QueryInput::Vector(v) => {
                    crate::index::validate_query(record.dim, v, 1, i)?;
                    out.push(Ok(v.clone()));
                }
                QueryInput::Key(key) => {
                    let open = key_pool.read();
                    let row =
                        open.pool
                            .row_of_key(key)?
                            .ok_or_else(|| ServiceError::KeyNotFound {
                                pool: open.pool.record().name.clone(),
                                key: key.clone(),
                            })?;
                    out.push(Ok(open.pool.vectors().row_f32(row as usize)));
                }
                QueryInput::Image { name, bytes } => {
                    // One copy, handed to the pipeline (the request keeps its own).
                    images.push((
                        i,
                        ImageInput::Bytes {
                            name: name.clone(),
                            bytes: bytes.clone(),
                        },
                    ));
                    out.push(Err(String::new()));
                }
            }
        }
        if !images.is_empty() {
            let model = self.pool_model(&record)?;
            self.count_embedded(images.len());
            let (positions, inputs): (Vec<usize>, Vec<ImageInput>) = images.into_iter().unzip();
            for (i, r) in positions.into_iter().zip(model.embed(inputs)) {
                out[i] = r.map_err(|e| e.to_string());
            }
        }
        if out.iter().all(|r| r.is_err()) {
            let first = out[0].as_ref().err().cloned().unwrap_or_default();
            return Err(ServiceError::NothingUsable {
                what,
                count: out.len(),
                first,
            }
            .into());
        }
        Ok(out)
    }
}

impl Service {
    /// Refuses, before any decoding, a call carrying more images than `--max-images-per-call`.
    pub fn check_images(&self, images: usize) -> Result<()> {
        let max = self.settings().limits.max_images_per_call;
        if images > max {
            return Err(ServiceError::OverLimit {
                what: format!("{images} images in one call, above the limit of {max}"),
                fix: "send them in several calls",
                flag: "--max-images-per-call",
            }
            .into());
        }
        Ok(())
    }

    /// Refuses, before any work, a call whose answer would hold more than `--max-hits`
    /// neighbours (its memory and its message grow with queries x k).
    fn check_hits(&self, queries: usize, k: usize, what: &'static str) -> Result<()> {
        let max = self.settings().limits.max_hits;
        let hits = queries.saturating_mul(k);
        if hits > max {
            return Err(ServiceError::OverLimit {
                what: format!(
                    "{queries} {what} x k {k} = {hits} results, above the limit of {max} per call"
                ),
                fix: "send fewer per call or ask for a smaller k",
                flag: "--max-hits",
            }
            .into());
        }
        Ok(())
    }
}

/// Checks the error samples' labels and weights, and settles the label policy.
fn check_error_labels(req: &DebugSetRequest) -> Result<LabelPolicy> {
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

/// The items of `rows`, by row.
fn items_by_row(
    pool: &crate::store::Pool,
    rows: &[RowId],
) -> Result<HashMap<RowId, crate::store::Item>> {
    let items = pool.items(rows)?;
    Ok(rows.iter().copied().zip(items).collect())
}

fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(IndexError::InvalidK { k, max: MAX_K }.into());
    }
    Ok(())
}

fn check_same_space(a: &PoolHandle, b: &PoolHandle) -> Result<()> {
    let (ra, rb) = (a.record(), b.record());
    if ra.dim != rb.dim || ra.backbone != rb.backbone || ra.pooling != rb.pooling {
        let space = |r: &crate::store::PoolRecord| {
            format!(
                "{}-d, {}",
                r.dim,
                r.backbone.as_deref().unwrap_or("raw vectors")
            )
        };
        return Err(ServiceError::IncompatiblePools {
            a: ra.name.clone(),
            a_space: space(&ra),
            b: rb.name.clone(),
            b_space: space(&rb),
        }
        .into());
    }
    Ok(())
}

/// The allowed rows for a label filter minus excluded keys, and how many keys matched.
fn label_filter(
    pool: &crate::store::Pool,
    labels: &[String],
    exclude_keys: &[String],
) -> Result<Option<(RowFilter, usize)>> {
    if labels.is_empty() && exclude_keys.is_empty() {
        return Ok(None);
    }
    let n = pool.len();
    let mut filter = if labels.is_empty() {
        RowFilter::all(n)
    } else {
        RowFilter::from_rows(pool.rows_with_labels(labels)?, n)
    };
    let mut excluded = 0;
    for key in exclude_keys {
        if let Some(row) = pool.row_of_key(key)? {
            excluded += 1;
            filter.remove(row);
        }
    }
    Ok(Some((filter, excluded)))
}

/// Searches every usable query; with `rerank`, 4x the candidates re-ranked exactly.
fn run_queries(
    ready: &super::pools::ReadyPool<'_>,
    resolved: &Resolved,
    params: &SearchParams<'_>,
    rerank: bool,
) -> Result<Vec<std::result::Result<Vec<Neighbor>, String>>> {
    let pool = ready.pool();
    let dim = pool.dim();
    let usable: Vec<usize> = (0..resolved.len())
        .filter(|&i| resolved[i].is_ok())
        .collect();
    let mut data = Vec::with_capacity(usable.len() * dim);
    for &i in &usable {
        data.extend_from_slice(resolved[i].as_ref().expect("usable"));
    }
    let queries = Matrix::new(usable.len(), dim, data);
    let wide = SearchParams {
        k: if rerank {
            (params.k * 4).min(MAX_K)
        } else {
            params.k
        },
        ef: params.ef,
        filter: params.filter,
    };
    // In steps, so that a call whose client went away stops computing.
    let mut lists = Vec::with_capacity(queries.rows);
    for start in (0..queries.rows).step_by(QUERY_STEP) {
        if crate::cancel::requested() {
            return Err(ServiceError::Cancelled { what: "searching" }.into());
        }
        let end = (start + QUERY_STEP).min(queries.rows);
        let step = Matrix::new(
            end - start,
            dim,
            queries.data[start * dim..end * dim].to_vec(),
        );
        let mut found = ready.search_batch(&step, &wide)?;
        if rerank {
            ready.rerank(&step, &mut found, params.k)?;
        }
        lists.extend(found);
    }
    let mut out: Vec<std::result::Result<Vec<Neighbor>, String>> = resolved
        .iter()
        .map(|r| r.as_ref().map(|_| Vec::new()).map_err(Clone::clone))
        .collect();
    for (i, list) in usable.into_iter().zip(lists) {
        out[i] = Ok(list);
    }
    Ok(out)
}

fn hits(pool: &crate::store::Pool, list: &[Neighbor]) -> Result<Vec<Hit>> {
    let rows: Vec<RowId> = list.iter().map(|n| n.id).collect();
    let items = pool.items(&rows)?;
    Ok(list
        .iter()
        .zip(items)
        .map(|(n, it)| Hit {
            row: n.id,
            key: it.key,
            label: it.label,
            distance: n.distance,
        })
        .collect())
}
