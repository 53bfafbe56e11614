//! Vector search over a pool: the [`AnnIndex`] seam and its engines.
//!
//! - [`exact`]: brute force (tiled GEMM + exact re-rank), the recall oracle and the exact path.
//! - [`graph`]: dcd's own compact HNSW, the default approximate engine.
//! - `hnsw`: the hnsw_rs crate behind the same trait, kept selectable for comparison (cargo
//!   feature `hnsw-rs`).
//! - [`manager`]: opens a pool's index from disk, catches it up with the store, rebuilds it
//!   when it is missing or damaged.
//!
//! Indexes hold no copy of the vectors: every call gets the pool's rows as a [`VectorView`]
//! (the store's memory map), and an index covers rows `0..len()` of it.

pub mod distance;
pub mod error;
pub mod exact;
pub mod graph;
#[cfg(feature = "hnsw-rs")]
pub mod hnsw;
pub mod manager;
pub mod progress;
pub mod topk;

use std::path::Path;

use rayon::prelude::*;

pub use error::IndexError;

use crate::types::{Matrix, Neighbor, RowId, VectorView};

/// The largest `k` a search accepts.
pub const MAX_K: usize = 10_000;

/// A set of allowed rows, as a bitmap over the pool.
#[derive(Clone, Debug)]
pub struct RowFilter {
    bits: Vec<u64>,
    count: usize,
}

impl RowFilter {
    /// Allows exactly `rows` (ids at or past `pool_len` are ignored).
    pub fn from_rows(rows: impl IntoIterator<Item = RowId>, pool_len: usize) -> RowFilter {
        let mut bits = vec![0u64; pool_len.div_ceil(64)];
        let mut count = 0;
        for r in rows {
            let r = r as usize;
            if r < pool_len && bits[r / 64] & (1 << (r % 64)) == 0 {
                bits[r / 64] |= 1 << (r % 64);
                count += 1;
            }
        }
        RowFilter { bits, count }
    }

    /// Allows every row of a pool of `pool_len`.
    pub fn all(pool_len: usize) -> RowFilter {
        let mut bits = vec![u64::MAX; pool_len.div_ceil(64)];
        if !pool_len.is_multiple_of(64) {
            if let Some(last) = bits.last_mut() {
                *last = (1u64 << (pool_len % 64)) - 1;
            }
        }
        RowFilter {
            bits,
            count: pool_len,
        }
    }

    /// Disallows `row`.
    pub fn remove(&mut self, row: RowId) {
        let r = row as usize;
        if let Some(w) = self.bits.get_mut(r / 64) {
            if *w & (1 << (r % 64)) != 0 {
                *w &= !(1 << (r % 64));
                self.count -= 1;
            }
        }
    }

    /// True when `row` may be returned.
    #[inline]
    pub fn allows(&self, row: RowId) -> bool {
        let r = row as usize;
        self.bits
            .get(r / 64)
            .is_some_and(|w| w & (1 << (r % 64)) != 0)
    }

    /// Number of allowed rows.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The bitmap as 32-bit words covering `len` rows (bit i of word w is row 32w + i), the
    /// layout the GPU kernels read.
    pub fn words32(&self, len: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(len.div_ceil(32));
        for w in &self.bits {
            out.push(*w as u32);
            out.push((*w >> 32) as u32);
        }
        out.resize(len.div_ceil(32), 0);
        out
    }

    /// Allowed rows, ascending.
    pub fn rows(&self) -> impl Iterator<Item = RowId> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1u64 << b) != 0)
                .map(move |b| (w * 64 + b) as RowId)
        })
    }
}

/// Per-query search settings.
#[derive(Clone, Copy, Debug)]
pub struct SearchParams<'a> {
    /// Neighbours wanted.
    pub k: usize,
    /// Beam width for graph search (`None`: the index default; raised to `k` if smaller).
    pub ef: Option<usize>,
    /// Only these rows may be returned.
    pub filter: Option<&'a RowFilter>,
}

impl SearchParams<'_> {
    /// Plain k-NN with the index's default beam.
    pub fn k(k: usize) -> SearchParams<'static> {
        SearchParams {
            k,
            ef: None,
            filter: None,
        }
    }
}

/// A nearest-neighbour index over the rows of one pool.
pub trait AnnIndex: Send + Sync {
    /// Engine name, as shown in reports (`exact`, `native-hnsw`, `hnsw_rs`).
    fn engine(&self) -> &'static str;

    /// Rows covered: `0..len()` of the pool.
    fn len(&self) -> usize;

    /// True when no row is covered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    fn dim(&self) -> usize;

    /// Indexes rows `len()..vectors.len()`, using the current rayon pool for parallel work.
    fn extend(&mut self, vectors: VectorView<'_>) -> Result<(), IndexError>;

    /// The `params.k` nearest rows to `query`, best first (fewer if fewer rows are allowed).
    fn search(
        &self,
        vectors: VectorView<'_>,
        query: &[f32],
        params: &SearchParams<'_>,
    ) -> Result<Vec<Neighbor>, IndexError>;

    /// One result list per query row, searched in parallel.
    fn search_batch(
        &self,
        vectors: VectorView<'_>,
        queries: &Matrix,
        params: &SearchParams<'_>,
    ) -> Result<Vec<Vec<Neighbor>>, IndexError> {
        validate_queries(self.dim(), queries, params.k)?;
        (0..queries.rows)
            .into_par_iter()
            .map(|i| self.search(vectors, queries.row(i), params))
            .collect()
    }

    /// True when the engine is saved in the pool folder (others are rebuilt on open).
    fn persistent(&self) -> bool {
        false
    }

    /// Writes the index to `path` atomically (temp file, fsync, rename).
    fn save(&self, path: &Path) -> Result<(), IndexError>;
}

/// Checks that `vectors` can extend an index of `index_rows` rows of `dim` dimensions: same
/// dimension, and at least as many rows (an index never covers rows the pool lacks).
pub fn check_extend(
    index_rows: usize,
    dim: usize,
    vectors: &VectorView<'_>,
) -> Result<(), IndexError> {
    if vectors.len() < index_rows {
        return Err(IndexError::AheadOfStore {
            index_rows,
            pool_rows: vectors.len(),
        });
    }
    if vectors.dim() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: vectors.dim(),
            query: 0,
        });
    }
    Ok(())
}

/// Checks `k` and one query.
pub fn validate_query(
    dim: usize,
    query: &[f32],
    k: usize,
    position: usize,
) -> Result<(), IndexError> {
    if k == 0 || k > MAX_K {
        return Err(IndexError::InvalidK { k, max: MAX_K });
    }
    if query.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: query.len(),
            query: position,
        });
    }
    if let Some(col) = query.iter().position(|v| !v.is_finite()) {
        return Err(IndexError::NonFiniteQuery {
            query: position,
            col,
        });
    }
    let norm = crate::types::squared_norm(query);
    if norm > crate::types::MAX_SQUARED_NORM {
        return Err(IndexError::VectorTooLarge {
            query: position,
            squared_norm: norm,
        });
    }
    Ok(())
}

/// Checks `k` and a batch of queries.
pub fn validate_queries(dim: usize, queries: &Matrix, k: usize) -> Result<(), IndexError> {
    if k == 0 || k > MAX_K {
        return Err(IndexError::InvalidK { k, max: MAX_K });
    }
    if queries.dim != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: queries.dim,
            query: 0,
        });
    }
    if let Some((query, col)) = queries.first_non_finite() {
        return Err(IndexError::NonFiniteQuery { query, col });
    }
    Ok(())
}

/// Writes `bytes` to `path` via a temp file in the same folder, fsynced, then renamed.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(IndexError::io(&tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(IndexError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(IndexError::io(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IndexError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_allow_remove_and_export_32_bit_words() {
        let mut f = RowFilter::all(70);
        assert_eq!(f.count(), 70);
        assert!(f.allows(69) && !f.allows(70));
        f.remove(33);
        f.remove(33);
        assert_eq!(f.count(), 69);
        let words = f.words32(70);
        assert_eq!(words.len(), 3);
        assert_eq!(words[0], u32::MAX);
        assert_eq!(words[1], !(1u32 << 1));
        assert_eq!(words[2], 0b11_1111);
        let g = RowFilter::from_rows([0, 40], 70);
        assert_eq!(g.words32(70), vec![1, 1 << 8, 0]);
    }
}
