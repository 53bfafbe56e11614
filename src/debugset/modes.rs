//! Failure modes: the error samples grouped by their own features, so that a budget can be
//! shared between the ways a model fails instead of going to the mode with the closest
//! neighbours, and coverage can be read per mode.
//!
//! k-means (k-means++ seeding, fixed seed) for every k from 2 to the cap, and the k with the
//! best mean silhouette among those whose every mode has `MIN_MODE_SIZE` samples; one mode
//! when no k reaches `MIN_SILHOUETTE` (the samples do not form separate groups).

use rand::{Rng, SeedableRng};

use crate::index::distance::l2_squared;

/// A clustering must reach this mean silhouette to count as several modes.
pub const MIN_SILHOUETTE: f32 = 0.25;
/// Fewest error samples a mode has: one lone failure is an outlier, not a way of failing, and
/// giving it a share of the budget would undo what `Merge::Mean` does for outliers.
pub const MIN_MODE_SIZE: usize = 2;
/// Lloyd iterations per k.
const ITERATIONS: usize = 25;

/// The error samples' modes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Modes {
    /// Mode of each error sample, in request order (unusable samples: mode 0).
    pub of_error: Vec<usize>,
    /// Number of modes.
    pub count: usize,
    /// Mean silhouette of the chosen clustering (None for one mode).
    pub silhouette: Option<f32>,
}

impl Modes {
    /// Every sample in one mode.
    pub fn single(n: usize) -> Modes {
        Modes {
            of_error: vec![0; n],
            count: 1,
            silhouette: None,
        }
    }
}

/// Groups `vectors` (None: an unusable sample, put in mode 0) into at most `max_modes` modes.
pub fn find_modes(vectors: &[Option<&[f32]>], max_modes: usize) -> Modes {
    let usable: Vec<(usize, &[f32])> = vectors
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let n = usable.len();
    if max_modes < 2 || n < 4 {
        return Modes::single(vectors.len());
    }
    let points: Vec<&[f32]> = usable.iter().map(|(_, v)| *v).collect();
    let dist: Vec<f32> = (0..n * n)
        .map(|ij| l2_squared(points[ij / n], points[ij % n]).sqrt())
        .collect();
    let mut best: Option<(f32, Vec<usize>, usize)> = None;
    for k in 2..=max_modes.min(n - 1) {
        let labels = kmeans(&points, k);
        let used = relabel(&labels);
        let count = used.iter().max().map_or(1, |m| m + 1);
        let mut sizes = vec![0usize; count];
        for &m in &used {
            sizes[m] += 1;
        }
        if count < 2 || sizes.iter().any(|&s| s < MIN_MODE_SIZE) {
            continue;
        }
        let s = silhouette(&dist, n, &used, count);
        if best.as_ref().is_none_or(|b| s > b.0 + 1e-6) {
            best = Some((s, used, count));
        }
    }
    match best {
        Some((s, labels, count)) if s >= MIN_SILHOUETTE => {
            let mut of_error = vec![0; vectors.len()];
            for ((i, _), m) in usable.iter().zip(labels) {
                of_error[*i] = m;
            }
            Modes {
                of_error,
                count,
                silhouette: Some(s),
            }
        }
        _ => Modes::single(vectors.len()),
    }
}

/// `budget` shared between modes in proportion to `weights` (the summed weights of each
/// mode's samples), largest remainders first; every mode with weight gets at least 1 while
/// the budget lasts.
pub fn split_budget(budget: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || weights.is_empty() {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| budget as f64 * w / total).collect();
    let mut quota: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = budget - quota.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Modes left with nothing first, then by remainder; ties by index.
    order.sort_by(|&a, &b| {
        (quota[a] > 0)
            .cmp(&(quota[b] > 0))
            .then((exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())))
            .then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        if weights[i] > 0.0 {
            quota[i] += 1;
            left -= 1;
        }
    }
    quota
}

/// Labels renumbered by first appearance, so mode 0 holds the first usable sample.
fn relabel(labels: &[usize]) -> Vec<usize> {
    let mut map = std::collections::HashMap::new();
    labels
        .iter()
        .map(|l| {
            let next = map.len();
            *map.entry(*l).or_insert(next)
        })
        .collect()
}

fn kmeans(points: &[&[f32]], k: usize) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(k as u64);
    let dim = points[0].len();
    let mut centers: Vec<Vec<f32>> = vec![points[rng.gen_range(0..points.len())].to_vec()];
    while centers.len() < k {
        let d: Vec<f32> = points
            .iter()
            .map(|p| {
                centers
                    .iter()
                    .map(|c| l2_squared(p, c))
                    .fold(f32::INFINITY, f32::min)
            })
            .collect();
        let total: f32 = d.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut pick = rng.gen::<f32>() * total;
        let mut chosen = points.len() - 1;
        for (i, w) in d.iter().enumerate() {
            if pick < *w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        centers.push(points[chosen].to_vec());
    }
    let nearest = |p: &[f32], centers: &[Vec<f32>]| {
        centers
            .iter()
            .enumerate()
            .map(|(j, c)| (j, l2_squared(p, c)))
            .fold((0, f32::INFINITY), |b, x| if x.1 < b.1 { x } else { b })
            .0
    };
    let mut labels: Vec<usize> = points.iter().map(|p| nearest(p, &centers)).collect();
    for _ in 0..ITERATIONS {
        let mut sums = vec![vec![0f32; dim]; centers.len()];
        let mut counts = vec![0usize; centers.len()];
        for (p, &l) in points.iter().zip(&labels) {
            counts[l] += 1;
            for (s, x) in sums[l].iter_mut().zip(p.iter()) {
                *s += x;
            }
        }
        for (j, c) in centers.iter_mut().enumerate() {
            if counts[j] > 0 {
                for (x, s) in c.iter_mut().zip(&sums[j]) {
                    *x = s / counts[j] as f32;
                }
            }
        }
        let next: Vec<usize> = points.iter().map(|p| nearest(p, &centers)).collect();
        if next == labels {
            break;
        }
        labels = next;
    }
    labels
}

/// Mean silhouette of a clustering, from the pairwise (ℓ2) distances.
fn silhouette(dist: &[f32], n: usize, labels: &[usize], count: usize) -> f32 {
    let mut sizes = vec![0usize; count];
    for &l in labels {
        sizes[l] += 1;
    }
    let mut total = 0.0;
    for i in 0..n {
        let mut sums = vec![0f32; count];
        for j in 0..n {
            if i != j {
                sums[labels[j]] += dist[i * n + j];
            }
        }
        let own = labels[i];
        if sizes[own] <= 1 {
            continue; // a singleton's silhouette is 0
        }
        let a = sums[own] / (sizes[own] - 1) as f32;
        let b = (0..count)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f32)
            .fold(f32::INFINITY, f32::min);
        let m = a.max(b);
        if m > 0.0 && b.is_finite() {
            total += (b - a) / m;
        }
    }
    total / n as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(center: f32, n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| center + rng.gen_range(-0.5..0.5))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn finds_separate_groups_and_caps_them() {
        let mut points = blob(0.0, 10, 4, 1);
        points.extend(blob(10.0, 6, 4, 2));
        points.extend(blob(-10.0, 4, 4, 3));
        let refs: Vec<Option<&[f32]>> = points.iter().map(|p| Some(p.as_slice())).collect();
        let m = find_modes(&refs, 8);
        assert_eq!(m.count, 3);
        assert!(m.silhouette.unwrap() > 0.8);
        assert!(m.of_error[..10].iter().all(|&x| x == 0));
        assert!(m.of_error[10..16].iter().all(|&x| x == m.of_error[10]));
        assert_ne!(m.of_error[10], m.of_error[16]);
        assert_eq!(find_modes(&refs, 2).count, 2);
        assert_eq!(find_modes(&refs, 1).count, 1);
    }

    #[test]
    fn a_lone_outlier_is_no_mode() {
        let mut points = blob(0.0, 10, 4, 7);
        points.push(vec![50.0; 4]);
        let refs: Vec<Option<&[f32]>> = points.iter().map(|p| Some(p.as_slice())).collect();
        assert_eq!(find_modes(&refs, 8).count, 1);
    }

    #[test]
    fn budgets_split_by_weight() {
        assert_eq!(split_budget(10, &[3.0, 1.0, 1.0]), vec![6, 2, 2]);
        assert_eq!(split_budget(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        // A tiny mode still gets one item.
        assert_eq!(split_budget(5, &[100.0, 1.0]), vec![4, 1]);
        assert_eq!(split_budget(7, &[2.0, 0.0]), vec![7, 0]);
        assert_eq!(split_budget(3, &[1.0; 5]).iter().sum::<usize>(), 3);
    }

    #[test]
    fn one_blob_is_one_mode_and_unusable_samples_go_to_mode_0() {
        let points = blob(0.0, 30, 8, 4);
        let mut refs: Vec<Option<&[f32]>> = points.iter().map(|p| Some(p.as_slice())).collect();
        assert_eq!(find_modes(&refs, 8), Modes::single(30));
        refs.push(None);
        let two = [blob(0.0, 5, 2, 5), blob(9.0, 5, 2, 6)].concat();
        let mut refs: Vec<Option<&[f32]>> = vec![None];
        refs.extend(two.iter().map(|p| Some(p.as_slice())));
        let m = find_modes(&refs, 4);
        assert_eq!((m.count, m.of_error[0], m.of_error[1]), (2, 0, 0));
    }
}
