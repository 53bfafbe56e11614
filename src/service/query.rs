//! Searches: turning queries (image bytes, vectors, stored items) into vectors in the pool's
//! feature space and running them through the pool's index with the label and exclusion
//! filters. The debug-train set (`debug_set.rs`) builds on the same steps.

use std::sync::Arc;

use super::storage::{Lookup, PoolRows, PoolSearch, StoredPool};
use super::{Service, ServiceError};
use crate::features::pipeline::ImageInput;
use crate::index::manager::Engine;
use crate::index::{IndexError, MAX_K};
use crate::service::Result;
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

/// Queries searched per step (a cancelled call stops between steps; large enough for the
/// batched exact path's blocking to pay off).
pub(super) const QUERY_STEP: usize = 256;

/// Per query: its vector, or why it has none.
pub(super) type Resolved = Vec<std::result::Result<Vec<f32>, String>>;

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
        let selection = ready.select(&req.labels, &[])?;
        let lookup = Lookup {
            k: req.k,
            ef: req.ef,
            within: selection.as_ref(),
        };
        let lists = run_queries(ready.as_ref(), &resolved, &lookup, false)?;
        let mut out = Vec::with_capacity(lists.len());
        for r in lists {
            out.push(match r {
                Ok(list) => Ok(hits(ready.as_ref(), &list)?),
                Err(e) => Err(e),
            });
        }
        Ok((out, ready.engine_name()))
    }

    /// Turns queries into vectors of `target`'s space; keys are looked up in `key_pool`.
    /// Images that fail give a per-query error; a wrong vector or unknown key fails the call.
    pub(super) fn resolve(
        &self,
        target: &Arc<dyn StoredPool>,
        key_pool: &Arc<dyn StoredPool>,
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
            });
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
                    let rows = key_pool.rows()?;
                    let row = rows
                        .row_of_key(key)?
                        .ok_or_else(|| ServiceError::KeyNotFound {
                            pool: rows.record().name.clone(),
                            key: key.clone(),
                        })?;
                    out.push(Ok(rows.vectors(&[row])?.data));
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
            });
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
            });
        }
        Ok(())
    }

    /// Refuses, before any work, a call whose answer would hold more than `--max-hits`
    /// neighbours (its memory and its message grow with queries x k).
    pub(super) fn check_hits(&self, queries: usize, k: usize, what: &'static str) -> Result<()> {
        let max = self.settings().limits.max_hits;
        let hits = queries.saturating_mul(k);
        if hits > max {
            return Err(ServiceError::OverLimit {
                what: format!(
                    "{queries} {what} x k {k} = {hits} results, above the limit of {max} per call"
                ),
                fix: "send fewer per call or ask for a smaller k",
                flag: "--max-hits",
            });
        }
        Ok(())
    }
}

pub(super) fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(IndexError::InvalidK { k, max: MAX_K }.into());
    }
    Ok(())
}

pub(super) fn check_same_space(a: &Arc<dyn StoredPool>, b: &Arc<dyn StoredPool>) -> Result<()> {
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
        });
    }
    Ok(())
}

/// Searches every usable query; with `rerank`, 4x the candidates re-ranked exactly.
pub(super) fn run_queries(
    ready: &dyn PoolSearch,
    resolved: &Resolved,
    lookup: &Lookup<'_>,
    rerank: bool,
) -> Result<Vec<std::result::Result<Vec<Neighbor>, String>>> {
    let dim = ready.dim();
    let usable: Vec<usize> = (0..resolved.len())
        .filter(|&i| resolved[i].is_ok())
        .collect();
    let mut data = Vec::with_capacity(usable.len() * dim);
    for &i in &usable {
        data.extend_from_slice(resolved[i].as_ref().expect("usable"));
    }
    let queries = Matrix::new(usable.len(), dim, data);
    let wide = Lookup {
        k: if rerank {
            (lookup.k * 4).min(MAX_K)
        } else {
            lookup.k
        },
        ..*lookup
    };
    // In steps, so that a call whose client went away stops computing.
    let mut lists = Vec::with_capacity(queries.rows);
    for start in (0..queries.rows).step_by(QUERY_STEP) {
        if crate::cancel::requested() {
            return Err(ServiceError::Cancelled { what: "searching" });
        }
        let end = (start + QUERY_STEP).min(queries.rows);
        let step = Matrix::new(
            end - start,
            dim,
            queries.data[start * dim..end * dim].to_vec(),
        );
        let mut found = ready.search(&step, &wide)?;
        if rerank {
            ready.rerank(&step, &mut found, lookup.k)?;
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

fn hits(pool: &dyn PoolRows, list: &[Neighbor]) -> Result<Vec<Hit>> {
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
