//! Load with abuse beside it (issue 20): 32 clients mixing every RPC (searches, debug sets,
//! pool details, vector and image ingestion, jobs, embedding, pools created and deleted)
//! against a real `dcd serve` for DCD_LOAD_SECONDS (default 60), while 500 idle connections
//! and 64 idle Ingest streams are held open. No error but deliberate RESOURCE_EXHAUSTED, p50
//! and p99 printed, the server's RSS flat over the second half (the ingested keys cycle, so
//! the pools stop growing), and SIGTERM under load ends within the drain deadline.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dcd::api::pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

const DIM: usize = 32;
const DRAIN_S: u64 = 5;

fn vector_items(rng: &mut StdRng, pool: &str, prefix: &str, n: usize) -> Vec<pb::IngestItem> {
    (0..n)
        .map(|i| pb::IngestItem {
            pool: pool.into(),
            key: format!("{prefix}-{i}"),
            label: ["a", "b", "c"][i % 3].into(),
            content: Some(pb::ingest_item::Content::Vector(pb::Vector {
                values: (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            })),
            ..Default::default()
        })
        .collect()
}

fn query(rng: &mut StdRng) -> pb::Query {
    pb::Query {
        source: Some(pb::query::Source::Vector(pb::Vector {
            values: (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        })),
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    by_code: BTreeMap<String, u64>,
}

/// One client: a mix of every RPC until `until`.
async fn client_loop(
    url: String,
    id: usize,
    images: Vec<Vec<u8>>,
    folder: String,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut client = pb::dcd_client::DcdClient::connect(url).await.unwrap();
    let mut rng = StdRng::seed_from_u64(id as u64);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let t = Instant::now();
        let pick = rng.gen_range(0..100);
        let outcome: Result<(), tonic::Status> = match pick {
            0..=29 => client
                .search(pb::SearchRequest {
                    pool: "v".into(),
                    queries: (0..4).map(|_| query(&mut rng)).collect(),
                    k: 10,
                    ..Default::default()
                })
                .await
                .map(drop),
            30..=44 => client
                .build_debug_set(pb::BuildDebugSetRequest {
                    pool: "v".into(),
                    errors: (0..8).map(|_| query(&mut rng).into()).collect(),
                    k: 20,
                    ..Default::default()
                })
                .await
                .map(drop),
            45..=54 => client
                .get_pool(pb::GetPoolRequest { name: "img".into() })
                .await
                .map(drop),
            55..=62 => client.list_pools(pb::ListPoolsRequest {}).await.map(drop),
            63..=77 => {
                // Keys cycle over 20 batches per client: the pool stops growing (later sends
                // are skipped as present), so RSS growth would be a leak, not data.
                let batch = vector_items(&mut rng, "v", &format!("c{id}n{}", n % 20), 50);
                client.ingest(tokio_stream::iter(batch)).await.map(drop)
            }
            78..=87 => client
                .embed(pb::EmbedRequest {
                    model: Some(pb::embed_request::Model::Pool("img".into())),
                    images: images.clone(),
                })
                .await
                .map(drop),
            88..=92 => {
                match client
                    .start_ingest_job(pb::StartIngestJobRequest {
                        pool: "img".into(),
                        source: Some(pb::start_ingest_job_request::Source::Folder(folder.clone())),
                    })
                    .await
                {
                    Ok(job) => client
                        .get_job(pb::GetJobRequest {
                            id: job.into_inner().id,
                        })
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                }
            }
            _ => {
                let name = format!("scratch-{id}-{n}");
                let created = client
                    .create_pool(pb::CreatePoolRequest {
                        name: name.clone(),
                        dim: DIM as u32,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(_) => client
                        .delete_pool(pb::DeletePoolRequest { name })
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                }
            }
        };
        let busy = matches!(&outcome, Err(s) if s.code() == Code::ResourceExhausted);
        {
            let mut tally = tally.lock().unwrap();
            tally.latencies.push(t.elapsed().as_secs_f64());
            let code = outcome.map_or_else(
                |s| format!("{:?}: {}", s.code(), s.message()),
                |_| "Ok".into(),
            );
            *tally.by_code.entry(code).or_default() += 1;
        }
        if busy {
            // As a client should: back off when the server says it is at its limit.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_idle_abuse_then_sigterm() {
    let seconds: f64 = std::env::var("DCD_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let folder = base.join("images");
    common::write_pool(&folder, 10, 30, 8);
    let drain = DRAIN_S.to_string();
    let server = common::ServerProcess::start(
        &base.join("data"),
        &base,
        &[
            "--max-connections",
            "1024",
            "--max-ingest-streams",
            "96",
            "--stream-idle-timeout-s",
            "600",
            "--drain-timeout-s",
            &drain,
        ],
    );
    let (mut child, url) = (server.child, server.url);
    let pid = child.id();

    // Pools: vectors to search, images to embed.
    let mut setup = pb::dcd_client::DcdClient::connect(url.clone())
        .await
        .unwrap();
    common::raw_pool(&mut setup, "v", DIM).await;
    let mut rng = StdRng::seed_from_u64(1);
    setup
        .ingest(tokio_stream::iter(vector_items(
            &mut rng, "v", "base", 20_000,
        )))
        .await
        .unwrap();
    common::image_pool(&mut setup, "img").await;
    let images: Vec<Vec<u8>> = (0..2)
        .map(|_| common::png(&common::smooth(&mut rng, 48)))
        .collect();

    // The abuse beside the load: 500 idle HTTP/2 connections, 64 idle Ingest streams.
    let mut idle_channels = Vec::new();
    for _ in 0..500 {
        idle_channels.push(
            tonic::transport::Endpoint::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let mut idle_streams = Vec::new();
    for (i, channel) in idle_channels.iter().take(64).enumerate() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(vector_items(&mut rng, "v", &format!("idle{i}"), 1).remove(0))
            .await
            .unwrap();
        let mut c = pb::dcd_client::DcdClient::new(channel.clone());
        let task = tokio::spawn(async move {
            c.ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        idle_streams.push((tx, task));
    }

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = Vec::new();
    for id in 0..32 {
        clients.push(tokio::spawn(client_loop(
            url.clone(),
            id,
            images.clone(),
            folder.display().to_string(),
            until,
            tally.clone(),
        )));
    }
    let mut rss = Vec::new();
    while Instant::now() < until {
        rss.push(common::proc_kib(Some(pid), "VmRSS"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());

    // SIGTERM under load: clients keep calling, an idle stream stays open.
    let until = Instant::now() + Duration::from_secs(3 * DRAIN_S);
    let mut more = Vec::new();
    for id in 100..108 {
        more.push(tokio::spawn(client_loop(
            url.clone(),
            id,
            images.clone(),
            folder.display().to_string(),
            until,
            Arc::new(Mutex::new(Tally::default())),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Instant::now();
    // SAFETY: kill with a valid pid of our own child and a standard signal.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let stopped_in = term.elapsed();
    drop(idle_streams);
    drop(idle_channels);
    for c in more {
        c.abort();
    }

    let mut lat = tally.latencies.clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] * 1e3;
    println!(
        "{} calls in {seconds} s by 32 clients beside 500 idle connections and 64 idle streams: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("outcomes: {:?}", tally.by_code);
    let mib: Vec<u64> = rss.iter().map(|k| k / 1024).collect();
    println!("server RSS MiB, one a second: {mib:?}");
    println!("SIGTERM under load: exited {status} in {stopped_in:?} (drain deadline {DRAIN_S} s)");

    let unexpected: Vec<_> = tally
        .by_code
        .iter()
        .filter(|(c, _)| *c != "Ok" && !c.starts_with(&format!("{:?}", Code::ResourceExhausted)))
        .collect();
    assert!(unexpected.is_empty(), "errors under load: {unexpected:?}");
    assert!(lat.len() > 100, "only {} calls", lat.len());
    // Flat: the second half's peak within a quarter (and 64 MiB) of the first half's.
    let half = mib.len() / 2;
    let first = *mib[..half].iter().max().unwrap();
    let second = *mib[half..].iter().max().unwrap();
    assert!(
        second <= first + first / 4 + 64,
        "server RSS grew from {first} to {second} MiB"
    );
    assert!(
        stopped_in < Duration::from_secs(DRAIN_S + 5),
        "SIGTERM took {stopped_in:?}"
    );
}
