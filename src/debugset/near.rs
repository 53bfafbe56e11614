//! Exact nearness questions about a few thousand candidate vectors ("is any item kept so far
//! within r of this one?", "is this newly taken item nearer than the best so far?") without
//! measuring most pairs. Every vector gets a few keys, its projections on the direction along
//! which the candidates spread most and on fixed others; a projection on a unit direction
//! never exceeds the distance (|⟨a − b, u⟩| ≤ ‖a − b‖), so a pair whose keys differ by more
//! than the radius cannot be within it, and only the pairs the keys cannot rule out are
//! measured. The answers are
//! exactly those of measuring every pair; only the work depends on the direction.

use std::collections::HashMap;

use crate::index::distance::{dot, l2_squared};
use crate::types::RowId;

/// Vectors the direction is estimated from (spread evenly over the candidates by row id).
const DIRECTION_SAMPLE: usize = 256;
/// Power-iteration steps; the direction need not be exact, only spread the keys.
const DIRECTION_STEPS: usize = 8;

/// The unit direction along which `vectors` spread most (their first principal axis, by
/// power iteration on a sample); `None` when there are no vectors.
pub(super) fn spread_direction(vectors: &HashMap<RowId, Vec<f32>>) -> Option<Vec<f32>> {
    let mut rows: Vec<RowId> = vectors.keys().copied().collect();
    rows.sort_unstable();
    let step = rows.len().div_ceil(DIRECTION_SAMPLE).max(1);
    let sample: Vec<&[f32]> = rows
        .iter()
        .step_by(step)
        .map(|r| vectors[r].as_slice())
        .collect();
    let dim = sample.first()?.len();
    let mut mean = vec![0f32; dim];
    for v in &sample {
        for (m, x) in mean.iter_mut().zip(*v) {
            *m += x;
        }
    }
    let n = sample.len() as f32;
    mean.iter_mut().for_each(|m| *m /= n);
    let centred: Vec<Vec<f32>> = sample
        .iter()
        .map(|v| v.iter().zip(&mean).map(|(x, m)| x - m).collect())
        .collect();
    // Start from the sample's most spread-out member: it already leans along the main axis.
    let start = centred
        .iter()
        .max_by(|a, b| dot(a, a).total_cmp(&dot(b, b)))
        .expect("the sample is not empty");
    let mut direction = start.clone();
    for _ in 0..DIRECTION_STEPS {
        if !normalise(&mut direction) {
            break;
        }
        let mut next = vec![0f32; dim];
        for c in &centred {
            let along = dot(c, &direction);
            for (x, y) in next.iter_mut().zip(c) {
                *x += along * y;
            }
        }
        direction = next;
    }
    if !normalise(&mut direction) {
        // Every sampled vector is the same: any unit direction gives correct (if useless) keys.
        direction = vec![0.0; dim];
        direction[0] = 1.0;
    }
    Some(direction)
}

/// Scales `v` to unit length; false when it is (nearly) zero.
fn normalise(v: &mut [f32]) -> bool {
    let norm = dot(v, v).sqrt();
    // Written so that a NaN norm also counts as zero.
    if norm.is_nan() || norm <= 1e-20 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Directions a vector is keyed along: the candidates' main axis first, then fixed
/// pseudo-random ones. One key orders the items; the others rule out most of the pairs the
/// first cannot, for the price of a few subtractions each.
pub(super) const KEYS: usize = 8;

/// Keys of vectors along `KEYS` unit directions.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    /// `KEYS` unit directions, one after another.
    directions: Vec<f32>,
    dim: usize,
}

impl Keys {
    /// Keys along `main` (a unit vector) and `KEYS − 1` fixed pseudo-random unit directions.
    pub fn new(main: Vec<f32>) -> Self {
        let dim = main.len();
        let mut directions = main;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 1..KEYS {
            let mut d: Vec<f32> = (0..dim)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            if !normalise(&mut d) {
                d = vec![0.0; dim];
                d[0] = 1.0;
            }
            directions.extend(d);
        }
        Keys { directions, dim }
    }

    /// The keys of `v`.
    pub fn of(&self, v: &[f32]) -> [f32; KEYS] {
        let mut keys = [0f32; KEYS];
        for (k, d) in keys.iter_mut().zip(self.directions.chunks_exact(self.dim)) {
            *k = dot(v, d);
        }
        keys
    }

    /// How far apart two keys may be for their vectors to lie within `distance` (ℓ2, not
    /// squared) of each other: the distance itself, widened for the rounding of the two dot
    /// products so that a pair just inside is never ruled out.
    pub fn reach(distance: f32, key: f32) -> f32 {
        distance * (1.0 + 1e-4) + 1e-5 * key.abs().max(1.0)
    }

    /// Whether keys `a` and `b` leave it possible that their vectors lie within `distance`.
    pub fn may_be_within(a: &[f32; KEYS], b: &[f32; KEYS], distance: f32) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= Self::reach(distance, *x))
    }
}

/// The items kept so far, sorted by their first key, for exact "any within the radius?"
/// questions.
pub(super) struct KeptNear<'a> {
    keys: Keys,
    /// (keys, vector), sorted by the first key.
    items: Vec<([f32; KEYS], &'a [f32])>,
}

impl<'a> KeptNear<'a> {
    /// No items yet.
    pub fn new(keys: Keys) -> Self {
        KeptNear {
            keys,
            items: Vec::new(),
        }
    }

    /// Adds one item.
    pub fn insert(&mut self, v: &'a [f32]) {
        let keys = self.keys.of(v);
        let at = self.items.partition_point(|(k, _)| k[0] < keys[0]);
        self.items.insert(at, (keys, v));
    }

    /// Whether an item lies within `squared_radius` (squared ℓ2) of `v`.
    pub fn any_within(&self, v: &[f32], squared_radius: f32) -> bool {
        let keys = self.keys.of(v);
        let radius = squared_radius.max(0.0).sqrt();
        let reach = Keys::reach(radius, keys[0]);
        let from = self.items.partition_point(|(k, _)| k[0] < keys[0] - reach);
        self.items[from..]
            .iter()
            .take_while(|(k, _)| k[0] <= keys[0] + reach)
            .any(|(k, kept)| {
                Keys::may_be_within(&keys, k, radius) && l2_squared(kept, v) <= squared_radius
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: usize, dim: usize, seed: u64) -> HashMap<RowId, Vec<f32>> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        (0..n as RowId)
            .map(|r| (r, (0..dim).map(|_| next()).collect()))
            .collect()
    }

    #[test]
    fn the_direction_follows_the_widest_spread() {
        let mut vectors = cloud(300, 8, 1);
        for v in vectors.values_mut() {
            v[3] *= 20.0;
        }
        let d = spread_direction(&vectors).unwrap();
        assert!(d[3].abs() > 0.99, "{d:?}");
        assert!((dot(&d, &d) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn identical_vectors_still_get_a_unit_direction() {
        let vectors: HashMap<RowId, Vec<f32>> = (0..5).map(|r| (r, vec![1.0, 2.0, 3.0])).collect();
        let d = spread_direction(&vectors).unwrap();
        assert!((dot(&d, &d) - 1.0).abs() < 1e-6);
        assert!(spread_direction(&HashMap::new()).is_none());
    }

    #[test]
    fn any_within_agrees_with_measuring_every_pair() {
        let vectors = cloud(400, 16, 7);
        let keys = Keys::new(spread_direction(&vectors).unwrap());
        let mut rows: Vec<RowId> = vectors.keys().copied().collect();
        rows.sort_unstable();
        let (kept, asked) = rows.split_at(200);
        let mut near = KeptNear::new(keys);
        for r in kept {
            near.insert(&vectors[r]);
        }
        for radius in [0.0, 0.05, 0.3, 0.6, 1.0, 4.0] {
            let mut hits = 0;
            for q in asked {
                let q = &vectors[q];
                let brute = kept.iter().any(|k| l2_squared(&vectors[k], q) <= radius);
                assert_eq!(near.any_within(q, radius), brute, "radius {radius}");
                hits += brute as usize;
            }
            if radius >= 1.0 {
                assert!(hits > 0, "the radius {radius} should reach some items");
            }
        }
        // An exact copy is within radius 0.
        assert!(near.any_within(&vectors[&kept[17]], 0.0));
    }
}
