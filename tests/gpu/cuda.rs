//! The CUDA side of the GPU tests: every plan, appends, the stage clock, bad input, the
//! certified half copy, the memory pool and measured plan choices, against the CPU's answers.
//! Runs when a GPU is present; `run` prints one line and returns otherwise.

use super::*;
use dcd::gpu::{GpuDtype, GpuExact, GpuPlan};

/// The GEMM plan's tolerance: its f16/bf16 cross terms use queries rounded to the pool's
/// type, so a row at the k-th place may trade with one whose true distance is this close.
fn gemm_tolerance(elem: Elem) -> f32 {
    match elem {
        Elem::F32 => 1e-4,
        Elem::F16 => 5e-3,
        Elem::BF16 => 2e-2,
    }
}

pub fn run() {
    let device = match dcd::gpu::device(0) {
        Ok(d) => d,
        Err(e) => {
            println!("cuda: skipped ({e})");
            return;
        }
    };
    for plan in [GpuPlan::Fused, GpuPlan::Gemm, GpuPlan::Wide, GpuPlan::Mma] {
        let search =
            |base: &Matrix, elem: Elem, queries: &Matrix, k: usize, filter: Option<&RowFilter>| {
                let dtype = match elem {
                    Elem::F32 => GpuDtype::F32,
                    Elem::F16 => GpuDtype::F16,
                    Elem::BF16 => GpuDtype::BF16,
                };
                let view = VectorView::f32(&base.data, base.dim);
                // Three segments, to exercise the merge of per-segment lists, two of them
                // streamed from the host as for a pool larger than the device, and tiles
                // narrower than a segment, to carry the GEMM plan's lists across tiles.
                let mut index = GpuExact::with_limits(&device, view, dtype, 2000, 1).unwrap();
                assert_eq!((index.segments(), index.streamed_segments()), (3, 2));
                index.limit_tile_columns(700);
                let (got, used) = index.search_with(queries, k, filter, Some(plan)).unwrap();
                match plan {
                    // A segment too small for the sample (here: large k) goes to gemm, and the
                    // search says so; mma_plan checks that mma runs where it must.
                    GpuPlan::Mma => {
                        assert!(matches!(used, GpuPlan::Mma | GpuPlan::Gemm), "{used}")
                    }
                    _ => assert_eq!(used, plan),
                }
                got
            };
        let rel = match plan {
            GpuPlan::Fused => exact_tolerance,
            GpuPlan::Gemm | GpuPlan::Wide | GpuPlan::Mma => gemm_tolerance,
        };
        body(&format!("cuda {plan}"), &search, rel);
    }
    // Enough rows that a query gets more block lists than one merge step folds: the
    // merge runs as a tree (the small cases above fit one step).
    let big = synth::uniform(40_000, 16, 21);
    let few = synth::uniform(3, 16, 22);
    let index = GpuExact::new(&device, VectorView::f32(&big.data, 16), GpuDtype::F32).unwrap();
    for plan in [GpuPlan::Fused, GpuPlan::Gemm, GpuPlan::Wide] {
        let (got, _) = index.search_with(&few, 100, None, Some(plan)).unwrap();
        let want = cpu(&big, Elem::F32, &few, 100, None);
        agree(&got, &want, 1e-4, &format!("merge tree, {plan}"));
    }
    // k beyond what shared memory holds: the heuristic takes the wide plan, here with one
    // tile for the whole segment and with 7000-column tiles (the best k carried over six).
    let wide_k = index.max_one_pass_k() + 904;
    let want = cpu(&big, Elem::F32, &few, wide_k, None);
    for cols in [usize::MAX, 7000] {
        let mut index =
            GpuExact::new(&device, VectorView::f32(&big.data, 16), GpuDtype::F32).unwrap();
        index.limit_tile_columns(cols);
        let (got, plan) = index.search_with(&few, wide_k, None, None).unwrap();
        assert_eq!(plan, GpuPlan::Wide);
        agree(&got, &want, 1e-4, &format!("k = {wide_k}, tiles of {cols}"));
    }
    // The heuristic's own choice gives the same answers.
    let base = synth::uniform(3000, 64, 5);
    let many = synth::uniform(300, 64, 6);
    let index = GpuExact::new(&device, VectorView::f32(&base.data, 64), GpuDtype::F32).unwrap();
    assert_eq!(index.segments(), 1);
    for q in [&synth::uniform(1, 64, 7), &many] {
        let (got, plan) = index.search_with(q, 20, None, None).unwrap();
        assert_eq!(plan, index.plan_for(q.rows, 20));
        agree(&got, &cpu(&base, Elem::F32, q, 20, None), 1e-4, "auto plan");
    }
    mma_plan(&device);
    appends(&device);
    stage_clock(&device);
    bad_input(&device);
    certified(&device);
    pool_keep(&device);
    measured_plans(&device);
}

/// A plan choice measured on this card: each k's batches 1, 2, 4, ... timed for gemm and mma,
/// fused until it falls behind and never again after; a choice that says it was measured,
/// searches under it that take the plan it names and answer as the CPU does; an append keeps
/// it; a spent budget or bad queries leave the choice in force.
fn measured_plans(device: &candle_core::Device) {
    use std::time::Duration;
    let base = synth::uniform(20_000, 64, 71);
    let queries = synth::uniform(64, 64, 72);
    let view = VectorView::f32(&base.data[..19_000 * 64], 64);
    let mut index = GpuExact::new(device, view, GpuDtype::F16).unwrap();
    let builtin = index.plan_choice().clone();
    assert!(!builtin.is_measured());
    let spent = index
        .measure_plans(&queries, &[10], Duration::ZERO)
        .unwrap();
    assert!(spent.iter().all(|(_, t)| t.is_empty()), "{spent:?}");
    assert_eq!(index.plan_choice(), &builtin);
    let bad = synth::uniform(4, 65, 73);
    assert!(index.measure_plans(&bad, &[10], Duration::MAX).is_err());
    assert!(index.measure_plans(&queries, &[], Duration::MAX).is_err());
    assert_eq!(index.plan_choice(), &builtin);

    let timings = index
        .measure_plans(&queries, &[10, 1_000_000], Duration::from_secs(60))
        .unwrap();
    let top_k = index.max_one_pass_k().min(19_000);
    assert_eq!(
        timings.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![10, top_k]
    );
    for (k, times) in &timings {
        let batches: Vec<usize> = times.iter().map(|t| t.batch).collect();
        let fused: Vec<usize> = times
            .iter()
            .filter(|t| t.plan == GpuPlan::Fused)
            .map(|t| t.batch)
            .collect();
        for batch in [1, 2, 4, 8, 16, 32, 64] {
            for plan in [GpuPlan::Gemm, GpuPlan::Mma] {
                assert!(
                    times.iter().any(|t| t.batch == batch && t.plan == plan),
                    "k {k}: {plan} at batch {batch} not timed: {times:?}"
                );
            }
        }
        assert!(!batches.contains(&128), "only 64 queries were given");
        assert_eq!(fused, [1, 2, 4, 8, 16, 32, 64][..fused.len()], "k {k}");
        assert!(times.iter().all(|t| t.seconds > 0.0 && t.seconds < 10.0));
    }
    let choice = index.plan_choice().clone();
    assert!(choice.is_measured());
    let on = index.measured_on().unwrap();
    assert!(
        !on.card.is_empty() && on.compute_capability >= 80 && on.driver >= 13000,
        "{on:?}"
    );
    assert_eq!((on.copy.as_str(), on.dim), ("f16", 64));
    assert_eq!(index.measured_on().unwrap(), on, "the same card and build");
    println!("cuda: plans timed on {on:?}");
    let shown = choice.to_string();
    assert!(
        shown.starts_with("measured on 19000 rows; k 10: ")
            && shown.contains(&format!("; k {top_k}: ")),
        "{shown}"
    );
    println!("cuda: plans {shown}");
    for (rows, k) in [(1, 10), (3, 10), (64, 10), (64, 300), (2, top_k)] {
        let q = Matrix::new(rows, 64, queries.data[..rows * 64].to_vec());
        let picked = index.plan_for(rows, k);
        assert!(matches!(
            picked,
            GpuPlan::Fused | GpuPlan::Gemm | GpuPlan::Mma
        ));
        let (got, used) = index.search_with(&q, k, None, None).unwrap();
        assert!(
            used == picked || (picked == GpuPlan::Mma && used == GpuPlan::Gemm),
            "{picked} picked, {used} used"
        );
        let held = Matrix::new(19_000, 64, base.data[..19_000 * 64].to_vec());
        let want = cpu(&held, Elem::F16, &q, k, None);
        agree(
            &got,
            &want,
            gemm_tolerance(Elem::F16),
            &format!("measured {picked}"),
        );
    }
    index.append(VectorView::f32(&base.data, 64)).unwrap();
    assert_eq!(index.plan_choice(), &choice);
}

/// An f32 pool answered through its f16/bf16 copy: the CPU's exact answer on the f32 rows
/// (ids equal), with the fused plan (3 queries) and the gemm plan (50), a filter, a
/// streamed segment; rows closer than the copy's rounding get no certificate at any width
/// and go to the CPU.
fn certified(device: &candle_core::Device) {
    use dcd::gpu::certified::HalfBounds;
    let ids = |l: &[Vec<Neighbor>]| -> Vec<Vec<u32>> {
        l.iter().map(|l| l.iter().map(|n| n.id).collect()).collect()
    };
    let base = synth::uniform(5000, 32, 71);
    let view = VectorView::f32(&base.data, 32);
    let filter = RowFilter::from_rows((0..5000u32).filter(|r| r % 3 != 0), 5000);
    for dtype in [GpuDtype::F16, GpuDtype::BF16] {
        let (index, bounds) =
            GpuExact::half_copy_with_limits(device, view, dtype, 2000, 2).unwrap();
        // Measured while converting, segment by segment: the bounds of the whole pool.
        assert_eq!(bounds, HalfBounds::of(dtype, view).unwrap());
        for (nq, k, f) in [(3, 10, None), (50, 100, None), (3, 10, Some(&filter))] {
            let queries = synth::uniform(nq, 32, 72);
            let (got, how) = index
                .search_certified(&queries, k, f, view, &bounds)
                .unwrap();
            let want = cpu(&base, Elem::F32, &queries, k, f);
            assert_eq!(ids(&got), ids(&want), "{dtype:?} {nq} queries: {how:?}");
            agree(&got, &want, 1e-6, &format!("certified {dtype:?}"));
            assert_eq!(how.first_pass + how.later_passes + how.on_cpu, nq);
        }
    }
    // Rows a ten-thousandth apart around one point: the copy cannot order them.
    let (n, dim) = (20_000, 8);
    let jitter = synth::uniform(n, dim, 73);
    let data: Vec<f32> = jitter.data.iter().map(|j| 1.0 + 1e-4 * j).collect();
    let near = Matrix::new(n, dim, data);
    let view = VectorView::f32(&near.data, dim);
    let (index, bounds) = GpuExact::new_half_copy(device, view, GpuDtype::F16).unwrap();
    let queries = Matrix::new(2, dim, vec![1.0; 2 * dim]);
    if index.max_k() < n {
        let (got, how) = index
            .search_certified(&queries, 5, None, view, &bounds)
            .unwrap();
        assert_eq!(how.on_cpu, 2, "{how:?}");
        assert_eq!(ids(&got), ids(&cpu(&near, Elem::F32, &queries, 5, None)));
    }
    // Refused: a value f16 cannot hold (named, in the third segment), a copy that would not
    // be half, rows that are not f32.
    let mut wild = base.clone();
    wild.data[4500 * 32 + 7] = 1e6;
    let wild_view = VectorView::f32(&wild.data, 32);
    let err = GpuExact::half_copy_with_limits(device, wild_view, GpuDtype::F16, 2000, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("row 4500") && err.contains("stored"), "{err}");
    assert!(GpuExact::new_half_copy(device, wild_view, GpuDtype::BF16).is_ok());
    let err = GpuExact::new_half_copy(device, view, GpuDtype::F32)
        .err()
        .unwrap();
    assert!(
        matches!(err, dcd::gpu::GpuError::NotHalfCopy { .. }),
        "{err}"
    );
    let halves: Vec<half::f16> = near.data.iter().map(|&v| half::f16::from_f32(v)).collect();
    let stored = VectorView::F16 { data: &halves, dim };
    let err = GpuExact::new_half_copy(device, stored, GpuDtype::F16)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not f16 rows in f16"), "{err}");
}

/// `--gpu-pool-keep`: memory a buffer frees stays in the pool across synchronisations
/// (held, so the driver no longer counts it free), building a copy of a pool hands it back
/// before sizing the copy by free memory, and searches give the same answers. Last of the
/// run: the setting is the context's, and stays.
fn pool_keep(device: &candle_core::Device) {
    let free = || match device {
        candle_core::Device::Cuda(d) => d.cuda_stream().context().mem_get_info().unwrap().0,
        _ => unreachable!("a CUDA device"),
    };
    let base = synth::uniform(3000, 48, 61);
    let queries = synth::uniform(5, 48, 62);
    let view = VectorView::f32(&base.data, 48);
    let index = GpuExact::new(device, view, GpuDtype::F16).unwrap();
    let before = index.search(&queries, 10, None).unwrap();
    assert!(dcd::gpu::keep_pool_memory(device).unwrap());
    const GIB: usize = 1 << 30;
    let baseline = free();
    let held = candle_core::Tensor::zeros((GIB / 4,), candle_core::DType::F32, device).unwrap();
    drop(held);
    device.synchronize().unwrap();
    let after_free = free();
    assert!(
        after_free + GIB / 2 < baseline,
        "the pool kept none of a freed GiB: {baseline} bytes free before, {after_free} after"
    );
    let index = GpuExact::new(device, view, GpuDtype::F16).unwrap();
    let after_build = free();
    assert!(
        after_build + GIB / 4 > baseline,
        "the copy's build did not hand the pool's memory back: {baseline} bytes free \
         before, {after_build} after"
    );
    for _ in 0..3 {
        assert_eq!(index.search(&queries, 10, None).unwrap(), before);
    }
}

/// `--gpu-stages`' clock: each plan's stages in the order they ran (a streamed segment's
/// rows staged first), device and host stage times that fit inside the call, the same
/// answers as without the clock, and nothing recorded while it is off.
fn stage_clock(device: &candle_core::Device) {
    let base = synth::uniform(5000, 32, 51);
    let queries = synth::uniform(4, 32, 52);
    let view = VectorView::f32(&base.data, 32);
    // Segments of 2000, 2000 and 1000 rows, the last streamed from the host.
    let mut index = GpuExact::with_limits(device, view, GpuDtype::F16, 2000, 2).unwrap();
    assert_eq!((index.segments(), index.streamed_segments()), (3, 1));
    for plan in [GpuPlan::Fused, GpuPlan::Gemm, GpuPlan::Wide] {
        let (plain, _) = index.search_with(&queries, 10, None, Some(plan)).unwrap();
        assert!(index.stage_times().unwrap().is_empty(), "{plan}: clock off");
        index.time_stages(true);
        let started = std::time::Instant::now();
        let (timed, _) = index.search_with(&queries, 10, None, Some(plan)).unwrap();
        let wall_ms = started.elapsed().as_secs_f64() * 1e3;
        let stages = index.stage_times().unwrap();
        index.time_stages(false);
        let ids = |lists: &[Vec<Neighbor>]| -> Vec<Vec<u32>> {
            lists
                .iter()
                .map(|l| l.iter().map(|n| n.id).collect())
                .collect()
        };
        assert_eq!(
            ids(&timed),
            ids(&plain),
            "{plan}: answers with the clock on"
        );
        let per_segment: &[&str] = match plan {
            GpuPlan::Fused => &["scan", "merge"],
            GpuPlan::Gemm => &["cross terms", "select", "merge", "refine"],
            _ => &["cross terms", "wide tile", "merge", "refine"],
        };
        let mut want = vec!["queries up"];
        for streamed in [false, false, true] {
            if streamed {
                want.push("rows staged");
            }
            want.extend_from_slice(per_segment);
            want.extend_from_slice(&["download", "host merge"]);
        }
        let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
        assert_eq!(names, want, "{plan}");
        let gpu_ms: f64 = stages.iter().map(|s| s.gpu_ms).sum();
        let host_ms: f64 = stages.iter().map(|s| s.host_ms).sum();
        assert!(
            stages.iter().all(|s| s.gpu_ms >= 0.0 && s.host_ms >= 0.0),
            "{plan}: {stages:?}"
        );
        // Events resolve to about half a microsecond.
        assert!(
            gpu_ms <= wall_ms + 0.01 && host_ms <= wall_ms,
            "{plan}: stages {gpu_ms} ms on the device, {host_ms} on the host, call {wall_ms}"
        );
    }
}

/// The mma plan where it must run (one segment large enough for a sample): every type (f32
/// as 3xTF32), a dimension that fills whole chunks (64), one that ends in a partial chunk
/// (40) and one without 16-byte rows (37), two query tiles (the second partial), a filter, a
/// sample spread over several GEMM tiles; then ties (every row the same), which fill the
/// candidate lists: within their room the merge keeps the lowest rows, past it the
/// segment goes to the gemm plan and the search says so.
fn mma_plan(device: &candle_core::Device) {
    let search = |index: &GpuExact, queries: &Matrix, k, filter: Option<&RowFilter>| {
        index
            .search_with(queries, k, filter, Some(GpuPlan::Mma))
            .unwrap()
    };
    for dim in [64, 40, 37] {
        let base = synth::uniform(20_000, dim, 41);
        let queries = synth::uniform(130, dim, 42);
        let filter = RowFilter::from_rows((0..20_000u32).filter(|r| r % 3 == 0), 20_000);
        for (elem, dtype) in [
            (Elem::F16, GpuDtype::F16),
            (Elem::BF16, GpuDtype::BF16),
            (Elem::F32, GpuDtype::F32),
        ] {
            let view = VectorView::f32(&base.data, dim);
            let mut index = GpuExact::new(device, view, dtype).unwrap();
            for (k, f) in [(1, None), (10, None), (100, None), (50, Some(&filter))] {
                let (got, used) = search(&index, &queries, k, f);
                assert_eq!(used, GpuPlan::Mma, "{elem:?} d={dim} k={k}");
                let want = cpu(&base, elem, &queries, k, f);
                let what = format!("mma {elem:?} d={dim} k={k} filter={}", f.is_some());
                agree(&got, &want, gemm_tolerance(elem), &what);
                if f.is_some() {
                    assert!(got.iter().flatten().all(|n| n.id % 3 == 0), "{what}");
                }
            }
            // A larger sample (1250 rows) in GEMM tiles of 300.
            index.limit_mma_candidates(200);
            index.limit_tile_columns(300);
            let (got, used) = search(&index, &queries, 100, None);
            assert_eq!(used, GpuPlan::Mma, "{elem:?} d={dim} tiled sample");
            let want = cpu(&base, elem, &queries, 100, None);
            agree(&got, &want, gemm_tolerance(elem), "mma, tiled sample");
        }
    }
    let dim = 32;
    let row = synth::uniform(1, dim, 43);
    let same = Matrix::new(
        20_000,
        dim,
        row.data
            .iter()
            .copied()
            .cycle()
            .take(20_000 * dim)
            .collect(),
    );
    let queries = synth::uniform(3, dim, 44);
    let want = cpu(&same, Elem::F16, &queries, 100, None);
    let view = VectorView::f32(&same.data, dim);
    let mut index = GpuExact::new(device, view, GpuDtype::F16).unwrap();
    let (got, used) = search(&index, &queries, 100, None);
    assert_eq!(used, GpuPlan::Mma, "20000 ties fit the default room");
    agree(&got, &want, gemm_tolerance(Elem::F16), "mma, ties");
    assert!(got.iter().all(|l| l.iter().map(|n| n.id).eq(0..100)));
    index.limit_mma_candidates(200);
    let (got, used) = search(&index, &queries, 100, None);
    assert_eq!(used, GpuPlan::Gemm, "20000 ties overflow a room of 6400");
    agree(
        &got,
        &want,
        gemm_tolerance(Elem::F16),
        "mma overflowed, gemm",
    );
    assert!(got.iter().all(|l| l.iter().map(|n| n.id).eq(0..100)));
}

/// The nearest 50 of `queries` in `index` agree with the CPU's over the pool's first
/// `rows` rows, on both one-pass plans.
fn check_rows(index: &GpuExact, all: &Matrix, rows: usize, elem: Elem, queries: &Matrix) {
    let pool = Matrix::new(rows, all.dim, all.data[..rows * all.dim].to_vec());
    let want = cpu(&pool, elem, queries, 50, None);
    for (plan, rel) in [
        (GpuPlan::Fused, exact_tolerance(elem)),
        (GpuPlan::Gemm, gemm_tolerance(elem)),
    ] {
        let (got, _) = index.search_with(queries, 50, None, Some(plan)).unwrap();
        agree(
            &got,
            &want,
            rel,
            &format!("{elem:?} {plan} after growing to {rows}"),
        );
    }
}

/// A copy that grows with its pool: rows go into spare room, a reallocated last segment,
/// new device segments, then (no segment may be added on the device) a rebuild that
/// streams the rest from the host, and host segments after that; the answers equal the
/// CPU's at every step.
fn appends(device: &candle_core::Device) {
    use dcd::gpu::Growth;
    let dim = 24;
    let all = synth::uniform(10_500, dim, 31);
    let queries = synth::uniform(6, dim, 32);
    let prefix = |n: usize| VectorView::f32(&all.data[..n * dim], dim);
    let appended = |rows, reallocated| Growth::Appended { rows, reallocated };
    for elem in [Elem::F32, Elem::F16] {
        let dtype = match elem {
            Elem::F32 => GpuDtype::F32,
            _ => GpuDtype::F16,
        };
        // Segments of at most 3000 rows, at most 3 of them on the device.
        let mut index = GpuExact::with_limits(device, prefix(1000), dtype, 3000, 3).unwrap();
        for (rows, growth, segments, streamed) in [
            (1001, appended(1, 1), 1, 0),
            (1038, appended(37, 0), 1, 0),
            (1500, appended(462, 0), 1, 0),
            (4000, appended(2500, 1), 2, 0),
            (9000, appended(5000, 0), 3, 0),
            (10_000, Growth::Rebuilt, 4, 1),
            (10_500, appended(500, 0), 4, 1),
        ] {
            assert_eq!(index.append(prefix(rows)).unwrap(), growth, "to {rows}");
            assert_eq!(index.len(), rows);
            assert_eq!(
                (index.segments(), index.streamed_segments()),
                (segments, streamed),
                "segments at {rows}"
            );
            check_rows(&index, &all, rows, elem, &queries);
        }
        // A pool that streams from the start grows on the host.
        let mut index = GpuExact::with_limits(device, prefix(5003), dtype, 2000, 1).unwrap();
        assert_eq!(index.append(prefix(7000)).unwrap(), appended(1997, 0));
        assert_eq!((index.segments(), index.streamed_segments()), (4, 3));
        check_rows(&index, &all, 7000, elem, &queries);
        // Nothing new, a pool that shrank, another dimension.
        assert_eq!(index.append(prefix(7000)).unwrap(), appended(0, 0));
        assert!(
            index.append(prefix(6999)).is_err(),
            "fewer rows than the copy"
        );
        let other = synth::uniform(8000, dim + 1, 33);
        let err = index
            .append(VectorView::f32(&other.data, dim + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dim.to_string()), "{err}");
        check_rows(&index, &all, 7000, elem, &queries);
    }
}

/// `cuda:0` when a device is present.
pub fn service_device() -> Option<String> {
    dcd::gpu::device(0).ok().map(|_| "cuda:0".to_string())
}

fn bad_input(device: &candle_core::Device) {
    let base = synth::uniform(100, 8, 3);
    let index = GpuExact::new(device, VectorView::f32(&base.data, 8), GpuDtype::F32).unwrap();
    let q = synth::uniform(1, 8, 4);
    let msg = |r: Result<Vec<Vec<Neighbor>>, dcd::gpu::GpuError>| r.unwrap_err().to_string();
    assert!(msg(index.search(&q, 0, None)).contains("k"), "k = 0");
    let too_many = index.max_k() + 1;
    assert!(
        msg(index.search(&q, too_many, None)).contains("above"),
        "k above the cap"
    );
    // A forced one-pass plan refuses the k only the wide plan takes.
    let wide_only = index.max_one_pass_k() + 1;
    for plan in [GpuPlan::Fused, GpuPlan::Gemm, GpuPlan::Mma] {
        let r = index.search_with(&q, wide_only, None, Some(plan));
        assert!(r.unwrap_err().to_string().contains("above"), "{plan}");
    }
    assert!(
        msg(index.search(&synth::uniform(1, 7, 4), 5, None)).contains("8"),
        "dimension mismatch"
    );
    let mut nan = q.clone();
    nan.data[3] = f32::NAN;
    assert!(index.search(&nan, 5, None).is_err(), "NaN query");
    // A device other than the one present.
    let err = dcd::gpu::device(64).unwrap_err().to_string();
    assert!(err.contains("64") && err.contains("--device"), "{err}");
}
