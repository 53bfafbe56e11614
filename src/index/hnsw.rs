//! The hnsw_rs crate behind [`AnnIndex`], kept as a selectable engine so benchmarks can compare
//! it with the native graph. hnsw_rs types never leave this file.
//!
//! It runs with our squared-ℓ2 kernel (its `DistL2` takes a square root per call and sums in
//! one accumulator). hnsw_rs keeps its own copy of every vector, and its dump cannot be written
//! atomically (it renames on collision), so dcd does not persist this engine: the manager
//! rebuilds it from the store when a pool is opened with it.

use std::path::Path;

use hnsw_rs::prelude::{Hnsw, Neighbour};

use super::distance::l2_squared;
use super::graph::HnswParams;
use super::{check_extend, validate_query, AnnIndex, IndexError, SearchParams};
use crate::types::{Neighbor, RowId, VectorView};

/// hnsw_rs only dumps graphs built with its maximum layer count.
const HNSW_RS_MAX_LAYER: usize = 16;

/// Squared ℓ2 with dcd's SIMD kernel.
#[derive(Clone, Copy, Debug, Default)]
struct SquaredL2;

impl anndists::dist::Distance<f32> for SquaredL2 {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        l2_squared(va, vb)
    }
}

/// An hnsw_rs graph over a pool.
pub struct HnswRsIndex {
    inner: Hnsw<'static, f32, SquaredL2>,
    params: HnswParams,
    dim: usize,
    len: usize,
}

impl HnswRsIndex {
    /// An empty index sized for about `capacity` rows.
    pub fn new(dim: usize, params: HnswParams, capacity: usize) -> Result<HnswRsIndex, IndexError> {
        params.validate()?;
        if params.m > 255 {
            return Err(IndexError::InvalidParameter {
                name: "m",
                value: params.m.to_string(),
                reason: "hnsw_rs accepts at most 255",
            });
        }
        let inner = Hnsw::new(
            params.m,
            capacity.max(1),
            HNSW_RS_MAX_LAYER,
            params.ef_construction,
            SquaredL2,
        );
        Ok(HnswRsIndex {
            inner,
            params,
            dim,
            len: 0,
        })
    }

    /// Builds over every row of `vectors`.
    pub fn build(vectors: VectorView<'_>, params: HnswParams) -> Result<HnswRsIndex, IndexError> {
        let mut idx = HnswRsIndex::new(vectors.dim(), params, vectors.len())?;
        idx.extend(vectors)?;
        Ok(idx)
    }
}

impl AnnIndex for HnswRsIndex {
    fn engine(&self) -> &'static str {
        "hnsw_rs"
    }

    fn len(&self) -> usize {
        self.len
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn extend(&mut self, vectors: VectorView<'_>) -> Result<(), IndexError> {
        check_extend(self.len, self.dim, &vectors)?;
        let (start, end) = (self.len, vectors.len());
        let dim = self.dim;
        // hnsw_rs copies each slice it is given, so convert in chunks to bound the extra memory.
        const CHUNK: usize = 65_536;
        let mut s = start;
        while s < end {
            let e = (s + CHUNK).min(end);
            let mut rows = vec![0.0f32; (e - s) * dim];
            vectors.copy_rows_f32(s, e, &mut rows);
            let batch: Vec<(&[f32], usize)> = rows
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, r)| (r, s + i))
                .collect();
            self.inner.parallel_insert_slice(&batch);
            s = e;
        }
        self.len = end;
        Ok(())
    }

    fn search(
        &self,
        _vectors: VectorView<'_>,
        query: &[f32],
        params: &SearchParams<'_>,
    ) -> Result<Vec<Neighbor>, IndexError> {
        validate_query(self.dim, query, params.k, 0)?;
        if self.len == 0 {
            return Err(IndexError::EmptyPool);
        }
        let ef = params.ef.unwrap_or(self.params.ef_search).max(params.k);
        let hits: Vec<Neighbour> = match params.filter {
            Some(f) => {
                let allow = |id: &usize| f.allows(*id as RowId);
                self.inner.search_filter(query, params.k, ef, Some(&allow))
            }
            None => self.inner.search(query, params.k, ef),
        };
        let mut out: Vec<Neighbor> = hits
            .into_iter()
            .map(|h| Neighbor {
                id: h.d_id as RowId,
                distance: h.distance,
            })
            .collect();
        out.sort_by(Neighbor::rank_cmp);
        Ok(out)
    }

    fn save(&self, path: &Path) -> Result<(), IndexError> {
        Err(IndexError::Backend(format!(
            "the hnsw_rs engine is rebuilt from the store on open and is not saved (asked to write {})",
            path.display()
        )))
    }
}
