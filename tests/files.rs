//! Listing folders and reading files as jobs do (issue 20, B4-B6): symlink loops cost one
//! visit, links out of the root are reported without naming their target, FIFOs and devices
//! are never opened for reading, unreadable subfolders and folders too deep become skipped
//! entries, and a listing is bounded and stoppable.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use dcd::files::{walk, Listing, WalkError, WalkLimits};

fn is_jpg(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "jpg")
}

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

fn list(root: &Path, within: Option<&[PathBuf]>, limits: &WalkLimits) -> Listing {
    walk(root, &is_jpg, within, limits, &|| false).unwrap()
}

fn names(root: &Path, paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file system node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn files_come_sorted_depth_first_and_other_names_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for f in [
        "b/2.jpg",
        "b/1.jpg",
        "a.jpg",
        "c/d/3.jpg",
        "notes.txt",
        "c/e.png",
    ] {
        touch(&root.join(f));
    }
    let l = list(&root, None, &WalkLimits::default());
    assert_eq!(
        names(&root, &l.files),
        ["a.jpg", "b/1.jpg", "b/2.jpg", "c/d/3.jpg"]
    );
    assert!(l.skipped.is_empty(), "{:?}", l.skipped);
}

/// B6: two `..` links made the walk exponential, `self -> .` listed each file 41 times.
#[test]
fn symlink_loops_are_entered_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for f in ["x/1.jpg", "x/y/2.jpg", "3.jpg"] {
        touch(&root.join(f));
    }
    symlink(".", root.join("self")).unwrap();
    symlink("..", root.join("x/up1")).unwrap();
    symlink("..", root.join("x/up2")).unwrap();
    symlink("../..", root.join("x/y/up3")).unwrap();
    let l = list(&root, None, &WalkLimits::default());
    assert_eq!(names(&root, &l.files), ["3.jpg", "x/1.jpg", "x/y/2.jpg"]);
    // A second name for a folder not yet seen is followed once, through the first name met.
    let other = tempfile::tempdir().unwrap();
    let other = other.path().canonicalize().unwrap();
    touch(&other.join("o.jpg"));
    symlink(&other, root.join("a-link")).unwrap();
    symlink(&other, root.join("b-link")).unwrap();
    let l = list(&root, None, &WalkLimits::default());
    assert_eq!(
        names(&root, &l.files),
        ["3.jpg", "a-link/o.jpg", "x/1.jpg", "x/y/2.jpg"]
    );
}

#[test]
fn links_out_of_the_allowed_roots_are_skipped_without_naming_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("root");
    let secret = base.join("secret-place");
    touch(&root.join("in.jpg"));
    touch(&secret.join("s.jpg"));
    symlink(&secret, root.join("out")).unwrap();
    symlink(secret.join("s.jpg"), root.join("file.jpg")).unwrap();
    symlink("/nonexistent/dangling.jpg", root.join("dangling.jpg")).unwrap();
    let within = [root.clone()];
    let l = list(&root, Some(&within), &WalkLimits::default());
    assert_eq!(names(&root, &l.files), ["in.jpg"]);
    let skipped: Vec<_> = l.skipped.iter().map(|s| s.path.clone()).collect();
    assert_eq!(names(&root, &skipped), ["file.jpg", "out"]);
    for s in &l.skipped {
        assert!(!s.reason.contains("secret"), "{}", s.reason);
        assert!(s.reason.contains("outside"), "{}", s.reason);
    }
    // Without confinement (the local CLI, acting as its own user) both are followed.
    let l = list(&root, None, &WalkLimits::default());
    assert_eq!(names(&root, &l.files), ["file.jpg", "in.jpg", "out/s.jpg"]);
}

/// B4, B5: a FIFO named like an image blocked the job forever; a device was read until memory
/// ran out. Both are listed as skipped, never opened.
#[test]
fn fifos_and_devices_are_skipped_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    touch(&root.join("ok.jpg"));
    mkfifo(&root.join("pipe.jpg"));
    symlink("/dev/zero", root.join("zero.jpg")).unwrap();
    mkfifo(&root.join("pipe.txt"));
    let l = list(&root, None, &WalkLimits::default());
    assert_eq!(names(&root, &l.files), ["ok.jpg"]);
    let reasons: Vec<(String, &str)> = l
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                s.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].0 == "pipe.jpg" && reasons[0].1.contains("a FIFO"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "zero.jpg" && reasons[1].1.contains("a character device"),
        "{reasons:?}"
    );
}

#[test]
fn depth_and_entry_limits_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    touch(&root.join("a/b/c/deep.jpg"));
    touch(&root.join("a/shallow.jpg"));
    let limits = WalkLimits {
        max_depth: 2,
        max_entries: 100,
    };
    let l = list(&root, None, &limits);
    assert_eq!(names(&root, &l.files), ["a/shallow.jpg"]);
    assert_eq!(l.skipped.len(), 1);
    assert!(l.skipped[0].path.ends_with("a/b/c"), "{:?}", l.skipped);
    assert!(
        l.skipped[0].reason.contains("--max-job-depth"),
        "{:?}",
        l.skipped
    );

    for i in 0..10 {
        touch(&root.join(format!("many/{i}.jpg")));
    }
    let limits = WalkLimits {
        max_depth: 32,
        max_entries: 5,
    };
    let e = walk(&root, &is_jpg, None, &limits, &|| false).unwrap_err();
    assert!(matches!(e, WalkError::TooManyEntries { max: 5, .. }), "{e}");
    assert!(e.to_string().contains("--max-job-entries"), "{e}");
}

#[test]
fn a_listing_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    touch(&root.join("a/1.jpg"));
    let e = walk(&root, &is_jpg, None, &WalkLimits::default(), &|| true).unwrap_err();
    assert!(matches!(e, WalkError::Stopped { .. }), "{e}");
}

/// An unreadable subfolder is a skipped entry; an unreadable root is an error that says
/// permission. Run with the file system identity of an unprivileged user (root reads
/// everything): setfsuid changes it for this thread only.
#[test]
fn unreadable_folders_are_skipped_and_an_unreadable_root_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    touch(&root.join("open/1.jpg"));
    touch(&root.join("closed/2.jpg"));
    for p in [dir.path(), &root.join("open")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        root.join("open/1.jpg"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(root.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let root2 = root.clone();
    let (listing, refused) = std::thread::spawn(move || {
        // SAFETY: setfsuid only changes this thread's file system identity.
        unsafe {
            if libc::geteuid() == 0 {
                libc::setfsuid(65534);
            }
        }
        let listing = list(&root2, None, &WalkLimits::default());
        let refused = walk(
            &root2.join("closed"),
            &is_jpg,
            None,
            &WalkLimits::default(),
            &|| false,
        );
        (listing, refused)
    })
    .join()
    .unwrap();
    std::fs::set_permissions(root.join("closed"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(names(&root, &listing.files), ["open/1.jpg"]);
    assert_eq!(listing.skipped.len(), 1, "{:?}", listing.skipped);
    assert!(listing.skipped[0].path.ends_with("closed"));
    assert!(
        listing.skipped[0].reason.contains("cannot list"),
        "{:?}",
        listing.skipped
    );
    match refused.unwrap_err() {
        WalkError::Root { permission, .. } => assert!(permission),
        other => panic!("{other}"),
    }
}
