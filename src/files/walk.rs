//! Listing a folder tree for the files a caller accepts (image extensions), in a stable order
//! (sorted, depth first) so that a resumed job walks the same list. Each directory is entered
//! at most once (a set of device and inode numbers), so symlink loops (`self -> .`, two `..`
//! links) cost one visit; a symlink whose target leaves the confining directories is skipped
//! with a reason that names the link, never the target. Depth and entry counts are bounded and
//! the listing stops when its caller says so (a cancelled job, a client gone).

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::limits::WalkLimits;

/// A file or folder that was found but not listed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its path below the root (a link's own path, not its target's).
    pub path: PathBuf,
    /// Why it was not listed.
    pub reason: String,
}

/// What a listing found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The accepted files, in walk order.
    pub files: Vec<PathBuf>,
    /// Entries that looked like candidates but were not listed (unreadable folders,
    /// special files, symlinks that leave the root, folders too deep).
    pub skipped: Vec<Skipped>,
}

/// Why a listing failed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// The root itself cannot be listed.
    #[error("cannot list {path}: {reason}")]
    Root {
        /// The root.
        path: PathBuf,
        /// The OS error.
        reason: String,
        /// True when the OS said permission denied.
        permission: bool,
    },
    /// More entries than the limit.
    #[error("{path} holds more than {max} entries; split it into several jobs, or raise --max-job-entries")]
    TooManyEntries {
        /// The root.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
    /// The caller asked the listing to stop.
    #[error("the listing of {path} was stopped")]
    Stopped {
        /// The root.
        path: PathBuf,
    },
}

enum Node {
    File(PathBuf),
    Dir(PathBuf, usize),
}

/// Lists the files below `root` (a canonical directory) that `accept` takes by name.
/// Symlinks are followed when their target resolves below one of `within` (every target, when
/// `within` is None); `stop` is asked between folders and every few thousand entries.
pub fn walk(
    root: &Path,
    accept: &dyn Fn(&Path) -> bool,
    within: Option<&[PathBuf]>,
    limits: &WalkLimits,
    stop: &dyn Fn() -> bool,
) -> Result<Listing, WalkError> {
    let mut listing = Listing::default();
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    let root_meta = std::fs::metadata(root).map_err(|e| root_error(root, &e))?;
    visited.insert((root_meta.dev(), root_meta.ino()));
    let mut stack = children(root, 0, accept).map_err(|e| root_error(root, &e))?;
    let mut seen = 0usize;
    while let Some(node) = stack.pop() {
        seen += 1;
        if seen.is_multiple_of(4096) && stop() {
            return Err(WalkError::Stopped {
                path: root.to_owned(),
            });
        }
        if listing.files.len() + listing.skipped.len() >= limits.max_entries {
            return Err(WalkError::TooManyEntries {
                path: root.to_owned(),
                max: limits.max_entries,
            });
        }
        let (path, depth) = match node {
            Node::File(p) => {
                listing.files.push(p);
                continue;
            }
            Node::Dir(p, depth) => (p, depth),
        };
        if stop() {
            return Err(WalkError::Stopped {
                path: root.to_owned(),
            });
        }
        let skip = |reason: String| Skipped {
            path: path.clone(),
            reason,
        };
        let meta = match examine(&path, within) {
            Ok(Some(meta)) => meta,
            Ok(None) => continue,
            Err(reason) => {
                if accept(&path) || is_dir_link(&path) {
                    listing.skipped.push(skip(reason));
                }
                continue;
            }
        };
        if !meta.is_dir() {
            if accept(&path) {
                match super::read::kind_of(&meta) {
                    None => listing.files.push(path),
                    Some(kind) => listing.skipped.push(skip(format!(
                        "not a regular file but {kind}; only regular files are read"
                    ))),
                }
            }
            continue;
        }
        if !visited.insert((meta.dev(), meta.ino())) {
            // Already listed through another path (a symlink loop or a second link).
            continue;
        }
        if depth >= limits.max_depth {
            listing.skipped.push(skip(format!(
                "more than {} folders deep; not listed (--max-job-depth)",
                limits.max_depth
            )));
            continue;
        }
        match children(&path, depth + 1, accept) {
            Ok(mut nodes) => stack.append(&mut nodes),
            Err(e) => listing
                .skipped
                .push(skip(format!("cannot list this folder: {e}"))),
        }
    }
    Ok(listing)
}

/// The entries of `dir` as nodes, reversed so that popping the stack yields them sorted.
/// Plain files are taken or dropped by name here; everything else (folders, links, special
/// files) is a `Dir` node, examined when popped.
fn children(
    dir: &Path,
    depth: usize,
    accept: &dyn Fn(&Path) -> bool,
) -> std::io::Result<Vec<Node>> {
    let mut entries: Vec<(PathBuf, bool)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let plain_file = entry.file_type().is_ok_and(|t| t.is_file());
        if plain_file && !accept(&path) {
            continue;
        }
        entries.push((path, plain_file));
    }
    entries.sort();
    Ok(entries
        .into_iter()
        .rev()
        .map(|(p, plain_file)| {
            if plain_file {
                Node::File(p)
            } else {
                Node::Dir(p, depth)
            }
        })
        .collect())
}

/// The metadata of `path` with symlinks followed, when it may be used: None for a dangling
/// link (nothing to list), Err(reason) for a link that leaves `within` or an entry that cannot
/// be examined.
fn examine(path: &Path, within: Option<&[PathBuf]>) -> Result<Option<Metadata>, String> {
    let own = std::fs::symlink_metadata(path).map_err(|e| format!("cannot examine: {e}"))?;
    if !own.file_type().is_symlink() {
        return Ok(Some(own));
    }
    let Ok(target) = std::fs::canonicalize(path) else {
        return Ok(None);
    };
    if let Some(roots) = within {
        if !roots.iter().any(|r| target.starts_with(r)) {
            return Err(
                "a symlink whose target is outside the directories this server may read; not followed"
                    .into(),
            );
        }
    }
    std::fs::metadata(&target)
        .map(Some)
        .map_err(|e| format!("cannot examine the link's target: {e}"))
}

fn is_dir_link(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

fn root_error(root: &Path, e: &std::io::Error) -> WalkError {
    WalkError::Root {
        path: root.to_owned(),
        reason: e.to_string(),
        permission: e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}
