//! What a worker that embeds images itself (the Ray ingestion) needs from `Ingest`: every
//! item's outcome in the answer (`itemize`), and vectors de-duplicated by the SHA-256 of the
//! image they were made from (`content_sha256`), through the real gRPC server.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use sha2::{Digest, Sha256};

const DIM: usize = 8;

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn item(key: &str, seed: f32, content_sha256: &str) -> pb::IngestItem {
    pb::IngestItem {
        key: key.into(),
        content_sha256: content_sha256.into(),
        content: Some(pb::ingest_item::Content::Vector(pb::Vector {
            values: (0..DIM).map(|i| seed + i as f32).collect(),
        })),
        ..Default::default()
    }
}

fn outcomes(s: &pb::IngestSummary) -> Vec<(String, pb::IngestOutcome, String)> {
    s.outcomes
        .iter()
        .map(|o| (o.key.clone(), o.outcome(), o.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_gets_its_outcome_and_vectors_dedupe_by_their_images_hash() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        &dir.path().join("data"),
        dir.path(),
        ServerOptions::default(),
    )
    .await;
    let mut client = server.client().await;
    client
        .create_pool(pb::CreatePoolRequest {
            name: "p".into(),
            dim: DIM as u32,
            ..Default::default()
        })
        .await
        .unwrap();
    let (cat, dog) = (sha(b"cat.jpg bytes"), sha(b"dog.jpg bytes"));
    let stream = |items: Vec<pb::IngestItem>| {
        let mut items = items;
        items[0].pool = "p".into();
        items[0].itemize = true;
        tokio_stream::iter(items)
    };
    let batch = || {
        vec![
            item("a", 0.0, &cat),
            // Another key for the same image: a duplicate of a, as an image sent whole.
            item("b", 0.5, &cat.to_uppercase()),
            item("c", 1.0, "not a hash"),
            item("a", 0.0, &cat),
            item("d", 2.0, ""),
            item("e", 3.0, &dog),
        ]
    };
    let first = client.ingest(stream(batch())).await.unwrap().into_inner();
    use pb::IngestOutcome::{Duplicate, Failed, Present, Stored};
    let got = outcomes(&first);
    let kinds: Vec<_> = got.iter().map(|(k, o, _)| (k.as_str(), *o)).collect();
    assert_eq!(
        kinds,
        [
            ("a", Stored),
            ("b", Duplicate),
            ("c", Failed),
            ("a", Present),
            ("d", Stored),
            ("e", Stored)
        ]
    );
    assert_eq!(got[1].2, "a", "a duplicate names its original");
    assert!(got[2].2.contains("64 hex digits"), "{}", got[2].2);
    assert_eq!(
        (first.stored, first.duplicates, first.failed, first.present),
        (3, 1, 1, 1)
    );
    // A task run again after its worker died: nothing stored twice, every outcome said.
    let again = client.ingest(stream(batch())).await.unwrap().into_inner();
    let kinds: Vec<_> = outcomes(&again).into_iter().map(|(_, o, _)| o).collect();
    assert_eq!(
        kinds,
        [Present, Duplicate, Failed, Present, Present, Present]
    );
    assert_eq!(again.pool_items, 3);

    // An image whose named hash is not its bytes' is refused alone.
    let mut wrong = pb::IngestItem {
        key: "img".into(),
        content_sha256: dog.clone(),
        content: Some(pb::ingest_item::Content::Image(b"cat.jpg bytes".to_vec())),
        ..Default::default()
    };
    wrong.pool = "p".into();
    wrong.itemize = true;
    let s = client
        .ingest(tokio_stream::iter(vec![wrong, item("f", 4.0, "")]))
        .await
        .unwrap()
        .into_inner();
    let got = outcomes(&s);
    assert_eq!(got[0].1, Failed);
    assert!(
        got[0].2.contains("is not the SHA-256 of the image's bytes"),
        "{}",
        got[0].2
    );
    assert_eq!(got[1].1, Stored);

    // Without itemize the answer holds counts only, as before.
    let mut plain = item("g", 5.0, "");
    plain.pool = "p".into();
    let s = client
        .ingest(tokio_stream::iter(vec![plain]))
        .await
        .unwrap()
        .into_inner();
    assert!(s.outcomes.is_empty());
    assert_eq!(s.stored, 1);
}
