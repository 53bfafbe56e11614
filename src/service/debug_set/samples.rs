//! What reference gaps and distance scales share: rows sampled evenly over a pool, and a
//! cache of work done per pool generation (a pool deleted and made again under its name, or
//! grown, is another generation).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::service::Result;
use crate::types::RowId;

/// Entries a cache keeps before it starts afresh.
const CACHE_ENTRIES: usize = 16;

pub use crate::service::storage::Generation;

/// The value cached under `key`, made by `make` when missing.
pub fn cached<K: std::hash::Hash + Eq, V>(
    cache: &Mutex<HashMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce() -> Result<V>,
) -> Result<Arc<V>> {
    if let Some(v) = cache.lock().get(&key) {
        return Ok(v.clone());
    }
    // Made without the lock held: other requests go on meanwhile (two may both make it once).
    let v = Arc::new(make()?);
    let mut map = cache.lock();
    if map.len() >= CACHE_ENTRIES {
        map.clear();
    }
    map.insert(key, v.clone());
    Ok(v)
}

/// `n` rows spread evenly over `0..len` (all of them when `len` ≤ `n`).
pub fn spread(len: usize, n: usize) -> Vec<RowId> {
    let n = n.min(len);
    (0..n).map(|i| (i * len / n) as RowId).collect()
}
