//! GEMMs whose right-hand operand — a layer's weights — is packed once, at load, into the
//! micro-kernels' panel order: `c (m×n) = a (m×k) · B (k×n)`, `a` row-major f32, in f32 or
//! in bf16 with f32 accumulation. The weights are never repacked per call (a generic GEMM
//! repacks them every time), the blocking comes from this machine's caches
//! ([`blocking`]), and the kernels are picked at run time ([`Kernel::available`]): the binary
//! runs on any x86-64, and a precision the CPU cannot run is refused, never emulated slowly.

pub mod blocking;

#[cfg(target_arch = "x86_64")]
mod avx512;

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use blocking::Caches;

/// What the packed kernels multiply in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// f32 FMAs (AVX-512F).
    F32,
    /// bf16 pair dot products with f32 accumulation (AVX512-BF16).
    Bf16,
}

impl Kernel {
    /// True when this CPU runs the kernel (and [`super::math::cap_simd`] allows AVX-512).
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let f = super::math::has_avx512();
            match self {
                Kernel::F32 => f,
                Kernel::Bf16 => f && std::arch::is_x86_feature_detected!("avx512bf16"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Why the CPU cannot run the kernel (None when it can), for error messages.
    pub fn unavailable_reason(self) -> Option<String> {
        if self.available() {
            return None;
        }
        if super::math::supported_levels()[0] == super::math::SimdLevel::Avx512
            && !super::math::has_avx512()
        {
            return Some("AVX-512 kernels are capped off in this process".into());
        }
        Some(match self {
            Kernel::F32 => "this CPU has no AVX-512F".into(),
            Kernel::Bf16 => "this CPU has no AVX512-BF16 (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later have it)".into(),
        })
    }

    /// K values one step of the kernel consumes.
    fn step(self) -> usize {
        match self {
            Kernel::F32 => 1,
            Kernel::Bf16 => 2,
        }
    }
}

/// One 64-byte line of packed data; a `Vec` of them is cache-line aligned.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// A k × n right-hand operand in the kernels' order: panels of 32 columns, each K step of a
/// panel 128 bytes (32 f32, or 32 bf16 pairs), columns past n zero.
#[derive(Clone)]
pub struct PackedRhs {
    kernel: Kernel,
    k: usize,
    n: usize,
    /// K steps (k, or ⌈k/2⌉ pairs).
    steps: usize,
    data: Vec<Line>,
}

const COLS: usize = 32;
const ROWS: usize = 12;

impl std::fmt::Debug for PackedRhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedRhs")
            .field("kernel", &self.kernel)
            .field("k", &self.k)
            .field("n", &self.n)
            .finish()
    }
}

impl PackedRhs {
    /// Packs row-major `b` (k × n) for `kernel`; None when this CPU cannot run it.
    pub fn new(kernel: Kernel, b: &[f32], k: usize, n: usize) -> Option<PackedRhs> {
        assert_eq!(b.len(), k * n, "packed rhs size");
        if !kernel.available() || k == 0 || n == 0 {
            return None;
        }
        let steps = k.div_ceil(kernel.step());
        let panels = n.div_ceil(COLS);
        // Two lines a step.
        let mut data = vec![Line::default(); panels * steps * 2];
        let words: &mut [u32] = bytemuck_lines(&mut data);
        for p in 0..panels {
            for s in 0..steps {
                let out = &mut words[(p * steps + s) * 32..][..32];
                for (col, word) in out.iter_mut().enumerate() {
                    let j = p * COLS + col;
                    if j >= n {
                        continue;
                    }
                    *word = match kernel {
                        Kernel::F32 => b[s * n + j].to_bits(),
                        Kernel::Bf16 => {
                            let at = |kk: usize| {
                                if kk < k {
                                    half::bf16::from_f32(b[kk * n + j]).to_bits() as u32
                                } else {
                                    0
                                }
                            };
                            at(2 * s) | (at(2 * s + 1) << 16)
                        }
                    };
                }
            }
        }
        Some(PackedRhs {
            kernel,
            k,
            n,
            steps,
            data,
        })
    }

    /// The kernel it was packed for.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Rows (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(COLS)
    }

    /// Start of panel `p` at K step `s`, as 32-bit words.
    fn panel_at(&self, p: usize, s: usize) -> *const u32 {
        let words = self.data.as_ptr().cast::<u32>();
        // SAFETY: p < panels and s ≤ steps keep the offset within (or one past) the data.
        unsafe { words.add((p * self.steps + s) * 32) }
    }
}

/// The lines as 32-bit words.
fn bytemuck_lines(lines: &mut [Line]) -> &mut [u32] {
    // SAFETY: Line is repr(C) over [u32; 16] with no padding (64 bytes, align 64).
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), lines.len() * 16) }
}

thread_local! {
    /// A block of left-hand rows converted to bf16 pairs.
    static PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// `c = a · B` for the m rows of `a` (row stride `lda` ≥ k) into `c` (row stride `ldc` ≥
/// n), on the calling thread.
pub fn matmul(m: usize, a: &[f32], lda: usize, rhs: &PackedRhs, c: &mut [f32], ldc: usize) {
    check(m, a, lda, rhs, c, ldc);
    // SAFETY: `check` bounds every row the kernels read and write; `c` is exclusively borrowed.
    unsafe {
        run(
            m,
            Lhs::F32 { a: a.as_ptr(), lda },
            rhs,
            0..rhs.panels(),
            c.as_mut_ptr(),
            ldc,
        )
    }
}

/// [`matmul`] for a bf16-packed operand whose left-hand rows are already bf16 pairs (as
/// [`to_bf16_pairs`] writes them; ⌈k/2⌉ pairs a row, `lda` pairs apart), on the calling
/// thread: callers that build their rows (a convolution's patches) round them as they go.
pub fn matmul_pairs(m: usize, a: &[u32], lda: usize, rhs: &PackedRhs, c: &mut [f32], ldc: usize) {
    assert_eq!(
        rhs.kernel,
        Kernel::Bf16,
        "bf16 pairs need a bf16-packed operand"
    );
    let (pairs, n) = (rhs.steps, rhs.n);
    assert!(lda >= pairs && ldc >= n, "packed gemm strides");
    if m == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + pairs, "packed gemm lhs length");
    assert!(c.len() >= (m - 1) * ldc + n, "packed gemm dst length");
    // SAFETY: bounded above; the bf16 kernel is available (the operand was packed for it).
    unsafe {
        run(
            m,
            Lhs::Pairs { a: a.as_ptr(), lda },
            rhs,
            0..rhs.panels(),
            c.as_mut_ptr(),
            ldc,
        )
    }
}

/// `src` rounded to bf16 (to nearest, ties to even) as pairs in `dst`, the first value of
/// each pair in the low half; a missing last value and every pair past `src` are zero.
/// Panics where the CPU has no AVX512-BF16 (no bf16-packed operand exists there).
pub fn to_bf16_pairs(src: &[f32], dst: &mut [u32]) {
    assert!(Kernel::Bf16.available(), "bf16 pairs without AVX512-BF16");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs AVX512-BF16 (asserted).
    unsafe {
        avx512::to_bf16_pairs(src, dst)
    }
}

/// [`matmul`] split over `threads` rayon tasks: by rows when there are enough of them to keep
/// every task's tiles full, otherwise by column panels.
pub fn matmul_threads(
    m: usize,
    a: &[f32],
    lda: usize,
    rhs: &PackedRhs,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) {
    check(m, a, lda, rhs, c, ldc);
    let panels = rhs.panels();
    if threads <= 1 || m == 0 {
        return matmul(m, a, lda, rhs, c, ldc);
    }
    if m >= threads * 4 * ROWS || panels < 2 {
        let per = m.div_ceil(threads).div_ceil(ROWS) * ROWS;
        c.par_chunks_mut(per * ldc).enumerate().for_each(|(t, ct)| {
            let rows = (m - t * per).min(per);
            matmul(rows, &a[t * per * lda..], lda, rhs, ct, ldc);
        });
        return;
    }
    let tasks = threads.min(panels);
    let out = SendPtr(c.as_mut_ptr());
    (0..tasks).into_par_iter().for_each(|t| {
        let span = panels * t / tasks..panels * (t + 1) / tasks;
        let out = &out;
        // SAFETY: `check` bounded the rows; each task writes only its own column panels.
        unsafe { run(m, Lhs::F32 { a: a.as_ptr(), lda }, rhs, span, out.0, ldc) }
    });
}

struct SendPtr(*mut f32);
// SAFETY: the tasks sharing it write disjoint columns.
unsafe impl Sync for SendPtr {}

fn check(m: usize, a: &[f32], lda: usize, rhs: &PackedRhs, c: &[f32], ldc: usize) {
    let (k, n) = (rhs.k, rhs.n);
    assert!(lda >= k && ldc >= n, "packed gemm strides");
    if m > 0 {
        assert!(a.len() >= (m - 1) * lda + k, "packed gemm lhs length");
        assert!(c.len() >= (m - 1) * ldc + n, "packed gemm dst length");
    }
}

/// A left-hand operand: row-major f32, or rows already rounded to bf16 pairs.
#[derive(Clone, Copy)]
enum Lhs {
    F32 { a: *const f32, lda: usize },
    Pairs { a: *const u32, lda: usize },
}

/// The blocked loops over `panels` of every row: K blocks, then blocks of rows (f32 rows
/// converted to bf16 pairs first for that kernel), then panels, then tiles of rows.
///
/// # Safety
/// `a` readable for m rows of k values (⌈k/2⌉ pairs) at its stride; `c` writable for m rows
/// of n at `ldc`; the kernel is available (a PackedRhs exists only then); pairs only for
/// the bf16 kernel.
// SAFETY: a contract for callers, stated in `# Safety` above; each call site says why it holds.
unsafe fn run(m: usize, a: Lhs, rhs: &PackedRhs, panels: Range<usize>, c: *mut f32, ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let blocking = Caches::here().blocking(ROWS, rhs.steps);
        let (k, n, steps) = (rhs.k, rhs.n, rhs.steps);
        for s0 in (0..steps).step_by(blocking.k_steps) {
            let ks = blocking.k_steps.min(steps - s0);
            for i0 in (0..m).step_by(blocking.rows) {
                let rows = blocking.rows.min(m - i0);
                let tiles = |a_at: &dyn Fn(usize) -> (*const u32, usize)| {
                    for p in panels.clone() {
                        let b = rhs.panel_at(p, s0);
                        let cols = (n - p * COLS).min(COLS);
                        for r0 in (0..rows).step_by(ROWS) {
                            let (ap, a_stride) = a_at(r0);
                            let t = avx512::Tile {
                                a: ap,
                                a_stride,
                                b,
                                c: c.add((i0 + r0) * ldc + p * COLS),
                                ldc,
                                cols,
                                accumulate: s0 > 0,
                            };
                            tile(rhs.kernel, (rows - r0).min(ROWS), ks, t);
                        }
                    }
                };
                match (rhs.kernel, a) {
                    (Kernel::F32, Lhs::F32 { a, lda }) => {
                        tiles(&|r0| (a.add((i0 + r0) * lda + s0).cast(), lda))
                    }
                    (Kernel::Bf16, Lhs::Pairs { a, lda }) => {
                        tiles(&|r0| (a.add((i0 + r0) * lda + s0), lda))
                    }
                    (Kernel::Bf16, Lhs::F32 { a, lda }) => PAIRS.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        buf.resize(rows * ks, 0);
                        let (k0, k1) = (2 * s0, (2 * (s0 + ks)).min(k));
                        for (r, dst) in buf.chunks_exact_mut(ks).enumerate() {
                            let src =
                                std::slice::from_raw_parts(a.add((i0 + r) * lda + k0), k1 - k0);
                            avx512::to_bf16_pairs(src, dst);
                        }
                        let base = buf.as_ptr();
                        tiles(&|r0| (base.add(r0 * ks), ks));
                    }),
                    (Kernel::F32, Lhs::Pairs { .. }) => {
                        unreachable!("bf16 pairs for the f32 kernel")
                    }
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, a, rhs, panels, c, ldc);
        unreachable!("packed kernels are x86-64 only");
    }
}

/// One tile of `rows` ≤ 12 rows with the kernel's monomorphisation for that count.
///
/// # Safety
/// As the kernel's tile function: the kernel is available, and `t` is readable and writable
/// for `rows` rows, `steps` K steps and `t.cols` columns.
// SAFETY: a contract for callers, stated in `# Safety` above; `run` is the one caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile(kernel: Kernel, rows: usize, steps: usize, t: avx512::Tile<u32, u32>) {
    macro_rules! by_rows {
        ($f:ident, $t:expr) => {
            match rows {
                12 => avx512::$f::<12>(steps, $t),
                11 => avx512::$f::<11>(steps, $t),
                10 => avx512::$f::<10>(steps, $t),
                9 => avx512::$f::<9>(steps, $t),
                8 => avx512::$f::<8>(steps, $t),
                7 => avx512::$f::<7>(steps, $t),
                6 => avx512::$f::<6>(steps, $t),
                5 => avx512::$f::<5>(steps, $t),
                4 => avx512::$f::<4>(steps, $t),
                3 => avx512::$f::<3>(steps, $t),
                2 => avx512::$f::<2>(steps, $t),
                1 => avx512::$f::<1>(steps, $t),
                _ => unreachable!("tile of {rows} rows"),
            }
        };
    }
    match kernel {
        Kernel::F32 => by_rows!(tile_f32, t.cast()),
        Kernel::Bf16 => by_rows!(tile_bf16, t.cast()),
    }
}

#[cfg(test)]
mod tests;
