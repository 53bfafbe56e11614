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
use crate::debugset::{Merge, MergeParams};
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
    Error::Usage(format!(
        "benchmark call failed: {:?}: {}",
        s.code(),
        s.message()
    ))
}

const POOL: &str = "bench";

/// Runs the benchmark against the server at `url`, which serves `service`.
pub async fn run(service: Arc<Service>, url: String, cfg: BenchConfig) -> Result<BenchReport> {
    let channel = Channel::from_shared(url)
        .map_err(|e| Error::Usage(e.to_string()))?
        .initial_stream_window_size(super::WINDOW_BYTES)
        .initial_connection_window_size(2 * super::WINDOW_BYTES)
        .connect()
        .await
        .map_err(|e| Error::Usage(format!("cannot connect: {e}")))?;
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
    let existing = service.store().pool_record(POOL).ok();
    if existing
        .as_ref()
        .is_none_or(|p| p.rows as usize != cfg.n || p.dim != cfg.dim)
    {
        if existing.is_some() {
            service.delete_pool(POOL)?;
        }
        client
            .create_pool(pb::CreatePoolRequest {
                name: POOL.into(),
                dim: cfg.dim as u32,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        tracing::info!(n = cfg.n, dim = cfg.dim, "generating the pool");
        let base = Arc::new(spec.sample(cfg.n, 0));
        let started = Instant::now();
        let items = {
            let base = base.clone();
            (0..cfg.n).map(move |i| pb::IngestItem {
                pool: if i == 0 { POOL.into() } else { String::new() },
                key: format!("v{i}"),
                label: format!("c{}", i % 10),
                metadata_json: String::new(),
                content: Some(pb::ingest_item::Content::Vector(pb::Vector {
                    values: base.row(i).to_vec(),
                })),
            })
        };
        let summary = client
            .ingest(tokio_stream::iter(items))
            .await
            .map_err(failed)?
            .into_inner();
        let secs = started.elapsed().as_secs_f64();
        report.ingest_vectors_per_s = Some(summary.stored as f64 / secs);
        tracing::info!(stored = summary.stored, secs, "ingested");
    }
    let started = Instant::now();
    {
        let s = service.clone();
        tokio::task::spawn_blocking(move || s.pool(POOL)?.refresh_graph())
            .await
            .map_err(|e| Error::Usage(e.to_string()))??;
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
    let domain = DebugSetRequest {
        pool: POOL.into(),
        errors: errors
            .iter_rows()
            .map(|r| QueryInput::Vector(r.to_vec()).into())
            .collect(),
        errors_pool: None,
        k: cfg.k,
        merge: MergeParams {
            merge: Merge::Union,
            budget: None,
            max_distance: None,
            keep_duplicates: false,
            min_support: 1,
        },
        labels: Vec::new(),
        exclude_keys: Vec::new(),
        exact: false,
        exact_rerank: false,
        ef: None,
        label_policy: None,
        negatives: Vec::new(),
        negative_pool: None,
        negative_margin: 1.0,
        holdout: Vec::new(),
        holdout_pool: None,
        holdout_radius: 0.0,
        dedup_distance: None,
        reference_pool: None,
        min_gap_percentile: None,
        max_distance_percentile: None,
        max_modes: None,
    };
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
            .map_err(|e| Error::Usage(e.to_string()))??;
        local.push(t.elapsed().as_secs_f64());
    }
    report.debug_set_grpc = Latency::of(grpc);
    report.debug_set_in_process = Latency::of(local);
    report.in_process_over_grpc_p50 =
        report.debug_set_in_process.p50_ms / report.debug_set_grpc.p50_ms.max(1e-9);
    if cfg.clients > 0 {
        load(&channel, &spec, &cfg, &mut report).await;
    }
    Ok(report)
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
