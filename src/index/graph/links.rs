//! Storage of the layer-0 link array: owned in memory, or a private copy-on-write memory map of
//! the saved graph so a large index opens without reading its links up front. A mapped store
//! turns into an owned one the first time the graph grows.

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapMut;

/// Layer-0 slots (`[count, id, ...]` groups).
pub(super) enum LinkStore {
    /// Read into (or built in) memory.
    Owned(Vec<AtomicU32>),
    /// `len` slots starting `start` bytes into a private mapping of the graph file.
    Mapped {
        map: MmapMut,
        start: usize,
        len: usize,
    },
}

impl LinkStore {
    /// A mapped store; `start` must be 4-byte aligned and the range inside the map.
    pub(super) fn mapped(map: MmapMut, start: usize, len: usize) -> Option<LinkStore> {
        let fits = start.checked_add(len.checked_mul(4)?)? <= map.len();
        let aligned =
            (map.as_ptr() as usize + start).is_multiple_of(std::mem::align_of::<AtomicU32>());
        (fits && aligned && cfg!(target_endian = "little")).then_some(LinkStore::Mapped {
            map,
            start,
            len,
        })
    }

    /// True when the slots live in a memory map.
    pub(super) fn is_mapped(&self) -> bool {
        matches!(self, LinkStore::Mapped { .. })
    }

    /// The owned vector, copying the mapped slots out first if needed.
    pub(super) fn make_owned(&mut self) -> &mut Vec<AtomicU32> {
        if self.is_mapped() {
            let owned = self
                .iter()
                .map(|a| AtomicU32::new(a.load(Ordering::Relaxed)))
                .collect();
            *self = LinkStore::Owned(owned);
        }
        match self {
            LinkStore::Owned(v) => v,
            LinkStore::Mapped { .. } => unreachable!("converted above"),
        }
    }
}

impl Deref for LinkStore {
    type Target = [AtomicU32];

    fn deref(&self) -> &[AtomicU32] {
        match self {
            LinkStore::Owned(v) => v,
            LinkStore::Mapped { map, start, len } => {
                // `mapped` checked that `start..start + 4 * len` lies inside the map and is
                // aligned for AtomicU32 (the size and layout of a u32) on a little-endian target.
                // The private writable map is owned by `self`, so the slice cannot outlive it, and
                // atomic writes stay in this process; graph files are replaced by rename only.
                // SAFETY: the range, alignment, layout and lifetime are as stated above.
                unsafe {
                    std::slice::from_raw_parts(map.as_ptr().add(*start) as *const AtomicU32, *len)
                }
            }
        }
    }
}
