//! `dcd search`: k-NN over a pool by query file or stored keys, as JSON lines.

use std::path::Path;

use serde::Serialize;

use crate::config::SearchArgs;
use crate::error::{Error, Result};
use crate::formats::read_vectors;
use crate::index::graph::HnswParams;
use crate::index::manager::{self, Engine};
use crate::index::{RowFilter, SearchParams};
use crate::service::ServiceError;
use crate::store::Store;
use crate::types::{Matrix, RowId};

#[derive(Serialize)]
struct Hit {
    row: RowId,
    key: String,
    label: Option<String>,
    distance: f32,
}

#[derive(Serialize)]
struct QueryResult<'a> {
    query: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    engine: &'static str,
    hits: Vec<Hit>,
}

pub(super) fn run(data_dir: &Path, args: SearchArgs) -> Result<()> {
    // Works beside a running server and on a read-only copy (the index is then kept in memory).
    let store = Store::open_for_reading(data_dir)?;
    let pool = store.open_pool(&args.pool)?;
    if pool.is_empty() {
        return Err(crate::index::IndexError::EmptyPool.into());
    }
    let queries = match (&args.queries, args.key.is_empty()) {
        (Some(path), true) => read_vectors(path)?,
        (None, false) => {
            let mut data = Vec::with_capacity(args.key.len() * pool.dim());
            for key in &args.key {
                let row = pool
                    .row_of_key(key)?
                    .ok_or_else(|| ServiceError::KeyNotFound {
                        pool: args.pool.clone(),
                        key: key.clone(),
                    })?;
                data.extend(pool.vectors().row_f32(row as usize));
            }
            Matrix::new(args.key.len(), pool.dim(), data)
        }
        _ => {
            return Err(Error::Usage(
                "give the queries with --queries FILE or --key KEY (one of them)".into(),
            ))
        }
    };
    let filter = if args.label.is_empty() {
        None
    } else {
        let rows = pool.rows_with_labels(&args.label)?;
        Some(RowFilter::from_rows(rows, pool.len()))
    };
    let engine = if args.exact {
        Engine::Exact
    } else {
        args.index.engine
    };
    let params = HnswParams {
        m: args.index.m,
        ef_construction: args.index.ef_construction,
        ..HnswParams::default()
    };
    let index = manager::open_with(&pool, engine, params, args.mmap_index)?;
    let search = SearchParams {
        k: args.k,
        ef: args.ef,
        filter: filter.as_ref(),
    };
    let results = index.search_batch(pool.vectors(), &queries, &search)?;
    for (i, hits) in results.into_iter().enumerate() {
        let rows: Vec<RowId> = hits.iter().map(|h| h.id).collect();
        let items = pool.items(&rows)?;
        let hits = hits
            .iter()
            .zip(items)
            .map(|(h, it)| Hit {
                row: h.id,
                key: it.key,
                label: it.label,
                distance: h.distance,
            })
            .collect();
        super::print_json(&QueryResult {
            query: i,
            key: args.key.get(i).map(String::as_str),
            engine: index.engine(),
            hits,
        });
    }
    Ok(())
}
