//! GEMMs whose right-hand operand — a layer's weights — is packed once, at load, into the
//! micro-kernels' panel order: `c (m×n) = a (m×k) · B (k×n)`, `a` row-major f32, in f32 or
//! in bf16 with f32 accumulation. The weights are never repacked per call (a generic GEMM
//! repacks them every time), the blocking comes from this machine's caches
//! ([`blocking`]), and the kernels are picked at run time ([`Kernel::available`]): the binary
//! runs on any x86-64, and a precision the CPU cannot run is refused, never emulated slowly.

pub mod blocking;

#[cfg(target_arch = "x86_64")]
mod avx512;
mod blocked;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use blocked::run;

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
        PackedRhs::strided(kernel, b, (n, 1), k, n)
    }

    /// Packs the k × n operand whose element (r, j) is `b[r·rs + j·cs]` — a row-major block
    /// inside wider rows, or a transposed one (`rs` = 1) — for `kernel`; None when this CPU
    /// cannot run it. Attention packs its keys and values this way for every head, so the
    /// f32 loop reads each 32-column panel's values in order of their rows.
    pub fn strided(
        kernel: Kernel,
        b: &[f32],
        (rs, cs): (usize, usize),
        k: usize,
        n: usize,
    ) -> Option<PackedRhs> {
        if !kernel.available() || k == 0 || n == 0 {
            return None;
        }
        assert!(
            (k - 1) * rs + (n - 1) * cs < b.len(),
            "packed rhs out of bounds"
        );
        let steps = k.div_ceil(kernel.step());
        let panels = n.div_ceil(COLS);
        // Two lines a step.
        let mut data = vec![Line::default(); panels * steps * 2];
        let words: &mut [u32] = bytemuck_lines(&mut data);
        for (p, panel) in words.chunks_exact_mut(steps * 32).enumerate() {
            let cols = (n - p * COLS).min(COLS);
            let first = p * COLS * cs;
            match kernel {
                // Rows of the panel contiguous (weights, attention's values): copied as runs.
                Kernel::F32 if cs == 1 => {
                    for (s, out) in panel.chunks_exact_mut(32).enumerate() {
                        let row = &b[first + s * rs..][..cols];
                        for (word, v) in out.iter_mut().zip(row) {
                            *word = v.to_bits();
                        }
                    }
                }
                // Columns contiguous (attention's keys, transposed): each read as a run and
                // spread over the panel's steps, which stay in L1.
                Kernel::F32 if rs == 1 => {
                    for col in 0..cols {
                        let column = &b[first + col * cs..][..k];
                        for (out, v) in panel.chunks_exact_mut(32).zip(column) {
                            out[col] = v.to_bits();
                        }
                    }
                }
                Kernel::F32 => {
                    for (s, out) in panel.chunks_exact_mut(32).enumerate() {
                        for (col, word) in out[..cols].iter_mut().enumerate() {
                            *word = b[first + s * rs + col * cs].to_bits();
                        }
                    }
                }
                Kernel::Bf16 => {
                    for (s, out) in panel.chunks_exact_mut(32).enumerate() {
                        for (col, word) in out[..cols].iter_mut().enumerate() {
                            let j = p * COLS + col;
                            let at = |r: usize| {
                                if r < k {
                                    half::bf16::from_f32(b[r * rs + j * cs]).to_bits() as u32
                                } else {
                                    0
                                }
                            };
                            *word = at(2 * s) | (at(2 * s + 1) << 16);
                        }
                    }
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

/// The activation a [`Tail`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// None.
    Identity,
    /// max(0, x).
    Relu,
    /// min(max(0, x), 6).
    Relu6,
    /// The exact (erf) GELU, x·Φ(x), as [`super::math::gelu`] computes it.
    Gelu,
}

/// A layer's end, applied to each output as the kernels store it (no second pass over the
/// outputs): `c[i][j] = act(Σ + bias[j] + residual[i·ldc + j])`, or with a scale
/// `residual[i·ldc + j] + scale[j] · act(Σ + bias[j])` (a DINOv2 sub-block's layer scale γ).
#[derive(Clone, Copy, Debug)]
pub struct Tail<'a> {
    /// One value per column.
    pub bias: &'a [f32],
    /// Laid out as the outputs (row stride `ldc`).
    pub residual: Option<&'a [f32]>,
    /// One value per column, multiplying the activated sum before the residual is added
    /// (with a residual only).
    pub scale: Option<&'a [f32]>,
    /// Applied to the sum (before the residual, when scaled; after it otherwise).
    pub act: Act,
}

/// Where the kernels read left-hand row `i`'s K step `s`, in place: at
/// `i·stride + (s / seg_len)·seg_stride + s % seg_len`. Row-major rows are one segment; the
/// patch rows of a convolution over a zero-padded channels-last input are one segment per
/// kernel row (that row's k·C values lie side by side), so no patch is ever gathered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// Elements from one row's start to the next.
    pub stride: usize,
    /// K steps in one contiguous segment.
    pub seg_len: usize,
    /// Elements from one segment's start to the next.
    pub seg_stride: usize,
}

impl Rows {
    /// Row-major rows `stride` apart.
    pub fn plain(stride: usize) -> Rows {
        Rows {
            stride,
            seg_len: usize::MAX,
            seg_stride: 0,
        }
    }

    /// One past the last element read for `m` rows of `steps` K steps.
    fn extent(&self, m: usize, steps: usize) -> usize {
        if m == 0 || steps == 0 {
            return 0;
        }
        let last = steps - 1;
        (m - 1) * self.stride + (last / self.seg_len) * self.seg_stride + last % self.seg_len + 1
    }

    /// The contiguous runs of K steps `s0 .. s0 + steps` into `out`.
    fn runs(&self, s0: usize, steps: usize, out: &mut Vec<Run>) {
        out.clear();
        let (mut s, end) = (s0, s0 + steps);
        while s < end {
            let (seg, within) = (s / self.seg_len, s % self.seg_len);
            let len = (self.seg_len - within).min(end - s);
            out.push(Run {
                a_off: seg * self.seg_stride + within,
                steps: len,
            });
            s += len;
        }
    }
}

/// What the kernels write their outputs into: f32 values, or values not written yet
/// ([`MaybeUninit`]) — the first K block's stores write every output of the product before
/// anything reads it, so fresh outputs need no zeroing pass.
pub trait Out: sealed::Sealed + Send + Sync {}
impl Out for f32 {}
impl Out for MaybeUninit<f32> {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for std::mem::MaybeUninit<f32> {}
}

/// K steps whose left-hand values lie contiguous in each row, `a_off` elements past the
/// row's start: a plain row is one run, a convolution's patch row one run per kernel row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    a_off: usize,
    steps: usize,
}

/// `c = a · B` for the m rows of `a`, read as `rows` describes, into `c` (row stride `ldc`
/// ≥ n), with the tail applied as the outputs are stored, on the calling thread. An f32
/// operand for a bf16-packed `B` is rounded block by block; its rows must be plain.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Out>(
    m: usize,
    a: &[f32],
    rows: Rows,
    rhs: &PackedRhs,
    c: &mut [T],
    ldc: usize,
    tail: Option<&Tail>,
) {
    let lhs = Lhs::F32 {
        a: a.as_ptr(),
        rows,
    };
    checked(m, lhs, a.len(), rhs, c, ldc, 1, tail)
}

/// [`matmul`] for a bf16-packed operand whose left-hand rows are already bf16 pairs (as
/// [`to_bf16_pairs`] writes them; `rows` counts pairs), on the calling thread: callers that
/// build or convert their rows (a convolution's input) round them once.
#[allow(clippy::too_many_arguments)]
pub fn matmul_pairs<T: Out>(
    m: usize,
    a: &[u32],
    rows: Rows,
    rhs: &PackedRhs,
    c: &mut [T],
    ldc: usize,
    tail: Option<&Tail>,
) {
    let lhs = Lhs::Pairs {
        a: a.as_ptr(),
        rows,
    };
    checked(m, lhs, a.len(), rhs, c, ldc, 1, tail)
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

/// [`matmul`] of row-major rows (`lda` apart) split over `threads` rayon tasks: by rows when
/// there are enough of them to keep every task's tiles full, otherwise by column panels.
#[allow(clippy::too_many_arguments)]
pub fn matmul_threads<T: Out>(
    m: usize,
    a: &[f32],
    lda: usize,
    rhs: &PackedRhs,
    c: &mut [T],
    ldc: usize,
    threads: usize,
    tail: Option<&Tail>,
) {
    assert!(lda >= rhs.k, "packed gemm strides");
    let lhs = Lhs::F32 {
        a: a.as_ptr(),
        rows: Rows::plain(lda),
    };
    checked(m, lhs, a.len(), rhs, c, ldc, threads, tail)
}

/// [`matmul_pairs`] of row-major rows (`lda` pairs apart), split over `threads` rayon tasks
/// as [`matmul_threads`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_pairs_threads<T: Out>(
    m: usize,
    a: &[u32],
    lda: usize,
    rhs: &PackedRhs,
    c: &mut [T],
    ldc: usize,
    threads: usize,
    tail: Option<&Tail>,
) {
    assert!(lda >= rhs.steps, "packed gemm strides");
    let lhs = Lhs::Pairs {
        a: a.as_ptr(),
        rows: Rows::plain(lda),
    };
    checked(m, lhs, a.len(), rhs, c, ldc, threads, tail)
}

/// Runs a product whose left-hand operand `lhs` points into a slice of `a_len` values,
/// after checking that every read and write stays in bounds and the operand suits the
/// kernel.
#[allow(clippy::too_many_arguments)]
fn checked<T: Out>(
    m: usize,
    lhs: Lhs,
    a_len: usize,
    rhs: &PackedRhs,
    c: &mut [T],
    ldc: usize,
    threads: usize,
    tail: Option<&Tail>,
) {
    let extent = match lhs {
        Lhs::F32 { rows, .. } => {
            assert!(
                rhs.kernel == Kernel::F32 || rows.seg_len >= rhs.k,
                "bf16 products of f32 rows need plain rows"
            );
            rows.extent(m, rhs.k)
        }
        Lhs::Pairs { rows, .. } => {
            assert_eq!(
                rhs.kernel,
                Kernel::Bf16,
                "bf16 pairs need a bf16-packed operand"
            );
            rows.extent(m, rhs.steps)
        }
    };
    check(m, a_len, extent, rhs, c.len(), ldc, tail);
    // SAFETY: `check` bounds every value the kernels read and write, the operand suits the
    // kernel (asserted), and `c` is exclusively borrowed and holds f32 or not yet written
    // f32, which the first K block writes before any later one reads it.
    unsafe { run_threads(m, lhs, rhs, c.as_mut_ptr().cast(), ldc, threads, tail) }
}

/// [`run`] over all panels split into rayon tasks: by rows when there are enough to keep
/// every task's tiles full, otherwise by column panels.
///
/// # Safety
/// As [`run`].
// SAFETY: a contract for callers, stated in `# Safety` above; `checked` is the caller.
unsafe fn run_threads(
    m: usize,
    a: Lhs,
    rhs: &PackedRhs,
    c: *mut f32,
    ldc: usize,
    threads: usize,
    tail: Option<&Tail>,
) {
    let panels = rhs.panels();
    if threads <= 1 || m == 0 {
        return run(m, a, rhs, 0..panels, c, ldc, tail);
    }
    let shared = Shared { a, c };
    if m >= threads * 4 * ROWS || panels < 2 {
        let per = m.div_ceil(threads).div_ceil(ROWS) * ROWS;
        (0..m.div_ceil(per)).into_par_iter().for_each(|t| {
            let (r0, shared) = (t * per, &shared);
            let tail = tail.map(|tail| Tail {
                residual: tail.residual.map(|r| &r[r0 * ldc..]),
                ..*tail
            });
            // SAFETY: rows r0.. of the caller's bounds; each task writes only its own rows.
            unsafe {
                run(
                    per.min(m - r0),
                    shared.a.skip_rows(r0),
                    rhs,
                    0..panels,
                    shared.c.add(r0 * ldc),
                    ldc,
                    tail.as_ref(),
                )
            }
        });
        return;
    }
    let tasks = threads.min(panels);
    (0..tasks).into_par_iter().for_each(|t| {
        let span = panels * t / tasks..panels * (t + 1) / tasks;
        let shared = &shared;
        // SAFETY: the caller's bounds; each task writes only its own column panels.
        unsafe { run(m, shared.a, rhs, span, shared.c, ldc, tail) }
    });
}

/// The operands the tasks of [`run_threads`] share.
struct Shared {
    a: Lhs,
    c: *mut f32,
}
// SAFETY: the tasks only read `a` and write disjoint rows or columns of `c`.
unsafe impl Sync for Shared {}

/// Bounds every read and write of a product: `a_extent` elements of the left-hand operand
/// are read, m rows of n outputs written at `ldc`, and a tail's bias and residual read.
fn check(
    m: usize,
    a_len: usize,
    a_extent: usize,
    rhs: &PackedRhs,
    c_len: usize,
    ldc: usize,
    tail: Option<&Tail>,
) {
    let n = rhs.n;
    assert!(ldc >= n, "packed gemm strides");
    assert!(a_len >= a_extent, "packed gemm lhs length");
    if m > 0 {
        assert!(c_len >= (m - 1) * ldc + n, "packed gemm dst length");
    }
    if let Some(tail) = tail {
        assert!(tail.bias.len() >= n, "tail bias length");
        if let Some(g) = tail.scale {
            assert!(g.len() >= n, "tail scale length");
        }
        if let (Some(r), true) = (tail.residual, m > 0) {
            assert!(r.len() >= (m - 1) * ldc + n, "tail residual length");
        }
    }
}

/// A left-hand operand: f32, or values already rounded to bf16 pairs; read as `rows` says.
#[derive(Clone, Copy)]
enum Lhs {
    F32 { a: *const f32, rows: Rows },
    Pairs { a: *const u32, rows: Rows },
}

impl Lhs {
    /// The operand from row `r` on.
    ///
    /// # Safety
    /// Row `r` lies within the operand.
    // SAFETY: a contract for callers, stated in `# Safety` above; `run_threads` calls it.
    unsafe fn skip_rows(self, r: usize) -> Lhs {
        match self {
            Lhs::F32 { a, rows } => Lhs::F32 {
                a: a.add(r * rows.stride),
                rows,
            },
            Lhs::Pairs { a, rows } => Lhs::Pairs {
                a: a.add(r * rows.stride),
                rows,
            },
        }
    }
}

#[cfg(test)]
mod tests;
