//! Ingestion jobs survive SIGKILL at any moment: `dcd ingest` is killed at a dozen random
//! points of its run, then run again to the end; every image must be in the pool exactly
//! once, duplicates and the corrupt file reported, and the store consistent.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use dcd::store::{JobState, Store};
use rand::{Rng, SeedableRng};

fn ingest(data: &Path, src: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcd"));
    cmd.args(["--data-dir"])
        .arg(data)
        .args([
            "--log",
            "warn",
            "--threads",
            "2",
            "ingest",
            "--pool",
            "p",
            "--backbone",
            "dino-vit",
            "--weights",
        ])
        .arg(common::tiny_dino())
        .arg(src)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

#[test]
fn sigkill_at_random_points_then_resume_stores_every_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("pool");
    common::write_pool(&src, 100, 1100, 11);
    std::fs::write(src.join("cat/corrupt.png"), b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    std::fs::create_dir_all(src.join("dup")).unwrap();
    std::fs::copy(
        src.join("cat")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        src.join("dup/again.png"),
    )
    .unwrap();
    let total_files = 1202u64;

    // How long an uninterrupted run takes here, to spread the kill points over it.
    let probe = dir.path().join("probe");
    let t = Instant::now();
    assert!(ingest(&probe, &src).status().unwrap().success());
    let full = t.elapsed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut interrupted_midway = 0;
    for trial in 0..12 {
        // A fresh data dir per kill point: the kill lands anywhere from pool creation to
        // the last commit, uniformly over an uninterrupted run's time.
        let data = dir.path().join(format!("data-{trial}"));
        let mut child = ingest(&data, &src).spawn().unwrap();
        let at = rng.gen_range(0.0..1.0);
        std::thread::sleep(full.mul_f64(at));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if let Ok(store) = Store::open(&data) {
            if let Ok(pool) = store.open_pool("p") {
                pool.verify().unwrap();
            }
            if let Some(job) = store
                .jobs_of_pool("p", 100)
                .ok()
                .and_then(|j| j.into_iter().next())
            {
                let done = job.tally.done();
                if job.state == JobState::Running && done > 0 && done < total_files {
                    interrupted_midway += 1;
                }
            }
        }
        let out = ingest(&data, &src).stderr(Stdio::piped()).output().unwrap();
        assert!(
            out.status.success(),
            "trial {trial} (killed at {at:.3} of {full:?}): the resumed run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_complete(&data, &src, total_files);
    }
    assert!(
        interrupted_midway >= 3,
        "only {interrupted_midway} of 12 kills landed mid-job (full run {full:?}); the test needs more"
    );
}

/// The first open of a data dir creates its catalog; a kill at any moment of it must leave one
/// that opens. (The schema was once written statement by statement, and a kill between them
/// left tables without a version, which no later run accepted.)
#[test]
fn sigkill_while_a_data_dir_is_first_opened_leaves_one_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let list = |data: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcd"));
        cmd.arg("--data-dir")
            .arg(data)
            .args(["--log", "warn", "pool", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let t = Instant::now();
    assert!(list(&dir.path().join("probe")).status().unwrap().success());
    let full = t.elapsed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for trial in 0..40 {
        let data = dir.path().join(format!("data-{trial}"));
        let mut child = list(&data).spawn().unwrap();
        let at = rng.gen_range(0.0..1.0);
        std::thread::sleep(full.mul_f64(at));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let store = Store::open(&data)
            .unwrap_or_else(|e| panic!("trial {trial} (killed at {at:.3} of {full:?}): {e}"));
        assert!(store.pools().unwrap().is_empty());
    }
}

/// Every image once, the duplicate and the corrupt file reported, one job, store consistent.
fn check_complete(data: &Path, src: &Path, total_files: u64) {
    let store = Store::open(data).unwrap();
    let pool = store.open_pool("p").unwrap();
    assert_eq!(pool.verify().unwrap(), 1200);
    let jobs = store.jobs_of_pool("p", 100).unwrap();
    // Newest first. A restart resumes the unfinished job; only a kill that landed after the
    // job had finished leaves a second one, which found everything present.
    assert!(jobs.len() <= 2, "{} jobs", jobs.len());
    if jobs.len() == 2 {
        assert_eq!(jobs[0].tally.stored, 0);
        assert_eq!(jobs[1].state, JobState::Succeeded);
    }
    let job = jobs.last().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.total, total_files);
    assert_eq!(job.tally.done(), total_files);
    assert_eq!((job.tally.duplicates, job.tally.failed), (1, 1));
    assert_eq!(job.tally.stored, 1200);
    let rows: Vec<u32> = (0..pool.len() as u32).collect();
    let keys: HashSet<String> = pool
        .items(&rows)
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(keys.len(), 1200, "keys are unique");
    for entry in walk(src) {
        let key = entry.canonicalize().unwrap().display().to_string();
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name == "corrupt.png" || name == "again.png" {
            assert!(!keys.contains(&key), "{name} must not be stored");
        } else {
            assert!(keys.contains(&key), "{key} missing");
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
