//! One file read whole, within a byte limit. Only regular files: a FIFO named `x.jpg` blocks
//! a plain `open` until a writer appears (forever, usually) and a character device such as
//! `/dev/zero` never ends, so both are refused from their metadata, and the file is opened
//! non-blocking and checked again through its descriptor (the name may be swapped meanwhile).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A FIFO, socket or device (or a directory) where a file was expected.
    #[error("not a regular file but {kind}; only regular files are read")]
    NotRegular {
        /// What it is ("a FIFO", "a character device", ...).
        kind: &'static str,
    },
    /// Larger than the limit.
    #[error("the file is {bytes} bytes, above the limit of {max} bytes (--max-image-mib)")]
    TooLarge {
        /// Its size (at least; a growing file stops being read at the limit).
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The operating system refused (missing, permissions, I/O error).
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// What kind of non-regular file `meta` describes (None: a regular file).
pub(super) fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    }
}

/// The size of the regular file at `path` (symlinks followed), without opening it.
pub fn regular_size(path: &Path) -> Result<u64, ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::Io(e.to_string()))?;
    match kind_of(&meta) {
        Some(kind) => Err(ReadError::NotRegular { kind }),
        None => Ok(meta.len()),
    }
}

/// Reads the regular file at `path` whole, refusing anything else and anything above
/// `max_bytes` (checked before reading, and again while reading: the file may grow).
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let size = regular_size(path)?;
    if size > max_bytes {
        return Err(ReadError::TooLarge {
            bytes: size,
            max: max_bytes,
        });
    }
    // O_NONBLOCK: if the name now points at a FIFO, open returns at once instead of waiting
    // for a writer; the descriptor's own metadata then refuses it. No effect on regular files.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| ReadError::Io(e.to_string()))?;
    let meta = file.metadata().map_err(|e| ReadError::Io(e.to_string()))?;
    if let Some(kind) = kind_of(&meta) {
        return Err(ReadError::NotRegular { kind });
    }
    read_at_most(file, meta.len(), max_bytes)
}

fn read_at_most(file: File, size: u64, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(size.min(max_bytes) as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(e.to_string()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge {
            bytes: bytes.len() as u64,
            max: max_bytes,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jpg");
        std::fs::write(&p, [7u8; 100]).unwrap();
        assert_eq!(read_regular(&p, 100).unwrap(), vec![7u8; 100]);
        assert_eq!(
            read_regular(&p, 99).unwrap_err(),
            ReadError::TooLarge {
                bytes: 100,
                max: 99
            }
        );
        assert!(matches!(
            read_regular(&dir.path().join("missing.jpg"), 10).unwrap_err(),
            ReadError::Io(_)
        ));
        assert_eq!(
            read_regular(dir.path(), 10).unwrap_err(),
            ReadError::NotRegular {
                kind: "a directory"
            }
        );
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.jpg");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file system node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read_regular(&fifo, 1 << 20).unwrap_err(),
            ReadError::NotRegular { kind: "a FIFO" }
        );
        let zero = dir.path().join("zero.jpg");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(
            read_regular(&zero, 1 << 20).unwrap_err(),
            ReadError::NotRegular {
                kind: "a character device"
            }
        );
    }

    #[test]
    fn a_file_growing_past_the_limit_stops_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grows.bin");
        std::fs::write(&p, [1u8; 64]).unwrap();
        let file = File::open(&p).unwrap();
        // As if it had been 10 bytes when its size was read.
        assert_eq!(
            read_at_most(file, 10, 32).unwrap_err(),
            ReadError::TooLarge { bytes: 33, max: 32 }
        );
    }
}
