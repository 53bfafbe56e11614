//! The catalog tables of saved sets, their items and their reviews, created (and brought up
//! to date) inside the catalog's opening transaction.

const SETS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS saved_sets (
    name        TEXT PRIMARY KEY,
    pool        TEXT NOT NULL,
    parent      TEXT,
    created_at  INTEGER NOT NULL,
    items       INTEGER NOT NULL,
    manifest    TEXT NOT NULL,
    summary     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS saved_sets_by_pool ON saved_sets (pool);
CREATE TABLE IF NOT EXISTS saved_set_items (
    set_name     TEXT NOT NULL REFERENCES saved_sets(name) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    row_id       INTEGER NOT NULL,
    key          TEXT NOT NULL,
    label        TEXT,
    train_label  TEXT,
    distance     REAL NOT NULL,
    mode         INTEGER NOT NULL,
    support      INTEGER NOT NULL,
    found_by     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (set_name, position)
) WITHOUT ROWID;
";

/// Creates the set tables, and adds what a catalog of an earlier build of them lacks (the
/// error samples that found each item).
pub(super) fn ensure_schema(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(SETS_SCHEMA)?;
    let has_found_by: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('saved_set_items') WHERE name = 'found_by'",
        [],
        |r| r.get(0),
    )?;
    if !has_found_by {
        tx.execute_batch(
            "ALTER TABLE saved_set_items ADD COLUMN found_by TEXT NOT NULL DEFAULT '';",
        )?;
    }
    tx.execute_batch(REVIEWS_SCHEMA)
}

const REVIEWS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS saved_set_reviews (
    id        INTEGER PRIMARY KEY,
    set_name  TEXT NOT NULL REFERENCES saved_sets(name) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    verdict   TEXT NOT NULL,
    label     TEXT,
    reviewer  TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS saved_set_reviews_by_set ON saved_set_reviews (set_name, id);
";
