//! End to end through the real gRPC server on 127.0.0.1:0: pools, streamed and server-side
//! ingestion, searches and debug-train sets whose precision is asserted on generated pools,
//! and every bad input answered with its gRPC code and nothing stored lost.

mod common;

use std::collections::HashSet;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::{Rng, SeedableRng};
use tonic::Code;

const DIM: usize = 32;

fn vector(values: Vec<f32>) -> pb::Vector {
    pb::Vector { values }
}

fn query_vec(values: Vec<f32>) -> pb::Query {
    pb::Query {
        source: Some(pb::query::Source::Vector(vector(values))),
    }
}

fn around(rng: &mut impl Rng, center: &[f32], spread: f32) -> Vec<f32> {
    center
        .iter()
        .map(|c| c + spread * (rng.gen::<f32>() * 2.0 - 1.0))
        .collect()
}

/// 2,800 background vectors in 20 clusters and 200 of a "failing group" around its own
/// centre, all with random weak labels. Returns the items and the group's centre.
fn vector_pool(seed: u64) -> (Vec<pb::IngestItem>, Vec<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centers: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-4.0..4.0)).collect())
        .collect();
    let group: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let labels = ["cat", "dog", "car", "tree"];
    let mut items = Vec::new();
    for i in 0..3000 {
        let (key, values) = if i % 15 == 0 {
            (format!("group/{i}"), around(&mut rng, &group, 1.0))
        } else {
            let c = &centers[rng.gen_range(0..centers.len())];
            (format!("bg/{i}"), around(&mut rng, c, 1.0))
        };
        items.push(pb::IngestItem {
            pool: if i == 0 { "vecs".into() } else { String::new() },
            key,
            label: labels[rng.gen_range(0..4)].into(),
            metadata_json: format!("{{\"i\": {i}}}"),
            content: Some(pb::ingest_item::Content::Vector(vector(values))),
            ..Default::default()
        });
    }
    (items, group)
}

async fn create_raw_pool(
    client: &mut pb::dcd_client::DcdClient<tonic::transport::Channel>,
    name: &str,
) {
    client
        .create_pool(pb::CreatePoolRequest {
            name: name.into(),
            dim: DIM as u32,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn precision(items: &[pb::DebugItem], prefix: &str) -> f64 {
    items.iter().filter(|i| i.key.starts_with(prefix)).count() as f64 / items.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_pool_debug_set_comes_from_the_failing_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        &dir.path().join("data"),
        dir.path(),
        ServerOptions::default(),
    )
    .await;
    let mut client = server.client().await;
    create_raw_pool(&mut client, "vecs").await;
    let (items, group) = vector_pool(7);
    let summary = client
        .ingest(tokio_stream::iter(items.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.received, summary.stored, summary.failed),
        (3000, 3000, 0)
    );
    assert_eq!(summary.pool_items, 3000);
    // Re-sending is harmless: every key is already there.
    let again = client
        .ingest(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.stored, again.present), (0, 3000));

    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let errors: Vec<pb::Query> = (0..8)
        .map(|_| query_vec(around(&mut rng, &group, 1.0)))
        .collect();
    let request = pb::BuildDebugSetRequest {
        pool: "vecs".into(),
        errors: errors.iter().cloned().map(Into::into).collect(),
        k: 25,
        ..Default::default()
    };
    let set = client
        .build_debug_set(request.clone())
        .await
        .unwrap()
        .into_inner();
    let p = precision(&set.items, "group/");
    assert!(p >= 0.95, "precision {p} of {} items", set.items.len());
    assert!(set.items.len() >= 25 && set.items.len() <= 200);
    let keys: HashSet<&str> = set.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys.len(), set.items.len(), "union de-duplicates");
    let s = set.summary.clone().unwrap();
    assert_eq!(s.coverage.len(), 8);
    assert!(s
        .coverage
        .iter()
        .all(|c| c.found == 25 && c.kept == 25 && c.error.is_empty()));
    assert_eq!(s.label_counts.values().sum::<u64>(), set.items.len() as u64);
    let q = s.distances.unwrap();
    assert!(q.min <= q.p50 && q.p50 <= q.max);
    assert_eq!(s.pool_items, 3000);
    let params = s.parameters.unwrap();
    assert_eq!((params.k, params.merge), (25, pb::Merge::Union as i32));
    for w in set.items.windows(2) {
        assert!(
            w[0].best_distance <= w[1].best_distance,
            "union is nearest first"
        );
    }
    for item in &set.items {
        let best = item
            .found_by
            .iter()
            .map(|f| f.distance)
            .fold(f32::INFINITY, f32::min);
        assert_eq!(best, item.best_distance);
        assert!(item.found_by.iter().all(|f| f.rank >= 1 && f.rank <= 25));
    }

    // The exact path returns (nearly) the same set.
    let exact = client
        .build_debug_set(pb::BuildDebugSetRequest {
            exact: true,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let exact_keys: HashSet<&str> = exact.items.iter().map(|i| i.key.as_str()).collect();
    let overlap = keys.intersection(&exact_keys).count() as f64 / exact_keys.len() as f64;
    assert!(overlap >= 0.95, "HNSW vs exact overlap {overlap}");
    assert_eq!(exact.summary.unwrap().engine, "exact");

    // Budgets: round robin shares, global top takes the nearest.
    let rr = client
        .build_debug_set(pb::BuildDebugSetRequest {
            merge: pb::Merge::RoundRobin as i32,
            budget: Some(16),
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rr.items.len(), 16);
    let firsts: HashSet<u32> = rr.items[..8]
        .iter()
        .flat_map(|i| i.found_by.iter().map(|f| f.error_index))
        .collect();
    assert_eq!(
        firsts.len(),
        8,
        "the first round gives every error sample an item"
    );
    let top = client
        .build_debug_set(pb::BuildDebugSetRequest {
            merge: pb::Merge::GlobalTop as i32,
            budget: Some(30),
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.items.len(), 30);
    assert!(precision(&top.items, "group/") >= 0.95);

    // Consensus: items at least three error samples found, each reporting its support; the
    // summary echoes the parameter; more than the error samples sent is refused.
    let consensus = client
        .build_debug_set(pb::BuildDebugSetRequest {
            min_support: 3,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!consensus.items.is_empty() && consensus.items.len() < set.items.len());
    for item in &consensus.items {
        assert!(item.support >= 3, "{item:?}");
        assert_eq!(item.support as usize, item.found_by.len());
    }
    let supported = set.items.iter().filter(|i| i.support >= 3).count();
    assert_eq!(consensus.items.len(), supported);
    assert!(set
        .items
        .iter()
        .all(|i| i.support as usize == i.found_by.len()));
    assert_eq!(
        consensus.summary.unwrap().parameters.unwrap().min_support,
        3
    );
    let too_many = client
        .build_debug_set(pb::BuildDebugSetRequest {
            min_support: 9,
            ..request.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
    assert!(too_many.message().contains("min_support"), "{too_many:?}");

    // Exclusions and label filters.
    let first = set.items[0].key.clone();
    let filtered = client
        .build_debug_set(pb::BuildDebugSetRequest {
            exclude_keys: vec![first.clone(), "no/such/key".into()],
            labels: vec!["cat".into(), "dog".into()],
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(filtered.items.iter().all(|i| i.key != first));
    assert!(filtered
        .items
        .iter()
        .all(|i| i.label == "cat" || i.label == "dog"));
    assert_eq!(filtered.summary.unwrap().excluded, 1);

    // Error samples by key from another pool in the same space.
    create_raw_pool(&mut client, "failures").await;
    let failures: Vec<pb::IngestItem> = (0..3)
        .map(|i| pb::IngestItem {
            pool: "failures".into(),
            key: format!("fail/{i}"),
            content: Some(pb::ingest_item::Content::Vector(vector(around(
                &mut rng, &group, 1.0,
            )))),
            ..Default::default()
        })
        .collect();
    client.ingest(tokio_stream::iter(failures)).await.unwrap();
    let by_key = client
        .build_debug_set(pb::BuildDebugSetRequest {
            pool: "vecs".into(),
            errors_pool: "failures".into(),
            errors: (0..3)
                .map(|i| pb::Query {
                    source: Some(pb::query::Source::ItemKey(format!("fail/{i}"))),
                })
                .map(pb::ErrorSample::from)
                .collect(),
            k: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(precision(&by_key.items, "group/") >= 0.95);
    let deleted = client
        .delete_pool(pb::DeletePoolRequest {
            name: "failures".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.items_deleted, 3);
    let gone = client
        .get_pool(pb::GetPoolRequest {
            name: "failures".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let pools = client
        .list_pools(pb::ListPoolsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pools.pools.len(), 1);

    // The streamed variant carries the same items, then the summary.
    let mut stream = client.stream_debug_set(request).await.unwrap().into_inner();
    let mut streamed = Vec::new();
    let mut got_summary = false;
    while let Some(chunk) = stream.message().await.unwrap() {
        match chunk.part.unwrap() {
            pb::debug_set_chunk::Part::Items(i) => streamed.extend(i.items),
            pb::debug_set_chunk::Part::Summary(_) => got_summary = true,
        }
    }
    assert!(got_summary);
    assert_eq!(streamed, set.items);

    // Search by stored key: the item itself comes first.
    let hits = client
        .search(pb::SearchRequest {
            pool: "vecs".into(),
            queries: vec![pb::Query {
                source: Some(pb::query::Source::ItemKey("group/15".into())),
            }],
            k: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hits.results[0].hits[0].key, "group/15");
    assert_eq!(hits.results[0].hits[0].distance, 0.0);

    let details = client
        .get_pool(pb::GetPoolRequest {
            name: "vecs".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.pool.unwrap().items, 3000);
    assert_eq!(details.label_counts.values().sum::<u64>(), 3000);
    server.stop().await.unwrap();
}

/// Starts a folder job and follows its WatchJob feed to the end; returns the last update.
async fn run_folder_job(
    client: &mut pb::dcd_client::DcdClient<tonic::transport::Channel>,
    pool: &str,
    folder: &std::path::Path,
) -> pb::Job {
    let job = client
        .start_ingest_job(pb::StartIngestJobRequest {
            pool: pool.into(),
            source: Some(pb::start_ingest_job_request::Source::Folder(
                folder.display().to_string(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    let mut feed = client
        .watch_job(pb::WatchJobRequest { id: job.id })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(j) = feed.message().await.unwrap() {
        last = Some(j);
    }
    last.expect("the feed sends at least the final state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pool_job_and_debug_set_find_the_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let stripes = common::write_pool(&root, 60, 240, 3);
    // A corrupt file and a duplicate (same bytes under another label).
    std::fs::write(root.join("cat/broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    std::fs::create_dir_all(root.join("zebra")).unwrap();
    std::fs::copy(&stripes[0], root.join("zebra/copy.png")).unwrap();
    let server = TestServer::start(
        &dir.path().join("data"),
        dir.path(),
        ServerOptions::default(),
    )
    .await;
    let mut client = server.client().await;
    let pool = client
        .create_pool(pb::CreatePoolRequest {
            name: "imgs".into(),
            backbone: "dino-vit".into(),
            weights: common::tiny_dino(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pool.dim > 0);
    let done = run_folder_job(&mut client, "imgs", &root).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{done:?}");
    assert_eq!(
        (done.total, done.stored, done.duplicates, done.failed),
        (302, 300, 1, 1)
    );
    assert!(done
        .errors
        .iter()
        .any(|e| e.key.ends_with("broken.png") && e.reason.contains("corrupt")));
    assert!(done
        .errors
        .iter()
        .any(|e| e.key.ends_with("copy.png") && e.reason.contains("duplicate of")));

    let stripe_keys: HashSet<String> = stripes
        .iter()
        .map(|p| p.canonicalize().unwrap().display().to_string())
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1234);
    let mut errors: Vec<pb::Query> = (0..6)
        .map(|_| pb::Query {
            source: Some(pb::query::Source::Image(common::png(&common::stripes(
                &mut rng, 48,
            )))),
        })
        .collect();
    errors.push(pb::Query {
        source: Some(pb::query::Source::Image(
            b"definitely not an image".to_vec(),
        )),
    });
    let set = client
        .build_debug_set(pb::BuildDebugSetRequest {
            pool: "imgs".into(),
            errors: errors.into_iter().map(Into::into).collect(),
            k: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let from_pattern = set
        .items
        .iter()
        .filter(|i| stripe_keys.contains(&i.key))
        .count();
    let p = from_pattern as f64 / set.items.len() as f64;
    eprintln!(
        "image debug-set precision {p} ({from_pattern} of {})",
        set.items.len()
    );
    assert!(
        p >= 0.9,
        "precision {p}: {from_pattern} of {} items are stripe images",
        set.items.len()
    );
    let cov = set.summary.unwrap().coverage;
    assert!(
        cov[6].error.contains("unsupported") || cov[6].error.contains("corrupt"),
        "{:?}",
        cov[6]
    );
    assert!(cov[..6].iter().all(|c| c.error.is_empty() && c.found == 10));

    let embedded = client
        .embed(pb::EmbedRequest {
            model: Some(pb::embed_request::Model::Pool("imgs".into())),
            images: vec![common::png(&common::smooth(&mut rng, 32)), vec![1, 2, 3]],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(embedded.dim, pool.dim);
    assert!(
        matches!(embedded.results[0].outcome, Some(pb::embed_result::Outcome::Vector(ref v)) if v.values.len() == pool.dim as usize)
    );
    assert!(matches!(
        embedded.results[1].outcome,
        Some(pb::embed_result::Outcome::Error(_))
    ));

    // Starting the same job again finds everything present.
    let again = run_folder_job(&mut client, "imgs", &root).await;
    assert_eq!((again.stored, again.present), (0, 300), "{again:?}");
    server.stop().await.unwrap();
}

async fn code_of<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
) -> (Code, String) {
    let s = r.expect_err("the call should fail");
    (s.code(), s.message().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_codes_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir_all(allowed.join("empty")).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    let options = ServerOptions {
        max_message_bytes: 1 << 20,
        ..ServerOptions::default()
    };
    let server = TestServer::start(&dir.path().join("data"), &allowed, options).await;
    let mut client = server.client().await;
    create_raw_pool(&mut client, "p").await;
    let (items, group) = vector_pool(5);
    let items: Vec<pb::IngestItem> = items
        .into_iter()
        .take(500)
        .map(|mut i| {
            i.pool = "p".into();
            i
        })
        .collect();
    client.ingest(tokio_stream::iter(items)).await.unwrap();
    let base = pb::BuildDebugSetRequest {
        pool: "p".into(),
        errors: vec![query_vec(group.clone()).into()],
        k: 5,
        ..Default::default()
    };
    let cases: Vec<(pb::BuildDebugSetRequest, Code, &str)> = vec![
        (
            pb::BuildDebugSetRequest {
                pool: "nope".into(),
                ..base.clone()
            },
            Code::NotFound,
            "no pool named",
        ),
        (
            pb::BuildDebugSetRequest {
                errors: vec![query_vec(vec![0.0; 7]).into()],
                ..base.clone()
            },
            Code::InvalidArgument,
            "dimension mismatch",
        ),
        (
            pb::BuildDebugSetRequest {
                errors: vec![query_vec({
                    let mut v = group.clone();
                    v[3] = f32::NAN;
                    v
                })
                .into()],
                ..base.clone()
            },
            Code::InvalidArgument,
            "non-finite",
        ),
        (
            pb::BuildDebugSetRequest {
                errors: vec![],
                ..base.clone()
            },
            Code::InvalidArgument,
            "at least one",
        ),
        (
            pb::BuildDebugSetRequest {
                k: 0,
                ..base.clone()
            },
            Code::InvalidArgument,
            "k = 0",
        ),
        (
            pb::BuildDebugSetRequest {
                k: 1_000_000,
                ..base.clone()
            },
            Code::InvalidArgument,
            "out of range",
        ),
        (
            pb::BuildDebugSetRequest {
                budget: Some(0),
                ..base.clone()
            },
            Code::InvalidArgument,
            "budget",
        ),
        (
            pb::BuildDebugSetRequest {
                max_distance: Some(-1.0),
                ..base.clone()
            },
            Code::InvalidArgument,
            "max_distance",
        ),
        (
            pb::BuildDebugSetRequest {
                errors: vec![pb::Query {
                    source: Some(pb::query::Source::ItemKey("missing".into())),
                }
                .into()],
                ..base.clone()
            },
            Code::NotFound,
            "no item with key",
        ),
        (
            pb::BuildDebugSetRequest {
                errors: vec![pb::Query {
                    source: Some(pb::query::Source::Image(vec![1, 2, 3])),
                }
                .into()],
                ..base.clone()
            },
            Code::FailedPrecondition,
            "no backbone",
        ),
        (
            pb::BuildDebugSetRequest {
                errors: vec![pb::Query { source: None }.into()],
                ..base.clone()
            },
            Code::InvalidArgument,
            "empty",
        ),
    ];
    for (req, code, words) in cases {
        let (got, msg) = code_of(client.build_debug_set(req.clone()).await).await;
        assert_eq!(got, code, "{msg}");
        assert!(msg.contains(words), "{msg:?} should mention {words:?}");
    }
    // A wrong vector in a stream stops it with the count already stored; nothing is lost.
    let bad_stream = vec![
        pb::IngestItem {
            pool: "p".into(),
            key: "fine".into(),
            content: Some(pb::ingest_item::Content::Vector(vector(vec![0.5; DIM]))),
            ..Default::default()
        },
        pb::IngestItem {
            key: "short".into(),
            content: Some(pb::ingest_item::Content::Vector(vector(vec![0.5; 3]))),
            ..Default::default()
        },
    ];
    let (got, msg) = code_of(client.ingest(tokio_stream::iter(bad_stream)).await).await;
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("3-d") && msg.contains("32-d"), "{msg}");
    // Oversize messages are refused by the transport with its own code.
    let big = pb::BuildDebugSetRequest {
        errors: vec![pb::Query {
            source: Some(pb::query::Source::Image(vec![0u8; 2 << 20])),
        }
        .into()],
        ..base.clone()
    };
    let (got, msg) = code_of(client.build_debug_set(big).await).await;
    assert_eq!(got, Code::OutOfRange, "{msg}");
    // Server-side paths.
    let job = |source| pb::StartIngestJobRequest {
        pool: "p".into(),
        source: Some(source),
    };
    use pb::start_ingest_job_request::Source;
    let outside = dir.path().join("outside").display().to_string();
    let sneaky = allowed.join("../outside").display().to_string();
    for path in [outside, sneaky] {
        let (got, msg) = code_of(client.start_ingest_job(job(Source::Folder(path))).await).await;
        assert_eq!(got, Code::PermissionDenied, "{msg}");
        assert!(msg.contains("--allow-root"), "{msg}");
    }
    let (got, msg) = code_of(
        client
            .start_ingest_job(job(Source::Folder("relative/dir".into())))
            .await,
    )
    .await;
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    let (got, msg) = code_of(
        client
            .start_ingest_job(job(Source::Folder(
                allowed.join("empty").display().to_string(),
            )))
            .await,
    )
    .await;
    assert_eq!(got, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("no images"), "{msg}");
    let (got, msg) = code_of(
        client
            .start_ingest_job(job(Source::Folder(
                allowed.join("gone").display().to_string(),
            )))
            .await,
    )
    .await;
    assert_eq!(got, Code::NotFound, "{msg}");
    // Raw pool: a job needs a backbone.
    std::fs::create_dir_all(allowed.join("imgs/a")).unwrap();
    common::smooth(&mut rand::rngs::StdRng::seed_from_u64(1), 32)
        .save(allowed.join("imgs/a/x.png"))
        .unwrap();
    let (got, msg) = code_of(
        client
            .start_ingest_job(job(Source::Folder(
                allowed.join("imgs").display().to_string(),
            )))
            .await,
    )
    .await;
    assert_eq!(got, Code::FailedPrecondition, "{msg}");
    let (got, _) = code_of(
        client
            .get_job(pb::GetJobRequest {
                id: "job-nope".into(),
            })
            .await,
    )
    .await;
    assert_eq!(got, Code::NotFound);
    let pool_cases = [
        (
            pb::CreatePoolRequest {
                name: "p".into(),
                dim: 4,
                ..Default::default()
            },
            Code::AlreadyExists,
        ),
        (
            pb::CreatePoolRequest {
                name: "q".into(),
                backbone: "resnet9000".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            pb::CreatePoolRequest {
                name: "w".into(),
                backbone: "resnet".into(),
                weights: dir.path().join("outside/w.pth").display().to_string(),
                ..Default::default()
            },
            Code::PermissionDenied,
        ),
        (
            pb::CreatePoolRequest {
                name: "bad name!".into(),
                dim: 4,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ];
    for (req, code) in pool_cases {
        let (got, msg) = code_of(client.create_pool(req).await).await;
        assert_eq!(got, code, "{msg}");
    }
    // Nothing stored was lost: 500 items plus the one good vector before the bad one.
    let details = client
        .get_pool(pb::GetPoolRequest { name: "p".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.pool.unwrap().items, 501);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_with_missing_files_lists_them_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    std::fs::create_dir_all(&root).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let mut csv = String::from("path,label,metadata\n");
    for i in 0..6 {
        common::smooth(&mut rng, 40)
            .save(root.join(format!("{i}.png")))
            .unwrap();
        csv.push_str(&format!("{i}.png,l{},\"{{\"\"n\"\": {i}}}\"\n", i % 2));
    }
    csv.push_str("missing.png,l0,\n");
    std::fs::write(root.join("manifest.csv"), csv).unwrap();
    let server = TestServer::start(
        &dir.path().join("data"),
        dir.path(),
        ServerOptions::default(),
    )
    .await;
    let mut client = server.client().await;
    client
        .create_pool(pb::CreatePoolRequest {
            name: "m".into(),
            backbone: "resnet".into(),
            weights: common::tiny_resnet(),
            ..Default::default()
        })
        .await
        .unwrap();
    let job = client
        .start_ingest_job(pb::StartIngestJobRequest {
            pool: "m".into(),
            source: Some(pb::start_ingest_job_request::Source::Manifest(
                root.join("manifest.csv").display().to_string(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    let done = dcd::service::jobs::wait(&server.service, &job.id).unwrap();
    assert_eq!(done.state, dcd::store::JobState::Succeeded);
    assert_eq!(
        (done.total, done.tally.stored, done.tally.failed),
        (7, 6, 1)
    );
    let j = client
        .get_job(pb::GetJobRequest { id: job.id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        j.errors[0].key.ends_with("missing.png") && j.errors[0].reason.contains("cannot read"),
        "{:?}",
        j.errors
    );
    let details = client
        .get_pool(pb::GetPoolRequest { name: "m".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.label_counts.get("l0"), Some(&3));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_in_flight_limit_health_and_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        api_key: Some("s3cret".into()),
        max_in_flight: 1,
        ..ServerOptions::default()
    };
    let server = TestServer::start(&dir.path().join("data"), dir.path(), options).await;
    let mut client = server.client().await;
    let (got, msg) = code_of(client.list_pools(pb::ListPoolsRequest {}).await).await;
    assert_eq!(got, Code::Unauthenticated, "{msg}");
    let with_key = |key: &str| {
        let mut r = tonic::Request::new(pb::ListPoolsRequest {});
        r.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        r
    };
    let (got, msg) = code_of(client.list_pools(with_key("wrong")).await).await;
    assert_eq!(got, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("wrong"));
    client.list_pools(with_key("s3cret")).await.unwrap();

    // A call computing holds the one permit; a second call is refused, then served. An
    // Ingest stream held open does not count: streams have their own cap, and an idle one
    // must not keep the computing calls out.
    fn keyed<T>(mut r: tonic::Request<T>) -> tonic::Request<T> {
        r.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        r
    }
    client
        .create_pool(keyed(tonic::Request::new(pb::CreatePoolRequest {
            name: "p".into(),
            dim: 64,
            ..Default::default()
        })))
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let rows: Vec<pb::IngestItem> = (0..20_000)
        .map(|i| pb::IngestItem {
            pool: "p".into(),
            key: format!("r{i}"),
            content: Some(pb::ingest_item::Content::Vector(vector(
                (0..64).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            ))),
            ..Default::default()
        })
        .collect();
    client
        .ingest(keyed(tonic::Request::new(tokio_stream::iter(rows))))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::IngestItem {
        pool: "p".into(),
        key: "held".into(),
        content: Some(pb::ingest_item::Content::Vector(vector(vec![1.0; 64]))),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut c2 = client.clone();
    let stream = keyed(tonic::Request::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let held_stream = tokio::spawn(async move { c2.ingest(stream).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    client.list_pools(with_key("s3cret")).await.unwrap();
    let mut refused = false;
    for queries in [200usize, 1000, 4000] {
        let heavy = pb::SearchRequest {
            pool: "p".into(),
            queries: (0..queries)
                .map(|_| query_vec((0..64).map(|_| rng.gen_range(-1.0..1.0)).collect()))
                .collect(),
            k: 10,
            exact: true,
            ..Default::default()
        };
        let mut c3 = client.clone();
        let search =
            tokio::spawn(async move { c3.search(keyed(tonic::Request::new(heavy))).await });
        while !search.is_finished() {
            match client.list_pools(with_key("s3cret")).await {
                Err(s) if s.code() == Code::ResourceExhausted => {
                    assert!(s.message().contains("--max-in-flight"));
                    refused = true;
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
        // Either side may be the one refused: the probe, or the search when the probe
        // was admitted first. Both show the limit at work.
        match search.await.unwrap() {
            Ok(_) => {}
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("--max-in-flight"), "{s}");
                refused = true;
            }
            Err(s) => panic!("the search failed: {s}"),
        }
        if refused {
            break;
        }
    }
    assert!(refused, "a second call beside a computing one is refused");
    client.list_pools(with_key("s3cret")).await.unwrap();
    drop(tx);
    let summary = held_stream.await.unwrap().unwrap().into_inner();
    assert_eq!(summary.stored, 1);

    // Health needs no key; reflection follows auth: refused without the key, lists the
    // service with it (in any case of the scheme's name).
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "dcd.v1.Dcd".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1 as refl;
    let mut reflection = refl::server_reflection_client::ServerReflectionClient::new(channel);
    let req = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let refused = reflection
        .server_reflection_info(tokio_stream::iter(vec![req.clone()]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    let mut keyed = tonic::Request::new(tokio_stream::iter(vec![req]));
    keyed
        .metadata_mut()
        .insert("authorization", "BEARER s3cret".parse().unwrap());
    let mut answers = reflection
        .server_reflection_info(keyed)
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected reflection answer");
    };
    assert!(list.service.iter().any(|s| s.name == "dcd.v1.Dcd"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let options = ServerOptions {
        tls: Some((
            cert_pem.clone().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )),
        ..ServerOptions::default()
    };
    let server = TestServer::start(&dir.path().join("data"), dir.path(), options).await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let mut channel = None;
    for _ in 0..50 {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", server.addr))
            .unwrap()
            .tls_config(tls.clone())
            .unwrap();
        if let Ok(c) = endpoint.connect().await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut client = pb::dcd_client::DcdClient::new(channel.expect("TLS connection"));
    client.list_pools(pb::ListPoolsRequest {}).await.unwrap();
    // A plaintext client gets no answer from the TLS port.
    let plain = match pb::dcd_client::DcdClient::connect(server.url()).await {
        Ok(mut c) => c.list_pools(pb::ListPoolsRequest {}).await.is_err(),
        Err(_) => true,
    };
    assert!(plain, "plaintext must not be served on a TLS port");
    server.stop().await.unwrap();
}

/// A service over `dir` without the gRPC layer.
fn local_service(dir: &std::path::Path) -> std::sync::Arc<dcd::service::Service> {
    let settings = dcd::app::settings(
        dcd::service::AllowedRoots::Any,
        &common::cpu_runtime(),
        None,
    );
    dcd::service::Service::open(dir, settings).unwrap()
}

fn create_local_pool(service: &dcd::service::Service, name: &str) {
    common::local_raw_pool(service, name, DIM);
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_pool_deleted(e: &dcd::service::ServiceError) -> bool {
    matches!(
        e,
        dcd::service::ServiceError::Store(dcd::store::StoreError::PoolDeleted { .. })
    )
}

/// A handle that outlives its pool's deletion (a search, an ingest stream, the index refresh
/// after an ingest) writes nothing more, least of all its graph into a new pool of that name.
#[test]
fn a_deleted_pools_handle_writes_nothing_into_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let service = local_service(dir.path());
    create_local_pool(&service, "p");
    let old = service.pool("p").unwrap();
    let rows = dcd::types::Matrix::new(
        50,
        DIM,
        (0..50 * DIM)
            .map(|i| (i % 7) as f32 + i as f32 * 1e-3)
            .collect(),
    );
    let items = |prefix: &str| -> Vec<dcd::store::NewItem> {
        (0..50)
            .map(|i| dcd::store::NewItem {
                key: format!("{prefix}/{i}"),
                ..Default::default()
            })
            .collect()
    };
    old.append(&rows, &items("a"), None).unwrap();

    assert_eq!(service.delete_pool("p").unwrap(), 50);
    // No folder and no leftover under another name.
    assert!(entries(&dir.path().join("pools")).is_empty());
    assert!(service.pool("p").is_err());

    create_local_pool(&service, "p");
    let e = old.catch_up_index(true).unwrap_err();
    assert!(is_pool_deleted(&e), "{e}");
    assert!(e.to_string().contains("was deleted"), "{e}");
    let e = old.append(&rows, &items("b"), None).unwrap_err();
    assert!(is_pool_deleted(&e), "{e}");
    let e = old
        .ready(dcd::index::manager::Engine::Native, false)
        .err()
        .unwrap();
    assert!(is_pool_deleted(&e), "{e}");
    assert_eq!(entries(&dir.path().join("pools/p")), ["vectors.bin"]);
    assert_eq!(service.pool("p").unwrap().record().rows, 0);
}

/// Deleting a pool right after an ingest meets the index refresh that the ingest started in
/// the background; the delete waits for it and removes everything.
#[test]
fn deleting_right_after_an_ingest_waits_for_the_index_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let service = local_service(dir.path());
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for round in 0..3 {
        create_local_pool(&service, "p");
        let mut ingest = dcd::service::StreamIngest::start(service.clone(), "p").unwrap();
        for i in 0..1500 {
            ingest
                .push(dcd::service::IngestItem {
                    key: format!("k/{i}"),
                    label: None,
                    metadata: None,
                    content: dcd::service::ItemContent::Vector(
                        (0..DIM).map(|_| rng.gen::<f32>()).collect(),
                    ),
                    content_sha256: None,
                })
                .unwrap();
        }
        assert_eq!(ingest.finish().unwrap().stored, 1500);
        assert_eq!(service.delete_pool("p").unwrap(), 1500, "round {round}");
        assert!(
            entries(&dir.path().join("pools")).is_empty(),
            "round {round}"
        );
    }
}
