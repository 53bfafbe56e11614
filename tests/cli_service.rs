//! The service from the command line: `dcd ingest` and `dcd debug-set` locally and against
//! `dcd serve` (graceful SIGTERM, metrics), then `dcd export` and `dcd report` on the set.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use rand::SeedableRng;

fn dcd(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dcd"));
    c.arg("--data-dir").arg(data).args(["--log", "warn"]);
    c
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    pool: std::path::PathBuf,
    errors: std::path::PathBuf,
    stripes: std::collections::HashSet<String>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let pool = root.join("pool");
    let stripes = common::write_pool(&pool, 30, 90, 5)
        .into_iter()
        .map(|p| p.canonicalize().unwrap().display().to_string())
        .collect();
    let errors = root.join("errors");
    std::fs::create_dir_all(&errors).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    for i in 0..3 {
        common::stripes(&mut rng, 48)
            .save(errors.join(format!("e{i}.png")))
            .unwrap();
    }
    Fixture {
        _dir: dir,
        root,
        pool,
        errors,
        stripes,
    }
}

fn precision(set: &Path, stripes: &std::collections::HashSet<String>) -> f64 {
    let text = std::fs::read_to_string(set).unwrap();
    let keys: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(!keys.is_empty());
    keys.iter().filter(|k| stripes.contains(*k)).count() as f64 / keys.len() as f64
}

#[test]
fn local_ingest_debug_set_export_and_report() {
    let f = fixture();
    let data = f.root.join("data");
    let out = run_ok(
        dcd(&data)
            .args([
                "ingest",
                "--pool",
                "p",
                "--backbone",
                "dino-vit",
                "--weights",
            ])
            .arg(common::tiny_dino())
            .arg(&f.pool),
    );
    assert!(out.contains("succeeded: 120 stored"), "{out}");
    let set = f.root.join("set.jsonl");
    let out = run_ok(
        dcd(&data)
            .args(["debug-set", "--pool", "p", "--k", "6", "--errors"])
            .arg(&f.errors)
            .arg("--out")
            .arg(&set),
    );
    assert!(out.contains("debug-train set:"), "{out}");
    let p = precision(&set, &f.stripes);
    assert!(p >= 0.9, "precision {p}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("set.summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["errors"].as_array().unwrap().len(), 3);
    assert_eq!(summary["request"]["k"], 6);
    assert_eq!(summary["backbone"], "dino-vit");

    // CSV too.
    let csv = f.root.join("set.csv");
    run_ok(
        dcd(&data)
            .args(["debug-set", "--pool", "p", "--k", "6", "--errors"])
            .arg(&f.errors)
            .arg("--out")
            .arg(&csv),
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("key,label,best_distance,support,row,found_by"));

    // Consensus from the command line: every item says how many error samples found it.
    let agreed = f.root.join("agreed.jsonl");
    run_ok(
        dcd(&data)
            .args([
                "debug-set",
                "--pool",
                "p",
                "--k",
                "6",
                "--min-support",
                "2",
                "--errors",
            ])
            .arg(&f.errors)
            .arg("--out")
            .arg(&agreed),
    );
    let support = |file: &Path| -> Vec<u64> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["support"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let all = support(&set);
    let kept = support(&agreed);
    assert!(!kept.is_empty() && kept.iter().all(|&s| s >= 2), "{kept:?}");
    assert_eq!(kept.len(), all.iter().filter(|&&s| s >= 2).count());
    let out = dcd(&data)
        .args([
            "debug-set",
            "--pool",
            "p",
            "--k",
            "6",
            "--min-support",
            "4",
            "--errors",
        ])
        .arg(&f.errors)
        .arg("--out")
        .arg(f.root.join("none.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("min_support"));

    let folder = f.root.join("export");
    let out = run_ok(
        dcd(&data)
            .args(["export", "--set"])
            .arg(&set)
            .arg("--out")
            .arg(&folder),
    );
    assert!(out.contains("exported"), "{out}");
    let mut linked = 0;
    for label in std::fs::read_dir(&folder).unwrap() {
        for file in std::fs::read_dir(label.unwrap().path()).unwrap() {
            let p = file.unwrap().path();
            assert!(p.symlink_metadata().unwrap().file_type().is_symlink());
            assert!(
                image::open(&p).is_ok(),
                "{} opens through the link",
                p.display()
            );
            linked += 1;
        }
    }
    assert_eq!(
        linked,
        std::fs::read_to_string(&set).unwrap().lines().count()
    );
    let copies = f.root.join("copies");
    run_ok(
        dcd(&data)
            .args(["export", "--copy", "--set"])
            .arg(&set)
            .arg("--out")
            .arg(&copies),
    );
    let exported_csv = f.root.join("export.csv");
    run_ok(
        dcd(&data)
            .args(["export", "--format", "csv", "--set"])
            .arg(&set)
            .arg("--out")
            .arg(&exported_csv),
    );
    assert!(std::fs::read_to_string(&exported_csv)
        .unwrap()
        .starts_with("path,label,distance"));

    let html = f.root.join("report.html");
    run_ok(
        dcd(&data)
            .args(["report", "--set"])
            .arg(&set)
            .arg("--out")
            .arg(&html),
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<h2>Error sample").count(), 3);
    assert!(page.matches("data:image/jpeg;base64,").count() >= 3 + 6);
    assert!(!page.contains("src=\"/"), "self-contained: no file links");
    // Every item it says it shows, and every item each error sample kept.
    for section in page.split("<section><h2>Error sample").skip(1) {
        let section = section.split("</section>").next().unwrap();
        let kept: usize = section
            .split("kept ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let shown: usize = section
            .split("showing ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(shown, kept, "{section}");
        assert_eq!(section.matches("<figure").count(), shown + 1, "{section}");
    }
    assert!(page.contains("<h2>Overview</h2>") && page.contains("Failure modes"));
    // The map and the strip, from the overview `dcd debug-set` kept in the summary.
    let items = std::fs::read_to_string(&set).unwrap().lines().count();
    assert!(
        page.contains("<h2>Map</h2>") && page.contains("<svg"),
        "no map"
    );
    assert_eq!(
        page.matches("<circle").count(),
        2 * items,
        "set + random sample"
    );
    assert!(page.contains("A random sample of the pool"));
    let strip = page
        .split("A random sample of the pool")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap();
    assert!(
        strip.contains("data:image/jpeg;base64,"),
        "the sample's images shown"
    );

    // Bad input.
    let out = dcd(&data)
        .args(["debug-set", "--pool", "p", "--k", "0", "--errors"])
        .arg(&f.errors)
        .arg("--out")
        .arg(&set)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("k = 0"));
    let empty = f.root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dcd(&data)
        .args(["ingest", "--pool", "p"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no images"));
    let out = dcd(&data)
        .args(["ingest", "--pool", "nope"])
        .arg(&f.pool)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backbone"));
}

/// The items of a set file as JSON values.
fn set_items(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn error_samples_labelled_by_their_folders() {
    let f = fixture();
    let data = f.root.join("data");
    run_ok(
        dcd(&data)
            .args(["ingest", "--pool", "p", "--backbone", "resnet", "--weights"])
            .arg(common::tiny_resnet())
            .arg(&f.pool),
    );
    // ImageFolder of error samples: all three are "cat"s.
    let labelled = f.root.join("labelled");
    std::fs::create_dir_all(labelled.join("cat")).unwrap();
    for e in std::fs::read_dir(&f.errors).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, labelled.join("cat").join(p.file_name().unwrap())).unwrap();
    }
    let build = |name: &str, errors: &Path, extra: &[&str]| {
        let out = f.root.join(name);
        run_ok(
            dcd(&data)
                .args(["debug-set", "--pool", "p", "--k", "20", "--errors"])
                .arg(errors)
                .args(extra)
                .arg("--out")
                .arg(&out),
        );
        out
    };
    let plain = set_items(&build("plain.jsonl", &f.errors, &[]));
    assert!(plain.iter().any(|i| i["label"] != "cat"));
    assert!(plain
        .iter()
        .all(|i| i.get("weak_label_plausible").is_none()));
    let judged_file = build("judged.jsonl", &labelled, &[]);
    let judged = set_items(&judged_file);
    assert!(!judged.is_empty());
    assert!(judged
        .iter()
        .all(|i| i["label"] == "cat" && i["weak_label_plausible"] == true));
    let cats = plain.iter().filter(|i| i["label"] == "cat").count();
    assert_eq!(
        judged.len(),
        cats,
        "drop keeps exactly the items labelled cat"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("judged.summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["request"]["label_policy"], "drop");
    assert_eq!(summary["error_labels"], serde_json::json!(["cat"]));
    assert_eq!(
        summary["funnel"]["label_policy"].as_u64().unwrap() as usize,
        plain.len() - cats
    );
    // Folder names ignored on request: the plain set again.
    let ignored = set_items(&build("ignored.jsonl", &labelled, &["--errors-unlabelled"]));
    assert_eq!(ignored.len(), plain.len());
    // Replace: every item trains as a cat, and export files it under cat/.
    let replaced_file = build("replaced.csv", &labelled, &["--label-policy", "replace"]);
    let text = std::fs::read_to_string(&replaced_file).unwrap();
    assert!(text.starts_with(
        "key,label,best_distance,support,row,found_by,suggested_label,label_confidence,\
         weak_label_plausible,gap,gap_percentile,distance_percentile,mode\n"
    ));
    let jsonl = build("replaced.jsonl", &labelled, &["--label-policy", "replace"]);
    let replaced = set_items(&jsonl);
    assert_eq!(replaced.len(), plain.len());
    assert!(replaced
        .iter()
        .all(|i| i["label"] == "cat" || i["suggested_label"] == "cat"));
    let folder = f.root.join("export");
    run_ok(
        dcd(&data)
            .args(["export", "--set"])
            .arg(&jsonl)
            .arg("--out")
            .arg(&folder),
    );
    let dirs: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, vec!["cat".to_owned()]);
    // Folder names that are no label of the pool: an empty set, and the reason on stderr.
    let zebras = f.root.join("zebras");
    std::fs::rename(labelled.join("cat"), labelled.join("zebra")).unwrap();
    std::fs::rename(&labelled, &zebras).unwrap();
    let out = dcd(&data)
        .args(["debug-set", "--pool", "p", "--k", "20", "--errors"])
        .arg(&zebras)
        .arg("--out")
        .arg(f.root.join("zebra.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("label policy removed all") && stderr.contains("zebra"),
        "{stderr}"
    );
    assert!(set_items(&f.root.join("zebra.jsonl")).is_empty());

    // Negatives from the command line: striped images the model "handles" veto the pool's
    // striped images; the same files as the error samples are refused.
    let handled = f.root.join("handled");
    std::fs::create_dir_all(&handled).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(78);
    for i in 0..30 {
        common::stripes(&mut rng, 48)
            .save(handled.join(format!("h{i}.png")))
            .unwrap();
    }
    let vetoed_file = build(
        "vetoed.jsonl",
        &f.errors,
        &["--negatives", handled.to_str().unwrap()],
    );
    let vetoed = set_items(&vetoed_file);
    assert!(
        vetoed.len() < plain.len(),
        "{} of {}",
        vetoed.len(),
        plain.len()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("vetoed.summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary["funnel"]["negatives"].as_u64().unwrap() as usize,
        plain.len() - vetoed.len()
    );
    assert!(summary["vetoes"][0]["negative"]
        .as_str()
        .unwrap()
        .starts_with("negatives["));
    let out = dcd(&data)
        .args(["debug-set", "--pool", "p", "--k", "20", "--errors"])
        .arg(&f.errors)
        .arg("--negatives")
        .arg(&f.errors)
        .arg("--out")
        .arg(f.root.join("same.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("same input as error sample"));

    // A holdout: the pool's own image, given again as a held-out file, collides exactly.
    let leaked = plain[0]["key"].as_str().unwrap().to_owned();
    let held = set_items(&build("held.jsonl", &f.errors, &["--holdout", &leaked]));
    assert_eq!(held.len(), plain.len() - 1);
    assert!(held.iter().all(|i| i["key"] != leaked.as_str()));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("held.summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["collisions"][0]["key"], leaked.as_str());
    assert_eq!(summary["collisions"][0]["held_out"], "holdout[0]");
    assert_eq!(summary["funnel"]["holdout"], 1);
}

fn http_get(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn cli_against_a_server_and_graceful_shutdown() {
    let f = fixture();
    let mut server = dcd(&f.root.join("server-data"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--allow-root",
        ])
        .arg(&f.root)
        .arg("--allow-root")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let metrics = lines.next().unwrap().unwrap();
    let metrics_addr = metrics
        .trim_start_matches("dcd metrics on http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let url = format!("http://{addr}");
    let scratch = f.root.join("client-data");
    let out = run_ok(
        dcd(&scratch)
            .args([
                "ingest",
                "--server",
                &url,
                "--pool",
                "p",
                "--backbone",
                "dino-vit",
                "--weights",
            ])
            .arg(common::tiny_dino())
            .arg(&f.pool),
    );
    assert!(out.contains("succeeded: 120 stored"), "{out}");
    // `pool create` is the same call on the server: the dimension comes from the backbone,
    // whose weights the server reads below its allowed roots.
    let out = run_ok(
        dcd(&scratch)
            .args([
                "pool",
                "create",
                "q",
                "--server",
                &url,
                "--backbone",
                "resnet",
            ])
            .arg("--weights")
            .arg(common::tiny_resnet()),
    );
    assert!(
        out.starts_with("created pool q (") && out.contains("-d f32)"),
        "{out}"
    );
    assert!(
        !scratch.join("pools/q").exists(),
        "created on the server, not here"
    );
    let set = f.root.join("remote.jsonl");
    run_ok(
        dcd(&scratch)
            .args([
                "debug-set",
                "--server",
                &url,
                "--pool",
                "p",
                "--k",
                "6",
                "--errors",
            ])
            .arg(&f.errors)
            .arg("--out")
            .arg(&set),
    );
    let p = precision(&set, &f.stripes);
    assert!(p >= 0.9, "precision {p}");
    // The server sends the overview the report draws.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("remote.summary.json")).unwrap())
            .unwrap();
    let items = std::fs::read_to_string(&set).unwrap().lines().count();
    assert_eq!(
        summary["overview"]["items"].as_array().unwrap().len(),
        items
    );
    assert_eq!(summary["overview"]["errors"].as_array().unwrap().len(), 3);
    let page = http_get(&metrics_addr);
    assert!(
        page.contains("dcd_requests_total{method=\"StreamDebugSet\",code=\"Ok\"} 1"),
        "{page}"
    );
    assert!(page.contains("dcd_pool_vectors 120"), "{page}");
    assert!(page.contains("dcd_images_embedded_total"), "{page}");
    // The same recipe scored by the server: two folds of the three error images.
    let report = f.root.join("remote-eval.json");
    let table = run_ok(
        dcd(&scratch)
            .args([
                "eval", "--server", &url, "--pool", "p", "--k", "6", "--folds", "2",
            ])
            .args(["--errors"])
            .arg(&f.errors)
            .arg("--out")
            .arg(&report),
    );
    assert!(table.contains("2 folds"), "{table}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (r["folds"].as_u64(), r["scored"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(http_get(&metrics_addr)
        .contains("dcd_requests_total{method=\"EvaluateDebugSet\",code=\"Ok\"} 1"));
    // A path outside the allowed root is refused.
    let out = dcd(&scratch)
        .args(["ingest", "--server", &url, "--pool", "p", "/etc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"));
    // SIGTERM: graceful, exit 0.
    sigterm(server.id());
    assert!(server.wait().unwrap().success());
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn eval_scores_a_recipe_on_folds_and_on_held_out_images() {
    let f = fixture();
    let data = f.root.join("data");
    run_ok(
        dcd(&data)
            .args(["ingest", "--pool", "p", "--backbone", "resnet", "--weights"])
            .arg(common::tiny_resnet())
            .arg(&f.pool),
    );
    let report = f.root.join("eval.json");
    let table = run_ok(
        dcd(&data)
            .args([
                "eval", "--pool", "p", "--k", "5", "--ks", "5,10", "--errors",
            ])
            .arg(&f.errors)
            .arg("--out")
            .arg(&report),
    );
    assert!(
        table.contains("score") && table.contains("3 folds"),
        "{table}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["folds"], 3);
    assert_eq!(r["scored"], 3);
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0]["k"].as_u64(), points[1]["k"].as_u64()),
        (Some(5), Some(10))
    );
    // Stripes are a tenth of the pool: sets of their neighbours beat random ones.
    assert!(
        points[1]["comparison"]["win_rate"].as_f64().unwrap() > 0.5,
        "{r}"
    );
    // Held-out images: every error sample builds the set.
    let held = f.root.join("held");
    std::fs::create_dir_all(&held).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(78);
    for i in 0..2 {
        common::stripes(&mut rng, 48)
            .save(held.join(format!("h{i}.png")))
            .unwrap();
    }
    run_ok(
        dcd(&data)
            .args(["eval", "--pool", "p", "--k", "5", "--errors"])
            .arg(&f.errors)
            .arg("--held-out")
            .arg(&held)
            .arg("--out")
            .arg(&report),
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (r["folds"].as_u64(), r["scored"].as_u64()),
        (Some(0), Some(2))
    );
    let out = dcd(&data)
        .args(["eval", "--pool", "p", "--errors"])
        .arg(&f.errors)
        .args(["--out", "x.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".json"));
}
