//! Multi-head self-attention from a fused QKV projection, in one pass per (image, head):
//! `S = Q·Kᵀ`, row softmax of `S/√d`, `O = P·V`. Q, K and V are read in place from the
//! (B, T, 3·H·d) projection through GEMM strides, so no head-major copies are made; each
//! task's T×T scores live in a thread-local buffer.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::contiguous_f32;
use super::math::{gemm_strided, softmax_rows_scaled};

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Attention over a (B, T, 3·heads·head_dim) QKV tensor → (B, T, heads·head_dim).
#[derive(Clone, Copy, Debug)]
pub struct SelfAttention {
    /// Heads.
    pub heads: usize,
}

impl CustomOp1 for SelfAttention {
    fn name(&self) -> &'static str {
        "dcd-self-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(storage, layout)?;
        let (b, t, three_d) = layout.shape().dims3()?;
        if three_d % (3 * self.heads) != 0 {
            candle_core::bail!(
                "qkv width {three_d} is not 3 × {} heads × head dim",
                self.heads
            );
        }
        let d = three_d / 3;
        let dh = d / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let per_head: Vec<Vec<f32>> = (0..b * self.heads)
            .into_par_iter()
            .map(|task| {
                let (img, h) = (task / self.heads, task % self.heads);
                let base = &qkv[img * t * three_d..][..t * three_d];
                let q = &base[h * dh..];
                let k = &base[d + h * dh..];
                let v = &base[2 * d + h * dh..];
                let mut out = vec![0f32; t * dh];
                SCORES.with(|s| {
                    let mut s = s.borrow_mut();
                    s.resize(t * t, 0.0);
                    // S (t×t) = Q (t×dh, rows 3d apart) · Kᵀ (dh×t: element (e, j) at k[j·3d + e]).
                    gemm_strided(t, t, dh, q, (three_d, 1), k, (1, three_d), &mut s, t);
                    softmax_rows_scaled(&mut s, t, scale);
                    // O (t×dh) = P (t×t) · V (t×dh, rows 3d apart).
                    gemm_strided(t, dh, t, &s, (t, 1), v, (three_d, 1), &mut out, dh);
                });
                out
            })
            .collect();
        let mut y = vec![0f32; b * t * d];
        for (task, o) in per_head.iter().enumerate() {
            let (img, h) = (task / self.heads, task % self.heads);
            for (row, src) in o.chunks_exact(dh).enumerate() {
                y[(img * t + row) * d + h * dh..][..dh].copy_from_slice(src);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((b, t, d))))
    }
}
