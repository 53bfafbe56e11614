//! The debug-train set's rules through the real gRPC server. Labels: on a pool whose weak
//! labels are 30% wrong, error samples with true labels make the default policy hand training
//! far more right labels than plain nearest neighbours, `replace` relabels. Negatives (listed
//! or a whole pool) veto the candidates nearer to them than to the failures, and say which
//! negative did. A distance cap given as a percentile of the pool's own nearest-neighbour
//! distances is that distance, applied and echoed. Every bad label, weight, policy, negative or margin is refused with a clear
//! code and nothing stored changes.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::{Rng, SeedableRng};
use tonic::Code;

const DIM: usize = 32;
const POOL: &str = "noisy";

fn around(rng: &mut impl Rng, center: &[f32], spread: f32) -> Vec<f32> {
    center
        .iter()
        .map(|c| c + spread * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

/// The two halves of the failing slice: tight clusters of true class "a" and "b" close to
/// each other, plus background clusters; every weak label is right 70% of the time.
struct Fixture {
    items: Vec<pb::IngestItem>,
    centers: [Vec<f32>; 2],
}

const CLASSES: [&str; 4] = ["a", "b", "c", "d"];

fn fixture(seed: u64) -> Fixture {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let a: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-4.0..4.0)).collect();
    // 4 apart: far more than the clusters' own spread (about 1.4), far less than background.
    let step = 4.0 / (DIM as f32).sqrt();
    let b: Vec<f32> = a.iter().map(|x| x + step).collect();
    let background: Vec<Vec<f32>> = (0..10)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-12.0..12.0)).collect())
        .collect();
    let mut items = Vec::new();
    for i in 0..1200 {
        let (truth, values) = match i % 6 {
            0 => (0, around(&mut rng, &a, 0.3)),
            1 => (1, around(&mut rng, &b, 0.3)),
            _ => {
                let c = rng.gen_range(0..10);
                (rng.gen_range(0..4), around(&mut rng, &background[c], 1.0))
            }
        };
        let weak = if rng.gen::<f32>() < 0.7 {
            truth
        } else {
            (truth + rng.gen_range(1..4)) % 4
        };
        items.push(pb::IngestItem {
            pool: if i == 0 { POOL.into() } else { String::new() },
            key: format!("{}/{i}", CLASSES[truth]),
            label: CLASSES[weak].into(),
            metadata_json: String::new(),
            content: Some(pb::ingest_item::Content::Vector(pb::Vector { values })),
            ..Default::default()
        });
    }
    Fixture {
        items,
        centers: [a, b],
    }
}

fn sample(values: Vec<f32>, label: &str, weight: f32) -> pb::ErrorSample {
    pb::ErrorSample {
        source: Some(pb::error_sample::Source::Vector(pb::Vector { values })),
        label: label.into(),
        weight,
    }
}

/// Four error samples of each half, labelled with its true class.
fn labelled_errors(f: &Fixture, seed: u64) -> Vec<pb::ErrorSample> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..8)
        .map(|i| {
            sample(
                around(&mut rng, &f.centers[i % 2], 0.3),
                CLASSES[i % 2],
                0.0,
            )
        })
        .collect()
}

async fn server_with_pool(dir: &std::path::Path, f: &Fixture) -> TestServer {
    let server = TestServer::start(&dir.join("data"), dir, ServerOptions::default()).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, POOL, DIM).await;
    let s = client
        .ingest(tokio_stream::iter(f.items.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.stored, 1200);
    server
}

fn request(errors: Vec<pb::ErrorSample>, policy: pb::LabelPolicy) -> pb::BuildDebugSetRequest {
    pb::BuildDebugSetRequest {
        pool: POOL.into(),
        errors,
        k: 30,
        exact: true,
        label_policy: policy as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_error_samples_clean_the_labels_handed_to_training() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(3);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let errors = labelled_errors(&f, 11);

    let keep = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Keep))
        .await
        .unwrap()
        .into_inner();
    let default = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Unspecified))
        .await
        .unwrap()
        .into_inner();
    let replace = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Replace))
        .await
        .unwrap()
        .into_inner();
    let (acc_keep, acc_default, acc_replace) = (
        common::label_accuracy(&keep.items),
        common::label_accuracy(&default.items),
        common::label_accuracy(&replace.items),
    );
    println!(
        "sizes keep {} default {} replace {}; label accuracy {acc_keep:.3} {acc_default:.3} {acc_replace:.3}",
        keep.items.len(),
        default.items.len(),
        replace.items.len()
    );
    assert!(acc_keep < 0.8, "weak labels are 30% wrong: {acc_keep}");
    assert!(acc_default >= 0.95, "{acc_default}");
    assert!(acc_replace >= 0.95, "{acc_replace}");
    // Keep reports the vote and drops nothing; the default dropped exactly the implausible.
    let implausible = keep
        .items
        .iter()
        .filter(|i| i.weak_label_plausible == Some(false))
        .count();
    assert!(implausible > 0);
    assert!(keep.items.iter().all(|i| i.label_confidence.is_some()));
    assert_eq!(default.items.len(), keep.items.len() - implausible);
    assert!(default
        .items
        .iter()
        .all(|i| i.weak_label_plausible == Some(true) && i.suggested_label.is_none()));
    let summary = default.summary.unwrap();
    let funnel = summary.funnel.unwrap();
    assert_eq!(funnel.label_policy as usize, implausible);
    assert_eq!(funnel.kept as usize, default.items.len());
    let per_sample: u32 = summary
        .coverage
        .iter()
        .map(|c| c.funnel.as_ref().unwrap().label_policy)
        .sum();
    assert!(per_sample as usize >= implausible);
    assert_eq!(
        summary.parameters.unwrap().label_policy,
        pb::LabelPolicy::Drop as i32,
        "the default is echoed as applied"
    );
    // Replace keeps the items whose weak label was wrong, relabelled.
    let relabelled = replace
        .items
        .iter()
        .filter(|i| i.suggested_label.is_some())
        .count();
    assert!(relabelled > 0);
    assert!(replace.items.len() > default.items.len());
    // The summary counts the labels handed to training.
    let counted: u64 = replace.summary.unwrap().label_counts.values().sum();
    assert_eq!(counted as usize, replace.items.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlabelled_and_mixed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(5);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let mut errors = labelled_errors(&f, 12);
    // Unlabelled samples: no vote, every weak label kept, the policy echoed as keep.
    let plain: Vec<pb::ErrorSample> = errors
        .iter()
        .map(|e| pb::ErrorSample {
            label: String::new(),
            ..e.clone()
        })
        .collect();
    let set = client
        .build_debug_set(request(plain, pb::LabelPolicy::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert!(set
        .items
        .iter()
        .all(|i| i.label_confidence.is_none() && i.weak_label_plausible.is_none()));
    let summary = set.summary.unwrap();
    assert_eq!(
        summary.parameters.unwrap().label_policy,
        pb::LabelPolicy::Keep as i32
    );
    assert_eq!(summary.funnel.unwrap().label_policy, 0);
    // Mixed: the "b" half unlabelled. Its items have no vote and stay as they are; the "a"
    // half is judged.
    for e in errors.iter_mut().skip(1).step_by(2) {
        e.label.clear();
    }
    let set = client
        .build_debug_set(request(errors, pb::LabelPolicy::Drop))
        .await
        .unwrap()
        .into_inner();
    let b_items: Vec<&pb::DebugItem> = set
        .items
        .iter()
        .filter(|i| i.key.starts_with("b/"))
        .collect();
    assert!(b_items.iter().any(|i| i.label != "b"), "b kept unjudged");
    assert!(b_items.iter().all(|i| i.weak_label_plausible.is_none()));
    assert!(set
        .items
        .iter()
        .filter(|i| i.key.starts_with("a/"))
        .all(|i| i.label == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_labels_weights_and_policies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(9);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let good = labelled_errors(&f, 13);
    let with = |i: usize, e: pb::ErrorSample| {
        let mut errors = good.clone();
        errors[i] = e;
        request(errors, pb::LabelPolicy::Unspecified)
    };
    let v = f.centers[0].clone();
    let mut unlabelled_drop = request(
        good.iter()
            .map(|e| pb::ErrorSample {
                label: String::new(),
                ..e.clone()
            })
            .collect(),
        pb::LabelPolicy::Drop,
    );
    let mut unknown_policy = request(good.clone(), pb::LabelPolicy::Keep);
    unknown_policy.label_policy = 9;
    let cases = [
        (
            "negative weight",
            with(2, sample(v.clone(), "a", -1.0)),
            "weight",
        ),
        (
            "NaN weight",
            with(0, sample(v.clone(), "a", f32::NAN)),
            "weight",
        ),
        (
            "infinite weight",
            with(0, sample(v.clone(), "a", f32::INFINITY)),
            "weight",
        ),
        (
            "2 KiB label",
            with(1, sample(v.clone(), &"x".repeat(2048), 1.0)),
            "label",
        ),
        (
            "drop without labels",
            unlabelled_drop.clone(),
            "neither was given",
        ),
        ("unknown policy", unknown_policy, "not a label policy"),
    ];
    for (what, req, needle) in cases {
        let e = client.build_debug_set(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e}");
        assert!(e.message().contains(needle), "{what}: {e}");
    }
    unlabelled_drop.label_policy = pb::LabelPolicy::Replace as i32;
    let e = client.build_debug_set(unlabelled_drop).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    // Nothing stored changed.
    let pool = client
        .get_pool(pb::GetPoolRequest { name: POOL.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool.pool.unwrap().items, 1200);
}

/// A raw-vector pool `name` holding these (key, vector) items.
async fn pool_of(
    client: &mut pb::dcd_client::DcdClient<tonic::transport::Channel>,
    name: &str,
    items: Vec<(String, Vec<f32>)>,
) {
    common::raw_pool(client, name, DIM).await;
    let items: Vec<pb::IngestItem> = items
        .into_iter()
        .enumerate()
        .map(|(i, (key, values))| pb::IngestItem {
            pool: if i == 0 { name.into() } else { String::new() },
            key,
            content: Some(pb::ingest_item::Content::Vector(pb::Vector { values })),
            ..Default::default()
        })
        .collect();
    client.ingest(tokio_stream::iter(items)).await.unwrap();
}

fn vector_query(values: Vec<f32>) -> pb::Query {
    pb::Query {
        source: Some(pb::query::Source::Vector(pb::Vector { values })),
    }
}

/// Errors half near "a", half near "b"; 100 negatives around "b": the model handles b.
fn negatives_case(f: &Fixture) -> (Vec<pb::ErrorSample>, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let errors = labelled_errors(f, 14)
        .into_iter()
        .map(|e| pb::ErrorSample {
            label: String::new(),
            ..e
        })
        .collect();
    let handled = (0..100)
        .map(|_| around(&mut rng, &f.centers[1], 0.3))
        .collect();
    (errors, handled)
}

fn from(items: &[pb::DebugItem], class: &str) -> usize {
    items
        .iter()
        .filter(|i| i.key.starts_with(&format!("{class}/")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negatives_veto_what_the_model_already_handles() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(17);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let (errors, handled) = negatives_case(&f);
    let plain = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Unspecified))
        .await
        .unwrap()
        .into_inner();
    let (plain_a, plain_b) = (from(&plain.items, "a"), from(&plain.items, "b"));
    assert!(plain_a > 0 && plain_b > 0);

    let mut listed = request(errors.clone(), pb::LabelPolicy::Unspecified);
    listed.negatives = handled.iter().cloned().map(vector_query).collect();
    let set = client.build_debug_set(listed).await.unwrap().into_inner();
    let (a, b) = (from(&set.items, "a"), from(&set.items, "b"));
    println!("plain a {plain_a} b {plain_b}; with negatives a {a} b {b}");
    assert_eq!(a, plain_a, "nothing near the failures alone is vetoed");
    assert!(
        b * 10 <= plain_b,
        "most of what the model handles is vetoed: {b} of {plain_b}"
    );
    let summary = set.summary.clone().unwrap();
    let funnel = summary.funnel.unwrap();
    assert_eq!(
        funnel.negatives as usize,
        plain.items.len() - set.items.len()
    );
    assert_eq!(summary.vetoes.len(), funnel.negatives as usize);
    for v in &summary.vetoes {
        assert!(v.key.starts_with("b/"), "{v:?}");
        assert!(v.negative.starts_with("negatives["), "{v:?}");
        assert!(v.negative_distance < v.distance, "{v:?}");
    }
    assert_eq!(summary.parameters.unwrap().negative_margin, Some(1.0));

    // The same negatives as a pool: the veto names the pool's item.
    let named: Vec<(String, Vec<f32>)> = handled
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("h/{i}"), v.clone()))
        .collect();
    pool_of(&mut client, "handled", named).await;
    let mut pooled = request(errors.clone(), pb::LabelPolicy::Unspecified);
    pooled.negative_pool = "handled".into();
    let by_pool = client.build_debug_set(pooled).await.unwrap().into_inner();
    let keys = |s: &pb::DebugSet| s.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&by_pool), keys(&set));
    let summary = by_pool.summary.unwrap();
    assert!(summary.vetoes.iter().all(|v| v.negative.starts_with("h/")));

    // A smaller margin vetoes only candidates much nearer to a negative.
    let mut lenient = request(errors, pb::LabelPolicy::Unspecified);
    lenient.negative_pool = "handled".into();
    lenient.negative_margin = Some(0.05);
    let lenient = client.build_debug_set(lenient).await.unwrap().into_inner();
    assert!(lenient.items.len() > by_pool.items.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_negatives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(19);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let (errors, handled) = negatives_case(&f);
    common::raw_pool(&mut client, "narrow", 8).await;
    let base = request(errors.clone(), pb::LabelPolicy::Unspecified);
    let first_error = match errors[0].source.clone() {
        Some(pb::error_sample::Source::Vector(v)) => v.values,
        _ => unreachable!(),
    };
    let cases = [
        (
            "negative equal to an error sample",
            pb::BuildDebugSetRequest {
                negatives: vec![vector_query(handled[0].clone()), vector_query(first_error)],
                ..base.clone()
            },
            Code::InvalidArgument,
            "same input as error sample 0",
        ),
        (
            "negative of the wrong dimension",
            pb::BuildDebugSetRequest {
                negatives: vec![vector_query(vec![0.0; 5])],
                ..base.clone()
            },
            Code::InvalidArgument,
            "dimension",
        ),
        (
            "the pool itself",
            pb::BuildDebugSetRequest {
                negative_pool: POOL.into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "every candidate would match itself",
        ),
        (
            "a pool of another space",
            pb::BuildDebugSetRequest {
                negative_pool: "narrow".into(),
                ..base.clone()
            },
            Code::FailedPrecondition,
            "narrow",
        ),
        (
            "an unknown pool",
            pb::BuildDebugSetRequest {
                negative_pool: "nowhere".into(),
                ..base.clone()
            },
            Code::NotFound,
            "nowhere",
        ),
        (
            "zero margin",
            pb::BuildDebugSetRequest {
                negative_margin: Some(0.0),
                ..base.clone()
            },
            Code::InvalidArgument,
            "negative_margin",
        ),
        (
            "NaN margin",
            pb::BuildDebugSetRequest {
                negative_margin: Some(f32::NAN),
                ..base.clone()
            },
            Code::InvalidArgument,
            "negative_margin",
        ),
        (
            "an unknown negative key",
            pb::BuildDebugSetRequest {
                negatives: vec![pb::Query {
                    source: Some(pb::query::Source::ItemKey("no/such".into())),
                }],
                ..base.clone()
            },
            Code::NotFound,
            "no/such",
        ),
    ];
    for (what, req, code, needle) in cases {
        let e = client.build_debug_set(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.message().contains(needle), "{what}: {e}");
    }
    let pool = client
        .get_pool(pb::GetPoolRequest { name: POOL.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool.pool.unwrap().items, 1200);
}

fn pool_vector(f: &Fixture, i: usize) -> Vec<f32> {
    match &f.items[i].content {
        Some(pb::ingest_item::Content::Vector(v)) => v.values.clone(),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holdout_keeps_its_items_out_and_reports_every_collision() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(23);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let (errors, _) = negatives_case(&f);
    let plain = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Unspecified))
        .await
        .unwrap()
        .into_inner();
    // Held out: exact copies of the first five items of the plain set (as the user's test
    // images would be, had they leaked into the pool).
    let leaked: Vec<usize> = plain.items[..5].iter().map(|i| i.row as usize).collect();
    let mut req = request(errors.clone(), pb::LabelPolicy::Unspecified);
    req.holdout = leaked
        .iter()
        .map(|&r| vector_query(pool_vector(&f, r)))
        .collect();
    let set = client
        .build_debug_set(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.items.len(), plain.items.len() - 5);
    let summary = set.summary.unwrap();
    assert_eq!(summary.funnel.unwrap().holdout, 5);
    let mut collided: Vec<u64> = summary.collisions.iter().map(|c| c.row).collect();
    collided.sort();
    let mut expected: Vec<u64> = leaked.iter().map(|&r| r as u64).collect();
    expected.sort();
    assert_eq!(collided, expected);
    assert!(summary
        .collisions
        .iter()
        .all(|c| c.held_out.starts_with("holdout[") && c.distance == 0.0));

    // A radius that covers everything: an empty set, and the funnel says why.
    req.holdout_radius = Some(1e6);
    let none = client.build_debug_set(req).await.unwrap().into_inner();
    assert!(none.items.is_empty());
    let funnel = none.summary.unwrap().funnel.unwrap();
    assert_eq!(funnel.holdout, funnel.candidates);

    // The held-out items as a pool: checked by exact search, named by key.
    let named: Vec<(String, Vec<f32>)> = leaked
        .iter()
        .map(|&r| (format!("test/{r}"), pool_vector(&f, r)))
        .collect();
    pool_of(&mut client, "test-set", named).await;
    let mut pooled = request(errors.clone(), pb::LabelPolicy::Unspecified);
    pooled.holdout_pool = "test-set".into();
    let set = client.build_debug_set(pooled).await.unwrap().into_inner();
    assert_eq!(set.items.len(), plain.items.len() - 5);
    let summary = set.summary.unwrap();
    assert!(summary
        .collisions
        .iter()
        .all(|c| c.held_out == format!("test/{}", c.row)));

    // Bad input.
    for (what, req, needle) in [
        (
            "negative radius",
            pb::BuildDebugSetRequest {
                holdout_radius: Some(-1.0),
                ..request(errors.clone(), pb::LabelPolicy::Unspecified)
            },
            "holdout_radius",
        ),
        (
            "the pool itself",
            pb::BuildDebugSetRequest {
                holdout_pool: POOL.into(),
                ..request(errors.clone(), pb::LabelPolicy::Unspecified)
            },
            "every candidate would match itself",
        ),
    ] {
        let e = client.build_debug_set(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e}");
        assert!(e.message().contains(needle), "{what}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_leaves_no_two_items_within_its_distance() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(29);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let (errors, _) = negatives_case(&f);
    let plain = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Unspecified))
        .await
        .unwrap()
        .into_inner();
    let radius = 1.5;
    let mut req = request(errors.clone(), pb::LabelPolicy::Unspecified);
    req.dedup_distance = Some(radius);
    let set = client.build_debug_set(req).await.unwrap().into_inner();
    println!(
        "plain {} deduplicated {}",
        plain.items.len(),
        set.items.len()
    );
    assert!(!set.items.is_empty() && set.items.len() < plain.items.len());
    let vectors: Vec<Vec<f32>> = set
        .items
        .iter()
        .map(|i| pool_vector(&f, i.row as usize))
        .collect();
    for (i, a) in vectors.iter().enumerate() {
        for b in &vectors[i + 1..] {
            let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(d > radius, "two items {d} apart");
        }
    }
    let funnel = set.summary.unwrap().funnel.unwrap();
    assert_eq!(funnel.dedup as usize, plain.items.len() - set.items.len());
    // The nearest item to an error sample is never the one dropped.
    assert_eq!(set.items[0].key, plain.items[0].key);
    for bad in [0.0, -1.0, f32::NAN] {
        let mut req = request(errors.clone(), pb::LabelPolicy::Unspecified);
        req.dedup_distance = Some(bad);
        let e = client.build_debug_set(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e}");
        assert!(e.message().contains("dedup_distance"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mean_merge_puts_items_near_many_failures_first() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(31);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(32);
    // Six failures around "a", and one outlier: an exact copy of a background item.
    let outlier = (0..f.items.len())
        .find(|&i| i % 6 >= 2)
        .expect("a background item");
    let mut errors: Vec<pb::ErrorSample> = (0..6)
        .map(|_| sample(around(&mut rng, &f.centers[0], 0.3), "", 0.0))
        .collect();
    errors.push(sample(pool_vector(&f, outlier), "", 0.0));
    let union = client
        .build_debug_set(request(errors.clone(), pb::LabelPolicy::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(union.items[0].row as usize, outlier, "nearest first");
    let mut req = request(errors, pb::LabelPolicy::Unspecified);
    req.merge = pb::Merge::Mean as i32;
    let mean = client
        .build_debug_set(req.clone())
        .await
        .unwrap()
        .into_inner();
    let keys = |s: &pb::DebugSet| {
        let mut k: Vec<String> = s.items.iter().map(|i| i.key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&mean),
        keys(&union),
        "the same candidates, ranked otherwise"
    );
    // Rows of the "a" cluster are every sixth row, as ingested.
    let in_a = |i: &pb::DebugItem| i.row.is_multiple_of(6);
    let first_other = mean.items.iter().position(|i| !in_a(i)).unwrap();
    assert!(mean.items[first_other..].iter().all(|i| !in_a(i)));
    assert!(first_other > 0);
    // With a budget, the outlier's neighbourhood is what goes.
    req.budget = Some(first_other as u32);
    let kept = client.build_debug_set(req).await.unwrap().into_inner();
    assert!(kept.items.iter().all(in_a));
    assert_eq!(
        kept.summary.unwrap().parameters.unwrap().merge,
        pb::Merge::Mean as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percentile_distance_cap_is_the_pools_own_scale() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(29);
    let server = server_with_pool(dir.path(), &f).await;
    let mut client = server.client().await;
    let base = request(labelled_errors(&f, 31), pb::LabelPolicy::Keep);
    let capped = client
        .build_debug_set(pb::BuildDebugSetRequest {
            max_distance_percentile: Some(0.3),
            ..base.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let summary = capped.summary.clone().unwrap();
    let cap = summary
        .parameters
        .unwrap()
        .max_distance
        .expect("the cap as applied");
    assert!(!capped.items.is_empty());
    for i in &capped.items {
        assert!(i.best_distance <= cap);
        assert!(
            i.distance_percentile.unwrap() <= 0.3,
            "{:?}",
            i.distance_percentile
        );
    }
    assert!(summary.funnel.unwrap().distance_cap > 0);
    // The same set as that cap given as a distance.
    let same = client
        .build_debug_set(pb::BuildDebugSetRequest {
            max_distance: Some(cap),
            ..base.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let keys = |s: &pb::DebugSet| s.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&capped), keys(&same));
    assert!(same.items.iter().all(|i| i.distance_percentile.is_none()));
    for (bad, max_distance) in [(0.0, None), (1.5, None), (f32::NAN, None), (0.5, Some(1.0))] {
        let e = client
            .build_debug_set(pb::BuildDebugSetRequest {
                max_distance_percentile: Some(bad),
                max_distance,
                ..base.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e}");
        assert!(e.message().contains("max_distance_percentile"), "{e}");
    }
}
