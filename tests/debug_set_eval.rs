//! `EvaluateDebugSet` through the real gRPC server: a recipe that brings the failures' own
//! label near them scores far above random, one that cannot scores no better; the curve has a
//! point per k and budget; held-out failures replace the folds; bad requests are refused by
//! name.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::{Rng, SeedableRng};
use tonic::Code;

const DIM: usize = 8;
const POOL: &str = "slice";

fn around(rng: &mut impl Rng, center: f32, spread: f32) -> Vec<f32> {
    (0..DIM)
        .map(|_| center + spread * rng.gen_range(-1.0..1.0))
        .collect()
}

fn failure(values: Vec<f32>) -> pb::ErrorSample {
    pb::ErrorSample {
        source: Some(pb::error_sample::Source::Vector(pb::Vector { values })),
        label: "cat".into(),
        weight: 1.0,
    }
}

/// 1,000 background items round 0 with random labels; 100 items of the failing slice round
/// 5, weakly labelled "cat" (70%) or "dog". Returns the server and 20 failures of the slice.
async fn setup(dir: &std::path::Path) -> (TestServer, Vec<pb::ErrorSample>) {
    let server = TestServer::start(&dir.join("data"), dir, ServerOptions::default()).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, POOL, DIM).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut items = Vec::new();
    for i in 0..1100 {
        let (values, label) = if i < 1000 {
            (around(&mut rng, 0.0, 2.0), ["cat", "dog", "car"][i % 3])
        } else {
            (
                around(&mut rng, 5.0, 0.5),
                if rng.gen_bool(0.7) { "cat" } else { "dog" },
            )
        };
        let mut item = common::vector_item(POOL, &format!("item/{i}"), values);
        item.label = label.into();
        items.push(item);
    }
    client.ingest(tokio_stream::iter(items)).await.unwrap();
    let failures = (0..20)
        .map(|_| failure(around(&mut rng, 5.0, 0.5)))
        .collect();
    (server, failures)
}

fn recipe(errors: Vec<pb::ErrorSample>) -> pb::BuildDebugSetRequest {
    pb::BuildDebugSetRequest {
        pool: POOL.into(),
        errors,
        k: 10,
        exact: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_of_the_failures_label_scores_above_random_and_one_without_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (server, failures) = setup(dir.path()).await;
    let mut client = server.client().await;
    let good = client
        .evaluate_debug_set(pb::EvaluateDebugSetRequest {
            set: Some(recipe(failures.clone())),
            ks: vec![5, 10],
            budgets: vec![10, 30],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((good.folds, good.scored, good.labelled), (5, 20, 20));
    assert_eq!(good.points.len(), 4);
    assert_eq!(
        good.points
            .iter()
            .map(|p| (p.k, p.budget))
            .collect::<Vec<_>>(),
        vec![(5, Some(10)), (5, Some(30)), (10, Some(10)), (10, Some(30))]
    );
    for p in &good.points {
        assert!(
            p.items > 0.0 && p.items <= p.budget.unwrap() as f32,
            "{p:?}"
        );
        assert!(p.win_rate > 0.9, "{p:?}");
        assert!(p.label_win_rate.unwrap() > 0.9, "{p:?}");
        assert_eq!(p.score, p.useful);
        assert!(p.useful > 0.5 && p.useful > p.random_useful, "{p:?}");
        assert!(p.nearest < p.random_nearest, "{p:?}");
        assert_eq!(p.covered.len(), good.thresholds.len());
    }
    // Built blind to the failures' labels (the vote off), scored with them: the "dog" items
    // stay in the set, and the score sees it.
    let evaluate = |build_without_labels: bool| {
        let mut client = client.clone();
        let failures = failures.clone();
        async move {
            client
                .evaluate_debug_set(pb::EvaluateDebugSetRequest {
                    set: Some(recipe(failures)),
                    build_without_labels,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .points
                .remove(0)
        }
    };
    let (voted, blind) = (evaluate(false).await, evaluate(true).await);
    assert!(blind.label_win_rate.is_some());
    assert!(
        blind.agree.unwrap() < voted.agree.unwrap(),
        "{blind:?} {voted:?}"
    );
    assert!(blind.useful < voted.useful, "{blind:?} {voted:?}");
    // Only "dog" items: near the failures, but never with their label.
    let wrong = client
        .evaluate_debug_set(pb::EvaluateDebugSetRequest {
            set: Some(pb::BuildDebugSetRequest {
                labels: vec!["dog".into()],
                label_policy: pb::LabelPolicy::Keep as i32,
                ..recipe(failures.clone())
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = &wrong.points[0];
    assert!(p.win_rate > 0.9, "{p:?}");
    assert!(p.label_win_rate.unwrap() < 0.5, "{p:?}");
    assert!(p.useful < 0.1 && p.agree == Some(0.0), "{p:?}");
    // Held-out failures: every error sample builds the set; the same seed, the same answer.
    let (errors, held) = failures.split_at(12);
    let held_out = || pb::EvaluateDebugSetRequest {
        set: Some(recipe(errors.to_vec())),
        held_out: held.to_vec(),
        seed: 9,
        ..Default::default()
    };
    let a = client
        .evaluate_debug_set(held_out())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((a.folds, a.scored), (0, 8));
    assert!(a.points[0].score > 0.9, "{:?}", a.points[0]);
    let b = client
        .evaluate_debug_set(held_out())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_evaluations_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (server, failures) = setup(dir.path()).await;
    let mut client = server.client().await;
    let base = || pb::EvaluateDebugSetRequest {
        set: Some(recipe(failures.clone())),
        ..Default::default()
    };
    let cases = [
        (
            "set",
            pb::EvaluateDebugSetRequest {
                set: None,
                ..base()
            },
        ),
        ("folds", pb::EvaluateDebugSetRequest { folds: 1, ..base() }),
        (
            "folds",
            pb::EvaluateDebugSetRequest {
                folds: 21,
                ..base()
            },
        ),
        (
            "folds",
            pb::EvaluateDebugSetRequest {
                folds: 3,
                held_out: failures[..2].to_vec(),
                ..base()
            },
        ),
        (
            "random_draws",
            pb::EvaluateDebugSetRequest {
                random_draws: 101,
                ..base()
            },
        ),
        (
            "budgets",
            pb::EvaluateDebugSetRequest {
                budgets: vec![0],
                ..base()
            },
        ),
        (
            "ks",
            pb::EvaluateDebugSetRequest {
                ks: (1..=33).collect(),
                ..base()
            },
        ),
        (
            "errors",
            pb::EvaluateDebugSetRequest {
                set: Some(recipe(failures[..1].to_vec())),
                ..Default::default()
            },
        ),
        (
            "pool",
            pb::EvaluateDebugSetRequest {
                set: Some(pb::BuildDebugSetRequest {
                    pool: "nope".into(),
                    ..recipe(failures.clone())
                }),
                ..Default::default()
            },
        ),
    ];
    for (field, req) in cases {
        let e = client.evaluate_debug_set(req).await.unwrap_err();
        assert!(
            matches!(e.code(), Code::InvalidArgument | Code::NotFound),
            "{field}: {e}"
        );
        assert!(e.message().contains(field), "{field}: {e}");
    }
}
