//! The request path without a server, for fuzzers: decode a message as the named method's
//! request and convert it as its handler does. Every input must give Ok or a Status, never a
//! panic; `tests/fuzz_inputs.rs` and the cargo-fuzz targets in `tests/fuzz` drive it.

use prost::Message;
use tonic::Status;

use super::{convert, pb};

/// The methods [`decode_request`] knows, as named in `dcd.v1.Dcd`.
pub const METHODS: [&str; 10] = [
    "CreatePool",
    "GetPool",
    "Ingest",
    "StartIngestJob",
    "Embed",
    "Search",
    "BuildDebugSet",
    "EvaluateDebugSet",
    "CancelJob",
    "ReviewDebugSet",
];

fn decoded<M: Message + Default>(body: &[u8]) -> Result<M, Status> {
    M::decode(body).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Decodes `body` as `method`'s request and converts it as the handler would.
pub fn decode_request(method: &str, body: &[u8]) -> Result<(), Status> {
    match method {
        "CreatePool" => {
            let r: pb::CreatePoolRequest = decoded(body)?;
            convert::dtype(r.dtype).map(drop)
        }
        "GetPool" => decoded::<pb::GetPoolRequest>(body).map(drop),
        "Ingest" => convert::ingest_item(decoded(body)?).map(drop),
        "StartIngestJob" => decoded::<pb::StartIngestJobRequest>(body).map(drop),
        "Embed" => decoded::<pb::EmbedRequest>(body).map(drop),
        "Search" => {
            let r: pb::SearchRequest = decoded(body)?;
            for (i, q) in r.queries.into_iter().enumerate() {
                convert::query(i, q)?;
            }
            Ok(())
        }
        "BuildDebugSet" => convert::debug_set_request(&decoded(body)?).map(drop),
        "EvaluateDebugSet" => super::evaluation::evaluation_request(&decoded(body)?).map(drop),
        "CancelJob" => decoded::<pb::CancelJobRequest>(body).map(drop),
        "ReviewDebugSet" => super::saved_sets::review_request(decoded(body)?).map(drop),
        other => Err(Status::unimplemented(format!("no method {other}"))),
    }
}

/// A valid request of each method, encoded: the seeds mutation starts from.
pub fn seed_requests() -> Vec<(&'static str, Vec<u8>)> {
    let vector = |values: Vec<f32>| pb::Query {
        source: Some(pb::query::Source::Vector(pb::Vector { values })),
    };
    vec![
        (
            "CreatePool",
            pb::CreatePoolRequest {
                name: "p".into(),
                dim: 4,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "GetPool",
            pb::GetPoolRequest { name: "p".into() }.encode_to_vec(),
        ),
        (
            "Ingest",
            pb::IngestItem {
                pool: "p".into(),
                key: "k".into(),
                label: "cat".into(),
                metadata_json: "{\"a\": 1}".into(),
                content: Some(pb::ingest_item::Content::Vector(pb::Vector {
                    values: vec![1.0, 2.0, 3.0, 4.0],
                })),
                content_sha256: "ab".repeat(32),
                itemize: true,
            }
            .encode_to_vec(),
        ),
        (
            "StartIngestJob",
            pb::StartIngestJobRequest {
                pool: "p".into(),
                source: Some(pb::start_ingest_job_request::Source::Folder("/data".into())),
            }
            .encode_to_vec(),
        ),
        (
            "Embed",
            pb::EmbedRequest {
                model: Some(pb::embed_request::Model::Pool("p".into())),
                images: vec![vec![0x89, b'P', b'N', b'G']],
            }
            .encode_to_vec(),
        ),
        (
            "Search",
            pb::SearchRequest {
                pool: "p".into(),
                queries: vec![
                    vector(vec![1.0, 0.0, 0.0, 0.0]),
                    pb::Query {
                        source: Some(pb::query::Source::ItemKey("k".into())),
                    },
                ],
                k: 5,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "BuildDebugSet",
            pb::BuildDebugSetRequest {
                pool: "p".into(),
                errors: vec![pb::ErrorSample {
                    source: Some(pb::error_sample::Source::Vector(pb::Vector {
                        values: vec![0.5; 4],
                    })),
                    label: "cat".into(),
                    weight: 2.0,
                }],
                k: 10,
                budget: Some(20),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "EvaluateDebugSet",
            pb::EvaluateDebugSetRequest {
                set: Some(pb::BuildDebugSetRequest {
                    pool: "p".into(),
                    errors: vec![pb::ErrorSample {
                        source: Some(pb::error_sample::Source::Vector(pb::Vector {
                            values: vec![0.5; 4],
                        })),
                        label: "cat".into(),
                        weight: 1.0,
                    }],
                    k: 10,
                    ..Default::default()
                }),
                ks: vec![5, 10],
                budgets: vec![20],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "CancelJob",
            pb::CancelJobRequest { id: "job-1".into() }.encode_to_vec(),
        ),
        (
            "ReviewDebugSet",
            pb::ReviewDebugSetRequest {
                name: "round-1".into(),
                keys: vec!["k".into()],
                mode: Some(0),
                verdict: pb::Verdict::Relabel as i32,
                label: "cat".into(),
                reviewer: "ann".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ]
}
