//! The flags of `dcd serve` and of every command that runs the service in-process: where
//! models run, and the bounds on requests, streams, jobs and images.

use std::path::PathBuf;

use clap::Args;

use crate::gpu::plan_cache::PlanMode;
use crate::limits;
use crate::settings::{Device, ExactCopy, Precision};

use super::IndexArgs;

/// Where `dcd serve` listens and what it allows.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, env = "DCD_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: std::net::SocketAddr,
    /// Directory clients may make the server read (ingestion jobs, weights); repeatable.
    /// Without one, server-side paths are refused.
    #[arg(long = "allow-root", env = "DCD_ALLOW_ROOT", value_delimiter = ',')]
    pub allow_root: Vec<PathBuf>,
    /// Require `authorization: Bearer <key>` on every call (health checks stay open).
    #[arg(long, env = "DCD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves gRPC over TLS.
    #[arg(long, env = "DCD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "DCD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "DCD_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the review page on this address (e.g. 127.0.0.1:8080): pools, saved sets, their
    /// review and rounds, in a browser. Off by default; same API key as gRPC; plain HTTP
    /// (keep it on loopback, or behind a TLS proxy).
    #[arg(long, env = "DCD_HTTP_ADDR")]
    pub http_addr: Option<std::net::SocketAddr>,
    /// The demo's data (scripts/fetch_demo.sh unpacks it into target/demo): the page of an
    /// empty data directory offers to build the demo from it. Must be below an --allow-root.
    #[arg(long, env = "DCD_DEMO_DATA")]
    pub demo_data: Option<PathBuf>,
    /// Build the demo (a small textile pool, ten failures, their debug-train set) in the
    /// background now, unless it is there already.
    #[arg(long, env = "DCD_DEMO", requires = "demo_data")]
    pub demo: bool,
    /// Requests served at once; beyond it, RESOURCE_EXHAUSTED.
    #[arg(long, env = "DCD_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Largest gRPC message in MiB, both ways (an image upload, a search answer).
    #[arg(long, env = "DCD_MAX_MESSAGE_MIB", default_value_t = 64)]
    pub max_message_mib: usize,
    /// Longest any request may take, in seconds (0: only the client's deadline applies).
    #[arg(long, env = "DCD_REQUEST_TIMEOUT_S", default_value_t = 0)]
    pub request_timeout_s: u64,
    /// Ingest streams open at once; beyond it RESOURCE_EXHAUSTED (streams wait on their
    /// clients, so they are capped apart from --max-in-flight).
    #[arg(long, env = "DCD_MAX_INGEST_STREAMS", default_value_t = crate::limits::StreamLimits::default().max_streams)]
    pub max_ingest_streams: usize,
    /// Seconds an Ingest stream may go without an item before it is closed (what it
    /// committed stays stored).
    #[arg(long, env = "DCD_STREAM_IDLE_TIMEOUT_S", default_value_t = crate::limits::StreamLimits::default().idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_idle_timeout_s: u64,
    /// MiB of items one Ingest stream holds before they are committed.
    #[arg(long, env = "DCD_MAX_STREAM_MIB", default_value_t = crate::limits::StreamLimits::default().max_stream_bytes >> 20)]
    pub max_stream_mib: usize,
    /// Connections open at once; more wait in the listen backlog (keep it well under the
    /// process's open-file limit, `ulimit -n`).
    #[arg(long, env = "DCD_MAX_CONNECTIONS", default_value_t = crate::limits::ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a new connection has to send its first bytes before it is closed.
    #[arg(long, env = "DCD_HANDSHAKE_TIMEOUT_S", default_value_t = crate::limits::ConnectionLimits::default().handshake_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_s: u64,
    /// Seconds between HTTP/2 pings; a peer silent for as long again is closed.
    #[arg(long, env = "DCD_KEEPALIVE_S", default_value_t = crate::limits::ConnectionLimits::default().keepalive.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_s: u64,
    /// Seconds SIGTERM waits for the calls in flight before it closes what is left.
    #[arg(long, env = "DCD_DRAIN_TIMEOUT_S", default_value_t = crate::limits::ConnectionLimits::default().drain_timeout.as_secs())]
    pub drain_timeout_s: u64,
    /// MiB of items all Ingest streams together hold before they are committed.
    #[arg(long, env = "DCD_MAX_INGEST_MIB", default_value_t = crate::limits::StreamLimits::default().max_total_bytes >> 20)]
    pub max_ingest_mib: usize,
    /// Where models run, how images are batched, and the service's bounds.
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
    /// HNSW parameters.
    #[command(flatten)]
    pub index: IndexArgs,
}

/// Where models run and how images are batched.
#[derive(Debug, Args, Clone)]
pub struct ModelRuntimeArgs {
    /// Where models run: cpu, or cuda / cuda:N (needs a dcd built with --features cuda).
    #[arg(long, env = "DCD_DEVICE", default_value = "cpu")]
    pub device: Device,
    /// Where exact searches, exact debug sets and exact re-ranking run: cpu, or cuda /
    /// cuda:N (dcd's kernels, a copy of each pool on the GPU; needs --features cuda).
    /// Default: the --device value.
    #[arg(long, env = "DCD_EXACT_DEVICE")]
    pub exact_device: Option<Device>,
    /// The element type of a GPU exact device's copy of each f32 pool: `stored` (f32), or
    /// `f16` / `bf16`, half the device memory and half the bytes a scan reads, with every
    /// answer still exact: the copy proposes candidates, which are scored from the f32 rows
    /// and certified. f16 pools are copied as they are.
    #[arg(
        long = "exact-device-copy",
        env = "DCD_EXACT_DEVICE_COPY",
        default_value = "stored"
    )]
    pub exact_copy: ExactCopy,
    /// How a GPU exact device picks a search plan for each batch size: `builtin` (dcd's
    /// thresholds, from an H100), `measure` (each pool's copy times fused, gemm and mma on
    /// this card when it is made, at batches of 1 to 1024 of the pool's own rows, for up to
    /// 30 s, logs the timings and its choice and saves them beside the pool, as
    /// gpu-plans.json; later starts on the same card and dcd binary load them while the pool
    /// is within a factor of two of the size timed), or `remeasure` (time them again now).
    #[arg(
        long = "exact-plans",
        env = "DCD_EXACT_PLANS",
        default_value = "builtin"
    )]
    pub exact_plans: PlanMode,
    /// Model precision: f32; bf16 (CUDA, or CPUs with AVX512-BF16: bf16 products, f32
    /// accumulation; refused on other CPUs); f16 (for CUDA).
    #[arg(long, env = "DCD_PRECISION", default_value = "f32")]
    pub precision: Precision,
    /// Most images per forward pass.
    #[arg(long, env = "DCD_BATCH", default_value_t = ModelRuntimeArgs::BATCH)]
    pub batch: usize,
    /// Bounds on images.
    #[command(flatten)]
    pub images: ImageLimitArgs,
    /// Bounds on requests, streams and jobs.
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl ModelRuntimeArgs {
    /// Images per forward pass when not given.
    pub const BATCH: usize = 16;
}

/// The flags' defaults: for commands that load no model (pool, search, import), which take
/// no runtime flags.
impl Default for ModelRuntimeArgs {
    fn default() -> Self {
        ModelRuntimeArgs {
            device: Default::default(),
            exact_device: None,
            exact_copy: Default::default(),
            exact_plans: Default::default(),
            precision: Default::default(),
            batch: ModelRuntimeArgs::BATCH,
            images: Default::default(),
            limits: Default::default(),
        }
    }
}

/// Bounds on what one request or job may ask of the service (docs/operations.md lists every
/// bound).
#[derive(Debug, Args, Clone, Copy)]
pub struct LimitArgs {
    /// Most results one Search or BuildDebugSet may compute: queries (or error samples) x k.
    /// Split larger requests into several calls.
    #[arg(long, env = "DCD_MAX_HITS", default_value_t = LimitArgs::default().max_hits)]
    pub max_hits: usize,
    /// Most entries (files, and entries that failed) one ingestion job may list.
    #[arg(long, env = "DCD_MAX_JOB_ENTRIES", default_value_t = LimitArgs::default().max_job_entries)]
    pub max_job_entries: usize,
    /// Folder levels below a job's folder that are listed; deeper ones are failed entries.
    #[arg(long, env = "DCD_MAX_JOB_DEPTH", default_value_t = LimitArgs::default().max_job_depth,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_job_depth: u32,
    /// Bytes of image files a job reads ahead of the model, in MiB (a chunk of up to 64
    /// entries stops early when its files add up to this).
    #[arg(long, env = "DCD_JOB_CHUNK_MIB", default_value_t = LimitArgs::default().job_chunk_mib)]
    pub job_chunk_mib: u64,
    /// Finished jobs kept per pool with their entries (older ones are forgotten when a new
    /// job starts; the items they stored stay).
    #[arg(long, env = "DCD_JOBS_KEPT", default_value_t = LimitArgs::default().jobs_kept)]
    pub jobs_kept: usize,
    /// Images one Embed, Search or BuildDebugSet may carry.
    #[arg(long, env = "DCD_MAX_IMAGES_PER_CALL", default_value_t = LimitArgs::default().max_images_per_call)]
    pub max_images_per_call: usize,
    /// Largest manifest (CSV or JSONL) a job reads, in MiB.
    #[arg(long, env = "DCD_MAX_MANIFEST_MIB", default_value_t = LimitArgs::default().max_manifest_mib)]
    pub max_manifest_mib: u64,
}

impl Default for LimitArgs {
    fn default() -> Self {
        let limits = crate::limits::ServiceLimits::default();
        LimitArgs {
            max_hits: limits.max_hits,
            max_job_entries: limits.walk.max_entries,
            max_job_depth: limits.walk.max_depth as u32,
            job_chunk_mib: limits.job_chunk_bytes >> 20,
            jobs_kept: limits.jobs_kept,
            max_manifest_mib: limits.max_manifest_bytes >> 20,
            max_images_per_call: limits.max_images_per_call,
        }
    }
}

impl LimitArgs {
    /// The limits as the service takes them.
    pub fn limits(&self) -> crate::limits::ServiceLimits {
        crate::limits::ServiceLimits {
            max_hits: self.max_hits.max(1),
            walk: crate::limits::WalkLimits {
                max_depth: self.max_job_depth as usize,
                max_entries: self.max_job_entries.max(1),
            },
            job_chunk_bytes: self.job_chunk_mib.max(1).saturating_mul(1 << 20),
            jobs_kept: self.jobs_kept.max(1),
            max_manifest_bytes: self.max_manifest_mib.max(1).saturating_mul(1 << 20),
            max_images_per_call: self.max_images_per_call.max(1),
        }
    }
}

/// Bounds on every image read or received (docs/operations.md lists every bound).
#[derive(Debug, Args, Clone, Copy)]
pub struct ImageLimitArgs {
    /// Largest image file or upload, in MiB.
    #[arg(long, env = "DCD_MAX_IMAGE_MIB", default_value_t = limits::MAX_FILE_BYTES >> 20)]
    pub max_image_mib: u64,
    /// Largest image in pixels (width x height), checked from its header before decoding.
    #[arg(long, env = "DCD_MAX_IMAGE_PIXELS", default_value_t = limits::MAX_PIXELS)]
    pub max_image_pixels: u64,
    /// Largest ratio of an image's longer side to its shorter side (resizing the shorter
    /// side to the model's size costs memory in proportion to it).
    #[arg(long, env = "DCD_MAX_ASPECT_RATIO", default_value_t = limits::MAX_ASPECT_RATIO,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_aspect_ratio: u32,
    /// MiB all image decodes hold at once (from each image's header, before its pixels are
    /// allocated); more wait. One image alone may exceed it.
    #[arg(long, env = "DCD_MAX_DECODE_MIB", default_value_t = ImageLimitArgs::default().max_decode_mib)]
    pub max_decode_mib: u64,
}

impl Default for ImageLimitArgs {
    fn default() -> Self {
        let d = limits::ImageLimits::default();
        ImageLimitArgs {
            max_image_mib: d.max_file_bytes >> 20,
            max_image_pixels: d.max_pixels,
            max_aspect_ratio: d.max_aspect_ratio,
            max_decode_mib: d.max_decode_bytes >> 20,
        }
    }
}

impl ImageLimitArgs {
    /// The limits as the pipeline takes them.
    pub fn limits(&self) -> limits::ImageLimits {
        limits::ImageLimits {
            max_file_bytes: self.max_image_mib.max(1).saturating_mul(1 << 20),
            max_pixels: self.max_image_pixels.max(1),
            max_aspect_ratio: self.max_aspect_ratio,
            max_decode_bytes: self.max_decode_mib.max(1).saturating_mul(1 << 20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ModelRuntimeArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        runtime: ModelRuntimeArgs,
    }

    /// The defaults the data commands take are the flags' own.
    #[test]
    fn runtime_defaults_are_the_flags_defaults() {
        let parsed = Only::try_parse_from(["dcd"]).unwrap().runtime;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ModelRuntimeArgs::default())
        );
    }
}
