//! One Ingest stream of large images against the stream's byte budgets (issue 20, B8), in a
//! test binary of its own: it measures the process's peak memory, which tests running beside
//! it would inflate.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::SeedableRng;
use tokio_stream::StreamExt;

/// A noisy PNG of about `side` x `side` x 3 bytes (noise does not compress).
fn noise_png(side: u32, seed: u64) -> Vec<u8> {
    use rand::Rng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let img = image::RgbImage::from_fn(side, side, |_, _| image::Rgb(rng.gen()));
    common::png(&img)
}

/// B8: one Ingest stream of 40 x 60 MiB images buffered them all (channel bounds counted
/// items, not bytes) and aborted a 2 GiB-capped server. Now a stream holds at most its byte
/// budget uncommitted: 40 images of ~6 MiB through budgets of 16 and 24 MiB are all stored,
/// and the server's peak memory grows by a fraction of their 240 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_large_images_is_held_to_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        max_message_bytes: 8 << 20,
        streams: dcd::limits::StreamLimits {
            max_stream_bytes: 16 << 20,
            max_total_bytes: 24 << 20,
            ..Default::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(dir.path(), dir.path(), options).await;
    let mut client = server.client().await;
    common::image_pool(&mut client, "img").await;
    let big = noise_png(1450, 7);
    assert!(big.len() > 6 << 20, "{} bytes", big.len());
    let before = common::proc_kib(None, "VmHWM");
    let items = tokio_stream::iter(0..40u32).map(move |i| {
        let mut bytes = big.clone();
        // A distinct image each (not de-duplicated): a different comment chunk at the end.
        bytes.extend_from_slice(&i.to_be_bytes());
        pb::IngestItem {
            pool: "img".into(),
            key: format!("big{i}"),
            content: Some(pb::ingest_item::Content::Image(bytes)),
            ..Default::default()
        }
    });
    let summary = client.ingest(items).await.unwrap().into_inner();
    let grew_mib = (common::proc_kib(None, "VmHWM") - before) / 1024;
    println!(
        "peak RSS grew by {grew_mib} MiB for 40 x {} MiB streamed",
        6
    );
    assert_eq!(summary.stored + summary.duplicates, 40, "{summary:?}");
    // Unbounded (the same test with budgets of 1 and 2 GiB) it grew by 268 MiB.
    assert!(grew_mib < 200, "peak RSS grew by {grew_mib} MiB");
    server.stop().await.unwrap();
}
