//! Reading a pool's items from the catalog: by row, by key, by content hash, by weak label,
//! and the counts `open` and `verify` check against the rows.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use super::catalog::{placeholders, Catalog, Item, LOOKUP_CHUNK};
use super::error::StoreError;
use crate::types::RowId;

/// The key of an item with a content hash. The index is named: SQLite's planner (3.40 to
/// 3.50) answers this query by scanning the pool's rows in primary-key order instead, which
/// made every image ingested into a large pool cost a pass over the pool (30,000 rows: 2 ms a
/// lookup, 64 ms a batch of 32).
const KEY_BY_HASH: &str =
    "SELECT key FROM items INDEXED BY items_by_hash WHERE pool_id = ?1 AND content_hash = ?2 LIMIT 1";

/// The row of a key (the `UNIQUE (pool_id, key)` index).
const ROW_OF_KEY: &str = "SELECT row_id FROM items WHERE pool_id = ?1 AND key = ?2";
/// The rows with a weak label (`items_by_label`, which covers the row ids).
const ROWS_WITH_LABEL: &str =
    "SELECT row_id FROM items WHERE pool_id = ?1 AND label = ?2 ORDER BY row_id";

impl Catalog {
    /// Items of the given rows, in the order asked; rows that do not exist are skipped.
    pub fn items(&self, pool_id: i64, rows: &[RowId]) -> Result<Vec<Item>, StoreError> {
        let mut found: std::collections::HashMap<RowId, Item> =
            std::collections::HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(LOOKUP_CHUNK) {
            let mut stmt = self
                .conn
                .prepare_cached(&format!(
                    "SELECT row_id, key, label, content_hash, metadata FROM items
                     WHERE pool_id = ?1 AND row_id IN ({})",
                    placeholders(chunk.len())
                ))
                .map_err(StoreError::catalog("reading items"))?;
            let params = std::iter::once(rusqlite::types::Value::Integer(pool_id)).chain(
                chunk
                    .iter()
                    .map(|&r| rusqlite::types::Value::Integer(r as i64)),
            );
            let items = stmt
                .query_map(rusqlite::params_from_iter(params), row_to_item)
                .map_err(StoreError::catalog("reading items"))?;
            for item in items {
                let item = item.map_err(StoreError::catalog("reading items"))?;
                found.insert(item.row, item);
            }
        }
        // Callers pair items with rows by position: a row without its item must not shift
        // every key after it onto the wrong vector.
        rows.iter()
            .map(|r| {
                found
                    .get(r)
                    .cloned()
                    .ok_or(StoreError::MissingItem { pool_id, row: *r })
            })
            .collect()
    }

    /// The weak label of every item with a row in `from..to` (None: unlabelled), by row.
    pub fn labels_in_range(
        &self,
        pool_id: i64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(RowId, Option<String>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT row_id, label FROM items WHERE pool_id = ?1 AND row_id >= ?2 AND row_id < ?3",
            )
            .map_err(StoreError::catalog("reading labels"))?;
        let rows = stmt
            .query_map(params![pool_id, from as i64, to as i64], |r| {
                Ok((r.get::<_, i64>(0)? as RowId, r.get::<_, Option<String>>(1)?))
            })
            .map_err(StoreError::catalog("reading labels"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::catalog("reading labels"))
    }

    /// The row holding `key`, if any.
    pub fn row_of_key(&self, pool_id: i64, key: &str) -> Result<Option<RowId>, StoreError> {
        self.conn
            .query_row(ROW_OF_KEY, params![pool_id, key], |r| r.get::<_, i64>(0))
            .optional()
            .map(|o| o.map(|v| v as RowId))
            .map_err(StoreError::catalog("looking up a key"))
    }

    /// Which of `keys` are stored in the pool.
    pub fn existing_keys(
        &self,
        pool_id: i64,
        keys: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let mut stmt = self
                .conn
                .prepare_cached(&format!(
                    "SELECT key FROM items WHERE pool_id = ?1 AND key IN ({})",
                    placeholders(chunk.len())
                ))
                .map_err(StoreError::catalog("looking up keys"))?;
            let params = std::iter::once(rusqlite::types::Value::Integer(pool_id)).chain(
                chunk
                    .iter()
                    .map(|k| rusqlite::types::Value::Text((*k).to_owned())),
            );
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(0)
                })
                .map_err(StoreError::catalog("looking up keys"))?;
            for key in rows {
                out.insert(key.map_err(StoreError::catalog("looking up keys"))?);
            }
        }
        Ok(out)
    }

    /// For each hash stored in the pool, the key of (one) item holding it.
    pub fn keys_by_hash(
        &self,
        pool_id: i64,
        hashes: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(KEY_BY_HASH)
            .map_err(StoreError::catalog("looking up content hashes"))?;
        let mut out = std::collections::HashMap::new();
        for &hash in hashes {
            let key: Option<String> = stmt
                .query_row(params![pool_id, hash], |r| r.get(0))
                .optional()
                .map_err(StoreError::catalog("looking up content hashes"))?;
            if let Some(key) = key {
                out.insert(hash.to_owned(), key);
            }
        }
        Ok(out)
    }

    /// Rows whose weak label is one of `labels`, ascending.
    pub fn rows_with_labels(
        &self,
        pool_id: i64,
        labels: &[String],
    ) -> Result<Vec<RowId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(ROWS_WITH_LABEL)
            .map_err(StoreError::catalog("filtering by label"))?;
        let mut out = Vec::new();
        for label in labels {
            let rows = stmt
                .query_map(params![pool_id, label], |r| r.get::<_, i64>(0))
                .map_err(StoreError::catalog("filtering by label"))?;
            for r in rows {
                out.push(r.map_err(StoreError::catalog("filtering by label"))? as RowId);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Count of items per weak label (unlabelled items under the empty string).
    pub fn label_histogram(&self, pool_id: i64) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(label, ''), COUNT(*) FROM items WHERE pool_id = ?1 GROUP BY 1",
            )
            .map_err(StoreError::catalog("counting labels"))?;
        let rows = stmt
            .query_map([pool_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(StoreError::catalog("counting labels"))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (label, n) = r.map_err(StoreError::catalog("counting labels"))?;
            out.insert(label, n as u64);
        }
        Ok(out)
    }

    /// The smallest and largest row id of a pool's items below row `below` (None: none).
    /// Bounded so that rows a running server commits meanwhile do not count.
    pub fn row_id_range(&self, pool_id: i64, below: u64) -> Result<Option<(u64, u64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(row_id), MAX(row_id) FROM items WHERE pool_id = ?1 AND row_id < ?2",
                params![pool_id, below as i64],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .map(|(lo, hi)| lo.zip(hi).map(|(lo, hi)| (lo as u64, hi as u64)))
            .map_err(StoreError::catalog("reading row ids"))
    }

    /// Number of items recorded for a pool below row `below` (equals `below` when healthy
    /// and `below` is the committed count). Bounded so that rows a running server commits
    /// meanwhile do not count.
    pub fn item_count(&self, pool_id: i64, below: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM items WHERE pool_id = ?1 AND row_id < ?2",
                params![pool_id, below as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(StoreError::catalog("counting items"))
    }
}

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        row: r.get::<_, i64>(0)? as RowId,
        key: r.get(1)?,
        label: r.get(2)?,
        content_hash: r.get(3)?,
        metadata: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How SQLite would answer `sql` on a pool's items.
    fn plan(catalog: &Catalog, sql: &str) -> String {
        let n = sql.matches('?').count();
        let args: Vec<i64> = (1..=n as i64).collect();
        let mut stmt = catalog
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("the query parses");
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .expect("a plan");
        rows.map(|r| r.expect("a plan row"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn lookups_by_hash_key_and_label_use_their_indexes_not_a_pass_over_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let by_hash = plan(&catalog, KEY_BY_HASH);
        assert!(
            by_hash.contains("items_by_hash (pool_id=? AND content_hash=?)"),
            "{by_hash}"
        );
        let by_key = plan(
            &catalog,
            "SELECT row_id FROM items WHERE pool_id = ?1 AND key = ?2",
        );
        assert!(by_key.contains("(pool_id=? AND key=?)"), "{by_key}");
        let by_label = plan(&catalog, ROWS_WITH_LABEL);
        assert!(
            by_label.contains("items_by_label (pool_id=? AND label=?)"),
            "{by_label}"
        );
    }
}
