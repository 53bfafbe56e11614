//! Saved debug-train sets through the service: a set saved with its manifest reads back with
//! the items it was built with, rebuilds from the manifest to the same items in the same
//! order, survives a reopen, lists, compares with another round (added, removed,
//! relabelled) and deletes — alone or with its pool. Names that are taken or unusable, and
//! parents that do not exist, are refused with nothing stored. Reviews (one item or in
//! bulk, kept with their history), rounds built from them (acceptances as error samples,
//! rejections as negatives, reviewed items left out, carried along the chain, rebuilt
//! exactly) and the export of what was accepted.

mod common;

use std::sync::Arc;

use dcd::debugset::{ErrorLabel, LabelPolicy};
use dcd::error_kind::ErrorKind;
use dcd::service::{
    next_round_request, CreatePool, DebugSetRequest, ErrorSample, ItemSelector, QueryInput,
    ReviewRequest, Service, ServiceError,
};
use dcd::store::{NewItem, StoreError, Verdict};
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

fn keys_of(set: &dcd::service::SavedDebugSet) -> Vec<String> {
    set.items.iter().map(|i| i.key.clone()).collect()
}

fn review(
    service: &Service,
    set: &str,
    select: ItemSelector,
    verdict: Verdict,
    reviewer: &str,
) -> Result<usize, ServiceError> {
    service.review_debug_set(&ReviewRequest {
        set: set.into(),
        select,
        verdict,
        reviewer: reviewer.into(),
    })
}

fn by_keys(keys: &[String]) -> ItemSelector {
    ItemSelector {
        keys: keys.to_vec(),
        ..Default::default()
    }
}

/// A service on `dir` with pool `p` and the set `r1` saved from it.
fn with_first_round(dir: &std::path::Path) -> Arc<Service> {
    let service = open(dir);
    fill(&service, "p");
    service
        .build_and_save_debug_set(&request(&service, 12), "r1", None)
        .unwrap();
    service
}

#[test]
fn reviews_are_kept_with_history_and_bad_ones_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let service = with_first_round(dir.path());
    let set = service.saved_debug_set("r1").unwrap();
    let keys = keys_of(&set);
    assert!(set.items.iter().all(|i| !i.found_by.is_empty()));

    assert_eq!(
        review(&service, "r1", by_keys(&keys[..2]), Verdict::Accept, "ann").unwrap(),
        2
    );
    // Two reviewers on one item: both kept, the later one counts.
    review(&service, "r1", by_keys(&keys[2..3]), Verdict::Reject, "ann").unwrap();
    review(
        &service,
        "r1",
        by_keys(&keys[2..3]),
        Verdict::Relabel("c2".into()),
        "bob",
    )
    .unwrap();
    let history = service.review_history("r1").unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].reviewer, "bob");
    let latest = service.saved_debug_set("r1").unwrap().reviews;
    assert_eq!(latest.len(), 3);
    assert_eq!(latest[2].verdict, Verdict::Relabel("c2".into()));

    // Refused, nothing stored: a key the set lacks (beside one it has), a relabel without a
    // label, no selector, a set that does not exist.
    let e = review(
        &service,
        "r1",
        by_keys(&[keys[4].clone(), "p/not-in-set".into()]),
        Verdict::Reject,
        "ann",
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("p/not-in-set"), "{e}");
    let e = review(
        &service,
        "r1",
        by_keys(&keys[4..5]),
        Verdict::Relabel(" ".into()),
        "a",
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = review(
        &service,
        "r1",
        ItemSelector::default(),
        Verdict::Accept,
        "a",
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = review(&service, "nope", by_keys(&keys[..1]), Verdict::Accept, "a").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(service.review_history("r1").unwrap().len(), 4);

    // In bulk: every item of a weak label that nobody reviewed yet; then a clear.
    let label = set.items[5].label.clone().unwrap();
    let unreviewed_of_label = set
        .items
        .iter()
        .enumerate()
        .filter(|(i, it)| *i >= 3 && it.label.as_deref() == Some(label.as_str()))
        .map(|(_, it)| it.key.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let n = review(
        &service,
        "r1",
        ItemSelector {
            weak_label: Some(label.clone()),
            unreviewed_only: true,
            ..Default::default()
        },
        Verdict::Reject,
        "",
    )
    .unwrap();
    assert_eq!(n, unreviewed_of_label);
    let found_by_0 = set.items.iter().filter(|i| i.found_by.contains(&0)).count();
    let n = review(
        &service,
        "r1",
        ItemSelector {
            error_index: Some(0),
            ..Default::default()
        },
        Verdict::Clear,
        "ann",
    )
    .unwrap();
    assert_eq!(n, found_by_0);
    let latest = service.saved_debug_set("r1").unwrap().reviews;
    assert!(latest
        .iter()
        .all(|r| r.reviewer == "anonymous" || r.reviewer == "ann" || r.reviewer == "bob"));
    let by0: std::collections::HashSet<&str> = set
        .items
        .iter()
        .filter(|i| i.found_by.contains(&0))
        .map(|i| i.key.as_str())
        .collect();
    assert!(latest.iter().all(|r| !by0.contains(r.key.as_str())));

    // Reviews go with their set.
    service.delete_saved_debug_set("r1").unwrap();
    service
        .build_and_save_debug_set(&request(&service, 12), "r1", None)
        .unwrap();
    assert!(service.review_history("r1").unwrap().is_empty());
}

#[test]
fn rounds_follow_reviews_and_rebuild_from_their_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let service = with_first_round(dir.path());
    fill(&service, "q");
    let r1 = service.saved_debug_set("r1").unwrap();
    let keys = keys_of(&r1);
    let (accepted, rejected, relabelled) = (&keys[0..2], &keys[2..4], &keys[4..5]);
    review(&service, "r1", by_keys(accepted), Verdict::Accept, "ann").unwrap();
    review(&service, "r1", by_keys(rejected), Verdict::Reject, "ann").unwrap();
    review(
        &service,
        "r1",
        by_keys(relabelled),
        Verdict::Relabel("c1".into()),
        "ann",
    )
    .unwrap();

    // The next round: the parent's parameters and inputs, the reviews applied.
    let next = next_round_request("r1", &r1.manifest);
    let (r2, rec) = service.build_and_save_debug_set(&next, "r2", None).unwrap();
    assert_eq!(rec.parent.as_deref(), Some("r1"), "from_set is the parent");
    let round = r2.round.clone().unwrap();
    assert_eq!((round.accepted, round.rejected), (3, 2));
    assert!(round.inherited_inputs);
    assert_eq!(round.first_accepted_error, 7);
    assert_eq!(r2.coverage.len(), 10, "7 error samples + 3 accepted");
    let reviewed: std::collections::HashSet<&String> = keys[..5].iter().collect();
    assert!(r2.items.iter().all(|i| !reviewed.contains(&i.key)));
    assert_eq!(
        r2.excluded,
        1 + 5,
        "the request's own exclusion and the 5 reviewed"
    );
    let m2 = service.saved_debug_set("r2").unwrap().manifest;
    assert_eq!(m2.request.from_set.as_deref(), Some("r1"));
    let rejected_keys: Vec<String> = m2.carry.rejected.iter().map(|c| c.key.clone()).collect();
    assert_eq!(rejected_keys, rejected);
    let relabel = m2
        .carry
        .accepted
        .iter()
        .find(|c| c.key == relabelled[0])
        .unwrap();
    assert_eq!(relabel.label.as_deref(), Some("c1"));
    // The rejections are negatives: the round's request holds them as vectors.
    assert_eq!(r2.request.negatives.len(), 1 + 2);

    // Reviewing r1 further changes the next round, not the saved one: r2 rebuilds as saved.
    review(&service, "r1", by_keys(accepted), Verdict::Clear, "ann").unwrap();
    let again = service.rebuild_saved_debug_set("r2").unwrap();
    let order = |items: &[dcd::service::DebugItem]| -> Vec<String> {
        items.iter().map(|i| i.key.clone()).collect()
    };
    assert_eq!(order(&again.items), order(&r2.items));

    // A third round carries both reviews: r1's (as r2 recorded them) and r2's own.
    let r2_keys: Vec<String> = r2.items.iter().map(|i| i.key.clone()).collect();
    review(
        &service,
        "r2",
        by_keys(&r2_keys[..1]),
        Verdict::Reject,
        "bob",
    )
    .unwrap();
    let saved2 = service.saved_debug_set("r2").unwrap();
    let (r3, _) = service
        .build_and_save_debug_set(&next_round_request("r2", &saved2.manifest), "r3", None)
        .unwrap();
    let round = r3.round.unwrap();
    assert_eq!((round.accepted, round.rejected), (3, 3));
    let all_reviewed: std::collections::HashSet<&String> =
        keys[..5].iter().chain(&r2_keys[..1]).collect();
    assert!(r3.items.iter().all(|i| !all_reviewed.contains(&i.key)));

    // A round given its own error samples keeps them and adds the accepted ones.
    let mut own = request(&service, 12);
    own.from_set = Some("r1".into());
    own.accepted_weight = Some(0.5);
    let r = service.build_debug_set(&own).unwrap();
    let round = r.round.unwrap();
    assert!(!round.inherited_inputs);
    assert_eq!(
        round.accepted, 1,
        "r1's acceptances were cleared but the relabel"
    );

    // Refused: a parent of another pool, a parent that differs from from_set, a bad weight.
    let mut other = request(&service, 8);
    other.pool = "q".into();
    other
        .errors
        .retain(|e| !matches!(e.input, QueryInput::Key(_)));
    other.negatives.clear();
    other.from_set = Some("r1".into());
    let e = service.build_debug_set(&other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = service
        .build_and_save_debug_set(&next, "r4", Some("r2"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let mut bad = next.clone();
    bad.accepted_weight = Some(0.0);
    let e = service.build_debug_set(&bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(service.saved_debug_set("r4").is_err());
}

#[test]
fn export_writes_accepted_items_with_the_reviewers_label() {
    let dir = tempfile::tempdir().unwrap();
    let service = with_first_round(dir.path());
    let keys = keys_of(&service.saved_debug_set("r1").unwrap());
    review(&service, "r1", by_keys(&keys[..1]), Verdict::Accept, "a").unwrap();
    review(
        &service,
        "r1",
        by_keys(&keys[1..2]),
        Verdict::Relabel("zz".into()),
        "a",
    )
    .unwrap();
    review(&service, "r1", by_keys(&keys[2..3]), Verdict::Reject, "a").unwrap();
    let set = service.saved_debug_set("r1").unwrap();
    let rows = dcd::service::export::export_rows(&set, false);
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.key.as_str(), r.review)).collect();
    assert_eq!(
        got,
        [
            (keys[0].as_str(), "accepted"),
            (keys[1].as_str(), "relabelled")
        ]
    );
    assert_eq!(rows[1].label.as_deref(), Some("zz"));
    let all = dcd::service::export::export_rows(&set, true);
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(
        all.len(),
        distinct.len() - 1,
        "every item once but the rejected"
    );
}

#[test]
fn the_overview_maps_the_set_against_a_random_sample() {
    let dir = tempfile::tempdir().unwrap();
    let service = with_first_round(dir.path());
    let set = service.saved_debug_set("r1").unwrap();
    let o = service.set_overview("r1").unwrap();
    assert_eq!(o.items.len(), set.items.len());
    assert_eq!(o.random_items.len(), set.items.len());
    assert_eq!(o.errors.len(), 7);
    assert!(o.explained[0] >= o.explained[1] && o.explained[0] > 0.0);
    let n: u64 = o.random_labels.values().sum();
    assert_eq!(n as usize, set.items.len());
    // The set lies nearer to the failures than chance.
    let set_median = set.summary["distances"]["p50"].as_f64().unwrap() as f32;
    assert!(o.random_distances.unwrap().p50 > set_median);
    // The same sample every time.
    let again = service.set_overview("r1").unwrap();
    assert_eq!(again.random_items, o.random_items);
}
