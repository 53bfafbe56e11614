//! `y = act(x·Wᵀ + b)` over the rows of a contiguous CPU tensor, and the residual form
//! `y = r + γ ⊙ (x·Wᵀ + b)` that ends a transformer sub-block (γ: DINOv2's layer scale, or 1).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

use super::packed::Kernel;
use super::{contiguous_f32, output_buffer, written_buffer, Epilogue, Finish, Weight};

/// A linear layer's weights laid out for the kernel: `w_t` is in × out.
#[derive(Clone, Debug)]
pub struct LinearOp {
    w_t: Weight,
    bias: Arc<Vec<f32>>,
    scale: Option<Arc<Vec<f32>>>,
    in_dim: usize,
    out_dim: usize,
    epilogue: Epilogue,
}

impl LinearOp {
    /// From the transposed weight (in × out, row-major) and the bias (out); the products run
    /// in `kernel` (packed at load) or, with None, in the generic f32 GEMM.
    pub fn new(
        w_t: Vec<f32>,
        bias: Vec<f32>,
        in_dim: usize,
        epilogue: Epilogue,
        kernel: Option<Kernel>,
    ) -> LinearOp {
        let out_dim = bias.len();
        assert_eq!(w_t.len(), in_dim * out_dim, "linear weight size");
        LinearOp {
            w_t: Weight::new(w_t, in_dim, out_dim, kernel),
            bias: Arc::new(bias),
            scale: None,
            in_dim,
            out_dim,
            epilogue,
        }
    }

    /// Changes the activation applied after the bias.
    pub fn set_epilogue(&mut self, epilogue: Epilogue) {
        self.epilogue = epilogue;
    }

    /// Sets the per-output scale γ used by the residual form.
    pub fn set_scale(&mut self, scale: Vec<f32>) {
        assert_eq!(scale.len(), self.out_dim, "layer scale size");
        self.scale = Some(Arc::new(scale));
    }

    fn run(
        &self,
        x: &[f32],
        dims: &[usize],
        residual: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if dims.last() != Some(&self.in_dim) {
            candle_core::bail!("linear expects last dim {}, got {dims:?}", self.in_dim);
        }
        let rows = x.len() / self.in_dim;
        let (k, n) = (self.in_dim, self.out_dim);
        if let Some(r) = residual {
            if r.len() != rows * n {
                candle_core::bail!("residual has {} values, the output {}", r.len(), rows * n);
            }
        }
        let mut y = output_buffer(rows * n);
        let threads = rayon::current_num_threads();
        if threads > 1 && rows >= self.w_t.min_rows_per_task() * threads {
            let per_task = rows.div_ceil(threads);
            y.par_chunks_mut(per_task * n)
                .zip(x.par_chunks(per_task * k))
                .enumerate()
                .for_each(|(t, (yb, xb))| {
                    let m = xb.len() / k;
                    let residual = residual.map(|r| &r[t * per_task * n..][..m * n]);
                    self.w_t.multiply(m, xb, k, yb, 1, &self.finish(residual));
                });
        } else {
            self.w_t
                .multiply(rows, x, k, &mut y, threads, &self.finish(residual));
        }
        // SAFETY: the tasks' products wrote every row of `y`.
        let y = unsafe { written_buffer(y) };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = n;
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }

    /// The layer's end for these rows (the residual, when there is one, laid out as them).
    fn finish<'a>(&'a self, residual: Option<&'a [f32]>) -> Finish<'a> {
        Finish {
            bias: &self.bias,
            residual,
            scale: self.scale.as_deref().map(Vec::as_slice),
            epilogue: self.epilogue,
        }
    }
}

impl CustomOp1 for LinearOp {
    fn name(&self) -> &'static str {
        "dcd-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(storage, layout)?, layout.dims(), None)
    }
}

/// The residual form: first argument the layer input, second the residual stream.
impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "dcd-linear-residual"
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
