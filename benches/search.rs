//! Criterion benchmarks of the search engines on a clustered 20k x 128 set:
//! exact single-query scan, exact batched GEMM path, native HNSW and (with `--features hnsw-rs`)
//! hnsw_rs at ef = 64.
//! Peers (faiss, hnswlib) are measured by `scripts/bench_peers.py` on the same machine.

// criterion_main! defines an undocumented `main`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dcd::index::exact::ExactIndex;
use dcd::index::graph::{HnswGraph, HnswParams};
use dcd::index::{AnnIndex, SearchParams};
use dcd::synth::ClusterSpec;
use dcd::types::VectorView;

fn engines(c: &mut Criterion) {
    let spec = ClusterSpec {
        dim: 128,
        clusters: 40,
        seed: 5,
    };
    let base = spec.sample(20_000, 0);
    let queries = spec.sample(256, 1);
    let view = VectorView::f32(&base.data, base.dim);
    let exact = ExactIndex::build(view);
    let native = HnswGraph::build(view, HnswParams::default()).expect("build");
    let params = SearchParams {
        k: 10,
        ef: Some(64),
        filter: None,
    };

    let mut g = c.benchmark_group("search_k10");
    g.throughput(Throughput::Elements(queries.rows as u64));
    g.sample_size(10);
    g.bench_function("exact_batched_gemm", |b| {
        b.iter(|| exact.search_batch(view, &queries, &params).unwrap())
    });
    g.bench_function("exact_single_query_scans", |b| {
        b.iter(|| {
            for q in queries.iter_rows() {
                exact.search(view, q, &params).unwrap();
            }
        })
    });
    let graphs: [(&str, Box<dyn AnnIndex>); _] = [
        ("native_hnsw", Box::new(native)),
        #[cfg(feature = "hnsw-rs")]
        (
            "hnsw_rs",
            Box::new(
                dcd::index::hnsw::HnswRsIndex::build(view, HnswParams::default()).expect("build"),
            ),
        ),
    ];
    for (name, index) in &graphs {
        g.bench_with_input(BenchmarkId::new(*name, "ef64"), index, |b, index| {
            b.iter(|| {
                for q in queries.iter_rows() {
                    index.search(view, q, &params).unwrap();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
