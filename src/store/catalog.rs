//! The SQLite catalog: pools and their items (key, weak label, content hash, metadata).
//!
//! The catalog's `row_count` is the commit point of an append: a row exists once the
//! transaction that raised it has committed (WAL, `synchronous=FULL`).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::error::StoreError;
use crate::types::{Dtype, Metric, RowId};

const SCHEMA_VERSION: i64 = 3;

/// Keys or rows looked up per statement (SQLite binds at most 32 766 parameters).
pub(super) const LOOKUP_CHUNK: usize = 512;

/// `?2, ?3, ...` for `n` parameters after the pool id.
pub(super) fn placeholders(n: usize) -> String {
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
        super::set_schema::ensure_schema(&tx).map_err(unreadable)?;
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
