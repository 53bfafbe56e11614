//! The `dcd` binary: parse the command line, set up logging, run the command.

use clap::Parser;

/// mimalloc keeps freed pages for reuse: the model allocates and drops megabyte activations
/// every layer, and the system allocator returned them to the kernel, paying page faults each
/// time (6% of a ViT forward).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`'s place in mimalloc 3.3's `mi_option_t` (include/mimalloc.h; the
/// Rust bindings name no constant for it). The test below pins the C library's version.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds mimalloc keeps freed memory before returning it to the kernel. Its default
/// (1 s) returned a batch-32 ResNet-50's 25-100 MB activations between the layers that reuse
/// them, so every forward page-faulted them back in zeroed: 19,000 faults and a fifth of the
/// CPU time in the kernel (`clear_page_erms` 8% of a profile). Ten seconds covers a forward
/// pass and still hands memory back once a server goes idle.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

fn main() -> std::process::ExitCode {
    // SAFETY: sets a plain integer option; mimalloc reads it at its next purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // The option numbers were read off mimalloc 3.3.2's header: a new C library may
        // renumber them.
        // SAFETY: plain reads and writes of mimalloc's options.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_version(),
                30302,
                "re-check MI_OPTION_PURGE_DELAY"
            );
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                PURGE_DELAY_MS
            );
        }
    }
}
