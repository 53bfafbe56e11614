//! Which server-side paths a request may make the server read: only those below the roots
//! given with `--allow-root`, checked both on the path as written (so `..` cannot climb out,
//! and nothing outside is even probed) and after resolving symlinks.

use std::path::{Component, Path, PathBuf};

use super::ServiceError;

/// The directories server-side jobs may read.
#[derive(Clone, Debug)]
pub enum AllowedRoots {
    /// Any path (the local CLI, acting as its own user).
    Any,
    /// Only below these directories (canonical paths).
    Only(Vec<PathBuf>),
}

impl AllowedRoots {
    /// Roots from the command line, resolved now; a root that does not exist is an error.
    pub fn only(roots: &[PathBuf]) -> Result<AllowedRoots, ServiceError> {
        let mut out = Vec::with_capacity(roots.len());
        for r in roots {
            let c = r.canonicalize().map_err(|e| ServiceError::PathUnreadable {
                path: r.clone(),
                reason: format!("{e} (an --allow-root must be an existing directory)"),
            })?;
            out.push(c);
        }
        Ok(AllowedRoots::Only(out))
    }

    /// The canonical form of `path` if it may be read.
    pub fn check(&self, path: &Path) -> Result<PathBuf, ServiceError> {
        let roots = match self {
            AllowedRoots::Any => {
                return path
                    .canonicalize()
                    .map_err(|e| ServiceError::PathUnreadable {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })
            }
            AllowedRoots::Only(roots) => roots,
        };
        let denied = |p: &Path| ServiceError::PathNotAllowed {
            path: p.to_owned(),
            roots: if roots.is_empty() {
                "none: server-side paths are off".into()
            } else {
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        };
        if !path.is_absolute() {
            return Err(ServiceError::InvalidArgument {
                field: "path",
                reason: format!(
                    "{} is relative; server-side paths must be absolute (the server's working directory is not yours)",
                    path.display()
                ),
            });
        }
        let lexical = normalize(path);
        if !roots.iter().any(|r| lexical.starts_with(r)) {
            return Err(denied(&lexical));
        }
        let real = path
            .canonicalize()
            .map_err(|e| ServiceError::PathUnreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if !roots.iter().any(|r| real.starts_with(r)) {
            return Err(denied(&real));
        }
        Ok(real)
    }
}

/// Removes `.` and resolves `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_and_symlinks_cannot_leave_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = AllowedRoots::only(std::slice::from_ref(&root)).unwrap();
        assert!(roots.check(&root.join("sub")).is_ok());
        for bad in [root.join("../outside"), root.join("link"), outside.clone()] {
            let e = roots.check(&bad).unwrap_err();
            assert!(
                matches!(e, ServiceError::PathNotAllowed { .. }),
                "{bad:?}: {e}"
            );
        }
        let e = roots.check(Path::new("relative/path")).unwrap_err();
        assert!(matches!(e, ServiceError::InvalidArgument { .. }), "{e}");
        let none = AllowedRoots::only(&[]).unwrap();
        assert!(matches!(
            none.check(&root).unwrap_err(),
            ServiceError::PathNotAllowed { .. }
        ));
    }
}
