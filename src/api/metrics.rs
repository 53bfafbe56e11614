//! Prometheus metrics: requests and latency per method and code, requests in flight, vectors
//! stored, images embedded, jobs running; served as text on `--metrics-addr`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::service::Service;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCode {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<MethodCode, Counter>,
    latency: Family<Method, Histogram>,
    /// Requests being served now.
    pub in_flight: Gauge,
    /// Vectors stored through `Ingest` since start.
    pub vectors_stored: Counter,
    pool_vectors: Gauge,
    images_embedded: Counter<u64, AtomicU64>,
    jobs_running: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dcd");
        let requests = Family::<MethodCode, Counter>::default();
        let latency = Family::<Method, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 18))
        });
        let in_flight = Gauge::default();
        let vectors_stored = Counter::default();
        let pool_vectors = Gauge::default();
        let images_embedded = Counter::default();
        let jobs_running = Gauge::default();
        registry.register(
            "requests",
            "gRPC requests by method and status code",
            requests.clone(),
        );
        registry.register("request_seconds", "gRPC request latency", latency.clone());
        registry.register(
            "in_flight_requests",
            "requests being served (the queue depth)",
            in_flight.clone(),
        );
        registry.register(
            "ingested_vectors",
            "vectors stored through the Ingest stream",
            vectors_stored.clone(),
        );
        registry.register(
            "pool_vectors",
            "vectors stored in all pools",
            pool_vectors.clone(),
        );
        registry.register(
            "images_embedded",
            "images embedded by requests and jobs (rate() gives images/s)",
            images_embedded.clone(),
        );
        registry.register(
            "jobs_running",
            "ingestion jobs running",
            jobs_running.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            vectors_stored,
            pool_vectors,
            images_embedded,
            jobs_running,
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe(&self, method: &str, code: tonic::Code, seconds: f64) {
        self.requests
            .get_or_create(&MethodCode {
                method: method.into(),
                code: format!("{code:?}"),
            })
            .inc();
        if code == tonic::Code::Ok {
            self.latency
                .get_or_create(&Method {
                    method: method.into(),
                })
                .observe(seconds);
        }
    }

    /// The text exposition, with the gauges read from the service now.
    pub fn render(&self, service: &Service) -> String {
        if let Ok(pools) = service.list_pools() {
            self.pool_vectors
                .set(pools.iter().map(|p| p.rows as i64).sum());
        }
        let embedded = service.images_embedded();
        let seen = self.images_embedded.get();
        if embedded > seen {
            self.images_embedded.inc_by(embedded - seen);
        }
        self.jobs_running.set(service.jobs().running_count() as i64);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` (any path) on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    service: Arc<Service>,
    shutdown: super::Shutdown,
) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let mut shutdown = shutdown;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener failed");
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let (metrics, service) = (metrics.clone(), service.clone());
        tokio::spawn(async move {
            let handler = service_fn(move |_req| {
                let (metrics, service) = (metrics.clone(), service.clone());
                async move {
                    let body = tokio::task::spawn_blocking(move || metrics.render(&service))
                        .await
                        .unwrap_or_default();
                    let response = hyper::Response::builder()
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                        .expect("static headers are valid");
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}
