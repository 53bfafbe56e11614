//! `dcd search`: k-NN over a pool by query file or stored keys, as JSON lines; in this
//! process (beside a running server too: the data directory is then read-only) or on
//! `--server`.

use std::path::Path;

use serde::Serialize;

use super::target::{Access, Target};
use crate::config::SearchArgs;
use crate::error::{Error, Result};
use crate::formats::read_vectors;
use crate::limits::ServiceLimits;
use crate::service::{AllowedRoots, Hit, QueryInput, SearchRequest};

/// Queries per call: a query file of any length is searched a slice at a time, within the
/// service's bound on results per call, and printed as it goes.
const QUERIES_PER_CALL: usize = 1024;

#[derive(Serialize)]
struct QueryResult<'a> {
    query: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    engine: &'a str,
    hits: &'a [Hit],
}

pub(super) fn run(data_dir: &Path, args: SearchArgs) -> Result<()> {
    let queries: Vec<QueryInput> = match (&args.queries, args.key.is_empty()) {
        (Some(path), true) => read_vectors(path)?
            .iter_rows()
            .map(|r| QueryInput::Vector(r.to_vec()))
            .collect(),
        (None, false) => args.key.iter().cloned().map(QueryInput::Key).collect(),
        _ => {
            return Err(Error::Usage(
                "give the queries with --queries FILE or --key KEY (one of them)".into(),
            ))
        }
    };
    let mut target = Target::open(data_dir, &args.target, Access::Read, || {
        crate::app::settings(AllowedRoots::Any, &Default::default(), Some(&args.index))
    })?;
    let per_call = (ServiceLimits::default().max_hits / args.k.max(1)).clamp(1, QUERIES_PER_CALL);
    for (slice, chunk) in queries.chunks(per_call).enumerate() {
        let req = SearchRequest {
            pool: args.pool.clone(),
            queries: chunk.to_vec(),
            k: args.k,
            ef: args.ef,
            exact: args.exact,
            labels: args.label.clone(),
        };
        let (results, engine) = target.search(&req)?;
        for (i, result) in results.into_iter().enumerate() {
            let query = slice * per_call + i;
            // Every query is a vector or a stored key: one that cannot be run fails the call.
            let hits =
                result.map_err(|reason| Error::Internal(format!("query {query}: {reason}")))?;
            super::print_json(&QueryResult {
                query,
                key: args.key.get(query).map(String::as_str),
                engine: &engine,
                hits: &hits,
            });
        }
    }
    Ok(())
}
