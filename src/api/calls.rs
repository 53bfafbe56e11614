//! How a gRPC call runs: admitted under the in-flight limit (or, for a client stream, under
//! the stream limits), its work on the blocking pool (never on tonic's async threads) under a
//! compute slot, inside a span naming the method and the pool, with its outcome counted in
//! the metrics.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::metrics::Metrics;
use crate::error::Result;
use crate::service::Service;

/// The gRPC front of a [`Service`].
#[derive(Clone)]
pub struct DcdApi {
    pub(super) service: Arc<Service>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// Requests computing at once; the others admitted wait for a slot. A few per core keep
    /// every core busy without a thread (and an allocator heap) per request.
    compute: Arc<Semaphore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) streams: super::StreamLimits,
    /// One permit per open Ingest stream.
    pub(super) open_streams: Arc<Semaphore>,
    /// KiB of streamed items held uncommitted, over the server.
    pub(super) stream_kib: Arc<Semaphore>,
}

/// How a call is admitted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Under an in-flight permit (`--max-in-flight`) and a compute slot.
    Call,
    /// A client stream: it mostly waits on its client, so it takes neither (streams have a
    /// cap of their own, `--max-ingest-streams`); an idle stream must not keep a slot from
    /// the calls that compute.
    Stream,
}

/// Whole KiB covering `bytes` (at least 1: every item costs something).
pub(super) fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as usize) as u32
}

impl DcdApi {
    /// Serves `service`, refusing requests beyond `max_in_flight` at once.
    pub fn new(service: Arc<Service>, max_in_flight: usize, metrics: Arc<Metrics>) -> DcdApi {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        DcdApi {
            service,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
            compute: Arc::new(Semaphore::new(2 * cores)),
            metrics,
            streams: super::StreamLimits::default(),
            open_streams: Arc::new(Semaphore::new(super::StreamLimits::default().max_streams)),
            stream_kib: Arc::new(Semaphore::new(
                kib(super::StreamLimits::default().max_total_bytes) as usize,
            )),
        }
    }

    /// With these bounds on Ingest streams.
    pub fn with_stream_limits(mut self, limits: super::StreamLimits) -> DcdApi {
        self.streams = limits;
        self.open_streams = Arc::new(Semaphore::new(limits.max_streams.max(1)));
        self.stream_kib = Arc::new(Semaphore::new(kib(limits.max_total_bytes) as usize));
        self
    }

    fn permit(&self) -> std::result::Result<OwnedSemaphorePermit, Status> {
        let permit = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server is at its limit of {} requests in flight; retry with backoff, or start it with a higher --max-in-flight",
                self.max_in_flight
            ))
        })?;
        self.metrics
            .in_flight
            .set((self.max_in_flight - self.in_flight.available_permits()) as i64);
        Ok(permit)
    }

    /// Runs `f` on the blocking pool under an in-flight permit and a compute slot, inside the
    /// call's span (`rpc`, with the method and the pool it is about; empty when none).
    pub(super) async fn blocking<T, F>(
        &self,
        method: &'static str,
        pool: String,
        f: F,
    ) -> std::result::Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Service>) -> Result<T> + Send + 'static,
    {
        self.run_blocking(method, pool, Admission::Call, f).await
    }

    /// As [`DcdApi::blocking`], admitted as `admission` says.
    pub(super) async fn run_blocking<T, F>(
        &self,
        method: &'static str,
        pool: String,
        admission: Admission,
        f: F,
    ) -> std::result::Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<Service>) -> Result<T> + Send + 'static,
    {
        let permit = match admission {
            Admission::Stream => None,
            Admission::Call => match self.permit() {
                Ok(p) => Some(p),
                Err(s) => {
                    self.metrics.observe(method, s.code(), 0.0);
                    return Err(s);
                }
            },
        };
        let started = std::time::Instant::now();
        let slot = if admission == Admission::Call {
            Some(
                self.compute
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Status::unavailable("the server is shutting down"))?,
            )
        } else {
            None
        };
        let service = self.service.clone();
        let span = rpc_span(method, &pool);
        // Dropped with this future (client gone, deadline passed): the work sees it and stops
        // at its next step.
        let (cancel_guard, cancelled) = crate::cancel::CancelOnDrop::new();
        let joined = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let _permit = permit;
            let _slot = slot;
            crate::cancel::within(cancelled, || f(&service))
        })
        .await;
        cancel_guard.disarm();
        let result = match joined {
            Ok(r) => r.map_err(Status::from),
            Err(e) => Err(Status::internal(format!(
                "the request's worker failed: {e}"
            ))),
        };
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.metrics
            .observe(method, code, started.elapsed().as_secs_f64());
        self.metrics
            .in_flight
            .set((self.max_in_flight - self.in_flight.available_permits()) as i64);
        result
    }
}

/// The span of one call: every event of its work carries the method and the pool.
pub(super) fn rpc_span(method: &'static str, pool: &str) -> tracing::Span {
    if pool.is_empty() {
        tracing::info_span!("rpc", method)
    } else {
        tracing::info_span!("rpc", method, pool)
    }
}
