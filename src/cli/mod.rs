//! The command-line front end: each subcommand parses nothing itself (see `config`), opens
//! what it needs, calls the store and index layers, and prints text or JSON.

mod bench;

mod debug_set;
mod embed;
mod eval;
mod export;
mod ingest;
mod pool;
mod progress;
mod report;
mod search;
mod sets;
mod target;
mod vectors;

use crate::config::{Cli, Command};
use crate::error::Result;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if cli.threads > 0 {
        // candle sizes its GEMM parallelism from this variable; set before any thread starts.
        std::env::set_var("RAYON_NUM_THREADS", cli.threads.to_string());
        // Fails only if a pool was already built, which is fine: the first one wins.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(cli.threads)
            .build_global();
    }
    match cli.command {
        Command::Pool(cmd) => pool::run(&cli.data_dir, cmd),
        Command::Vectors(cmd) => vectors::run(&cli.data_dir, cmd),
        Command::Search(args) => search::run(&cli.data_dir, args),
        Command::Embed(args) => embed::run(args),
        Command::Serve(args) => crate::app::serve(&cli.data_dir, args),
        Command::Ingest(args) => ingest::run(&cli.data_dir, args),
        Command::DebugSet(args) => debug_set::run(&cli.data_dir, args),
        Command::Sets(cmd) => sets::run(&cli.data_dir, cmd),
        Command::Eval(args) => eval::run(&cli.data_dir, args),
        Command::Export(args) => export::run(args),
        Command::Report(args) => report::run(&cli.data_dir, args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// Prints a value as one line of JSON.
fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("serialising plain data cannot fail")
    );
}
