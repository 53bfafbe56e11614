//! Squared-ℓ2 and inner-product kernels: AVX-512 and AVX2+FMA versions picked once at run
//! time (so a binary built for generic x86-64 still uses the wide registers), and a portable
//! version the compiler vectorises for the baseline.
//!
//! One process always uses one variant, and a kernel is a pure function of its inputs, so
//! identical vectors get identical distances and ties break by id. Variants may differ from
//! each other in the last bits (FMA, summation order).

use std::sync::OnceLock;

use half::f16;

use crate::types::VectorView;

/// Lanes kept in flight; 16 f32 = one AVX-512 register or two AVX2 registers.
const LANES: usize = 16;

type Kernel = fn(&[f32], &[f32]) -> f32;
type FourKernel = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

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
    use std::arch::x86_64::*;

    /// Squared ℓ2 with AVX-512: two 16-lane FMA accumulators, a masked tail.
    #[target_feature(enable = "avx512f")]
    pub(super) fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes i..i+16 (or the masked tail) with i + 16 <= n, inside
        // both slices.
        unsafe {
            while i + 32 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                let d1 = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
                i += 32;
            }
            if i + 16 <= n {
                let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc0 = _mm512_fmadd_ps(d, d, acc0);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
                let d = _mm512_sub_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                );
                acc1 = _mm512_fmadd_ps(d, d, acc1);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// `l2_avx512` from `a` to four rows at once: `a` is loaded once per four rows, and each
    /// row's sums are formed in the same order as `l2_avx512`'s, so the results are the same
    /// bits.
    #[target_feature(enable = "avx512f")]
    pub(super) fn l2_four_avx512(a: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let n = rows.iter().fold(a.len(), |n, r| n.min(r.len()));
        let pa = a.as_ptr();
        let pr = rows.map(|r| r.as_ptr());
        let mut acc0 = [_mm512_setzero_ps(); 4];
        let mut acc1 = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads lanes i..i+16 (or the masked tail) with i + 16 <= n, inside
        // `a` and every row.
        unsafe {
            while i + 32 <= n {
                let x0 = _mm512_loadu_ps(pa.add(i));
                let x1 = _mm512_loadu_ps(pa.add(i + 16));
                for j in 0..4 {
                    let d0 = _mm512_sub_ps(x0, _mm512_loadu_ps(pr[j].add(i)));
                    let d1 = _mm512_sub_ps(x1, _mm512_loadu_ps(pr[j].add(i + 16)));
                    acc0[j] = _mm512_fmadd_ps(d0, d0, acc0[j]);
                    acc1[j] = _mm512_fmadd_ps(d1, d1, acc1[j]);
                }
                i += 32;
            }
            if i + 16 <= n {
                let x = _mm512_loadu_ps(pa.add(i));
                for j in 0..4 {
                    let d = _mm512_sub_ps(x, _mm512_loadu_ps(pr[j].add(i)));
                    acc0[j] = _mm512_fmadd_ps(d, d, acc0[j]);
                }
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
                let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                for j in 0..4 {
                    let d = _mm512_sub_ps(x, _mm512_maskz_loadu_ps(mask, pr[j].add(i)));
                    acc1[j] = _mm512_fmadd_ps(d, d, acc1[j]);
                }
            }
        }
        [0, 1, 2, 3].map(|j| _mm512_reduce_add_ps(_mm512_add_ps(acc0[j], acc1[j])))
    }

    /// Inner product with AVX-512.
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: as in `l2_avx512`, every lane read is below n.
        unsafe {
            while i + 32 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc1,
                );
                i += 32;
            }
            if i + 16 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
                acc1 = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                    acc1,
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
        _mm_cvtss_f32(s)
    }

    /// Squared ℓ2 with AVX2 + FMA: two 8-lane accumulators, a scalar tail.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes i..i+8 with i + 8 <= n, inside both slices.
        unsafe {
            while i + 16 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
                i += 16;
            }
            if i + 8 <= n {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d, d, acc0);
                i += 8;
            }
        }
        let mut sum = hsum256(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            let d = a[j] - b[j];
            sum += d * d;
        }
        sum
    }

    /// Inner product with AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: as in `l2_avx2`, every lane read is below n.
        unsafe {
            while i + 16 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
                i += 16;
            }
            if i + 8 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                i += 8;
            }
        }
        let mut sum = hsum256(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }
}

struct Kernels {
    l2: Kernel,
    dot: Kernel,
    /// `l2` to four rows at once, where a variant has a faster way than four calls.
    l2_four: Option<FourKernel>,
    name: &'static str,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernels {
                    // SAFETY: the CPU reports avx512f, the only feature these variants enable.
                    l2: |a, b| unsafe { x86::l2_avx512(a, b) },
                    // SAFETY: as above.
                    dot: |a, b| unsafe { x86::dot_avx512(a, b) },
                    // SAFETY: as above, avx512f is the only feature it enables.
                    l2_four: Some(|a, rows| unsafe { x86::l2_four_avx512(a, rows) }),
                    name: "avx512",
                };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernels {
                    // SAFETY: the CPU reports avx2 and fma, the features these variants enable.
                    l2: |a, b| unsafe { x86::l2_avx2(a, b) },
                    // SAFETY: as above.
                    dot: |a, b| unsafe { x86::dot_avx2(a, b) },
                    l2_four: None,
                    name: "avx2",
                };
            }
        }
        Kernels {
            l2: l2_portable,
            dot: dot_portable,
            l2_four: None,
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

/// `l2_squared(a, row)` for each `dim`-wide row of `rows` (row-major), into `out` (one per
/// row): the same values, computed a few rows at a time where the CPU allows.
pub fn l2_squared_rows(a: &[f32], rows: &[f32], out: &mut [f32]) {
    let dim = a.len();
    debug_assert_eq!(rows.len(), out.len() * dim);
    let k = kernels();
    let mut done = 0;
    if let (Some(four), true) = (k.l2_four, dim > 0) {
        for (block, sums) in rows.chunks_exact(4 * dim).zip(out.chunks_exact_mut(4)) {
            let (r0, rest) = block.split_at(dim);
            let (r1, rest) = rest.split_at(dim);
            let (r2, r3) = rest.split_at(dim);
            sums.copy_from_slice(&four(a, [r0, r1, r2, r3]));
            done += 4;
        }
    }
    for (i, o) in out.iter_mut().enumerate().skip(done) {
        *o = (k.l2)(a, &rows[i * dim..(i + 1) * dim]);
    }
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
    fn rows_at_a_time_give_the_same_bits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for dim in [1, 5, 16, 31, 32, 47, 384] {
            for n in [0, 1, 3, 4, 9] {
                let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let rows: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let mut out = vec![f32::NAN; n];
                l2_squared_rows(&a, &rows, &mut out);
                for (i, o) in out.iter().enumerate() {
                    let one = l2_squared(&a, &rows[i * dim..(i + 1) * dim]);
                    assert_eq!(o.to_bits(), one.to_bits(), "dim {dim} row {i} of {n}");
                }
            }
        }
    }

    #[test]
    fn kernels_agree_with_f64() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for dim in [1, 3, 15, 16, 17, 100, 384, 768] {
            let a: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let fast = l2_squared(&a, &b);
            assert!(
                (fast - l2_portable(&a, &b)).abs() <= 1e-5 * fast.max(1.0),
                "dim {dim}"
            );
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
