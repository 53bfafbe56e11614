//! Depthwise k×k convolution (one filter per channel, MobileNetV2's) on a contiguous
//! channels-last (N, H, W, C) CPU tensor, beside the GEMM convs of `nhwc`: each output pixel
//! sums its taps inside the image over all channels at once, `out[c] += w[tap][c] · in[c]`,
//! a loop the compiler vectorises per instruction set. Depthwise convs are a sixtieth of
//! MobileNetV2's multiply-adds, so they stay f32 when the GEMMs run bf16 products.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::math::{epilogue_rows, wide_simd_fn};
use super::{contiguous_f32, Epilogue, Window};

/// A channels-last depthwise conv: weights by tap ((k·k) × C, channels contiguous), bias (C).
#[derive(Clone, Debug)]
pub struct DepthwiseNhwc {
    taps: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    window: Window,
    epilogue: Epilogue,
}

impl DepthwiseNhwc {
    /// From a (C, 1, k, k) weight, row-major as PyTorch stores it, and the bias (C).
    pub fn new(
        weight: &[f32],
        bias: Vec<f32>,
        window: Window,
        epilogue: Epilogue,
    ) -> DepthwiseNhwc {
        let (c, kk) = (bias.len(), window.kernel * window.kernel);
        assert_eq!(weight.len(), c * kk, "depthwise weight size");
        let mut taps = vec![0f32; kk * c];
        for ch in 0..c {
            for t in 0..kk {
                taps[t * c + ch] = weight[ch * kk + t];
            }
        }
        DepthwiseNhwc {
            taps: Arc::new(taps),
            bias: Arc::new(bias),
            window,
            epilogue,
        }
    }

    /// The same conv with another activation.
    pub fn with_epilogue(mut self, epilogue: Epilogue) -> DepthwiseNhwc {
        self.epilogue = epilogue;
        self
    }
}

wide_simd_fn! {
    /// One output row (`ow` pixels × `c` channels) of a channels-last depthwise conv: each
    /// pixel's sum over the taps that fall inside the `h` × `w` image.
    fn row_nhwc(
        image: &[f32],
        h: usize,
        w: usize,
        c: usize,
        oy: usize,
        taps: &[f32],
        window: Window,
        out: &mut [f32],
    ) {
        let (k, s, p) = (window.kernel, window.stride, window.padding);
        out.fill(0.0);
        for (ox, pixel) in out.chunks_exact_mut(c).enumerate() {
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                    continue;
                };
                for kx in 0..k {
                    let Some(ix) = (ox * s + kx).checked_sub(p).filter(|&ix| ix < w) else {
                        continue;
                    };
                    let src = &image[(iy * w + ix) * c..][..c];
                    let wt = &taps[(ky * k + kx) * c..][..c];
                    for ((o, &a), &b) in pixel.iter_mut().zip(src).zip(wt) {
                        *o += a * b;
                    }
                }
            }
        }
    }
}

impl CustomOp1 for DepthwiseNhwc {
    fn name(&self) -> &'static str {
        "dcd-depthwise-conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let (n, h, w, c) = layout.shape().dims4()?;
        if c != self.bias.len() {
            candle_core::bail!(
                "channels-last depthwise conv expects {} channels, got {c}",
                self.bias.len()
            );
        }
        let (oh, ow) = self.window.output(h, w)?;
        let mut y = vec![0f32; n * oh * ow * c];
        y.par_chunks_mut(ow * c).enumerate().for_each(|(row, out)| {
            let (image, oy) = (row / oh, row % oh);
            let image = &x[image * h * w * c..][..h * w * c];
            row_nhwc(image, h, w, c, oy, &self.taps, self.window, out);
            epilogue_rows(out, c, &self.bias, None, None, self.epilogue);
        });
        Ok((CpuStorage::F32(y), Shape::from((n, oh, ow, c))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The definition, one output value at a time, on NCHW data: act(bias + Σ w·x).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
        weight: &[f32],
        bias: &[f32],
        window: Window,
    ) -> Vec<f32> {
        let (k, s, p) = (window.kernel, window.stride, window.padding);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for img in 0..n {
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = bias[ch];
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy * s + ky) as isize - p as isize,
                                    (ox * s + kx) as isize - p as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    sum += weight[(ch * k + ky) * k + kx]
                                        * x[((img * c + ch) * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                        out.push(sum.clamp(0.0, 6.0));
                    }
                }
            }
        }
        out
    }

    /// Odd sizes, a channel count that is no multiple of a vector, both strides, padding at
    /// every edge, against the definition.
    #[test]
    fn channels_last_matches_the_definition() {
        let (n, c, h, w, k) = (2, 19, 9, 7, 3);
        let value = |i: usize| ((i * 7919 % 1000) as f32 / 250.0) - 2.0;
        let x: Vec<f32> = (0..n * c * h * w).map(value).collect();
        let weight: Vec<f32> = (0..c * k * k).map(|i| value(i * 31 + 5) / 3.0).collect();
        let bias: Vec<f32> = (0..c).map(|i| value(i * 13 + 1)).collect();
        let nchw = Tensor::from_vec(x.clone(), (n, c, h, w), &Device::Cpu).unwrap();
        let nhwc = nchw.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        for stride in [1, 2] {
            let window = Window {
                kernel: k,
                stride,
                padding: 1,
            };
            let want = reference(&x, (n, c, h, w), &weight, &bias, window);
            let op = DepthwiseNhwc::new(&weight, bias.clone(), window, Epilogue::BiasRelu6);
            let got: Vec<f32> = nhwc
                .apply_op1_no_bwd(&op)
                .unwrap()
                .permute((0, 3, 1, 2))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(got.len(), want.len(), "stride {stride}");
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "stride {stride}: max diff {diff}");
            assert!(
                want.iter().any(|&v| v > 0.0 && v < 6.0),
                "values inside the clamp"
            );
        }
    }
}
