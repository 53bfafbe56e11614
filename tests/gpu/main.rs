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

/// One body for every device and plan: `rel` is the distance tolerance per element type
/// (the GEMM plan reads half-precision queries, so its f16/bf16 selection is looser).
fn body(device: &str, search: Search<'_>, rel: fn(Elem) -> f32) {
    // A dimension that defeats the 16-byte loads (37) and one that uses them (64); row counts
    // that divide neither the kernels' rounds nor the test's segments.
    for (rows, dim, nq) in [(5003, 37, 7), (4099, 64, 5)] {
        let base = synth::uniform(rows, dim, 1);
        let queries = synth::uniform(nq, dim, 2);
        for elem in [Elem::F32, Elem::F16, Elem::BF16] {
            let rel = rel(elem);
            for k in [1, 10, 100, 1024, 3000] {
                let got = search(&base, elem, &queries, k, None);
                let want = cpu(&base, elem, &queries, k, None);
                agree(
                    &got,
                    &want,
                    rel,
                    &format!("{device} {elem:?} d={dim} k={k}"),
                );
            }
            let filter = RowFilter::from_rows((0..rows as u32).filter(|r| r % 3 == 0), rows);
            let got = search(&base, elem, &queries, 50, Some(&filter));
            assert!(
                got.iter().flatten().all(|n| n.id % 3 == 0),
                "{device}: the filter holds"
            );
            agree(
                &got,
                &cpu(&base, elem, &queries, 50, Some(&filter)),
                rel,
                &format!("{device} {elem:?} d={dim} filtered"),
            );
        }
    }
}

fn exact_tolerance(elem: Elem) -> f32 {
    match elem {
        Elem::F32 => 1e-4,
        Elem::F16 | Elem::BF16 => 1e-3,
    }
}

/// Rows and distances of a search or debug set, for comparing devices.
type Answer = Vec<Vec<(u32, f32)>>;

/// The service's exact search and exact debug set with the exact engine on `exact_device`
/// (and its exact re-ranking, checked here against distances computed directly); also the
/// engine it reports; `copy`: the GPU copy's type for the f32 pool (`--exact-device-copy`),
/// `plans`: how the copy picks its plans (`--exact-plans`).
fn service_answers(exact_device: &str, copy: &str, plans: &str) -> (Answer, String) {
    use dcd::config::ModelRuntimeArgs;
    use dcd::service::{
        AllowedRoots, CreatePool, DebugSetRequest, QueryInput, SearchRequest, Service,
    };
    use dcd::store::NewItem;
    let dir = tempfile::tempdir().unwrap();
    let runtime = ModelRuntimeArgs {
        device: Default::default(),
        exact_device: Some(exact_device.parse().unwrap()),
        exact_copy: copy.parse().unwrap(),
        exact_plans: plans.parse().unwrap(),
        precision: Default::default(),
        batch: 8,
        images: Default::default(),
        limits: Default::default(),
    };
    let service = Service::open(
        dir.path(),
        dcd::app::settings(AllowedRoots::Any, &runtime, None),
    )
    .unwrap();
    service
        .create_pool(&CreatePool {
            name: "p".into(),
            backbone: None,
            weights: None,
            pooling: None,
            dim: Some(32),
            dtype: dcd::types::Dtype::F32,
        })
        .unwrap();
    let base = synth::uniform(3000, 32, 11);
    let items: Vec<NewItem> = (0..3000)
        .map(|i| NewItem {
            key: format!("k{i}"),
            ..NewItem::default()
        })
        .collect();
    let query_rows = synth::uniform(4, 32, 12);
    let queries: Vec<QueryInput> = query_rows
        .iter_rows()
        .map(|r| QueryInput::Vector(r.to_vec()))
        .collect();
    let search = || {
        service.search(&SearchRequest {
            pool: "p".into(),
            queries: queries.clone(),
            k: 10,
            ef: None,
            exact: true,
            labels: vec![],
        })
    };
    // Two ingests with an exact search between: on a GPU the second one's rows are appended
    // to the copy the first search made.
    let pool = service.pool("p").unwrap();
    let first = Matrix::new(2000, 32, base.data[..2000 * 32].to_vec());
    pool.append(&first, &items[..2000], None).unwrap();
    search().unwrap();
    let rest = Matrix::new(1000, 32, base.data[2000 * 32..].to_vec());
    pool.append(&rest, &items[2000..], None).unwrap();
    let (hits, engine) = search().unwrap();
    let mut answer: Answer = hits
        .into_iter()
        .map(|h| h.unwrap().iter().map(|h| (h.row, h.distance)).collect())
        .collect();
    for (exact, exact_rerank) in [(true, false), (false, true)] {
        let set = service
            .build_debug_set(&DebugSetRequest {
                exact,
                exact_rerank,
                ef: Some(200),
                ..DebugSetRequest::new("p", queries.iter().cloned().map(Into::into).collect(), 10)
            })
            .unwrap();
        if exact_rerank {
            // The HNSW candidates differ between two builds of the graph (parallel inserts),
            // so the re-ranked set is checked against exact distances, not across devices.
            for item in &set.items {
                for f in &item.found_by {
                    let want: f32 = query_rows
                        .row(f.error)
                        .iter()
                        .zip(base.row(item.row as usize))
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    assert!(
                        (f.distance - want).abs() <= 1e-4 * want,
                        "{exact_device}: re-ranked distance {} vs {want}",
                        f.distance
                    );
                }
            }
            continue;
        }
        answer.push(set.items.iter().map(|i| (i.row, i.best_distance)).collect());
    }
    if plans == "measure" {
        drop(service);
        saved_plans_serve_the_next_start(dir.path(), &runtime, &queries);
    }
    (answer, engine)
}

/// A service started again on the same data loads the plan timings the first start saved
/// beside the pool instead of timing the plans again (the file is not rewritten), and
/// `remeasure` times them again (it is).
fn saved_plans_serve_the_next_start(
    dir: &std::path::Path,
    runtime: &dcd::config::ModelRuntimeArgs,
    queries: &[dcd::service::QueryInput],
) {
    use dcd::service::{AllowedRoots, SearchRequest, Service};
    let file = dir.join("pools/p").join(dcd::gpu::plan_cache::FILE_NAME);
    let text = std::fs::read_to_string(&file).expect("the first start saved its plan timings");
    assert!(
        text.contains("\"timings\"") && text.contains("\"rows\": 2000"),
        "{text}"
    );
    let modified = || std::fs::metadata(&file).unwrap().modified().unwrap();
    let saved_at = modified();
    for (plans, rewritten) in [("measure", false), ("remeasure", true)] {
        let runtime = dcd::config::ModelRuntimeArgs {
            exact_plans: plans.parse().unwrap(),
            ..runtime.clone()
        };
        let service =
            Service::open(dir, dcd::app::settings(AllowedRoots::Any, &runtime, None)).unwrap();
        service
            .search(&SearchRequest {
                pool: "p".into(),
                queries: queries.to_vec(),
                k: 10,
                ef: None,
                exact: true,
                labels: vec![],
            })
            .unwrap();
        assert_eq!(modified() != saved_at, rewritten, "--exact-plans {plans}");
    }
}

fn same_answers(got: &Answer, want: &Answer, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        let rows = |a: &[(u32, f32)]| a.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(rows(g), rows(w), "{what}: rows");
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a.1 - b.1).abs() <= 1e-4 * b.1.max(1e-6),
                "{what}: {a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn exact_search_agrees_on_every_device() {
    body("cpu", &cpu, exact_tolerance);
    cuda::run();
}

#[test]
fn the_service_exact_path_agrees_on_every_device() {
    let (cpu, engine) = service_answers("cpu", "stored", "builtin");
    assert_eq!(engine, "exact");
    assert!(cpu.iter().all(|a| !a.is_empty()));
    match cuda::service_device() {
        Some(device) => {
            let (gpu, engine) = service_answers(&device, "stored", "builtin");
            assert_eq!(engine, format!("exact-{device}"));
            same_answers(&gpu, &cpu, "service on cuda");
            // A half copy of the f32 pool: certified, so the CPU's answers to the last bit,
            // whichever plans the copy measured faster.
            let (gpu, engine) = service_answers(&device, "f16", "measure");
            assert_eq!(engine, format!("exact-{device}-f16-certified"));
            assert_eq!(gpu, cpu, "service on cuda, f16 copy");
        }
        None => println!("cuda: service check skipped (no CUDA build or device)"),
    }
}

/// A GPU out of memory (a driver allocation or cuBLAS) is the machine's state, not a bug: the
/// client gets RESOURCE_EXHAUSTED and a message with the ways out; other driver failures stay
/// INTERNAL. Needs the cuda build, not a device.
#[cfg(feature = "cuda")]
#[test]
fn a_gpu_out_of_memory_is_resource_exhausted_with_the_ways_out() {
    use cudarc::cublas::result::CublasError;
    use cudarc::cublas::sys::cublasStatus_t;
    use cudarc::driver::sys::cudaError_enum;
    use cudarc::driver::DriverError;
    use dcd::api::status::code_of;
    use dcd::gpu::GpuError;
    let out_of_memory = [
        GpuError::driver("allocating candidate lists")(DriverError(
            cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY,
        )),
        GpuError::cublas("running the cuBLAS cross-term GEMM")(CublasError(
            cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED,
        )),
    ];
    for e in out_of_memory {
        let e = dcd::error::Error::from(e);
        let msg = e.to_string();
        assert_eq!(code_of(&e), tonic::Code::ResourceExhausted, "{msg}");
        assert_eq!(e.exit_code(), 3, "{msg}");
        assert!(
            msg.contains("out of memory while")
                && msg.contains("nvidia-smi")
                && msg.contains("fewer queries")
                && msg.contains("--exact-device cpu"),
            "{msg}"
        );
    }
    let mut other = vec![GpuError::cublas("running the cuBLAS cross-term GEMM")(
        CublasError(cublasStatus_t::CUBLAS_STATUS_EXECUTION_FAILED),
    )];
    // A driver error's words come from the driver (cuGetErrorString): only where one is.
    if dcd::gpu::device(0).is_ok() {
        other.push(GpuError::driver("launching the scan kernel")(DriverError(
            cudaError_enum::CUDA_ERROR_LAUNCH_FAILED,
        )));
    }
    for e in other {
        let e = dcd::error::Error::from(e);
        let msg = e.to_string();
        assert_eq!(code_of(&e), tonic::Code::Internal, "{msg}");
        assert!(msg.starts_with("CUDA failed while"), "{msg}");
    }
}

/// A GPU older than the kernels' PTX is refused by name with FAILED_PRECONDITION: the rebuild
/// for its capability where dcd's kernels compile for it (8.0 and newer), else the CPU path.
#[cfg(feature = "cuda")]
#[test]
fn a_gpu_older_than_the_kernels_is_refused_with_the_way_out() {
    use dcd::api::status::code_of;
    use dcd::gpu::GpuError;
    let refusal = |device, built| {
        let e = dcd::error::Error::from(GpuError::ComputeCapability { device, built });
        assert_eq!(code_of(&e), tonic::Code::FailedPrecondition, "{e}");
        e.to_string()
    };
    let a100 = refusal(80, 90);
    assert!(
        a100.contains("compute capability 8.0")
            && a100.contains("built for 9.0")
            && a100.contains("CUDA_COMPUTE_CAP=80")
            && a100.contains("--device cpu"),
        "{a100}"
    );
    let t4 = refusal(75, 90);
    assert!(
        t4.contains("8.0 or newer") && !t4.contains("CUDA_COMPUTE_CAP=75"),
        "{t4}"
    );
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    pub fn run() {
        println!("cuda: skipped (built without --features cuda)");
    }

    pub fn service_device() -> Option<String> {
        None
    }
}

#[cfg(feature = "cuda")]
mod cuda;
