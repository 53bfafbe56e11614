//! `dcd bench ...`: the benchmark commands' settings.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{BackboneArgs, IndexArgs};
use crate::index::manager::Engine;

/// `dcd bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Build an ANN index and sweep ef: recall@k and queries/s per ef, build time, peak RSS.
    Ann(BenchAnnArgs),
    /// Exact search throughput: queries/s and effective GFLOP/s.
    Exact(BenchExactArgs),
    /// Write a clustered, embedding-like dataset: base.fvecs, queries.fvecs, gt.ivecs.
    Gen(BenchGenArgs),
    /// Backbone throughput: images/s for decode+preprocess and for the forward pass, apart.
    Embed(BenchEmbedArgs),
    /// The gRPC service on loopback: vector ingest, BuildDebugSet latency (gRPC vs
    /// in-process), and a fixed-time load of concurrent clients.
    Service(BenchServiceArgs),
}

/// `dcd bench embed`
#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// The backbone.
    #[command(flatten)]
    pub model: BackboneArgs,
    /// Use random weights in the backbone's shapes instead of loading any.
    #[arg(long, env = "DCD_RANDOM_WEIGHTS", conflicts_with = "weights")]
    pub random_weights: bool,
    /// Batch sizes to time the forward pass at, comma-separated.
    #[arg(
        long,
        env = "DCD_BENCH_BATCH",
        value_delimiter = ',',
        default_value = "1,8,32"
    )]
    pub batch: Vec<usize>,
    /// Images timed for decode+preprocess (a generated 500x375 JPEG unless --image is given).
    #[arg(long, env = "DCD_BENCH_IMAGES", default_value_t = 200)]
    pub images: usize,
    /// An image file to time decode+preprocess on.
    #[arg(long, env = "DCD_BENCH_IMAGE")]
    pub image: Option<PathBuf>,
    /// Minimum seconds per forward measurement (after one warm-up batch).
    #[arg(long, env = "DCD_BENCH_SECONDS", default_value_t = 3.0)]
    pub seconds: f64,
    /// Print one JSON document instead of text.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
}

/// `dcd bench service`
#[derive(Debug, Args)]
pub struct BenchServiceArgs {
    /// Work directory for the benchmark's data dir (a pool of the same size is reused).
    #[arg(long, env = "DCD_BENCH_OUT", default_value = "bench-out/service")]
    pub out: PathBuf,
    /// Pool vectors.
    #[arg(long, env = "DCD_BENCH_N", default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, env = "DCD_DIM", default_value_t = 384)]
    pub dim: usize,
    /// Error samples per BuildDebugSet.
    #[arg(long, env = "DCD_BENCH_ERRORS", default_value_t = 100)]
    pub errors: usize,
    /// Neighbours per error sample.
    #[arg(long, env = "DCD_K", default_value_t = 50)]
    pub k: usize,
    /// BuildDebugSet calls timed each way.
    #[arg(long, env = "DCD_BENCH_REPEAT", default_value_t = 50)]
    pub repeat: usize,
    /// Concurrent clients in the load phase (0: skip it).
    #[arg(long, env = "DCD_BENCH_CLIENTS", default_value_t = 32)]
    pub clients: usize,
    /// Seconds of load.
    #[arg(long, env = "DCD_BENCH_SECONDS", default_value_t = 60.0)]
    pub seconds: f64,
    /// Items of a reference pool for the all-rules BuildDebugSet (0: none).
    #[arg(long, env = "DCD_BENCH_REFERENCE", default_value_t = 100_000)]
    pub reference: usize,
    /// The server's in-flight limit during the benchmark.
    #[arg(long, env = "DCD_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Print one JSON document instead of text.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
    /// HNSW parameters.
    #[command(flatten)]
    pub index: IndexArgs,
}

/// `dcd bench gen`
#[derive(Debug, Args)]
pub struct BenchGenArgs {
    /// Output folder (created).
    #[arg(long, env = "DCD_BENCH_OUT")]
    pub out: PathBuf,
    /// Base vectors.
    #[arg(long, env = "DCD_BENCH_N", default_value_t = 100_000)]
    pub n: usize,
    /// Query vectors.
    #[arg(long = "queries", env = "DCD_BENCH_NQ", default_value_t = 1000)]
    pub nq: usize,
    /// Dimension.
    #[arg(long, env = "DCD_DIM", default_value_t = 384)]
    pub dim: usize,
    /// Cluster count (default: n / 1000, at least 10).
    #[arg(long, env = "DCD_BENCH_CLUSTERS")]
    pub clusters: Option<usize>,
    /// Exact neighbours stored per query in gt.ivecs.
    #[arg(long = "gt-k", env = "DCD_BENCH_GT_K", default_value_t = 100)]
    pub gt_k: usize,
    /// Seed.
    #[arg(long, env = "DCD_SEED", default_value_t = 1)]
    pub seed: u64,
}

/// `dcd bench ann`
#[derive(Debug, Args)]
pub struct BenchAnnArgs {
    /// Base vectors (.fvecs or .npy).
    #[arg(long, env = "DCD_BENCH_BASE")]
    pub base: PathBuf,
    /// Query vectors (.fvecs or .npy).
    #[arg(long, env = "DCD_BENCH_QUERIES")]
    pub queries: PathBuf,
    /// Ground-truth neighbour ids (.ivecs); computed exactly when absent.
    #[arg(long, env = "DCD_BENCH_GT")]
    pub gt: Option<PathBuf>,
    /// Neighbours per query.
    #[arg(long, env = "DCD_K", default_value_t = 10)]
    pub k: usize,
    /// HNSW links per node.
    #[arg(long, env = "DCD_M", default_value_t = 16)]
    pub m: usize,
    /// HNSW beam width while building.
    #[arg(long, env = "DCD_EF_CONSTRUCTION", default_value_t = 200)]
    pub ef_construction: usize,
    /// Search beams to sweep, comma-separated.
    #[arg(
        long,
        env = "DCD_EF",
        value_delimiter = ',',
        default_value = "10,20,40,80,160"
    )]
    pub ef: Vec<usize>,
    /// Engine: native or hnsw-rs.
    #[arg(long, env = "DCD_ENGINE", default_value = "native")]
    pub engine: Engine,
    /// Print one JSON document instead of a table.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
}

/// `dcd bench exact`
#[derive(Debug, Args)]
pub struct BenchExactArgs {
    /// Base vectors (.fvecs or .npy); or --random.
    #[arg(long, env = "DCD_BENCH_BASE", required_unless_present = "random")]
    pub base: Option<PathBuf>,
    /// Query vectors (.fvecs or .npy); or --random.
    #[arg(long, env = "DCD_BENCH_QUERIES", required_unless_present = "random")]
    pub queries: Option<PathBuf>,
    /// Generate the pool instead of reading it: NxD uniform random vectors (e.g. 10000000x768),
    /// and --random-queries queries like them.
    #[arg(long, conflicts_with_all = ["base", "queries"])]
    pub random: Option<String>,
    /// Queries generated with --random.
    #[arg(long, default_value_t = 1024)]
    pub random_queries: usize,
    /// Neighbours per query.
    #[arg(long, env = "DCD_K", default_value_t = 10)]
    pub k: usize,
    /// Timed repetitions (the best is reported).
    #[arg(long, env = "DCD_BENCH_REPEAT", default_value_t = 3)]
    pub repeat: usize,
    /// Queries per search call (1: one query at a time; default: all in one batch). Several,
    /// comma-separated (1,64,1024), give one result each over the same resident pool.
    #[arg(long, env = "DCD_BENCH_BATCH", value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Most search calls timed per batch size and repetition (as many as fit in about a
    /// second; the queries are cycled).
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Store the base as f16 before searching (bf16: the GPU path only).
    #[arg(long, env = "DCD_DTYPE", default_value = "f32")]
    pub dtype: crate::settings::Precision,
    /// Where to search: cpu, or cuda / cuda:N (dcd's kernels; a --features cuda build).
    #[arg(long, env = "DCD_DEVICE", default_value = "cpu")]
    pub device: crate::settings::Device,
    /// GPU plan: auto (dcd's heuristic), fused, gemm, wide (k beyond shared memory) or mma
    /// (selection in dcd's tensor-core kernel; f32 pools as 3xTF32); several, comma-separated,
    /// give one result each.
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    pub gpu_plan: Vec<String>,
    /// GPU: which plan `auto` takes for each batch size: `builtin` (dcd's thresholds, from
    /// an H100) or `measure` (first time each one-pass plan on this card and pool at batches
    /// of 1, 2, 4, ... 1024 of the queries, at --k, and print the timings and the choice;
    /// `remeasure` is the same here: a bench saves nothing).
    #[arg(long, default_value = "builtin")]
    pub gpu_plans: crate::gpu::plan_cache::PlanMode,
    /// GPU: the GEMM plan's tile of cross terms, in MiB (default: dcd's).
    #[arg(long)]
    pub gpu_tile_mib: Option<usize>,
    /// GPU: after timing each setting, time this many more calls stage by stage with CUDA
    /// events (queries up, scan or GEMM tiles, merge, download, ...) and print each stage's
    /// median: where a call's time goes. 0: off.
    #[arg(long, default_value_t = 0)]
    pub gpu_stages: usize,
    /// GPU: give each device buffer cudarc's pair of cross-stream events (true, cudarc's
    /// default) or not (false): an experiment on the fixed cost of a call, see
    /// `dcd::gpu::drop_buffer_events`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub gpu_buffer_events: bool,
    /// GPU: keep device memory that buffers free in CUDA's memory pool (true) or let the pool
    /// give it back to the driver at every synchronisation (false, CUDA's default): an
    /// experiment on the fixed cost of a call, see `dcd::gpu::keep_pool_memory`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub gpu_pool_keep: bool,
    /// GPU: answer the f32 pool exactly through its half copy (`--dtype f16` or `bf16`): the
    /// copy proposes candidates, the host scores them from the f32 rows and certifies that
    /// no other row can be among the best k (see `dcd::gpu::GpuExact::search_certified`).
    #[arg(long)]
    pub gpu_certify: bool,
    /// Print one JSON document per batch size instead of text.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
}
