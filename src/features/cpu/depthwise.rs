//! Depthwise k×k convolution (one filter per channel, MobileNetV2's) on a contiguous NCHW CPU
//! tensor: each (image, channel) plane is zero-padded into a thread-local buffer, then every
//! tap adds `w · shifted row` to the output row, a loop the compiler vectorises.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::math::{epilogue_channels, wide_simd_fn};
use super::{contiguous_f32, Epilogue, Window};

thread_local! {
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A depthwise conv with its folded weights (C × k × k) and bias (C).
#[derive(Clone, Debug)]
pub struct DepthwiseOp {
    weight: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    window: Window,
    epilogue: Epilogue,
}

impl DepthwiseOp {
    /// From a (C, 1, k, k) weight, row-major, and the bias (C).
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        window: Window,
        epilogue: Epilogue,
    ) -> DepthwiseOp {
        assert_eq!(
            weight.len(),
            bias.len() * window.kernel * window.kernel,
            "depthwise weight size"
        );
        DepthwiseOp {
            weight: Arc::new(weight),
            bias: Arc::new(bias),
            window,
            epilogue,
        }
    }
}

wide_simd_fn! {
    /// One output plane from a padded input plane (`pw` wide): Σ over taps of w·input.
    fn plane(padded: &[f32], pw: usize, taps: &[f32], k: usize, stride: usize, out: &mut [f32], ow: usize) {
        out.fill(0.0);
        for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
            for ky in 0..k {
                let src = &padded[(oy * stride + ky) * pw..];
                for kx in 0..k {
                    let w = taps[ky * k + kx];
                    if stride == 1 {
                        for (o, s) in row.iter_mut().zip(&src[kx..kx + ow]) {
                            *o += w * s;
                        }
                    } else {
                        for (ox, o) in row.iter_mut().enumerate() {
                            *o += w * src[ox * stride + kx];
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp1 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "dcd-depthwise-conv"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.bias.len() {
            candle_core::bail!(
                "depthwise conv expects {} channels, got {c}",
                self.bias.len()
            );
        }
        let (k, s, p) = (self.window.kernel, self.window.stride, self.window.padding);
        let (oh, ow) = self.window.output(h, w)?;
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        let mut y = vec![0f32; n * c * oh * ow];
        y.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane_idx, out)| {
                let ch = plane_idx % c;
                let src = &x[plane_idx * h * w..][..h * w];
                PADDED.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    buf.clear();
                    buf.resize(ph * pw, 0.0);
                    for (r, row) in src.chunks_exact(w).enumerate() {
                        buf[(r + p) * pw + p..][..w].copy_from_slice(row);
                    }
                    plane(&buf, pw, &self.weight[ch * k * k..][..k * k], k, s, out, ow);
                });
                epilogue_channels(out, oh * ow, &self.bias[ch..ch + 1], self.epilogue);
            });
        Ok((CpuStorage::F32(y), Shape::from((n, c, oh, ow))))
    }
}
