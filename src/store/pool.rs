//! An open pool: its record, its memory-mapped rows and its items in the catalog; durable
//! appends (rows written and synced, then the catalog rows in one transaction) and the checks
//! `dcd pool verify` runs.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::catalog::Catalog;
use super::{
    check_item, Item, JobBatch, NewItem, PoolRecord, StoreError, VectorFile, VectorSnapshot,
    MAX_ROWS,
};
use crate::types::{Matrix, RowId, VectorView};

/// An open pool.
pub struct Pool {
    pub(super) record: PoolRecord,
    pub(super) dir: PathBuf,
    pub(super) vectors: VectorFile,
    pub(super) catalog: Arc<Mutex<Catalog>>,
    pub(super) read_only: bool,
}

impl Pool {
    /// The catalog record (row count kept current by `append`).
    pub fn record(&self) -> &PoolRecord {
        &self.record
    }

    /// True when its store was opened read-only: appends are refused, index files are not
    /// written.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The pool's folder (index files live here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Committed rows.
    pub fn len(&self) -> usize {
        self.record.rows as usize
    }

    /// True when the pool holds no rows.
    pub fn is_empty(&self) -> bool {
        self.record.rows == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.record.dim
    }

    /// Committed vectors, straight from the memory map.
    pub fn vectors(&self) -> VectorView<'_> {
        self.vectors.view()
    }

    /// The committed rows as of now, readable after the pool's lock is let go (see
    /// [`VectorSnapshot`]).
    pub fn snapshot(&self) -> VectorSnapshot {
        self.vectors.snapshot()
    }

    /// Appends vectors with their items durably; returns the new rows. Either the whole batch
    /// is stored or none of it, and a rejected batch leaves the pool as it was.
    pub fn append(
        &mut self,
        vectors: &Matrix,
        items: &[NewItem],
    ) -> Result<Range<u64>, StoreError> {
        self.append_for_job(vectors, items, None)
    }

    /// As [`Pool::append`], and records what an ingestion job did with each of its source
    /// entries in the same transaction, so a job resumed after a crash neither loses nor
    /// repeats an entry.
    pub fn append_for_job(
        &mut self,
        vectors: &Matrix,
        items: &[NewItem],
        job: Option<&JobBatch<'_>>,
    ) -> Result<Range<u64>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.dir.clone(),
            });
        }
        if vectors.dim != self.record.dim {
            return Err(StoreError::DimensionMismatch {
                pool: self.record.name.clone(),
                expected: self.record.dim,
                got: vectors.dim,
            });
        }
        if items.len() != vectors.rows {
            return Err(StoreError::ItemCountMismatch {
                items: items.len(),
                vectors: vectors.rows,
            });
        }
        if let Some((row, col)) = vectors.first_non_finite() {
            return Err(StoreError::NonFinite { row, col });
        }
        if let Some((row, squared_norm)) = vectors.first_too_large() {
            return Err(StoreError::VectorTooLarge { row, squared_norm });
        }
        for it in items {
            if let Err(reason) = check_item(it) {
                return Err(StoreError::InvalidItem {
                    key: crate::types::clip_for_message(&it.key, 200),
                    reason,
                });
            }
        }
        for it in items {
            if let Some(meta) = &it.metadata {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(meta) {
                    return Err(StoreError::InvalidMetadata {
                        key: it.key.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let start = self.record.rows;
        let end = start + vectors.rows as u64;
        if end > MAX_ROWS {
            return Err(StoreError::PoolFull {
                pool: self.record.name.clone(),
                rows: end,
                max: MAX_ROWS,
            });
        }
        if vectors.rows == 0 {
            if let Some(job) = job {
                self.catalog.lock().record_job_entries(job)?;
            }
            return Ok(start..start);
        }
        let pending = self.vectors.write_pending(&vectors.data)?;
        debug_assert_eq!(pending, end);
        let committed = self
            .catalog
            .lock()
            .commit_items(&self.record, start, items, job);
        match committed {
            Ok(count) => {
                self.record.rows = count;
                self.vectors.publish(count)?;
                Ok(start..end)
            }
            Err(e) => {
                self.vectors.discard_pending()?;
                Err(e)
            }
        }
    }

    /// Items of the given rows.
    pub fn items(&self, rows: &[RowId]) -> Result<Vec<Item>, StoreError> {
        self.catalog.lock().items(self.record.id, rows)
    }

    /// The weak label of every item with a row in `from..to` (None: unlabelled), by row.
    pub fn labels_in_range(
        &self,
        from: usize,
        to: usize,
    ) -> Result<Vec<(RowId, Option<String>)>, StoreError> {
        self.catalog
            .lock()
            .labels_in_range(self.record.id, from as u64, to as u64)
    }

    /// The row stored under `key`.
    pub fn row_of_key(&self, key: &str) -> Result<Option<RowId>, StoreError> {
        self.catalog.lock().row_of_key(self.record.id, key)
    }

    /// Which of `keys` are already stored.
    pub fn existing_keys(
        &self,
        keys: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.catalog.lock().existing_keys(self.record.id, keys)
    }

    /// The key of an item with each of these content hashes, where one is stored.
    pub fn keys_by_hash(
        &self,
        hashes: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.catalog.lock().keys_by_hash(self.record.id, hashes)
    }

    /// Rows whose weak label is one of `labels`.
    pub fn rows_with_labels(&self, labels: &[String]) -> Result<Vec<RowId>, StoreError> {
        self.catalog.lock().rows_with_labels(self.record.id, labels)
    }

    /// Items per weak label.
    pub fn label_histogram(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        self.catalog.lock().label_histogram(self.record.id)
    }

    /// Checks that catalog rows and vector rows agree; returns the count.
    pub fn verify(&self) -> Result<u64, StoreError> {
        let items = self
            .catalog
            .lock()
            .item_count(self.record.id, self.record.rows)?;
        let rows = self.vectors.count();
        if items != self.record.rows || rows != self.record.rows {
            return Err(StoreError::CorruptVectorFile {
                path: self.vectors.path().to_owned(),
                reason: format!(
                    "catalog count {}, item rows {items}, vector rows {rows}",
                    self.record.rows
                ),
            });
        }
        Ok(rows)
    }

    /// [`Pool::verify`], and the rest of what `dcd pool verify` checks: every row from 0 to
    /// the count has exactly one item (ids unique by the schema, their range here), and every
    /// stored value is finite. Reads every row: minutes for a large pool.
    pub fn verify_deep(&self) -> Result<u64, StoreError> {
        let rows = self.verify()?;
        let range = self.catalog.lock().row_id_range(self.record.id, rows)?;
        let expected = (rows > 0).then(|| (0, rows - 1));
        if range != expected {
            return Err(StoreError::CorruptVectorFile {
                path: self.vectors.path().to_owned(),
                reason: format!(
                    "item row ids span {range:?}, the {rows} committed rows need {expected:?}"
                ),
            });
        }
        let view = self.vectors.view();
        let dim = view.dim();
        let mut buf = vec![0.0f32; 1024 * dim];
        for start in (0..view.len()).step_by(1024) {
            let end = (start + 1024).min(view.len());
            let block = &mut buf[..(end - start) * dim];
            view.copy_rows_f32(start, end, block);
            if let Some(pos) = block.iter().position(|v| !v.is_finite()) {
                return Err(StoreError::CorruptVectorFile {
                    path: self.vectors.path().to_owned(),
                    reason: format!(
                        "row {} holds a non-finite value at position {}",
                        start + pos / dim,
                        pos % dim
                    ),
                });
            }
        }
        Ok(rows)
    }
}
