//! Every kernel this CPU runs against an f64 reference, over shapes that hit every edge:
//! partial tiles of rows and columns, odd k for the pairs, several K and row blocks, strided
//! operands, and both ways of splitting over threads.

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
    matmul_threads(m, &a, lda, &rhs, &mut c, ldc, threads);
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
