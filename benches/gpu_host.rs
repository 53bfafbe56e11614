//! Criterion benchmark of the host's share of a GPU upload or append: pool rows (100k x 384
//! f32) converted to the device's f16 with each row's squared norm. `dcd::gpu::host` (parallel
//! chunks, vectorised conversion) against the plain per-element loop uploads used before it,
//! in the same run. On a GPU machine this work precedes every upload; the copy itself is timed
//! there by `dcd bench exact --device cuda` ("gpu copy: ..."). Also, beside it, what a half
//! copy of an f32 pool (`--exact-device-copy f16`) adds: the conversion that measures each
//! row's rounding in the same pass (`HostRows::convert_rounding`, how such a copy is made
//! now), and the separate pass over the pool that measured it before
//! (`dcd::gpu::certified::HalfBounds::of`, still how appended rows are measured).

// criterion_main! defines an undocumented `main`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dcd::gpu::host::HostRows;
use dcd::gpu::GpuDtype;
use dcd::types::VectorView;
use half::f16;

/// The former conversion: rows copied out, converted one element at a time, norms after.
fn plain(view: VectorView<'_>, n: usize, dim: usize) -> (Vec<f16>, Vec<f32>) {
    let mut rows = vec![0.0f32; n * dim];
    view.copy_rows_f32(0, n, &mut rows);
    let halves: Vec<f16> = rows.iter().map(|&v| f16::from_f32(v)).collect();
    let norms = halves
        .chunks(dim)
        .map(|r| r.iter().map(|v| v.to_f32() * v.to_f32()).sum())
        .collect();
    (halves, norms)
}

fn convert(c: &mut Criterion) {
    let (n, dim) = (100_000, 384);
    let base = dcd::synth::uniform_parallel(n, dim, 3);
    let view = VectorView::f32(&base.data, dim);
    let mut g = c.benchmark_group("gpu_host_f16_100k_x_384");
    g.throughput(Throughput::Bytes((n * dim * 4) as u64));
    g.sample_size(10);
    g.bench_function("dcd_gpu_host", |b| {
        b.iter(|| HostRows::convert(view, 0, n, GpuDtype::F16))
    });
    g.bench_function("dcd_gpu_host_with_rounding", |b| {
        b.iter(|| HostRows::convert_rounding(view, 0, n, GpuDtype::F16))
    });
    g.bench_function("plain_loop", |b| b.iter(|| plain(view, n, dim)));
    g.bench_function("half_bounds", |b| {
        b.iter(|| dcd::gpu::certified::HalfBounds::of(GpuDtype::F16, view).unwrap())
    });
    g.finish();
}

criterion_group!(benches, convert);
criterion_main!(benches);
