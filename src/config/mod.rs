//! Command-line and environment settings (clap derive). The only module that reads the
//! environment: every flag can also be set with the `DCD_*` variable named in its help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bench;
mod data;
mod debug_set;
mod models;
mod serve;

pub use bench::*;
pub use data::*;
pub use debug_set::*;
pub use models::*;
pub use serve::*;

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
    DebugSet(BuildSetArgs),
    /// Saved debug-train sets: list, show, diff, delete.
    #[command(subcommand)]
    Sets(SetsCommand),
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
