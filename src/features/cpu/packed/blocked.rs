//! The blocked loops of one product over a range of panels, on the calling thread: K blocks
//! sized from this machine's caches, blocks of left-hand rows (converted to bf16 pairs, or
//! copied where their stride would alias in L1), then strips of 12 rows × panels in the
//! order that keeps the reused operand nearest the core, each tile handed to the kernel
//! monomorphised for its row count.

use std::cell::RefCell;
use std::ops::Range;

use super::blocking::{self, Caches};
use super::{Kernel, Lhs, PackedRhs, Run, Tail, COLS, ROWS};

#[cfg(target_arch = "x86_64")]
use super::avx512;

thread_local! {
    /// A block of left-hand rows converted to bf16 pairs, or copied where their own
    /// stride would alias ([`aliases`]), at an [`unaliased`] stride.
    static BLOCK: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of one way of the L1 data cache: 4 KiB on every x86-64 (a virtually indexed,
/// physically tagged L1 indexes within a page — Zen 4's 32 KiB × 8 ways, Sapphire Rapids'
/// 48 KiB × 12).
const L1_WAY: usize = 4096;

/// True when left-hand rows `stride` 4-byte values apart all fall in one L1 set: a tile
/// then wants its 12 rows' lines from a set of 8–12 ways (with the weights' lines beside
/// them) and evicts them before their next K step. ResNet-50's 1×1 convs over 1024 and
/// 2048 channels are such: 14×14 1024 → 256 at batch 8 ran 5.19 ms from its own rows,
/// 3.72 from rows one line further apart.
pub(super) fn aliases(stride: usize) -> bool {
    (stride * 4).is_multiple_of(L1_WAY)
}

/// A row stride of at least `steps` values that does not [`alias`](aliases).
fn unaliased(steps: usize) -> usize {
    if aliases(steps) {
        steps + 16
    } else {
        steps
    }
}

/// The blocked loops over `panels` of every row: K blocks, then blocks of rows (f32 rows
/// converted to bf16 pairs first for that kernel, rows whose stride [`aliases`] copied),
/// then strips of 12 rows and panels, either one outermost. The tail goes with the last K
/// block's stores.
///
/// # Safety
/// `a` readable for m rows of k values (⌈k/2⌉ pairs) as its `rows` say, and plain rows for
/// f32 values with the bf16 kernel; `c` writable for m rows of n at `ldc`; a tail's bias
/// readable for n values and its residual for m rows of n at `ldc`; the kernel is available
/// (a PackedRhs exists only then); pairs only for the bf16 kernel. `c`'s values need not
/// be initialised: the first K block writes each one before a later block reads it.
// SAFETY: a contract for callers, stated in `# Safety` above; each call site says why it holds.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run(
    m: usize,
    a: Lhs,
    rhs: &PackedRhs,
    panels: Range<usize>,
    c: *mut f32,
    ldc: usize,
    tail: Option<&Tail>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let caches = Caches::here();
        let blocking = caches.blocking(ROWS, rhs.steps);
        let (k, n, steps) = (rhs.k, rhs.n, rhs.steps);
        let mut runs = Vec::with_capacity(8);
        // Over few panels a strip of left-hand rows is done with soon after it arrives, and
        // the kernel waits on memory for the next (ResNet-50's 56×56 convs that reduce 256
        // channels to 64 ran at 70% of the FMA peak, 83% with this); over more panels the
        // prefetches displaced cached data (its 14×14 1024 → 256 convs 2–5% slower). f32
        // only: the bf16 convs were no faster with it (their f32 rows are converted a block
        // at a time into a buffer that is then in cache).
        let prefetch_strips = rhs.kernel == Kernel::F32 && panels.len() <= 4;
        for s0 in (0..steps).step_by(blocking.k_steps) {
            let ks = blocking.k_steps.min(steps - s0);
            let last = s0 + ks == steps;
            let panels_outer = panels_outermost(&caches, blocking, m, panels.len(), ks);
            for i0 in (0..m).step_by(blocking.rows) {
                let rows = blocking.rows.min(m - i0);
                // The block's tiles, rows `a_stride` apart from `a_block`.
                let tiles = |a_block: *const u32, a_stride: usize, runs: &[Run], fetch: bool| {
                    let one = |r0: usize, p: usize| {
                        let b = rhs.panel_at(p, s0);
                        let cols = (n - p * COLS).min(COLS);
                        let at = (i0 + r0) * ldc + p * COLS;
                        let t = avx512::Tile {
                            a: a_block.add(r0 * a_stride),
                            a_stride,
                            b,
                            c: c.add(at),
                            ldc,
                            cols,
                            accumulate: s0 > 0,
                            tail: tail.filter(|_| last).map(|tail| avx512::TileTail {
                                bias: tail.bias.as_ptr().add(p * COLS),
                                residual: tail
                                    .residual
                                    .map_or(std::ptr::null(), |r| r.as_ptr().add(at)),
                                scale: match (tail.scale, tail.residual) {
                                    (Some(g), Some(_)) => g.as_ptr().add(p * COLS),
                                    _ => std::ptr::null(),
                                },
                                act: tail.act,
                            }),
                            // Once a strip, while its first panel runs.
                            next_a: if prefetch_strips
                                && fetch
                                && !panels_outer
                                && p == panels.start
                                && r0 + ROWS < rows
                            {
                                a_block.add((r0 + ROWS) * a_stride)
                            } else {
                                std::ptr::null()
                            },
                        };
                        tile(rhs.kernel, (rows - r0).min(ROWS), runs, t);
                    };
                    if panels_outer {
                        for p in panels.clone() {
                            for r0 in (0..rows).step_by(ROWS) {
                                one(r0, p);
                            }
                        }
                    } else {
                        for r0 in (0..rows).step_by(ROWS) {
                            for p in panels.clone() {
                                one(r0, p);
                            }
                        }
                    }
                };
                let whole = [Run {
                    a_off: 0,
                    steps: ks,
                }];
                // The rows as 32-bit words (f32 values or bf16 pairs), for the kernels.
                let (words, layout) = match a {
                    Lhs::F32 { a, rows } => (a.cast::<u32>(), rows),
                    Lhs::Pairs { a, rows } => (a, rows),
                };
                match (rhs.kernel, a) {
                    (Kernel::F32, Lhs::Pairs { .. }) => {
                        unreachable!("bf16 pairs for the f32 kernel")
                    }
                    (Kernel::F32, _) | (Kernel::Bf16, Lhs::Pairs { .. })
                        if !aliases(layout.stride) =>
                    {
                        layout.runs(s0, ks, &mut runs);
                        tiles(words.add(i0 * layout.stride), layout.stride, &runs, true)
                    }
                    (Kernel::F32, _) | (Kernel::Bf16, Lhs::Pairs { .. }) => BLOCK.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        let stride = unaliased(ks);
                        buf.resize(rows * stride, 0);
                        layout.runs(s0, ks, &mut runs);
                        let first = words.add(i0 * layout.stride);
                        copy_rows(first, layout.stride, &runs, &mut buf, stride);
                        tiles(buf.as_ptr(), stride, &whole, false);
                    }),
                    (Kernel::Bf16, Lhs::F32 { a, rows: layout }) => BLOCK.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        let stride = unaliased(ks);
                        buf.resize(rows * stride, 0);
                        let (k0, k1) = (2 * s0, (2 * (s0 + ks)).min(k));
                        for (r, dst) in buf.chunks_exact_mut(stride).enumerate() {
                            let src = std::slice::from_raw_parts(
                                a.add((i0 + r) * layout.stride + k0),
                                k1 - k0,
                            );
                            avx512::to_bf16_pairs(src, &mut dst[..ks]);
                        }
                        tiles(buf.as_ptr(), stride, &whole, false);
                    }),
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, a, rhs, panels, c, ldc, tail);
        unreachable!("packed kernels are x86-64 only");
    }
}

/// True when a K block of `ks` steps over `panels` panels runs panel by panel, each over
/// all `m` rows, rather than strip by strip over all panels (`block` as [`run`] uses it).
///
/// Strips outermost keep a strip of left-hand rows near the core while every panel streams
/// past it, the cheaper order while the panels stay in L2. When they do not and all rows
/// are one block (a late layer at batch 1, megabytes of weights), each strip would stream
/// every panel from L3 (from memory, the first time) again, so panels go outermost: each is
/// read once, the rows (half the L2) again from L2. ResNet-50 at batch 1: its 14×14 → 7×7
/// downsample 1.32 → 1.22 ms, the 7×7 3×3 convs 1.38–1.43 → 1.31–1.34. Over several row
/// blocks it was no faster (batch 8: 14×14 1024 → 256 3.87 → 3.90 ms, 28×28 128 → 512
/// 4.81 → 5.42).
pub(super) fn panels_outermost(
    caches: &Caches,
    block: blocking::Blocking,
    m: usize,
    panels: usize,
    ks: usize,
) -> bool {
    m <= block.rows && panels * ks * blocking::STEP_BYTES > caches.l2 / 2
}

/// Copies the K steps of `runs` of rows `stride` words apart from `first` into `dst`'s rows,
/// `dst_stride` words apart, as many rows as `dst` holds.
///
/// # Safety
/// Every run is readable in each of those rows.
// SAFETY: a contract for callers, stated in `# Safety` above; `run` is the one caller.
unsafe fn copy_rows(
    first: *const u32,
    stride: usize,
    runs: &[Run],
    dst: &mut [u32],
    dst_stride: usize,
) {
    for (r, dst) in dst.chunks_exact_mut(dst_stride).enumerate() {
        let row = first.add(r * stride);
        let mut at = 0;
        for run in runs {
            let src = std::slice::from_raw_parts(row.add(run.a_off), run.steps);
            dst[at..at + run.steps].copy_from_slice(src);
            at += run.steps;
        }
    }
}

/// One tile of `rows` ≤ 12 rows with the kernel's monomorphisation for that count.
///
/// # Safety
/// As the kernel's tile function: the kernel is available, and `t` is readable and writable
/// for `rows` rows, the K steps of `runs` and `t.cols` columns.
// SAFETY: a contract for callers, stated in `# Safety` above; `run` is the one caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile(kernel: Kernel, rows: usize, runs: &[Run], t: avx512::Tile<u32, u32>) {
    macro_rules! by_rows {
        ($f:ident, $t:expr) => {
            match rows {
                12 => avx512::$f::<12>(runs, $t),
                11 => avx512::$f::<11>(runs, $t),
                10 => avx512::$f::<10>(runs, $t),
                9 => avx512::$f::<9>(runs, $t),
                8 => avx512::$f::<8>(runs, $t),
                7 => avx512::$f::<7>(runs, $t),
                6 => avx512::$f::<6>(runs, $t),
                5 => avx512::$f::<5>(runs, $t),
                4 => avx512::$f::<4>(runs, $t),
                3 => avx512::$f::<3>(runs, $t),
                2 => avx512::$f::<2>(runs, $t),
                1 => avx512::$f::<1>(runs, $t),
                _ => unreachable!("tile of {rows} rows"),
            }
        };
    }
    match kernel {
        Kernel::F32 => by_rows!(tile_f32, t.cast()),
        Kernel::Bf16 => by_rows!(tile_bf16, t.cast()),
    }
}
