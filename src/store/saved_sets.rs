//! Saved debug-train sets in the catalog: one row per set (its pool, its parent round, its
//! manifest and summary as JSON, which the service writes and reads) and one row per item,
//! in the set's order. A set and its items are written in one transaction, so a set is
//! either stored whole or not at all. Sets name their pool rather than reference it: the
//! service deletes a pool's sets with the pool, whatever backend keeps the pool.

use rusqlite::{params, OptionalExtension};

use super::catalog::Catalog;
use super::error::StoreError;
use crate::types::RowId;

/// Longest set name.
const MAX_NAME: usize = 128;

/// A saved set's record (its items are read on their own).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SavedSet {
    /// Unique name.
    pub name: String,
    /// The pool it was drawn from.
    pub pool: String,
    /// The set whose review this round followed, if any.
    pub parent: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Items in the set.
    pub items: u64,
    /// How to build it again (JSON, written by the service).
    pub manifest: String,
    /// What the build reported (JSON, written by the service).
    pub summary: String,
}

/// One item of a saved set, in the set's order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SavedItem {
    /// Its row in the pool.
    pub row: RowId,
    /// Its key.
    pub key: String,
    /// Its weak label.
    pub label: Option<String>,
    /// The label handed to training (None: none).
    pub train_label: Option<String>,
    /// Squared ℓ2 distance to the nearest error sample.
    pub distance: f32,
    /// The failure mode it serves.
    pub mode: usize,
    /// Error samples that found it.
    pub support: usize,
    /// Which error samples found it (their indices in the request), nearest first.
    pub found_by: Vec<usize>,
}

/// Refuses a set name as a pool name is refused (see `name_problem`), up to 128 bytes.
pub(super) fn validate_set_name(name: &str) -> Result<(), StoreError> {
    match super::name_problem(name, MAX_NAME, "use 1 to 128 characters") {
        Some(reason) => Err(StoreError::InvalidSetName {
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

impl Catalog {
    /// Stores a set with its items in one transaction; the name must be free.
    pub fn insert_saved_set(
        &mut self,
        set: &SavedSet,
        items: &[SavedItem],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::catalog("saving a set"))?;
        let taken: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM saved_sets WHERE name = ?1",
                [&set.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::catalog("saving a set"))?;
        if taken.is_some() {
            return Err(StoreError::SetExists {
                name: set.name.clone(),
            });
        }
        tx.execute(
            "INSERT INTO saved_sets (name, pool, parent, created_at, items, manifest, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                set.name,
                set.pool,
                set.parent,
                set.created_at,
                items.len() as i64,
                set.manifest,
                set.summary
            ],
        )
        .map_err(StoreError::catalog("saving a set"))?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO saved_set_items
                     (set_name, position, row_id, key, label, train_label, distance, mode, support,
                      found_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(StoreError::catalog("saving a set's items"))?;
            for (i, it) in items.iter().enumerate() {
                insert
                    .execute(params![
                        set.name,
                        i as i64,
                        it.row as i64,
                        it.key,
                        it.label,
                        it.train_label,
                        it.distance as f64,
                        it.mode as i64,
                        it.support as i64,
                        join_indices(&it.found_by)
                    ])
                    .map_err(StoreError::catalog("saving a set's items"))?;
            }
        }
        tx.commit().map_err(StoreError::catalog("saving a set"))
    }

    /// The set `name`, if saved.
    pub fn saved_set(&self, name: &str) -> Result<Option<SavedSet>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, pool, parent, created_at, items, manifest, summary
                 FROM saved_sets WHERE name = ?1",
                [name],
                row_to_set,
            )
            .optional()
            .map_err(StoreError::catalog("reading a saved set"))
    }

    /// Every saved set (of `pool` when given), newest first.
    pub fn saved_sets(&self, pool: Option<&str>) -> Result<Vec<SavedSet>, StoreError> {
        let read = StoreError::catalog("listing saved sets");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, pool, parent, created_at, items, manifest, summary FROM saved_sets
                 WHERE ?1 IS NULL OR pool = ?1 ORDER BY created_at DESC, rowid DESC",
            )
            .map_err(StoreError::catalog("listing saved sets"))?;
        let rows = stmt
            .query_map([pool], row_to_set)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(read)
    }

    /// A set's items, in order.
    pub fn saved_set_items(&self, name: &str) -> Result<Vec<SavedItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT row_id, key, label, train_label, distance, mode, support, found_by
                 FROM saved_set_items WHERE set_name = ?1 ORDER BY position",
            )
            .map_err(StoreError::catalog("reading a set's items"))?;
        let rows = stmt
            .query_map([name], |r| {
                Ok(SavedItem {
                    row: r.get::<_, i64>(0)? as RowId,
                    key: r.get(1)?,
                    label: r.get(2)?,
                    train_label: r.get(3)?,
                    distance: r.get::<_, f64>(4)? as f32,
                    mode: r.get::<_, i64>(5)? as usize,
                    support: r.get::<_, i64>(6)? as usize,
                    found_by: split_indices(&r.get::<_, String>(7)?),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(StoreError::catalog("reading a set's items"))
    }

    /// Deletes a set and its items; false when there was none.
    pub fn delete_saved_set(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM saved_sets WHERE name = ?1", [name])
            .map_err(StoreError::catalog("deleting a saved set"))?;
        Ok(n > 0)
    }

    /// Deletes every set drawn from `pool`; returns how many.
    pub fn delete_saved_sets_of(&mut self, pool: &str) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM saved_sets WHERE pool = ?1", [pool])
            .map_err(StoreError::catalog("deleting a pool's saved sets"))
    }
}

fn row_to_set(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedSet> {
    Ok(SavedSet {
        name: r.get(0)?,
        pool: r.get(1)?,
        parent: r.get(2)?,
        created_at: r.get(3)?,
        items: r.get::<_, i64>(4)? as u64,
        manifest: r.get(5)?,
        summary: r.get(6)?,
    })
}

/// `0,3,5`: a short, readable column for a short list.
fn join_indices(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn split_indices(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|p| p.parse().ok()).collect()
}
