//! The certificate against a host model of the copy's search: rows rounded as the copy holds
//! them, distances summed in another order than the CPU's (direct) or formed as the tensor-core
//! plans form them (expanded), per-segment lists merged as the host merges them.

use super::*;
use crate::synth;
use crate::types::Matrix;

fn rounded(bounds: &HalfBounds, v: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    bounds.round(v, &mut out);
    out
}

/// The copy's direct distance: f32, summed back to front (not the CPU kernel's order).
fn direct(q: &[f32], x: &[f32]) -> f32 {
    q.iter().zip(x).rev().map(|(a, b)| (a - b) * (a - b)).sum()
}

/// The tensor-core plans' score: |q~|^2 + |x~|^2 - 2 q~.x~ in f32.
fn expanded(q: &[f32], x: &[f32]) -> f32 {
    let dot: f32 = q.iter().zip(x).map(|(a, b)| a * b).sum();
    let (nq, nx): (f32, f32) = (q.iter().map(|a| a * a).sum(), x.iter().map(|b| b * b).sum());
    (nq + nx - 2.0 * dot).max(0.0)
}

/// The CPU exact path's answer, by its own definition.
fn reference(pool: &Matrix, q: &[f32], k: usize) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    for r in 0..pool.rows {
        top.push(l2_squared(q, pool.row(r)), r as u32);
    }
    top.into_neighbors()
}

/// The copy's search: per segment the best `kp` by the selection's score, listed with their
/// direct distances to the copy's rows; the lists merged by those distances.
fn copy_search(
    bounds: &HalfBounds,
    pool: &Matrix,
    q: &[f32],
    kp: usize,
    segments: usize,
    selection: Selection,
) -> Vec<Neighbor> {
    let copy: Vec<Vec<f32>> = (0..pool.rows)
        .map(|r| rounded(bounds, pool.row(r)))
        .collect();
    let q_copy = rounded(bounds, q);
    let per = pool.rows.div_ceil(segments);
    let mut merged = TopK::new(kp);
    for first in (0..pool.rows).step_by(per) {
        let mut best = TopK::new(kp);
        for (r, x) in copy.iter().enumerate().skip(first).take(per) {
            let score = match selection {
                Selection::Direct => direct(q, x),
                Selection::Expanded => expanded(&q_copy, x),
            };
            best.push(score, r as u32);
        }
        for n in best.into_neighbors() {
            merged.push(direct(q, &copy[n.id as usize]), n.id);
        }
    }
    merged.into_neighbors()
}

/// Rows in tight clusters around a few centres at mixed scales: neighbours a rounding apart.
fn close_rows(n: usize, dim: usize, seed: u64) -> Matrix {
    let noise = synth::uniform(n, dim, seed);
    let centres = synth::uniform(4, dim, seed + 1);
    let mut m = noise.clone();
    for r in 0..n {
        let (c, scale) = (r % 4, [0.01f32, 1.0, 37.0, 900.0][r % 4]);
        for (i, v) in m.data[r * dim..(r + 1) * dim].iter_mut().enumerate() {
            *v = scale * (centres.row(c)[i] + 1e-3 * noise.row(r)[i]);
        }
    }
    m
}

#[test]
fn the_floor_is_under_every_row_that_scored_no_better() {
    for dtype in [GpuDtype::F16, GpuDtype::BF16] {
        for selection in [Selection::Direct, Selection::Expanded] {
            let pool = close_rows(240, 24, 3);
            let bounds = HalfBounds::of(dtype, VectorView::f32(&pool.data, 24)).unwrap();
            let copy: Vec<Vec<f32>> = (0..pool.rows)
                .map(|r| rounded(&bounds, pool.row(r)))
                .collect();
            for qi in 0..8 {
                // Queries at each scale, among the rows.
                let q: Vec<f32> = pool.row(qi * 31).iter().map(|v| v * 1.0001).collect();
                let q_copy = rounded(&bounds, &q);
                let score = |r: usize| match selection {
                    Selection::Direct => direct(&q, &copy[r]),
                    Selection::Expanded => expanded(&q_copy, &copy[r]),
                };
                for (worst, worst_copy) in copy.iter().enumerate() {
                    let floor = bounds.floor(&q, selection, direct(&q, worst_copy));
                    for other in (0..pool.rows).filter(|&o| score(o) >= score(worst)) {
                        let cpu = l2_squared(&q, pool.row(other)) as f64;
                        assert!(
                            floor <= cpu,
                            "{dtype:?} {selection:?}: floor {floor} above row {other}'s {cpu}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn certified_answers_are_the_cpus() {
    let dim = 48;
    let spec = synth::ClusterSpec {
        dim,
        clusters: 16,
        seed: 11,
    };
    let (pool, queries) = (spec.sample(3000, 0), spec.sample(20, 1));
    let view = VectorView::f32(&pool.data, dim);
    for dtype in [GpuDtype::F16, GpuDtype::BF16] {
        let bounds = HalfBounds::of(dtype, view).unwrap();
        for selection in [Selection::Direct, Selection::Expanded] {
            let (k, kp) = (10, 40);
            let mut certified = 0;
            for qi in 0..queries.rows {
                let q = queries.row(qi);
                let list = copy_search(&bounds, &pool, q, kp, 3, selection);
                let floor = bounds.floor(q, selection, list.last().unwrap().distance);
                if let Some(got) = certify(&view, q, &list, k, false, floor) {
                    assert_eq!(got, reference(&pool, q, k), "{dtype:?} {selection:?} {qi}");
                    certified += 1;
                }
            }
            // A floor that certified nothing would make the copy useless, not wrong.
            assert!(
                certified >= 15,
                "{dtype:?} {selection:?}: {certified} of 20"
            );
        }
    }
}

#[test]
fn a_copy_that_picked_the_wrong_row_is_not_certified() {
    // Both rows round to 1.0 in f16; the tie goes to row 0, but row 1 is nearer.
    let pool = Matrix::new(2, 1, vec![1.0002f32, 1.0001]);
    let view = VectorView::f32(&pool.data, 1);
    let bounds = HalfBounds::of(GpuDtype::F16, view).unwrap();
    let q = [0.0f32];
    let list = copy_search(&bounds, &pool, &q, 1, 1, Selection::Direct);
    assert_eq!(list[0].id, 0);
    let floor = bounds.floor(&q, Selection::Direct, list[0].distance);
    assert_eq!(certify(&view, &q, &list, 1, false, floor), None);
    // With both rows listed the answer is complete, and right.
    let list = copy_search(&bounds, &pool, &q, 2, 1, Selection::Direct);
    let got = certify(&view, &q, &list, 1, true, 0.0).unwrap();
    assert_eq!(got, reference(&pool, &q, 1));
}

#[test]
fn rows_beyond_the_half_range_are_refused_and_nothing_is_taken() {
    let pool = Matrix::new(3, 2, vec![1.0, 2.0, 3.0, 70_000.0, 5.0, 6.0]);
    let view = VectorView::f32(&pool.data, 2);
    let mut bounds = HalfBounds::of(GpuDtype::F16, VectorView::f32(&pool.data[..2], 2)).unwrap();
    let err = bounds.extend(view).unwrap_err();
    assert_eq!((err.row, err.value, err.dtype), (1, 70_000.0, "f16"));
    assert!(err.to_string().contains("f32"), "{err}");
    assert_eq!(bounds.len(), 1);
    // bfloat16 has f32's range.
    assert_eq!(HalfBounds::of(GpuDtype::BF16, view).unwrap().len(), 3);
}

#[test]
fn bounds_grow_with_the_pool_as_if_made_at_once() {
    let mut pool = synth::uniform(5000, 4, 31);
    for v in &mut pool.data[..] {
        *v *= 300.0;
    }
    let view = VectorView::f32(&pool.data, 4);
    let whole = HalfBounds::of(GpuDtype::F16, view).unwrap();
    let mut grown =
        HalfBounds::of(GpuDtype::F16, VectorView::f32(&pool.data[..4 * 2100], 4)).unwrap();
    grown.extend(view).unwrap();
    assert_eq!(
        (grown.len(), grown.max_error, grown.max_norm),
        (whole.len(), whole.max_error, whole.max_norm)
    );
    assert!(whole.max_error > 0.0 && whole.max_norm > 0.0);
    // The first row out of range is named, across chunks.
    pool.data[4 * 4600] = -1e6;
    pool.data[4 * 4500 + 3] = 1e5;
    let err = HalfBounds::of(GpuDtype::F16, VectorView::f32(&pool.data, 4)).unwrap_err();
    assert_eq!((err.row, err.value), (4500, 1e5));
}
