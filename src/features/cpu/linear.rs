//! `y = x·Wᵀ + b` (with an optional activation) over the rows of a contiguous CPU tensor.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::math::with_wide_simd;
use super::{contiguous_f32, gemm, Epilogue};

/// A linear layer's weights laid out for the kernel: `w_t` is in × out, row-major.
#[derive(Clone, Debug)]
pub struct LinearOp {
    w_t: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
    epilogue: Epilogue,
}

impl LinearOp {
    /// From the transposed weight (in × out, row-major) and the bias (out).
    pub fn new(w_t: Vec<f32>, bias: Vec<f32>, in_dim: usize, epilogue: Epilogue) -> LinearOp {
        let out_dim = bias.len();
        assert_eq!(w_t.len(), in_dim * out_dim, "linear weight size");
        LinearOp {
            w_t: Arc::new(w_t),
            bias: Arc::new(bias),
            in_dim,
            out_dim,
            epilogue,
        }
    }

    /// Changes the activation applied after the bias.
    pub fn set_epilogue(&mut self, epilogue: Epilogue) {
        self.epilogue = epilogue;
    }
}

/// Fewest rows per task: each task packs the whole weight once, so tasks must be tall.
const MIN_ROWS_PER_TASK: usize = 128;

impl CustomOp1 for LinearOp {
    fn name(&self) -> &'static str {
        "dcd-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let dims = layout.dims();
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!("linear expects last dim {}, got {dims:?}", self.in_dim);
        }
        let rows = x.len() / self.in_dim;
        let (k, n) = (self.in_dim, self.out_dim);
        let mut y = vec![0f32; rows * n];
        let threads = rayon::current_num_threads();
        if threads > 1 && rows >= MIN_ROWS_PER_TASK * threads {
            let per_task = rows.div_ceil(threads);
            y.par_chunks_mut(per_task * n)
                .zip(x.par_chunks(per_task * k))
                .for_each(|(yb, xb)| {
                    let m = xb.len() / k;
                    gemm(m, n, k, xb, k, &self.w_t, n, yb, n, 1);
                    self.finish(yb);
                });
        } else {
            gemm(rows, n, k, x, k, &self.w_t, n, &mut y, n, threads);
            self.finish(&mut y);
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = n;
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }
}

impl LinearOp {
    fn finish(&self, y: &mut [f32]) {
        with_wide_simd(|| {
            for row in y.chunks_exact_mut(self.out_dim) {
                for (v, b) in row.iter_mut().zip(self.bias.iter()) {
                    *v = self.epilogue.apply(*v + b);
                }
            }
        })
    }
}
