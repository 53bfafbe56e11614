//! The exact path on every device with one test body: the CPU (`ExactIndex`, the reference)
//! always, and CUDA (dcd's kernels) when built with `--features cuda` and a GPU is present;
//! otherwise the CUDA run prints one line saying why it was skipped.

use dcd::index::exact::ExactIndex;
use dcd::index::{AnnIndex, RowFilter, SearchParams};
use dcd::synth;
use dcd::types::{Matrix, Neighbor, VectorView};

/// Element type of the pool under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Elem {
    F32,
    F16,
    BF16,
}

/// The pool as the device stores it, rounded to `elem` and back (so both sides see the same
/// values and differ only in summation order).
fn rounded(m: &Matrix, elem: Elem) -> Matrix {
    let data = m
        .data
        .iter()
        .map(|&v| match elem {
            Elem::F32 => v,
            Elem::F16 => half::f16::from_f32(v).to_f32(),
            Elem::BF16 => half::bf16::from_f32(v).to_f32(),
        })
        .collect();
    Matrix::new(m.rows, m.dim, data)
}

type Search<'a> =
    &'a dyn Fn(&Matrix, Elem, &Matrix, usize, Option<&RowFilter>) -> Vec<Vec<Neighbor>>;

fn cpu(
    base: &Matrix,
    elem: Elem,
    queries: &Matrix,
    k: usize,
    filter: Option<&RowFilter>,
) -> Vec<Vec<Neighbor>> {
    let base = rounded(base, elem);
    let view = VectorView::f32(&base.data, base.dim);
    let index = ExactIndex::build(view);
    let params = SearchParams {
        k,
        ef: None,
        filter,
    };
    index.search_batch(view, queries, &params).unwrap()
}

/// Same ids (ties aside) and distances within `rel` relative.
fn agree(got: &[Vec<Neighbor>], want: &[Vec<Neighbor>], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: query count");
    for (q, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: query {q} list length");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            let tol = rel * b.distance.abs().max(1e-6);
            assert!(
                (a.distance - b.distance).abs() <= tol,
                "{what}: query {q} rank {i}: {} vs {}",
                a.distance,
                b.distance
            );
            if a.id != b.id {
                // A swap is fine only between (near-)equal distances.
                let other = w.iter().find(|n| n.id == a.id).map(|n| n.distance);
                assert!(
                    other.is_some_and(|d| (d - a.distance).abs() <= tol),
                    "{what}: query {q} rank {i}: id {} vs {}",
                    a.id,
                    b.id
                );
            }
        }
    }
}

fn body(device: &str, search: Search<'_>) {
    // Sizes that do not divide the kernels' block of rows, an odd dimension.
    let base = synth::uniform(5003, 37, 1);
    let queries = synth::uniform(7, 37, 2);
    for elem in [Elem::F32, Elem::F16, Elem::BF16] {
        let rel = match elem {
            Elem::F32 => 1e-4,
            Elem::F16 | Elem::BF16 => 1e-3,
        };
        for k in [1, 10, 100, 1024] {
            let got = search(&base, elem, &queries, k, None);
            let want = cpu(&base, elem, &queries, k, None);
            agree(&got, &want, rel, &format!("{device} {elem:?} k={k}"));
        }
        let filter = RowFilter::from_rows((0..5003).filter(|r| r % 3 == 0), 5003);
        let got = search(&base, elem, &queries, 50, Some(&filter));
        assert!(
            got.iter().flatten().all(|n| n.id % 3 == 0),
            "{device}: the filter holds"
        );
        agree(
            &got,
            &cpu(&base, elem, &queries, 50, Some(&filter)),
            rel,
            &format!("{device} {elem:?} filtered"),
        );
    }
}

#[test]
fn exact_search_agrees_on_every_device() {
    body("cpu", &cpu);
    cuda::run(body);
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    pub fn run(_: fn(&str, super::Search<'_>)) {
        println!("cuda: skipped (built without --features cuda)");
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use dcd::gpu::{GpuDtype, GpuExact};

    pub fn run(body: fn(&str, Search<'_>)) {
        let device = match dcd::gpu::device(0) {
            Ok(d) => d,
            Err(e) => {
                println!("cuda: skipped ({e})");
                return;
            }
        };
        let search =
            |base: &Matrix, elem: Elem, queries: &Matrix, k: usize, filter: Option<&RowFilter>| {
                let dtype = match elem {
                    Elem::F32 => GpuDtype::F32,
                    Elem::F16 => GpuDtype::F16,
                    Elem::BF16 => GpuDtype::BF16,
                };
                let view = VectorView::f32(&base.data, base.dim);
                // Three segments, to exercise the merge of per-segment lists.
                let index = GpuExact::with_segment_rows(&device, view, dtype, 2000).unwrap();
                assert_eq!(index.segments(), 3);
                index.search(queries, k, filter).unwrap()
            };
        body("cuda", &search);
        // Bad input: k above the cap, wrong dimension, NaN.
        let base = synth::uniform(100, 8, 3);
        let index = GpuExact::new(&device, VectorView::f32(&base.data, 8), GpuDtype::F32).unwrap();
        let q = synth::uniform(1, 8, 4);
        assert!(index
            .search(&q, 2000, None)
            .unwrap_err()
            .to_string()
            .contains("above"));
        assert!(index.search(&synth::uniform(1, 7, 4), 5, None).is_err());
        let mut nan = q.clone();
        nan.data[3] = f32::NAN;
        assert!(index.search(&nan, 5, None).is_err());
    }
}
