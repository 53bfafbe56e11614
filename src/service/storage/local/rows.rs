//! Reading a local pool's rows: vectors from the memory map, items, keys and labels from the
//! catalog; a selection becomes a row filter.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::handle::ReadyPool;
use crate::index::RowFilter;
use crate::service::storage::{PoolRows, Selection};
use crate::service::Result;
use crate::store::{Item, PoolRecord};
use crate::types::{Matrix, RowId};

impl PoolRows for ReadyPool<'_> {
    fn record(&self) -> &PoolRecord {
        self.guard.pool.record()
    }

    fn len(&self) -> usize {
        self.guard.pool.len()
    }

    fn vectors(&self, rows: &[RowId]) -> Result<Matrix> {
        let pool = &self.guard.pool;
        let view = pool.vectors();
        let dim = pool.dim();
        let mut data = Vec::with_capacity(rows.len() * dim);
        for &row in rows {
            if row as usize >= pool.len() {
                return Err(crate::service::ServiceError::Internal {
                    what: format!(
                        "row {row} asked of pool {} with {} rows",
                        pool.record().name,
                        pool.len()
                    ),
                });
            }
            data.extend(view.row_f32(row as usize));
        }
        Ok(Matrix::new(rows.len(), dim, data))
    }

    fn items(&self, rows: &[RowId]) -> Result<Vec<Item>> {
        Ok(self.guard.pool.items(rows)?)
    }

    fn row_of_key(&self, key: &str) -> Result<Option<RowId>> {
        Ok(self.guard.pool.row_of_key(key)?)
    }

    fn existing_keys(&self, keys: &[&str]) -> Result<HashSet<String>> {
        Ok(self.guard.pool.existing_keys(keys)?)
    }

    fn keys_by_hash(&self, hashes: &[&str]) -> Result<HashMap<String, String>> {
        Ok(self.guard.pool.keys_by_hash(hashes)?)
    }

    fn labels_in_range(&self, from: usize, to: usize) -> Result<Vec<(RowId, Option<String>)>> {
        Ok(self.guard.pool.labels_in_range(from, to)?)
    }

    fn label_histogram(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self.guard.pool.label_histogram()?)
    }

    fn select(&self, labels: &[String], exclude_keys: &[String]) -> Result<Option<Selection>> {
        if labels.is_empty() && exclude_keys.is_empty() {
            return Ok(None);
        }
        let pool = &self.guard.pool;
        let n = pool.len();
        let mut rows = if labels.is_empty() {
            RowFilter::all(n)
        } else {
            RowFilter::from_rows(pool.rows_with_labels(labels)?, n)
        };
        let mut excluded = 0;
        for key in exclude_keys {
            if let Some(row) = pool.row_of_key(key)? {
                excluded += 1;
                rows.remove(row);
            }
        }
        Ok(Some(Selection {
            labels: labels.to_vec(),
            exclude_keys: exclude_keys.to_vec(),
            excluded,
            rows: Some(rows),
        }))
    }
}
