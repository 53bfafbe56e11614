//! The composition root: builds the service from the settings and runs the server until
//! Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, ServerOptions, Shutdown};
use crate::config::{IndexArgs, ModelRuntimeArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::features::pipeline::PipelineConfig;
use crate::index::graph::HnswParams;
use crate::service::{AllowedRoots, ModelSettings, Service, ServiceSettings};

/// Service settings from the command line.
pub fn settings(
    roots: AllowedRoots,
    runtime: &ModelRuntimeArgs,
    index: Option<&IndexArgs>,
) -> ServiceSettings {
    let mut params = HnswParams::default();
    if let Some(i) = index {
        params.m = i.m;
        params.ef_construction = i.ef_construction;
    }
    ServiceSettings {
        roots,
        index: params,
        exact_device: runtime.exact_device.unwrap_or(runtime.device),
        exact_copy: runtime.exact_copy,
        exact_plans: runtime.exact_plans,
        limits: runtime.limits.limits(),
        background_index: false,
        mmap_index: index.is_some_and(|i| i.mmap_index),
        models: ModelSettings {
            device: runtime.device,
            precision: runtime.precision,
            pipeline: PipelineConfig {
                max_batch: runtime.batch.max(1),
                queue: 4 * runtime.batch.max(1),
                limits: runtime.images.limits(),
                ..PipelineConfig::default()
            },
        },
    }
}

/// `dcd serve`: opens the data dir, resumes unfinished jobs, serves until a signal.
pub fn serve(data_dir: &std::path::Path, args: ServeArgs) -> Result<()> {
    // Refused before the data dir is opened: an empty key would let anyone in.
    api::auth::BearerAuth::new(args.api_key.clone())?;
    let roots = AllowedRoots::only(&args.allow_root)?;
    let mut settings = settings(roots, &args.runtime, Some(&args.index));
    // A build of minutes must not hold up the searches that need it: they scan meanwhile.
    settings.background_index = true;
    let service = Service::open(data_dir, settings)?;
    let demo = api::http::demo::Demo::new(match &args.demo_data {
        Some(dir) => Some(crate::service::demo::DemoData::at(dir)?),
        None => None,
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(Error::io(format!("cannot read {}", p.display())))
            };
            Some((read(c)?, read(k)?))
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dcd-rpc")
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| Error::Network(format!("cannot listen on {}: {e}", args.addr)))?;
        let metrics_listener =
            match args.metrics_addr {
                Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                    Error::Network(format!("cannot listen on {a} for metrics: {e}"))
                })?),
                None => None,
            };
        let http_listener = match args.http_addr {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
                Error::Network(format!("cannot listen on {a} for the review page: {e}"))
            })?),
            None => None,
        };
        let local = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("cannot read the bound address: {e}")))?;
        // One line on stdout that scripts (and the Python tests) read to find the port.
        println!("dcd listening on {local}");
        if let Some(m) = metrics_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            println!("dcd metrics on http://{m}/metrics");
        }
        if let Some(h) = http_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            println!("dcd review page on http://{h}/");
            if args.demo {
                println!(
                    "dcd demo: building it in the background (about a minute), then http://{h}/#/set/{}",
                    crate::service::demo::DEMO_SET
                );
            }
        }
        if args.demo {
            demo.start(service.clone());
        }
        let resumed = {
            let s = service.clone();
            tokio::task::spawn_blocking(move || crate::service::jobs::resume_unfinished(&s))
                .await
                .map_err(|e| Error::Internal(format!("resuming jobs: {e}")))??
        };
        if !resumed.is_empty() {
            tracing::info!(jobs = resumed.len(), "resumed unfinished ingestion jobs");
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx.send(true);
        });
        let options = ServerOptions {
            max_in_flight: args.max_in_flight,
            max_message_bytes: args.max_message_mib.max(1) << 20,
            api_key: args.api_key.clone(),
            tls,
            request_timeout: (args.request_timeout_s > 0)
                .then(|| Duration::from_secs(args.request_timeout_s)),
            metrics_listener,
            http_listener,
            demo,
            streams: api::StreamLimits {
                max_streams: args.max_ingest_streams.max(1),
                idle_timeout: Duration::from_secs(args.stream_idle_timeout_s),
                max_stream_bytes: args.max_stream_mib.max(1) << 20,
                max_total_bytes: args.max_ingest_mib.max(1) << 20,
            },
            connections: api::ConnectionLimits {
                max_connections: args.max_connections.max(1),
                handshake_timeout: Duration::from_secs(args.handshake_timeout_s),
                keepalive: Duration::from_secs(args.keepalive_s),
                drain_timeout: Duration::from_secs(args.drain_timeout_s),
            },
        };
        run(listener, service, options, Shutdown(rx)).await
    });
    // Calls cut off at the drain deadline may still be computing on blocking threads: give
    // them a moment, then exit without them (the store is safe at any point of a call).
    runtime.shutdown_timeout(Duration::from_secs(2));
    served
}

/// Serves `service` on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    options: ServerOptions,
    shutdown: Shutdown,
) -> Result<()> {
    api::serve(listener, service, options, shutdown).await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
