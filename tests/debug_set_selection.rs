//! Choosing among candidates that pass every rule, through the real gRPC server: per-label
//! caps and targets (with the shortfall reported), MMR diversity spreading a budget over a
//! slice instead of one clump, and each bad value refused with the field named.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use tonic::Code;

const POOL: &str = "labelled";

fn sample(values: Vec<f32>) -> pb::ErrorSample {
    pb::ErrorSample {
        source: Some(pb::error_sample::Source::Vector(pb::Vector { values })),
        ..Default::default()
    }
}

/// Around the error sample at the origin: 20 "cat" items in a tight clump at distance 0.5,
/// 10 "dog" items spread round a circle of radius 0.7, 5 "fox" items round one of radius 3.
async fn setup(dir: &std::path::Path) -> TestServer {
    let server = TestServer::start(&dir.join("data"), dir, ServerOptions::default()).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, POOL, 2).await;
    let mut items = Vec::new();
    let at = |radius: f32, turn: f32| {
        let a = turn * std::f32::consts::TAU;
        vec![radius * a.cos(), radius * a.sin()]
    };
    for i in 0..35 {
        let (label, values) = match i {
            0..20 => ("cat", vec![0.5 + 0.001 * i as f32, 0.0]),
            20..30 => ("dog", at(0.7, (i - 20) as f32 / 10.0 + 0.05)),
            _ => ("fox", at(3.0, (i - 30) as f32 / 5.0 + 0.1)),
        };
        let mut item = common::vector_item(POOL, &format!("{label}/{i}"), values);
        item.label = label.into();
        items.push(item);
    }
    client.ingest(tokio_stream::iter(items)).await.unwrap();
    server
}

fn request() -> pb::BuildDebugSetRequest {
    pb::BuildDebugSetRequest {
        pool: POOL.into(),
        errors: vec![sample(vec![0.0, 0.0])],
        k: 35,
        exact: true,
        ..Default::default()
    }
}

fn labels_of(set: &pb::DebugSet) -> Vec<String> {
    set.items.iter().map(|i| i.label.clone()).collect()
}

fn count(set: &pb::DebugSet, label: &str) -> usize {
    set.items.iter().filter(|i| i.label == label).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_targets_and_diversity_shape_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let client = server.client().await;
    let build = |req: pb::BuildDebugSetRequest| {
        let mut client = client.clone();
        async move { client.build_debug_set(req).await.unwrap().into_inner() }
    };
    let plain = build(pb::BuildDebugSetRequest {
        budget: Some(10),
        ..request()
    })
    .await;
    assert_eq!(count(&plain, "cat"), 10, "{:?}", labels_of(&plain));

    let capped = build(pb::BuildDebugSetRequest {
        max_per_label: Some(4),
        label_caps: [("fox".to_owned(), 2)].into_iter().collect(),
        ..request()
    })
    .await;
    assert_eq!(
        (
            count(&capped, "cat"),
            count(&capped, "dog"),
            count(&capped, "fox")
        ),
        (4, 4, 2)
    );
    let funnel = capped.summary.as_ref().unwrap().funnel.unwrap();
    assert_eq!(funnel.label_cap, 16 + 6 + 3);
    assert_eq!(funnel.kept, 10);

    // Targets hold budget for labels farther off; "fox" asks for more than it has.
    let targeted = build(pb::BuildDebugSetRequest {
        budget: Some(12),
        label_targets: [("dog".to_owned(), 3), ("fox".to_owned(), 6)]
            .into_iter()
            .collect(),
        ..request()
    })
    .await;
    assert_eq!(
        (
            count(&targeted, "cat"),
            count(&targeted, "dog"),
            count(&targeted, "fox")
        ),
        (4, 3, 5)
    );
    let summary = targeted.summary.as_ref().unwrap();
    assert_eq!(summary.label_shortfall.get("fox"), Some(&1));
    assert!(!summary.label_shortfall.contains_key("dog"));
    let applied = summary.parameters.as_ref().unwrap();
    assert_eq!(applied.label_targets.get("fox"), Some(&6));

    // Diversity reaches past the clump; nearness alone spends the budget on it.
    let diverse = build(pb::BuildDebugSetRequest {
        budget: Some(10),
        mmr_lambda: Some(0.5),
        ..request()
    })
    .await;
    assert!(count(&diverse, "dog") >= 5, "{:?}", labels_of(&diverse));
    assert!(count(&diverse, "cat") >= 1, "{:?}", labels_of(&diverse));
    let funnel = diverse.summary.as_ref().unwrap().funnel.unwrap();
    assert_eq!(funnel.diversity as usize, 10 - count(&diverse, "cat"));
    let same = build(pb::BuildDebugSetRequest {
        budget: Some(10),
        mmr_lambda: Some(1.0),
        ..request()
    })
    .await;
    assert_eq!(labels_of(&same), labels_of(&plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_caps_targets_and_lambdas_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut client = server.client().await;
    let map = |pairs: &[(&str, u32)]| pairs.iter().map(|&(l, n)| (l.to_owned(), n)).collect();
    let cases = [
        (
            "mmr_lambda",
            pb::BuildDebugSetRequest {
                mmr_lambda: Some(1.5),
                ..request()
            },
        ),
        (
            "mmr_lambda",
            pb::BuildDebugSetRequest {
                mmr_lambda: Some(f32::NAN),
                ..request()
            },
        ),
        (
            "mmr_lambda",
            pb::BuildDebugSetRequest {
                mmr_lambda: Some(0.5),
                merge: pb::Merge::RoundRobin as i32,
                ..request()
            },
        ),
        (
            "max_per_label",
            pb::BuildDebugSetRequest {
                max_per_label: Some(0),
                ..request()
            },
        ),
        (
            "label_caps",
            pb::BuildDebugSetRequest {
                label_caps: map(&[("cat", 0)]),
                ..request()
            },
        ),
        (
            "label_targets",
            pb::BuildDebugSetRequest {
                label_targets: map(&[("cat", 2)]),
                ..request()
            },
        ),
        (
            "label_targets",
            pb::BuildDebugSetRequest {
                budget: Some(5),
                label_targets: map(&[("cat", 3), ("dog", 3)]),
                ..request()
            },
        ),
        (
            "label_targets",
            pb::BuildDebugSetRequest {
                budget: Some(5),
                max_per_label: Some(2),
                label_targets: map(&[("cat", 3)]),
                ..request()
            },
        ),
    ];
    for (field, req) in cases {
        let e = client.build_debug_set(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e}");
        assert!(e.message().contains(field), "{field}: {e}");
    }
    // Nothing stored changed: the pool still answers in full.
    let set = client
        .build_debug_set(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.items.len(), 35);
}
