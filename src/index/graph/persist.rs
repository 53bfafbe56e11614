//! On-disk form of the native HNSW graph.
//!
//! Little-endian: magic `DCDHNSW\0` · version u32 · dim u32 · m u32 · ef_construction u32 ·
//! ef_search u32 · reserved u32 · seed u64 · n u64 · entry node u32 (u32::MAX: none) · entry
//! level u32 · levels (n bytes, zero-padded to 4) · layer-0 slots (n × (2m+1) u32) · upper
//! slots of each node with level > 0, in node order · CRC-32 of everything before it.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::{Mutex, RwLock};

use super::links::LinkStore;
use super::{Entry, HnswGraph, HnswParams, MAX_LEVEL};
use crate::index::{write_atomically, IndexError};

const MAGIC: [u8; 8] = *b"DCDHNSW\0";
const VERSION: u32 = 1;

pub(super) fn save(g: &HnswGraph, path: &Path) -> Result<(), IndexError> {
    let n = g.levels.len();
    let mut b: Vec<u8> = Vec::with_capacity(64 + n + g.links0.len() * 4);
    b.extend_from_slice(&MAGIC);
    for v in [
        VERSION,
        g.dim as u32,
        g.params.m as u32,
        g.params.ef_construction as u32,
        g.params.ef_search as u32,
        0,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&g.params.seed.to_le_bytes());
    b.extend_from_slice(&(n as u64).to_le_bytes());
    let (node, level) = g
        .entry()
        .map_or((u32::MAX, 0), |e| (e.node, e.level as u32));
    b.extend_from_slice(&node.to_le_bytes());
    b.extend_from_slice(&level.to_le_bytes());
    b.extend_from_slice(&g.levels);
    b.resize(b.len().next_multiple_of(4), 0);
    for a in g.links0.iter() {
        b.extend_from_slice(&a.load(Ordering::Relaxed).to_le_bytes());
    }
    for list in &g.upper {
        for a in list.iter() {
            b.extend_from_slice(&a.load(Ordering::Relaxed).to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    write_atomically(path, &b)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| "file ends early (truncated)".to_string())?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

pub(super) fn load(path: &Path, dim: usize, mmap: bool) -> Result<HnswGraph, IndexError> {
    let corrupt = |reason| IndexError::CorruptIndexFile {
        path: path.to_owned(),
        reason,
    };
    if !mmap {
        let bytes = std::fs::read(path).map_err(IndexError::io(path))?;
        return parse(&bytes, dim, true).map(|(g, _)| g).map_err(corrupt);
    }
    let file = std::fs::File::open(path).map_err(IndexError::io(path))?;
    // Our writes never reach a private copy-on-write map, and dcd replaces graph files by
    // rename (`write_atomically`), never in place.
    // SAFETY: so the bytes under the map do not change while it lives.
    let map = unsafe { memmap2::MmapOptions::new().map_copy(&file) };
    let map = map.map_err(IndexError::io(path))?;
    let (mut graph, links_at) = parse(&map, dim, false).map_err(corrupt)?;
    let slots = graph.levels.len() * (2 * graph.params.m + 1);
    graph.links0 = LinkStore::mapped(map, links_at, slots)
        .ok_or_else(|| corrupt("layer-0 links are misaligned for mapping".into()))?;
    Ok(graph)
}

/// Checks and decodes a graph file. Returns the graph and the byte offset of its layer-0 slots;
/// without `own_links` those slots are checked but left out (the caller maps them).
fn parse(bytes: &[u8], dim: usize, own_links: bool) -> Result<(HnswGraph, usize), String> {
    if bytes.len() < 8 + 4 || bytes[..8] != MAGIC {
        return Err("not a dcd HNSW file (wrong magic)".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch (damaged or partly written)".into());
    }
    let mut r = Reader { b: body, pos: 8 };
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let file_dim = r.u32()? as usize;
    if file_dim != dim {
        return Err(format!(
            "built for {file_dim}-d vectors, the pool is {dim}-d"
        ));
    }
    let params = read_params(&mut r)?;
    params.validate().map_err(|e| e.to_string())?;
    let n = r.u64()? as usize;
    let entry_node = r.u32()?;
    let entry_level = r.u32()?;
    let levels = r.take(n)?.to_vec();
    r.take(n.next_multiple_of(4) - n)?;
    if levels.iter().any(|&l| l > MAX_LEVEL) {
        return Err("a node level is out of range".into());
    }
    let w0 = 2 * params.m + 1;
    let w = params.m + 1;
    let links_at = r.pos;
    let raw0 = r.take(n * w0 * 4)?;
    check_slots(raw0, w0, n)?;
    let links0 = LinkStore::Owned(if own_links {
        to_atomics(raw0)
    } else {
        Vec::new()
    });
    let mut upper = Vec::with_capacity(n);
    for &l in &levels {
        let raw = r.take(l as usize * w * 4)?;
        check_slots(raw, w, n)?;
        upper.push(to_atomics(raw).into_boxed_slice());
    }
    if r.pos != body.len() {
        return Err("trailing bytes after the graph".into());
    }
    let entry = if entry_node == u32::MAX {
        None
    } else {
        let level = entry_level as u8;
        if entry_node as usize >= n || levels[entry_node as usize] != level {
            return Err("entry point does not match the node levels".into());
        }
        Some(Entry {
            node: entry_node,
            level,
        })
    };
    if entry.is_none() && n > 0 {
        return Err("no entry point in a non-empty graph".into());
    }
    // An upper-layer link must point at a node that lives on that layer.
    for list in &upper {
        for (l, group) in list.chunks_exact(w).enumerate() {
            let count = group[0].load(Ordering::Relaxed) as usize;
            let ok = group[1..=count]
                .iter()
                .all(|id| levels[id.load(Ordering::Relaxed) as usize] as usize > l);
            if !ok {
                return Err("an upper-layer link points below its layer".into());
            }
        }
    }
    let graph = HnswGraph {
        params,
        dim,
        levels,
        links0,
        upper,
        locks: (0..n).map(|_| Mutex::new(())).collect(),
        entry: RwLock::new(entry),
        top_lock: Mutex::new(()),
    };
    Ok((graph, links_at))
}

/// Checks u32 slots made of `[count, ids...]` groups of width `w`: counts fit, ids are rows.
fn check_slots(raw: &[u8], w: usize, n: usize) -> Result<(), String> {
    let word = |i: usize| u32::from_le_bytes(raw[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    for g in 0..raw.len() / (4 * w) {
        let base = g * w;
        let count = word(base) as usize;
        if count >= w || (1..=count).any(|j| word(base + j) as usize >= n) {
            return Err("a neighbour list is out of range".into());
        }
    }
    Ok(())
}

fn to_atomics(raw: &[u8]) -> Vec<AtomicU32> {
    raw.chunks_exact(4)
        .map(|c| AtomicU32::new(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
        .collect()
}

/// Rows and parameters of a saved graph, read from its header only.
pub(crate) fn peek(path: &Path) -> Result<(usize, HnswParams), String> {
    use std::io::Read;
    let mut head = [0u8; 56];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| e.to_string())?;
    if head[..8] != MAGIC {
        return Err("not a dcd HNSW file (wrong magic)".into());
    }
    let mut r = Reader { b: &head, pos: 16 };
    let params = read_params(&mut r)?;
    Ok((r.u64()? as usize, params))
}

/// The parameter block that follows the dimension: m, ef_construction, ef_search, a reserved
/// u32, the seed.
fn read_params(r: &mut Reader<'_>) -> Result<HnswParams, String> {
    let m = r.u32()? as usize;
    let ef_construction = r.u32()? as usize;
    let ef_search = r.u32()? as usize;
    r.u32()?;
    Ok(HnswParams {
        m,
        ef_construction,
        ef_search,
        seed: r.u64()?,
    })
}
