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

/// B1: the needle reached Embed, Search, BuildDebugSet and Ingest and aborted the server.
/// Each now reports it as that image's failure, and the good images beside it go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_needle_png_fails_alone_through_every_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    common::image_pool(&mut client, "img").await;

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
            errors: vec![image_query(needle()).into()],
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
    common::raw_pool(&mut client, "v", 4).await;
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
            errors: vec![key.clone().into(); 100],
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

/// B11: 64 idle Ingest streams took every in-flight slot and locked every other client out.
/// Streams are capped apart from the in-flight limit, and an idle one is closed after its
/// timeout with what it sent committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_cannot_lock_other_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        max_in_flight: 4,
        streams: dcd::limits::StreamLimits {
            max_streams: 2,
            idle_timeout: std::time::Duration::from_secs(1),
            ..Default::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(dir.path(), dir.path(), options).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, "v", 2).await;
    let item = |key: &str| pb::IngestItem {
        pool: "v".into(),
        key: key.into(),
        content: Some(pb::ingest_item::Content::Vector(pb::Vector {
            values: vec![1.0, 2.0],
        })),
        ..Default::default()
    };
    // Two streams that send one item and then nothing.
    let mut idle = Vec::new();
    let mut senders = Vec::new();
    for i in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(item(&format!("idle{i}"))).await.unwrap();
        senders.push(tx);
        let mut c = client.clone();
        idle.push(tokio::spawn(async move {
            c.ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let third = client
        .ingest(tokio_stream::iter(vec![item("third")]))
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third}");
    assert!(third.message().contains("--max-ingest-streams"), "{third}");
    // Everyone else is served meanwhile.
    for _ in 0..8 {
        client.list_pools(pb::ListPoolsRequest {}).await.unwrap();
    }
    for handle in idle {
        let e = handle.await.unwrap().unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
        assert!(e.message().contains("--stream-idle-timeout-s"), "{e}");
    }
    drop(senders);
    let summary = client
        .ingest(tokio_stream::iter(vec![
            item("idle0"),
            item("idle1"),
            item("after"),
        ]))
        .await
        .unwrap()
        .into_inner();
    // The idle streams' items were committed when they closed: re-sending skips them.
    assert_eq!((summary.present, summary.stored), (2, 1), "{summary:?}");
    server.stop().await.unwrap();
}

/// B13: GetPool returned every job with its errors, and failed OUT_OF_RANGE for good once a
/// pool had ~2,250 jobs. It lists the newest 20 and says how many are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pool_lists_a_bounded_number_of_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, "v", 2).await;
    let store = server.service.store();
    for i in 0..300 {
        let job = store
            .create_job(
                "v",
                &dcd::store::JobSource::Folder(format!("/f{i}").into()),
                1000,
            )
            .unwrap();
        store
            .set_job_state(
                &job.id,
                dcd::store::JobState::Failed,
                Some(&"x".repeat(5000)),
            )
            .unwrap();
    }
    let details = client
        .get_pool(pb::GetPoolRequest { name: "v".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.jobs.len(), 20);
    assert_eq!(details.jobs_total, 300);
    server.stop().await.unwrap();
}

/// A folder where the index file belongs made every save fail and every search with it.
/// The folder is moved aside (kept), the index rebuilt, and searches answer.
#[test]
fn a_folder_named_like_the_index_is_moved_aside() {
    use dcd::service::{AllowedRoots, SearchRequest, Service};
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Service::open(
            dir.path(),
            dcd::app::settings(AllowedRoots::Any, &common::cpu_runtime(), None),
        )
        .unwrap()
    };
    let service = open();
    common::local_raw_pool(&service, "v", 4);
    // Appended directly: no background index refresh races the folder made below.
    let items: Vec<dcd::store::NewItem> = (0..50)
        .map(|i| dcd::store::NewItem {
            key: format!("k{i}"),
            ..Default::default()
        })
        .collect();
    let data: Vec<f32> = (0..50).flat_map(|i| [i as f32, 1.0, 2.0, 3.0]).collect();
    service
        .pool("v")
        .unwrap()
        .append(&dcd::types::Matrix::new(50, 4, data), &items, None)
        .unwrap();
    drop(service);
    let graph = dir.path().join("pools/v/hnsw.graph");
    let _ = std::fs::remove_file(&graph);
    std::fs::create_dir_all(graph.join("inside")).unwrap();
    let service = open();
    let search = SearchRequest {
        pool: "v".into(),
        queries: vec![dcd::service::QueryInput::Key("k7".into())],
        k: 3,
        ef: None,
        exact: false,
        labels: vec![],
    };
    let (results, _) = service.search(&search).unwrap();
    assert_eq!(results[0].as_ref().unwrap()[0].key, "k7");
    assert!(graph.is_file(), "the index was saved in its place");
    let kept = std::fs::read_dir(dir.path().join("pools/v"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.path().join("inside").is_dir());
    assert!(kept, "the folder was kept aside");
}

/// Keys and labels have limits (length, no NUL), and vectors whose distances would overflow
/// to infinity are refused: a bad item fails alone, a bad vector stops the stream with
/// everything before it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_labels_and_huge_vectors_are_held_to_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, "v", 2).await;
    let item = |key: String, label: String, values: Vec<f32>| pb::IngestItem {
        pool: "v".into(),
        key,
        label,
        content: Some(pb::ingest_item::Content::Vector(pb::Vector { values })),
        ..Default::default()
    };
    let summary = client
        .ingest(tokio_stream::iter(vec![
            item("ok".into(), "l".into(), vec![1.0, 2.0]),
            item("nul\0key".into(), String::new(), vec![1.0, 2.0]),
            item("k".repeat(5000), String::new(), vec![1.0, 2.0]),
            item("long-label".into(), "l".repeat(2000), vec![1.0, 2.0]),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.stored, summary.failed), (1, 3), "{summary:?}");
    let reasons: Vec<&str> = summary.errors.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("NUL")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("key is 5000 bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("label is 2000 bytes")),
        "{reasons:?}"
    );
    let e = client
        .ingest(tokio_stream::iter(vec![
            item("fine".into(), String::new(), vec![3.0, 4.0]),
            item("huge".into(), String::new(), vec![1e20, 1e20]),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("overflow"), "{e}");
    let details = client
        .get_pool(pb::GetPoolRequest { name: "v".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.pool.unwrap().items, 2, "ok and fine are stored");
    server.stop().await.unwrap();
}

/// B9: graphs were built under the pool's write lock, so GetPool waited 69 s after a small
/// ingest into a 475k pool, and searches waited too, holding compute slots. A build now runs
/// from a snapshot with no lock held: while it runs, pool details, searches (which scan the
/// rows the graph lacks, so they still see every row) and appends are answered.
#[test]
fn a_graph_build_holds_up_nothing() {
    use dcd::service::{AllowedRoots, QueryInput, SearchRequest, Service};
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = dcd::app::settings(AllowedRoots::Any, &common::cpu_runtime(), None);
    settings.background_index = true;
    let service = Service::open(dir.path(), settings).unwrap();
    let dim = 64;
    common::local_raw_pool(&service, "v", dim);
    let n = 60_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let data: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let items: Vec<dcd::store::NewItem> = (0..n)
        .map(|i| dcd::store::NewItem {
            key: format!("k{i}"),
            ..Default::default()
        })
        .collect();
    let pool = service.pool("v").unwrap();
    pool.append(&dcd::types::Matrix::new(n, dim, data.clone()), &items, None)
        .unwrap();
    let search = |key: &str| SearchRequest {
        pool: "v".into(),
        queries: vec![QueryInput::Key(key.into())],
        k: 5,
        ef: None,
        exact: false,
        labels: vec![],
    };
    let started = std::time::Instant::now();
    // The first search starts the build and answers by scanning.
    let (first, engine) = service.search(&search("k123")).unwrap();
    assert_eq!(first[0].as_ref().unwrap()[0].key, "k123");
    assert_eq!(engine, "native+scan");
    assert!(pool.index_building(), "the build runs in the background");
    let details = service.pool_details("v").unwrap();
    assert_eq!(details.record.rows, n as u64);
    pool.append(
        &dcd::types::Matrix::new(1, dim, vec![0.5; dim]),
        &[dcd::store::NewItem {
            key: "late".into(),
            ..Default::default()
        }],
        None,
    )
    .unwrap();
    let (late, _) = service.search(&search("late")).unwrap();
    assert_eq!(late[0].as_ref().unwrap()[0].key, "late");
    let answered = started.elapsed();
    assert!(
        pool.index_building(),
        "the calls above finished in {answered:?} while the build ran on"
    );
    // Once the build is in, searches use the graph (and scan only the late row).
    while pool.index_building() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!(
        "answered in {answered:?}, build done after {:?}",
        started.elapsed()
    );
    let (_, engine) = service.search(&search("k7")).unwrap();
    assert!(engine.starts_with("native"), "{engine}");
}

/// A call whose client went away (cancelled, deadline passed) stopped only when its work was
/// done: a folder listing went on after the client's deadline. The gRPC layer marks the
/// call cancelled when it drops it; listings and searches stop at their next step.
#[test]
fn cancelled_calls_stop_listing_and_searching() {
    use dcd::service::{AllowedRoots, QueryInput, SearchRequest, Service};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("images");
    for i in 0..3 {
        std::fs::create_dir_all(root.join(format!("d{i}"))).unwrap();
        std::fs::write(root.join(format!("d{i}/x.png")), b"not read").unwrap();
    }
    let roots = AllowedRoots::only(std::slice::from_ref(&root)).unwrap();
    let service = Service::open(
        &dir.path().join("data"),
        dcd::app::settings(roots, &common::cpu_runtime(), None),
    )
    .unwrap();
    common::local_raw_pool(&service, "v", 2);
    service
        .pool("v")
        .unwrap()
        .append(
            &dcd::types::Matrix::new(1, 2, vec![1.0, 1.0]),
            &[dcd::store::NewItem {
                key: "a".into(),
                ..Default::default()
            }],
            None,
        )
        .unwrap();
    let (guard, flag) = dcd::cancel::CancelOnDrop::new();
    drop(guard);
    let listing = dcd::cancel::within(flag.clone(), || {
        dcd::service::jobs::start(&service, "v", dcd::store::JobSource::Folder(root.clone()))
    });
    let e = listing.unwrap_err();
    assert!(e.to_string().contains("cancelled"), "{e}");
    let search = SearchRequest {
        pool: "v".into(),
        queries: vec![QueryInput::Vector(vec![0.0, 0.0]); 10],
        k: 1,
        ef: None,
        exact: true,
        labels: vec![],
    };
    let e = dcd::cancel::within(flag, || service.search(&search)).unwrap_err();
    assert!(e.to_string().contains("cancelled"), "{e}");
    // Outside a cancelled call the same requests are served.
    assert!(service.search(&search).is_ok());
}

/// Thousands of 70-byte images fit in one message, each a decode and a forward pass: a call
/// carries at most --max-images-per-call, refused before anything is decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_per_call_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    let mut client = server.client().await;
    common::image_pool(&mut client, "img").await;
    let tiny = common::png(&image::RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9])));
    let e = client
        .embed(pb::EmbedRequest {
            model: Some(pb::embed_request::Model::Pool("img".into())),
            images: vec![tiny.clone(); 1025],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("--max-images-per-call"), "{e}");
    let e = client
        .search(pb::SearchRequest {
            pool: "img".into(),
            queries: vec![image_query(tiny); 1025],
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("--max-images-per-call"), "{e}");
    server.stop().await.unwrap();
}
