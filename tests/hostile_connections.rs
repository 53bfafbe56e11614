//! The server's connections under abuse (issue 20): raw sockets that never speak, bytes that
//! are not protobuf, strings that are not UTF-8, and a shutdown while a client stream idles.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// Sends and receives raw message bytes: what a broken or hostile client puts on the wire.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let out = src.chunk().to_vec();
        src.advance(out.len());
        Ok(Some(out))
    }
}

async fn raw_unary(server: &TestServer, method: &str, body: Vec<u8>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(method).unwrap();
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .unwrap_err()
}

/// Malformed protobuf and invalid UTF-8 were answered INTERNAL (a server fault, retried by
/// clients, paging people); they are the caller's mistake: INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), dir.path(), ServerOptions::default()).await;
    // Field 1 (pool, a string) holding bytes that are not UTF-8.
    let not_utf8 = vec![0x0A, 0x02, 0xFF, 0xFE];
    // A varint that never ends.
    let garbage = vec![
        0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    for (method, body) in [
        ("/dcd.v1.Dcd/Search", not_utf8.clone()),
        ("/dcd.v1.Dcd/Search", garbage.clone()),
        ("/dcd.v1.Dcd/GetPool", not_utf8.clone()),
        ("/dcd.v1.Dcd/BuildDebugSet", garbage.clone()),
        ("/dcd.v1.Dcd/StreamDebugSet", garbage.clone()),
    ] {
        let status = raw_unary(&server, method, body).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status}");
        assert!(status.message().contains("decode"), "{status}");
    }
    // In a client stream: the item that does not decode ends the stream as the caller's fault.
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/dcd.v1.Dcd/Ingest");
    let status = grpc
        .client_streaming(
            tonic::Request::new(tokio_stream::iter(vec![garbage])),
            path,
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    // The server is fine.
    let mut client = server.client().await;
    client.list_pools(pb::ListPoolsRequest {}).await.unwrap();
    server.stop().await.unwrap();
}

/// 1,100 sockets that connected and said nothing made a server with 1,024 descriptors
/// unreachable. Connections are capped (the rest wait in the backlog) and each has to send
/// its preface within the handshake timeout, so silent ones give their place up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_cannot_lock_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        connections: dcd::limits::ConnectionLimits {
            max_connections: 4,
            handshake_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(dir.path(), dir.path(), options).await;
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let started = Instant::now();
    let mut client = server.client().await;
    let mut call = pb::ListPoolsRequest {};
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match client.list_pools(std::mem::take(&mut call)).await {
                Ok(r) => return r,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("a real client gets through once the silent sockets are closed");
    assert!(answered.into_inner().pools.is_empty());
    println!(
        "answered after {:?} behind 12 silent sockets",
        started.elapsed()
    );
    // The silent sockets were closed by the server.
    for mut s in silent {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("closed, not left hanging")
            .unwrap_or(0);
        assert!(n < buf.len());
    }
    server.stop().await.unwrap();
}

/// SIGTERM waited forever for a client stream that sent nothing more. Shutdown now waits
/// for the calls in flight at most the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        connections: dcd::limits::ConnectionLimits {
            drain_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(dir.path(), dir.path(), options).await;
    let mut client = server.client().await;
    common::raw_pool(&mut client, "v", 2).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::IngestItem {
        pool: "v".into(),
        key: "a".into(),
        content: Some(pb::ingest_item::Content::Vector(pb::Vector {
            values: vec![1.0, 2.0],
        })),
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = tokio::spawn(async move {
        client
            .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), server.stop())
        .await
        .expect("shutdown ends at the drain deadline, not when the client stream does")
        .unwrap();
    println!("stopped in {:?} with a stream open", started.elapsed());
    drop(tx);
    let _ = stream.await;
}
