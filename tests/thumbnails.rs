//! Thumbnails for the review page: an item's key read as an image path below the allowed
//! roots, shrunk once and cached in the data directory (a second call reads the cache, a
//! changed file gets a new thumbnail); a key outside the roots, a file that is not an image
//! and a row the pool lacks are refused with their kinds.

mod common;

use dcd::error_kind::ErrorKind;
use dcd::service::{AllowedRoots, Service};
use dcd::store::NewItem;
use dcd::types::Matrix;

fn cached(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(data.join("thumbs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

#[test]
fn thumbnails_are_made_once_and_only_below_the_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let photo = images.join("a.png");
    image::RgbImage::from_fn(400, 200, |x, _| image::Rgb([x as u8, 90, 200]))
        .save(&photo)
        .unwrap();
    let notes = images.join("notes.png");
    std::fs::write(&notes, b"not an image").unwrap();
    let outside = tmp.path().join("outside.png");
    image::RgbImage::new(8, 8).save(&outside).unwrap();

    let data = tmp.path().join("data");
    let mut settings = dcd::app::settings(
        AllowedRoots::only(std::slice::from_ref(&images)).unwrap(),
        &common::cpu_runtime(),
        None,
    );
    settings.background_index = false;
    let service = Service::open(&data, settings).unwrap();
    common::local_raw_pool(&service, "p", 2);
    let keys = [&photo, &notes, &outside].map(|p| p.display().to_string());
    let items: Vec<NewItem> = keys
        .iter()
        .map(|k| NewItem {
            key: k.clone(),
            ..Default::default()
        })
        .collect();
    service
        .pool("p")
        .unwrap()
        .append(&Matrix::new(3, 2, vec![0.0; 6]), &items, None)
        .unwrap();

    let jpeg = service.thumbnail("p", 0).unwrap();
    let small = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((small.width(), small.height()), (160, 80));
    let files = cached(&data);
    assert_eq!(files.len(), 1, "{files:?}");
    // The second call reads the cache: its bytes, even if the cache is all that is left.
    std::fs::write(&files[0], b"cached bytes").unwrap();
    assert_eq!(service.thumbnail("p", 0).unwrap(), b"cached bytes");
    // A changed image is a new thumbnail.
    std::thread::sleep(std::time::Duration::from_millis(20));
    image::RgbImage::new(100, 50).save(&photo).unwrap();
    let again = image::load_from_memory(&service.thumbnail("p", 0).unwrap()).unwrap();
    assert_eq!((again.width(), again.height()), (100, 50));
    assert_eq!(cached(&data).len(), 2);

    let e = service.thumbnail("p", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("notes.png"), "{e}");
    let e = service.thumbnail("p", 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = service.thumbnail("p", 3).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = service.thumbnail("nope", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}
