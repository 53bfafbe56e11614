//! Reading what a request, a job or a command names on the local file system, safely: one
//! image file at a time (a regular file only, its size bounded before a byte is read) and
//! folder trees (symlinks followed at most once and never out of the root, listings bounded
//! in depth and entries, and stoppable). A leaf: used by ingestion jobs, the pipeline's file
//! inputs and the CLI, knows nothing above it.

mod read;
mod walk;

pub use read::{read_regular, regular_size, ReadError};
pub use walk::{walk, Listing, Skipped, WalkError, WalkLimits};
