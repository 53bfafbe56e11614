//! Every request the Qdrant backend builds and every answer it reads, checked field by field.

use std::collections::HashMap;

use qdrant_client::qdrant::condition::ConditionOneOf;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vectors_config::Config;
use qdrant_client::qdrant::{
    facet_value, payload_index_params, query, vector, vector_input, vector_output, vectors_output,
    with_payload_selector, with_vectors_selector, CollectionConfig, CollectionInfo,
    CollectionParams, Condition, Datatype, DenseVector, Distance, FacetHit, FacetValue, FieldType,
    Filter, PointId, Range, RetrievedPoint, ScoredPoint, Value, VectorOutput, VectorsConfig,
    VectorsOutput,
};

use super::answers::{self, QdrantError};
use super::requests::{self, Layout, HASH, KEY, LABEL, METADATA, META_POOL, META_ROWS, ROW};
use crate::error_kind::ErrorKind;
use crate::index::graph::HnswParams;
use crate::service::storage::{Lookup, Selection};
use crate::store::{NewItem, PoolSpec};
use crate::types::{Dtype, Matrix, Metric, Neighbor};

const URL: &str = "http://qdrant-0:6334";

fn spec() -> PoolSpec {
    PoolSpec {
        name: "photos".into(),
        dim: 3,
        dtype: Dtype::F16,
        backbone: Some("dino-vits16".into()),
        weights: Some("/models/dino.safetensors".into()),
        pooling: Some("cls".into()),
    }
}

fn layout() -> Layout {
    Layout {
        shards: 6,
        replicas: 2,
        hnsw: HnswParams {
            m: 24,
            ef_construction: 300,
            ..HnswParams::default()
        },
    }
}

const UID: [u8; 16] = [7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The field conditions of a list, by field name: (match, range); two conditions on one field
/// (a range and a match) merge.
fn fields(conditions: &[Condition]) -> HashMap<String, (Option<MatchValue>, Option<Range>)> {
    let mut out: HashMap<String, (Option<MatchValue>, Option<Range>)> = HashMap::new();
    for c in conditions {
        let Some(ConditionOneOf::Field(f)) = &c.condition_one_of else {
            panic!("not a field condition: {c:?}");
        };
        let entry = out.entry(f.key.clone()).or_default();
        if let Some(m) = f.r#match.as_ref().and_then(|m| m.match_value.clone()) {
            assert!(entry.0.replace(m).is_none(), "one match per field");
        }
        if let Some(r) = f.range {
            assert!(entry.1.replace(r).is_none(), "one range per field");
        }
    }
    out
}

fn committed_below(filter: &Filter, rows: u64) {
    let (_, range) = &fields(&filter.must)[ROW];
    assert_eq!(
        *range,
        Some(Range {
            lt: Some(rows as f64),
            ..Default::default()
        }),
        "every read sees only committed rows"
    );
}

fn text(v: &Value) -> &str {
    match &v.kind {
        Some(Kind::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match &v.kind {
        Some(Kind::IntegerValue(i)) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn keywords(m: &Option<MatchValue>) -> Vec<String> {
    match m {
        Some(MatchValue::Keywords(k)) => k.strings.clone(),
        other => panic!("not an exact keyword match: {other:?}"),
    }
}

#[test]
fn point_ids_are_uuid5_of_pool_and_key_and_stable() {
    let a = requests::point_id("photos", "a/1.jpg");
    assert_eq!(
        a,
        requests::point_id("photos", "a/1.jpg"),
        "re-sending writes the same point"
    );
    assert_eq!(a.get_version_num(), 5);
    assert_ne!(a, requests::point_id("photos", "a/2.jpg"));
    assert_ne!(a, requests::point_id("other", "a/1.jpg"));
    // The separator keeps (pool, key) pairs apart that concatenate alike.
    assert_ne!(requests::point_id("ab", "c"), requests::point_id("a", "bc"));
    // Pinned: ids written by one dcd version are found by the next.
    assert_eq!(
        requests::point_id("photos", "a/1.jpg").to_string(),
        uuid::Uuid::new_v5(
            &uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"dcd:points"),
            b"photos\0a/1.jpg"
        )
        .to_string()
    );
    assert_eq!(requests::collection_name("dcd_", "photos"), "dcd_photos");
}

#[test]
fn a_pool_is_a_euclid_collection_with_the_layout_and_its_record() {
    let c = requests::create_collection("dcd_photos", &spec(), &layout(), 1_700_000_000, UID);
    assert_eq!(c.collection_name, "dcd_photos");
    let Some(Config::Params(v)) = c.vectors_config.and_then(|v| v.config) else {
        panic!("one unnamed vector per point");
    };
    assert_eq!(v.size, 3);
    assert_eq!(v.distance, Distance::Euclid as i32);
    assert_eq!(v.datatype, Some(Datatype::Float16 as i32));
    let hnsw = c.hnsw_config.expect("dcd's HNSW settings");
    assert_eq!((hnsw.m, hnsw.ef_construct), (Some(24), Some(300)));
    assert_eq!((c.shard_number, c.replication_factor), (Some(6), Some(2)));
    assert_eq!(int(&c.metadata[META_ROWS]), 0);
    let Some(Kind::StructValue(record)) = &c.metadata[META_POOL].kind else {
        panic!("the record is a struct");
    };
    let f = &record.fields;
    assert_eq!(text(&f["name"]), "photos");
    assert_eq!(int(&f["dim"]), 3);
    assert_eq!(text(&f["dtype"]), "f16");
    assert_eq!(text(&f["backbone"]), "dino-vits16");
    assert_eq!(text(&f["weights"]), "/models/dino.safetensors");
    assert_eq!(text(&f["pooling"]), "cls");
    assert_eq!(int(&f["created_at"]), 1_700_000_000);
    assert_eq!(text(&f["uid"]), uuid::Uuid::from_bytes(UID).to_string());

    let raw = PoolSpec::raw("vectors", 128, Dtype::F32);
    let c = requests::create_collection("dcd_vectors", &raw, &layout(), 0, UID);
    let Some(Config::Params(v)) = c.vectors_config.and_then(|v| v.config) else {
        panic!("one unnamed vector per point");
    };
    assert_eq!(v.datatype, Some(Datatype::Float32 as i32));
    let Some(Kind::StructValue(record)) = &c.metadata[META_POOL].kind else {
        panic!("the record is a struct");
    };
    assert!(!record.fields.contains_key("backbone"), "absent, not empty");
}

#[test]
fn payload_indexes_cover_key_label_hash_and_row_ranges() {
    let indexes = requests::payload_indexes("dcd_photos");
    let by_field: HashMap<_, _> = indexes.iter().map(|i| (i.field_name.as_str(), i)).collect();
    assert_eq!(by_field.len(), 4);
    for field in [KEY, LABEL, HASH] {
        let i = by_field[field];
        assert_eq!(i.field_type, Some(FieldType::Keyword as i32), "{field}");
        assert_eq!(i.collection_name, "dcd_photos");
        assert_eq!(
            i.wait,
            Some(true),
            "made before the pool is answered as created"
        );
    }
    let row = by_field[ROW];
    assert_eq!(row.field_type, Some(FieldType::Integer as i32));
    let Some(payload_index_params::IndexParams::IntegerIndexParams(p)) = row
        .field_index_params
        .as_ref()
        .and_then(|p| p.index_params.clone())
    else {
        panic!("integer params");
    };
    assert_eq!((p.lookup, p.range), (Some(true), Some(true)));
}

#[test]
fn a_batch_becomes_points_with_rows_and_the_item_in_the_payload() {
    let vectors = Matrix::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let items = [
        NewItem {
            key: "a/1.jpg".into(),
            label: Some("golden retriever".into()),
            content_hash: Some("ab12".into()),
            metadata: Some("{\"w\": 3}".into()),
        },
        NewItem {
            key: "a/2.jpg".into(),
            ..NewItem::default()
        },
    ];
    let points = requests::points("photos", 40, &vectors, &items);
    assert_eq!(points.len(), 2);
    let first = &points[0];
    assert_eq!(
        first.id,
        Some(PointId {
            point_id_options: Some(PointIdOptions::Uuid(
                requests::point_id("photos", "a/1.jpg").to_string()
            ))
        })
    );
    assert_eq!(text(&first.payload[KEY]), "a/1.jpg");
    assert_eq!(int(&first.payload[ROW]), 40);
    assert_eq!(text(&first.payload[LABEL]), "golden retriever");
    assert_eq!(text(&first.payload[HASH]), "ab12");
    assert_eq!(
        text(&first.payload[METADATA]),
        "{\"w\": 3}",
        "the JSON text as sent"
    );
    let dense = |p: &qdrant_client::qdrant::PointStruct| match p
        .vectors
        .as_ref()
        .and_then(|v| v.vectors_options.clone())
    {
        Some(qdrant_client::qdrant::vectors::VectorsOptions::Vector(v)) => match v.vector {
            Some(vector::Vector::Dense(d)) => d.data,
            other => panic!("not dense: {other:?}"),
        },
        other => panic!("not one vector: {other:?}"),
    };
    assert_eq!(dense(first), vec![1.0, 2.0, 3.0]);
    let second = &points[1];
    assert_eq!(int(&second.payload[ROW]), 41);
    assert_eq!(dense(second), vec![4.0, 5.0, 6.0]);
    for absent in [LABEL, HASH, METADATA] {
        assert!(
            !second.payload.contains_key(absent),
            "{absent} absent, not empty"
        );
    }
}

#[test]
fn commits_move_the_row_count_and_opening_drops_what_is_past_it() {
    let u = requests::commit_rows("dcd_photos", 1234);
    assert_eq!(u.collection_name, "dcd_photos");
    assert_eq!(u.metadata.len(), 1, "merged: the record is left as it is");
    assert_eq!(int(&u.metadata[META_ROWS]), 1234);

    let d = requests::delete_uncommitted("dcd_photos", 1234);
    assert_eq!(d.wait, Some(true));
    let Some(PointsSelectorOneOf::Filter(f)) = d.points.and_then(|p| p.points_selector_one_of)
    else {
        panic!("deleted by filter");
    };
    let (_, range) = &fields(&f.must)[ROW];
    assert_eq!(
        *range,
        Some(Range {
            gte: Some(1234.0),
            ..Default::default()
        })
    );
}

#[test]
fn a_selection_becomes_keyword_filters_and_exclusions() {
    let f = requests::selection_filter(None, 500);
    committed_below(&f, 500);
    assert_eq!(f.must.len(), 1);
    assert!(f.must_not.is_empty() && f.should.is_empty());

    let s = Selection {
        labels: vec!["golden retriever".into(), "cat".into()],
        exclude_keys: vec!["a/1.jpg".into(), "b c.jpg".into()],
        excluded: 2,
        rows: None,
    };
    let f = requests::selection_filter(Some(&s), 500);
    committed_below(&f, 500);
    let must = fields(&f.must);
    // Exact keywords, even with a space (the client would make that a full-text match).
    assert_eq!(keywords(&must[LABEL].0), ["golden retriever", "cat"]);
    let must_not = fields(&f.must_not);
    assert_eq!(keywords(&must_not[KEY].0), ["a/1.jpg", "b c.jpg"]);

    let only_exclusions = Selection {
        labels: vec![],
        ..s
    };
    let f = requests::selection_filter(Some(&only_exclusions), 500);
    assert!(!fields(&f.must).contains_key(LABEL), "no labels: any label");
}

#[test]
fn a_lookup_becomes_a_query_for_rows_only() {
    let q = requests::nearest(
        "dcd_photos",
        &[0.5, 1.5, 2.5],
        &Lookup {
            k: 50,
            ef: Some(128),
            within: None,
        },
        false,
        900,
    );
    assert_eq!(q.collection_name, "dcd_photos");
    assert_eq!(q.limit, Some(50));
    let Some(query::Variant::Nearest(input)) = q.query.and_then(|q| q.variant) else {
        panic!("a nearest query");
    };
    let Some(vector_input::Variant::Dense(DenseVector { data })) = input.variant else {
        panic!("a dense vector");
    };
    assert_eq!(data, vec![0.5, 1.5, 2.5]);
    let params = q.params.expect("search params");
    assert_eq!((params.hnsw_ef, params.exact), (Some(128), Some(false)));
    committed_below(&q.filter.expect("a filter"), 900);
    let Some(with_payload_selector::SelectorOptions::Include(inc)) =
        q.with_payload.and_then(|w| w.selector_options)
    else {
        panic!("only some payload");
    };
    assert_eq!(
        inc.fields,
        [ROW],
        "a search needs rows; items are read for the kept ones"
    );
    assert_eq!(
        q.with_vectors.and_then(|w| w.selector_options),
        Some(with_vectors_selector::SelectorOptions::Enable(false))
    );

    let exact = requests::nearest("dcd_photos", &[0.0; 3], &Lookup::k(5), true, 900);
    let params = exact.params.expect("search params");
    assert_eq!(
        (params.hnsw_ef, params.exact),
        (None, Some(true)),
        "a full scan: no beam"
    );
}

#[test]
fn reads_by_row_key_hash_and_range() {
    let s = requests::points_of_rows("dcd_photos", &[3, 9, 4], true, 10);
    assert_eq!(s.limit, Some(3));
    let f = s.filter.expect("a filter");
    committed_below(&f, 10);
    assert_eq!(
        fields(&f.must)[ROW].0,
        Some(MatchValue::Integers(
            qdrant_client::qdrant::RepeatedIntegers {
                integers: vec![3, 9, 4]
            }
        ))
    );
    assert_eq!(
        s.with_vectors.and_then(|w| w.selector_options),
        Some(with_vectors_selector::SelectorOptions::Enable(true))
    );

    let s = requests::points_with("dcd_photos", HASH, &["ab 12".into()], 10);
    let f = s.filter.expect("a filter");
    committed_below(&f, 10);
    assert_eq!(keywords(&fields(&f.must)[HASH].0), ["ab 12"]);

    let first = requests::labels_page("dcd_photos", 100, 200, 64, None);
    assert_eq!(first.offset, None);
    assert_eq!(first.limit, Some(64));
    assert_eq!(
        fields(&first.filter.expect("a filter").must)[ROW].1,
        Some(Range {
            gte: Some(100.0),
            lt: Some(200.0),
            ..Default::default()
        })
    );
    let next = PointId::from(requests::point_id("photos", "z"));
    let page = requests::labels_page("dcd_photos", 100, 200, 64, Some(next.clone()));
    assert_eq!(
        page.offset,
        Some(next),
        "the next page starts where the last ended"
    );

    let facet = requests::label_counts("dcd_photos", 10, 10_000);
    assert_eq!(
        (facet.key.as_str(), facet.exact, facet.limit),
        (LABEL, Some(true), Some(10_000))
    );
    committed_below(&facet.filter.expect("a filter"), 10);
}

/// The collection info a server answers for a collection made by `create_collection`.
fn info_of(create: &qdrant_client::qdrant::CreateCollection) -> CollectionInfo {
    CollectionInfo {
        config: Some(CollectionConfig {
            params: Some(CollectionParams {
                shard_number: create.shard_number.unwrap_or(1),
                vectors_config: create.vectors_config.clone(),
                replication_factor: create.replication_factor,
                ..Default::default()
            }),
            metadata: create.metadata.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_collection_reads_back_as_the_pool_it_was_made_for() {
    let create = requests::create_collection("dcd_photos", &spec(), &layout(), 1_700_000_000, UID);
    let mut info = info_of(&create);
    let record = answers::pool_record(URL, "dcd_photos", &info).expect("a dcd pool");
    assert_eq!(record.name, "photos");
    assert_eq!(
        (record.dim, record.dtype, record.metric),
        (3, Dtype::F16, Metric::L2)
    );
    assert_eq!(record.backbone.as_deref(), Some("dino-vits16"));
    assert_eq!(record.weights.as_deref(), Some("/models/dino.safetensors"));
    assert_eq!(record.pooling.as_deref(), Some("cls"));
    assert_eq!((record.created_at, record.rows), (1_700_000_000, 0));
    assert_eq!(record.uid, Some(UID));
    assert!(record.id >= 0);

    // Commits merge the count into the metadata.
    let commit = requests::commit_rows("dcd_photos", 77);
    info.config
        .as_mut()
        .unwrap()
        .metadata
        .extend(commit.metadata);
    assert_eq!(
        answers::pool_record(URL, "dcd_photos", &info).unwrap().rows,
        77
    );

    // Another pool made under the same name later is another generation.
    let mut again = UID;
    again[0] = 8;
    let other = requests::create_collection("dcd_photos", &spec(), &layout(), 1_700_000_000, again);
    assert_ne!(
        answers::pool_record(URL, "dcd_photos", &info_of(&other))
            .unwrap()
            .id,
        record.id
    );
}

#[test]
fn collections_dcd_did_not_make_or_that_changed_are_refused_by_name() {
    let create = requests::create_collection("dcd_photos", &spec(), &layout(), 0, UID);
    let mut foreign = info_of(&create);
    foreign.config.as_mut().unwrap().metadata.clear();
    let e = answers::pool_record(URL, "dcd_photos", &foreign).unwrap_err();
    assert!(matches!(e, QdrantError::NotOurs { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
    assert!(
        e.to_string().contains(URL) && e.to_string().contains("--qdrant-prefix"),
        "{e}"
    );

    for (size, distance, what) in [
        (4, Distance::Euclid, "4-d"),
        (3, Distance::Cosine, "Cosine"),
    ] {
        let mut changed = info_of(&create);
        let params = changed.config.as_mut().unwrap().params.as_mut().unwrap();
        let Some(Config::Params(v)) = params
            .vectors_config
            .as_mut()
            .and_then(|v| v.config.as_mut())
        else {
            unreachable!()
        };
        v.size = size;
        v.distance = distance as i32;
        let e = answers::pool_record(URL, "dcd_photos", &changed).unwrap_err();
        assert!(matches!(e, QdrantError::Mismatch { .. }), "{e}");
        assert!(
            e.to_string().contains(what) && e.to_string().contains("3-d f16"),
            "{e}"
        );
    }

    let mut named = info_of(&create);
    named
        .config
        .as_mut()
        .unwrap()
        .params
        .as_mut()
        .unwrap()
        .vectors_config = Some(VectorsConfig {
        config: Some(Config::ParamsMap(Default::default())),
    });
    assert!(matches!(
        answers::pool_record(URL, "dcd_photos", &named),
        Err(QdrantError::Mismatch { .. })
    ));

    let mut uncounted = info_of(&create);
    uncounted
        .config
        .as_mut()
        .unwrap()
        .metadata
        .remove(META_ROWS);
    let e = answers::pool_record(URL, "dcd_photos", &uncounted).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DataLoss, "{e}");
}

fn payload(row: Option<i64>, key: Option<&str>) -> HashMap<String, Value> {
    let mut p = HashMap::new();
    if let Some(r) = row {
        p.insert(
            ROW.to_owned(),
            Value {
                kind: Some(Kind::IntegerValue(r)),
            },
        );
    }
    if let Some(k) = key {
        p.insert(
            KEY.to_owned(),
            Value {
                kind: Some(Kind::StringValue(k.into())),
            },
        );
    }
    p
}

#[test]
fn scores_are_roots_of_squared_l2_and_come_back_squared_in_dcd_order() {
    let scored = |row: i64, score: f32| ScoredPoint {
        payload: payload(Some(row), None),
        score,
        ..Default::default()
    };
    let got = answers::neighbors(URL, &[scored(9, 2.0), scored(4, 0.5), scored(2, 2.0)]).unwrap();
    assert_eq!(
        got,
        vec![
            Neighbor {
                id: 4,
                distance: 0.25
            },
            Neighbor {
                id: 2,
                distance: 4.0
            },
            Neighbor {
                id: 9,
                distance: 4.0
            },
        ],
        "squared, nearest first, ties by row"
    );
    let rowless = ScoredPoint {
        score: 1.0,
        ..Default::default()
    };
    let e = answers::neighbors(URL, &[rowless]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DataLoss);
    assert!(e.to_string().contains("\"row\""), "{e}");
    let negative = scored(-1, 1.0);
    assert!(
        answers::neighbors(URL, &[negative]).is_err(),
        "rows are never negative"
    );
}

#[test]
fn retrieved_points_read_back_as_items_and_vectors() {
    let mut p = payload(Some(12), Some("a/1.jpg"));
    p.insert(
        LABEL.into(),
        Value {
            kind: Some(Kind::StringValue("cat".into())),
        },
    );
    p.insert(
        METADATA.into(),
        Value {
            kind: Some(Kind::StringValue("{}".into())),
        },
    );
    let dense = |data: Vec<f32>| VectorsOutput {
        vectors_options: Some(vectors_output::VectorsOptions::Vector(VectorOutput {
            vector: Some(vector_output::Vector::Dense(DenseVector { data })),
            ..Default::default()
        })),
    };
    let point = RetrievedPoint {
        payload: p,
        vectors: Some(dense(vec![1.0, 2.0, 3.0])),
        ..Default::default()
    };
    let item = answers::item(URL, &point).unwrap();
    assert_eq!((item.row, item.key.as_str()), (12, "a/1.jpg"));
    assert_eq!(item.label.as_deref(), Some("cat"));
    assert_eq!(item.content_hash, None);
    assert_eq!(item.metadata.as_deref(), Some("{}"));
    assert_eq!(
        answers::vector(URL, &point, 3).unwrap(),
        (12, vec![1.0, 2.0, 3.0])
    );

    let e = answers::vector(URL, &point, 4).unwrap_err();
    assert!(e.to_string().contains("3 values, not 4"), "{e}");
    let bare = RetrievedPoint {
        payload: payload(Some(12), Some("a/1.jpg")),
        ..Default::default()
    };
    assert!(
        answers::vector(URL, &bare, 3).is_err(),
        "asked with vectors, answered without"
    );
    let keyless = RetrievedPoint {
        payload: payload(Some(12), None),
        ..Default::default()
    };
    assert_eq!(
        answers::item(URL, &keyless).unwrap_err().kind(),
        ErrorKind::DataLoss
    );
}

#[test]
fn label_facets_read_back_as_counts() {
    let hit = |v: facet_value::Variant, count| FacetHit {
        value: Some(FacetValue { variant: Some(v) }),
        count,
    };
    let got = answers::label_counts(&[
        hit(facet_value::Variant::StringValue("cat".into()), 7),
        hit(facet_value::Variant::StringValue("dog".into()), 3),
        hit(facet_value::Variant::IntegerValue(1), 1),
    ]);
    assert_eq!(
        got,
        [("cat".to_owned(), 7), ("dog".to_owned(), 3)],
        "labels are keywords"
    );
}

#[test]
fn failures_become_one_kind_each_with_the_url() {
    let cases = [
        (
            tonic::Status::unavailable("transport error"),
            ErrorKind::Unavailable,
            "cannot be reached",
        ),
        (
            tonic::Status::unknown(
                "error trying to connect: tcp connect error: Connection refused",
            ),
            ErrorKind::Unavailable,
            "cannot be reached",
        ),
        (
            tonic::Status::deadline_exceeded("Deadline expired"),
            ErrorKind::Unavailable,
            "in time",
        ),
        (
            tonic::Status::cancelled("Timeout expired"),
            ErrorKind::Unavailable,
            "in time",
        ),
        (
            tonic::Status::not_found("Collection `dcd_x` doesn't exist!"),
            ErrorKind::NotFound,
            "refused",
        ),
        (
            tonic::Status::already_exists("Collection `dcd_x` already exists!"),
            ErrorKind::AlreadyExists,
            "refused",
        ),
        (
            tonic::Status::invalid_argument("Wrong input: shard_number"),
            ErrorKind::InvalidArgument,
            "refused",
        ),
        (
            tonic::Status::unauthenticated("Invalid api-key"),
            ErrorKind::PermissionDenied,
            "refused",
        ),
        (
            tonic::Status::resource_exhausted("Rate limiting exceeded"),
            ErrorKind::ResourceExhausted,
            "refused",
        ),
        (
            tonic::Status::internal("Service internal error"),
            ErrorKind::Internal,
            "refused",
        ),
    ];
    for (status, kind, says) in cases {
        let e = QdrantError::from_status(URL, "creating a collection", &status);
        assert_eq!(e.kind(), kind, "{status:?} -> {e}");
        let message = e.to_string();
        assert!(message.contains(URL) && message.contains(says), "{message}");
    }
    let e = QdrantError::from_client(
        URL,
        "listing collections",
        qdrant_client::QdrantError::from(tonic::Status::unavailable("dns error")),
    );
    assert!(matches!(e, QdrantError::Unreachable { .. }), "{e}");
    let e = QdrantError::from_client(
        URL,
        "listing collections",
        qdrant_client::QdrantError::ConversionError("sparse into dense".into()),
    );
    assert_eq!(
        e.kind(),
        ErrorKind::Internal,
        "a request dcd built wrong: {e}"
    );
}
