//! Exact search equals a naive reference: random data, ties by id, k > N, duplicates, f16,
//! filters, and both the single-query scan and the batched GEMM path.

use dcd::index::distance::to_f16;
use dcd::index::exact::ExactIndex;
use dcd::index::{AnnIndex, IndexError, RowFilter, SearchParams, MAX_K};
use dcd::synth;
use dcd::types::{Matrix, Neighbor, VectorView};

/// Sorts every row by (f64 distance, id): the definition the engine must reproduce.
fn naive(
    view: VectorView<'_>,
    queries: &Matrix,
    k: usize,
    allow: impl Fn(u32) -> bool,
) -> Vec<Vec<(u32, f64)>> {
    queries
        .iter_rows()
        .map(|q| {
            let mut all: Vec<(u32, f64)> = (0..view.len())
                .filter(|&i| allow(i as u32))
                .map(|i| {
                    let r = view.row_f32(i);
                    let d = q
                        .iter()
                        .zip(&r)
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum();
                    (i as u32, d)
                })
                .collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            all.truncate(k);
            all
        })
        .collect()
}

/// Equal to the reference: same ids in the same order, except that two rows whose f64
/// distances differ by less than f32 rounding (1e-6 relative) may swap; distances agree.
fn assert_same(got: &[Vec<Neighbor>], want: &[Vec<(u32, f64)>]) {
    assert_eq!(got.len(), want.len());
    for (qi, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "query {qi}");
        for (pos, (n, &(wid, wd))) in g.iter().zip(w).enumerate() {
            let tol = 1e-6 * wd.max(1.0);
            assert!(
                (n.distance as f64 - wd).abs() <= 10.0 * tol,
                "query {qi} pos {pos}: {} vs {wd}",
                n.distance
            );
            if n.id != wid {
                let theirs = w.iter().find(|p| p.0 == n.id).map(|p| p.1);
                assert!(
                    theirs.is_some_and(|d| (d - wd).abs() <= tol) || pos + 1 == w.len(),
                    "query {qi} pos {pos}: got row {} where the reference has {wid} ({wd})",
                    n.id
                );
            }
        }
        let mut ids: Vec<u32> = g.iter().map(|n| n.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), g.len(), "query {qi}: repeated rows");
    }
}

/// Exact ties (identical vectors) must break by id: the ids must match exactly.
fn assert_same_ids(got: &[Vec<Neighbor>], want: &[Vec<(u32, f64)>]) {
    for (qi, (g, w)) in got.iter().zip(want).enumerate() {
        let gids: Vec<u32> = g.iter().map(|n| n.id).collect();
        let wids: Vec<u32> = w.iter().map(|p| p.0).collect();
        assert_eq!(gids, wids, "query {qi}");
    }
}

fn both_paths(
    index: &ExactIndex,
    view: VectorView<'_>,
    queries: &Matrix,
    params: &SearchParams<'_>,
) -> (Vec<Vec<Neighbor>>, Vec<Vec<Neighbor>>) {
    let batched = index.search_batch(view, queries, params).unwrap();
    let single: Vec<Vec<Neighbor>> = queries
        .iter_rows()
        .map(|q| index.search(view, q, params).unwrap())
        .collect();
    // Both paths rank by the same f32 kernel, so they must agree exactly, ties included.
    assert_eq!(batched, single, "GEMM path and direct scan disagree");
    (batched, single)
}

#[test]
fn matches_the_reference_on_random_data() {
    for (n, dim) in [(3000, 32), (2500, 384), (1100, 7)] {
        let base = synth::uniform(n, dim, n as u64);
        let queries = synth::uniform(40, dim, 99);
        let view = VectorView::f32(&base.data, dim);
        let index = ExactIndex::build(view);
        let want = naive(view, &queries, 10, |_| true);
        let (batched, single) = both_paths(&index, view, &queries, &SearchParams::k(10));
        assert_same(&batched, &want);
        assert_same(&single, &want);
    }
}

#[test]
fn k_above_n_returns_every_row_in_order() {
    let base = synth::uniform(37, 16, 1);
    let queries = synth::uniform(9, 16, 2);
    let view = VectorView::f32(&base.data, 16);
    let index = ExactIndex::build(view);
    let (batched, single) = both_paths(&index, view, &queries, &SearchParams::k(100));
    let want = naive(view, &queries, 100, |_| true);
    assert_eq!(want[0].len(), 37);
    assert_same(&batched, &want);
    assert_same(&single, &want);
}

#[test]
fn duplicate_vectors_tie_and_break_by_id() {
    // 60 copies each of 40 distinct vectors, interleaved: the top-k are all ties.
    let distinct = synth::uniform(40, 24, 5);
    let mut data = Vec::new();
    for _ in 0..60 {
        data.extend_from_slice(&distinct.data);
    }
    let base = Matrix::new(2400, 24, data);
    let mut qdata = distinct.data[..8 * 24].to_vec();
    qdata.extend(synth::uniform(8, 24, 6).data);
    let queries = Matrix::new(16, 24, qdata);
    let view = VectorView::f32(&base.data, 24);
    let index = ExactIndex::build(view);
    let want = naive(view, &queries, 25, |_| true);
    let (batched, single) = both_paths(&index, view, &queries, &SearchParams::k(25));
    assert_same_ids(&batched, &want);
    assert_same_ids(&single, &want);
    assert!(batched[0].iter().all(|n| n.distance == 0.0));
    assert_eq!(batched[0][1].id, 40);
}

#[test]
fn f16_pools_match_the_reference_on_their_rounded_values() {
    let base = synth::uniform(2000, 64, 11);
    let halves = to_f16(&base.data);
    let view = VectorView::F16 {
        data: &halves,
        dim: 64,
    };
    let queries = synth::uniform(20, 64, 12);
    let index = ExactIndex::build(view);
    let want = naive(view, &queries, 15, |_| true);
    let (batched, single) = both_paths(&index, view, &queries, &SearchParams::k(15));
    assert_same(&batched, &want);
    assert_same(&single, &want);
}

#[test]
fn filters_return_only_allowed_rows() {
    let base = synth::uniform(5000, 32, 21);
    let queries = synth::uniform(12, 32, 22);
    let view = VectorView::f32(&base.data, 32);
    let index = ExactIndex::build(view);
    for modulus in [3u32, 97] {
        let filter = RowFilter::from_rows((0..5000).filter(|r| r % modulus == 1), 5000);
        let params = SearchParams {
            k: 10,
            ef: None,
            filter: Some(&filter),
        };
        let want = naive(view, &queries, 10, |r| r % modulus == 1);
        let (batched, single) = both_paths(&index, view, &queries, &params);
        assert_same(&batched, &want);
        assert_same(&single, &want);
    }
}

#[test]
fn clustered_data_at_scale_matches_through_gemm() {
    let spec = synth::ClusterSpec {
        dim: 96,
        clusters: 20,
        seed: 3,
    };
    let base = spec.sample(20_000, 0);
    let queries = spec.sample(300, 1);
    let view = VectorView::f32(&base.data, 96);
    let index = ExactIndex::build(view);
    let got = index
        .search_batch(view, &queries, &SearchParams::k(50))
        .unwrap();
    assert_same(&got, &naive(view, &queries, 50, |_| true));
}

#[test]
fn bad_queries_are_refused() {
    let base = synth::uniform(10, 4, 1);
    let view = VectorView::f32(&base.data, 4);
    let index = ExactIndex::build(view);
    let q = [0.0f32; 4];
    assert!(matches!(
        index.search(view, &q, &SearchParams::k(0)),
        Err(IndexError::InvalidK { .. })
    ));
    let e = index
        .search(view, &q, &SearchParams::k(MAX_K + 1))
        .unwrap_err();
    assert!(e.to_string().contains("between 1 and"), "{e}");
    assert!(matches!(
        index.search(view, &[0.0; 3], &SearchParams::k(1)),
        Err(IndexError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        index.search(view, &[0.0, f32::NAN, 0.0, 0.0], &SearchParams::k(1)),
        Err(IndexError::NonFiniteQuery { col: 1, .. })
    ));
    let mut qs = synth::uniform(6, 4, 2);
    qs.data[13] = f32::INFINITY;
    assert!(matches!(
        index.search_batch(view, &qs, &SearchParams::k(1)),
        Err(IndexError::NonFiniteQuery { query: 3, col: 1 })
    ));
}
