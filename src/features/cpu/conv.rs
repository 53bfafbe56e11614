//! 2-D convolution (groups = 1) of a contiguous NCHW CPU tensor as one GEMM per image:
//! `out (O × OH·OW) = W (O × I·k·k) · cols (I·k·k × OH·OW)`; a 1×1 stride-1 conv uses the
//! image itself as `cols`. Images are spread over threads; bias and activation are applied
//! to each image's output right after its GEMM.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::math::epilogue_channels;
use super::{contiguous_f32, gemm, Epilogue, Window};

/// A convolution's weights and geometry.
#[derive(Clone, Debug)]
pub struct ConvOp {
    weight: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    in_ch: usize,
    out_ch: usize,
    window: Window,
    epilogue: Epilogue,
}

impl ConvOp {
    /// `weight` is (out, in, k, k) row-major, `bias` (out).
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        in_ch: usize,
        window: Window,
        epilogue: Epilogue,
    ) -> ConvOp {
        let out_ch = bias.len();
        let kernel = window.kernel;
        assert_eq!(
            weight.len(),
            out_ch * in_ch * kernel * kernel,
            "conv weight size"
        );
        ConvOp {
            weight: Arc::new(weight),
            bias: Arc::new(bias),
            in_ch,
            out_ch,
            window,
            epilogue,
        }
    }

    /// The same conv with another activation.
    pub fn with_epilogue(mut self, epilogue: Epilogue) -> ConvOp {
        self.epilogue = epilogue;
        self
    }

    /// Lays out the receptive fields of one image as rows of `cols` (I·k·k × OH·OW).
    fn im2col(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        cols: &mut [f32],
    ) {
        let (k, s, p) = (
            self.window.kernel,
            self.window.stride,
            self.window.padding as isize,
        );
        for c in 0..self.in_ch {
            let plane = &x[c * h * w..][..h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = &mut cols[((c * k + ky) * k + kx) * oh * ow..][..oh * ow];
                    for oy in 0..oh {
                        let iy = (oy * s) as isize + ky as isize - p;
                        let dst = &mut row[oy * ow..][..ow];
                        if iy < 0 || iy >= h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * w..][..w];
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * s) as isize + kx as isize - p;
                            *d = if ix >= 0 && ix < w as isize {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }

    fn one_image(
        &self,
        x: &[f32],
        hw: (usize, usize),
        (oh, ow): (usize, usize),
        y: &mut [f32],
        cols: &mut Vec<f32>,
        threads: usize,
    ) {
        let kk = self.in_ch * self.window.kernel * self.window.kernel;
        let n = oh * ow;
        let rhs: &[f32] = if self.window.is_pointwise() {
            x
        } else {
            cols.resize(kk * n, 0.0);
            self.im2col(x, hw, (oh, ow), cols);
            cols
        };
        gemm(self.out_ch, n, kk, &self.weight, kk, rhs, n, y, n, threads);
        epilogue_channels(y, n, &self.bias, self.epilogue);
    }
}

impl CustomOp1 for ConvOp {
    fn name(&self) -> &'static str {
        "dcd-conv2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.in_ch {
            candle_core::bail!("conv expects {} input channels, got {c}", self.in_ch);
        }
        let (oh, ow) = self.window.output(h, w)?;
        let out_len = self.out_ch * oh * ow;
        let mut y = vec![0f32; b * out_len];
        let threads = rayon::current_num_threads();
        if b >= threads {
            y.par_chunks_mut(out_len)
                .zip(x.par_chunks(c * h * w))
                .for_each_init(Vec::new, |cols, (yi, xi)| {
                    self.one_image(xi, (h, w), (oh, ow), yi, cols, 1)
                });
        } else {
            let mut cols = Vec::new();
            for (yi, xi) in y.chunks_mut(out_len).zip(x.chunks(c * h * w)) {
                self.one_image(xi, (h, w), (oh, ow), yi, &mut cols, threads);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((b, self.out_ch, oh, ow))))
    }
}
