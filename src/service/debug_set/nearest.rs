//! What a debug-train set's candidates are checked against: negatives (things the model
//! already handles) and held-out items, each given as a list of inputs (images, vectors or
//! keys) or as every item of another pool, and each candidate's nearest one.

use std::sync::Arc;

use std::collections::HashMap;

use crate::debugset::{ItemRef, NearestItem};
use crate::index::distance::{l2_squared, l2_squared_rows};
use crate::service::query::{QueryInput, Resolved, QUERY_STEP};
use crate::service::storage::{Lookup, PoolRows, PoolSearch, StoredPool};
use crate::service::Result;
use crate::service::{Service, ServiceError};
use crate::types::RowId;

/// Two vectors this close (squared ℓ2, relative to their norm) are the same input.
const SAME_INPUT: f32 = 1e-6;

impl Service {
    /// Listed inputs (negatives or held-out items) as vectors of `target`'s space, keys
    /// looked up in `key_pool`. One that cannot be used fails the call: a negative or
    /// held-out item silently lost would let through the very items it was sent to stop.
    pub(super) fn resolve_listed(
        &self,
        target: &Arc<dyn StoredPool>,
        key_pool: &Arc<dyn StoredPool>,
        inputs: &[QueryInput],
        field: &'static str,
    ) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&QueryInput> = inputs.iter().collect();
        let resolved = self.resolve(target, key_pool, &refs, field)?;
        resolved
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.map_err(|e| ServiceError::InvalidArgument {
                    field,
                    reason: format!("{field}[{i}] could not be used: {e}"),
                })
            })
            .collect()
    }
}

/// Refuses negatives that are error samples: an input cannot be both a failure and handled.
pub(super) fn check_negatives_differ(listed: &[Vec<f32>], errors: &Resolved) -> Result<()> {
    for (i, n) in listed.iter().enumerate() {
        for (j, e) in errors.iter().enumerate() {
            let Ok(e) = e else { continue };
            let scale = 1.0 + e.iter().map(|x| x * x).sum::<f32>();
            if l2_squared(n, e) <= SAME_INPUT * scale {
                return Err(ServiceError::InvalidArgument {
                    field: "negatives",
                    reason: format!(
                        "negative {i} is the same input as error sample {j}: an input the model fails on cannot also be one it handles; remove one of them"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Each row's mean squared distance to the usable error samples.
pub(super) fn mean_distances(
    vectors: &HashMap<RowId, Vec<f32>>,
    errors: &Resolved,
) -> HashMap<RowId, f32> {
    let usable: Vec<&Vec<f32>> = errors.iter().filter_map(|e| e.as_ref().ok()).collect();
    vectors
        .iter()
        .map(|(&row, v)| {
            let sum: f64 = usable.iter().map(|e| l2_squared(v, e) as f64).sum();
            (row, (sum / usable.len().max(1) as f64) as f32)
        })
        .collect()
}

/// The stored vectors of `rows`.
pub(super) fn vectors_of(pool: &dyn PoolRows, rows: &[RowId]) -> Result<HashMap<RowId, Vec<f32>>> {
    let vectors = pool.vectors(rows)?;
    Ok(rows
        .iter()
        .zip(vectors.iter_rows())
        .map(|(&r, v)| (r, v.to_vec()))
        .collect())
}

/// Each candidate's nearest item among `listed` and the items of `other` (searched with
/// its own engine: exact where the caller asked for exact); None when there is neither.
pub(super) fn nearest_items(
    pool: &dyn PoolRows,
    candidates: &[RowId],
    listed: &[Vec<f32>],
    other: Option<&dyn PoolSearch>,
    ef: Option<usize>,
) -> Result<Option<HashMap<RowId, NearestItem>>> {
    if listed.is_empty() && other.is_none() {
        return Ok(None);
    }
    let mut nearest: HashMap<RowId, NearestItem> = HashMap::new();
    let mut offer = |row: RowId, hit: NearestItem| {
        let slot = nearest.entry(row).or_insert(hit);
        if hit.distance < slot.distance {
            *slot = hit;
        }
    };
    // The listed items in one block, measured a few at a time.
    let block: Vec<f32> = listed.iter().flatten().copied().collect();
    let mut distances = vec![0f32; listed.len()];
    for start in (0..candidates.len()).step_by(QUERY_STEP) {
        if crate::cancel::requested() {
            return Err(ServiceError::Cancelled {
                what: "checking negatives and the holdout",
            });
        }
        let rows = &candidates[start..(start + QUERY_STEP).min(candidates.len())];
        let queries = pool.vectors(rows)?;
        for (&row, q) in rows.iter().zip(queries.iter_rows()) {
            if listed.is_empty() {
                break;
            }
            l2_squared_rows(q, &block, &mut distances);
            for (i, &distance) in distances.iter().enumerate() {
                offer(
                    row,
                    NearestItem {
                        item: ItemRef::Listed(i),
                        distance,
                    },
                );
            }
        }
        if let Some(negs) = other {
            let lookup = Lookup {
                k: 1,
                ef,
                within: None,
            };
            for (&row, found) in rows.iter().zip(negs.search(&queries, &lookup)?) {
                if let Some(n) = found.first() {
                    offer(
                        row,
                        NearestItem {
                            item: ItemRef::PoolRow(n.id),
                            distance: n.distance,
                        },
                    );
                }
            }
        }
    }
    Ok(Some(nearest))
}
