//! Multi-head self-attention from a fused QKV projection, in one pass per (image, head):
//! `S = Q·Kᵀ`, row softmax of `S/√d`, `O = P·V`. Q, K and V are read in place from the
//! (B, T, 3·H·d) projection through GEMM strides, so no head-major copies are made; each
//! task's T×T scores live in a thread-local buffer. The products run in dcd's packed f32
//! kernels where the CPU has AVX-512 (keys and values packed per head; f32 in either
//! precision, so that the softmax's inputs and weights keep their digits), else in `gemm`.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::contiguous_f32;
use super::math::{gemm_strided, softmax_rows_scaled};
use super::packed::{self, Kernel, PackedRhs, Rows};

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
        let packed = Kernel::F32.available();
        let per_head: Vec<Vec<f32>> = (0..b * self.heads)
            .into_par_iter()
            .map(|task| {
                let (img, h) = (task / self.heads, task % self.heads);
                let base = &qkv[img * t * three_d..][..t * three_d];
                let head = Head {
                    tokens: t,
                    width: dh,
                    stride: three_d,
                    q: &base[h * dh..],
                    k: &base[d + h * dh..],
                    v: &base[2 * d + h * dh..],
                };
                let mut out = vec![0f32; t * dh];
                SCORES.with(|s| {
                    let mut s = s.borrow_mut();
                    s.resize(t * t, 0.0);
                    head.attend(packed, scale, &mut s, &mut out);
                });
                out
            })
            .collect();
        // Rows in parallel: at batch 1 this is a 300 KB copy, a serial one held the other
        // thread up.
        let mut y = vec![0f32; b * t * d];
        y.par_chunks_mut(t * d).enumerate().for_each(|(img, y)| {
            for (row, y) in y.chunks_exact_mut(d).enumerate() {
                for (h, y) in y.chunks_exact_mut(dh).enumerate() {
                    y.copy_from_slice(&per_head[img * self.heads + h][row * dh..][..dh]);
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, t, d))))
    }
}

/// One head's queries, keys and values, read in place from the projection: `tokens` rows
/// of `width` values, rows `stride` apart.
struct Head<'a> {
    tokens: usize,
    width: usize,
    stride: usize,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

impl Head<'_> {
    /// `out (t×dh) = softmax(scale · Q·Kᵀ) · V`, the scores in `s` (t×t). `packed`: in dcd's
    /// f32 kernels, Kᵀ and V packed from the strided rows (a few µs against the products'
    /// tens) and Q and P read in place; otherwise in the generic GEMM.
    fn attend(&self, packed: bool, scale: f32, s: &mut [f32], out: &mut [f32]) {
        let (t, dh, stride) = (self.tokens, self.width, self.stride);
        let pack = |b: &[f32], strides, k, n| {
            PackedRhs::strided(Kernel::F32, b, strides, k, n).expect("the f32 kernel runs here")
        };
        // S (t×t) = Q (t×dh) · Kᵀ (dh×t: element (e, j) at k[j·stride + e]).
        if packed {
            packed::matmul(
                t,
                self.q,
                Rows::plain(stride),
                &pack(self.k, (1, stride), dh, t),
                s,
                t,
                None,
            );
        } else {
            gemm_strided(t, t, dh, self.q, (stride, 1), self.k, (1, stride), s, t);
        }
        softmax_rows_scaled(s, t, scale);
        // O (t×dh) = P (t×t) · V (t×dh).
        if packed {
            packed::matmul(
                t,
                s,
                Rows::plain(t),
                &pack(self.v, (stride, 1), t, dh),
                out,
                dh,
                None,
            );
        } else {
            gemm_strided(t, dh, t, s, (t, 1), self.v, (stride, 1), out, dh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Attention by its definition, in f64.
    fn reference(qkv: &[f32], b: usize, t: usize, heads: usize, dh: usize) -> Vec<f32> {
        let d = heads * dh;
        let at = |img: usize, tok: usize, part: usize, h: usize, e: usize| {
            qkv[(img * t + tok) * 3 * d + part * d + h * dh + e] as f64
        };
        let mut y = vec![0f32; b * t * d];
        for img in 0..b {
            for h in 0..heads {
                for i in 0..t {
                    let scores: Vec<f64> = (0..t)
                        .map(|j| {
                            (0..dh)
                                .map(|e| at(img, i, 0, h, e) * at(img, j, 1, h, e))
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = w.iter().sum();
                    for e in 0..dh {
                        let o: f64 =
                            (0..t).map(|j| w[j] * at(img, j, 2, h, e)).sum::<f64>() / total;
                        y[(img * t + i) * d + h * dh + e] = o as f32;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn heads_match_the_definition() {
        // One token; tokens short of and past a row tile and a column panel; ViT-S/16's
        // 197 tokens of 64-wide heads.
        for &(b, t, heads, dh) in &[
            (1, 1, 2, 8),
            (2, 13, 3, 16),
            (1, 45, 2, 40),
            (1, 197, 6, 64),
        ] {
            let d = heads * dh;
            let qkv: Vec<f32> = (0..b * t * 3 * d)
                .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) / 400.0)
                .collect();
            let x = Tensor::from_vec(qkv.clone(), (b, t, 3 * d), &Device::Cpu).unwrap();
            let y = x.apply_op1_no_bwd(&SelfAttention { heads }).unwrap();
            assert_eq!(y.dims(), &[b, t, d]);
            let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = reference(&qkv, b, t, heads, dh);
            let worst = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "b {b} t {t} heads {heads} dh {dh}: worst error {worst}"
            );
        }
    }
}
