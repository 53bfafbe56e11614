//! LayerNorm over the last dimension of a contiguous CPU tensor: rows in parallel, each in
//! vectorised passes (candle's keeps its two running sums scalar, so a 384-wide row is a
//! chain of dependent adds, and zeroes its output before writing it). The variance is taken
//! about the mean (two passes) rather than as E[x²] − mean², which loses digits when the
//! mean is large against the spread.

use std::mem::MaybeUninit;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::math::wide_simd_fn;
use super::{contiguous_f32, output_buffer, written_buffer};

/// `y = (x − mean) / √(var + ε) · γ + β` for each row of width `γ.len()`.
#[derive(Clone, Debug)]
pub struct LayerNormOp {
    weight: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    eps: f32,
}

impl LayerNormOp {
    /// From γ and β (one value per column, equal lengths) and ε.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, eps: f32) -> LayerNormOp {
        assert_eq!(
            weight.len(),
            bias.len(),
            "layer norm weight and bias widths"
        );
        LayerNormOp {
            weight: Arc::new(weight),
            bias: Arc::new(bias),
            eps,
        }
    }
}

/// Rows per rayon task: enough work to outweigh a task's hand-off (a few µs), and several
/// tasks a thread so that a late thread does not hold the op up.
fn rows_per_task(rows: usize, width: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let min_rows = (16 * 1024 / width.max(1)).max(1);
    (rows / (threads * 4)).max(min_rows)
}

impl CustomOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "dcd-layer-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let width = self.weight.len();
        if width == 0 || layout.shape().dims().last() != Some(&width) {
            candle_core::bail!(
                "layer norm of width {width} got a tensor of shape {:?}",
                layout.shape().dims()
            );
        }
        let mut y = output_buffer(x.len());
        let per_task = rows_per_task(x.len() / width.max(1), width) * width;
        y.par_chunks_mut(per_task)
            .zip(x.par_chunks(per_task))
            .for_each(|(y, x)| normalize_rows(x, y, width, &self.weight, &self.bias, self.eps));
        // SAFETY: the chunks cover `y`, and `normalize_rows` writes every value of its chunk.
        let y = unsafe { written_buffer(y) };
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }
}

wide_simd_fn! {
    /// Normalises each `width`-wide row of `x` into `y` (every value written).
    fn normalize_rows(
        x: &[f32],
        y: &mut [MaybeUninit<f32>],
        width: usize,
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) {
        let inv_width = 1.0 / width as f32;
        for (x, y) in x.chunks_exact(width).zip(y.chunks_exact_mut(width)) {
            let mean = lanes(x, |v| v) * inv_width;
            let var = lanes(x, |v| (v - mean) * (v - mean)) * inv_width;
            let inv_std = 1.0 / (var + eps).sqrt();
            for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(weight).zip(bias) {
                y.write((x - mean) * inv_std * g + b);
            }
        }
    }
}

/// Σ f(v) over `row` in sixteen interleaved partial sums, which vectorise (a single running
/// sum is a chain the compiler may not reorder).
#[inline(always)]
fn lanes(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The definition in f64.
    fn reference(x: &[f32], width: usize, g: &[f32], b: &[f32], eps: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(width) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            let inv = 1.0 / (var + eps).sqrt();
            for ((&v, &g), &b) in row.iter().zip(g).zip(b) {
                out.push(((v as f64 - mean) * inv * g as f64 + b as f64) as f32);
            }
        }
        out
    }

    #[test]
    fn rows_match_the_definition_at_every_width_and_offset() {
        // Widths below, at and past the 16 lanes with remainders; rows enough for several
        // tasks; values with a large common offset (where E[x²] − mean² loses digits).
        for &(width, rows) in &[(1usize, 3usize), (7, 5), (16, 1), (384, 197), (1030, 40)] {
            let x: Vec<f32> = (0..width * rows)
                .map(|i| 1000.0 + ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
                .collect();
            let g: Vec<f32> = (0..width).map(|j| 0.5 + (j % 5) as f32 * 0.25).collect();
            let b: Vec<f32> = (0..width).map(|j| (j % 3) as f32 - 1.0).collect();
            let op = LayerNormOp::new(g.clone(), b.clone(), 1e-6);
            let t = Tensor::from_vec(x.clone(), (rows, width), &Device::Cpu).unwrap();
            let y = t.apply_op1_no_bwd(&op).unwrap();
            assert_eq!(y.dims(), &[rows, width]);
            let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = reference(&x, width, &g, &b, 1e-6);
            let worst = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 2e-4, "width {width}: worst error {worst}");
        }
    }

    #[test]
    fn a_tensor_of_another_width_is_refused() {
        let op = LayerNormOp::new(vec![1.0; 4], vec![0.0; 4], 1e-5);
        let t = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = t.apply_op1_no_bwd(&op).unwrap_err().to_string();
        assert!(err.contains("width 4"), "{err}");
    }
}
