//! The embedding pipeline: images are decoded and preprocessed on a pool of decode threads,
//! which push ready tensors into a bounded queue; one batcher thread takes up to `max_batch`
//! of them (waiting at most `max_wait` after the first) and runs the model on its own thread
//! pool. The model only ever sees decoded tensors, so a slow file or client never stalls it,
//! and the bounded queue holds back decoding, not the model, when the model is the slower.
//! Callers on any thread submit at once; their images share batches, so one image can never
//! fail another: a batch whose forward pass fails is run again image by image, and a panic
//! in a decode or model thread becomes that image's error instead of aborting the process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backbone::FeatureExtractor;
use super::preprocess::{ImageError, ImageFileError, ImageLimits, Preprocess};
use crate::types::Matrix;

/// One image to embed.
#[derive(Clone, Debug)]
pub enum ImageInput {
    /// A file, read by a decode thread.
    Path(PathBuf),
    /// Encoded bytes already in memory, with a name for error messages.
    Bytes {
        /// Shown in errors (a key, an upload name).
        name: String,
        /// The encoded image.
        bytes: Vec<u8>,
    },
}

impl ImageInput {
    fn name(&self) -> PathBuf {
        match self {
            ImageInput::Path(p) => p.clone(),
            ImageInput::Bytes { name, .. } => PathBuf::from(name),
        }
    }
}

/// Pipeline sizes.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Most images per forward pass.
    pub max_batch: usize,
    /// How long the batcher waits for more images once it has one.
    pub max_wait: Duration,
    /// Decoded images waiting for the model, at most.
    pub queue: usize,
    /// Threads decoding and preprocessing.
    pub decode_threads: usize,
    /// Threads the model's kernels use.
    pub model_threads: usize,
    /// Bounds on every image (file size, pixels, aspect ratio).
    pub limits: ImageLimits,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PipelineConfig {
            max_batch: 16,
            max_wait: Duration::from_millis(5),
            queue: 64,
            decode_threads: cores,
            model_threads: cores,
            limits: ImageLimits::default(),
        }
    }
}

/// What one image became: its feature vector or why it has none.
pub type EmbedResult = Result<Vec<f32>, ImageFileError>;

struct Job {
    pixels: Vec<f32>,
    index: usize,
    name: PathBuf,
    reply: Sender<(usize, EmbedResult)>,
}

/// A running pipeline for one model. Dropping it stops the batcher after the queued work.
pub struct Embedder {
    queue: Option<SyncSender<Job>>,
    decode: rayon::ThreadPool,
    preprocess: Preprocess,
    limits: ImageLimits,
    batcher: Option<JoinHandle<()>>,
    dim: usize,
}

/// Batch statistics, for tests and logs.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    /// Forward passes run.
    pub batches: usize,
    /// Images embedded.
    pub images: usize,
}

impl Embedder {
    /// Starts the decode pool and the batcher thread.
    pub fn start(
        model: Arc<dyn FeatureExtractor>,
        preprocess: Preprocess,
        config: &PipelineConfig,
    ) -> std::io::Result<(Embedder, Arc<parking_lot::Mutex<BatchStats>>)> {
        let decode = rayon::ThreadPoolBuilder::new()
            .num_threads(config.decode_threads.max(1))
            .thread_name(|i| format!("dcd-decode-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let model_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.model_threads.max(1))
            .thread_name(|i| format!("dcd-model-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(config.queue.max(1));
        let stats = Arc::new(parking_lot::Mutex::new(BatchStats::default()));
        let dim = model.dim();
        let (max_batch, max_wait, st) = (config.max_batch.max(1), config.max_wait, stats.clone());
        let batcher = std::thread::Builder::new()
            .name("dcd-batcher".into())
            .spawn(move || run_batcher(rx, model, model_pool, max_batch, max_wait, st))?;
        Ok((
            Embedder {
                queue: Some(tx),
                decode,
                preprocess,
                limits: config.limits,
                batcher: Some(batcher),
                dim,
            },
            stats,
        ))
    }

    /// Feature width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds `inputs`, blocking until all are done; results are in input order, a bad image
    /// gives its own error and does not affect the others.
    pub fn embed(&self, inputs: Vec<ImageInput>) -> Vec<EmbedResult> {
        let n = inputs.len();
        let (reply_tx, reply_rx) = mpsc::channel();
        let queue = self
            .queue
            .clone()
            .expect("the queue lives as long as the embedder");
        for (index, input) in inputs.into_iter().enumerate() {
            let (reply, queue) = (reply_tx.clone(), queue.clone());
            let (pre, limits) = (self.preprocess, self.limits);
            self.decode.spawn(move || {
                let name = input.name();
                // A panic here would abort the process (rayon's spawn has no one to return
                // it to): it becomes this image's error instead.
                let pixels = catch_unwind(AssertUnwindSafe(|| match input {
                    ImageInput::Path(p) => pre.run_file(&p, &limits).map_err(|e| e.error),
                    ImageInput::Bytes { bytes, .. } => pre.run_within(&bytes, &limits),
                }))
                .unwrap_or_else(|panic| {
                    Err(ImageError::Corrupt(format!(
                        "decoding failed unexpectedly ({}); please report this image",
                        panic_message(&panic)
                    )))
                });
                match pixels {
                    Ok(pixels) => {
                        let job = Job {
                            pixels,
                            index,
                            name,
                            reply: reply.clone(),
                        };
                        if let Err(mpsc::SendError(job)) = queue.send(job) {
                            let _ = reply.send((index, Err(model_gone(job.name))));
                        }
                    }
                    Err(error) => {
                        let _ = reply.send((index, Err(ImageFileError { path: name, error })));
                    }
                }
            });
        }
        drop(reply_tx);
        let mut out: Vec<Option<EmbedResult>> = (0..n).map(|_| None).collect();
        for (i, r) in reply_rx.iter().take(n) {
            out[i] = Some(r);
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| Err(model_gone(PathBuf::from(format!("#{i}"))))))
            .collect()
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(b) = self.batcher.take() {
            let _ = b.join();
        }
    }
}

fn model_gone(path: PathBuf) -> ImageFileError {
    ImageFileError {
        path,
        error: ImageError::NotEmbedded("the model worker stopped first".into()),
    }
}

fn run_batcher(
    rx: Receiver<Job>,
    model: Arc<dyn FeatureExtractor>,
    pool: rayon::ThreadPool,
    max_batch: usize,
    max_wait: Duration,
    stats: Arc<parking_lot::Mutex<BatchStats>>,
) {
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + max_wait;
        let mut batch = vec![first];
        while batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let n = batch.len();
        let mut pixels = Vec::with_capacity(n * batch[0].pixels.len());
        for job in &mut batch {
            pixels.append(&mut job.pixels);
        }
        let result = forward(&model, &pool, pixels.clone(), n);
        match result {
            Ok(m) => {
                // Counted before replying, so a caller that got its results sees them.
                {
                    let mut s = stats.lock();
                    s.batches += 1;
                    s.images += n;
                }
                for (job, row) in batch.into_iter().zip(m.data.chunks_exact(m.dim)) {
                    let _ = job.reply.send((job.index, Ok(row.to_vec())));
                }
            }
            Err(e) if n == 1 => {
                tracing::warn!(error = %e, image = %batch[0].name.display(), "model forward failed on one image");
                let job = batch.pop().expect("one job");
                let _ = job.reply.send((job.index, Err(not_embedded(job.name, &e))));
            }
            Err(e) => {
                // Batches mix callers: find the image at fault by running each alone, so the
                // others still get their vectors.
                tracing::warn!(error = %e, images = n, "model forward failed on a batch; retrying image by image");
                let per = pixels.len() / n;
                for (job, px) in batch.into_iter().zip(pixels.chunks_exact(per)) {
                    let reply = match forward(&model, &pool, px.to_vec(), 1) {
                        Ok(m) => {
                            let mut s = stats.lock();
                            s.batches += 1;
                            s.images += 1;
                            Ok(m.data)
                        }
                        Err(e) => Err(not_embedded(job.name, &e)),
                    };
                    let _ = job.reply.send((job.index, reply));
                }
            }
        }
    }
}

/// One forward pass, with a panic in the model turned into an error.
fn forward(
    model: &Arc<dyn FeatureExtractor>,
    pool: &rayon::ThreadPool,
    pixels: Vec<f32>,
    n: usize,
) -> Result<Matrix, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        pool.install(|| model.embed_pixels(pixels, n))
    })) {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("the model panicked: {}", panic_message(&panic))),
    }
}

fn not_embedded(path: PathBuf, e: &str) -> ImageFileError {
    ImageFileError {
        path,
        error: ImageError::NotEmbedded(format!("the model failed on this image: {e}")),
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
