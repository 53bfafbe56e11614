//! Every row's weak label in memory, per pool generation: the label vote and the label caps
//! need the weak label of every candidate (thousands per request), and looking each up in the
//! catalog cost more than the rest of the request's bookkeeping. A pool's labels never change
//! once stored, and rows are only appended, so a column read once serves every request until
//! the pool grows. Read in row ranges, so that ingest commits are not held up behind one long
//! read of the catalog.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::samples::{cached, Generation};
use crate::service::storage::PoolRows;
use crate::service::Result;
use crate::types::RowId;

/// Pools with more rows are not held in memory (4 bytes a row): their candidates' labels are
/// read from the catalog per request, as before.
pub const MAX_ROWS: usize = 20_000_000;
/// Rows read from the catalog at a time.
const RANGE: usize = 65_536;
/// `of_row` for a row without a label.
const NONE: u32 = u32::MAX;

/// Each pool's label column, per generation.
#[derive(Default)]
pub struct WeakLabels {
    columns: Mutex<HashMap<Generation, Arc<LabelColumn>>>,
}

/// Every row's weak label, as an index into the pool's distinct labels.
pub(super) struct LabelColumn {
    names: Vec<String>,
    of_row: Vec<u32>,
}

impl LabelColumn {
    /// The weak label of `row` (None: unlabelled, or no such row).
    pub fn get(&self, row: RowId) -> Option<&str> {
        match self.of_row.get(row as usize) {
            Some(&i) if i != NONE => Some(self.names[i as usize].as_str()),
            _ => None,
        }
    }
}

impl WeakLabels {
    /// The label column of `pool`, read on first use; None for pools over `MAX_ROWS` rows.
    pub(super) fn of(&self, pool: &dyn PoolRows) -> Result<Option<Arc<LabelColumn>>> {
        if pool.len() > MAX_ROWS {
            return Ok(None);
        }
        cached(&self.columns, pool.generation(), || read(pool)).map(Some)
    }
}

fn read(pool: &dyn PoolRows) -> Result<LabelColumn> {
    let started = std::time::Instant::now();
    let n = pool.len();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut names = Vec::new();
    let mut of_row = vec![NONE; n];
    for from in (0..n).step_by(RANGE) {
        for (row, label) in pool.labels_in_range(from, (from + RANGE).min(n))? {
            let (Some(label), Some(slot)) = (label, of_row.get_mut(row as usize)) else {
                continue;
            };
            *slot = *index.entry(label).or_insert_with_key(|l| {
                names.push(l.clone());
                (names.len() - 1) as u32
            });
        }
    }
    tracing::info!(
        pool = %pool.record().name,
        rows = n,
        labels = names.len(),
        secs = started.elapsed().as_secs_f64(),
        "weak labels read into memory"
    );
    Ok(LabelColumn { names, of_row })
}
