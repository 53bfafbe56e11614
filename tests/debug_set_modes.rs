//! Failure modes through the real gRPC server: error samples from two separate groups become
//! two modes; with a budget each mode gets its share by weight, where the plain union would
//! spend it all on the mode whose neighbours are nearest; coverage is reported per mode, and a
//! cap out of range is refused.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::{Rng, SeedableRng};
use tonic::Code;

const DIM: usize = 16;
const POOL: &str = "two-ways";

fn around(rng: &mut impl Rng, center: &[f32], spread: f32) -> Vec<f32> {
    center
        .iter()
        .map(|c| c + spread * rng.gen_range(-1.0..1.0))
        .collect()
}

fn sample(values: Vec<f32>) -> pb::ErrorSample {
    pb::ErrorSample {
        source: Some(pb::error_sample::Source::Vector(pb::Vector { values })),
        ..Default::default()
    }
}

/// Mode "tight": 200 pool items close together, 12 error samples; mode "loose": 200 items
/// spread wider, 4 error samples, 40 apart from the first.
async fn setup(dir: &std::path::Path) -> (TestServer, Vec<pb::ErrorSample>) {
    let server = TestServer::start(&dir.join("data"), dir, ServerOptions::default()).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, POOL, DIM).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let tight = vec![0.0; DIM];
    let loose = vec![10.0; DIM];
    let mut items = Vec::new();
    for i in 0..400 {
        let (name, values) = if i % 2 == 0 {
            ("tight", around(&mut rng, &tight, 0.3))
        } else {
            ("loose", around(&mut rng, &loose, 1.5))
        };
        items.push(pb::IngestItem {
            pool: if i == 0 { POOL.into() } else { String::new() },
            key: format!("{name}/{i}"),
            content: Some(pb::ingest_item::Content::Vector(pb::Vector { values })),
            ..Default::default()
        });
    }
    client.ingest(tokio_stream::iter(items)).await.unwrap();
    let mut errors: Vec<pb::ErrorSample> = (0..12)
        .map(|_| sample(around(&mut rng, &tight, 0.3)))
        .collect();
    errors.extend((0..4).map(|_| sample(around(&mut rng, &loose, 1.5))));
    (server, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_shared_between_failure_modes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, errors) = setup(dir.path()).await;
    let mut client = server.client().await;
    let req = pb::BuildDebugSetRequest {
        pool: POOL.into(),
        errors,
        k: 30,
        exact: true,
        budget: Some(16),
        ..Default::default()
    };
    let loose = |s: &pb::DebugSet| {
        s.items
            .iter()
            .filter(|i| i.key.starts_with("loose/"))
            .count()
    };
    let one = client
        .build_debug_set(pb::BuildDebugSetRequest {
            max_modes: Some(1),
            ..req.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.items.len(), 16);
    assert_eq!(
        loose(&one),
        0,
        "the union spends the budget on the nearest mode"
    );
    let summary = one.summary.unwrap();
    assert_eq!(summary.modes.len(), 1);
    assert_eq!(summary.mode_silhouette, None);

    let split = client
        .build_debug_set(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(split.items.len(), 16);
    assert_eq!(loose(&split), 4, "12:4 by the samples' weights");
    let summary = split.summary.unwrap();
    assert!(summary.mode_silhouette.unwrap() > 0.5);
    assert_eq!(summary.modes.len(), 2);
    let tight_mode = &summary.modes[0];
    assert_eq!(tight_mode.error_indices, (0..12).collect::<Vec<u32>>());
    assert_eq!((tight_mode.budget, tight_mode.kept), (Some(12), 12));
    let loose_mode = &summary.modes[1];
    assert_eq!(loose_mode.error_indices, (12..16).collect::<Vec<u32>>());
    assert_eq!((loose_mode.budget, loose_mode.kept), (Some(4), 4));
    assert!(loose_mode.funnel.as_ref().unwrap().budget > 0);
    for item in &split.items {
        let want = if item.key.starts_with("loose/") { 1 } else { 0 };
        assert_eq!(item.mode, want, "{}", item.key);
    }
    assert!(summary
        .coverage
        .iter()
        .all(|c| c.mode == u32::from(c.error_index >= 12)));

    // Weights move the split: the loose samples at weight 3 weigh 12 against 12.
    let mut weighted = req.clone();
    for e in weighted.errors.iter_mut().skip(12) {
        e.weight = 3.0;
    }
    let weighted = client.build_debug_set(weighted).await.unwrap().into_inner();
    assert_eq!(loose(&weighted), 8);

    for bad in [0, 65] {
        let e = client
            .build_debug_set(pb::BuildDebugSetRequest {
                max_modes: Some(bad),
                ..req.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("max_modes"), "{e}");
    }
}
