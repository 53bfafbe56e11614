//! Qdrant's answers read in dcd's terms: a collection's info as a pool record, scored points
//! as neighbours at squared ℓ2 (Qdrant's Euclid score is the root of it), retrieved points as
//! items and vectors, and Qdrant's failures as dcd errors of one kind each, the URL named.

use std::collections::HashMap;

use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vector_output::Vector;
use qdrant_client::qdrant::vectors_config::Config;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    facet_value, CollectionInfo, Datatype, FacetHit, RetrievedPoint, ScoredPoint, Value,
};
use tonic::Code;

use super::requests::{HASH, KEY, LABEL, METADATA, META_POOL, META_ROWS, ROW};
use crate::error_kind::ErrorKind;
use crate::store::{Item, PoolRecord};
use crate::types::{Dtype, Metric, Neighbor, RowId};

/// A failure talking to Qdrant.
#[derive(Debug, thiserror::Error)]
pub enum QdrantError {
    /// No connection to the cluster.
    #[error("Qdrant at {url} cannot be reached ({reason}); check --qdrant-url and that the cluster is up, then retry")]
    Unreachable {
        /// The cluster's URL.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The cluster did not answer in time.
    #[error("Qdrant at {url} did not answer {what} in time ({reason}); the cluster is overloaded or a peer is down: retry, or raise --qdrant-timeout-s")]
    TimedOut {
        /// The cluster's URL.
        url: String,
        /// The request.
        what: &'static str,
        /// What the transport said.
        reason: String,
    },
    /// A collection under the pool's name that dcd did not make.
    #[error("collection {collection:?} in Qdrant at {url} was not made by dcd (it has no {META_POOL:?} metadata); name the pool otherwise, or give dcd its own --qdrant-prefix")]
    NotOurs {
        /// The cluster's URL.
        url: String,
        /// The collection.
        collection: String,
    },
    /// A collection whose vectors do not fit its pool's record or the request.
    #[error("collection {collection:?} in Qdrant at {url} holds {has}, but {wants}; it was made or changed outside dcd: delete it or name the pool otherwise")]
    Mismatch {
        /// The cluster's URL.
        url: String,
        /// The collection.
        collection: String,
        /// What the collection has (`384-d f32 vectors with Cosine distance`).
        has: String,
        /// What dcd expects.
        wants: String,
    },
    /// Qdrant refused a request.
    #[error("Qdrant at {url} refused {what}: {code:?}: {message}")]
    Refused {
        /// The cluster's URL.
        url: String,
        /// The request.
        what: &'static str,
        /// Its gRPC code.
        code: Code,
        /// Its message.
        message: String,
    },
    /// An answer dcd cannot read: a point without its row, a record that does not parse.
    #[error(
        "Qdrant at {url} answered {what} with {reason}; the collection was changed outside dcd"
    )]
    BadAnswer {
        /// The cluster's URL.
        url: String,
        /// The request.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl QdrantError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QdrantError::Unreachable { .. } | QdrantError::TimedOut { .. } => {
                ErrorKind::Unavailable
            }
            QdrantError::NotOurs { .. } | QdrantError::Mismatch { .. } => {
                ErrorKind::FailedPrecondition
            }
            QdrantError::Refused { code, .. } => match code {
                Code::NotFound => ErrorKind::NotFound,
                Code::AlreadyExists => ErrorKind::AlreadyExists,
                Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
                Code::FailedPrecondition => ErrorKind::FailedPrecondition,
                Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
                Code::ResourceExhausted => ErrorKind::ResourceExhausted,
                Code::Unavailable | Code::Aborted => ErrorKind::Unavailable,
                Code::Cancelled => ErrorKind::Cancelled,
                _ => ErrorKind::Internal,
            },
            QdrantError::BadAnswer { .. } => ErrorKind::DataLoss,
        }
    }

    /// A failed request, as the client reports it.
    pub fn from_client(
        url: &str,
        what: &'static str,
        error: qdrant_client::QdrantError,
    ) -> QdrantError {
        match error {
            qdrant_client::QdrantError::ResponseError { status }
            | qdrant_client::QdrantError::ResourceExhaustedError { status, .. } => {
                QdrantError::from_status(url, what, &status)
            }
            qdrant_client::QdrantError::Io(e) => QdrantError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            },
            // A URL that does not parse is refused when the server starts; what is left
            // (conversions) is a request dcd built wrong.
            other => QdrantError::Refused {
                url: url.to_owned(),
                what,
                code: Code::Internal,
                message: other.to_string(),
            },
        }
    }

    /// A failed request, by its gRPC status. Transport failures come as UNAVAILABLE (or
    /// UNKNOWN with the transport's message); a deadline as DEADLINE_EXCEEDED or CANCELLED
    /// with "Timeout expired".
    pub fn from_status(url: &str, what: &'static str, status: &tonic::Status) -> QdrantError {
        let message = status.message().to_owned();
        let transport = message.contains("transport error")
            || message.contains("Connection refused")
            || message.contains("dns error")
            || message.contains("error trying to connect");
        match status.code() {
            Code::DeadlineExceeded => QdrantError::TimedOut {
                url: url.to_owned(),
                what,
                reason: message,
            },
            Code::Cancelled if message.contains("Timeout expired") => QdrantError::TimedOut {
                url: url.to_owned(),
                what,
                reason: message,
            },
            Code::Unavailable | Code::Unknown
                if transport || status.code() == Code::Unavailable =>
            {
                QdrantError::Unreachable {
                    url: url.to_owned(),
                    reason: message,
                }
            }
            code => QdrantError::Refused {
                url: url.to_owned(),
                what,
                code,
                message,
            },
        }
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match &v.kind {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match &v.kind {
        Some(Kind::IntegerValue(i)) => Some(*i),
        // JSON numbers may come back as doubles; a whole one is still a count.
        Some(Kind::DoubleValue(d)) if d.fract() == 0.0 && *d >= 0.0 => Some(*d as i64),
        _ => None,
    }
}

/// The pool a collection keeps: its record from the metadata, checked against the
/// collection's vector parameters, with the committed rows.
pub fn pool_record(
    url: &str,
    collection: &str,
    info: &CollectionInfo,
) -> Result<PoolRecord, QdrantError> {
    let config = info.config.as_ref();
    let metadata = config.map(|c| &c.metadata);
    let not_ours = || QdrantError::NotOurs {
        url: url.to_owned(),
        collection: collection.to_owned(),
    };
    let fields = match metadata
        .and_then(|m| m.get(META_POOL))
        .and_then(|v| v.kind.as_ref())
    {
        Some(Kind::StructValue(s)) => &s.fields,
        _ => return Err(not_ours()),
    };
    let bad = |reason: String| QdrantError::BadAnswer {
        url: url.to_owned(),
        what: "the collection's info",
        reason,
    };
    let text = |name: &str| fields.get(name).and_then(as_str).map(str::to_owned);
    let name = text("name").ok_or_else(|| bad(format!("a {META_POOL} record without a name")))?;
    let dim = fields
        .get("dim")
        .and_then(as_int)
        .filter(|&d| d > 0)
        .ok_or_else(|| bad(format!("a {META_POOL} record without a dimension")))?
        as usize;
    let dtype = match text("dtype").as_deref() {
        Some("f32") => Dtype::F32,
        Some("f16") => Dtype::F16,
        other => return Err(bad(format!("a {META_POOL} record with dtype {other:?}"))),
    };
    let uid = text("uid")
        .and_then(|u| uuid::Uuid::parse_str(&u).ok())
        .map(|u| *u.as_bytes());
    let rows = metadata
        .and_then(|m| m.get(META_ROWS))
        .and_then(as_int)
        .filter(|&r| r >= 0)
        .ok_or_else(|| bad(format!("no {META_ROWS:?} count of committed rows")))?
        as u64;
    let params = config
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.vectors_config.as_ref())
        .and_then(|v| v.config.as_ref());
    let Some(Config::Params(params)) = params else {
        return Err(QdrantError::Mismatch {
            url: url.to_owned(),
            collection: collection.to_owned(),
            has: "named vectors (or none)".into(),
            wants: "dcd keeps one unnamed vector per point".into(),
        });
    };
    let datatype = params
        .datatype
        .and_then(|d| Datatype::try_from(d).ok())
        .unwrap_or(Datatype::Float32);
    let stored_dtype = match datatype {
        Datatype::Float16 => Some(Dtype::F16),
        Datatype::Float32 | Datatype::Default => Some(Dtype::F32),
        _ => None,
    };
    let euclid = params.distance == qdrant_client::qdrant::Distance::Euclid as i32;
    if params.size as usize != dim || stored_dtype != Some(dtype) || !euclid {
        return Err(QdrantError::Mismatch {
            url: url.to_owned(),
            collection: collection.to_owned(),
            has: format!(
                "{}-d {} vectors with {} distance",
                params.size,
                datatype.as_str_name(),
                qdrant_client::qdrant::Distance::try_from(params.distance)
                    .map_or("unknown", |d| d.as_str_name())
            ),
            wants: format!(
                "its dcd record says {dim}-d {} vectors with Euclid distance",
                dtype.name()
            ),
        });
    }
    Ok(PoolRecord {
        id: generation_id(uid, fields.get("created_at").and_then(as_int).unwrap_or(0)),
        name,
        dim,
        dtype,
        metric: Metric::L2,
        backbone: text("backbone"),
        weights: text("weights"),
        pooling: text("pooling"),
        created_at: fields.get("created_at").and_then(as_int).unwrap_or(0),
        rows,
        uid,
    })
}

/// The record id caches key pools by: from the pool's identity, so a pool deleted and made
/// again under its name is another pool to them.
fn generation_id(uid: Option<[u8; 16]>, created_at: i64) -> i64 {
    match uid {
        Some(u) => i64::from_le_bytes(u[..8].try_into().expect("8 bytes")) & i64::MAX,
        None => created_at,
    }
}

fn row_of(
    url: &str,
    what: &'static str,
    payload: &HashMap<String, Value>,
) -> Result<RowId, QdrantError> {
    payload
        .get(ROW)
        .and_then(as_int)
        .and_then(|r| RowId::try_from(r).ok())
        .ok_or_else(|| QdrantError::BadAnswer {
            url: url.to_owned(),
            what,
            reason: format!("a point without a {ROW:?} number in its payload"),
        })
}

/// A search's answer for one query: rows at squared ℓ2, nearest first (ties by row, as dcd
/// orders everywhere).
pub fn neighbors(url: &str, points: &[ScoredPoint]) -> Result<Vec<Neighbor>, QdrantError> {
    let mut out = points
        .iter()
        .map(|p| {
            Ok(Neighbor {
                id: row_of(url, "a search", &p.payload)?,
                distance: p.score * p.score,
            })
        })
        .collect::<Result<Vec<_>, QdrantError>>()?;
    out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The item a retrieved point holds.
pub fn item(url: &str, point: &RetrievedPoint) -> Result<Item, QdrantError> {
    let text = |field: &str| point.payload.get(field).and_then(as_str).map(str::to_owned);
    Ok(Item {
        row: row_of(url, "a point lookup", &point.payload)?,
        key: text(KEY).ok_or_else(|| QdrantError::BadAnswer {
            url: url.to_owned(),
            what: "a point lookup",
            reason: format!("a point without a {KEY:?} in its payload"),
        })?,
        label: text(LABEL),
        content_hash: text(HASH),
        metadata: text(METADATA),
    })
}

/// A retrieved point's row and vector (of `dim` values).
#[allow(deprecated)] // `VectorOutput::data`: what servers before the typed variants answer in
pub fn vector(
    url: &str,
    point: &RetrievedPoint,
    dim: usize,
) -> Result<(RowId, Vec<f32>), QdrantError> {
    let bad = |reason: String| QdrantError::BadAnswer {
        url: url.to_owned(),
        what: "a vector lookup",
        reason,
    };
    let row = row_of(url, "a vector lookup", &point.payload)?;
    let values = match point
        .vectors
        .as_ref()
        .and_then(|v| v.vectors_options.as_ref())
    {
        Some(VectorsOptions::Vector(v)) => match &v.vector {
            Some(Vector::Dense(d)) => d.data.clone(),
            None if !v.data.is_empty() => v.data.clone(),
            _ => return Err(bad(format!("row {row}'s vector is not one dense vector"))),
        },
        _ => return Err(bad(format!("row {row} without its vector"))),
    };
    if values.len() != dim {
        return Err(bad(format!(
            "row {row}'s vector has {} values, not {dim}",
            values.len()
        )));
    }
    Ok((row, values))
}

/// Items per weak label from a facet count.
pub fn label_counts(hits: &[FacetHit]) -> Vec<(String, u64)> {
    hits.iter()
        .filter_map(
            |h| match h.value.as_ref().and_then(|v| v.variant.as_ref()) {
                Some(facet_value::Variant::StringValue(s)) => Some((s.clone(), h.count)),
                _ => None,
            },
        )
        .collect()
}
