//! Requests to Qdrant made from dcd's pools, items and lookups. Nothing here talks to a server:
//! every request is built by a plain function, so each is unit-tested as built.
//!
//! A pool is a collection (`{prefix}{pool}`) of points, one per item, with Euclid distance. A
//! point's id is the UUIDv5 of the pool and the item's key, so sending an item again writes the
//! same point. Its payload holds the item (key, weak label, content hash, metadata) and its
//! dcd row number. Rows at or past the collection's committed count (its `dcd_rows` metadata,
//! moved only after a batch's points are all written) are not yet the pool's: every read
//! filters them out, and opening the pool deletes them.

use std::collections::HashMap;

use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    with_payload_selector, Condition, CreateCollection, CreateCollectionBuilder,
    CreateFieldIndexCollection, CreateFieldIndexCollectionBuilder, Datatype, DeletePoints,
    DeletePointsBuilder, Distance, FacetCounts, FacetCountsBuilder, FieldType, Filter,
    HnswConfigDiffBuilder, IntegerIndexParamsBuilder, KeywordIndexParamsBuilder,
    PayloadIncludeSelector, PointStruct, Query, QueryPoints, QueryPointsBuilder, Range,
    ScrollPoints, ScrollPointsBuilder, SearchParamsBuilder, Struct, UpdateCollection,
    UpdateCollectionBuilder, Value, VectorParamsBuilder,
};
use uuid::Uuid;

use crate::index::graph::HnswParams;
use crate::service::storage::{Lookup, Selection};
use crate::store::{NewItem, PoolSpec};
use crate::types::{Dtype, Matrix, RowId};

/// Payload field: the item's key.
pub const KEY: &str = "key";
/// Payload field: the weak label (absent when unlabelled).
pub const LABEL: &str = "label";
/// Payload field: the content hash (absent when not given).
pub const HASH: &str = "content_hash";
/// Payload field: the metadata, the JSON text as sent.
pub const METADATA: &str = "metadata";
/// Payload field: the dcd row number.
pub const ROW: &str = "row";
/// Collection metadata: the pool's record (a struct).
pub const META_POOL: &str = "dcd_pool";
/// Collection metadata: the rows committed.
pub const META_ROWS: &str = "dcd_rows";

/// The namespace of point ids: UUIDv5 of the URL namespace and "dcd:points".
fn point_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"dcd:points")
}

/// A point's id: UUIDv5 of the pool name, a NUL, and the key (pool names hold no NUL, so two
/// (pool, key) pairs never share a name).
pub fn point_id(pool: &str, key: &str) -> Uuid {
    let mut name = Vec::with_capacity(pool.len() + 1 + key.len());
    name.extend_from_slice(pool.as_bytes());
    name.push(0);
    name.extend_from_slice(key.as_bytes());
    Uuid::new_v5(&point_namespace(), &name)
}

/// The collection that keeps pool `pool`.
pub fn collection_name(prefix: &str, pool: &str) -> String {
    format!("{prefix}{pool}")
}

/// How a new pool's collection is laid out on the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Shards (`shard_number`).
    pub shards: u32,
    /// Copies of each shard (`replication_factor`).
    pub replicas: u32,
    /// The HNSW graph's `m` and `ef_construct`, from dcd's index settings.
    pub hnsw: HnswParams,
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn integer(i: i64) -> Value {
    Value {
        kind: Some(Kind::IntegerValue(i)),
    }
}

/// The pool's record as the collection's metadata keeps it.
pub fn pool_metadata(spec: &PoolSpec, created_at: i64, uid: [u8; 16]) -> HashMap<String, Value> {
    let mut fields = HashMap::new();
    fields.insert("name".to_owned(), string(&spec.name));
    fields.insert("dim".to_owned(), integer(spec.dim as i64));
    fields.insert("dtype".to_owned(), string(spec.dtype.name()));
    fields.insert("created_at".to_owned(), integer(created_at));
    fields.insert("uid".to_owned(), string(&Uuid::from_bytes(uid).to_string()));
    for (name, value) in [
        ("backbone", &spec.backbone),
        ("weights", &spec.weights),
        ("pooling", &spec.pooling),
    ] {
        if let Some(v) = value {
            fields.insert(name.to_owned(), string(v));
        }
    }
    HashMap::from([
        (
            META_POOL.to_owned(),
            Value {
                kind: Some(Kind::StructValue(Struct { fields })),
            },
        ),
        (META_ROWS.to_owned(), integer(0)),
    ])
}

/// Creates the pool's collection: Euclid distance, the pool's element type, dcd's HNSW
/// settings, the cluster layout, the pool's record in the metadata.
pub fn create_collection(
    collection: &str,
    spec: &PoolSpec,
    layout: &Layout,
    created_at: i64,
    uid: [u8; 16],
) -> CreateCollection {
    let datatype = match spec.dtype {
        Dtype::F32 => Datatype::Float32,
        Dtype::F16 => Datatype::Float16,
    };
    let mut create = CreateCollectionBuilder::new(collection)
        .vectors_config(
            VectorParamsBuilder::new(spec.dim as u64, Distance::Euclid).datatype(datatype),
        )
        .hnsw_config(
            HnswConfigDiffBuilder::default()
                .m(layout.hnsw.m as u64)
                .ef_construct(layout.hnsw.ef_construction as u64),
        )
        .shard_number(layout.shards)
        .replication_factor(layout.replicas)
        .build();
    create.metadata = pool_metadata(spec, created_at, uid);
    create
}

/// The payload indexes every pool's collection has: keywords for key, label and content hash
/// (filters, exclusions, lookups), an integer index with ranges for the row.
pub fn payload_indexes(collection: &str) -> Vec<CreateFieldIndexCollection> {
    let mut out: Vec<CreateFieldIndexCollection> = [KEY, LABEL, HASH]
        .into_iter()
        .map(|field| {
            CreateFieldIndexCollectionBuilder::new(collection, field, FieldType::Keyword)
                .field_index_params(KeywordIndexParamsBuilder::default())
                .wait(true)
                .build()
        })
        .collect();
    out.push(
        CreateFieldIndexCollectionBuilder::new(collection, ROW, FieldType::Integer)
            .field_index_params(IntegerIndexParamsBuilder::new(true, true))
            .wait(true)
            .build(),
    );
    out
}

/// The points of one batch: `items[i]` with `vectors.row(i)`, at row `first_row + i`.
pub fn points(pool: &str, first_row: u64, vectors: &Matrix, items: &[NewItem]) -> Vec<PointStruct> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut payload: HashMap<String, Value> = HashMap::new();
            payload.insert(KEY.to_owned(), string(&item.key));
            payload.insert(ROW.to_owned(), integer((first_row + i as u64) as i64));
            for (field, value) in [
                (LABEL, &item.label),
                (HASH, &item.content_hash),
                (METADATA, &item.metadata),
            ] {
                if let Some(v) = value {
                    payload.insert(field.to_owned(), string(v));
                }
            }
            PointStruct::new(point_id(pool, &item.key), vectors.row(i).to_vec(), payload)
        })
        .collect()
}

/// Moves the collection's committed row count (metadata is merged: the record stays).
pub fn commit_rows(collection: &str, rows: u64) -> UpdateCollection {
    let mut update = UpdateCollectionBuilder::new(collection).build();
    update.metadata = HashMap::from([(META_ROWS.to_owned(), integer(rows as i64))]);
    update
}

/// Deletes the points a batch left past the committed rows (an append cut short).
pub fn delete_uncommitted(collection: &str, committed: u64) -> DeletePoints {
    DeletePointsBuilder::new(collection)
        .points(Filter::must([Condition::range(
            ROW,
            Range {
                gte: Some(committed as f64),
                ..Default::default()
            },
        )]))
        .wait(true)
        .build()
}

/// Keywords matched exactly. (The client's `From<String>` makes a string with a space a
/// full-text match: a label "golden retriever" would match "retriever golden".)
fn keywords(values: &[String]) -> MatchValue {
    MatchValue::Keywords(qdrant_client::qdrant::RepeatedStrings {
        strings: values.to_vec(),
    })
}

fn committed_only(committed: u64) -> Condition {
    Condition::range(
        ROW,
        Range {
            lt: Some(committed as f64),
            ..Default::default()
        },
    )
}

/// The points a search may return: committed, with one of the selection's labels (any when
/// none), with none of its excluded keys.
pub fn selection_filter(within: Option<&Selection>, committed: u64) -> Filter {
    let mut filter = Filter::must([committed_only(committed)]);
    if let Some(s) = within {
        if !s.labels.is_empty() {
            filter
                .must
                .push(Condition::matches(LABEL, keywords(&s.labels)));
        }
        if !s.exclude_keys.is_empty() {
            filter
                .must_not
                .push(Condition::matches(KEY, keywords(&s.exclude_keys)));
        }
    }
    filter
}

fn include(fields: &[&str]) -> with_payload_selector::SelectorOptions {
    with_payload_selector::SelectorOptions::Include(PayloadIncludeSelector {
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    })
}

/// The `lookup.k` nearest committed points of `query` (their rows only), by HNSW with the
/// lookup's beam, or by a full scan with `exact`.
pub fn nearest(
    collection: &str,
    query: &[f32],
    lookup: &Lookup<'_>,
    exact: bool,
    committed: u64,
) -> QueryPoints {
    let mut params = SearchParamsBuilder::default().exact(exact);
    if let (Some(ef), false) = (lookup.ef, exact) {
        params = params.hnsw_ef(ef as u64);
    }
    QueryPointsBuilder::new(collection)
        .query(Query::new_nearest(query.to_vec()))
        .limit(lookup.k as u64)
        .filter(selection_filter(lookup.within, committed))
        .params(params)
        .with_payload(include(&[ROW]))
        .with_vectors(false)
        .build()
}

/// The committed points of `rows`, with their whole payload, and their vectors when asked.
/// Answers come in no particular order.
pub fn points_of_rows(
    collection: &str,
    rows: &[RowId],
    with_vectors: bool,
    committed: u64,
) -> ScrollPoints {
    let wanted: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    ScrollPointsBuilder::new(collection)
        .filter(Filter::must([
            committed_only(committed),
            Condition::matches(ROW, wanted),
        ]))
        .limit(rows.len().max(1) as u32)
        .with_payload(true)
        .with_vectors(with_vectors)
        .build()
}

/// The committed points whose `field` (key or content hash) is one of `values`: their key,
/// hash and row.
pub fn points_with(
    collection: &str,
    field: &str,
    values: &[String],
    committed: u64,
) -> ScrollPoints {
    ScrollPointsBuilder::new(collection)
        .filter(Filter::must([
            committed_only(committed),
            Condition::matches(field, keywords(values)),
        ]))
        .limit(values.len().max(1) as u32)
        .with_payload(include(&[KEY, HASH, ROW]))
        .with_vectors(false)
        .build()
}

/// One page (up to `limit`) of the rows in `from..to` with their labels; `offset` is the
/// previous page's `next_page_offset`.
pub fn labels_page(
    collection: &str,
    from: u64,
    to: u64,
    limit: u32,
    offset: Option<qdrant_client::qdrant::PointId>,
) -> ScrollPoints {
    let mut scroll = ScrollPointsBuilder::new(collection)
        .filter(Filter::must([Condition::range(
            ROW,
            Range {
                gte: Some(from as f64),
                lt: Some(to as f64),
                ..Default::default()
            },
        )]))
        .limit(limit)
        .with_payload(include(&[ROW, LABEL]))
        .with_vectors(false);
    if let Some(offset) = offset {
        scroll = scroll.offset(offset);
    }
    scroll.build()
}

/// Items per weak label among the committed rows (exact counts, up to `limit` labels).
pub fn label_counts(collection: &str, committed: u64, limit: u64) -> FacetCounts {
    FacetCountsBuilder::new(collection, LABEL)
        .filter(Filter::must([committed_only(committed)]))
        .limit(limit)
        .exact(true)
        .build()
}
