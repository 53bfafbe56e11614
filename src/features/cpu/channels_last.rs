//! The layout change into channels-last (N, H, W, C) and the poolings over it, around the
//! convolutions of [`super::nhwc`]: each a candle op, parallel over rows or images.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::{contiguous_f32, output_buffer, written, written_buffer};

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
        let mut y = output_buffer(n * oh * ow * c);
        y.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
            let (img, oy) = (r / oh, r % oh);
            let image = &x[img * h * w * c..][..h * w * c];
            // The window's rows or columns inside the image (at least one); the padding
            // never wins a max.
            let span = |o: usize, side: usize| (2 * o).saturating_sub(1)..(2 * o + 2).min(side);
            for (ox, out) in row.chunks_exact_mut(c).enumerate() {
                let mut taps = span(oy, h)
                    .flat_map(|iy| span(ox, w).map(move |ix| &image[(iy * w + ix) * c..][..c]));
                let first = taps.next().expect("a window has a tap");
                for (o, &s) in out.iter_mut().zip(first) {
                    o.write(s);
                }
                // SAFETY: every value was just written.
                let out = unsafe { written(out) };
                for tap in taps {
                    // A compare and select, not `f32::max`: its NaN rule kept the loop from
                    // vectorising.
                    for (o, &s) in out.iter_mut().zip(tap) {
                        *o = if s > *o { s } else { *o };
                    }
                }
            }
        });
        // SAFETY: each output pixel's values were written from its first tap.
        let y = unsafe { written_buffer(y) };
        Ok((CpuStorage::F32(y), Shape::from((n, oh, ow, c))))
    }
}

/// (N, C, H, W) to (N, H, W, C): a batch's images into the kernels' order, in parallel over
/// rows of pixels (candle's strided copy runs on one core, 13 ms a batch of eight 224² RGB
/// images here).
#[derive(Clone, Copy, Debug)]
pub struct ToChannelsLast;

impl CustomOp1 for ToChannelsLast {
    fn name(&self) -> &'static str {
        "dcd-to-channels-last"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let &[n, c, h, w] = layout.dims() else {
            candle_core::bail!("expected (N, C, H, W), got {:?}", layout.dims());
        };
        let mut y = vec![0f32; n * h * w * c];
        y.par_chunks_mut((w * c).max(1))
            .enumerate()
            .for_each(|(row, out)| {
                let (image, iy) = (row / h, row % h);
                for ch in 0..c {
                    let src = &x[((image * c + ch) * h + iy) * w..][..w];
                    for (px, v) in src.iter().enumerate() {
                        out[px * c + ch] = *v;
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((n, h, w, c))))
    }
}

/// The mean over each image's pixels of (N, H, W, C): (N, C), in parallel over images.
#[derive(Clone, Copy, Debug)]
pub struct MeanPool;

impl CustomOp1 for MeanPool {
    fn name(&self) -> &'static str {
        "dcd-mean-pool-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let &[n, h, w, c] = layout.dims() else {
            candle_core::bail!("mean pool expects (N, H, W, C), got {:?}", layout.dims());
        };
        let mut y = vec![0f32; n * c];
        let inv = 1.0 / (h * w).max(1) as f32;
        y.par_chunks_mut(c.max(1))
            .enumerate()
            .for_each(|(image, out)| {
                for px in x[image * h * w * c..][..h * w * c].chunks_exact(c) {
                    for (o, v) in out.iter_mut().zip(px) {
                        *o += v;
                    }
                }
                out.iter_mut().for_each(|o| *o *= inv);
            });
        Ok((CpuStorage::F32(y), Shape::from((n, c))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn layout_changes_and_pooling_match_candle() {
        let (n, c, h, w) = (2, 5, 7, 9);
        let x: Vec<f32> = (0..n * c * h * w).map(|i| (i % 17) as f32 - 8.0).collect();
        let nchw = Tensor::from_vec(x, (n, c, h, w), &Device::Cpu).unwrap();
        let nhwc = nchw.apply_op1_no_bwd(&ToChannelsLast).unwrap();
        let want = nchw.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        assert_eq!(nhwc.dims(), want.dims());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&nhwc), flat(&want));
        let pooled = flat(&nhwc.apply_op1_no_bwd(&MeanPool).unwrap());
        let want = flat(&nchw.flatten_from(2).unwrap().mean(2).unwrap());
        assert_eq!(pooled.len(), n * c);
        for (a, b) in pooled.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn max_pooling_matches_the_definition() {
        // Odd and even sides, values of both signs: windows at the edges see only the
        // pixels inside (padding never wins a max).
        for (n, h, w, c) in [(2, 7, 8, 3), (1, 6, 5, 16)] {
            let x: Vec<f32> = (0..n * h * w * c)
                .map(|i| ((i * 37) % 23) as f32 - 15.0)
                .collect();
            let t = Tensor::from_vec(x.clone(), (n, h, w, c), &Device::Cpu).unwrap();
            let y = t.apply_op1_no_bwd(&MaxPool3x3s2).unwrap();
            let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
            assert_eq!(y.dims(), &[n, oh, ow, c]);
            let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (at, g) in got.iter().enumerate() {
                let (ch, ox, oy, img) = (at % c, at / c % ow, at / c / ow % oh, at / c / ow / oh);
                let mut want = f32::NEG_INFINITY;
                for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h) {
                    for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(w) {
                        want = want.max(x[((img * h + iy) * w + ix) * c + ch]);
                    }
                }
                assert_eq!(*g, want, "output {at} of {:?}", (n, h, w, c));
            }
        }
    }
}
