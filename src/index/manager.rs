//! Opens the index of a pool: loads it from the pool folder, catches it up with rows the store
//! committed since it was saved, and rebuilds it (with a log line) when the file is missing,
//! damaged or belongs to other data. Never fails because of the index file itself.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use super::exact::ExactIndex;
use super::graph::{persist, HnswGraph, HnswParams};
#[cfg(feature = "hnsw-rs")]
use super::hnsw::HnswRsIndex;
use super::{AnnIndex, IndexError};
use crate::store::Pool;

/// File name of the native graph inside a pool folder.
pub const GRAPH_FILE: &str = "hnsw.graph";

/// Which engine answers searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// dcd's compact HNSW (default; saved in the pool folder).
    Native,
    /// The hnsw_rs crate (rebuilt on open; cargo feature `hnsw-rs`).
    #[cfg(feature = "hnsw-rs")]
    HnswRs,
    /// Brute force, exact.
    Exact,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Native => "native",
            #[cfg(feature = "hnsw-rs")]
            Engine::HnswRs => "hnsw-rs",
            Engine::Exact => "exact",
        })
    }
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" | "native-hnsw" => Ok(Engine::Native),
            #[cfg(feature = "hnsw-rs")]
            "hnsw-rs" | "hnsw_rs" => Ok(Engine::HnswRs),
            #[cfg(not(feature = "hnsw-rs"))]
            "hnsw-rs" | "hnsw_rs" => Err(
                "this dcd was built without the hnsw-rs engine, which is kept only to compare \
                 against: build with `cargo build --release --features hnsw-rs`"
                    .into(),
            ),
            "exact" => Ok(Engine::Exact),
            other => Err(format!(
                "unknown engine {other:?}: use native, hnsw-rs or exact"
            )),
        }
    }
}

/// Builds an engine over `vectors` from scratch.
pub fn build(
    engine: Engine,
    vectors: crate::types::VectorView<'_>,
    params: HnswParams,
) -> Result<Box<dyn AnnIndex>, IndexError> {
    Ok(match engine {
        Engine::Native => Box::new(HnswGraph::build(vectors, params)?),
        #[cfg(feature = "hnsw-rs")]
        Engine::HnswRs => Box::new(HnswRsIndex::build(vectors, params)?),
        Engine::Exact => Box::new(ExactIndex::build(vectors)),
    })
}

/// Path of the native graph of a pool.
pub fn graph_path(pool: &Pool) -> PathBuf {
    pool.dir().join(GRAPH_FILE)
}

/// What an index is built over: a pool's rows (its live view, or a snapshot of them) and
/// the folder its file lives in.
#[derive(Clone, Copy)]
pub struct IndexSource<'a> {
    /// The rows.
    pub vectors: crate::types::VectorView<'a>,
    /// The pool's folder.
    pub dir: &'a std::path::Path,
    /// The pool's name, for logs.
    pub name: &'a str,
    /// A pool opened read-only: its index is never saved.
    pub read_only: bool,
}

impl<'a> IndexSource<'a> {
    /// A pool's live rows.
    pub fn of(pool: &'a Pool) -> IndexSource<'a> {
        IndexSource {
            vectors: pool.vectors(),
            dir: pool.dir(),
            name: &pool.record().name,
            read_only: pool.read_only(),
        }
    }

    fn graph_path(&self) -> PathBuf {
        self.dir.join(GRAPH_FILE)
    }
}

/// The native graph over every row of `source`, without saving it: the saved file when it
/// is usable, caught up with the rows it lacks; else built from the rows. Reads the folder,
/// writes nothing: it may run while the pool takes appends (from a snapshot). With `mmap`,
/// a loaded graph serves its layer-0 links from a memory map of the file. Also returns how
/// many rows the saved file held when it was usable (the graph needs saving when it differs).
pub fn prepare_native(
    source: &IndexSource<'_>,
    params: HnswParams,
    mmap: bool,
) -> Result<(Box<dyn AnnIndex>, Option<usize>), IndexError> {
    params.validate()?;
    let path = source.graph_path();
    let rows = source.vectors.len();
    let loaded = if path.is_file() {
        match HnswGraph::load(&path, source.vectors.dim(), mmap) {
            Ok(g) if g.len() > rows => {
                tracing::warn!(path = %path.display(), index_rows = g.len(), pool_rows = rows, "index is ahead of the store; rebuilding it");
                None
            }
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "index file unusable; rebuilding it from the vectors");
                None
            }
        }
    } else {
        None
    };
    let saved_rows = loaded.as_ref().map(|g| g.len());
    let mut graph = match loaded {
        Some(g) => g,
        None => HnswGraph::new(source.vectors.dim(), params)?,
    };
    let (have, t) = (graph.len(), Instant::now());
    if have < rows {
        graph.extend(source.vectors)?;
        tracing::info!(pool = %source.name, engine = graph.engine(), from = have, to = rows, secs = t.elapsed().as_secs_f32(), "index caught up with the store");
    }
    Ok((Box::new(graph), saved_rows))
}

/// Saves a persistent index into the pool's folder, replacing the file atomically; a
/// failure (a full disk, say) is logged, not returned: the index serves from memory and the
/// next save tries again.
pub fn save(source: &IndexSource<'_>, index: &dyn AnnIndex) {
    if !index.persistent() || source.read_only {
        return;
    }
    set_aside_if_not_a_file(&source.graph_path());
    if let Err(e) = index.save(&source.graph_path()) {
        tracing::warn!(pool = %source.name, error = %e, "cannot save the index; it serves from memory and is saved at the next catch-up");
    }
}

/// Opens the pool's index for `engine`, repairing as described in the module header.
/// `params` apply when a graph has to be built; a saved graph keeps its own.
pub fn open(
    pool: &Pool,
    engine: Engine,
    params: HnswParams,
) -> Result<Box<dyn AnnIndex>, IndexError> {
    open_with(pool, engine, params, false)
}

/// As [`open`]; with `mmap`, a saved native graph serves its layer-0 links from a private
/// memory map of its file instead of reading them in (paged in as searches touch them). A
/// graph that must catch up with the store is copied into memory as it grows.
pub fn open_with(
    pool: &Pool,
    engine: Engine,
    params: HnswParams,
    mmap: bool,
) -> Result<Box<dyn AnnIndex>, IndexError> {
    params.validate()?;
    let vectors = pool.vectors();
    match engine {
        Engine::Exact => Ok(Box::new(ExactIndex::build(vectors))),
        #[cfg(feature = "hnsw-rs")]
        Engine::HnswRs => {
            let t = Instant::now();
            let idx = HnswRsIndex::build(vectors, params)?;
            tracing::info!(pool = %pool.record().name, rows = idx.len(), secs = t.elapsed().as_secs_f32(), "built hnsw_rs index");
            Ok(Box::new(idx))
        }
        Engine::Native => {
            let source = IndexSource::of(pool);
            set_aside_if_not_a_file(&source.graph_path());
            let (graph, saved_rows) = prepare_native(&source, params, mmap)?;
            // Saved when it changed or there was no usable file.
            if saved_rows != Some(graph.len()) {
                save(&source, graph.as_ref());
            }
            Ok(graph)
        }
    }
}

/// Indexes the rows the store committed beyond the index, then saves it if it changed.
pub fn catch_up(pool: &Pool, index: &mut dyn AnnIndex) -> Result<(), IndexError> {
    let source = IndexSource::of(pool);
    let (have, want) = (index.len(), pool.len());
    if have == want && (!index.persistent() || source.graph_path().is_file()) {
        return Ok(());
    }
    let t = Instant::now();
    index.extend(pool.vectors())?;
    tracing::info!(
        pool = %pool.record().name,
        engine = index.engine(),
        from = have,
        to = want,
        secs = t.elapsed().as_secs_f32(),
        "index caught up with the store"
    );
    save(&source, index);
    Ok(())
}

/// Something other than a file where the graph belongs (a folder, say) would make every
/// save fail: it is moved aside, kept, and the graph rebuilt.
fn set_aside_if_not_a_file(path: &std::path::Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_file() {
        return;
    }
    let aside = path.with_extension(format!("graph.not-a-file-{:016x}", rand::random::<u64>()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), kept = %aside.display(), "the index path is not a file; moved it aside and rebuilding the index")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the index path is not a file and cannot be moved aside")
        }
    }
}

/// What is on disk for a pool's native index, for `pool info`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IndexStatus {
    /// Rows the saved graph covers (None: no usable file).
    pub indexed_rows: Option<usize>,
    /// Parameters the saved graph was built with.
    pub params: Option<HnswParams>,
    /// Why there is no usable file, if so.
    pub problem: Option<String>,
}

/// Reads the saved graph's header.
pub fn status(pool: &Pool) -> IndexStatus {
    let path = graph_path(pool);
    if !path.exists() {
        return IndexStatus {
            indexed_rows: None,
            params: None,
            problem: Some("no index file yet (built on first search)".into()),
        };
    }
    match persist::peek(&path) {
        Ok((rows, params)) => IndexStatus {
            indexed_rows: Some(rows),
            params: Some(params),
            problem: None,
        },
        Err(e) => IndexStatus {
            indexed_rows: None,
            params: None,
            problem: Some(e),
        },
    }
}
