//! The `dcd` binary end to end: pools, imports, searches and benchmarks as a user runs them,
//! and the errors a user sees for bad input (exit code 2, a sentence that says what to do).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use dcd::formats::{write_fvecs, write_npy};
use dcd::synth::{self, ClusterSpec};
use serde_json::Value;

fn dcd(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcd"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("DCD_LOG", "warn")
        .output()
        .expect("run dcd")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = dcd(data, args);
    assert!(
        out.status.success(),
        "dcd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail as the user's mistake; returns its stderr.
fn user_error(data: &Path, args: &[&str]) -> String {
    let out = dcd(data, args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "dcd {args:?}: {err}");
    err
}

/// True when this is a cuda build and GPU 0 opens.
fn gpu_usable() -> bool {
    #[cfg(feature = "cuda")]
    return dcd::gpu::device(0).is_ok();
    #[cfg(not(feature = "cuda"))]
    false
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pool_lifecycle_import_and_search() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = ClusterSpec {
        dim: 32,
        clusters: 10,
        seed: 4,
    };
    let vectors = spec.sample(3000, 0);
    let npy = tmp.path().join("feats.npy");
    write_npy(&npy, &vectors).unwrap();
    let keys: String = (0..3000)
        .map(|i| format!("file:///pool/img_{i}.jpg\n"))
        .collect();
    let labels: String = (0..3000)
        .map(|i| format!("{}\n", ["cat", "dog", "fox"][i % 3]))
        .collect();
    std::fs::write(tmp.path().join("keys.txt"), keys).unwrap();
    std::fs::write(tmp.path().join("labels.txt"), labels).unwrap();

    ok(&data, &["pool", "create", "pets", "--dim", "32"]);
    let out = ok(
        &data,
        &[
            "vectors",
            "import",
            "--pool",
            "pets",
            "--file",
            npy.to_str().unwrap(),
            "--keys",
            tmp.path().join("keys.txt").to_str().unwrap(),
            "--labels",
            tmp.path().join("labels.txt").to_str().unwrap(),
        ],
    );
    assert!(out.contains("imported 3000 vectors"), "{out}");
    assert!(out.contains("index covers 3000 rows"), "{out}");

    let list: Value = serde_json::from_str(&ok(&data, &["pool", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "pets");
    assert_eq!(list[0]["rows"], 3000);
    assert_eq!(list[0]["backbone"], serde_json::Value::Null);
    let info: Value =
        serde_json::from_str(&ok(&data, &["pool", "info", "pets", "--json"])).unwrap();
    assert_eq!(info["labels"]["dog"], 1000);
    assert_eq!(info["index"]["indexed_rows"], 3000);
    assert!(ok(&data, &["pool", "info", "pets"]).contains("native hnsw, 3000 rows"));

    // Stored items as queries: each finds itself first, by HNSW and exactly.
    for extra in [&[][..], &["--exact"][..], &["--mmap-index"][..]] {
        let mut args = vec![
            "search",
            "--pool",
            "pets",
            "--key",
            "file:///pool/img_7.jpg",
            "--key",
            "file:///pool/img_8.jpg",
            "--k",
            "5",
        ];
        args.extend_from_slice(extra);
        let res = json_lines(&ok(&data, &args));
        assert_eq!(res.len(), 2);
        assert_eq!(res[0]["hits"][0]["key"], "file:///pool/img_7.jpg");
        assert_eq!(res[0]["hits"][0]["distance"], 0.0);
        assert_eq!(res[1]["hits"][0]["row"], 8);
        assert_eq!(res[1]["hits"].as_array().unwrap().len(), 5);
    }

    // A query file and a label filter.
    let q = tmp.path().join("q.fvecs");
    write_fvecs(&q, &spec.sample(4, 1)).unwrap();
    let res = json_lines(&ok(
        &data,
        &[
            "search",
            "--pool",
            "pets",
            "--queries",
            q.to_str().unwrap(),
            "--k",
            "7",
            "--label",
            "fox",
        ],
    ));
    assert_eq!(res.len(), 4);
    for r in &res {
        let hits = r["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 7);
        assert!(hits.iter().all(|h| h["label"] == "fox"));
        let d: Vec<f64> = hits
            .iter()
            .map(|h| h["distance"].as_f64().unwrap())
            .collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
    }

    ok(&data, &["pool", "delete", "pets"]);
    assert_eq!(ok(&data, &["pool", "list", "--json"]).trim(), "[]");
}

/// `dcd pool create` makes the checks of `CreatePool`: with a backbone the dimension is the
/// model's (before, `--dim` was required, `--weights` did not exist, and a wrong `--dim` was
/// accepted and failed at the first ingest).
#[test]
fn pool_create_takes_the_dimension_from_the_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let weights = common::tiny_resnet();
    let out = ok(
        &data,
        &[
            "pool",
            "create",
            "r",
            "--backbone",
            "resnet",
            "--weights",
            &weights,
        ],
    );
    let dim: usize = out
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once("-d"))
        .and_then(|(d, _)| d.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let wrong = (dim + 1).to_string();
    let e = user_error(
        &data,
        &[
            "pool",
            "create",
            "s",
            "--backbone",
            "resnet",
            "--weights",
            &weights,
            "--dim",
            &wrong,
        ],
    );
    assert!(
        e.contains(&format!("gives {dim}-d features, not {wrong}")),
        "{e}"
    );
    let e = user_error(&data, &["pool", "create", "t"]);
    assert!(e.contains("needs its vector dimension"), "{e}");
    let list: Value = serde_json::from_str(&ok(&data, &["pool", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["dim"], dim);
    assert_eq!(list[0]["weights"], weights.as_str());
}

#[test]
fn bad_input_gets_a_clear_error_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let good = tmp.path().join("good.fvecs");
    write_fvecs(&good, &synth::uniform(50, 8, 1)).unwrap();
    let g = good.to_str().unwrap();
    let import_err =
        |file: &str| user_error(&data, &["vectors", "import", "--pool", "p", "--file", file]);

    let e = user_error(&data, &["vectors", "import", "--pool", "nope", "--file", g]);
    assert!(
        e.contains("no pool named \"nope\"") && e.contains("dcd pool list"),
        "{e}"
    );
    let e = user_error(&data, &["pool", "create", "bad/name", "--dim", "8"]);
    assert!(e.contains("invalid pool name"), "{e}");

    ok(&data, &["pool", "create", "p", "--dim", "8"]);
    let e = user_error(&data, &["search", "--pool", "p", "--queries", g]);
    assert!(e.contains("pool is empty"), "{e}");
    ok(&data, &["vectors", "import", "--pool", "p", "--file", g]);
    let e = user_error(&data, &["pool", "create", "p", "--dim", "8"]);
    assert!(e.contains("already exists"), "{e}");

    // Re-importing the same file (an import run again): every row is there already with
    // the same vector, so nothing is added.
    let out = ok(&data, &["vectors", "import", "--pool", "p", "--file", g]);
    assert!(
        out.contains("imported 0 vectors") && out.contains("50 were stored already"),
        "{out}"
    );

    let wide = tmp.path().join("wide.npy");
    write_npy(&wide, &synth::uniform(3, 9, 1)).unwrap();
    let e = import_err(wide.to_str().unwrap());
    assert!(
        e.contains("dimension mismatch") && e.contains("8-d") && e.contains("9-d"),
        "{e}"
    );

    let mut nan = synth::uniform(3, 8, 2);
    nan.data[10] = f32::NAN;
    let nan_file = tmp.path().join("nan.npy");
    write_npy(&nan_file, &nan).unwrap();
    let e = import_err(nan_file.to_str().unwrap());
    assert!(e.contains("non-finite"), "{e}");

    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.fvecs");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = import_err(cut.to_str().unwrap());
    assert!(e.contains("truncated"), "{e}");
    let txt = tmp.path().join("v.csv");
    std::fs::write(&txt, "1,2,3").unwrap();
    let e = import_err(txt.to_str().unwrap());
    assert!(e.contains("unsupported vector file"), "{e}");
    let npy_bytes = std::fs::read(&wide).unwrap();
    let cut_npy = tmp.path().join("cut.npy");
    std::fs::write(&cut_npy, &npy_bytes[..npy_bytes.len() - 5]).unwrap();
    let e = import_err(cut_npy.to_str().unwrap());
    assert!(e.contains("truncated"), "{e}");
    let junk = tmp.path().join("junk.npy");
    std::fs::write(&junk, b"not numpy at all").unwrap();
    let e = import_err(junk.to_str().unwrap());
    assert!(e.contains("not a readable .npy"), "{e}");

    let fresh = tmp.path().join("fresh.fvecs");
    write_fvecs(&fresh, &synth::uniform(5, 8, 3)).unwrap();
    let keys = tmp.path().join("keys.txt");
    std::fs::write(&keys, "a\nb\n").unwrap();
    let e = user_error(
        &data,
        &[
            "vectors",
            "import",
            "--pool",
            "p",
            "--file",
            fresh.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
        ],
    );
    assert!(e.contains("2 keys lines") && e.contains("5 rows"), "{e}");

    let e = user_error(
        &data,
        &["search", "--pool", "p", "--queries", g, "--k", "0"],
    );
    assert!(e.contains("between 1 and 10000"), "{e}");
    let e = user_error(
        &data,
        &["search", "--pool", "p", "--queries", wide.to_str().unwrap()],
    );
    assert!(e.contains("dimension mismatch"), "{e}");
    let e = user_error(&data, &["search", "--pool", "p", "--key", "missing"]);
    assert!(e.contains("no item with key"), "{e}");

    let info: Value = serde_json::from_str(&ok(&data, &["pool", "info", "p", "--json"])).unwrap();
    assert_eq!(
        info["pool"]["rows"], 50,
        "no failed command may change the pool"
    );
}

#[test]
fn benchmark_commands_print_the_documented_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    let data = tmp.path().join("unused");
    ok(
        &data,
        &[
            "bench",
            "gen",
            "--out",
            out.to_str().unwrap(),
            "--n",
            "2000",
            "--queries",
            "50",
            "--dim",
            "16",
            "--gt-k",
            "20",
        ],
    );
    let p = |f: &str| out.join(f).to_str().unwrap().to_string();
    let ann = |engine: &str| {
        [
            "--threads".to_string(),
            "2".into(),
            "bench".into(),
            "ann".into(),
            "--base".into(),
            p("base.fvecs"),
            "--queries".into(),
            p("queries.fvecs"),
            "--gt".into(),
            p("gt.ivecs"),
            "--k".into(),
            "10".into(),
            "--m".into(),
            "8".into(),
            "--ef-construction".into(),
            "64".into(),
            "--ef".into(),
            "10,80".into(),
            "--engine".into(),
            engine.into(),
            "--json".into(),
        ]
    };
    let engines: &[&str] = if cfg!(feature = "hnsw-rs") {
        &["native", "hnsw-rs"]
    } else {
        let args = ann("hnsw-rs");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = user_error(&data, &args);
        assert!(e.contains("--features hnsw-rs"), "{e}");
        &["native"]
    };
    for engine in engines {
        let args = ann(engine);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r: Value = serde_json::from_str(&ok(&data, &args)).unwrap();
        assert_eq!(r["n"], 2000);
        assert_eq!(r["threads"], 2);
        assert!(r["build_seconds"].as_f64().unwrap() > 0.0);
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 0.0);
        let res = r["results"].as_array().unwrap();
        assert_eq!(res.len(), 2);
        assert!(res[1]["recall"].as_f64().unwrap() >= 0.95, "{engine}: {r}");
        assert!(res[0]["qps"].as_f64().unwrap() > 0.0);
    }
    let r: Value = serde_json::from_str(&ok(
        &data,
        &[
            "bench",
            "exact",
            "--base",
            &p("base.fvecs"),
            "--queries",
            &p("queries.fvecs"),
            "--k",
            "10",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(r["queries"], 50);
    assert!(r["gflops"].as_f64().unwrap() > 0.0 && r["qps"].as_f64().unwrap() > 0.0);
    // The GPU path is refused with the way out in a build without CUDA.
    if !cfg!(feature = "cuda") {
        let msg = user_error(
            &data,
            &[
                "bench",
                "exact",
                "--base",
                &p("base.fvecs"),
                "--queries",
                &p("queries.fvecs"),
                "--device",
                "cuda",
            ],
        );
        assert!(msg.contains("--features cuda"), "{msg}");
        // And so is a server asked to keep its exact engine on a GPU.
        let msg = user_error(
            &data,
            &["serve", "--addr", "127.0.0.1:0", "--exact-device", "cuda:1"],
        );
        assert!(
            msg.contains("--exact-device cuda:1") && msg.contains("--exact-device cpu"),
            "{msg}"
        );
    }
    // Stage timing is the GPU path's, refused on the CPU in every build.
    let msg = user_error(
        &data,
        &["bench", "exact", "--random", "100x8", "--gpu-stages", "5"],
    );
    assert!(
        msg.contains("--gpu-stages") && msg.contains("--device cuda"),
        "{msg}"
    );
    // So is timing the GPU plans, in the bench and in the server.
    let msg = user_error(
        &data,
        &[
            "bench",
            "exact",
            "--random",
            "100x8",
            "--gpu-plans",
            "measure",
        ],
    );
    assert!(
        msg.contains("--gpu-plans measure") && msg.contains("--device cuda"),
        "{msg}"
    );
    let msg = user_error(
        &data,
        &["serve", "--addr", "127.0.0.1:0", "--exact-plans", "measure"],
    );
    assert!(
        msg.contains("--exact-plans measure") && msg.contains("--exact-device cuda"),
        "{msg}"
    );
    // A cuda build refuses a plan it does not know before it touches the data or the device.
    if cfg!(feature = "cuda") {
        let msg = user_error(
            &data,
            &[
                "bench",
                "exact",
                "--random",
                "100x8",
                "--device",
                "cuda",
                "--gpu-plan",
                "gemm,mmx",
            ],
        );
        assert!(msg.contains("\"mmx\"") && msg.contains("mma"), "{msg}");
    }
    // A cuda build on a machine without a usable GPU (no driver, no libraries, no device)
    // starts, and says why CUDA is out with the CPU path named: a precondition the caller can
    // meet (exit 2, as FAILED_PRECONDITION over gRPC), not a crash.
    if cfg!(feature = "cuda") && !gpu_usable() {
        for args in [
            &["bench", "exact", "--random", "100x8", "--device", "cuda"][..],
            &["serve", "--addr", "127.0.0.1:0", "--exact-device", "cuda"][..],
        ] {
            let out = dcd(&data, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "dcd {args:?}: {err}");
            assert!(
                err.contains("CUDA") && err.contains("--device cpu"),
                "dcd {args:?}: {err}"
            );
        }
    }
    // The GPU is opened before any data is read or made: a machine without one hears that,
    // not about the (here missing) base file, and never waits for a pool to be generated.
    if !gpu_usable() {
        let args = [
            "bench",
            "exact",
            "--base",
            "/nonexistent/base.fvecs",
            "--queries",
            "/nonexistent/queries.fvecs",
            "--device",
            "cuda",
        ];
        let err = String::from_utf8_lossy(&dcd(&data, &args).stderr).to_string();
        assert!(
            err.contains("CUDA") && err.contains("--device cpu") && !err.contains("nonexistent"),
            "{err}"
        );
    }
    // Ground truth written by gen is exact: the exact engine recalls all of it.
    let gt = dcd::formats::read_ivecs(&out.join("gt.ivecs")).unwrap();
    assert_eq!((gt.0, gt.1), (50, 20));
}

/// An import cut short can be run again: rows already stored with the same vector are
/// skipped (it failed on the first existing key), a key stored with another vector stops it.
/// `dcd pool verify` says ok, and fails, naming the pool, once the catalog is damaged.
#[test]
fn imports_resume_and_pools_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = ClusterSpec {
        dim: 8,
        clusters: 4,
        seed: 11,
    };
    let all = spec.sample(500, 0);
    let head = dcd::types::Matrix::new(200, 8, all.data[..200 * 8].to_vec());
    let (all_npy, head_npy) = (tmp.path().join("all.npy"), tmp.path().join("all.head.npy"));
    write_npy(&all_npy, &all).unwrap();
    write_npy(&head_npy, &head).unwrap();
    let keys: String = (0..500).map(|i| format!("k{i}\n")).collect();
    std::fs::write(tmp.path().join("keys.txt"), &keys).unwrap();
    let head_keys: String = (0..200).map(|i| format!("k{i}\n")).collect();
    std::fs::write(tmp.path().join("head.txt"), &head_keys).unwrap();
    ok(
        &data,
        &["pool", "create", "p", "--dim", "8", "--dtype", "f16"],
    );
    let import = |file: &Path, keys: &str| {
        vec![
            "vectors".to_string(),
            "import".into(),
            "--pool".into(),
            "p".into(),
            "--file".into(),
            file.display().to_string(),
            "--keys".into(),
            tmp.path().join(keys).display().to_string(),
            "--commit-rows".into(),
            "64".into(),
        ]
    };
    let args = import(&head_npy, "head.txt");
    ok(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = import(&all_npy, "keys.txt");
    let out = ok(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("imported 300 vectors"), "{out}");
    assert!(out.contains("200 were stored already"), "{out}");
    let list: Value = serde_json::from_str(&ok(&data, &["pool", "list", "--json"])).unwrap();
    assert_eq!(list[0]["rows"], 500);

    let mut changed = all.clone();
    changed.data[3 * 8] += 1.0;
    write_npy(&all_npy, &changed).unwrap();
    let args = import(&all_npy, "keys.txt");
    let err = user_error(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("\"k3\"") && err.contains("different vector"),
        "{err}"
    );

    let out = ok(&data, &["pool", "verify"]);
    assert!(out.contains("ok      p: 500 rows"), "{out}");
    let conn = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    conn.execute("DELETE FROM items WHERE row_id = 17", [])
        .unwrap();
    drop(conn);
    let out = dcd(&data, &["pool", "verify"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED  p:"), "{text}");
}

/// A data directory holding pool `p`: 200 rows of dimension 8 keyed `k0..k199`.
fn small_pool(tmp: &Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    fill_small_pool(tmp, &data, &[]);
    data
}

/// Writes `v.npy` and `keys.txt` under `tmp` and makes pool `p` of them: 200 rows of
/// dimension 8 keyed `k0..k199`, in `data` or where `extra` (e.g. `--server URL`) says.
fn fill_small_pool(tmp: &Path, data: &Path, extra: &[&str]) {
    let spec = ClusterSpec {
        dim: 8,
        clusters: 3,
        seed: 2,
    };
    let npy = tmp.join("v.npy");
    write_npy(&npy, &spec.sample(200, 0)).unwrap();
    let keys = tmp.join("keys.txt");
    std::fs::write(
        &keys,
        (0..200).map(|i| format!("k{i}\n")).collect::<String>(),
    )
    .unwrap();
    ok(
        data,
        &[&["pool", "create", "p", "--dim", "8"][..], extra].concat(),
    );
    let import = [
        "vectors",
        "import",
        "--pool",
        "p",
        "--file",
        npy.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ];
    ok(data, &[&import[..], extra].concat());
}

/// The read commands answer on `data`; a write is refused with `reason` in its message.
fn reads_work_and_writes_are_refused(data: &Path, reason: &str) {
    let list: Value = serde_json::from_str(&ok(data, &["pool", "list", "--json"])).unwrap();
    assert_eq!(list[0]["rows"], 200);
    let out = ok(data, &["pool", "verify"]);
    assert!(out.contains("ok      p: 200 rows"), "{out}");
    let res = json_lines(&ok(
        data,
        &["search", "--pool", "p", "--key", "k7", "--k", "3"],
    ));
    assert_eq!(res[0]["hits"][0]["key"], "k7");
    let refused = dcd(data, &["pool", "create", "q", "--dim", "8"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(reason), "{err}");
}

/// The commands that only read (pool list, info, verify; search) work on a data directory a
/// running server holds, opening it read-only; a command that writes is refused.
#[test]
fn read_commands_work_beside_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_pool(tmp.path());
    let server = common::ServerProcess::start(&data, tmp.path(), &[]);
    reads_work_and_writes_are_refused(&data, "in use");
    server.kill();
}

/// A data directory on read-only media (a bind mount remounted read-only; root only, as in
/// CI) reads the same way and leaves every file as it was; writes are refused.
#[test]
fn read_commands_work_on_a_read_only_mount() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = small_pool(tmp.path());
    // The search builds no index file here: the mount must stay byte-identical.
    let before = checksum(&data);
    let mount = |args: &[&str]| {
        let st = Command::new("mount")
            .args(args)
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount {args:?} failed as root");
    };
    let d = data.to_str().unwrap();
    mount(&["--bind", d, d]);
    let unmount = Unmount(data.clone());
    mount(&["-o", "remount,ro,bind", d]);
    reads_work_and_writes_are_refused(&data, "cannot be written");
    drop(unmount);
    assert_eq!(
        checksum(&data),
        before,
        "a read on read-only media changed a file"
    );
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every file under `dir` with its bytes, sorted.
fn checksum(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(checksum(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// Every data command runs through one interface, in this process or on `--server`: against
/// a server, `pool create|list|info|delete`, `vectors import` (resumed, and stopped by a key
/// stored with another vector) and `search` give what they give locally, and the client's
/// own data directory stays untouched.
#[test]
fn data_commands_answer_the_same_on_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let local = small_pool(tmp.path());
    let served = tmp.path().join("served");
    let server = common::ServerProcess::start(&served, tmp.path(), &[]);
    let client = tmp.path().join("client");
    let url = server.url.clone();
    let remote = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", url.as_str()]);
        ok(&client, &all)
    };
    let (npy, keys) = (tmp.path().join("v.npy"), tmp.path().join("keys.txt"));
    let (npy, keys) = (npy.to_str().unwrap(), keys.to_str().unwrap());
    let import = [
        "vectors", "import", "--pool", "p", "--file", npy, "--keys", keys,
    ];

    assert!(remote(&["pool", "create", "p", "--dim", "8"]).contains("created pool p (8-d f32)"));
    let out = remote(&import);
    assert!(out.contains("imported 200 vectors"), "{out}");
    assert!(out.contains("the server indexes the new rows"), "{out}");
    let out = remote(&import);
    assert!(
        out.contains("imported 0 vectors") && out.contains("200 were stored already"),
        "{out}"
    );

    let list = |json: String| -> Value { serde_json::from_str(&json).unwrap() };
    let (l, r) = (
        list(ok(&local, &["pool", "list", "--json"])),
        list(remote(&["pool", "list", "--json"])),
    );
    for field in ["name", "dim", "dtype", "rows"] {
        assert_eq!(l[0][field], r[0][field], "{field}");
    }
    let (l, r) = (
        list(ok(&local, &["pool", "info", "p", "--json"])),
        list(remote(&["pool", "info", "p", "--json"])),
    );
    assert_eq!(l["labels"], r["labels"]);
    assert_eq!(l["vector_bytes"], 200 * 8 * 4);
    assert_eq!(l["vector_bytes"], r["vector_bytes"]);

    for extra in [&[][..], &["--exact"][..]] {
        let mut args = vec![
            "search", "--pool", "p", "--key", "k7", "--key", "k8", "--k", "4",
        ];
        args.extend_from_slice(extra);
        let (l, r) = (json_lines(&ok(&local, &args)), json_lines(&remote(&args)));
        assert_eq!(l.len(), 2);
        for (a, b) in l.iter().zip(&r) {
            assert_eq!(a["hits"], b["hits"], "{extra:?}");
        }
        assert_eq!(r[0]["hits"][0]["key"], "k7");
    }

    // A key stored with another vector stops the import, naming it, on either side.
    let other = tmp.path().join("other.npy");
    write_npy(&other, &synth::uniform(1, 8, 9)).unwrap();
    let one_key = tmp.path().join("one.txt");
    std::fs::write(&one_key, "k3\n").unwrap();
    let changed = [
        "vectors",
        "import",
        "--pool",
        "p",
        "--file",
        other.to_str().unwrap(),
        "--keys",
        one_key.to_str().unwrap(),
    ];
    for e in [
        user_error(&local, &changed),
        user_error(
            &client,
            &[&changed[..], &["--server", url.as_str()]].concat(),
        ),
    ] {
        assert!(
            e.contains("\"k3\"") && e.contains("different vector"),
            "{e}"
        );
    }

    assert!(remote(&["pool", "delete", "p"]).contains("deleted pool p (200 items)"));
    assert_eq!(remote(&["pool", "list", "--json"]).trim(), "[]");
    let e = user_error(&client, &["pool", "info", "p", "--server", url.as_str()]);
    assert!(
        e.contains("NOT_FOUND") || e.contains("no pool named"),
        "{e}"
    );
    assert!(
        !client.join("catalog.sqlite").exists(),
        "a command with --server wrote to the local data directory"
    );
    server.kill();
}

/// Saved sets from the command line, in the data directory and on a server alike:
/// `debug-set --save` (and `--parent`), `sets list|show|diff|review|export|next|delete`; a
/// taken name is refused and the saved set stays as it was.
#[test]
fn sets_are_saved_listed_compared_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let local = small_pool(tmp.path());
    let served = tmp.path().join("served");
    let server = common::ServerProcess::start(&served, tmp.path(), &[]);
    let client = tmp.path().join("client");
    let errors = tmp.path().join("errors.npy");
    write_npy(
        &errors,
        &ClusterSpec {
            dim: 8,
            clusters: 3,
            seed: 2,
        }
        .sample(3, 7),
    )
    .unwrap();
    let set_file = tmp.path().join("set.jsonl");
    let url = server.url.clone();
    fill_small_pool(tmp.path(), &client, &["--server", url.as_str()]);
    for (data, extra) in [
        (&local, &[][..]),
        (&client, &["--server", url.as_str()][..]),
    ] {
        let run = |args: &[&str]| ok(data, &[args, extra].concat());
        let build = |k: &str, save: &[&str]| {
            let args = [
                &[
                    "debug-set",
                    "--pool",
                    "p",
                    "--errors",
                    errors.to_str().unwrap(),
                    "--k",
                    k,
                    "--out",
                    set_file.to_str().unwrap(),
                ][..],
                save,
            ]
            .concat();
            run(&args)
        };
        let out = build("4", &["--save", "first"]);
        assert!(out.contains("saved as first"), "{out}");
        let first: Vec<Value> = json_lines(&std::fs::read_to_string(&set_file).unwrap());
        build("9", &["--save", "second", "--parent", "first"]);

        let list: Value = serde_json::from_str(&run(&["sets", "list", "--json"])).unwrap();
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{list}");
        assert!(names.contains(&"first") && names.contains(&"second"));

        let shown: Value =
            serde_json::from_str(&run(&["sets", "show", "first", "--json"])).unwrap();
        let saved_keys: Vec<&str> = shown["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap())
            .collect();
        let built_keys: Vec<&str> = first.iter().map(|i| i["key"].as_str().unwrap()).collect();
        assert_eq!(saved_keys, built_keys);
        assert_eq!(shown["manifest"]["pool"]["rows"], 200);
        assert_eq!(shown["manifest"]["request"]["k"], 4);
        assert_eq!(shown["manifest"]["errors"].as_array().unwrap().len(), 3);
        let second: Value =
            serde_json::from_str(&run(&["sets", "show", "second", "--json"])).unwrap();
        assert_eq!(second["parent"], "first");

        let d: Value =
            serde_json::from_str(&run(&["sets", "diff", "first", "second", "--json"])).unwrap();
        let added = d["added"].as_array().unwrap().len();
        assert_eq!(
            added,
            second["items"].as_array().unwrap().len() - saved_keys.len(),
            "{d}"
        );
        assert!(d["removed"].as_array().unwrap().is_empty(), "{d}");

        // Review: two rejected, one relabelled, the rest accepted in bulk; a key the set
        // lacks is refused.
        let keys: Vec<String> = second["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_owned())
            .collect();
        let two = format!("{},{}", keys[0], keys[1]);
        let out = run(&[
            "sets",
            "review",
            "second",
            "reject",
            "--key",
            &two,
            "--reviewer",
            "ann",
        ]);
        assert!(out.contains("2 items marked reject"), "{out}");
        run(&[
            "sets", "review", "second", "relabel", "--label", "c9", "--key", &keys[2],
        ]);
        let e = user_error(
            data,
            &[
                &["sets", "review", "second", "accept", "--key", "nope"][..],
                extra,
            ]
            .concat(),
        );
        assert!(e.contains("nope"), "{e}");
        let out = run(&[
            "sets",
            "review",
            "second",
            "accept",
            "--all",
            "--unreviewed-only",
        ]);
        assert!(
            out.contains(&format!("{} items marked accept", keys.len() - 3)),
            "{out}"
        );
        let reviewed: Value =
            serde_json::from_str(&run(&["sets", "show", "second", "--json"])).unwrap();
        let reviews = reviewed["reviews"].as_array().unwrap();
        assert_eq!(reviews.len(), keys.len());
        assert_eq!(reviews[0]["verdict"], "reject");
        assert_eq!(reviews[0]["reviewer"], "ann");
        assert_eq!(reviews[2]["label"], "c9");

        // Export: the accepted and relabelled items, the reviewer's label first.
        let csv = tmp.path().join("accepted.csv");
        run(&["sets", "export", "second", "--out", csv.to_str().unwrap()]);
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + keys.len() - 2, "{text}");
        assert!(lines[1].starts_with(&format!("{},c9,", keys[2])), "{text}");

        // The report of a saved set: its overview, map, random sample and reviews.
        let html = tmp.path().join("saved.html");
        run(&[
            "report",
            "--saved",
            "second",
            "--out",
            html.to_str().unwrap(),
        ]);
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(
            page.contains("<h2>Map</h2>") && page.contains("<svg"),
            "no map"
        );
        assert_eq!(
            page.matches("<circle").count(),
            2 * keys.len(),
            "set + random sample"
        );
        assert!(page.contains("A random sample of the pool"));
        assert!(page.contains("relabelled c9 by"), "reviews shown");

        // The next round: every reviewed item left out, the rejections as negatives.
        let next: Value = serde_json::from_str(&run(&[
            "sets", "next", "second", "--save", "third", "--json",
        ]))
        .unwrap();
        assert_eq!(next["round"]["rejected"], 2, "{next}");
        assert_eq!(next["round"]["accepted"], keys.len() - 2, "{next}");
        let third: Value =
            serde_json::from_str(&run(&["sets", "show", "third", "--json"])).unwrap();
        assert_eq!(third["parent"], "second");
        for it in third["items"].as_array().unwrap() {
            assert!(
                !keys.contains(&it["key"].as_str().unwrap().to_owned()),
                "{it}"
            );
        }
        run(&["sets", "delete", "third"]);

        let e = user_error(
            data,
            &[
                &[
                    "debug-set",
                    "--pool",
                    "p",
                    "--errors",
                    errors.to_str().unwrap(),
                    "--out",
                    set_file.to_str().unwrap(),
                    "--save",
                    "first",
                ][..],
                extra,
            ]
            .concat(),
        );
        assert!(e.contains("first"), "{e}");
        run(&["sets", "delete", "first"]);
        let e = user_error(data, &[&["sets", "show", "first"][..], extra].concat());
        assert!(e.contains("first"), "{e}");
        run(&["sets", "delete", "second"]);
    }
    server.kill();
}
