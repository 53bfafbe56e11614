//! The pool's own distance scale: how far its items lie from their nearest neighbour, from a
//! sample of rows spread over it. A distance cap given as a percentile of that scale means
//! the same on any backbone ("no farther than the 20% closest pairs of the pool"), where a
//! raw squared distance has to be found anew for each feature space.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::samples::{cached, spread, Generation};
use crate::service::query::QUERY_STEP;
use crate::service::storage::{Lookup, PoolSearch};
use crate::service::Result;
use crate::service::ServiceError;

/// Rows whose nearest-neighbour distances make the scale.
pub const SCALE_SAMPLE: usize = 1000;
/// Sorted nearest-neighbour distances per pool generation.
type Scales = HashMap<Generation, Arc<Vec<f32>>>;

/// Each pool's scale, per generation.
#[derive(Default)]
pub struct DistanceScales {
    scales: Mutex<Scales>,
}

/// A pool's nearest-neighbour distances (squared ℓ2), sorted.
pub(super) struct Scale(Arc<Vec<f32>>);

impl Scale {
    /// The distance at percentile `p` (0 to 1) of the scale.
    pub fn at(&self, p: f32) -> f32 {
        let s = &self.0;
        if s.is_empty() {
            return f32::INFINITY;
        }
        let i = ((p * s.len() as f32).ceil() as usize).clamp(1, s.len()) - 1;
        s[i]
    }

    /// Share of the scale under `distance`.
    pub fn percentile(&self, distance: f32) -> f32 {
        self.0.partition_point(|&s| s < distance) as f32 / self.0.len().max(1) as f32
    }
}

impl DistanceScales {
    /// The scale of `ready`'s pool, searched with its own engine.
    pub(super) fn of(&self, pool: &dyn PoolSearch, ef: Option<usize>) -> Result<Scale> {
        let scale = cached(&self.scales, pool.generation(), || {
            let rows = spread(pool.len(), SCALE_SAMPLE);
            let lookup = Lookup {
                k: 2,
                ef,
                within: None,
            };
            let mut distances = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(QUERY_STEP) {
                if crate::cancel::requested() {
                    return Err(ServiceError::Cancelled {
                        what: "measuring the pool's distance scale",
                    });
                }
                let queries = pool.vectors(chunk)?;
                for (&row, found) in chunk.iter().zip(pool.search(&queries, &lookup)?) {
                    // The nearest other row: an exact copy counts, at distance 0.
                    if let Some(n) = found.iter().find(|n| n.id != row) {
                        distances.push(n.distance);
                    }
                }
            }
            distances.sort_by(f32::total_cmp);
            Ok(distances)
        })?;
        Ok(Scale(scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_caps_agree() {
        let s = Scale(Arc::new((1..=100).map(|i| i as f32).collect()));
        assert_eq!(s.at(0.2), 20.0);
        assert_eq!(s.at(1.0), 100.0);
        assert_eq!(s.at(0.001), 1.0);
        assert_eq!(s.percentile(20.5), 0.2);
        assert_eq!(s.percentile(0.5), 0.0);
        assert_eq!(s.percentile(1000.0), 1.0);
        assert_eq!(Scale(Arc::new(Vec::new())).at(0.5), f32::INFINITY);
    }
}
