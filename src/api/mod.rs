//! The gRPC server (tonic): the `dcd.v1.Dcd` service, gRPC health and reflection, optional
//! bearer-token auth and TLS, message size and in-flight limits, and Prometheus metrics.
//! The only module that sees tonic, prost or generated types.

pub mod auth;
pub mod bench;
mod calls;
pub mod client;
mod connections;
mod convert;
mod decode_errors;
mod evaluation;
mod from_pb;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
pub mod http;
mod ingest_stream;
pub mod metrics;
mod saved_sets;
pub mod status;
#[cfg(test)]
mod status_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::limits::{ConnectionLimits, StreamLimits};
pub use calls::DcdApi;

use crate::service::Service;

/// Generated messages, client and server of `dcd.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("dcd.v1");

    /// The encoded descriptor set of `dcd.v1`, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/dcd_v1_descriptor.bin"));

    impl From<Query> for ErrorSample {
        /// A query as an unlabelled error sample (the same bytes on the wire).
        fn from(q: Query) -> Self {
            ErrorSample {
                source: q.source.map(|s| match s {
                    query::Source::Image(b) => error_sample::Source::Image(b),
                    query::Source::Vector(v) => error_sample::Source::Vector(v),
                    query::Source::ItemKey(k) => error_sample::Source::ItemKey(k),
                }),
                label: String::new(),
                weight: 0.0,
            }
        }
    }
}

/// HTTP/2 flow-control window per stream (the connection gets twice as much).
pub const WINDOW_BYTES: u32 = 8 << 20;

/// A cloneable shutdown signal: flips once, every waiter sees it.
#[derive(Clone)]
pub struct Shutdown(pub tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|&v| v).await;
    }
}

/// Server limits and security.
#[derive(Debug)]
pub struct ServerOptions {
    /// Requests served at once; more get RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Bearer token required on every `dcd.v1` call (health stays open).
    pub api_key: Option<String>,
    /// PEM certificate chain and key for TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Upper bound on any request's time (clients' own deadlines apply when shorter).
    pub request_timeout: Option<Duration>,
    /// Where to serve Prometheus metrics.
    pub metrics_listener: Option<TcpListener>,
    /// Where to serve the review page and its JSON API.
    pub http_listener: Option<TcpListener>,
    /// The page's demo (its data, if this server has it).
    pub demo: http::demo::Demo,
    /// Bounds on client-streamed ingestion.
    pub streams: StreamLimits,
    /// Bounds on connections and on the drain at shutdown.
    pub connections: ConnectionLimits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_in_flight: 64,
            max_message_bytes: 64 << 20,
            api_key: None,
            tls: None,
            request_timeout: None,
            metrics_listener: None,
            http_listener: None,
            demo: http::demo::Demo::new(None),
            streams: StreamLimits::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` flips; then stops taking requests, lets
/// the running ones finish, and stops the ingestion jobs at their next commit (they resume
/// on the next start).
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    options: ServerOptions,
    shutdown: Shutdown,
) -> crate::error::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(l) = options.metrics_listener {
        tracing::info!(addr = ?l.local_addr().ok(), "serving Prometheus metrics");
        tokio::spawn(metrics::serve(
            l,
            metrics.clone(),
            service.clone(),
            shutdown.clone(),
        ));
    }
    let api = DcdApi::new(service.clone(), options.max_in_flight, metrics)
        .with_stream_limits(options.streams);
    let dcd = pb::dcd_server::DcdServer::new(api.clone())
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let auth = auth::BearerAuth::new(options.api_key.clone())?;
    if let Some(l) = options.http_listener {
        tracing::info!(addr = ?l.local_addr().ok(), "serving the review page");
        tokio::spawn(http::serve(
            l,
            api.clone(),
            auth.clone(),
            options.max_message_bytes,
            options.demo.clone(),
            shutdown.clone(),
        ));
    }
    let dcd = decode_errors::DecodeErrorsAreInvalid(
        tonic::service::interceptor::InterceptedService::new(dcd, auth.clone()),
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::dcd_server::DcdServer<DcdApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| crate::service::ServiceError::Internal {
            what: format!("reflection service: {e}"),
        })?;
    // Reflection describes the API: it answers to the same key.
    let reflection = tonic::service::interceptor::InterceptedService::new(reflection, auth);
    // h2's default 64 KiB windows cap a stream of 1.5 KB vectors at a few tens of thousands
    // per second on loopback; larger windows let a client stream run at the store's pace.
    let limits = options.connections;
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(WINDOW_BYTES))
        .initial_connection_window_size(Some(2 * WINDOW_BYTES))
        // Pings find peers that vanished without closing (their connection and its calls
        // would otherwise stay forever).
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive))
        // A flood of streams opened and reset at once (the "rapid reset" attack) is cut off.
        .http2_max_pending_accept_reset_streams(Some(32));
    if let Some((cert, key)) = &options.tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| crate::service::ServiceError::InvalidArgument {
                field: "tls",
                reason: format!("the certificate or key is not usable: {e}"),
            })?;
    }
    if let Some(t) = options.request_timeout {
        builder = builder.timeout(t);
    }
    tracing::info!(addr = ?addr, tls = options.tls.is_some(), auth = options.api_key.is_some(), "dcd serving gRPC");
    let incoming =
        connections::incoming(listener, limits.max_connections, limits.handshake_timeout);
    let mut stop = shutdown.clone();
    let server = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(dcd)
        .serve_with_incoming_shutdown(incoming, async move {
            stop.wait().await;
            tracing::info!("shutting down: finishing requests in flight");
        });
    tokio::pin!(server);
    let mut draining = shutdown.clone();
    let drain_deadline = async move {
        draining.wait().await;
        tokio::time::sleep(limits.drain_timeout).await;
    };
    let result = tokio::select! {
        r = &mut server => r,
        _ = drain_deadline => {
            tracing::warn!(secs = limits.drain_timeout.as_secs(), "calls still open at the drain deadline are cut off (--drain-timeout-s)");
            Ok(())
        }
    };
    let jobs = service.clone();
    let _ = tokio::task::spawn_blocking(move || jobs.jobs().shutdown()).await;
    result.map_err(|e| {
        crate::service::ServiceError::Internal {
            what: format!("the gRPC server stopped: {e}"),
        }
        .into()
    })
}
