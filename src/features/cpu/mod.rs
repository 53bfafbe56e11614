//! CPU kernels for the backbones' heavy ops, run as candle custom ops on CPU tensors (other
//! devices keep candle's own ops). Products with a layer's weights run in dcd's packed
//! kernels ([`packed`]: weights packed once at load, f32 or bf16, AVX-512) where the CPU has
//! them (the attention's products too, packed per head), and in `gemm` 0.19
//! (`x86-v3`/`x86-v4`, picked at run time) elsewhere; candle 0.11's own CPU matmul uses `gemm`
//! 0.17, whose AVX-512 kernels need a nightly compiler. Bias, residual and activation are
//! applied as the packed kernels store each output tile, or in one pass over the output while
//! it is in cache.

pub mod attention;
pub mod channels_last;
pub mod depthwise;
pub mod linear;
pub mod math;
pub mod nhwc;
pub mod norm;
pub mod packed;

use std::mem::MaybeUninit;
use std::sync::Arc;

use candle_core::{CpuStorage, Layout};

use packed::{Kernel, PackedRhs};

/// A layer's weights as the right-hand side (k × n) of its GEMMs: plain row-major f32 for the
/// generic GEMM, or packed once for one of dcd's kernels.
#[derive(Clone, Debug)]
pub enum Weight {
    /// Row-major k × n.
    F32 {
        /// The values.
        data: Arc<Vec<f32>>,
        /// Rows.
        k: usize,
        /// Columns.
        n: usize,
    },
    /// Packed for a kernel.
    Packed(Arc<PackedRhs>),
}

impl Weight {
    /// Row-major `data` (k × n), packed for `kernel` when one is given and the CPU runs it.
    pub fn new(data: Vec<f32>, k: usize, n: usize, kernel: Option<Kernel>) -> Weight {
        assert_eq!(data.len(), k * n, "weight size");
        match kernel.and_then(|kernel| PackedRhs::new(kernel, &data, k, n)) {
            Some(p) => Weight::Packed(Arc::new(p)),
            None => Weight::F32 {
                data: Arc::new(data),
                k,
                n,
            },
        }
    }

    /// Columns (the layer's outputs).
    pub fn n(&self) -> usize {
        match self {
            Weight::F32 { n, .. } => *n,
            Weight::Packed(p) => p.n(),
        }
    }

    /// Rows (the layer's inputs).
    pub fn k(&self) -> usize {
        match self {
            Weight::F32 { k, .. } => *k,
            Weight::Packed(p) => p.k(),
        }
    }

    /// `c (m × n) = finish(a (m × k) · W)` into the first m·n values of `c` (not yet
    /// written, n wide), `a`'s rows `lda` apart, over `threads` rayon tasks; returns them.
    /// The packed kernels apply the finish as they store the outputs; after the generic GEMM
    /// it is one more pass while they are in cache.
    pub fn multiply<'c>(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        c: &'c mut [MaybeUninit<f32>],
        threads: usize,
        finish: &Finish,
    ) -> &'c mut [f32] {
        let n = self.n();
        let c = &mut c[..m * n];
        match self {
            Weight::Packed(p) => {
                packed::matmul_threads(m, a, lda, p, c, n, threads, Some(&finish.tail()));
                // SAFETY: the packed product wrote every one of the m × n outputs (ldc = n).
                unsafe { written(c) }
            }
            Weight::F32 { data, k, .. } => {
                let c = zeroed(c);
                gemm(m, n, *k, a, lda, data, n, c, n, threads);
                finish.apply(c, n);
                c
            }
        }
    }

    /// Fewest rows a task should get when a caller splits the rows over tasks: the generic
    /// GEMM packs the whole weight in every task, so its tasks must be tall.
    pub fn min_rows_per_task(&self) -> usize {
        match self {
            Weight::F32 { .. } => 128,
            Weight::Packed(_) => 48,
        }
    }
}

/// What follows a layer's product on each output: `act(y + bias)`; with a residual
/// `act(y + bias + r)` (a ResNet block's end); with a residual and a scale
/// `r + γ ⊙ act(y + bias)` (a DINOv2 sub-block's end).
#[derive(Clone, Copy, Debug)]
pub struct Finish<'a> {
    /// One value per output column.
    pub bias: &'a [f32],
    /// Laid out as the outputs.
    pub residual: Option<&'a [f32]>,
    /// γ, one value per column (with a residual only).
    pub scale: Option<&'a [f32]>,
    /// The activation.
    pub epilogue: Epilogue,
}

impl<'a> Finish<'a> {
    /// The form the packed kernels apply as they store.
    pub fn tail(&self) -> packed::Tail<'a> {
        let act = match self.epilogue {
            Epilogue::Bias => packed::Act::Identity,
            Epilogue::BiasRelu => packed::Act::Relu,
            Epilogue::BiasRelu6 => packed::Act::Relu6,
            Epilogue::BiasGelu => packed::Act::Gelu,
        };
        packed::Tail {
            bias: self.bias,
            residual: self.residual,
            scale: self.scale.filter(|_| self.residual.is_some()),
            act,
        }
    }

    /// Applies it in a pass over `y`'s `width`-wide rows.
    pub fn apply(&self, y: &mut [f32], width: usize) {
        math::epilogue_rows(
            y,
            width,
            self.bias,
            self.residual,
            self.scale,
            self.epilogue,
        );
    }
}

/// Elementwise tail applied to a GEMM's output together with the bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// Bias only.
    Bias,
    /// Bias then max(0, x).
    BiasRelu,
    /// Bias then min(max(0, x), 6).
    BiasRelu6,
    /// Bias then the exact (erf) GELU, x·Φ(x).
    BiasGelu,
}

/// A square convolution window: kernel side, stride and zero padding on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Window {
    /// Output height and width for an `h`×`w` input; an error when the padded input is
    /// smaller than the kernel.
    pub fn output(&self, h: usize, w: usize) -> candle_core::Result<(usize, usize)> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!("input {h}x{w} is smaller than the {k}x{k} kernel");
        }
        Ok(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
    }

    /// True for a 1×1 stride-1 unpadded window: the input is its own patch matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }
}

/// An output buffer of `len` values for the kernels to fill, not zeroed: zeroing a 25 MB
/// activation is a pass over memory on one core that the kernels' stores make redundant.
pub fn output_buffer(len: usize) -> Box<[MaybeUninit<f32>]> {
    Box::new_uninit_slice(len)
}

/// An output buffer's values once every one of them has been written.
///
/// # Safety
/// Every value of `buf` has been written.
// SAFETY: a contract for callers, stated in `# Safety` above; each call site says why it holds.
pub unsafe fn written_buffer(buf: Box<[MaybeUninit<f32>]>) -> Vec<f32> {
    buf.assume_init().into_vec()
}

/// Part of an output buffer as f32 once every value in it has been written.
///
/// # Safety
/// Every value of `c` has been written.
// SAFETY: a contract for callers, stated in `# Safety` above; each call site says why it holds.
pub unsafe fn written(c: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    std::slice::from_raw_parts_mut(c.as_mut_ptr().cast(), c.len())
}

/// Part of an output buffer zeroed, for code that may read outputs before writing them.
pub fn zeroed(c: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    c.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written.
    unsafe { written(c) }
}

/// The f32 values of a contiguous CPU tensor.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("expected an f32 input"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("expected a contiguous input"),
    }
}

/// `c (m×n) = a (m×k) · b (k×n)`, all row-major with the given row strides; `threads` > 1
/// splits the product across the current rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && ldb >= n && ldc >= n, "gemm strides");
    assert!(a.len() >= (m - 1) * lda + k, "gemm lhs length");
    assert!(b.len() >= (k.max(1) - 1) * ldb + n, "gemm rhs length");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm dst length");
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index the kernel touches (row r < m at r·ld, columns
    // below the width) inside the three slices; `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            false,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            ldb as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}
