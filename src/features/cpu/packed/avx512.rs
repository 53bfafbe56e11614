//! The AVX-512 micro-kernels. A tile of up to 12 × 32 outputs lives in 24 zmm
//! accumulators while the K steps stream past: each step loads the right-hand micro-panel's
//! two vectors (128 bytes, packed at load) and broadcasts one value per left-hand row, read
//! in place from the rows. f32 steps are FMAs; bf16 steps are pair dot products
//! (AVX512-BF16: `acc += a₀b₀ + a₁b₁` per lane, f32 accumulation), twice the multiply-adds
//! per instruction. The store of the last K block applies the layer's tail (bias, residual,
//! activation) while the tile is still in registers.

use std::arch::x86_64::*;

use super::super::math;
use super::{Act, Run, COLS, ROWS};

/// What the last K block's store applies: `act(sum + bias (+ residual))`, or with a scale
/// `residual + scale ⊙ act(sum + bias)`. `bias` and `scale` (null for none; only with a
/// residual) point at the tile's first column, `residual` (null for none) at its top-left,
/// rows `ldc` apart.
#[derive(Clone, Copy)]
pub struct TileTail {
    pub bias: *const f32,
    pub residual: *const f32,
    pub scale: *const f32,
    pub act: Act,
}

/// Where a tile reads and writes. `a` is the first row's start, rows `a_stride` elements
/// apart; `b` the micro-panel at the block's first K step (128 bytes a step, 64-byte
/// aligned); `c` the tile's top-left output, rows `ldc` apart, `cols` ≤ 32 of them valid.
#[derive(Clone, Copy)]
pub struct Tile<A, B> {
    pub a: *const A,
    pub a_stride: usize,
    pub b: *const B,
    pub c: *mut f32,
    pub ldc: usize,
    pub cols: usize,
    /// Add to the outputs (a later K block) instead of overwriting them.
    pub accumulate: bool,
    /// Applied as the outputs are stored (the last K block only).
    pub tail: Option<TileTail>,
    /// The next strip of left-hand rows (`a_stride` apart, the same runs), fetched into L2
    /// during this tile; null for none. f32 tiles only (`packed::run` sets it for no other).
    pub next_a: *const A,
}

impl<A, B> Tile<A, B> {
    /// The same tile with its operands read as other element types.
    pub fn cast<A2, B2>(self) -> Tile<A2, B2> {
        Tile {
            a: self.a.cast(),
            a_stride: self.a_stride,
            b: self.b.cast(),
            c: self.c,
            ldc: self.ldc,
            cols: self.cols,
            accumulate: self.accumulate,
            tail: self.tail,
            next_a: self.next_a.cast(),
        }
    }
}

/// Writes (or adds) `acc` to the tile's outputs, masking the columns past `cols`, with the
/// tail applied when there is one.
///
/// # Safety
/// The CPU has AVX-512F; `t.c` is writable (and readable when accumulating) for `R` rows of
/// `t.cols` at `t.ldc`; a tail's bias is readable for `t.cols` values and its residual, when
/// not null, for `R` rows of `t.cols` at `t.ldc`.
// SAFETY: a contract for callers, stated in `# Safety` above; the tiles below call it.
#[inline(always)]
unsafe fn store<const R: usize, A, B>(acc: [[__m512; 2]; R], t: &Tile<A, B>) {
    let mask = |from: usize| -> __mmask16 {
        let valid = t.cols.saturating_sub(from).min(16);
        ((1u32 << valid) - 1) as __mmask16
    };
    let (m0, m1) = (mask(0), mask(16));
    // Masked-off lanes are not read, so a row's end may be the slice's end.
    let columns = |values: *const f32| {
        (
            _mm512_maskz_loadu_ps(m0, values),
            _mm512_maskz_loadu_ps(m1, values.add(16)),
        )
    };
    let bias = t.tail.map(|tail| columns(tail.bias));
    let scale = t
        .tail
        .filter(|tail| !tail.scale.is_null())
        .map(|tail| columns(tail.scale));
    for (r, row) in acc.iter().enumerate() {
        let p = t.c.add(r * t.ldc);
        let (mut v0, mut v1) = (row[0], row[1]);
        if t.accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, p));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, p.add(16)));
        }
        if let (Some(tail), Some((b0, b1))) = (t.tail, bias) {
            v0 = _mm512_add_ps(v0, b0);
            v1 = _mm512_add_ps(v1, b1);
            let residual =
                (!tail.residual.is_null()).then(|| columns(tail.residual.add(r * t.ldc)));
            if let (Some((r0, r1)), None) = (residual, scale) {
                v0 = _mm512_add_ps(v0, r0);
                v1 = _mm512_add_ps(v1, r1);
            }
            (v0, v1) = match tail.act {
                Act::Identity => (v0, v1),
                Act::Relu => {
                    let zero = _mm512_setzero_ps();
                    (_mm512_max_ps(v0, zero), _mm512_max_ps(v1, zero))
                }
                Act::Relu6 => {
                    let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
                    (
                        _mm512_min_ps(_mm512_max_ps(v0, zero), six),
                        _mm512_min_ps(_mm512_max_ps(v1, zero), six),
                    )
                }
                Act::Gelu => (gelu(v0), gelu(v1)),
            };
            // The separate pass's `r + γ · v`: a multiply, then an add.
            if let (Some((r0, r1)), Some((g0, g1))) = (residual, scale) {
                v0 = _mm512_add_ps(r0, _mm512_mul_ps(g0, v0));
                v1 = _mm512_add_ps(r1, _mm512_mul_ps(g1, v1));
            }
        }
        _mm512_mask_storeu_ps(p, m0, v0);
        _mm512_mask_storeu_ps(p.add(16), m1, v1);
    }
}

/// The exact GELU of 16 values: [`math::gelu`]'s operations in its order, unfused (Rust
/// never contracts a multiply and an add), so the tail and the separate pass agree to the bit.
///
/// # Safety
/// The CPU has AVX-512F.
// SAFETY: a contract for callers, stated in `# Safety` above; `store` calls it.
#[inline(always)]
unsafe fn gelu(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let z = _mm512_min_ps(_mm512_max_ps(z, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
    let z2 = _mm512_mul_ps(z, z);
    let poly = |coefficients: &[f32]| {
        let mut acc = _mm512_set1_ps(coefficients[0]);
        for &c in &coefficients[1..] {
            acc = _mm512_add_ps(_mm512_mul_ps(acc, z2), _mm512_set1_ps(c));
        }
        acc
    };
    let erf = _mm512_div_ps(_mm512_mul_ps(z, poly(&math::ERF_P)), poly(&math::ERF_Q));
    _mm512_mul_ps(
        _mm512_mul_ps(_mm512_set1_ps(0.5), x),
        _mm512_add_ps(_mm512_set1_ps(1.0), erf),
    )
}

/// Starts loading the tile's outputs and its residual into L1 while the K steps run: a
/// tile's rows lie `ldc` apart (a new page each in wide layers), 24 streams advancing 128
/// bytes every few thousand cycles that the hardware prefetchers do not follow, so each
/// store of a tile waited on memory (ResNet-50's block ends at batch 8: 7–12% faster with
/// this). A line fetched for reading comes in exclusive when no other core holds it, so
/// the write that follows needs no second request.
///
/// # Safety
/// None beyond x86-64's SSE: a prefetch never faults, whatever the address.
// SAFETY: a contract for callers, stated in `# Safety` above; the tiles below call it.
#[inline(always)]
unsafe fn prefetch_outputs<const R: usize, A, B>(t: &Tile<A, B>) {
    let residual = t.tail.map_or(std::ptr::null(), |tail| tail.residual);
    for r in 0..R {
        for at in [0, 16] {
            _mm_prefetch::<_MM_HINT_T0>(t.c.wrapping_add(r * t.ldc + at).cast());
            if !residual.is_null() {
                _mm_prefetch::<_MM_HINT_T0>(residual.wrapping_add(r * t.ldc + at).cast());
            }
        }
    }
}

/// At every 16th K step (a row's cache line of 16 f32 values), fetches that
/// step's line of each row of the next strip into L2, `next` pointing at the run's start
/// in it. The lines arrive spread over the tile instead of in one burst, and into L2, not
/// L1, where the strip now running stays.
///
/// # Safety
/// None beyond x86-64's SSE: a prefetch never faults, whatever the address.
// SAFETY: a contract for callers, stated in `# Safety` above; the tiles below call it.
#[inline(always)]
unsafe fn prefetch_next_strip(next: Option<*const f32>, a_stride: usize, s: usize) {
    if let (true, Some(next)) = (s.is_multiple_of(16), next) {
        for r in 0..ROWS {
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(r * a_stride + s).cast());
        }
    }
}

/// An f32 tile of `R` rows over the K steps of `runs`.
///
/// # Safety
/// The CPU has AVX-512F; each run is readable in `R` rows of `t.a` at `t.a_stride`, `t.b`
/// for the runs' total steps × 32 f32 and 64-byte aligned, and `t.c` (and the tail) as
/// [`store`] needs.
// SAFETY: a contract for callers, stated in `# Safety` above; `packed::tile` calls it.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_f32<const R: usize>(runs: &[Run], t: Tile<f32, f32>) {
    prefetch_outputs::<R, _, _>(&t);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut b = t.b;
    for run in runs {
        let a = t.a.add(run.a_off);
        let next = (!t.next_a.is_null()).then(|| t.next_a.wrapping_add(run.a_off));
        for s in 0..run.steps {
            prefetch_next_strip(next, t.a_stride, s);
            let b0 = _mm512_load_ps(b.add(s * COLS));
            let b1 = _mm512_load_ps(b.add(s * COLS + 16));
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*a.add(r * t.a_stride + s));
                row[0] = _mm512_fmadd_ps(a, b0, row[0]);
                row[1] = _mm512_fmadd_ps(a, b1, row[1]);
            }
        }
        b = b.add(run.steps * COLS);
    }
    store::<R, _, _>(acc, &t);
}

/// A bf16 tile of `R` rows over the K steps of `runs`, two values a step: `t.a` holds bf16
/// pairs (one u32 a step), `t.b` 32 columns × a pair a step.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16; each run is readable in `R` rows of `t.a` at
/// `t.a_stride` (pairs), `t.b` for the runs' total steps × 64 bf16 and 64-byte aligned, and
/// `t.c` (and the tail) as [`store`] needs.
// SAFETY: a contract for callers, stated in `# Safety` above; `packed::tile` calls it.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn tile_bf16<const R: usize>(runs: &[Run], t: Tile<u32, u16>) {
    prefetch_outputs::<R, _, _>(&t);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut b = t.b;
    for run in runs {
        let a = t.a.add(run.a_off);
        for s in 0..run.steps {
            let b0: __m512bh = std::mem::transmute(_mm512_load_si512(b.add(s * 64).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_load_si512(b.add(s * 64 + 32).cast()));
            for (r, row) in acc.iter_mut().enumerate() {
                let pair = *a.add(r * t.a_stride + s);
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
                row[0] = _mm512_dpbf16_ps(row[0], a, b0);
                row[1] = _mm512_dpbf16_ps(row[1], a, b1);
            }
        }
        b = b.add(run.steps * 64);
    }
    store::<R, _, _>(acc, &t);
}

/// `src` rounded to bf16 (to nearest, ties to even) and laid out as pairs in `dst`; a
/// missing last value of an odd-length `src`, and every pair past it, is zero.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16.
// SAFETY: a contract for callers, stated in `# Safety` above; `packed::to_bf16_pairs` checks it.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn to_bf16_pairs(src: &[f32], dst: &mut [u32]) {
    let mut i = 0;
    for out in dst.chunks_mut(16) {
        let left = src.len().saturating_sub(i);
        let (lo, hi) = (left.min(16), left.saturating_sub(16).min(16));
        let lo = _mm512_maskz_loadu_ps(
            ((1u32 << lo) - 1) as __mmask16,
            src.as_ptr().add(i.min(src.len())),
        );
        let hi = _mm512_maskz_loadu_ps(
            ((1u32 << hi) - 1) as __mmask16,
            src.as_ptr().add((i + 16).min(src.len())),
        );
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_mask_storeu_epi32(
            out.as_mut_ptr().cast(),
            ((1u32 << out.len()) - 1) as __mmask16,
            packed,
        );
        i += 32;
    }
}
