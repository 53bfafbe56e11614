//! Logging set-up: tracing to stderr, filtered by the level the CLI was given.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber once. `filter` uses `RUST_LOG` syntax
/// (e.g. `info`, `dcd=debug`). Calling it twice is harmless.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
