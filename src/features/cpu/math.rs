//! Branch-free elementwise functions that the compiler vectorises (libm's `expf` and `erff`
//! are scalar calls and were a sixth of a ViT's forward time), the row softmax and GEMM
//! epilogues built on them, and the macro that compiles such loops per instruction set.

use super::Epilogue;

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
    // 2ⁿ built from bits: n + 127 + 1.5·2²³ holds n + 127 (1 ..= 254 after the clamp) in its
    // low mantissa bits, which the shift moves into the exponent. `n as i32` would be a
    // saturating conversion, which the compiler leaves scalar (a compare and two moves a
    // lane): it made the softmax five times slower.
    p * f32::from_bits((n + (127.0 + ROUND)).to_bits() << 23)
}

/// erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4]: P's coefficients, highest power first (the minimax fit
/// Eigen and XLA use, a few ulp of error). The packed kernels' fused GELU uses them too.
pub(crate) const ERF_P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];

/// Q's coefficients for [`ERF_P`], highest power first.
pub(crate) const ERF_Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// erf(x) as a rational function of x on [−4, 4] (clamped outside, where erf is ±1 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ERF_P[0];
    for c in &ERF_P[1..] {
        p = p * x2 + c;
    }
    let mut q = ERF_Q[0];
    for c in &ERF_Q[1..] {
        q = q * x2 + c;
    }
    x * p / q
}

/// The exact (erf) GELU, x·Φ(x).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Σ row in eight interleaved partial sums, which vectorise (a single running sum cannot be
/// reordered by the compiler).
#[inline(always)]
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
#[inline(always)]
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

/// The instruction sets dcd's CPU kernels are compiled for, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// x86-64 baseline (SSE2).
    Baseline = 0,
    /// AVX2 + FMA.
    Avx2 = 1,
    /// AVX-512 (F/DQ/VL; the packed kernels also want BF16 for bf16).
    Avx512 = 2,
}

/// The highest level the kernels may pick (u8::MAX: no cap).
static SIMD_CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// Caps the kernels this process picks at `level` (None lifts the cap), so that a test can
/// run every variant the CPU supports — a kernel only one machine takes is still checked on
/// a machine that takes a higher one. The cap is process-wide: set it before running models.
pub fn cap_simd(level: Option<SimdLevel>) {
    let v = level.map_or(u8::MAX, |l| l as u8);
    SIMD_CAP.store(v, std::sync::atomic::Ordering::SeqCst);
}

fn allowed(level: SimdLevel) -> bool {
    level as u8 <= SIMD_CAP.load(std::sync::atomic::Ordering::Relaxed)
}

/// The levels this CPU runs, highest first (ignoring any cap).
pub fn supported_levels() -> Vec<SimdLevel> {
    let mut levels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if detected_avx512() {
            levels.push(SimdLevel::Avx512);
        }
        if detected_avx2() {
            levels.push(SimdLevel::Avx2);
        }
    }
    levels.push(SimdLevel::Baseline);
    levels
}

#[cfg(target_arch = "x86_64")]
fn detected_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

#[cfg(target_arch = "x86_64")]
fn detected_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// True when the CPU runs AVX-512 F/DQ/VL and no cap forbids it (std caches the detection).
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    allowed(SimdLevel::Avx512) && detected_avx512()
}

/// True when the CPU runs AVX2 and FMA and no cap forbids it.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    allowed(SimdLevel::Avx2) && detected_avx2()
}

/// Defines `fn name(args)` whose body is compiled three times (AVX-512, AVX2+FMA, baseline)
/// and picked at run time, so elementwise loops vectorise 16 or 8 wide instead of 4. The body
/// must only call `#[inline(always)]` helpers for them to share its instruction set.
macro_rules! wide_simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    generic($($arg),*)
                }
                if $crate::features::cpu::math::has_avx512() {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::features::cpu::math::has_avx2() {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use wide_simd_fn;

wide_simd_fn! {
    /// Softmax of `scale · row` for each `n`-long row of `block`, in place (`scale` > 0).
    pub fn softmax_rows_scaled(block: &mut [f32], n: usize, scale: f32) {
        for row in block.chunks_exact_mut(n) {
            let max = max_lanes(row);
            // Separate passes: a running sum in the exp loop would keep it scalar.
            row.iter_mut().for_each(|v| *v = exp((*v - max) * scale));
            let inv = 1.0 / sum_lanes(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

#[inline(always)]
fn apply_rows(
    y: &mut [f32],
    width: usize,
    bias: &[f32],
    residual: Option<&[f32]>,
    scale: Option<&[f32]>,
    act: impl Fn(f32) -> f32,
) {
    match (residual, scale) {
        (None, _) => {
            for row in y.chunks_exact_mut(width) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = act(*v + b);
                }
            }
        }
        (Some(r), None) => {
            for (row, rr) in y.chunks_exact_mut(width).zip(r.chunks_exact(width)) {
                for ((v, b), r) in row.iter_mut().zip(bias).zip(rr) {
                    *v = act(*v + b + r);
                }
            }
        }
        (Some(r), Some(g)) => {
            for (row, rr) in y.chunks_exact_mut(width).zip(r.chunks_exact(width)) {
                for (((v, b), r), g) in row.iter_mut().zip(bias).zip(rr).zip(g) {
                    *v = r + g * act(*v + b);
                }
            }
        }
    }
}

wide_simd_fn! {
    /// The GEMM epilogue on `width`-wide rows: `act(y + bias)`; with a residual
    /// `act(y + bias + r)` (a ResNet block's end), or with a residual and a scale
    /// `r + γ ⊙ act(y + bias)` (a DINOv2 sub-block's end, where act is the identity).
    pub fn epilogue_rows(
        y: &mut [f32],
        width: usize,
        bias: &[f32],
        residual: Option<&[f32]>,
        scale: Option<&[f32]>,
        epilogue: Epilogue,
    ) {
        match epilogue {
            Epilogue::Bias => apply_rows(y, width, bias, residual, scale, |v| v),
            Epilogue::BiasRelu => apply_rows(y, width, bias, residual, scale, |v| if v > 0.0 { v } else { 0.0 }),
            Epilogue::BiasRelu6 => apply_rows(y, width, bias, residual, scale, |v| v.clamp(0.0, 6.0)),
            Epilogue::BiasGelu => apply_rows(y, width, bias, residual, scale, gelu),
        }
    }
}

/// `c = a · b` for strided operands (element (i, j) of x at `x[i·rs + j·cs]`).
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    c: &mut [f32],
    c_rs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            c[i * c_rs..i * c_rs + n].fill(0.0);
        }
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, k, a_rs, a_cs) < a.len(), "lhs out of bounds");
    assert!(last(k, n, b_rs, b_cs) < b.len(), "rhs out of bounds");
    assert!(last(m, n, c_rs, 1) < c.len(), "dst out of bounds");
    // SAFETY: the asserts bound the largest index each operand is read or written at.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
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

    #[test]
    fn the_power_of_two_from_bits_equals_the_integer_conversion() {
        // Every reduced exponent the clamp allows, and past both ends of it.
        for i in -100_000..=100_000 {
            let x = i as f32 / 1000.0;
            let c = x.clamp(-87.0, 88.0);
            let n = (c * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
            let by_conversion = f32::from_bits(((n as i32 + 127) << 23) as u32);
            let by_bits = f32::from_bits((n + (127.0 + 12_582_912.0)).to_bits() << 23);
            assert_eq!(by_bits.to_bits(), by_conversion.to_bits(), "x = {x}");
        }
        assert!(exp(-100.0) > 0.0 && exp(100.0).is_finite());
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
