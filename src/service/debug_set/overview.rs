//! What the review page draws beside a saved set's items: a 2-D map (the first two
//! principal components of the error samples, the set and a random sample of the pool, in
//! one projection) and that random sample of the same size as the set (capped), with its
//! weak labels and its distances to the error samples, so a reviewer sees what the set adds
//! over chance.

use std::collections::BTreeMap;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::debugset::Quantiles;
use crate::index::distance::l2_squared;
use crate::service::storage::PoolRows;
use crate::service::{Result, Service};
use crate::types::RowId;

/// Most rows of the random sample (the set's size, up to this).
pub const MAX_RANDOM: usize = 2000;

/// A pool item of the random sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampledItem {
    /// Its row.
    pub row: RowId,
    /// Its key.
    pub key: String,
    /// Its weak label.
    pub label: Option<String>,
    /// Squared ℓ2 to the nearest error sample.
    pub distance: f32,
}

/// A saved set against chance, and where both lie.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetOverview {
    /// Map positions of the usable error samples, in request order.
    pub errors: Vec<[f32; 2]>,
    /// Map positions of the set's items, in the set's order.
    pub items: Vec<[f32; 2]>,
    /// Map positions of the random sample.
    pub random: Vec<[f32; 2]>,
    /// Share of the variance each map axis shows.
    pub explained: [f32; 2],
    /// The random sample of the pool, as many rows as the set holds (up to `MAX_RANDOM`).
    pub random_items: Vec<SampledItem>,
    /// Its weak labels ("" for none).
    pub random_labels: BTreeMap<String, u64>,
    /// Its distances to the nearest error sample.
    pub random_distances: Option<Quantiles>,
}

impl Service {
    /// The map and the random sample of the saved set `name` (the sample is the same on
    /// every call: it is seeded by the set's name).
    pub fn set_overview(&self, name: &str) -> Result<SetOverview> {
        let saved = self.saved_debug_set(name)?;
        let handle = self.pool(&saved.record.pool)?;
        let rows = handle.rows()?;
        let errors: Vec<&[f32]> = saved
            .manifest
            .errors
            .iter()
            .filter_map(|e| e.vector.as_deref())
            .collect();
        let item_rows: Vec<RowId> = saved.items.iter().map(|i| i.row).collect();
        overview_of(rows.as_ref(), &errors, &item_rows, seed_of(name))
    }
}

/// Where `errors` and the set of `item_rows` lie on one map with a random sample of `pool`
/// of the set's size (up to `MAX_RANDOM`), drawn with `seed`. Error vectors of another
/// dimension than the pool's are left off.
pub(super) fn overview_of(
    pool: &dyn PoolRows,
    errors: &[&[f32]],
    item_rows: &[RowId],
    seed: u64,
) -> Result<SetOverview> {
    let dim = pool.dim();
    let errors: Vec<&[f32]> = errors.iter().copied().filter(|v| v.len() == dim).collect();
    let items = pool.vectors(item_rows)?;
    let n = item_rows.len().clamp(1, MAX_RANDOM).min(pool.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sample: Vec<RowId> = rand::seq::index::sample(&mut rng, pool.len(), n)
        .into_iter()
        .map(|r| r as RowId)
        .collect();
    sample.sort_unstable();
    let random = pool.vectors(&sample)?;
    let sampled = pool.items(&sample)?;
    let distances: Vec<f32> = random
        .iter_rows()
        .map(|v| {
            errors
                .iter()
                .map(|e| l2_squared(v, e))
                .fold(f32::INFINITY, f32::min)
        })
        .collect();
    let mut random_labels = BTreeMap::new();
    for it in &sampled {
        *random_labels
            .entry(it.label.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    let all: Vec<&[f32]> = errors
        .iter()
        .copied()
        .chain(items.iter_rows())
        .chain(random.iter_rows())
        .collect();
    let (points, explained) = project_2d(&all, dim);
    let (e, rest) = points.split_at(errors.len());
    let (i, r) = rest.split_at(items.rows);
    let finite: Vec<f32> = distances
        .iter()
        .copied()
        .filter(|d| d.is_finite())
        .collect();
    Ok(SetOverview {
        errors: e.to_vec(),
        items: i.to_vec(),
        random: r.to_vec(),
        explained,
        random_items: sampled
            .into_iter()
            .zip(&distances)
            .map(|(it, &d)| SampledItem {
                row: it.row,
                key: it.key,
                label: it.label,
                distance: d,
            })
            .collect(),
        random_labels,
        random_distances: crate::debugset::quantiles(&finite),
    })
}

/// The seed of an unsaved set's random sample: its pool and rows, so the same set gets the
/// same sample.
pub(super) fn seed_of_set(pool: &str, rows: &[RowId]) -> u64 {
    rows.iter()
        .flat_map(|r| r.to_le_bytes())
        .fold(seed_of(pool), |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
}

fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The points on their first two principal components (power iteration on the centred
/// points, the second kept orthogonal to the first), and the share of variance each shows.
fn project_2d(points: &[&[f32]], dim: usize) -> (Vec<[f32; 2]>, [f32; 2]) {
    let n = points.len();
    if n == 0 || dim == 0 {
        return (vec![[0.0, 0.0]; n], [0.0, 0.0]);
    }
    let mut mean = vec![0f64; dim];
    for p in points {
        for (m, &x) in mean.iter_mut().zip(*p) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect())
        .collect();
    let total: f64 = centred
        .iter()
        .map(|p| p.iter().map(|x| x * x).sum::<f64>())
        .sum();
    // X^T X v, without forming X^T X.
    let apply = |v: &[f64]| -> Vec<f64> {
        let mut out = vec![0f64; dim];
        for p in &centred {
            let s: f64 = p.iter().zip(v).map(|(a, b)| a * b).sum();
            for (o, &a) in out.iter_mut().zip(p) {
                *o += s * a;
            }
        }
        out
    };
    let normalize = |v: &mut Vec<f64>| {
        let len = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if len > 0.0 {
            v.iter_mut().for_each(|x| *x /= len);
        }
    };
    let mut axes: Vec<Vec<f64>> = Vec::new();
    let mut shares = [0f32; 2];
    for (a, share) in shares.iter_mut().enumerate() {
        let mut v: Vec<f64> = (0..dim)
            .map(|i| ((i * 7 + a * 3) % 11) as f64 + 1.0)
            .collect();
        normalize(&mut v);
        let mut value = 0.0;
        for _ in 0..40 {
            let mut w = apply(&v);
            for u in &axes {
                let d: f64 = w.iter().zip(u).map(|(x, y)| x * y).sum();
                w.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
            }
            value = w.iter().zip(&v).map(|(x, y)| x * y).sum();
            normalize(&mut w);
            v = w;
        }
        *share = if total > 0.0 {
            (value / total) as f32
        } else {
            0.0
        };
        axes.push(v);
    }
    let coords = centred
        .iter()
        .map(|p| {
            let at = |u: &Vec<f64>| p.iter().zip(u).map(|(x, y)| x * y).sum::<f64>() as f32;
            [at(&axes[0]), at(&axes[1])]
        })
        .collect();
    (coords, shares)
}

#[cfg(test)]
mod tests {
    use super::project_2d;

    #[test]
    fn the_map_follows_the_spread_of_the_points() {
        // Spread along x (large) and y (small); z constant: the axes find x then y.
        let pts: Vec<Vec<f32>> = (0..50)
            .map(|i| {
                let t = i as f32 - 25.0;
                vec![3.0 * t, (i % 5) as f32 - 2.0, 7.0]
            })
            .collect();
        let refs: Vec<&[f32]> = pts.iter().map(Vec::as_slice).collect();
        let (coords, shares) = project_2d(&refs, 3);
        assert!(shares[0] > 0.95 && shares[1] > 0.0, "{shares:?}");
        let xs: Vec<f32> = coords.iter().map(|c| c[0].abs()).collect();
        // t runs from -25 to 24: centred, the first point sits 73.5 from the mean.
        assert!((xs[0] - 73.5).abs() < 0.5, "{}", xs[0]);
        assert!(coords.iter().all(|c| c[1].abs() < 3.0));
    }
}
