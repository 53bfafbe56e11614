//! The embedding pipeline: images are decoded and preprocessed on a pool of decode threads,
//! which push ready tensors into a bounded queue; one batcher thread takes up to `max_batch`
//! of them (waiting at most `max_wait` after the first) and runs the model on its own thread
//! pool. The model only ever sees decoded tensors, so a slow file or client never stalls it,
//! and the bounded queue holds back decoding, not the model, when the model is the slower.
//! Callers on any thread submit at once; their images share batches.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backbone::FeatureExtractor;
use super::preprocess::{ImageError, ImageFileError, Preprocess};

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
            let (reply, queue, pre) = (reply_tx.clone(), queue.clone(), self.preprocess);
            self.decode.spawn(move || {
                let name = input.name();
                let pixels = match input {
                    ImageInput::Path(p) => pre.run_file(&p).map_err(|e| e.error),
                    ImageInput::Bytes { bytes, .. } => pre.run(&bytes),
                };
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
        let result = pool.install(|| model.embed_pixels(pixels, n));
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
            Err(e) => {
                tracing::error!(error = %e, images = n, "model forward failed");
                for job in batch {
                    let err = ImageFileError {
                        path: job.name,
                        error: ImageError::NotEmbedded(format!(
                            "the model failed on its batch: {e}"
                        )),
                    };
                    let _ = job.reply.send((job.index, Err(err)));
                }
            }
        }
    }
}
