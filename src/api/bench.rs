//! `dcd bench service`: the service measured through its gRPC front on loopback, against the
//! same calls made in-process. Vector ingest through the client stream, index catch-up,
//! BuildDebugSet latency (gRPC and in-process, same requests), and a fixed-time load of many
//! concurrent clients mixing Search and BuildDebugSet, with errors counted by code and the
//! process's memory sampled each second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::pb;
use super::pb::dcd_client::DcdClient;
use crate::error::{Error, Result};
use crate::service::{DebugSetRequest, QueryInput, Service};
use crate::synth::ClusterSpec;
use crate::types::Matrix;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Pool vectors (ingested unless the pool already holds them).
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Error samples per BuildDebugSet.
    pub errors: usize,
    /// Neighbours per error sample.
    pub k: usize,
    /// BuildDebugSet calls timed each way.
    pub repeat: usize,
    /// Concurrent clients in the load phase (0: skip it).
    pub clients: usize,
    /// Seconds of load.
    pub seconds: f64,
    /// Items of the reference pool for the all-rules request (0: no reference).
    pub reference: usize,
}

/// Latency quantiles in milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Latency {
            count: samples.len(),
            p50_ms: at(0.5) * 1e3,
            p99_ms: at(0.99) * 1e3,
            mean_ms: samples.iter().sum::<f64>() / samples.len() as f64 * 1e3,
        }
    }
}

/// The measurements.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BenchReport {
    /// Pool vectors.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Vectors per second through the Ingest stream (each batch fsynced); None if reused.
    pub ingest_vectors_per_s: Option<f64>,
    /// Seconds to bring the HNSW index up to date after the ingest.
    pub index_seconds: f64,
    /// BuildDebugSet through gRPC.
    pub debug_set_grpc: Latency,
    /// The same requests in-process (no gRPC).
    pub debug_set_in_process: Latency,
    /// in-process p50 ÷ gRPC p50 (1.0: gRPC costs nothing).
    pub in_process_over_grpc_p50: f64,
    /// Items per debug-train set.
    pub set_items: usize,
    /// BuildDebugSet through gRPC with every rule on but the reference and consensus
    /// (labelled error samples and their vote, negatives, holdout, dedup, percentile cap,
    /// modes, label caps and targets, diversity, budget).
    pub all_rules: Latency,
    /// Items per all-rules set.
    pub all_rules_items: usize,
    /// The same with a reference pool (gap rule, and its label estimate for the unlabelled
    /// half of the error samples); None without one.
    pub all_rules_reference: Option<Latency>,
    /// Items of the reference pool.
    pub reference_items: usize,
    /// Load phase: calls by outcome code.
    pub load_codes: BTreeMap<String, u64>,
    /// Load phase latency of successful calls.
    pub load_latency: Latency,
    /// Load phase calls per second.
    pub load_calls_per_s: f64,
    /// Anonymous resident memory (MB), sampled each second of the load phase.
    pub rss_anon_mb: Vec<f64>,
    /// File-backed resident memory (MB: the mapped vectors and index), each second.
    pub rss_file_mb: Vec<f64>,
}

/// Resident memory in MB: (anonymous, file-backed); the vectors are a file mapping, so the
/// second grows as searches touch more of the pool and the first is what would show a leak.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

fn failed(s: tonic::Status) -> Error {
    crate::api::status::remote_error(s)
}

const POOL: &str = "bench";

/// Runs the benchmark against the server at `url`, which serves `service`.
pub async fn run(service: Arc<Service>, url: String, cfg: BenchConfig) -> Result<BenchReport> {
    let channel = Channel::from_shared(url)
        .map_err(|e| Error::Internal(e.to_string()))?
        .initial_stream_window_size(super::WINDOW_BYTES)
        .initial_connection_window_size(2 * super::WINDOW_BYTES)
        .connect()
        .await
        .map_err(|e| Error::Network(format!("cannot connect: {e}")))?;
    let mut client = DcdClient::new(channel.clone())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let spec = ClusterSpec {
        dim: cfg.dim,
        clusters: (cfg.n / 1000).max(10),
        seed: 1,
    };
    let mut report = BenchReport {
        n: cfg.n,
        dim: cfg.dim,
        ..BenchReport::default()
    };
    if let Some((stored, secs)) = ensure_pool(&service, &mut client, POOL, &spec, cfg.n, 0).await? {
        report.ingest_vectors_per_s = Some(stored as f64 / secs);
        tracing::info!(stored, secs, "ingested");
    }
    let started = Instant::now();
    {
        let s = service.clone();
        tokio::task::spawn_blocking(move || s.pool(POOL)?.catch_up_index(true))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
    }
    report.index_seconds = started.elapsed().as_secs_f64();
    tracing::info!(secs = report.index_seconds, "index ready");

    let errors: Matrix = spec.sample(cfg.errors, 1);
    let wire = pb::BuildDebugSetRequest {
        pool: POOL.into(),
        errors: errors
            .iter_rows()
            .map(|r| pb::ErrorSample {
                source: Some(pb::error_sample::Source::Vector(pb::Vector {
                    values: r.to_vec(),
                })),
                ..Default::default()
            })
            .collect(),
        k: cfg.k as u32,
        ..Default::default()
    };
    let domain = DebugSetRequest::new(
        POOL,
        errors
            .iter_rows()
            .map(|r| QueryInput::Vector(r.to_vec()).into())
            .collect(),
        cfg.k,
    );
    // Warm both paths once, then alternate so drift hits both alike.
    let set = client
        .build_debug_set(wire.clone())
        .await
        .map_err(failed)?
        .into_inner();
    report.set_items = set.items.len();
    let (mut grpc, mut local) = (Vec::new(), Vec::new());
    for _ in 0..cfg.repeat {
        let t = Instant::now();
        client.build_debug_set(wire.clone()).await.map_err(failed)?;
        grpc.push(t.elapsed().as_secs_f64());
        let (s, req) = (service.clone(), domain.clone());
        let t = Instant::now();
        tokio::task::spawn_blocking(move || s.build_debug_set(&req))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        local.push(t.elapsed().as_secs_f64());
    }
    report.debug_set_grpc = Latency::of(grpc);
    report.debug_set_in_process = Latency::of(local);
    report.in_process_over_grpc_p50 =
        report.debug_set_in_process.p50_ms / report.debug_set_grpc.p50_ms.max(1e-9);
    all_rules(&service, &mut client, &spec, &cfg, &wire, &mut report).await?;
    if cfg.clients > 0 {
        load(&channel, &spec, &cfg, &mut report).await;
    }
    Ok(report)
}

const REFERENCE: &str = "bench-reference";

/// Makes `name` a pool of `n` vectors drawn from `spec` (stream `stream`), labelled c0..c9 in
/// turn, unless it already is one of that size; returns (vectors stored, seconds) when it
/// ingested them.
async fn ensure_pool(
    service: &Service,
    client: &mut DcdClient<Channel>,
    name: &str,
    spec: &ClusterSpec,
    n: usize,
    stream: u64,
) -> Result<Option<(u64, f64)>> {
    let existing = service.pool_record(name).ok();
    if existing
        .as_ref()
        .is_some_and(|p| p.rows as usize == n && p.dim == spec.dim)
    {
        return Ok(None);
    }
    if existing.is_some() {
        service.delete_pool(name)?;
    }
    client
        .create_pool(pb::CreatePoolRequest {
            name: name.into(),
            dim: spec.dim as u32,
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    tracing::info!(pool = name, n, dim = spec.dim, "generating the pool");
    let base = Arc::new(spec.sample(n, stream));
    let started = Instant::now();
    let first = name.to_owned();
    let items = (0..n).map(move |i| pb::IngestItem {
        pool: if i == 0 { first.clone() } else { String::new() },
        key: format!("v{i}"),
        label: format!("c{}", i % 10),
        metadata_json: String::new(),
        content: Some(pb::ingest_item::Content::Vector(pb::Vector {
            values: base.row(i).to_vec(),
        })),
        ..Default::default()
    });
    let summary = client
        .ingest(tokio_stream::iter(items))
        .await
        .map_err(failed)?
        .into_inner();
    Ok(Some((summary.stored, started.elapsed().as_secs_f64())))
}

/// Times BuildDebugSet with every rule on, without and with a reference pool.
async fn all_rules(
    service: &Arc<Service>,
    client: &mut DcdClient<Channel>,
    spec: &ClusterSpec,
    cfg: &BenchConfig,
    plain: &pb::BuildDebugSetRequest,
    report: &mut BenchReport,
) -> Result<()> {
    let vectors = |m: Matrix| -> Vec<pb::Query> {
        m.iter_rows()
            .map(|r| pb::Query {
                source: Some(pb::query::Source::Vector(pb::Vector { values: r.to_vec() })),
            })
            .collect()
    };
    let mut errors = plain.errors.clone();
    // Half the error samples labelled (the vote judges what they find), half not (the
    // reference's estimate judges the rest, where there is one).
    for (i, e) in errors.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        e.label = format!("c{}", i % 10);
    }
    let rules = pb::BuildDebugSetRequest {
        errors,
        budget: Some(1000),
        // Synthetic failures rarely share neighbours: consensus would leave a handful of
        // items and hide what dedup and diversity cost on a real set.
        min_support: 1,
        // The labels here are noise: the vote is computed and reported, but keeps them all.
        label_policy: pb::LabelPolicy::Keep as i32,
        negatives: vectors(spec.sample(10, 3)),
        holdout: vectors(spec.sample(10, 4)),
        holdout_radius: Some(1e-3),
        dedup_distance: Some(1e-3),
        max_distance_percentile: Some(0.99),
        max_per_label: Some(200),
        label_targets: [("c0".to_owned(), 50)].into_iter().collect(),
        mmr_lambda: Some(0.7),
        ..plain.clone()
    };
    let caller = client.clone();
    let time = |req: pb::BuildDebugSetRequest| {
        let mut client = caller.clone();
        async move {
            // One call to warm caches (distance scale, reference sample, probe), then timed.
            let set = client
                .build_debug_set(req.clone())
                .await
                .map_err(failed)?
                .into_inner();
            let mut samples = Vec::new();
            for _ in 0..cfg.repeat {
                let t = Instant::now();
                client.build_debug_set(req.clone()).await.map_err(failed)?;
                samples.push(t.elapsed().as_secs_f64());
            }
            Ok::<_, Error>((Latency::of(samples), set.items.len()))
        }
    };
    let (latency, items) = time(rules.clone()).await?;
    report.all_rules = latency;
    report.all_rules_items = items;
    if cfg.reference == 0 {
        return Ok(());
    }
    ensure_pool(service, client, REFERENCE, spec, cfg.reference, 5).await?;
    let s = service.clone();
    tokio::task::spawn_blocking(move || s.pool(REFERENCE)?.catch_up_index(true))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    report.reference_items = cfg.reference;
    let (latency, _) = time(pb::BuildDebugSetRequest {
        reference_pool: REFERENCE.into(),
        min_gap_percentile: Some(0.2),
        ..rules
    })
    .await?;
    report.all_rules_reference = Some(latency);
    Ok(())
}

async fn load(channel: &Channel, spec: &ClusterSpec, cfg: &BenchConfig, report: &mut BenchReport) {
    let queries = Arc::new(spec.sample(256, 2));
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.seconds);
    let sampler = tokio::spawn(async move {
        let mut series = Vec::new();
        while Instant::now() < deadline {
            series.push(rss_mb());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        series.push(rss_mb());
        series
    });
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let mut client = DcdClient::new(channel.clone()).max_decoding_message_size(256 << 20);
        let queries = queries.clone();
        let k = cfg.k as u32;
        tasks.push(tokio::spawn(async move {
            let mut codes: BTreeMap<String, u64> = BTreeMap::new();
            let mut ok = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let q = |j: usize| pb::Query {
                    source: Some(pb::query::Source::Vector(pb::Vector {
                        values: queries.row(j % queries.rows).to_vec(),
                    })),
                };
                let t = Instant::now();
                let result = if i % 2 == 0 {
                    client
                        .search(pb::SearchRequest {
                            pool: POOL.into(),
                            queries: vec![q(i)],
                            k: 10,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                } else {
                    client
                        .build_debug_set(pb::BuildDebugSetRequest {
                            pool: POOL.into(),
                            errors: (0..10)
                                .map(|j| pb::ErrorSample {
                                    source: Some(pb::error_sample::Source::Vector(pb::Vector {
                                        values: queries.row((i + j) % queries.rows).to_vec(),
                                    })),
                                    ..Default::default()
                                })
                                .collect(),
                            k,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                };
                let code = match result {
                    Ok(()) => {
                        ok.push(t.elapsed().as_secs_f64());
                        tonic::Code::Ok
                    }
                    Err(s) => {
                        if s.code() == tonic::Code::ResourceExhausted {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        s.code()
                    }
                };
                *codes.entry(format!("{code:?}")).or_default() += 1;
                i += 1;
            }
            (codes, ok)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok((codes, ok)) = t.await {
            for (c, n) in codes {
                *report.load_codes.entry(c).or_default() += n;
            }
            all.extend(ok);
        }
    }
    let series = sampler.await.unwrap_or_default();
    report.rss_anon_mb = series.iter().map(|s| s.0).collect();
    report.rss_file_mb = series.iter().map(|s| s.1).collect();
    let total: u64 = report.load_codes.values().sum();
    report.load_calls_per_s = total as f64 / cfg.seconds;
    report.load_latency = Latency::of(all);
}
