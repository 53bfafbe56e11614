//! Criterion benchmark of the backbones' GEMM shapes (ResNet-50 and ViT-S, batch 8 unless named) on one
//! thread and on every core: the generic `gemm` crate (weights repacked every call) against
//! dcd's packed kernels in f32 and bf16, where this CPU runs them; and ResNet-50's block
//! ends (1×1 conv + bias + residual + ReLU, batch 8) with cold caches, as a network runs
//! them: every operand last touched a whole forward pass ago. Throughput is in
//! multiply-adds (criterion's "elements"): ×2 for FLOP/s.

// criterion_main! defines an undocumented `main`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use dcd::features::cpu::gemm;
use dcd::features::cpu::packed::{matmul_threads, Act, Kernel, PackedRhs, Tail};

/// (name, m, k, n): an NHWC conv's patches × weights, or a token matrix × a linear weight.
/// The 1×1 reductions' rows are 4 and 8 KiB apart (one L1 set); `_b1` is batch 1.
const SHAPES: [(&str, usize, usize, usize); 11] = [
    ("r50_l1_3x3", 8 * 56 * 56, 576, 64),
    ("r50_l1_1x1_expand", 8 * 56 * 56, 64, 256),
    ("r50_l3_3x3", 8 * 14 * 14, 2304, 256),
    ("r50_l3_1x1_reduce", 8 * 14 * 14, 1024, 256),
    ("r50_l4_1x1_expand", 8 * 7 * 7, 512, 2048),
    ("r50_l4_1x1_reduce_b1", 7 * 7, 2048, 512),
    ("vits_qkv", 8 * 197, 384, 1152),
    ("vits_fc1", 8 * 197, 384, 1536),
    ("vits_fc2", 8 * 197, 1536, 384),
    ("vits_fc1_b32", 32 * 197, 384, 1536),
    ("vits_fc2_b32", 32 * 197, 1536, 384),
];

/// (name, m, k, n) of ResNet-50's residual block ends at batch 8, one per stage.
const BLOCK_ENDS: [(&str, usize, usize, usize); 4] = [
    ("r50_l1_end", 8 * 56 * 56, 64, 256),
    ("r50_l2_end", 8 * 28 * 28, 128, 512),
    ("r50_l3_end", 8 * 14 * 14, 256, 1024),
    ("r50_l4_end", 8 * 7 * 7, 512, 2048),
];

/// Bytes read between cold iterations: twice a 32 MiB L3.
const EVICT_BYTES: usize = 64 << 20;

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

/// The block ends with every operand evicted from the caches before each product (the
/// eviction is set-up, not timed).
fn cold_block_ends(c: &mut Criterion) {
    if !Kernel::F32.available() {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool");
    let evict: Vec<u8> = (0..EVICT_BYTES).map(|i| i as u8).collect();
    let mut g = c.benchmark_group(format!("block_end_cold_threads{threads}"));
    g.sample_size(20);
    for &(name, m, k, n) in &BLOCK_ENDS {
        let (a, b) = (values(m * k, 1), values(k * n, 2));
        let (bias, residual) = (values(n, 3), values(m * n, 4));
        let rhs = PackedRhs::new(Kernel::F32, &b, k, n).expect("f32 kernel");
        let tail = Tail {
            bias: &bias,
            residual: Some(&residual),
            scale: None,
            act: Act::Relu,
        };
        let mut out = vec![0f32; m * n];
        g.throughput(Throughput::Elements((m * k * n) as u64));
        g.bench_function(BenchmarkId::new("packed_f32", name), |bch| {
            bch.iter_batched(
                // Read, not written: dirty lines would be written back during the product.
                || std::hint::black_box(evict.iter().step_by(64).fold(0u8, |x, &b| x ^ b)),
                |_| {
                    pool.install(|| {
                        matmul_threads(m, &a, k, &rhs, &mut out, n, threads, Some(&tail))
                    })
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, gemms, cold_block_ends);
criterion_main!(benches);
