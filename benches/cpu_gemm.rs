//! Criterion benchmark of the backbones' GEMM shapes (ResNet-50 and ViT-S at batch 8) on one
//! thread and on every core: the generic `gemm` crate (weights repacked every call) against
//! dcd's packed kernels in f32 and bf16, where this CPU runs them. Throughput is in
//! multiply-adds (criterion's "elements"): ×2 for FLOP/s.

// criterion_main! defines an undocumented `main`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dcd::features::cpu::gemm;
use dcd::features::cpu::packed::{matmul_threads, Kernel, PackedRhs};

/// (name, m, k, n): an NHWC conv's patches × weights, or a token matrix × a linear weight.
const SHAPES: [(&str, usize, usize, usize); 9] = [
    ("r50_l1_3x3", 8 * 56 * 56, 576, 64),
    ("r50_l1_1x1_expand", 8 * 56 * 56, 64, 256),
    ("r50_l3_3x3", 8 * 14 * 14, 2304, 256),
    ("r50_l4_1x1_expand", 8 * 7 * 7, 512, 2048),
    ("vits_qkv", 8 * 197, 384, 1152),
    ("vits_fc1", 8 * 197, 384, 1536),
    ("vits_fc2", 8 * 197, 1536, 384),
    ("vits_fc1_b32", 32 * 197, 384, 1536),
    ("vits_fc2_b32", 32 * 197, 1536, 384),
];

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32
                - 0.5
        })
        .collect()
}

fn gemms(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool");
        let mut g = c.benchmark_group(format!("gemm_threads{threads}"));
        g.sample_size(10);
        for &(name, m, k, n) in &SHAPES {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let mut out = vec![0f32; m * n];
            g.throughput(Throughput::Elements((m * k * n) as u64));
            g.bench_function(BenchmarkId::new("gemm_crate", name), |bch| {
                pool.install(|| bch.iter(|| gemm(m, n, k, &a, k, &b, n, &mut out, n, threads)))
            });
            for kernel in [Kernel::F32, Kernel::Bf16] {
                let Some(rhs) = PackedRhs::new(kernel, &b, k, n) else {
                    continue;
                };
                let id = BenchmarkId::new(format!("packed_{kernel:?}").to_lowercase(), name);
                g.bench_function(id, |bch| {
                    pool.install(|| {
                        bch.iter(|| matmul_threads(m, &a, k, &rhs, &mut out, n, threads, None))
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, gemms);
criterion_main!(benches);
