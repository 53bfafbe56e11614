//! Convolutions on channels-last (N, H, W, C) CPU tensors, for the ResNets and MobileNetV2
//! (their layout change and pooling: [`super::channels_last`]). Channels-last turns every conv into a GEMM over the batch's
//! output pixels: `out (N·OH·OW × O) = patches (N·OH·OW × k·k·C) · W (k·k·C × O)`. A 1×1
//! stride-1 conv's patches are its input. Where the packed kernels run and there are output
//! rows enough to share out, a patch row is read in place from a zero-padded copy of the
//! input (one contiguous run of k·C values per kernel row, [`Rows`]): nothing is gathered.
//! Elsewhere (a small batch's last layers, tiny images, the generic GEMM) each task gathers
//! its patches into a thread-local buffer. Bias, the residual and the activation are applied
//! as the kernels store the outputs, into buffers that are never zeroed first.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

use super::packed::{
    matmul, matmul_pairs, matmul_pairs_threads, to_bf16_pairs, Kernel, PackedRhs, Rows, Tail,
};
use super::{contiguous_f32, output_buffer, written_buffer, Epilogue, Finish, Weight, Window};

/// Largest gathered patch buffer per task, in floats (4 MiB).
const PATCH_BUDGET: usize = 1 << 20;

/// Narrowest output read in place by [`ConvNhwc::direct`]: its GEMMs are one output row
/// tall, and narrower rows leave most of the kernel's 12-row tiles empty.
const DIRECT_MIN_WIDTH: usize = 7;

/// Fewest output rows per thread read in place: its tasks are whole output rows, so fewer
/// leave a core idle at the end (ResNet-50's 14×14 layers at batch 1: 14 rows, 7 tasks a
/// core, ran 1.2 ms gathered and 1.4 ms in place; at batch 8, 9.1 and 11.1 the other way).
const DIRECT_MIN_ROWS_PER_THREAD: usize = 8;

/// True for a window over an odd channel count, whose products stay f32 in a bf16 model:
/// its pixels straddle bf16 pairs, so bf16 products would gather and round every patch
/// instead of reading them in place. ResNet-50's stem (7×7 over RGB) took 16.0 ms at batch 8
/// that way against 9.4 in f32, 8% of a bf16 forward pass; f32 there is also exact to the
/// f32 model.
fn stays_f32(in_ch: usize, window: Window) -> bool {
    in_ch % 2 == 1 && window.kernel > 1
}

/// True where a conv is read in place rather than gathered.
fn reads_in_place(g: Geometry) -> bool {
    g.ow >= DIRECT_MIN_WIDTH
        && g.n * g.oh >= DIRECT_MIN_ROWS_PER_THREAD * rayon::current_num_threads().max(1)
}

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
    /// in `kernel` (packed at load) or, with None, in the generic f32 GEMM. A window over an
    /// odd channel count keeps f32 products where bf16 is asked ([`stays_f32`]).
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
        let kernel = match kernel {
            Some(Kernel::Bf16) if stays_f32(in_ch, window) => Some(Kernel::F32),
            kernel => kernel,
        };
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
        let mut y = output_buffer(rows * o);
        let geometry = Geometry { n, h, w, c, oh, ow };
        match &self.weight {
            _ if self.window.is_pointwise() => self.pointwise(x, residual, &mut y),
            Weight::Packed(rhs) if reads_in_place(geometry) => {
                self.direct(x, geometry, rhs, residual, &mut y)
            }
            _ => self.gathered(x, geometry, residual, &mut y),
        }
        // SAFETY: each path wrote every output row.
        let y = unsafe { written_buffer(y) };
        Ok((CpuStorage::F32(y), Shape::from((n, oh, ow, o))))
    }

    /// The layer's end for the `len` outputs from output row `r0` on.
    fn finish<'a>(&'a self, residual: Option<&'a [f32]>, r0: usize, len: usize) -> Finish<'a> {
        Finish {
            bias: &self.bias,
            residual: residual.map(|r| &r[r0 * self.out_ch..][..len]),
            scale: None,
            epilogue: self.epilogue,
        }
    }

    /// A 1×1 stride-1 conv: the input rows are the patches.
    fn pointwise(&self, x: &[f32], residual: Option<&[f32]>, y: &mut [MaybeUninit<f32>]) {
        let (k, o) = (self.in_ch, self.out_ch);
        let rows = y.len() / o;
        let threads = rayon::current_num_threads().max(1);
        if rows < threads * 4 * 48 {
            // Few rows (a late layer of a small batch): one product, split by columns.
            let finish = self.finish(residual, 0, y.len());
            self.weight.multiply(rows, x, k, y, threads, &finish);
            return;
        }
        // Four tasks a thread (whole tiles, at least four) balance cores that run unevenly.
        let per_task = rows.div_ceil(threads * 4).next_multiple_of(12).max(48);
        y.par_chunks_mut(per_task * o)
            .enumerate()
            .for_each(|(t, yt)| {
                let (r0, m) = (t * per_task, yt.len() / o);
                let finish = self.finish(residual, r0, yt.len());
                self.weight
                    .multiply(m, &x[r0 * k..][..m * k], k, yt, 1, &finish);
            });
    }

    /// Reads each output row's patches in place from a zero-padded copy of the input (in
    /// bf16 pairs for bf16 products over an even channel count): a patch row is one
    /// contiguous segment of k·C values per kernel row, so nothing is gathered.
    fn direct(
        &self,
        x: &[f32],
        g: Geometry,
        rhs: &PackedRhs,
        residual: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
    ) {
        let Window {
            kernel: k,
            stride,
            padding,
        } = self.window;
        let pairs = rhs.kernel() == Kernel::Bf16;
        if pairs && g.c % 2 == 1 {
            return self.gathered(x, g, residual, y);
        }
        let (hp, wp) = (g.h + 2 * padding, g.w + 2 * padding);
        // Values (f32 or pairs) per padded pixel.
        let px = if pairs { g.c / 2 } else { g.c };
        let rows = Rows {
            stride: stride * px,
            seg_len: k * px,
            seg_stride: wp * px,
        };
        let o = self.out_ch;
        // Where output row `row` (flat over N·OH) reads: the top padded row its windows cover.
        let start = |row: usize| {
            let (image, oy) = (row / g.oh, row % g.oh);
            (image * hp + oy * stride) * wp * px
        };
        if pairs {
            let padded = pad_input(x, g, padding, px, to_bf16_pairs);
            self.each_output_row(g, residual, y, |row, yr, tail| {
                matmul_pairs(g.ow, &padded[start(row)..], rows, rhs, yr, o, tail)
            });
        } else if padding == 0 {
            // A strided 1×1 conv (a downsample) reads its input as it is.
            self.each_output_row(g, residual, y, |row, yr, tail| {
                matmul(g.ow, &x[start(row)..], rows, rhs, yr, o, tail)
            });
        } else {
            let padded = pad_input(x, g, padding, px, |src, dst: &mut [f32]| {
                dst.copy_from_slice(src)
            });
            self.each_output_row(g, residual, y, |row, yr, tail| {
                matmul(g.ow, &padded[start(row)..], rows, rhs, yr, o, tail)
            });
        }
    }

    /// Runs `product(row, outputs, tail)` for every output row (OW pixels; rows spread over
    /// four tasks a thread), the kernels applying the layer's end as they store.
    fn each_output_row(
        &self,
        g: Geometry,
        residual: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
        product: impl Fn(usize, &mut [MaybeUninit<f32>], Option<&Tail>) + Sync,
    ) {
        let width = g.ow * self.out_ch;
        // About four tasks a thread, rounded down: more, smaller tasks balance better.
        let per_task = ((g.n * g.oh) / (rayon::current_num_threads().max(1) * 4)).max(1);
        y.par_chunks_mut(per_task * width)
            .enumerate()
            .for_each(|(t, yt)| {
                for (i, yr) in yt.chunks_mut(width).enumerate() {
                    let row = t * per_task + i;
                    let finish = self.finish(residual, row * g.ow, yr.len());
                    product(row, yr, Some(&finish.tail()));
                }
            });
    }

    /// Gathers each task's patches into a thread-local buffer, then multiplies.
    fn gathered(
        &self,
        x: &[f32],
        g: Geometry,
        residual: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
    ) {
        let Geometry {
            h, w, c, oh, ow, ..
        } = g;
        let o = self.out_ch;
        let rows = y.len() / o;
        let k = self.window.kernel * self.window.kernel * c;
        // bf16 products with an even channel count: patches are rounded as they are gathered,
        // half the bytes of f32 patches and no second pass over them.
        let pairs_rhs = match &self.weight {
            Weight::Packed(p) if p.kernel() == Kernel::Bf16 && c % 2 == 0 => Some(&**p),
            _ => None,
        };
        let threads = rayon::current_num_threads().max(1);
        if rows < threads * 48 {
            return self.gathered_few(x, g, residual, y, pairs_rhs);
        }
        let per_task = rows.div_ceil(threads).clamp(1, (PATCH_BUDGET / k).max(16));
        y.par_chunks_mut(per_task * o)
            .enumerate()
            .for_each(|(t, yt)| {
                let r0 = t * per_task;
                let m = yt.len() / o;
                let finish = self.finish(residual, r0, yt.len());
                if let Some(rhs) = pairs_rhs {
                    PATCH_PAIRS.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        buf.resize(m * k / 2, 0);
                        for (i, dst) in buf.chunks_exact_mut(k / 2).enumerate() {
                            self.gather_pairs(x, h, w, oh, ow, r0 + i, dst);
                        }
                        let tail = finish.tail();
                        matmul_pairs(m, &buf, Rows::plain(k / 2), rhs, yt, o, Some(&tail));
                    });
                } else {
                    PATCHES.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        buf.resize(m * k, 0.0);
                        for (i, dst) in buf.chunks_exact_mut(k).enumerate() {
                            self.gather(x, h, w, oh, ow, r0 + i, dst);
                        }
                        self.weight.multiply(m, &buf, k, yt, 1, &finish);
                    });
                }
            });
    }
}

impl ConvNhwc {
    /// [`ConvNhwc::gathered`] for too few rows to split: every patch gathered (in parallel)
    /// into one buffer, then one product whose tasks split the columns.
    fn gathered_few(
        &self,
        x: &[f32],
        g: Geometry,
        residual: Option<&[f32]>,
        y: &mut [MaybeUninit<f32>],
        pairs_rhs: Option<&PackedRhs>,
    ) {
        let Geometry {
            h, w, c, oh, ow, ..
        } = g;
        let (o, k) = (self.out_ch, self.window.kernel * self.window.kernel * c);
        let rows = y.len() / o;
        let threads = rayon::current_num_threads().max(1);
        let finish = self.finish(residual, 0, y.len());
        if let Some(rhs) = pairs_rhs {
            let mut patches = vec![0u32; rows * k / 2];
            patches
                .par_chunks_mut(k / 2)
                .enumerate()
                .for_each(|(r, dst)| self.gather_pairs(x, h, w, oh, ow, r, dst));
            let tail = finish.tail();
            matmul_pairs_threads(rows, &patches, k / 2, rhs, y, o, threads, Some(&tail));
        } else {
            let mut patches = vec![0f32; rows * k];
            patches
                .par_chunks_mut(k)
                .enumerate()
                .for_each(|(r, dst)| self.gather(x, h, w, oh, ow, r, dst));
            self.weight.multiply(rows, &patches, k, y, threads, &finish);
        }
    }
}

/// A conv's input and output sizes.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
}

/// `x` (N, H, W, C) with `pad` zero pixels around each image, converted per row of C·W
/// values by `convert` into `px` values a pixel.
fn pad_input<T: Copy + Default + Send + Sync>(
    x: &[f32],
    g: Geometry,
    pad: usize,
    px: usize,
    convert: impl Fn(&[f32], &mut [T]) + Sync,
) -> Vec<T> {
    let (hp, wp) = (g.h + 2 * pad, g.w + 2 * pad);
    let mut out = vec![T::default(); g.n * hp * wp * px];
    out.par_chunks_mut(wp * px)
        .enumerate()
        .for_each(|(row, dst)| {
            let (image, py) = (row / hp, row % hp);
            let Some(iy) = py.checked_sub(pad).filter(|&iy| iy < g.h) else {
                return;
            };
            let src = &x[((image * g.h + iy) * g.w) * g.c..][..g.w * g.c];
            convert(src, &mut dst[pad * px..][..g.w * px]);
        });
    out
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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The definition on channels-last data, in f64: act(bias + Σ w·x (+ r)), and the sum of
    /// the products' magnitudes for the tolerance.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        (n, h, w, c): (usize, usize, usize, usize),
        oihw: &[f32],
        bias: &[f32],
        window: Window,
        residual: Option<&[f32]>,
        relu: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let (k, s, p) = (window.kernel, window.stride, window.padding);
        let (oh, ow) = window.output(h, w).unwrap();
        let o = bias.len();
        let (mut out, mut mag) = (Vec::new(), Vec::new());
        for img in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for oc in 0..o {
                        let at = ((img * oh + oy) * ow + ox) * o + oc;
                        let mut sum = bias[oc] as f64 + residual.map_or(0.0, |r| r[at] as f64);
                        let mut m = sum.abs();
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                    continue;
                                }
                                for ch in 0..c {
                                    let v = x[((img * h + iy as usize) * w + ix as usize) * c + ch]
                                        as f64
                                        * oihw[((oc * c + ch) * k + ky) * k + kx] as f64;
                                    sum += v;
                                    m += v.abs();
                                }
                            }
                        }
                        out.push(if relu { sum.max(0.0) } else { sum });
                        mag.push(m);
                    }
                }
            }
        }
        (out, mag)
    }

    /// Every way a dense conv runs — read in place from a padded copy (f32 and bf16 pairs),
    /// strided 1×1 read as it is, patches gathered per task or all at once, pointwise rows
    /// split over tasks or columns, the generic GEMM — against the definition, with and
    /// without a residual, on 1 and 3 threads.
    #[test]
    fn every_conv_path_matches_the_definition() {
        // (n, h, w, c, out, kernel, stride, padding)
        let cases = [
            (1, 50, 52, 3, 40, 7, 2, 3), // the stem, read in place (wide output rows)
            (2, 26, 27, 6, 33, 3, 1, 1), // 3×3, read in place, from f32 or pairs
            (1, 50, 49, 8, 20, 3, 2, 1), // strided 3×3, read in place
            (1, 50, 50, 16, 40, 1, 2, 0), // a downsample: strided 1×1, no copy
            (1, 30, 30, 3, 20, 1, 2, 0), // strided 1×1, odd channels: gathered (bf16 too)
            (4, 6, 6, 16, 70, 3, 1, 1),  // narrow: gathered per task
            (1, 5, 5, 16, 70, 3, 1, 1),  // too few rows: gathered at once, split by columns
            (3, 20, 20, 24, 50, 1, 1, 0), // pointwise, rows over tasks
            (1, 5, 5, 24, 50, 1, 1, 0),  // pointwise, columns over tasks
        ];
        let kernels = [None, Some(Kernel::F32), Some(Kernel::Bf16)];
        for &(n, h, w, c, o, k, stride, padding) in &cases {
            let window = Window {
                kernel: k,
                stride,
                padding,
            };
            let (oh, ow) = window.output(h, w).unwrap();
            let value =
                |i: usize, seed: usize| (((i * 7919 + seed * 104729) % 2000) as f32 / 1000.0) - 1.0;
            let x: Vec<f32> = (0..n * h * w * c).map(|i| value(i, 1)).collect();
            let oihw: Vec<f32> = (0..o * c * k * k).map(|i| value(i, 2) / 4.0).collect();
            let bias: Vec<f32> = (0..o).map(|i| value(i, 3)).collect();
            let residual: Vec<f32> = (0..n * oh * ow * o).map(|i| value(i, 4)).collect();
            let input = Tensor::from_vec(x.clone(), (n, h, w, c), &Device::Cpu).unwrap();
            let res = Tensor::from_vec(residual.clone(), (n, oh, ow, o), &Device::Cpu).unwrap();
            for kernel in kernels {
                if kernel.is_some_and(|k| !k.available()) {
                    continue;
                }
                let conv =
                    ConvNhwc::from_oihw(&oihw, bias.clone(), c, window, Epilogue::BiasRelu, kernel);
                // bf16 rounds inputs and weights: 2⁻⁸ of each product's size.
                let rel = if kernel == Some(Kernel::Bf16) {
                    1e-2
                } else {
                    1e-5
                };
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    for with_residual in [false, true] {
                        let got = pool.install(|| match with_residual {
                            false => input.apply_op1_no_bwd(&conv),
                            true => input.apply_op2_no_bwd(&res, &conv),
                        });
                        let got: Vec<f32> = got.unwrap().flatten_all().unwrap().to_vec1().unwrap();
                        let r = with_residual.then_some(&residual[..]);
                        let (want, mag) =
                            reference(&x, (n, h, w, c), &oihw, &bias, window, r, true);
                        assert_eq!(got.len(), want.len());
                        for (i, (g, (wv, m))) in got.iter().zip(want.iter().zip(&mag)).enumerate() {
                            assert!(
                                (*g as f64 - wv).abs() <= rel * m + 1e-6,
                                "{kernel:?} case {:?} threads {threads} residual {with_residual}: \
                                 output {i} = {g}, want {wv}",
                                (n, h, w, c, o, k, stride, padding)
                            );
                        }
                        assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
                    }
                }
            }
        }
    }

    #[test]
    fn a_window_over_odd_channels_keeps_f32_products_in_a_bf16_model() {
        if !Kernel::Bf16.available() {
            println!("no AVX512-BF16 here");
            return;
        }
        // ResNet's stem: 7×7 over RGB. Asked for bf16, it runs the f32 kernel (and so gives
        // the f32 conv's outputs to the bit); over 4 channels it runs bf16.
        let window = Window {
            kernel: 7,
            stride: 2,
            padding: 3,
        };
        let (n, h, w, o) = (1, 40, 40, 16);
        for c in [3, 4] {
            let x: Vec<f32> = (0..n * h * w * c)
                .map(|i| (i % 97) as f32 / 50.0 - 1.0)
                .collect();
            let oihw: Vec<f32> = (0..o * c * 49)
                .map(|i| (i % 89) as f32 / 400.0 - 0.1)
                .collect();
            let bias = vec![0.1; o];
            let input = Tensor::from_vec(x, (n, h, w, c), &Device::Cpu).unwrap();
            let run = |kernel| {
                let conv = ConvNhwc::from_oihw(
                    &oihw,
                    bias.clone(),
                    c,
                    window,
                    Epilogue::BiasRelu,
                    Some(kernel),
                );
                let packed = match &conv.weight {
                    Weight::Packed(p) => p.kernel(),
                    Weight::F32 { .. } => panic!("not packed"),
                };
                let y: Vec<f32> = input
                    .apply_op1_no_bwd(&conv)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                (packed, y)
            };
            let ((k32, y32), (k16, y16)) = (run(Kernel::F32), run(Kernel::Bf16));
            assert_eq!(k32, Kernel::F32);
            if c == 3 {
                assert_eq!(k16, Kernel::F32, "odd channels stay f32");
                assert_eq!(y16, y32);
            } else {
                assert_eq!(k16, Kernel::Bf16, "even channels run bf16");
                assert_ne!(y16, y32);
            }
        }
    }
}
