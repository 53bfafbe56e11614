//! The flags of the commands on pools and their vectors: `pool`, `vectors import`, `search`,
//! `ingest`, and where they run (`--data-dir` or `--server`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::settings::Pooling;
use crate::types::Dtype;

use super::ModelRuntimeArgs;

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
    pub pooling: Option<Pooling>,
    /// An ImageFolder tree (subfolder = weak label) or a .csv/.jsonl manifest.
    pub source: PathBuf,
    /// Print the job as JSON at the end instead of a summary line.
    #[arg(long, env = "DCD_JSON")]
    pub json: bool,
    /// The local data directory, or a server.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where models run, how images are batched, and the service's bounds.
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
}

/// `dcd pool ...`
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create an empty pool.
    Create(Box<PoolCreateArgs>),
    /// List pools.
    List {
        /// Print JSON instead of a table.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show one pool: rows, labels, index state.
    Info {
        /// Pool name.
        #[arg(env = "DCD_POOL")]
        name: String,
        /// Print JSON instead of text.
        #[arg(long, env = "DCD_JSON")]
        json: bool,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete a pool and everything stored for it.
    Delete {
        /// Pool name.
        #[arg(env = "DCD_POOL")]
        name: String,
        /// The local data directory, or a server.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Check pools against the catalog: identity, row and item counts, row ids, finite
    /// values, the saved index. Exits non-zero when any pool fails.
    Verify {
        /// Pool name (default: every pool).
        #[arg(env = "DCD_POOL")]
        name: Option<String>,
    },
}

/// `dcd pool create`: the checks of the `CreatePool` call, in-process or on `--server`.
#[derive(Debug, Args)]
pub struct PoolCreateArgs {
    /// Pool name: letters, digits, '_', '-', '.'.
    #[arg(env = "DCD_POOL")]
    pub name: String,
    /// Vector dimension (e.g. 384 for DINO ViT-S). With --backbone, leave it out: the model's
    /// width is taken (a different value is refused).
    #[arg(long, env = "DCD_DIM")]
    pub dim: Option<usize>,
    /// Storage type: f32, or f16 for half the disk and memory.
    #[arg(long, env = "DCD_DTYPE", default_value = "f32")]
    pub dtype: Dtype,
    /// Backbone that embeds the pool's images (loaded now: its width is the dimension).
    #[arg(long, env = "DCD_BACKBONE")]
    pub backbone: Option<String>,
    /// Weights for --backbone (a .safetensors/.pth file, a model directory or a model id).
    #[arg(long, env = "DCD_WEIGHTS", requires = "backbone")]
    pub weights: Option<String>,
    /// ViT feature for --backbone: cls or cls-mean-patch.
    #[arg(long, env = "DCD_POOLING", requires = "backbone")]
    pub pooling: Option<Pooling>,
    /// The local data directory, or a server.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where models run, how images are batched, and the service's bounds.
    #[command(flatten)]
    pub runtime: ModelRuntimeArgs,
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
    /// HNSW links per node (layer 0 keeps twice as many).
    #[arg(long, env = "DCD_M", default_value_t = 16)]
    pub m: usize,
    /// HNSW beam width while building.
    #[arg(long, env = "DCD_EF_CONSTRUCTION", default_value_t = 200)]
    pub ef_construction: usize,
    /// Serve the saved HNSW links from a memory map instead of reading them in.
    #[arg(long, env = "DCD_MMAP_INDEX")]
    pub mmap_index: bool,
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
    /// Rows per durable commit (`--batch` is an older name for it).
    #[arg(
        long,
        alias = "batch",
        env = "DCD_COMMIT_ROWS",
        default_value_t = 50_000
    )]
    pub commit_rows: usize,
    /// Skip updating the HNSW index after the import (it catches up on the next search).
    #[arg(long, env = "DCD_NO_INDEX")]
    pub no_index: bool,
    /// HNSW parameters.
    #[command(flatten)]
    pub index: IndexArgs,
    /// The local data directory, or a server.
    #[command(flatten)]
    pub target: TargetArgs,
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
    /// HNSW parameters.
    #[command(flatten)]
    pub index: IndexArgs,
    /// The local data directory, or a server.
    #[command(flatten)]
    pub target: TargetArgs,
}
