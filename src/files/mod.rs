//! Reading what a request, a job or a command names on the local file system, safely: one
//! image file at a time (a regular file only, its size bounded before a byte is read) and
//! folder trees (symlinks followed at most once and never out of the root, listings bounded
//! in depth and entries, and stoppable). Near the bottom: used by ingestion jobs, the
//! pipeline's file inputs and the CLI; it sees only [`crate::limits`].

mod read;
mod walk;

pub use crate::limits::WalkLimits;
pub use read::{read_regular, regular_size, ReadError};
pub use walk::{walk, Listing, Skipped, WalkError};

/// True when an I/O error says the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
