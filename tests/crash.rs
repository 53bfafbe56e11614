//! Kill -9 at random moments: a child process appends batches (and saves the HNSW index now
//! and then) in a loop; the parent kills it with SIGKILL, reopens the pool and checks that it
//! is consistent, that no row reported committed is lost, and that every row holds exactly
//! the vector its key was written with. The index must reopen caught up with the store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dcd::index::graph::{HnswGraph, HnswParams};
use dcd::index::manager::{self, Engine};
use dcd::index::AnnIndex;
use dcd::store::{NewItem, PoolSpec, Store};
use dcd::types::{Dtype, Matrix};
use rand::{Rng, SeedableRng};

const DIM: usize = 24;
const CHILD_ENV: &str = "DCD_CRASH_CHILD_DIR";

/// The vector a key is always written with, so a torn or misplaced row is detectable.
fn vector_for(key: &str) -> Vec<f32> {
    let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Runs only when the parent test launches this binary as the child.
#[test]
#[ignore = "helper: run by kill9_at_random_moments_never_loses_committed_rows"]
fn child_append_loop() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("DCD_CRASH_ROUND").unwrap().parse().unwrap();
    let store = Store::open(std::path::Path::new(&dir)).unwrap();
    let mut pool = store.open_pool("crash").unwrap();
    let mut graph = HnswGraph::new(
        DIM,
        HnswParams {
            ef_construction: 32,
            ..HnswParams::default()
        },
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(round);
    for batch in 0.. {
        let n = rng.gen_range(1..300);
        let items: Vec<NewItem> = (0..n)
            .map(|i| NewItem {
                key: format!("r{round}-b{batch}-{i}"),
                label: Some(format!("l{}", i % 5)),
                ..NewItem::default()
            })
            .collect();
        let data: Vec<f32> = items.iter().flat_map(|it| vector_for(&it.key)).collect();
        let rows = pool.append(&Matrix::new(n, DIM, data), &items).unwrap();
        println!("committed {}", rows.end);
        if batch % 4 == 3 {
            manager::catch_up(&pool, &mut graph).unwrap();
            println!("indexed {}", graph.len());
        }
    }
}

#[test]
fn kill9_at_random_moments_never_loses_committed_rows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .create_pool(&PoolSpec {
                weights: None,
                pooling: None,
                name: "crash".into(),
                dim: DIM,
                dtype: Dtype::F32,
                backbone: None,
            })
            .unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let rounds = 24;
    let mut total_kills = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "child_append_loop",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("DCD_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last_committed = 0u64;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("committed ") {
                    last_committed = n.parse().unwrap();
                }
            }
            last_committed
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        total_kills += 1;
        let acknowledged = reader.join().unwrap();

        let store = Store::open(dir.path()).unwrap();
        let pool = store.open_pool("crash").unwrap();
        let rows = pool.verify().unwrap();
        assert!(
            rows >= acknowledged,
            "round {round}: {rows} rows after reopen but {acknowledged} were committed"
        );
        let all: Vec<u32> = (0..rows as u32).collect();
        let items = pool.items(&all).unwrap();
        assert_eq!(items.len() as u64, rows);
        for it in &items {
            assert_eq!(
                pool.vectors().row_f32(it.row as usize),
                vector_for(&it.key),
                "round {round}: row {} does not hold the vector of {}",
                it.row,
                it.key
            );
        }
        let index = manager::open(&pool, Engine::Native, HnswParams::default()).unwrap();
        assert_eq!(
            index.len() as u64,
            rows,
            "round {round}: index not caught up"
        );
    }
    assert!(total_kills >= 20);
}
