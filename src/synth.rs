//! Synthetic "embedding-like" data: unit vectors drawn around random cluster centres with
//! per-cluster spread, the shape of backbone features for a pool of related images. Used by
//! tests, `dcd bench gen` and the quick start; seeded, so a dataset is reproducible.

use rand::{Rng, SeedableRng};

use crate::types::Matrix;

/// How to draw a clustered dataset.
#[derive(Clone, Copy, Debug)]
pub struct ClusterSpec {
    /// Vector dimension.
    pub dim: usize,
    /// Number of clusters.
    pub clusters: usize,
    /// Seed of the cluster centres (shared by base and queries).
    pub seed: u64,
}

fn normal(rng: &mut impl Rng) -> f32 {
    // Box–Muller; one of the pair is enough here.
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

impl ClusterSpec {
    fn centres(&self) -> (Vec<f32>, Vec<f32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let centres = (0..self.clusters * self.dim)
            .map(|_| normal(&mut rng))
            .collect();
        let spreads = (0..self.clusters)
            .map(|_| rng.gen_range(0.25..0.75))
            .collect();
        (centres, spreads)
    }

    /// `n` unit vectors; `stream` selects an independent sample (e.g. 0 base, 1 queries).
    pub fn sample(&self, n: usize, stream: u64) -> Matrix {
        let (centres, spreads) = self.centres();
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.seed ^ (stream + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut data = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let c = rng.gen_range(0..self.clusters.max(1));
            let centre = &centres[c * self.dim..(c + 1) * self.dim];
            let start = data.len();
            data.extend(centre.iter().map(|&x| x + spreads[c] * normal(&mut rng)));
            let row = &mut data[start..];
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Matrix::new(n, self.dim, data)
    }
}

/// As [`uniform`], generated in parallel in blocks of 4096 rows (each block its own seeded
/// stream, so the result depends on the seed alone): benchmark pools of billions of floats.
pub fn uniform_parallel(n: usize, dim: usize, seed: u64) -> Matrix {
    use rayon::prelude::*;
    const BLOCK: usize = 4096;
    let mut data = vec![0.0f32; n * dim];
    data.par_chunks_mut((BLOCK * dim).max(1))
        .enumerate()
        .for_each(|(b, chunk)| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                seed ^ (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            chunk.iter_mut().for_each(|v| *v = rng.gen_range(-1.0..1.0));
        });
    Matrix::new(n, dim, data)
}

/// Uniform random vectors in [-1, 1), for tests that want no structure.
pub fn uniform(n: usize, dim: usize, seed: u64) -> Matrix {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Matrix::new(
        n,
        dim,
        (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
    )
}
