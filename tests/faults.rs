//! SIGKILL at random moments (issue 20): a real `dcd serve` under a mixed workload (Ingest
//! streams with searches that start index builds, folder jobs, pools created, filled and
//! deleted) and `dcd vectors import`, killed at a random point, again and again. After every
//! kill the data directory must open, every pool pass `dcd pool verify`'s checks, every row a
//! client saw acknowledged be there, and every pool whose deletion was acknowledged be gone.
//! DCD_FAULT_ROUNDS kills (default 100).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dcd::api::pb;
use dcd::store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 16;

/// What clients saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// Pool -> keys whose Ingest call returned OK.
    keys: Vec<(String, String)>,
    /// Pools whose DeletePool returned OK (and were not created again since).
    deleted: HashSet<String>,
}

fn vectors(rng: &mut StdRng, pool: &str, prefix: &str, n: usize) -> Vec<pb::IngestItem> {
    (0..n)
        .map(|i| pb::IngestItem {
            pool: pool.into(),
            key: format!("{prefix}-{i}"),
            label: ["a", "b"][i % 2].into(),
            content: Some(pb::ingest_item::Content::Vector(pb::Vector {
                values: (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            })),
            ..Default::default()
        })
        .collect()
}

/// One round's workload against the server until it dies: streams, searches, a folder job,
/// and a scratch pool created, filled and deleted.
async fn workload(url: String, round: usize, seed: u64, images: PathBuf, ack: &mut Acknowledged) {
    let Ok(mut client) = pb::dcd_client::DcdClient::connect(url).await else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    if round % 3 == 1 {
        let _ = client
            .start_ingest_job(pb::StartIngestJobRequest {
                pool: "img".into(),
                source: Some(pb::start_ingest_job_request::Source::Folder(
                    images.display().to_string(),
                )),
            })
            .await;
    }
    for step in 0.. {
        let scratch = format!("scratch-{round}-{step}");
        let batch = vectors(&mut rng, "v", &format!("r{round}s{step}"), 300);
        let keys: Vec<String> = batch.iter().map(|i| i.key.clone()).collect();
        match client.ingest(tokio_stream::iter(batch)).await {
            Ok(_) => ack
                .keys
                .extend(keys.into_iter().map(|k| ("v".to_string(), k))),
            Err(_) => return,
        }
        let query = pb::Query {
            source: Some(pb::query::Source::Vector(pb::Vector {
                values: vec![0.1; DIM],
            })),
        };
        if client
            .search(pb::SearchRequest {
                pool: "v".into(),
                queries: vec![query],
                k: 10,
                ..Default::default()
            })
            .await
            .is_err()
        {
            return;
        }
        if round % 3 == 2 {
            let created = client
                .create_pool(pb::CreatePoolRequest {
                    name: scratch.clone(),
                    dim: DIM as u32,
                    ..Default::default()
                })
                .await;
            if created.is_err() {
                return;
            }
            ack.deleted.remove(&scratch);
            let batch = vectors(&mut rng, &scratch, "x", 500);
            if client.ingest(tokio_stream::iter(batch)).await.is_err() {
                return;
            }
            match client
                .delete_pool(pb::DeletePoolRequest {
                    name: scratch.clone(),
                })
                .await
            {
                Ok(_) => {
                    ack.deleted.insert(scratch);
                }
                Err(_) => return,
            }
        }
    }
}

/// Every pool opens and passes the deep check; every acknowledged key is there (those of the
/// last round one by one, older ones by count and a sample: they were checked one by one
/// before, and rows are never removed from `v`); every pool whose deletion was acknowledged
/// is gone.
fn check(data: &Path, ack: &Acknowledged, checked: usize, round: usize, rng: &mut StdRng) {
    let store = Store::open(data).unwrap_or_else(|e| panic!("round {round}: {e}"));
    for record in store.pools().unwrap() {
        let pool = store
            .open_pool(&record.name)
            .unwrap_or_else(|e| panic!("round {round}: pool {}: {e}", record.name));
        pool.verify_deep()
            .unwrap_or_else(|e| panic!("round {round}: pool {}: {e}", record.name));
        assert!(
            !ack.deleted.contains(&record.name),
            "round {round}: deleted pool {} is back",
            record.name
        );
    }
    let v = store.open_pool("v").unwrap();
    assert!(
        v.len() >= ack.keys.len(),
        "round {round}: {} rows for {} acknowledged",
        v.len(),
        ack.keys.len()
    );
    let sample = (0..1000.min(checked)).map(|_| &ack.keys[rng.gen_range(0..checked)]);
    let missing: Vec<&String> = ack.keys[checked..]
        .iter()
        .chain(sample)
        .filter(|(_, k)| v.row_of_key(k).unwrap().is_none())
        .map(|(_, k)| k)
        .collect();
    assert!(
        missing.is_empty(),
        "round {round}: {} acknowledged rows lost, first {:?}",
        missing.len(),
        missing.first()
    );
}

/// `dcd vectors import` killed at a random point, then run again to the end: every row once.
fn import_round(data: &Path, file: &Path, keys: &Path, rng: &mut StdRng, n: usize) {
    let import = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcd"));
        cmd.arg("--data-dir")
            .arg(data)
            .args([
                "--log",
                "error",
                "vectors",
                "import",
                "--pool",
                "imp",
                "--batch",
                "500",
                "--no-index",
                "--file",
            ])
            .arg(file)
            .arg("--keys")
            .arg(keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let mut child = import().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(rng.gen_range(5..120)));
    let _ = child.kill();
    let _ = child.wait();
    assert!(import().status().unwrap().success(), "the import resumes");
    let store = Store::open(data).unwrap();
    let pool = store.open_pool("imp").unwrap();
    assert_eq!(pool.verify_deep().unwrap(), n as u64);
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let rounds: usize = std::env::var("DCD_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let (data, images) = (base.join("data"), base.join("images"));
    common::write_pool(&images, 20, 60, 3);
    // The pools the rounds fill, made once.
    {
        let server = common::ServerProcess::start(&data, &base, &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut client = pb::dcd_client::DcdClient::connect(server.url.clone())
                .await
                .unwrap();
            common::raw_pool(&mut client, "v", DIM).await;
            common::image_pool(&mut client, "img").await;
        });
        server.kill();
    }
    // The import rounds' own data dir and file.
    let imp_data = base.join("imp-data");
    let n_imp = 20_000;
    let imp_file = base.join("imp.npy");
    let mut rng = StdRng::seed_from_u64(20);
    let rows: Vec<f32> = (0..n_imp * DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
    dcd::formats::write_npy(&imp_file, &dcd::types::Matrix::new(n_imp, DIM, rows)).unwrap();
    let imp_keys = base.join("imp.keys");
    std::fs::write(
        &imp_keys,
        (0..n_imp).map(|i| format!("i{i}\n")).collect::<String>(),
    )
    .unwrap();

    let mut ack = Acknowledged::default();
    let mut checked = 0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..rounds {
        if round % 4 == 3 {
            // A fresh pool each time, so every import starts, is cut, and resumes.
            if imp_data.exists() {
                std::fs::remove_dir_all(&imp_data).unwrap();
            }
            dcd::store::Store::open(&imp_data)
                .unwrap()
                .create_pool(&dcd::store::PoolSpec::raw(
                    "imp",
                    DIM,
                    dcd::types::Dtype::F32,
                ))
                .unwrap();
            import_round(&imp_data, &imp_file, &imp_keys, &mut rng, n_imp);
            continue;
        }
        let server = common::ServerProcess::start(&data, &base, &[]);
        let kill_after = Duration::from_millis(rng.gen_range(20..900));
        let seed = rng.gen();
        rt.block_on(async {
            let work = workload(server.url.clone(), round, seed, images.clone(), &mut ack);
            let _ = tokio::time::timeout(kill_after, work).await;
        });
        server.kill();
        check(&data, &ack, checked, round, &mut rng);
        checked = ack.keys.len();
    }
    println!(
        "{rounds} kills; {} acknowledged rows all present; {} acknowledged deletions held",
        ack.keys.len(),
        ack.deleted.len()
    );
}
