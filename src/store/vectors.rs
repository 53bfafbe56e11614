//! `vectors.bin`: one pool's rows, appended durably and read through a memory map.
//!
//! Appends go in two steps so that a crash never exposes a half-written row:
//! [`VectorFile::write_pending`] writes and fsyncs the bytes past the committed end, the
//! caller commits the catalog, then [`VectorFile::publish`] moves the header count and remaps.
//! On open, bytes past the catalog's committed count are cut off.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::f16;
use memmap2::Mmap;

use super::error::StoreError;
use super::header::{VectorHeader, HEADER_LEN};
use crate::types::{Dtype, VectorView};

/// What the catalog says a pool's vector file holds.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    /// Vector dimension.
    pub dim: usize,
    /// Element type.
    pub dtype: Dtype,
    /// The pool's identity (None: a pool from before identities, not checked).
    pub pool_uid: Option<[u8; 16]>,
    /// Committed rows.
    pub committed: u64,
}

impl Expected {
    fn check(&self, path: &Path, header: &VectorHeader) -> Result<(), StoreError> {
        let corrupt = |reason: String| StoreError::CorruptVectorFile {
            path: path.to_owned(),
            reason,
        };
        if header.dim as usize != self.dim || header.dtype != self.dtype {
            return Err(corrupt(format!(
                "the file holds {}-d {} rows, the catalog says {}-d {}: it is not this pool's file (nothing was changed); restore the pool's own vectors.bin, or delete the pool",
                header.dim, header.dtype, self.dim, self.dtype
            )));
        }
        if let Some(want) = self.pool_uid {
            if header.pool_uid != Some(want) {
                return Err(corrupt(
                    "the file belongs to another pool (its identity differs from the catalog's; nothing was changed): restore the pool's own vectors.bin, or delete the pool".into(),
                ));
            }
        }
        Ok(())
    }
}

/// An open vector file: the header, the file handle for appends and a map for reads.
pub struct VectorFile {
    path: PathBuf,
    file: File,
    header: VectorHeader,
    /// Shared with snapshots: an append maps anew and leaves the old map to them.
    map: Arc<Mmap>,
}

/// The rows published at one moment, readable without the pool: its own handle on the map
/// of that moment (rows below a published count never change), so an index can be built
/// from it while the pool takes appends.
#[derive(Clone)]
pub struct VectorSnapshot {
    header: VectorHeader,
    map: Arc<Mmap>,
}

impl VectorSnapshot {
    /// The rows, borrowed from the snapshot's map.
    pub fn view(&self) -> VectorView<'_> {
        view_of(&self.map, &self.header)
    }
}

impl VectorFile {
    /// Creates an empty file with a durable header naming its pool; fails if the file exists.
    pub fn create(
        path: &Path,
        dim: usize,
        dtype: Dtype,
        pool_uid: [u8; 16],
    ) -> Result<VectorFile, StoreError> {
        let header = VectorHeader {
            dtype,
            dim: dim as u32,
            count: 0,
            pool_uid: Some(pool_uid),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(StoreError::io(path))?;
        file.write_all_at(&header.encode(), 0)
            .and_then(|_| file.sync_all())
            .map_err(StoreError::io(path))?;
        sync_parent(path)?;
        VectorFile::mapped(path, file, header)
    }

    /// Opens an existing file and brings it in line with `expected.committed` rows: extra
    /// bytes from an interrupted append are truncated; fewer rows than committed is an error.
    /// The header is checked against the catalog (dimension, type, pool identity) before
    /// anything is cut: a file of another pool is refused untouched.
    pub fn open(path: &Path, expected: &Expected) -> Result<VectorFile, StoreError> {
        let committed = expected.committed;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(StoreError::io(path))?;
        let (mut header, len) = checked_header(&file, path, expected)?;
        let row_bytes = header.row_bytes() as u64;
        let want_len = HEADER_LEN as u64 + committed * row_bytes;
        if len != want_len {
            tracing::warn!(
                path = %path.display(),
                extra_bytes = len - want_len,
                "dropping uncommitted bytes left by an interrupted append"
            );
            file.set_len(want_len)
                .and_then(|_| file.sync_all())
                .map_err(StoreError::io(path))?;
        }
        if header.count != committed {
            header.count = committed;
            file.write_all_at(&header.encode(), 0)
                .and_then(|_| file.sync_data())
                .map_err(StoreError::io(path))?;
        }
        VectorFile::mapped(path, file, header)
    }

    /// Opens an existing file for reading only: checked against the catalog as
    /// [`VectorFile::open`] does, but nothing is cut or rewritten; rows past the committed
    /// count are simply not seen.
    pub fn open_read_only(path: &Path, expected: &Expected) -> Result<VectorFile, StoreError> {
        let file = File::open(path).map_err(StoreError::io(path))?;
        let (mut header, _) = checked_header(&file, path, expected)?;
        header.count = expected.committed;
        VectorFile::mapped(path, file, header)
    }

    fn mapped(path: &Path, file: File, header: VectorHeader) -> Result<VectorFile, StoreError> {
        let map = Arc::new(map_file(&file, path)?);
        Ok(VectorFile {
            path: path.to_owned(),
            file,
            header,
            map,
        })
    }

    /// Published rows.
    pub fn count(&self) -> u64 {
        self.header.count
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.header.dim as usize
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.header.dtype
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `values` (f32, `rows * dim`) after the published rows and fsyncs them.
    /// Nothing becomes visible until [`VectorFile::publish`]. Returns the count to publish.
    pub fn write_pending(&mut self, values: &[f32]) -> Result<u64, StoreError> {
        let dim = self.dim();
        debug_assert_eq!(values.len() % dim, 0);
        let rows = (values.len() / dim) as u64;
        let offset = HEADER_LEN as u64 + self.header.count * self.header.row_bytes() as u64;
        let write = match self.header.dtype {
            Dtype::F32 => self.file.write_all_at(bytemuck::cast_slice(values), offset),
            Dtype::F16 => {
                let halves: Vec<f16> = crate::index::distance::to_f16(values);
                self.file
                    .write_all_at(bytemuck::cast_slice(&halves), offset)
            }
        };
        write
            .and_then(|_| self.file.sync_data())
            .map_err(StoreError::io(&self.path))?;
        Ok(self.header.count + rows)
    }

    /// Drops pending bytes after a failed commit, so the file matches the catalog again.
    pub fn discard_pending(&mut self) -> Result<(), StoreError> {
        let len = HEADER_LEN as u64 + self.header.count * self.header.row_bytes() as u64;
        self.file
            .set_len(len)
            .and_then(|_| self.file.sync_data())
            .map_err(StoreError::io(&self.path))
    }

    /// Makes rows up to `count` visible (after the catalog committed them).
    pub fn publish(&mut self, count: u64) -> Result<(), StoreError> {
        self.header.count = count;
        // The header count is a hint for tools; the catalog already holds the truth, so a
        // crash before this write is repaired on open and needs no fsync here.
        self.file
            .write_all_at(&self.header.encode(), 0)
            .map_err(StoreError::io(&self.path))?;
        self.map = Arc::new(map_file(&self.file, &self.path)?);
        Ok(())
    }

    /// The published rows as of now, independent of later appends.
    pub fn snapshot(&self) -> VectorSnapshot {
        VectorSnapshot {
            header: self.header,
            map: Arc::clone(&self.map),
        }
    }

    /// The published rows, borrowed from the map.
    pub fn view(&self) -> VectorView<'_> {
        view_of(&self.map, &self.header)
    }
}

fn view_of<'a>(map: &'a Mmap, header: &VectorHeader) -> VectorView<'a> {
    let dim = header.dim as usize;
    let bytes = header.count as usize * header.row_bytes();
    let body = &map[HEADER_LEN..HEADER_LEN + bytes];
    match header.dtype {
        Dtype::F32 => VectorView::F32 {
            data: bytemuck::cast_slice(body),
            dim,
        },
        Dtype::F16 => VectorView::F16 {
            data: bytemuck::cast_slice(body),
            dim,
        },
    }
}

fn map_file(file: &File, path: &Path) -> Result<Mmap, StoreError> {
    // SAFETY: the data directory is locked for this process (see `Store::open`), and dcd never
    // rewrites bytes below the published count, so the mapped rows do not change under us.
    // Appends only extend the file and the map is replaced after each one.
    unsafe { Mmap::map(file) }.map_err(StoreError::io(path))
}

/// Fsyncs the directory holding `path` so a create or rename survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// Reads `file`'s header, checks it against the catalog, and checks the file holds at least
/// the committed rows; returns the header and the file's length.
fn checked_header(
    file: &File,
    path: &Path,
    expected: &Expected,
) -> Result<(VectorHeader, u64), StoreError> {
    let mut raw = [0u8; HEADER_LEN];
    let len = file.metadata().map_err(StoreError::io(path))?.len();
    let got = file.read_at(&mut raw, 0).map_err(StoreError::io(path))?;
    let header =
        VectorHeader::decode(&raw[..got]).map_err(|reason| StoreError::CorruptVectorFile {
            path: path.to_owned(),
            reason,
        })?;
    expected.check(path, &header)?;
    let found = (len - HEADER_LEN as u64) / header.row_bytes() as u64;
    if found < expected.committed {
        return Err(StoreError::TruncatedVectorFile {
            path: path.to_owned(),
            found,
            committed: expected.committed,
        });
    }
    Ok((header, len))
}
