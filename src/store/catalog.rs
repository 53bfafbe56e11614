//! The SQLite catalog: pools and their items (key, weak label, content hash, metadata).
//!
//! The catalog's `row_count` is the commit point of an append: a row exists once the
//! transaction that raised it has committed (WAL, `synchronous=FULL`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::error::StoreError;
use crate::types::{Dtype, Metric, RowId};

const SCHEMA_VERSION: i64 = 3;

/// Keys or rows looked up per statement (SQLite binds at most 32 766 parameters).
const LOOKUP_CHUNK: usize = 512;

/// `?2, ?3, ...` for `n` parameters after the pool id.
fn placeholders(n: usize) -> String {
    (2..n + 2)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pools (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    dim         INTEGER NOT NULL,
    dtype       TEXT NOT NULL,
    metric      TEXT NOT NULL,
    backbone    TEXT,
    created_at  INTEGER NOT NULL,
    row_count   INTEGER NOT NULL DEFAULT 0,
    weights     TEXT,
    pooling     TEXT,
    uid         TEXT
);
CREATE TABLE IF NOT EXISTS items (
    pool_id      INTEGER NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
    row_id       INTEGER NOT NULL,
    key          TEXT NOT NULL,
    label        TEXT,
    content_hash TEXT,
    metadata     TEXT,
    PRIMARY KEY (pool_id, row_id),
    UNIQUE (pool_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_label ON items (pool_id, label);
CREATE INDEX IF NOT EXISTS items_by_hash ON items (pool_id, content_hash);
";

/// Version 1 catalogs lack the model columns and the job tables (added by `JOBS_SCHEMA`).
const MIGRATE_1_TO_2: &str = "
ALTER TABLE pools ADD COLUMN weights TEXT;
ALTER TABLE pools ADD COLUMN pooling TEXT;
";

/// Version 2 catalogs lack the pools' identities (their pools keep none: not checked).
const MIGRATE_2_TO_3: &str = "
ALTER TABLE pools ADD COLUMN uid TEXT;
";

/// A pool as recorded in the catalog.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PoolRecord {
    /// Catalog id.
    #[serde(skip)]
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Vector dimension.
    pub dim: usize,
    /// Storage element type.
    pub dtype: Dtype,
    /// Distance.
    pub metric: Metric,
    /// Backbone that made the vectors, if any (e.g. `dino-vits16`).
    pub backbone: Option<String>,
    /// Where the backbone's weights come from (path or model id; None: the backbone's default).
    pub weights: Option<String>,
    /// ViT pooling (`cls` or `cls-mean-patch`; None for raw-vector pools and convnets).
    pub pooling: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
    /// Committed rows.
    pub rows: u64,
    /// Identity shared with the header of its `vectors.bin` (None: a pool from before
    /// identities).
    #[serde(skip)]
    pub uid: Option<[u8; 16]>,
}

/// What a caller supplies for one new item; the row id is assigned by the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewItem {
    /// External key or URI, unique in the pool.
    pub key: String,
    /// Weak (noisy) label.
    pub label: Option<String>,
    /// Content hash of the source (e.g. hex SHA-256 of the image bytes).
    pub content_hash: Option<String>,
    /// A JSON document.
    pub metadata: Option<String>,
}

/// A stored item.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Item {
    /// Row id of its vector.
    pub row: RowId,
    /// External key or URI.
    pub key: String,
    /// Weak label.
    pub label: Option<String>,
    /// Content hash.
    pub content_hash: Option<String>,
    /// JSON metadata.
    pub metadata: Option<String>,
}

/// The catalog connection.
pub struct Catalog {
    pub(super) conn: Connection,
}

impl Catalog {
    /// Opens (creating if needed) the catalog and checks that it is one of ours.
    pub fn open(path: &Path) -> Result<Catalog, StoreError> {
        let unreadable = |e: rusqlite::Error| StoreError::CatalogUnreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(unreadable)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
             PRAGMA busy_timeout=5000;",
        )
        .map_err(unreadable)?;
        // Creating or upgrading the schema is one transaction: a process killed halfway leaves
        // the catalog as it found it (autocommitted DDL left tables without their version, a
        // catalog no later open accepted), and one we refuse is left untouched.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unreadable)?;
        tx.execute_batch(SCHEMA).map_err(unreadable)?;
        let version: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(unreadable)?;
        let pools: i64 = tx
            .query_row("SELECT COUNT(*) FROM pools", [], |r| r.get(0))
            .map_err(unreadable)?;
        let mut upgraded = false;
        match version {
            // A new catalog; or one an earlier build, whose set-up was not one transaction,
            // was killed while creating: tables, no version, no pool. Finish it.
            None if pools == 0 => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(unreadable)?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) if v == "1" || v == "2" => {
                if v == "1" {
                    tx.execute_batch(MIGRATE_1_TO_2).map_err(unreadable)?;
                }
                tx.execute_batch(MIGRATE_2_TO_3).map_err(unreadable)?;
                tx.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(unreadable)?;
                upgraded = true;
            }
            v => {
                let v = v.unwrap_or_else(|| "none".into());
                return Err(StoreError::CatalogUnreadable {
                    path: path.to_owned(),
                    reason: format!(
                        "schema version {v}, this build reads version {SCHEMA_VERSION}"
                    ),
                });
            }
        }
        tx.execute_batch(super::job_records::JOBS_SCHEMA)
            .map_err(unreadable)?;
        tx.commit().map_err(unreadable)?;
        if upgraded {
            tracing::info!(path = %path.display(), "catalog upgraded to schema version {SCHEMA_VERSION}");
        }
        Ok(Catalog { conn })
    }

    /// Opens an existing catalog for reading only: nothing is created or upgraded (a catalog
    /// of another schema version is refused: open it read-write once). Beside a running
    /// server it reads the committed state through the WAL; a copy on read-only media, where
    /// the WAL's shared memory cannot be made, is read as immutable.
    pub fn open_read_only(path: &Path) -> Result<Catalog, StoreError> {
        use rusqlite::OpenFlags;
        let unreadable = |e: rusqlite::Error| StoreError::CatalogUnreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        if !path.is_file() {
            return Err(StoreError::CatalogUnreadable {
                path: path.to_owned(),
                reason: "no catalog there (is this a dcd data directory?)".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let version = |conn: &Connection| -> rusqlite::Result<Option<String>> {
            conn.execute_batch("PRAGMA busy_timeout=5000;")?;
            conn.query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
        };
        let plain = Connection::open_with_flags(path, flags);
        let (conn, v) = match plain.and_then(|c| version(&c).map(|v| (c, v))) {
            Ok(found) => found,
            Err(_) => {
                let escaped = path
                    .display()
                    .to_string()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23");
                let uri = format!("file:{escaped}?immutable=1");
                let conn = Connection::open_with_flags(uri, flags).map_err(unreadable)?;
                let v = version(&conn).map_err(unreadable)?;
                (conn, v)
            }
        };
        if v.as_deref() != Some(SCHEMA_VERSION.to_string().as_str()) {
            return Err(StoreError::CatalogUnreadable {
                path: path.to_owned(),
                reason: format!(
                    "schema version {}, and a read-only open does not upgrade to {SCHEMA_VERSION}; open it read-write once",
                    v.unwrap_or_else(|| "none".into())
                ),
            });
        }
        Ok(Catalog { conn })
    }

    /// Inserts a pool record; the name must be free.
    pub fn insert_pool(
        &mut self,
        spec: &super::PoolSpec,
        metric: Metric,
        created_at: i64,
        uid: [u8; 16],
    ) -> Result<PoolRecord, StoreError> {
        let name = spec.name.as_str();
        let res = self.conn.execute(
            "INSERT INTO pools (name, dim, dtype, metric, backbone, created_at, weights, pooling, uid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name,
                spec.dim as i64,
                spec.dtype.name(),
                metric.name(),
                spec.backbone,
                created_at,
                spec.weights,
                spec.pooling,
                crate::types::hex(&uid)
            ],
        );
        match res {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::PoolExists { name: name.into() })
            }
            Err(e) => return Err(StoreError::catalog("creating a pool")(e)),
        }
        self.pool(name)?
            .ok_or_else(|| StoreError::PoolNotFound { name: name.into() })
    }

    /// Looks a pool up by name.
    pub fn pool(&self, name: &str) -> Result<Option<PoolRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, name, dim, dtype, metric, backbone, created_at, row_count, weights, pooling, uid
                 FROM pools WHERE name = ?1",
                [name],
                row_to_pool,
            )
            .optional()
            .map_err(StoreError::catalog("reading a pool"))?
            .transpose()
    }

    /// All pools, by name.
    pub fn pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, dim, dtype, metric, backbone, created_at, row_count, weights, pooling, uid
                 FROM pools ORDER BY name",
            )
            .map_err(StoreError::catalog("listing pools"))?;
        let rows = stmt
            .query_map([], row_to_pool)
            .map_err(StoreError::catalog("listing pools"))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(StoreError::catalog("listing pools"))??);
        }
        Ok(out)
    }

    /// Deletes a pool and its items; returns false when there was none.
    pub fn delete_pool(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM pools WHERE name = ?1", [name])
            .map_err(StoreError::catalog("deleting a pool"))?;
        Ok(n > 0)
    }

    /// Records items for rows `first_row..` and raises the pool's committed count, in one
    /// transaction. A duplicate key rolls everything back.
    pub fn commit_items(
        &mut self,
        pool: &PoolRecord,
        first_row: u64,
        items: &[NewItem],
        job: Option<&super::JobBatch<'_>>,
    ) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::catalog("starting an append"))?;
        if let Some(job) = job {
            super::job_records::record_entries(&tx, job)?;
        }
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO items (pool_id, row_id, key, label, content_hash, metadata)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(StoreError::catalog("appending items"))?;
            for (i, it) in items.iter().enumerate() {
                let res = ins.execute(params![
                    pool.id,
                    (first_row + i as u64) as i64,
                    it.key,
                    it.label,
                    it.content_hash,
                    it.metadata
                ]);
                match res {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        return Err(StoreError::DuplicateKey {
                            pool: pool.name.clone(),
                            key: it.key.clone(),
                        })
                    }
                    Err(e) => return Err(StoreError::catalog("appending items")(e)),
                }
            }
        }
        let new_count = first_row + items.len() as u64;
        let updated = tx
            .execute(
                "UPDATE pools SET row_count = ?1 WHERE id = ?2 AND row_count = ?3",
                params![new_count as i64, pool.id, first_row as i64],
            )
            .map_err(StoreError::catalog("committing an append"))?;
        if updated != 1 {
            return Err(StoreError::PoolNotFound {
                name: pool.name.clone(),
            });
        }
        tx.commit()
            .map_err(StoreError::catalog("committing an append"))?;
        Ok(new_count)
    }

    /// Items of the given rows, in the order asked; rows that do not exist are skipped.
    pub fn items(&self, pool_id: i64, rows: &[RowId]) -> Result<Vec<Item>, StoreError> {
        let mut found: std::collections::HashMap<RowId, Item> =
            std::collections::HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(LOOKUP_CHUNK) {
            let mut stmt = self
                .conn
                .prepare_cached(&format!(
                    "SELECT row_id, key, label, content_hash, metadata FROM items
                     WHERE pool_id = ?1 AND row_id IN ({})",
                    placeholders(chunk.len())
                ))
                .map_err(StoreError::catalog("reading items"))?;
            let params = std::iter::once(rusqlite::types::Value::Integer(pool_id)).chain(
                chunk
                    .iter()
                    .map(|&r| rusqlite::types::Value::Integer(r as i64)),
            );
            let items = stmt
                .query_map(rusqlite::params_from_iter(params), row_to_item)
                .map_err(StoreError::catalog("reading items"))?;
            for item in items {
                let item = item.map_err(StoreError::catalog("reading items"))?;
                found.insert(item.row, item);
            }
        }
        // Callers pair items with rows by position: a row without its item must not shift
        // every key after it onto the wrong vector.
        rows.iter()
            .map(|r| {
                found
                    .get(r)
                    .cloned()
                    .ok_or(StoreError::MissingItem { pool_id, row: *r })
            })
            .collect()
    }

    /// The weak label of every item with a row in `from..to` (None: unlabelled), by row.
    pub fn labels_in_range(
        &self,
        pool_id: i64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(RowId, Option<String>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT row_id, label FROM items WHERE pool_id = ?1 AND row_id >= ?2 AND row_id < ?3",
            )
            .map_err(StoreError::catalog("reading labels"))?;
        let rows = stmt
            .query_map(params![pool_id, from as i64, to as i64], |r| {
                Ok((r.get::<_, i64>(0)? as RowId, r.get::<_, Option<String>>(1)?))
            })
            .map_err(StoreError::catalog("reading labels"))?;
        rows.collect::<Result<_, _>>()
            .map_err(StoreError::catalog("reading labels"))
    }

    /// The row holding `key`, if any.
    pub fn row_of_key(&self, pool_id: i64, key: &str) -> Result<Option<RowId>, StoreError> {
        self.conn
            .query_row(
                "SELECT row_id FROM items WHERE pool_id = ?1 AND key = ?2",
                params![pool_id, key],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|v| v as RowId))
            .map_err(StoreError::catalog("looking up a key"))
    }

    /// Which of `keys` are stored in the pool.
    pub fn existing_keys(
        &self,
        pool_id: i64,
        keys: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let mut stmt = self
                .conn
                .prepare_cached(&format!(
                    "SELECT key FROM items WHERE pool_id = ?1 AND key IN ({})",
                    placeholders(chunk.len())
                ))
                .map_err(StoreError::catalog("looking up keys"))?;
            let params = std::iter::once(rusqlite::types::Value::Integer(pool_id)).chain(
                chunk
                    .iter()
                    .map(|k| rusqlite::types::Value::Text((*k).to_owned())),
            );
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(0)
                })
                .map_err(StoreError::catalog("looking up keys"))?;
            for key in rows {
                out.insert(key.map_err(StoreError::catalog("looking up keys"))?);
            }
        }
        Ok(out)
    }

    /// For each hash stored in the pool, the key of (one) item holding it.
    pub fn keys_by_hash(
        &self,
        pool_id: i64,
        hashes: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key FROM items WHERE pool_id = ?1 AND content_hash = ?2 LIMIT 1",
            )
            .map_err(StoreError::catalog("looking up content hashes"))?;
        let mut out = std::collections::HashMap::new();
        for &hash in hashes {
            let key: Option<String> = stmt
                .query_row(params![pool_id, hash], |r| r.get(0))
                .optional()
                .map_err(StoreError::catalog("looking up content hashes"))?;
            if let Some(key) = key {
                out.insert(hash.to_owned(), key);
            }
        }
        Ok(out)
    }

    /// Rows whose weak label is one of `labels`, ascending.
    pub fn rows_with_labels(
        &self,
        pool_id: i64,
        labels: &[String],
    ) -> Result<Vec<RowId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT row_id FROM items WHERE pool_id = ?1 AND label = ?2 ORDER BY row_id",
            )
            .map_err(StoreError::catalog("filtering by label"))?;
        let mut out = Vec::new();
        for label in labels {
            let rows = stmt
                .query_map(params![pool_id, label], |r| r.get::<_, i64>(0))
                .map_err(StoreError::catalog("filtering by label"))?;
            for r in rows {
                out.push(r.map_err(StoreError::catalog("filtering by label"))? as RowId);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Count of items per weak label (unlabelled items under the empty string).
    pub fn label_histogram(&self, pool_id: i64) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(label, ''), COUNT(*) FROM items WHERE pool_id = ?1 GROUP BY 1",
            )
            .map_err(StoreError::catalog("counting labels"))?;
        let rows = stmt
            .query_map([pool_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(StoreError::catalog("counting labels"))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (label, n) = r.map_err(StoreError::catalog("counting labels"))?;
            out.insert(label, n as u64);
        }
        Ok(out)
    }

    /// The smallest and largest row id of a pool's items below row `below` (None: none).
    /// Bounded so that rows a running server commits meanwhile do not count.
    pub fn row_id_range(&self, pool_id: i64, below: u64) -> Result<Option<(u64, u64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(row_id), MAX(row_id) FROM items WHERE pool_id = ?1 AND row_id < ?2",
                params![pool_id, below as i64],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .map(|(lo, hi)| lo.zip(hi).map(|(lo, hi)| (lo as u64, hi as u64)))
            .map_err(StoreError::catalog("reading row ids"))
    }

    /// Number of items recorded for a pool below row `below` (equals `below` when healthy
    /// and `below` is the committed count). Bounded so that rows a running server commits
    /// meanwhile do not count.
    pub fn item_count(&self, pool_id: i64, below: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM items WHERE pool_id = ?1 AND row_id < ?2",
                params![pool_id, below as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(StoreError::catalog("counting items"))
    }
}

fn row_to_pool(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<PoolRecord, StoreError>> {
    let dtype: String = r.get(3)?;
    let metric: String = r.get(4)?;
    let name: String = r.get(1)?;
    let bad = |what: String| StoreError::CatalogUnreadable {
        path: PathBuf::from("catalog.sqlite"),
        reason: format!("pool {name:?}: {what}"),
    };
    let dtype = match dtype.parse::<Dtype>() {
        Ok(d) => d,
        Err(e) => return Ok(Err(bad(e))),
    };
    let metric = match metric.parse::<Metric>() {
        Ok(m) => m,
        Err(e) => return Ok(Err(bad(e))),
    };
    let uid = match r.get::<_, Option<String>>(10)? {
        None => None,
        Some(hex) => match parse_uid(&hex) {
            Some(uid) => Some(uid),
            None => return Ok(Err(bad(format!("identity {hex:?} is not 32 hex digits")))),
        },
    };
    Ok(Ok(PoolRecord {
        id: r.get(0)?,
        name,
        dim: r.get::<_, i64>(2)? as usize,
        dtype,
        metric,
        backbone: r.get(5)?,
        created_at: r.get(6)?,
        rows: r.get::<_, i64>(7)? as u64,
        weights: r.get(8)?,
        pooling: r.get(9)?,
        uid,
    }))
}

fn parse_uid(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        row: r.get::<_, i64>(0)? as RowId,
        key: r.get(1)?,
        label: r.get(2)?,
        content_hash: r.get(3)?,
        metadata: r.get(4)?,
    })
}
