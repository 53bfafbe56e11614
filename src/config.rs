//! Command-line and environment settings (clap derive). The only module that reads the
//! environment: every flag can also be set with the `DCD_*` variable named in its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::index::manager::Engine;
use crate::types::Dtype;

/// dcd: find the pool images nearest to a model's failures (data-centric debugging).
#[derive(Debug, Parser)]
#[command(name = "dcd", version, about, long_about = None)]
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
    /// Benchmarks with the interface similarity-search people script against.
    #[command(subcommand)]
    Bench(BenchCommand),
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
}

/// `dcd bench embed`
#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
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
    /// Base vectors (.fvecs or .npy).
    #[arg(long, env = "DCD_BENCH_BASE")]
    pub base: PathBuf,
    /// Query vectors (.fvecs or .npy).
    #[arg(long, env = "DCD_BENCH_QUERIES")]
    pub queries: PathBuf,
    /// Neighbours per query.
    #[arg(long, env = "DCD_K", default_value_t = 10)]
    pub k: usize,
    /// Timed repetitions (the best is reported).
    #[arg(long, env = "DCD_BENCH_REPEAT", default_value_t = 3)]
    pub repeat: usize,
    /// Queries per search call (1: one query at a time; default: all in one batch).
    #[arg(long, env = "DCD_BENCH_BATCH")]
    pub batch: Option<usize>,
    /// Store the base as f16 before searching.
    #[arg(long, env = "DCD_DTYPE", default_value = "f32")]
    pub dtype: Dtype,
    /// Print one JSON document instead of text.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
}
