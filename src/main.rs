//! The `dcd` binary: parse the command line, set up logging, run the command.

use clap::Parser;

/// mimalloc keeps freed pages for reuse: the model allocates and drops megabyte activations
/// every layer, and the system allocator returned them to the kernel, paying page faults each
/// time (6% of a ViT forward).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = dcd::config::Cli::parse();
    dcd::telemetry::init(&cli.log);
    match dcd::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
