//! Every kernel this CPU runs against an f64 reference, over shapes that hit every edge:
//! partial tiles of rows and columns, odd k for the pairs, several K and row blocks, strided
//! operands, and both ways of splitting over threads.

use super::blocked::{aliases, panels_outermost};
use super::blocking::Caches;
use super::*;

fn lcg(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The product in f64 from the operands as the kernel sees them (bf16-rounded for Bf16),
/// and Σ|a||b| per output for the tolerance.
fn reference(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let round = |v: f32| match kernel {
        Kernel::F32 => v as f64,
        Kernel::Bf16 => half::bf16::from_f32(v).to_f64(),
    };
    let (mut c, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
    for i in 0..m {
        for kk in 0..k {
            let av = round(a[i * lda + kk]);
            for j in 0..n {
                let p = av * round(b[kk * n + j]);
                c[i * n + j] += p;
                mag[i * n + j] += p.abs();
            }
        }
    }
    (c, mag)
}

fn check(kernel: Kernel, m: usize, k: usize, n: usize, threads: usize) {
    let lda = k + 3;
    let ldc = n + 5;
    let a = lcg((m * 31 + k) as u64, m * lda);
    let b = lcg((k * 17 + n) as u64, k * n);
    let rhs = PackedRhs::new(kernel, &b, k, n).unwrap();
    let mut c = vec![f32::NAN; m * ldc];
    // Outputs outside the n columns must stay untouched.
    for row in c.chunks_mut(ldc) {
        row[n..].fill(7.0);
    }
    matmul_threads(m, &a, lda, &rhs, &mut c, ldc, threads, None);
    let (want, mag) = reference(kernel, m, k, n, &a, lda, &b);
    for i in 0..m {
        for j in 0..n {
            let got = c[i * ldc + j] as f64;
            // f32 accumulation of k products: a few ulp of the magnitude sum.
            let tol = 1e-6 * (k as f64).sqrt() * mag[i * n + j] + 1e-30;
            assert!(
                (got - want[i * n + j]).abs() <= tol * 4.0,
                "{kernel:?} {m}x{k}x{n} threads {threads}: c[{i}][{j}] = {got}, want {}",
                want[i * n + j]
            );
        }
        assert!(
            c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 7.0),
            "row {i} padding written"
        );
    }
}

fn kernels() -> Vec<Kernel> {
    let all = [Kernel::F32, Kernel::Bf16];
    let here: Vec<Kernel> = all.into_iter().filter(|k| k.available()).collect();
    for k in all {
        println!(
            "{k:?}: {}",
            k.unavailable_reason().unwrap_or_else(|| "runs here".into())
        );
    }
    here
}

#[test]
fn every_available_kernel_matches_the_reference_on_edge_shapes() {
    let shapes = [
        (1, 1, 1),
        (12, 8, 32),
        (13, 7, 33),
        (5, 129, 31),
        (25, 576, 64),
        (49, 300, 70),
        (200, 1031, 40),
        (2100, 40, 17),
        // Past 2048 K steps: several K blocks, the later ones adding to the outputs.
        (7, 4500, 40),
    ];
    for kernel in kernels() {
        for &(m, k, n) in &shapes {
            check(kernel, m, k, n, 1);
            check(kernel, m, k, n, 2);
            check(kernel, m, k, n, 3);
        }
    }
}

#[test]
fn bf16_rounds_to_nearest_even_like_the_reference_conversion() {
    if !Kernel::Bf16.available() {
        println!(
            "no AVX512-BF16 here: {}",
            Kernel::Bf16.unavailable_reason().unwrap()
        );
        return;
    }
    let mut src: Vec<f32> = lcg(5, 37);
    // Exact ties: 1 + 2⁻⁸ rounds down to 1 (even), 1 + 3·2⁻⁸ up to 1 + 2⁻⁶.
    src[0] = 1.0 + 1.0 / 256.0;
    src[1] = 1.0 + 3.0 / 256.0;
    let mut dst = vec![u32::MAX; 20];
    // SAFETY: checked available above.
    unsafe { avx512::to_bf16_pairs(&src, &mut dst) };
    for (i, pair) in dst.iter().enumerate() {
        for half_idx in 0..2 {
            let at = 2 * i + half_idx;
            let got = (pair >> (16 * half_idx)) as u16;
            let want = src
                .get(at)
                .map_or(0, |&v| half::bf16::from_f32(v).to_bits());
            assert_eq!(got, want, "value {at}");
        }
    }
}

#[test]
fn an_unavailable_kernel_packs_nothing() {
    for kernel in [Kernel::F32, Kernel::Bf16] {
        assert_eq!(
            PackedRhs::new(kernel, &[1.0; 4], 2, 2).is_some(),
            kernel.available()
        );
    }
}

/// `act(v)` as the separate pass computes it in f32.
fn activate_f32(act: Act, v: f32) -> f32 {
    match act {
        Act::Identity => v,
        Act::Relu => v.max(0.0),
        Act::Relu6 => v.clamp(0.0, 6.0),
        Act::Gelu => super::super::math::gelu(v),
    }
}

/// `act(v)` as the tails apply it.
fn activate(act: Act, v: f64) -> f64 {
    match act {
        Act::Identity => v,
        Act::Relu => v.max(0.0),
        Act::Relu6 => v.clamp(0.0, 6.0),
        Act::Gelu => super::super::math::gelu(v as f32) as f64,
    }
}

#[test]
fn segmented_rows_and_fused_tails_match_the_reference() {
    // A convolution's patch rows read in place: 3 segments (kernel rows) of 40 values, rows
    // 6 apart (a stride-2 window over 3 channels), segments 200 apart (a padded image row).
    let (m, segs, seg_len, stride, seg_stride, n) = (29, 3, 40, 6, 200, 45);
    let k = segs * seg_len;
    let src = lcg(9, (m - 1) * stride + (segs - 1) * seg_stride + seg_len);
    let at = |i: usize, s: usize| i * stride + (s / seg_len) * seg_stride + s % seg_len;
    let plain: Vec<f32> = (0..m)
        .flat_map(|i| (0..k).map(move |s| (i, s)))
        .map(|(i, s)| src[at(i, s)])
        .collect();
    let b = lcg(3, k * n);
    // Large enough that outputs fall below 0 and past 6.
    let bias: Vec<f32> = lcg(4, n).iter().map(|v| v * 8.0).collect();
    let residual = lcg(5, m * n);
    let gamma = lcg(6, n);
    for kernel in kernels() {
        let rhs = PackedRhs::new(kernel, &b, k, n).unwrap();
        let (want, mag) = reference(kernel, m, k, n, &plain, k, &b);
        let pairs: Vec<u32> = src
            .chunks(2)
            .map(|p| {
                let h = |v: f32| half::bf16::from_f32(v).to_bits() as u32;
                h(p[0]) | (h(p.get(1).copied().unwrap_or(0.0)) << 16)
            })
            .collect();
        // The identity tail's outputs without a residual (the sums plus the bias): every
        // other tail must equal the separate pass's arithmetic on them.
        let mut sums = Vec::new();
        for act in [Act::Identity, Act::Relu, Act::Relu6, Act::Gelu] {
            // Plain, with a residual, and scaled (DINOv2's `r + γ · act(·)`).
            for (with_residual, scaled) in [(false, false), (true, false), (true, true)] {
                let tail = Tail {
                    bias: &bias,
                    residual: with_residual.then_some(&residual[..]),
                    scale: scaled.then_some(&gamma[..]),
                    act,
                };
                // Fresh outputs are never zeroed: the first K block writes every one.
                let mut c = vec![std::mem::MaybeUninit::<f32>::uninit(); m * n];
                match kernel {
                    Kernel::F32 => {
                        let rows = Rows {
                            stride,
                            seg_len,
                            seg_stride,
                        };
                        matmul(m, &src, rows, &rhs, &mut c, n, Some(&tail));
                    }
                    Kernel::Bf16 => {
                        let rows = Rows {
                            stride: stride / 2,
                            seg_len: seg_len / 2,
                            seg_stride: seg_stride / 2,
                        };
                        matmul_pairs(m, &pairs, rows, &rhs, &mut c, n, Some(&tail));
                    }
                }
                // SAFETY: the product wrote every output.
                let c: Vec<f32> = c.iter().map(|v| unsafe { v.assume_init() }).collect();
                if act == Act::Identity && !with_residual {
                    sums = c.clone();
                }
                for i in 0..m {
                    for j in 0..n {
                        let (at, got) = (i * n + j, c[i * n + j]);
                        let r = if with_residual { residual[at] } else { 0.0 };
                        let separate = if scaled {
                            r + gamma[j] * activate_f32(act, sums[at])
                        } else {
                            activate_f32(act, sums[at] + r)
                        };
                        assert_eq!(
                            got, separate,
                            "{kernel:?} {act:?} residual {with_residual} scaled {scaled}: c[{i}][{j}] differs from the separate pass"
                        );
                        let sum = want[at] + bias[j] as f64;
                        let exact = if scaled {
                            r as f64 + gamma[j] as f64 * activate(act, sum)
                        } else {
                            activate(act, sum + r as f64)
                        };
                        let tol = 4e-6 * (k as f64).sqrt() * (mag[at] + 20.0);
                        assert!(
                            (got as f64 - exact).abs() <= tol,
                            "{kernel:?} {act:?} residual {with_residual} scaled {scaled}: c[{i}][{j}] = {got}, want {exact}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn threaded_products_of_pairs_and_of_f32_agree_with_one_thread() {
    if !Kernel::Bf16.available() {
        println!("no AVX512-BF16 here");
        return;
    }
    for &(m, k, n) in &[(7, 300, 70), (150, 64, 96), (400, 130, 40)] {
        let (a, b) = (lcg(m as u64, m * k), lcg(k as u64, k * n));
        let bias = lcg(2, n);
        let rhs = PackedRhs::new(Kernel::Bf16, &b, k, n).unwrap();
        let mut pairs = vec![0u32; m * k.div_ceil(2)];
        for (row, dst) in a.chunks(k).zip(pairs.chunks_mut(k.div_ceil(2))) {
            to_bf16_pairs(row, dst);
        }
        let tail = Tail {
            bias: &bias,
            residual: None,
            scale: None,
            act: Act::Relu,
        };
        let mut one = vec![0f32; m * n];
        matmul_threads(m, &a, k, &rhs, &mut one, n, 1, Some(&tail));
        for threads in [2, 3] {
            let mut c = vec![0f32; m * n];
            matmul_pairs_threads(
                m,
                &pairs,
                k.div_ceil(2),
                &rhs,
                &mut c,
                n,
                threads,
                Some(&tail),
            );
            assert_eq!(c, one, "{m}x{k}x{n}, {threads} threads");
        }
    }
}

#[test]
fn strided_operands_pack_as_their_row_major_copies() {
    // A block inside wider rows, a transposed one (keys for attention) and one strided both
    // ways, in each kernel.
    let (k, n, wide) = (37, 45, 100);
    let src = lcg(9, k * wide + n * wide);
    for kernel in [Kernel::F32, Kernel::Bf16] {
        if !kernel.available() {
            continue;
        }
        for (rs, cs) in [(wide, 1), (1, wide), (wide, 2)] {
            let dense: Vec<f32> = (0..k * n)
                .map(|i| src[(i / n) * rs + (i % n) * cs])
                .collect();
            let want = PackedRhs::new(kernel, &dense, k, n).unwrap();
            let got = PackedRhs::strided(kernel, &src, (rs, cs), k, n).unwrap();
            let words =
                |p: &PackedRhs| -> Vec<u32> { p.data.iter().flat_map(|line| line.0).collect() };
            assert_eq!(words(&got), words(&want), "{kernel:?} strides ({rs}, {cs})");
        }
    }
}

#[test]
fn rows_whose_stride_aliases_in_l1_give_the_same_products() {
    // Rows 1024, 2048 or 5120 values apart (4, 8 and 20 KiB: one L1 set) are copied a block
    // at a time to a stride that does not alias, and bf16 pairs converted from 2048 values
    // get one too; the products must not change by a bit. The last shape has several K
    // blocks.
    for kernel in kernels() {
        for &(m, k, n, wide) in &[
            (30, 1000, 70, 1024),
            (13, 2048, 40, 2048),
            (25, 4500, 33, 5120),
        ] {
            assert!(aliases(wide) && !aliases(k + 3));
            let a = lcg((m + k) as u64, m * wide);
            let narrow: Vec<f32> = a
                .chunks(wide)
                .flat_map(|r| r[..k].iter().copied().chain([0.0; 3]))
                .collect();
            let b = lcg(k as u64, k * n);
            let rhs = PackedRhs::new(kernel, &b, k, n).unwrap();
            for threads in [1, 2] {
                let (mut got, mut want) = (vec![0f32; m * n], vec![0f32; m * n]);
                matmul_threads(m, &a, wide, &rhs, &mut got, n, threads, None);
                matmul_threads(m, &narrow, k + 3, &rhs, &mut want, n, threads, None);
                assert_eq!(got, want, "{kernel:?} {m}x{k}x{n} rows {wide} apart");
                if kernel == Kernel::Bf16 {
                    // The same rows already in pairs, a multiple of 1024 pairs (4 KiB) apart.
                    let steps = k.div_ceil(2);
                    let stride = steps.next_multiple_of(1024);
                    let mut pairs = vec![0u32; m * stride];
                    for (row, dst) in a.chunks(wide).zip(pairs.chunks_mut(stride)) {
                        to_bf16_pairs(&row[..k], &mut dst[..steps]);
                    }
                    assert!(aliases(stride));
                    let mut from_pairs = vec![0f32; m * n];
                    matmul_pairs_threads(
                        m,
                        &pairs,
                        stride,
                        &rhs,
                        &mut from_pairs,
                        n,
                        threads,
                        None,
                    );
                    assert_eq!(from_pairs, want, "{m}x{k}x{n} pairs {stride} apart");
                }
            }
        }
    }
    // A convolution's patch rows read in place over 1024 channels: three segments a row.
    let (m, seg_len, seg_stride, n) = (15, 100, 3000, 40);
    let k = 3 * seg_len;
    let src = lcg(11, (m - 1) * 1024 + 2 * seg_stride + seg_len);
    let rows = Rows {
        stride: 1024,
        seg_len,
        seg_stride,
    };
    let plain: Vec<f32> = (0..m)
        .flat_map(|i| (0..k).map(move |s| (i, s)))
        .map(|(i, s)| src[i * 1024 + (s / seg_len) * seg_stride + s % seg_len])
        .collect();
    let b = lcg(12, k * n);
    let rhs = PackedRhs::new(Kernel::F32, &b, k, n);
    let Some(rhs) = rhs else { return };
    let (mut got, mut want) = (vec![0f32; m * n], vec![0f32; m * n]);
    matmul(m, &src, rows, &rhs, &mut got, n, None);
    matmul(m, &plain, Rows::plain(k), &rhs, &mut want, n, None);
    assert_eq!(got, want, "segmented rows 1024 apart");
}

#[test]
fn panel_by_panel_order_matches_the_reference() {
    // Few rows over 4 MiB of weights (ResNet-50's 7×7 2048 → 512 at batch 1): past half of
    // any x86 L2 today, so the panels go outermost.
    let (m, k, n) = (49usize, 2048usize, 512usize);
    for kernel in kernels() {
        let caches = Caches::here();
        let steps = k.div_ceil(kernel.step());
        let block = caches.blocking(ROWS, steps);
        let ks = block.k_steps.min(steps);
        assert!(
            panels_outermost(&caches, block, m, n.div_ceil(COLS), ks),
            "{caches:?}"
        );
        check(kernel, m, k, n, 1);
        check(kernel, m, k, n, 2);
    }
}
