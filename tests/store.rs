//! Pool storage: create/list/delete, durable appends, and every bad input leaving the pool
//! as it was.

use dcd::store::{NewItem, PoolSpec, Store, StoreError};
use dcd::synth;
use dcd::types::{Dtype, Matrix};

fn spec(name: &str, dim: usize, dtype: Dtype) -> PoolSpec {
    PoolSpec {
        weights: None,
        pooling: None,
        name: name.into(),
        dim,
        dtype,
        backbone: None,
    }
}

fn items(prefix: &str, n: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            key: format!("{prefix}{i}"),
            label: Some(format!("label{}", i % 3)),
            content_hash: None,
            metadata: Some(format!("{{\"i\": {i}}}")),
        })
        .collect()
}

#[test]
fn create_append_reopen_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_pool(&spec("p1", 8, Dtype::F32)).unwrap();
        let mut pool = store.open_pool("p1").unwrap();
        let v = synth::uniform(10, 8, 1);
        assert_eq!(pool.append(&v, &items("a", 10)).unwrap(), 0..10);
        let w = synth::uniform(5, 8, 2);
        assert_eq!(pool.append(&w, &items("b", 5)).unwrap(), 10..15);
        assert_eq!(pool.len(), 15);
        assert_eq!(pool.vectors().row_f32(12), w.row(2));
    }
    let store = Store::open(dir.path()).unwrap();
    let pool = store.open_pool("p1").unwrap();
    assert_eq!(pool.verify().unwrap(), 15);
    assert_eq!(pool.vectors().row_f32(3), synth::uniform(10, 8, 1).row(3));
    let it = &pool.items(&[11]).unwrap()[0];
    assert_eq!(it.key, "b1");
    assert_eq!(it.label.as_deref(), Some("label1"));
    assert_eq!(pool.row_of_key("a7").unwrap(), Some(7));
    assert_eq!(
        pool.rows_with_labels(&["label0".into()]).unwrap(),
        vec![0, 3, 6, 9, 10, 13]
    );
    assert_eq!(pool.label_histogram().unwrap()["label2"], 4);
    drop(pool);
    assert_eq!(store.pools().unwrap().len(), 1);
    store.delete_pool("p1").unwrap();
    assert!(store.pools().unwrap().is_empty());
    assert!(!dir.path().join("pools/p1").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("pools")).unwrap().count(),
        0
    );
    assert!(matches!(
        store.open_pool("p1"),
        Err(StoreError::PoolNotFound { .. })
    ));
}

/// A deleted pool's folder moves aside before it is removed; what a crash leaves of it there
/// goes at the next open, and a pool whose name merely contains the marker stays.
#[test]
fn open_sweeps_deleted_pool_folders_left_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .create_pool(&spec("keep.deleted-x", 4, Dtype::F32))
            .unwrap();
    }
    let left = dir.path().join("pools/.deleted-p-00000000000000ff");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("vectors.bin"), b"partial").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!left.exists());
    assert!(dir.path().join("pools/keep.deleted-x").exists());
    assert_eq!(store.open_pool("keep.deleted-x").unwrap().len(), 0);
}

#[test]
fn f16_pools_store_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_pool(&spec("h", 16, Dtype::F16)).unwrap();
    let mut pool = store.open_pool("h").unwrap();
    let v = synth::uniform(4, 16, 3);
    pool.append(&v, &items("k", 4)).unwrap();
    let back = pool.vectors().row_f32(2);
    for (a, b) in back.iter().zip(v.row(2)) {
        assert!((a - b).abs() <= 1e-3, "{a} vs {b}");
    }
    let bytes = std::fs::metadata(dir.path().join("pools/h/vectors.bin"))
        .unwrap()
        .len();
    assert_eq!(bytes, 64 + 4 * 16 * 2);
}

#[test]
fn bad_pool_specs_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for bad in ["", ".hidden", "a/b", "../x", "space name", &"x".repeat(65)] {
        let e = store.create_pool(&spec(bad, 4, Dtype::F32)).unwrap_err();
        assert!(
            matches!(e, StoreError::InvalidPoolName { .. }),
            "{bad:?}: {e}"
        );
    }
    let e = store.create_pool(&spec("zero", 0, Dtype::F32)).unwrap_err();
    assert!(e.to_string().contains("between 1 and"), "{e}");
    store.create_pool(&spec("dup", 4, Dtype::F32)).unwrap();
    let e = store.create_pool(&spec("dup", 4, Dtype::F32)).unwrap_err();
    assert!(matches!(e, StoreError::PoolExists { .. }));
    assert!(e.to_string().contains("dcd pool delete dup"), "{e}");
    assert!(matches!(
        store.delete_pool("nope"),
        Err(StoreError::PoolNotFound { .. })
    ));
}

#[test]
fn rejected_batches_leave_the_pool_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_pool(&spec("p", 4, Dtype::F32)).unwrap();
    let mut pool = store.open_pool("p").unwrap();
    pool.append(&synth::uniform(3, 4, 1), &items("a", 3))
        .unwrap();

    let e = pool
        .append(&synth::uniform(2, 5, 1), &items("x", 2))
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::DimensionMismatch {
                expected: 4,
                got: 5,
                ..
            }
        ),
        "{e}"
    );

    let mut nan = synth::uniform(2, 4, 1);
    nan.data[5] = f32::NAN;
    let e = pool.append(&nan, &items("x", 2)).unwrap_err();
    assert!(matches!(e, StoreError::NonFinite { row: 1, col: 1 }), "{e}");
    let mut inf = synth::uniform(1, 4, 1);
    inf.data[0] = f32::INFINITY;
    assert!(matches!(
        pool.append(&inf, &items("x", 1)),
        Err(StoreError::NonFinite { .. })
    ));

    let e = pool
        .append(&synth::uniform(2, 4, 1), &items("x", 1))
        .unwrap_err();
    assert!(matches!(e, StoreError::ItemCountMismatch { .. }), "{e}");

    // A key already stored: the vector bytes written for the batch must be rolled back too.
    let e = pool
        .append(&synth::uniform(2, 4, 9), &items("a", 2))
        .unwrap_err();
    assert!(
        matches!(e, StoreError::DuplicateKey { ref key, .. } if key == "a0"),
        "{e}"
    );
    // A key repeated inside one batch.
    let mut twice = items("n", 2);
    twice[1].key = "n0".into();
    assert!(matches!(
        pool.append(&synth::uniform(2, 4, 9), &twice),
        Err(StoreError::DuplicateKey { .. })
    ));

    let mut bad_meta = items("m", 1);
    bad_meta[0].metadata = Some("{not json".into());
    assert!(matches!(
        pool.append(&synth::uniform(1, 4, 9), &bad_meta),
        Err(StoreError::InvalidMetadata { .. })
    ));

    assert_eq!(pool.len(), 3);
    assert_eq!(pool.verify().unwrap(), 3);
    let len = std::fs::metadata(dir.path().join("pools/p/vectors.bin"))
        .unwrap()
        .len();
    assert_eq!(len, 64 + 3 * 4 * 4, "rolled-back bytes must be gone");
    // And the pool still takes good data afterwards.
    pool.append(&synth::uniform(1, 4, 5), &items("ok", 1))
        .unwrap();
    drop(pool);
    assert_eq!(store.open_pool("p").unwrap().verify().unwrap(), 4);
}

#[test]
fn uncommitted_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_pool(&spec("p", 4, Dtype::F32)).unwrap();
    let mut pool = store.open_pool("p").unwrap();
    pool.append(&synth::uniform(3, 4, 1), &items("a", 3))
        .unwrap();
    drop(pool);
    // What a crash between the vector write and the catalog commit leaves behind.
    let path = dir.path().join("pools/p/vectors.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[7u8; 40]);
    std::fs::write(&path, &bytes).unwrap();
    let pool = store.open_pool("p").unwrap();
    assert_eq!(pool.verify().unwrap(), 3);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 + 3 * 16);
}

#[test]
fn damaged_files_give_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_pool(&spec("t", 4, Dtype::F32)).unwrap();
    let mut pool = store.open_pool("t").unwrap();
    pool.append(&synth::uniform(3, 4, 1), &items("a", 3))
        .unwrap();
    drop(pool);
    let path = dir.path().join("pools/t/vectors.bin");
    let good = std::fs::read(&path).unwrap();

    std::fs::write(&path, &good[..64 + 16]).unwrap();
    let e = store.open_pool("t").err().unwrap();
    assert!(
        matches!(
            e,
            StoreError::TruncatedVectorFile {
                found: 1,
                committed: 3,
                ..
            }
        ),
        "{e}"
    );

    let mut foreign = good.clone();
    foreign[..8].copy_from_slice(b"NOTOURS!");
    std::fs::write(&path, &foreign).unwrap();
    let e = store.open_pool("t").err().unwrap();
    assert!(e.to_string().contains("not a valid dcd vector file"), "{e}");

    let mut flipped = good.clone();
    flipped[16] ^= 0xff; // the dimension, covered by the checksum
    std::fs::write(&path, &flipped).unwrap();
    let e = store.open_pool("t").err().unwrap();
    assert!(e.to_string().contains("checksum"), "{e}");

    std::fs::write(&path, &good).unwrap();
    assert_eq!(store.open_pool("t").unwrap().verify().unwrap(), 3);
}

#[test]
fn an_unreadable_catalog_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("catalog.sqlite"),
        b"this is not sqlite, just bytes",
    )
    .unwrap();
    let e = Store::open(dir.path()).err().unwrap();
    assert!(matches!(e, StoreError::CatalogUnreadable { .. }), "{e}");
    assert!(e.to_string().contains("restore it from a backup"), "{e}");
    let bytes = std::fs::read(dir.path().join("catalog.sqlite")).unwrap();
    assert_eq!(bytes, b"this is not sqlite, just bytes");
}

#[test]
fn a_data_dir_is_locked_to_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    let e = Store::open(dir.path()).err().unwrap();
    assert!(matches!(e, StoreError::DataDirLocked { .. }), "{e}");
    drop(first);
    Store::open(dir.path()).unwrap();
}

/// A folder the catalog does not know (an interrupted create, or a lost catalog's data) is
/// moved aside and kept, never deleted, when a pool of its name is created.
#[test]
fn a_stale_folder_without_catalog_row_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join("pools/left")).unwrap();
    std::fs::write(dir.path().join("pools/left/vectors.bin"), b"precious").unwrap();
    store.create_pool(&spec("left", 4, Dtype::F32)).unwrap();
    let mut pool = store.open_pool("left").unwrap();
    pool.append(&Matrix::new(1, 4, vec![1.0; 4]), &items("a", 1))
        .unwrap();
    assert_eq!(pool.verify().unwrap(), 1);
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("pools"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".orphan-left-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(kept[0].join("vectors.bin")).unwrap(),
        b"precious"
    );
    // And it survives the next open's sweep.
    drop(pool);
    drop(store);
    Store::open(dir.path()).unwrap();
    assert!(kept[0].join("vectors.bin").exists());
}

/// B14: a foreign vectors.bin (another pool's, or another dimension) was truncated to the
/// catalog's count before anything checked it, and a same-dimension one was served under
/// this pool's keys. It is refused now, byte for byte untouched.
#[test]
fn a_foreign_vector_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (name, dim, rows) in [("mine", 4, 2), ("other", 4, 5), ("wide", 8, 5)] {
        store.create_pool(&spec(name, dim, Dtype::F32)).unwrap();
        let mut pool = store.open_pool(name).unwrap();
        pool.append(
            &Matrix::new(rows, dim, vec![1.5; rows * dim]),
            &items(name, rows),
        )
        .unwrap();
    }
    let mine = dir.path().join("pools/mine/vectors.bin");
    let original = std::fs::read(&mine).unwrap();
    for foreign in ["other", "wide"] {
        let theirs =
            std::fs::read(dir.path().join(format!("pools/{foreign}/vectors.bin"))).unwrap();
        std::fs::write(&mine, &theirs).unwrap();
        let e = store.open_pool("mine").err().unwrap();
        assert!(
            matches!(e, StoreError::CorruptVectorFile { .. }),
            "{foreign}: {e}"
        );
        assert!(
            e.to_string().contains("not this pool's") || e.to_string().contains("another pool"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&mine).unwrap(),
            theirs,
            "{foreign}: the file was changed"
        );
    }
    std::fs::write(&mine, &original).unwrap();
    assert_eq!(store.open_pool("mine").unwrap().verify().unwrap(), 2);
}

/// A catalog that lost an item row: keys would shift onto the wrong vectors, so the pool is
/// refused at open, and a lookup of rows never pairs a key with another row.
#[test]
fn a_missing_item_row_is_caught_not_shifted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_pool(&spec("p", 2, Dtype::F32)).unwrap();
        let mut pool = store.open_pool("p").unwrap();
        pool.append(&Matrix::new(3, 2, vec![0.5; 6]), &items("k", 3))
            .unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        conn.execute("DELETE FROM items WHERE row_id = 1", [])
            .unwrap();
        let e = pool.items(&[0, 1, 2]).unwrap_err();
        assert!(matches!(e, StoreError::MissingItem { row: 1, .. }), "{e}");
    }
    let store = Store::open(dir.path()).unwrap();
    let e = store.open_pool("p").err().unwrap();
    assert!(
        matches!(
            e,
            StoreError::ItemsDisagree {
                rows: 3,
                items: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_version_1_catalog_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut pool = store
            .create_pool(&spec("old", 2, Dtype::F32))
            .and_then(|_| store.open_pool("old"))
            .unwrap();
        pool.append(&Matrix::new(3, 2, vec![0.0; 6]), &items("k", 3))
            .unwrap();
    }
    // Turn the catalog back into what the version-1 schema wrote.
    {
        let conn = rusqlite::Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        conn.execute_batch(
            "DROP TABLE job_entries; DROP TABLE jobs;
             ALTER TABLE pools DROP COLUMN weights; ALTER TABLE pools DROP COLUMN pooling;
             ALTER TABLE pools DROP COLUMN uid;
             UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let pool = store.open_pool("old").unwrap();
    assert_eq!(pool.verify().unwrap(), 3);
    assert_eq!(pool.record().weights, None);
    // Pools from before identities keep none, and still open.
    assert_eq!(pool.record().uid, None);
    let job = store
        .create_job("old", &dcd::store::JobSource::Folder("/x".into()), 100)
        .unwrap();
    assert_eq!(
        store.job(&job.id).unwrap().state,
        dcd::store::JobState::Pending
    );
}

#[test]
fn a_catalog_whose_creation_was_killed_reopens() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    // What a build that created the schema statement by statement left when killed before
    // writing its version: the tables, no version, no job tables.
    let catalog = dir.path().join("catalog.sqlite");
    {
        let conn = rusqlite::Connection::open(&catalog).unwrap();
        conn.execute_batch("DROP TABLE job_entries; DROP TABLE jobs; DELETE FROM meta;")
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    store.create_pool(&spec("p", 2, Dtype::F32)).unwrap();
    store
        .create_job("p", &dcd::store::JobSource::Folder("/x".into()), 100)
        .unwrap();
    drop(store);

    // Without its version but holding a pool, it is not an interrupted creation: refused, and
    // left as it was.
    {
        let conn = rusqlite::Connection::open(&catalog).unwrap();
        conn.execute_batch("DROP TABLE job_entries; DROP TABLE jobs; DELETE FROM meta;")
            .unwrap();
    }
    let e = Store::open(dir.path()).err().unwrap();
    assert!(matches!(e, StoreError::CatalogUnreadable { .. }), "{e}");
    assert!(e.to_string().contains("schema version none"), "{e}");
    let conn = rusqlite::Connection::open(&catalog).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('jobs', 'job_entries')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "a refused catalog is not written to");
}

/// B13: jobs piled up without bound (GetPool failed for good at ~2,250). Creating a job
/// forgets the pool's finished jobs beyond the newest ones kept, entries included; running
/// and pending jobs are never forgotten.
#[test]
fn old_finished_jobs_are_forgotten_when_new_ones_start() {
    use dcd::store::{JobSource, JobState};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_pool(&spec("p", 2, Dtype::F32)).unwrap();
    let pending = store
        .create_job("p", &JobSource::Folder("/pending".into()), 5)
        .unwrap();
    for i in 0..12 {
        let job = store
            .create_job("p", &JobSource::Folder(format!("/f{i}").into()), 5)
            .unwrap();
        store
            .set_job_state(&job.id, JobState::Succeeded, None)
            .unwrap();
    }
    // 4 finished kept before the last create, plus the last one, plus the pending one.
    assert_eq!(store.job_count("p").unwrap(), 6);
    assert_eq!(store.job(&pending.id).unwrap().state, JobState::Pending);
    let newest = store.jobs_of_pool("p", 3).unwrap();
    assert_eq!(newest.len(), 3);
}

/// A read-only open (beside a running server, or of a read-only copy) takes no lock,
/// repairs nothing, writes nothing, and refuses writes with a reason; it reads the committed
/// rows, not the uncommitted tail an interrupted append left.
#[test]
fn a_read_only_open_reads_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    writer.create_pool(&spec("p", 4, Dtype::F32)).unwrap();
    let mut pool = writer.open_pool("p").unwrap();
    pool.append(&Matrix::new(3, 4, vec![0.25; 12]), &items("k", 3))
        .unwrap();
    // An append that wrote its bytes and died before its commit.
    let vectors = dir.path().join("pools/p/vectors.bin");
    let mut bytes = std::fs::read(&vectors).unwrap();
    bytes.extend_from_slice(&[7u8; 16]);
    std::fs::write(&vectors, &bytes).unwrap();
    let snapshot = |p: &std::path::Path| {
        let mut all: Vec<(String, Vec<u8>)> = walk_files(p);
        all.sort();
        all
    };
    let before = snapshot(dir.path());

    // The writer still holds the lock: a second read-write open is refused, a read-only one
    // is not.
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::DataDirLocked { .. })
    ));
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(reader.is_read_only());
    let read = reader.open_pool("p").unwrap();
    assert_eq!(read.verify_deep().unwrap(), 3);
    assert_eq!(read.vectors().row_f32(2), vec![0.25; 4]);
    assert_eq!(read.row_of_key("k1").unwrap(), Some(1));
    let e = reader.create_pool(&spec("q", 4, Dtype::F32)).err().unwrap();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
    assert!(e.to_string().contains("--server"), "{e}");
    let mut read = read;
    let e = read
        .append(&Matrix::new(1, 4, vec![1.0; 4]), &items("z", 1))
        .unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
    drop((read, reader));
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a read-only open changed a file"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else if !p.to_string_lossy().contains("catalog.sqlite") {
            // SQLite's own files change with any reader's locks; the catalog's content is
            // checked through the store above.
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}
