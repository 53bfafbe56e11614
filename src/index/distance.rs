//! Squared-ℓ2 kernels: one portable body, compiled for AVX-512 and AVX2 and picked once at
//! run time, so a binary built for generic x86-64 still uses the wide registers.
//!
//! Every variant sums in the same order (16 lanes, then a fixed tree), so a distance is
//! bit-identical whichever variant runs: duplicate vectors tie exactly and ties break by id.

use std::sync::OnceLock;

use half::f16;

use crate::types::VectorView;

/// Lanes kept in flight; 16 f32 = one AVX-512 register or two AVX2 registers.
const LANES: usize = 16;

type Kernel = fn(&[f32], &[f32]) -> f32;

#[inline(always)]
fn l2_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let d = x - y;
        acc[l] += d * d;
    }
    reduce(acc)
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    reduce(acc)
}

#[inline(always)]
fn reduce(acc: [f32; LANES]) -> f32 {
    let mut h = [0.0f32; 8];
    for l in 0..8 {
        h[l] = acc[l] + acc[l + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

fn l2_portable(a: &[f32], b: &[f32]) -> f32 {
    l2_body(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub(super) fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::l2_body(a, b)
    }
    #[target_feature(enable = "avx2")]
    pub(super) fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::l2_body(a, b)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b)
    }
    #[target_feature(enable = "avx2")]
    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b)
    }
}

struct Kernels {
    l2: Kernel,
    dot: Kernel,
    name: &'static str,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU reports avx512f, the only feature these variants enable.
                return Kernels {
                    l2: |a, b| unsafe { x86::l2_avx512(a, b) },
                    dot: |a, b| unsafe { x86::dot_avx512(a, b) },
                    name: "avx512",
                };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU reports avx2, the only feature these variants enable.
                return Kernels {
                    l2: |a, b| unsafe { x86::l2_avx2(a, b) },
                    dot: |a, b| unsafe { x86::dot_avx2(a, b) },
                    name: "avx2",
                };
            }
        }
        Kernels {
            l2: l2_portable,
            dot: dot_portable,
            name: "portable",
        }
    })
}

/// Name of the kernel variant in use (`avx512`, `avx2` or `portable`), for bench reports.
pub fn kernel_name() -> &'static str {
    kernels().name
}

/// Squared ℓ2 distance Σ (a_i − b_i)². This is the definition of "exact" in dcd.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2)(a, b)
}

/// Inner product Σ a_i b_i.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Squared norm ‖a‖².
#[inline]
pub fn norm_squared(a: &[f32]) -> f32 {
    dot(a, a)
}

/// Squared norm of row `row` of a view, converting f16 rows through `scratch`.
#[inline]
pub fn row_norm(view: &VectorView<'_>, row: usize, scratch: &mut Vec<f32>) -> f32 {
    norm_squared(row_f32(view, row, scratch))
}

/// Row `row` of a view as f32: borrowed for f32 pools, converted into `scratch` for f16.
#[inline]
pub fn row_f32<'a>(view: &VectorView<'a>, row: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
    match *view {
        VectorView::F32 { data, dim } => &data[row * dim..(row + 1) * dim],
        VectorView::F16 { data, dim } => {
            use half::slice::HalfFloatSliceExt;
            scratch.resize(dim, 0.0);
            data[row * dim..(row + 1) * dim].convert_to_f32_slice(scratch);
            scratch
        }
    }
}

/// Distance from `query` to row `row` of a view, converting f16 rows through `scratch`.
#[inline]
pub fn distance_to_row(
    view: &VectorView<'_>,
    query: &[f32],
    row: usize,
    scratch: &mut Vec<f32>,
) -> f32 {
    l2_squared(query, row_f32(view, row, scratch))
}

/// Converts f32 values to f16 (round to nearest even), for f16 pools.
pub fn to_f16(values: &[f32]) -> Vec<f16> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![f16::ZERO; values.len()];
    out.convert_from_f32_slice(values);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum()
    }

    #[test]
    fn every_variant_agrees_bit_for_bit_and_with_f64() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for dim in [1, 3, 15, 16, 17, 100, 384, 768] {
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let fast = l2_squared(&a, &b);
            assert_eq!(fast.to_bits(), l2_portable(&a, &b).to_bits(), "dim {dim}");
            let want = naive(&a, &b);
            assert!(
                (fast as f64 - want).abs() <= 1e-5 * want.max(1.0),
                "dim {dim}"
            );
            let d = dot(&a, &b) as f64;
            let want_dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((d - want_dot).abs() < 1e-4, "dim {dim}");
        }
    }
}
