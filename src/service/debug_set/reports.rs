//! Naming what the rules removed: the keys of vetoed and colliding candidates and of the
//! negatives and held-out items responsible.

use std::collections::HashMap;

use super::request::{CollisionReport, VetoReport, MAX_COLLISIONS_REPORTED, MAX_VETOES_REPORTED};
use crate::debugset::{Assembled, ItemRef};
use crate::service::storage::{PoolRows, PoolSearch};
use crate::service::Result;
use crate::store::Item;
use crate::types::RowId;

/// The vetoes and collisions of `assembled` to report (the first of each, up to their
/// limits), with both sides named; the candidates' items are fetched into `items`.
pub(super) fn removed(
    pool: &dyn PoolRows,
    assembled: &Assembled,
    items: &mut HashMap<RowId, Item>,
    negative_pool: Option<&dyn PoolSearch>,
    holdout_pool: Option<&dyn PoolSearch>,
) -> Result<(Vec<VetoReport>, Vec<CollisionReport>)> {
    let vetoes = &assembled.vetoes[..assembled.vetoes.len().min(MAX_VETOES_REPORTED)];
    let collisions =
        &assembled.collisions[..assembled.collisions.len().min(MAX_COLLISIONS_REPORTED)];
    let mut missing: Vec<RowId> = vetoes
        .iter()
        .map(|v| v.row)
        .chain(collisions.iter().map(|c| c.row))
        .filter(|r| !items.contains_key(r))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    items.extend(items_by_row(pool, &missing)?);
    let negatives = names(
        vetoes.iter().map(|v| v.negative.item),
        "negatives",
        negative_pool,
    )?;
    let held_out = names(
        collisions.iter().map(|c| c.held_out.item),
        "holdout",
        holdout_pool,
    )?;
    Ok((
        vetoes
            .iter()
            .map(|v| VetoReport {
                row: v.row,
                key: key_of(items, v.row),
                distance: v.distance,
                negative: negatives[&v.negative.item].clone(),
                negative_distance: v.negative.distance,
            })
            .collect(),
        collisions
            .iter()
            .map(|c| CollisionReport {
                row: c.row,
                key: key_of(items, c.row),
                held_out: held_out[&c.held_out.item].clone(),
                distance: c.held_out.distance,
            })
            .collect(),
    ))
}

/// A name for each of `refs`: "{listed}[i]" for listed items, the key for pool rows.
fn names(
    refs: impl Iterator<Item = ItemRef>,
    listed: &str,
    pool: Option<&dyn PoolSearch>,
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
        Some(p) if !rows.is_empty() => items_by_row(p, &rows)?
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

fn key_of(items: &HashMap<RowId, Item>, row: RowId) -> String {
    items.get(&row).map(|i| i.key.clone()).unwrap_or_default()
}

/// The items of `rows`, by row.
pub(super) fn items_by_row(pool: &dyn PoolRows, rows: &[RowId]) -> Result<HashMap<RowId, Item>> {
    let items = pool.items(rows)?;
    Ok(rows.iter().copied().zip(items).collect())
}
