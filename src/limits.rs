//! Every bound dcd holds a request, a job or an image to, with its default, in one place (and
//! in docs/operations.md, which lists them with their flags). Each bound is a flag of the
//! commands it applies to, and the error that enforces it names that flag. A leaf: the layers
//! that enforce the bounds depend on it, it depends on nothing of dcd's.

use std::time::Duration;

/// Default largest image, in pixels (64 MP: above every camera sensor dcd expects, far below
/// what a decompression bomb claims).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;
/// Default largest image file, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Default largest ratio of the longer side to the shorter (panoramas reach about 10).
pub const MAX_ASPECT_RATIO: u32 = 100;

/// The bounds every image is held to (`dcd serve`, `dcd ingest`, `dcd embed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest encoded file or upload, in bytes (`--max-image-mib`).
    pub max_file_bytes: u64,
    /// Largest width x height (`--max-image-pixels`).
    pub max_pixels: u64,
    /// Largest longer side / shorter side (`--max-aspect-ratio`).
    pub max_aspect_ratio: u32,
    /// Bytes all decodes in the process hold at once, as leased from the headers
    /// (`--max-decode-mib`); one image alone may exceed it.
    pub max_decode_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_file_bytes: MAX_FILE_BYTES,
            max_pixels: MAX_PIXELS,
            max_aspect_ratio: MAX_ASPECT_RATIO,
            max_decode_bytes: 1 << 30,
        }
    }
}

/// How far a folder listing may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkLimits {
    /// Folder levels below the root that are listed; deeper folders are skipped
    /// (`--max-job-depth`).
    pub max_depth: usize,
    /// Files (accepted and skipped) a listing may hold; beyond it the listing fails
    /// (`--max-job-entries`).
    pub max_entries: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_depth: 32,
            max_entries: 10_000_000,
        }
    }
}

/// What one request or job may ask of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Most hits one search or debug set computes: queries x k (`--max-hits`).
    pub max_hits: usize,
    /// How far a job's folder listing goes.
    pub walk: WalkLimits,
    /// Bytes of files a job reads ahead of the model (`--job-chunk-mib`).
    pub job_chunk_bytes: u64,
    /// Finished jobs kept per pool (`--jobs-kept`).
    pub jobs_kept: usize,
    /// Largest manifest file (`--max-manifest-mib`).
    pub max_manifest_bytes: u64,
    /// Images one Embed, Search or BuildDebugSet may carry (`--max-images-per-call`): each
    /// costs a decode and a forward pass, and tiny images fit by the hundred thousand in one
    /// message.
    pub max_images_per_call: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_hits: 500_000,
            walk: WalkLimits::default(),
            job_chunk_bytes: 256 << 20,
            jobs_kept: 100,
            max_manifest_bytes: 1 << 30,
            max_images_per_call: 1024,
        }
    }
}

/// Bounds on connections and on the server's shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (`--max-connections`); more wait in the listen backlog.
    /// Keep it well under the process's file descriptor limit.
    pub max_connections: usize,
    /// Time a new connection has to send its first bytes (`--handshake-timeout-s`).
    pub handshake_timeout: Duration,
    /// HTTP/2 ping interval; a peer that does not answer within the same time again is
    /// closed (`--keepalive-s`).
    pub keepalive: Duration,
    /// Longest wait, after SIGTERM, for the calls in flight (`--drain-timeout-s`); then the
    /// remaining connections are closed (what was committed stays committed).
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Bounds on `Ingest` streams: how many at once, how long one may sit idle, and the bytes
/// of items received but not yet committed, per stream and over the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Ingest streams open at once (`--max-ingest-streams`); beyond it RESOURCE_EXHAUSTED,
    /// so streams can never take every in-flight slot.
    pub max_streams: usize,
    /// Longest wait for a stream's next item (`--stream-idle-timeout-s`).
    pub idle_timeout: Duration,
    /// Item bytes one stream holds uncommitted (`--max-stream-mib`).
    pub max_stream_bytes: usize,
    /// Item bytes all streams together hold uncommitted (`--max-ingest-mib`).
    pub max_total_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 16,
            idle_timeout: Duration::from_secs(60),
            max_stream_bytes: 256 << 20,
            max_total_bytes: 1 << 30,
        }
    }
}
