//! Convolutions and max pooling on channels-last (N, H, W, C) CPU tensors, for the ResNets.
//! Channels-last turns every conv into one GEMM over all the batch's output pixels:
//! `out (N·OH·OW × O) = patches (N·OH·OW × k·k·C) · W (k·k·C × O)`, where a 1×1 stride-1
//! conv's patches are the input itself. The rows are split into tasks; each task gathers
//! its own patches into a thread-local buffer (no batch-sized im2col), runs its GEMM and
//! applies bias, the residual and the activation while the rows are in cache.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

use super::math::epilogue_rows;
use super::packed::{matmul_pairs, to_bf16_pairs, Kernel};
use super::{contiguous_f32, Epilogue, Weight, Window};

/// Largest gathered patch buffer per task, in floats (4 MiB).
const PATCH_BUDGET: usize = 1 << 20;

thread_local! {
    static PATCHES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Patches rounded to bf16 pairs as they are gathered (bf16 products, even channels).
    static PATCH_PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// A channels-last convolution with its weights packed for the GEMM.
#[derive(Clone, Debug)]
pub struct ConvNhwc {
    /// (k·k·C_in) × C_out, rows ordered (ky, kx, c).
    weight: Weight,
    bias: Arc<Vec<f32>>,
    in_ch: usize,
    out_ch: usize,
    window: Window,
    /// Applied after the bias (and after the residual, when there is one).
    epilogue: Epilogue,
}

impl ConvNhwc {
    /// From an OIHW weight (row-major, as PyTorch stores it) and the bias; the products run
    /// in `kernel` (packed at load) or, with None, in the generic f32 GEMM.
    pub fn from_oihw(
        oihw: &[f32],
        bias: Vec<f32>,
        in_ch: usize,
        window: Window,
        epilogue: Epilogue,
        kernel: Option<Kernel>,
    ) -> ConvNhwc {
        let out_ch = bias.len();
        let kk = window.kernel * window.kernel;
        assert_eq!(oihw.len(), out_ch * in_ch * kk, "conv weight size");
        let mut weight = vec![0f32; kk * in_ch * out_ch];
        for o in 0..out_ch {
            for c in 0..in_ch {
                for k in 0..kk {
                    weight[(k * in_ch + c) * out_ch + o] = oihw[(o * in_ch + c) * kk + k];
                }
            }
        }
        ConvNhwc {
            weight: Weight::new(weight, kk * in_ch, out_ch, kernel),
            bias: Arc::new(bias),
            in_ch,
            out_ch,
            window,
            epilogue,
        }
    }

    /// Visits the k·k taps of output pixel `row` (flat over N·OH·OW) in patch order: the
    /// tap's index and its C input values, or None where the window hangs over the padding.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn taps(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        row: usize,
        mut visit: impl FnMut(usize, Option<&[f32]>),
    ) {
        let c = self.in_ch;
        let (n, rem) = (row / (oh * ow), row % (oh * ow));
        let (oy, ox) = (rem / ow, rem % ow);
        let image = &x[n * h * w * c..][..h * w * c];
        let Window {
            kernel: k,
            stride,
            padding,
        } = self.window;
        for ky in 0..k {
            let iy = (oy * stride + ky) as isize - padding as isize;
            for kx in 0..k {
                let ix = (ox * stride + kx) as isize - padding as isize;
                let inside = iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize;
                let src = inside.then(|| &image[(iy as usize * w + ix as usize) * c..][..c]);
                visit(ky * k + kx, src);
            }
        }
    }

    /// Writes the patch of output pixel `row` into `dst` (k·k·C).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        row: usize,
        dst: &mut [f32],
    ) {
        let c = self.in_ch;
        self.taps(x, h, w, oh, ow, row, |tap, src| {
            let d = &mut dst[tap * c..][..c];
            match src {
                Some(src) => d.copy_from_slice(src),
                None => d.fill(0.0),
            }
        });
    }

    /// Like [`ConvNhwc::gather`], rounding to bf16 pairs on the way (`c` even): `dst` holds
    /// k·k·C/2 pairs.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn gather_pairs(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        row: usize,
        dst: &mut [u32],
    ) {
        let half = self.in_ch / 2;
        self.taps(x, h, w, oh, ow, row, |tap, src| {
            let d = &mut dst[tap * half..][..half];
            match src {
                Some(src) => to_bf16_pairs(src, d),
                None => d.fill(0),
            }
        });
    }

    fn run(
        &self,
        x: &[f32],
        dims: &[usize],
        residual: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[n, h, w, c] = dims else {
            candle_core::bail!("channels-last conv expects (N, H, W, C), got {dims:?}");
        };
        if c != self.in_ch {
            candle_core::bail!("conv expects {} input channels, got {c}", self.in_ch);
        }
        let (oh, ow) = self.window.output(h, w)?;
        let (rows, o) = (n * oh * ow, self.out_ch);
        if let Some(r) = residual {
            if r.len() != rows * o {
                candle_core::bail!(
                    "residual has {} values, the conv output {}",
                    r.len(),
                    rows * o
                );
            }
        }
        let k = self.window.kernel * self.window.kernel * c;
        let direct = self.window.is_pointwise();
        // bf16 products with an even channel count: patches are rounded as they are gathered,
        // half the bytes of f32 patches and no second pass over them.
        let pairs_rhs = match &self.weight {
            Weight::Packed(p) if p.kernel() == Kernel::Bf16 && c % 2 == 0 => Some(&**p),
            _ => None,
        };
        let threads = rayon::current_num_threads().max(1);
        let cap = if direct {
            usize::MAX
        } else {
            (PATCH_BUDGET / k).max(16)
        };
        let per_task = rows.div_ceil(threads).clamp(1, cap);
        let mut y = vec![0f32; rows * o];
        y.par_chunks_mut(per_task * o)
            .enumerate()
            .for_each(|(t, yt)| {
                let r0 = t * per_task;
                let m = yt.len() / o;
                if direct {
                    self.weight.multiply(m, &x[r0 * k..][..m * k], k, yt, o, 1);
                } else if let Some(rhs) = pairs_rhs {
                    PATCH_PAIRS.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        buf.resize(m * k / 2, 0);
                        for (i, dst) in buf.chunks_exact_mut(k / 2).enumerate() {
                            self.gather_pairs(x, h, w, oh, ow, r0 + i, dst);
                        }
                        matmul_pairs(m, &buf, k / 2, rhs, yt, o);
                    });
                } else {
                    PATCHES.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        buf.resize(m * k, 0.0);
                        for (i, dst) in buf.chunks_exact_mut(k).enumerate() {
                            self.gather(x, h, w, oh, ow, r0 + i, dst);
                        }
                        self.weight.multiply(m, &buf, k, yt, o, 1);
                    });
                }
                let res = residual.map(|r| &r[r0 * o..][..m * o]);
                epilogue_rows(yt, o, &self.bias, res, None, self.epilogue);
            });
        Ok((CpuStorage::F32(y), Shape::from((n, oh, ow, o))))
    }
}

impl CustomOp1 for ConvNhwc {
    fn name(&self) -> &'static str {
        "dcd-conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(storage, layout)?, layout.dims(), None)
    }
}

/// The conv with a residual added before the activation: `act(conv(x) + b + r)`.
impl CustomOp2 for ConvNhwc {
    fn name(&self) -> &'static str {
        "dcd-conv-nhwc-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(
            contiguous_f32(s1, l1)?,
            l1.dims(),
            Some(contiguous_f32(s2, l2)?),
        )
    }
}

/// 3×3 stride-2 max pooling with padding 1 on (N, H, W, C), as ResNet's stem.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool3x3s2;

impl CustomOp1 for MaxPool3x3s2 {
    fn name(&self) -> &'static str {
        "dcd-maxpool-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let &[n, h, w, c] = layout.dims() else {
            candle_core::bail!("max pool expects (N, H, W, C), got {:?}", layout.dims());
        };
        let (oh, ow) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
        let mut y = vec![f32::NEG_INFINITY; n * oh * ow * c];
        y.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
            let (img, oy) = (r / oh, r % oh);
            let image = &x[img * h * w * c..][..h * w * c];
            for ky in 0..3 {
                let Some(iy) = (oy * 2 + ky).checked_sub(1).filter(|&iy| iy < h) else {
                    continue;
                };
                for (ox, out) in row.chunks_exact_mut(c).enumerate() {
                    for kx in 0..3 {
                        let Some(ix) = (ox * 2 + kx).checked_sub(1).filter(|&ix| ix < w) else {
                            continue;
                        };
                        let src = &image[(iy * w + ix) * c..][..c];
                        for (o, s) in out.iter_mut().zip(src) {
                            *o = o.max(*s);
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((n, oh, ow, c))))
    }
}
