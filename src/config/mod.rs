//! Command-line and environment settings (clap derive). The only module that reads the
//! environment: every flag can also be set with the `DCD_*` variable named in its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::index::manager::Engine;
use crate::limits;
use crate::types::Dtype;

mod bench;

pub use bench::*;

/// The ordinal of a `--device` value `cuda` or `cuda:N`; None for anything else.
pub fn cuda_ordinal(spec: &str) -> Option<usize> {
    match spec.strip_prefix("cuda")? {
        "" => Some(0),
        rest => rest.strip_prefix(':')?.parse().ok(),
    }
}

/// dcd: find the pool images nearest to a model's failures (data-centric debugging).
#[derive(Debug, Parser)]
#[command(name = "dcd", version, about, long_about = None, after_help = crate::error_kind::EXIT_CODES)]
pub struct Cli {
    /// Data directory holding the catalog and the pools.
    #[arg(
        long,
        env = "DCD_DATA_DIR",
        default_value = "./dcd-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Log filter, RUST_LOG syntax (e.g. info, dcd=debug).
    #[arg(long, env = "DCD_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Threads for index builds and searches (0: one per core).
    #[arg(long, env = "DCD_THREADS", default_value_t = 0, global = true)]
    pub threads: usize,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect and delete pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Put vectors into a pool.
    #[command(subcommand)]
    Vectors(VectorsCommand),
    /// k-NN search in a pool; prints JSON lines, one per query.
    Search(SearchArgs),
    /// Embed images with a backbone into a .npy file (one row per image that decoded).
    Embed(EmbedArgs),
    /// Serve the gRPC API (pools, ingestion jobs, search, debug-train sets).
    Serve(ServeArgs),
    /// Ingest an ImageFolder tree or a CSV/JSONL manifest into a pool (resumable).
    Ingest(IngestArgs),
    /// Build a debug-train set: the pool items nearest to some error samples.
    DebugSet(DebugSetArgs),
    /// Score a debug-set recipe without a model: build sets from part of the error samples
    /// and measure how near they come to the rest, against random sets, over a k / budget
    /// curve.
    Eval(EvalArgs),
    /// Turn a debug-train set into CSV, JSONL, or an ImageFolder of symlinks or copies.
    Export(ExportArgs),
    /// Write one self-contained HTML page showing what each error sample found.
    Report(ReportArgs),
    /// Benchmarks with the interface similarity-search people script against.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `dcd eval`: the recipe (every `dcd debug-set` flag; `--out` is the report, .json) and how
/// to score it.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub set: DebugSetArgs,
    /// Failures to score on (image files or folders, ImageFolder subfolders as true labels;
    /// .npy/.fvecs unlabelled); then every error sample builds the set. Without it the error
    /// samples are split into folds.
    #[arg(long, env = "DCD_HELD_OUT", num_args = 1.., value_delimiter = ',')]
    pub held_out: Option<Vec<PathBuf>>,
    /// Folds of the error samples (default 5, at most the samples there are).
    #[arg(long, env = "DCD_FOLDS")]
    pub folds: Option<usize>,
    /// The curve's k values, comma-separated (default: --k).
    #[arg(long, env = "DCD_KS", value_delimiter = ',')]
    pub ks: Vec<usize>,
    /// The curve's budgets, comma-separated, crossed with --ks (default: --budget).
    #[arg(long, env = "DCD_BUDGETS", value_delimiter = ',')]
    pub budgets: Vec<usize>,
    /// Random sets drawn per built set (default 5).
    #[arg(long, env = "DCD_DRAWS")]
    pub draws: Option<usize>,
    /// Seeds the folds and the random draws.
    #[arg(long, env = "DCD_SEED", default_value_t = 0)]
    pub seed: u64,
}

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
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
    #[command(flatten)]
    pub index: IndexArgs,
}

/// Where models run and how images are batched.
#[derive(Debug, Args, Clone)]
pub struct ModelRuntimeArgs {
    /// Where models run: cpu, or cuda / cuda:N (needs a dcd built with --features cuda).
    #[arg(long, env = "DCD_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Where exact searches, exact debug sets and exact re-ranking run: cpu, or cuda /
    /// cuda:N (dcd's kernels, a copy of each pool on the GPU; needs --features cuda).
    /// Default: the --device value.
    #[arg(long, env = "DCD_EXACT_DEVICE")]
    pub exact_device: Option<String>,
    /// The element type of a GPU exact device's copy of each f32 pool: `stored` (f32), or
    /// `f16` / `bf16`, half the device memory and half the bytes a scan reads, with every
    /// answer still exact: the copy proposes candidates, which are scored from the f32 rows
    /// and certified. f16 pools are copied as they are.
    #[arg(long = "exact-device-copy", env = "DCD_EXACT_DEVICE_COPY", default_value = "stored",
          value_parser = ["stored", "f16", "bf16"])]
    pub exact_copy: String,
    /// How a GPU exact device picks a search plan for each batch size: `builtin` (dcd's
    /// thresholds, from an H100), `measure` (each pool's copy times fused, gemm and mma on
    /// this card when it is made, at batches of 1 to 1024 of the pool's own rows, for up to
    /// 30 s, logs the timings and its choice and saves them beside the pool, as
    /// gpu-plans.json; later starts on the same card and dcd binary load them while the pool
    /// is within a factor of two of the size timed), or `remeasure` (time them again now).
    #[arg(long = "exact-plans", env = "DCD_EXACT_PLANS", default_value = "builtin",
          value_parser = ["builtin", "measure", "remeasure"])]
    pub exact_plans: String,
    /// Model precision: f32, or f16/bf16 (for CUDA).
    #[arg(long, env = "DCD_PRECISION", default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    pub precision: String,
    /// Most images per forward pass.
    #[arg(long, env = "DCD_BATCH", default_value_t = 16)]
    pub batch: usize,
    #[command(flatten)]
    pub images: ImageLimitArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
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

/// Local data dir or a server.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Talk to a dcd server (e.g. http://127.0.0.1:50051) instead of the local --data-dir.
    #[arg(long, env = "DCD_SERVER")]
    pub server: Option<String>,
    /// API key for --server.
    #[arg(long, env = "DCD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `dcd ingest`
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Pool to fill.
    #[arg(long, env = "DCD_POOL")]
    pub pool: String,
    /// Create the pool with this backbone if it does not exist.
    #[arg(long, env = "DCD_BACKBONE")]
    pub backbone: Option<String>,
    /// Weights for --backbone (a .safetensors/.pth file, a model directory or a model id).
    #[arg(long, env = "DCD_WEIGHTS")]
    pub weights: Option<String>,
    /// ViT feature for --backbone: cls or cls-mean-patch.
    #[arg(long, env = "DCD_POOLING")]
    pub pooling: Option<String>,
    /// An ImageFolder tree (subfolder = weak label) or a .csv/.jsonl manifest.
    pub source: PathBuf,
    /// Print the job as JSON at the end instead of a summary line.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
}

/// `dcd debug-set`
#[derive(Debug, Args)]
pub struct DebugSetArgs {
    /// Pool to draw from.
    #[arg(long, env = "DCD_POOL")]
    pub pool: String,
    /// Error samples: image files or folders of images, .npy/.fvecs vector files. Images in a
    /// folder's subfolders carry the subfolder's name as their true label (ImageFolder).
    #[arg(long, env = "DCD_ERRORS", required = true, num_args = 1.., value_delimiter = ',')]
    pub errors: Vec<PathBuf>,
    /// Neighbours per error sample.
    #[arg(long, env = "DCD_K", default_value_t = 50)]
    pub k: usize,
    /// union, round_robin, global_top or mean (ranked by mean distance to all error samples).
    #[arg(long, env = "DCD_MERGE", default_value = "union")]
    pub merge: crate::debugset::Merge,
    /// Most items in the set.
    #[arg(long, env = "DCD_BUDGET")]
    pub budget: Option<usize>,
    /// Drop items farther than this squared ℓ2 distance from every error sample.
    #[arg(long, env = "DCD_MAX_DISTANCE")]
    pub max_distance: Option<f32>,
    /// Only items with one of these weak labels (repeatable).
    #[arg(long, env = "DCD_LABEL")]
    pub label: Vec<String>,
    /// A file of keys (one per line) never to return, e.g. a held-out set.
    #[arg(long, env = "DCD_EXCLUDE")]
    pub exclude: Option<PathBuf>,
    /// Exact search instead of HNSW.
    #[arg(long, env = "DCD_EXACT")]
    pub exact: bool,
    /// Fetch 4k HNSW candidates and re-rank them by exact distance.
    #[arg(long, env = "DCD_EXACT_RERANK")]
    pub exact_rerank: bool,
    /// HNSW search beam.
    #[arg(long, env = "DCD_EF")]
    pub ef: Option<usize>,
    /// List an item once per error sample that found it.
    #[arg(long, env = "DCD_KEEP_DUPLICATES")]
    pub keep_duplicates: bool,
    /// Keep only items found by at least this many error samples (within their --k).
    #[arg(long, env = "DCD_MIN_SUPPORT", default_value_t = 1)]
    pub min_support: usize,
    /// keep, drop or replace weak labels the labelled error samples that found an item do not
    /// support. Default: drop when any error sample is labelled, else keep.
    #[arg(long, env = "DCD_LABEL_POLICY")]
    pub label_policy: Option<crate::debugset::LabelPolicy>,
    /// Ignore the folder names of --errors: every error sample is unlabelled.
    #[arg(long, env = "DCD_ERRORS_UNLABELLED")]
    pub errors_unlabelled: bool,
    /// Negatives, inputs the model already handles: image files or folders, .npy/.fvecs.
    /// Candidates nearer to one than to the error samples are dropped.
    #[arg(long, env = "DCD_NEGATIVES", num_args = 1.., value_delimiter = ',')]
    pub negatives: Option<Vec<PathBuf>>,
    /// A pool (same backbone) whose every item is a negative, e.g. the model's training set.
    #[arg(long, env = "DCD_NEGATIVE_POOL")]
    pub negative_pool: Option<String>,
    /// Drop a candidate when its nearest negative is nearer than this times its distance to
    /// the nearest error sample (squared ℓ2; above 1 drops more).
    #[arg(long, env = "DCD_NEGATIVE_MARGIN", default_value_t = 1.0)]
    pub negative_margin: f32,
    /// Held-out inputs the set must stay away from (your debug-heldout or test images):
    /// image files or folders, .npy/.fvecs. Checked by exact search.
    #[arg(long, env = "DCD_HOLDOUT", num_args = 1.., value_delimiter = ',')]
    pub holdout: Option<Vec<PathBuf>>,
    /// A pool (same backbone) whose every item is held out.
    #[arg(long, env = "DCD_HOLDOUT_POOL")]
    pub holdout_pool: Option<String>,
    /// Drop candidates this near a held-out item or nearer (squared ℓ2); 0: identical only.
    #[arg(long, env = "DCD_HOLDOUT_RADIUS", default_value_t = 0.0)]
    pub holdout_radius: f32,
    /// No two items of the set within this squared ℓ2 distance (the nearest to an error
    /// sample is kept).
    #[arg(long, env = "DCD_DEDUP_DISTANCE")]
    pub dedup_distance: Option<f32>,
    /// A trusted reference pool (e.g. the model's training set, clean labels, same backbone):
    /// every item gets its gap to it, and a label estimate fitted on it judges weak labels.
    #[arg(long, env = "DCD_REFERENCE")]
    pub reference: Option<String>,
    /// Drop items whose gap percentile (share of the pool nearer to the reference) is under
    /// this, 0 to 1; needs --reference.
    #[arg(long, env = "DCD_MIN_GAP_PERCENTILE")]
    pub min_gap_percentile: Option<f32>,
    /// The distance cap as a percentile (0 to 1) of the pool's own nearest-neighbour
    /// distances, instead of --max-distance; every item then reports its percentile.
    #[arg(
        long,
        env = "DCD_MAX_DISTANCE_PERCENTILE",
        conflicts_with = "max_distance"
    )]
    pub max_distance_percentile: Option<f32>,
    /// Most failure modes the error samples are grouped into (default 8; 1: one mode); with
    /// --budget, each mode gets a share by its samples' weights.
    #[arg(long, env = "DCD_MAX_MODES")]
    pub max_modes: Option<usize>,
    /// Diversity by maximal marginal relevance, 0 to 1: the weight of nearness to the
    /// failures against distance from the items already taken (1: none; 0.5: even).
    #[arg(long, env = "DCD_MMR_LAMBDA")]
    pub mmr_lambda: Option<f32>,
    /// Most items of any one label handed to training (suggested label, else weak).
    #[arg(long, env = "DCD_MAX_PER_LABEL")]
    pub max_per_label: Option<usize>,
    /// Most items of one label, as LABEL=N (repeat for more labels; overrides
    /// --max-per-label for that label).
    #[arg(long = "label-cap", value_name = "LABEL=N", value_parser = label_count)]
    pub label_caps: Vec<(String, usize)>,
    /// Hold part of --budget for a label until it has N items, as LABEL=N (repeatable).
    #[arg(long = "label-target", value_name = "LABEL=N", value_parser = label_count)]
    pub label_targets: Vec<(String, usize)>,
    /// Output: .jsonl or .csv (a .summary.json is written beside it); for `dcd eval`, the
    /// report (.json).
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
}

/// `dcd export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A debug-train set written by `dcd debug-set` (.jsonl).
    #[arg(long, env = "DCD_SET")]
    pub set: PathBuf,
    /// Output: a .csv or .jsonl file, or a folder for --format imagefolder.
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// csv, jsonl, or imagefolder (one subfolder per weak label, for torchvision's ImageFolder).
    #[arg(long, env = "DCD_FORMAT", default_value = "imagefolder", value_parser = ["csv", "jsonl", "imagefolder"])]
    pub format: String,
    /// For imagefolder: copy the images instead of symlinking them.
    #[arg(long, env = "DCD_COPY")]
    pub copy: bool,
}

/// `dcd report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A debug-train set written by `dcd debug-set` (.jsonl).
    #[arg(long, env = "DCD_SET")]
    pub set: PathBuf,
    /// The HTML page to write.
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// Pool images shown per error sample.
    #[arg(long, env = "DCD_REPORT_PER_ERROR", default_value_t = 12)]
    pub per_error: usize,
    /// Thumbnail side in pixels.
    #[arg(long, env = "DCD_REPORT_THUMB", default_value_t = 128)]
    pub thumb: u32,
}

/// `dcd pool ...`
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create an empty pool.
    Create {
        /// Pool name: letters, digits, '_', '-', '.'.
        #[arg(env = "DCD_POOL")]
        name: String,
        /// Vector dimension (e.g. 384 for DINO ViT-S).
        #[arg(long, env = "DCD_DIM")]
        dim: usize,
        /// Storage type: f32, or f16 for half the disk and memory.
        #[arg(long, env = "DCD_DTYPE", default_value = "f32")]
        dtype: Dtype,
        /// Backbone that produces the vectors, recorded for later embedding.
        #[arg(long, env = "DCD_BACKBONE")]
        backbone: Option<String>,
    },
    /// List pools.
    List {
        /// Print JSON instead of a table.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
    },
    /// Show one pool: rows, labels, index state.
    Info {
        /// Pool name.
        #[arg(env = "DCD_POOL")]
        name: String,
        /// Print JSON instead of text.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
    },
    /// Delete a pool and everything stored for it.
    Delete {
        /// Pool name.
        #[arg(env = "DCD_POOL")]
        name: String,
    },
    /// Check pools against the catalog: identity, row and item counts, row ids, finite
    /// values, the saved index. Exits non-zero when any pool fails.
    Verify {
        /// Pool name (default: every pool).
        #[arg(env = "DCD_POOL")]
        name: Option<String>,
    },
}

/// `dcd vectors ...`
#[derive(Debug, Subcommand)]
pub enum VectorsCommand {
    /// Import vectors from .npy (2-D float32/float16/float64) or .fvecs.
    Import(ImportArgs),
}

/// Index settings shared by the commands that build one.
#[derive(Debug, Args, Clone)]
pub struct IndexArgs {
    /// Search engine: native (dcd's HNSW), hnsw-rs, or exact.
    #[arg(long, env = "DCD_ENGINE", default_value = "native")]
    pub engine: Engine,
    /// HNSW links per node (layer 0 keeps twice as many).
    #[arg(long, env = "DCD_M", default_value_t = 16)]
    pub m: usize,
    /// HNSW beam width while building.
    #[arg(long, env = "DCD_EF_CONSTRUCTION", default_value_t = 200)]
    pub ef_construction: usize,
}

/// `dcd vectors import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Target pool (create it first with `dcd pool create`).
    #[arg(long, env = "DCD_POOL")]
    pub pool: String,
    /// The vector file.
    #[arg(long, env = "DCD_FILE")]
    pub file: PathBuf,
    /// Keys (URIs), one per line; default `<file stem>#<row>`.
    #[arg(long, env = "DCD_KEYS")]
    pub keys: Option<PathBuf>,
    /// Weak labels, one per line (empty line: no label).
    #[arg(long, env = "DCD_LABELS")]
    pub labels: Option<PathBuf>,
    /// Rows per durable commit.
    #[arg(long, env = "DCD_BATCH", default_value_t = 50_000)]
    pub batch: usize,
    /// Skip updating the HNSW index after the import (it catches up on the next search).
    #[arg(long, env = "DCD_NO_INDEX")]
    pub no_index: bool,
    #[command(flatten)]
    pub index: IndexArgs,
}

/// `dcd search`
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Pool to search.
    #[arg(long, env = "DCD_POOL")]
    pub pool: String,
    /// Queries as .npy or .fvecs.
    #[arg(long, env = "DCD_QUERIES", conflicts_with = "key")]
    pub queries: Option<PathBuf>,
    /// Use stored items as queries, by key (repeatable).
    #[arg(long, env = "DCD_KEY")]
    pub key: Vec<String>,
    /// Neighbours per query.
    #[arg(long, env = "DCD_K", default_value_t = 10)]
    pub k: usize,
    /// HNSW search beam (default: the index's).
    #[arg(long, env = "DCD_EF")]
    pub ef: Option<usize>,
    /// Exact search (same as --engine exact).
    #[arg(long, env = "DCD_EXACT")]
    pub exact: bool,
    /// Only return items with one of these weak labels (repeatable).
    #[arg(long, env = "DCD_LABEL")]
    pub label: Vec<String>,
    /// Serve the saved HNSW links from a memory map instead of reading them in.
    #[arg(long, env = "DCD_MMAP_INDEX")]
    pub mmap_index: bool,
    #[command(flatten)]
    pub index: IndexArgs,
}

/// Which backbone and weights; shared by the commands that run a model.
#[derive(Debug, Args, Clone)]
pub struct BackboneArgs {
    /// Registry name (dino-vits16, dinov2-vits14, resnet50, mobilenetv2, ...).
    #[arg(long, env = "DCD_BACKBONE")]
    pub backbone: String,
    /// Weights: a .safetensors/.pth file, a model directory, or a Hugging Face model id in the
    /// local hub cache (default: the backbone's usual model id).
    #[arg(long, env = "DCD_WEIGHTS")]
    pub weights: Option<String>,
    /// ViT feature: the CLS token, or CLS followed by the mean patch token (twice as wide).
    #[arg(long, env = "DCD_POOLING", default_value = "cls", value_parser = ["cls", "cls-mean-patch"])]
    pub pooling: String,
    /// Where the model runs: cpu, or cuda / cuda:N (needs a dcd built with --features cuda).
    #[arg(long, env = "DCD_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Model precision: f32, or f16/bf16 (for CUDA; on CPU they are slow).
    #[arg(long, env = "DCD_PRECISION", default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    pub precision: String,
}

/// `dcd embed`
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: BackboneArgs,
    /// Image files or folders (searched recursively for .jpg .jpeg .png .webp .bmp .tif .tiff .gif).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output .npy (float32, rows in the order of the images that embedded).
    #[arg(long, env = "DCD_OUT")]
    pub out: PathBuf,
    /// Where to write the image path of each row (default: the output with .keys.txt).
    #[arg(long, env = "DCD_KEYS_OUT")]
    pub keys_out: Option<PathBuf>,
    /// Most images per forward pass.
    #[arg(long, env = "DCD_BATCH", default_value_t = 16)]
    pub batch: usize,
    /// Milliseconds the batcher waits to fill a batch.
    #[arg(long, env = "DCD_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Decode threads (default: one per core).
    #[arg(long, env = "DCD_DECODE_THREADS")]
    pub decode_threads: Option<usize>,
    #[command(flatten)]
    pub limits: ImageLimitArgs,
}

/// A `LABEL=N` pair of --label-cap / --label-target (the label may itself hold `=`; the
/// count is after the last one).
fn label_count(s: &str) -> Result<(String, usize), String> {
    let (label, n) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: write LABEL=N, e.g. cat=50"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a count; write LABEL=N, e.g. cat=50"))?;
    Ok((label.to_owned(), n))
}

#[cfg(test)]
mod tests {
    use super::{cuda_ordinal, label_count};

    #[test]
    fn label_counts_parse_at_the_last_equals_sign() {
        assert_eq!(label_count("cat=5"), Ok(("cat".into(), 5)));
        assert_eq!(label_count("a=b=12"), Ok(("a=b".into(), 12)));
        assert!(label_count("cat").unwrap_err().contains("LABEL=N"));
        assert!(label_count("cat=x").unwrap_err().contains("not a count"));
    }

    #[test]
    fn cuda_device_specs() {
        assert_eq!(cuda_ordinal("cuda"), Some(0));
        assert_eq!(cuda_ordinal("cuda:3"), Some(3));
        for bad in ["cpu", "cuda:", "cuda:x", "cudax", "gpu:0"] {
            assert_eq!(cuda_ordinal(bad), None, "{bad}");
        }
    }
}
