//! `dcd bench service`: starts the real server on loopback over a work directory and runs
//! `api::bench` against it.

use crate::api::bench::{self, BenchConfig};
use crate::api::{ServerOptions, Shutdown};
use crate::config::{BenchServiceArgs, ModelRuntimeArgs};
use crate::error::{Error, Result};
use crate::service::{AllowedRoots, Service};

pub(super) fn run(args: BenchServiceArgs) -> Result<()> {
    let runtime_args = ModelRuntimeArgs {
        device: Default::default(),
        precision: Default::default(),
        exact_device: None,
        exact_copy: Default::default(),
        exact_plans: Default::default(),
        batch: 16,
        images: Default::default(),
        limits: Default::default(),
    };
    let settings = crate::app::settings(AllowedRoots::only(&[])?, &runtime_args, Some(&args.index));
    let service = Service::open(&args.out, settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let cfg = BenchConfig {
        n: args.n,
        dim: args.dim,
        errors: args.errors,
        k: args.k,
        repeat: args.repeat.max(1),
        clients: args.clients,
        seconds: args.seconds,
        reference: args.reference,
    };
    let report = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::Network(format!("cannot listen on loopback: {e}")))?;
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| Error::Network(format!("cannot listen on loopback: {e}")))?
        );
        let (stop, rx) = tokio::sync::watch::channel(false);
        let options = ServerOptions {
            max_in_flight: args.max_in_flight,
            max_message_bytes: 256 << 20,
            ..ServerOptions::default()
        };
        let server = tokio::spawn(crate::app::run(
            listener,
            service.clone(),
            options,
            Shutdown(rx),
        ));
        let report = bench::run(service.clone(), url, cfg).await;
        let _ = stop.send(true);
        let _ = server.await;
        report
    })?;
    if args.json {
        crate::cli::print_json(&report);
        return Ok(());
    }
    println!("pool                 {} x {}-d", report.n, report.dim);
    match report.ingest_vectors_per_s {
        Some(v) => println!("ingest (gRPC stream) {v:.0} vectors/s, durable"),
        None => println!(
            "ingest               reused the pool in {}",
            args.out.display()
        ),
    }
    println!("index catch-up       {:.1} s", report.index_seconds);
    let (g, l) = (&report.debug_set_grpc, &report.debug_set_in_process);
    println!(
        "BuildDebugSet        {} errors x k={} -> {} items: gRPC p50 {:.2} ms p99 {:.2} ms; in-process p50 {:.2} ms p99 {:.2} ms; in-process/gRPC {:.3}",
        args.errors, args.k, report.set_items, g.p50_ms, g.p99_ms, l.p50_ms, l.p99_ms, report.in_process_over_grpc_p50
    );
    let a = &report.all_rules;
    println!(
        "  all rules          -> {} items: gRPC p50 {:.2} ms p99 {:.2} ms",
        report.all_rules_items, a.p50_ms, a.p99_ms
    );
    if let Some(r) = &report.all_rules_reference {
        println!(
            "  + reference        {} items: gRPC p50 {:.2} ms p99 {:.2} ms",
            report.reference_items, r.p50_ms, r.p99_ms
        );
    }
    if args.clients > 0 {
        let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
        let (a, f) = (&report.rss_anon_mb, &report.rss_file_mb);
        let (mid, end) = (a.len() / 6, a.len().saturating_sub(1));
        println!(
            "load                 {} clients x {:.0} s: {:.0} calls/s, codes {:?}, p50 {:.1} ms p99 {:.1} ms",
            args.clients,
            args.seconds,
            report.load_calls_per_s,
            report.load_codes,
            report.load_latency.p50_ms,
            report.load_latency.p99_ms,
        );
        println!(
            "memory (MB)          anonymous {:.0} -> {:.0} (at {mid} s) -> {:.0} (end); file-backed {:.0} -> {:.0} -> {:.0}",
            at(a, 0),
            at(a, mid),
            at(a, end),
            at(f, 0),
            at(f, mid),
            at(f, end)
        );
    }
    Ok(())
}
