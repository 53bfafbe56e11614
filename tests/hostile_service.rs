//! Hostile requests against the real gRPC server (issue 20): the needle-thin PNG through every
//! RPC that embeds, queries x k beyond the bound, unknown backbone names by the thousand and
//! a 1 MiB one, an empty API key. The server answers each with a code and a reason, and
//! serves the next request.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::SeedableRng;
use tonic::Code;

/// The 1 x 100000 PNG of B1.
fn needle() -> Vec<u8> {
    let img = image::GrayImage::from_pixel(1, 100_000, image::Luma([200]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn good_image(seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    common::png(&common::smooth(&mut rng, 40))
}

fn image_query(bytes: Vec<u8>) -> pb::Query {
    pb::Query {
        source: Some(pb::query::Source::Image(bytes)),
    }
}

async fn image_pool(client: &mut pb::dcd_client::DcdClient<tonic::transport::Channel>) {
    client
        .create_pool(pb::CreatePoolRequest {
            name: "img".into(),
            backbone: "resnet".into(),
            weights: common::tiny_resnet(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// B1: the needle reached Embed, Search, BuildDebugSet and Ingest and aborted the server.
/// Each now reports it as that image's failure, and the good images beside it go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_needle_png_fails_alone_through_every_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    image_pool(&mut client).await;

    let embedded = client
        .embed(pb::EmbedRequest {
            model: Some(pb::embed_request::Model::Pool("img".into())),
            images: vec![good_image(1), needle(), good_image(2)],
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = |i: usize| embedded.results[i].outcome.clone().unwrap();
    assert!(matches!(outcome(0), pb::embed_result::Outcome::Vector(_)));
    match outcome(1) {
        pb::embed_result::Outcome::Error(e) => assert!(e.contains("--max-aspect-ratio"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcome(2), pb::embed_result::Outcome::Vector(_)));

    let items: Vec<pb::IngestItem> = [good_image(3), needle(), good_image(4)]
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| pb::IngestItem {
            pool: "img".into(),
            key: format!("k{i}"),
            content: Some(pb::ingest_item::Content::Image(bytes)),
            ..Default::default()
        })
        .collect();
    let summary = client
        .ingest(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.stored, summary.failed), (2, 1), "{summary:?}");

    let found = client
        .search(pb::SearchRequest {
            pool: "img".into(),
            queries: vec![image_query(needle()), image_query(good_image(3))],
            k: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        found.results[0].error.contains("--max-aspect-ratio"),
        "{found:?}"
    );
    assert_eq!(found.results[1].hits.len(), 2);

    let only_needle = client
        .build_debug_set(pb::BuildDebugSetRequest {
            pool: "img".into(),
            errors: vec![image_query(needle())],
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(only_needle.code(), Code::InvalidArgument, "{only_needle}");
    assert!(
        only_needle.message().contains("--max-aspect-ratio"),
        "{only_needle}"
    );
    server.stop().await.unwrap();
}

/// B7: 3,000 key queries x k 10000 exhausted memory; 300 x 10000 computed for 8 s and then
/// failed on its 127 MB answer. Refused now before any work, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_times_k_beyond_the_bound_is_refused_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    client
        .create_pool(pb::CreatePoolRequest {
            name: "v".into(),
            dim: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    let items = (0..10).map(|i| pb::IngestItem {
        pool: "v".into(),
        key: format!("k{i}"),
        content: Some(pb::ingest_item::Content::Vector(pb::Vector {
            values: vec![i as f32; 4],
        })),
        ..Default::default()
    });
    client.ingest(tokio_stream::iter(items)).await.unwrap();
    let key = pb::Query {
        source: Some(pb::query::Source::ItemKey("k1".into())),
    };
    let started = std::time::Instant::now();
    let e = client
        .search(pb::SearchRequest {
            pool: "v".into(),
            queries: vec![key.clone(); 3000],
            k: 10_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("--max-hits"), "{e}");
    println!("refused in {:?}", started.elapsed());
    let e = client
        .build_debug_set(pb::BuildDebugSetRequest {
            pool: "v".into(),
            errors: vec![key.clone(); 100],
            k: 10_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("--max-hits"), "{e}");
    // Within the bound, the same call is answered.
    let ok = client
        .search(pb::SearchRequest {
            pool: "v".into(),
            queries: vec![key; 3],
            k: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), 3);
    server.stop().await.unwrap();
}

/// B10: each unknown backbone name kept a cache slot forever, and the error echoed a 1 MiB
/// name into the grpc-message header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_backbones_leave_nothing_and_long_names_are_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    for i in 0..200 {
        let e = client
            .embed(pb::EmbedRequest {
                model: Some(pb::embed_request::Model::Backbone(format!("nope-{i}"))),
                images: vec![good_image(1)],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    assert_eq!(server.service.models().loaded_count(), 0);
    let long = "x".repeat(1 << 20);
    let e = client
        .embed(pb::EmbedRequest {
            model: Some(pb::embed_request::Model::Backbone(long)),
            images: vec![good_image(1)],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().len() < 4096, "{} bytes", e.message().len());
    assert!(
        e.message().contains("unknown backbone"),
        "{}",
        &e.message()[..200]
    );
    // The server still answers.
    client.list_pools(pb::ListPoolsRequest {}).await.unwrap();
    server.stop().await.unwrap();
}

/// B12: `--api-key ''` was accepted, and then `Bearer ` with nothing after it got in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_api_key_is_refused_at_start() {
    for key in ["", "   "] {
        let e = dcd::api::auth::BearerAuth::new(Some(key.into()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("--api-key"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let service = dcd::service::Service::open(
        dir.path(),
        dcd::app::settings(
            dcd::service::AllowedRoots::Any,
            &common::cpu_runtime(),
            None,
        ),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let options = ServerOptions {
        api_key: Some(String::new()),
        ..ServerOptions::default()
    };
    let e = dcd::app::run(listener, service, options, dcd::api::Shutdown(rx))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--api-key"), "{e}");
}
