//! Saved debug-train sets through the service: a set saved with its manifest reads back with
//! the items it was built with, rebuilds from the manifest to the same items in the same
//! order, survives a reopen, lists, compares with another round (added, removed,
//! relabelled) and deletes — alone or with its pool. Names that are taken or unusable, and
//! parents that do not exist, are refused with nothing stored.

mod common;

use std::sync::Arc;

use dcd::debugset::{ErrorLabel, LabelPolicy};
use dcd::error_kind::ErrorKind;
use dcd::service::{CreatePool, DebugSetRequest, ErrorSample, QueryInput, Service, ServiceError};
use dcd::store::{NewItem, StoreError};
use dcd::types::{Dtype, Matrix};
use rand::{Rng, SeedableRng};

const DIM: usize = 12;

fn open(dir: &std::path::Path) -> Arc<Service> {
    Service::open(
        dir,
        dcd::app::settings(
            dcd::service::AllowedRoots::Any,
            &common::cpu_runtime(),
            None,
        ),
    )
    .unwrap()
}

/// A pool of 800 clustered vectors, a fifth of their weak labels wrong.
fn fill(service: &Service, name: &str) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let centers: Vec<Vec<f32>> = (0..3)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-5.0..5.0)).collect())
        .collect();
    service
        .create_pool(&CreatePool {
            name: name.into(),
            backbone: None,
            weights: None,
            pooling: None,
            dim: Some(DIM),
            dtype: Dtype::F32,
        })
        .unwrap();
    let (mut data, mut items) = (Vec::new(), Vec::new());
    for i in 0..800 {
        let c = i % centers.len();
        data.extend(centers[c].iter().map(|x| x + rng.gen_range(-1.2..1.2)));
        let label = if rng.gen::<f32>() < 0.2 {
            (c + 1) % 3
        } else {
            c
        };
        items.push(NewItem {
            key: format!("{name}/{i}"),
            label: Some(format!("c{label}")),
            ..Default::default()
        });
    }
    service
        .pool(name)
        .unwrap()
        .append(&Matrix::new(items.len(), DIM, data), &items, None)
        .unwrap();
}

fn request(service: &Service, k: usize) -> DebugSetRequest {
    let rows = service
        .pool("p")
        .unwrap()
        .rows()
        .unwrap()
        .vectors(&[0, 1, 2, 3, 4, 5])
        .unwrap();
    let mut errors: Vec<ErrorSample> = rows
        .iter_rows()
        .enumerate()
        .map(|(i, v)| ErrorSample {
            input: QueryInput::Vector(v.iter().map(|x| x + 0.2).collect()),
            truth: ErrorLabel {
                label: Some(format!("c{}", i % 3)),
                weight: 1.0 + i as f32 / 10.0,
            },
        })
        .collect();
    errors.push(ErrorSample {
        input: QueryInput::Key("p/9".into()),
        truth: ErrorLabel {
            label: None,
            weight: 1.0,
        },
    });
    let mut req = DebugSetRequest::new("p", errors, k);
    req.negatives = vec![QueryInput::Key("p/30".into())];
    req.exclude_keys = vec!["p/3".into()];
    req.label_policy = Some(LabelPolicy::Replace);
    req.dedup_distance = Some(0.05);
    req.max_distance_percentile = Some(0.99);
    req.merge.budget = Some(40);
    req
}

fn keys_and_labels(items: &[dcd::store::SavedItem]) -> Vec<(String, Option<String>)> {
    items
        .iter()
        .map(|i| (i.key.clone(), i.train_label.clone()))
        .collect()
}

#[test]
fn a_saved_set_reads_back_rebuilds_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path());
    fill(&service, "p");
    let (built, record) = service
        .build_and_save_debug_set(&request(&service, 12), "round-1", None)
        .unwrap();
    assert!(built.items.len() > 10, "{} items", built.items.len());
    assert_eq!(record.items, built.items.len() as u64);

    let saved = service.saved_debug_set("round-1").unwrap();
    let built_items: Vec<(String, Option<String>)> = built
        .items
        .iter()
        .map(|i| (i.key.clone(), i.train_label().map(str::to_owned)))
        .collect();
    assert_eq!(keys_and_labels(&saved.items), built_items);
    let m = &saved.manifest;
    assert_eq!(m.pool.name, "p");
    assert_eq!(m.pool.rows, 800);
    assert_eq!(m.pool.dim, DIM);
    assert!(m.pool.uid.is_some());
    assert_eq!(m.dcd_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(m.request.k, 12);
    assert_eq!(m.request.merge.budget, Some(40));
    assert_eq!(m.request.label_policy, Some(LabelPolicy::Replace));
    assert_eq!(m.errors.len(), 7);
    assert_eq!(m.errors[6].sent, "key");
    assert_eq!(m.errors[6].digest, "p/9");
    assert_eq!(m.errors[0].sent, "vector");
    assert_eq!(m.errors[0].digest.len(), 64);
    assert_eq!(m.errors[3].weight, 1.3);
    assert!(m
        .errors
        .iter()
        .all(|e| e.vector.as_ref().map(Vec::len) == Some(DIM)));
    assert_eq!(m.negatives.len(), 1);
    assert_eq!(saved.summary["excluded"], 1);

    // The manifest alone builds the same set, in the same order.
    let again = service.rebuild_saved_debug_set("round-1").unwrap();
    let again: Vec<(String, Option<String>)> = again
        .items
        .iter()
        .map(|i| (i.key.clone(), i.train_label().map(str::to_owned)))
        .collect();
    assert_eq!(again, built_items);

    // A second round with other parameters, its parent recorded, compared with the first.
    let mut wider = request(&service, 30);
    wider.merge.budget = Some(60);
    wider.label_policy = Some(LabelPolicy::Keep);
    let (second, rec2) = service
        .build_and_save_debug_set(&wider, "round-2", Some("round-1"))
        .unwrap();
    assert_eq!(rec2.parent.as_deref(), Some("round-1"));
    let d = service.diff_saved_debug_sets("round-1", "round-2").unwrap();
    let first: std::collections::HashSet<&str> =
        built.items.iter().map(|i| i.key.as_str()).collect();
    let then: std::collections::HashSet<&str> =
        second.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(d.added.len(), then.difference(&first).count());
    assert_eq!(d.removed.len(), first.difference(&then).count());
    assert!(!d.added.is_empty(), "a wider round adds items");
    assert!(
        !d.relabelled.is_empty(),
        "keep hands weak labels that replace changed"
    );
    for (a, b) in &d.relabelled {
        assert_eq!(a.key, b.key);
        assert_ne!(a.train_label, b.train_label);
    }

    // Listed newest first; by pool.
    let names = |service: &Service, pool| {
        service
            .saved_debug_sets(pool)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&service, None), ["round-2", "round-1"]);
    assert_eq!(names(&service, Some("p")).len(), 2);
    assert!(names(&service, Some("other")).is_empty());

    // Stored: a reopened service reads the same set.
    drop(service);
    let service = open(dir.path());
    let reread = service.saved_debug_set("round-1").unwrap();
    assert_eq!(reread.items, saved.items);

    service.delete_saved_debug_set("round-1").unwrap();
    let e = service.saved_debug_set("round-1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(names(&service, None), ["round-2"]);
}

#[test]
fn bad_names_and_parents_are_refused_and_a_pool_takes_its_sets() {
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path());
    fill(&service, "p");
    fill(&service, "q");
    let req = request(&service, 8);
    service.build_and_save_debug_set(&req, "s", None).unwrap();

    let e = service
        .build_and_save_debug_set(&req, "s", None)
        .unwrap_err();
    assert!(
        matches!(e, ServiceError::Store(StoreError::SetExists { .. })),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    for bad in ["", "a b", "../x", &"n".repeat(200)] {
        let e = service
            .build_and_save_debug_set(&req, bad, None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
    }
    let e = service
        .build_and_save_debug_set(&req, "t", Some("missing"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(service.saved_debug_sets(None).unwrap().len(), 1);
    let e = service.diff_saved_debug_sets("s", "missing").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // The other pools a request names are recorded as they were.
    let mut with_negatives = request(&service, 8);
    with_negatives.negative_pool = Some("q".into());
    service
        .build_and_save_debug_set(&with_negatives, "with-negatives", None)
        .unwrap();
    let m = service.saved_debug_set("with-negatives").unwrap().manifest;
    assert_eq!(m.other_pools["negative_pool"].name, "q");
    assert_eq!(m.other_pools["negative_pool"].rows, 800);
    assert_eq!(m.other_pools.len(), 1);
    service.delete_saved_debug_set("with-negatives").unwrap();

    let mut on_q = request(&service, 8);
    on_q.pool = "q".into();
    on_q.errors
        .retain(|e| !matches!(e.input, QueryInput::Key(_)));
    on_q.negatives.clear();
    service
        .build_and_save_debug_set(&on_q, "on-q", None)
        .unwrap();
    service.delete_pool("p").unwrap();
    let left: Vec<String> = service
        .saved_debug_sets(None)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left, ["on-q"]);
}
