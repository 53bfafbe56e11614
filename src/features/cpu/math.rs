//! Branch-free elementwise functions that the compiler vectorises (libm's `expf` and `erff`
//! are scalar calls and were a sixth of a ViT's forward time), and the row softmax built
//! on them.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::contiguous_f32;

/// eˣ to about 2 ulp for x in [−87, 88] (clamped outside): Cody–Waite reduction by ln 2 and a
/// degree-6 Taylor polynomial on |r| ≤ ln2/2.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5·2²³ rounds to the nearest integer in plain float arithmetic;
    // `f32::round` is a libm call on baseline x86-64 and would stop vectorisation.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// erf(x) as a rational function of x on [−4, 4] (clamped outside, where erf is ±1 in f32);
/// the coefficients are the minimax fit Eigen and XLA use, a few ulp of error.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// The exact (erf) GELU, x·Φ(x).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Σ row in eight interleaved partial sums, which vectorise (a single running sum cannot be
/// reordered by the compiler).
#[inline]
fn sum_lanes(row: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// max(row) in eight interleaved lanes (`f32::max`'s NaN rule keeps a fold scalar).
#[inline]
fn max_lanes(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter()
        .chain(chunks.remainder())
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Softmax of each `n`-long row of `block`, in place.
#[inline(always)]
fn softmax_rows(block: &mut [f32], n: usize) {
    softmax_rows_scaled(block, n, 1.0)
}

/// Softmax of `scale · row` for each `n`-long row of `block`, in place (`scale` > 0).
#[inline(always)]
pub fn softmax_rows_scaled(block: &mut [f32], n: usize, scale: f32) {
    for row in block.chunks_exact_mut(n) {
        let max = max_lanes(row);
        // Separate passes: a running sum in the exp loop would keep it scalar.
        row.iter_mut().for_each(|v| *v = exp((*v - max) * scale));
        let inv = 1.0 / sum_lanes(row);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Runs `f` compiled for AVX-512 or AVX2+FMA when the CPU has them (checked once and cached by
/// std), else for baseline x86-64: the elementwise loops vectorise 16 or 8 wide instead of 4.
#[inline(always)]
pub fn with_wide_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for AVX2 and FMA.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Softmax over the last dimension of a contiguous CPU tensor.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "dcd-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let n = *layout.dims().last().unwrap_or(&1);
        let mut y = x.to_vec();
        if n > 0 {
            y.par_chunks_mut(n * 64)
                .for_each(|block| with_wide_simd(|| softmax_rows(block, n)));
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_track_the_reference_functions() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -80_000..=80_000 {
            let x = i as f32 / 1000.0;
            let e = (x as f64).exp();
            worst_exp = worst_exp.max(((exp(x) as f64) - e).abs() / e);
            let xe = x / 10.0;
            worst_erf = worst_erf.max(((erf(xe) as f64) - libm_erf(xe as f64)).abs());
        }
        assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf absolute error {worst_erf}");
    }

    /// erf in f64 by its series / continued fraction (reference only).
    fn libm_erf(x: f64) -> f64 {
        // Abramowitz–Stegun 7.1.5 series converges fast for |x| ≤ 3; erfc's continued
        // fraction beyond.
        if x.abs() <= 3.0 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let ax = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
            (1.0 - erfc).copysign(x)
        }
    }
}
