//! Reviews of saved sets' items: one row per verdict (accept, reject, relabel, clear), with
//! who gave it and when, kept as history. An item's review is its latest verdict, so two
//! reviewers marking the same item at once both stay recorded and the later write wins.
//! A batch of verdicts is one transaction and names only items of the set: a batch with a
//! key the set lacks stores nothing.

use std::collections::HashSet;

use rusqlite::params;

use super::catalog::Catalog;
use super::error::StoreError;

/// What a reviewer said about an item.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "label")]
pub enum Verdict {
    /// Right for training, with the label it was handed.
    Accept,
    /// Wrong for training: the next round keeps away from it.
    Reject,
    /// Right for training under this label instead.
    Relabel(String),
    /// Withdraws the item's earlier verdict: it is unreviewed again.
    Clear,
}

impl Verdict {
    /// Its stored name.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Relabel(_) => "relabel",
            Verdict::Clear => "clear",
        }
    }

    fn label(&self) -> Option<&str> {
        match self {
            Verdict::Relabel(l) => Some(l),
            _ => None,
        }
    }

    fn from_stored(name: &str, label: Option<String>) -> rusqlite::Result<Verdict> {
        Ok(match (name, label) {
            ("accept", _) => Verdict::Accept,
            ("reject", _) => Verdict::Reject,
            ("relabel", Some(l)) => Verdict::Relabel(l),
            ("clear", _) => Verdict::Clear,
            (other, _) => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    format!("unknown review verdict {other:?}").into(),
                ))
            }
        })
    }
}

/// One verdict on one item.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Review {
    /// The item's key.
    pub key: String,
    /// What was said.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Who said it.
    pub reviewer: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl Catalog {
    /// Records `verdict` by `reviewer` for each of `keys` (each once) in the set `set`, in one
    /// transaction; every key must be an item of the set. Returns how many were recorded.
    pub fn insert_reviews(
        &mut self,
        set: &str,
        keys: &[String],
        verdict: &Verdict,
        reviewer: &str,
        at_ms: i64,
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(StoreError::catalog("recording reviews"))?;
        let in_set: HashSet<String> = {
            let mut stmt = tx
                .prepare("SELECT key FROM saved_set_items WHERE set_name = ?1")
                .map_err(StoreError::catalog("recording reviews"))?;
            let keys = stmt
                .query_map([set], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<HashSet<_>>>());
            keys.map_err(StoreError::catalog("recording reviews"))?
        };
        let mut seen = HashSet::new();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO saved_set_reviews (set_name, key, verdict, label, reviewer, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(StoreError::catalog("recording reviews"))?;
            for key in keys {
                if !in_set.contains(key) {
                    return Err(StoreError::NotInSet {
                        set: set.into(),
                        key: key.clone(),
                    });
                }
                if !seen.insert(key.as_str()) {
                    continue;
                }
                insert
                    .execute(params![
                        set,
                        key,
                        verdict.name(),
                        verdict.label(),
                        reviewer,
                        at_ms
                    ])
                    .map_err(StoreError::catalog("recording reviews"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::catalog("recording reviews"))?;
        Ok(seen.len())
    }

    /// Every verdict given on the set's items, oldest first.
    pub fn review_history(&self, set: &str) -> Result<Vec<Review>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, verdict, label, reviewer, at_ms FROM saved_set_reviews
                 WHERE set_name = ?1 ORDER BY id",
            )
            .map_err(StoreError::catalog("reading reviews"))?;
        let rows = stmt
            .query_map([set], |r| {
                Ok(Review {
                    key: r.get(0)?,
                    verdict: Verdict::from_stored(&r.get::<_, String>(1)?, r.get(2)?)?,
                    reviewer: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
        rows.map_err(StoreError::catalog("reading reviews"))
    }
}

/// Each item's latest verdict, in the order the items were first reviewed; cleared items
/// are left out.
pub fn latest_reviews(history: Vec<Review>) -> Vec<Review> {
    let mut order: Vec<String> = Vec::new();
    let mut latest: std::collections::HashMap<String, Review> = Default::default();
    for r in history {
        if !latest.contains_key(&r.key) {
            order.push(r.key.clone());
        }
        latest.insert(r.key.clone(), r);
    }
    order
        .into_iter()
        .filter_map(|k| latest.remove(&k))
        .filter(|r| r.verdict != Verdict::Clear)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(key: &str, verdict: Verdict, at_ms: i64) -> Review {
        Review {
            key: key.into(),
            verdict,
            reviewer: "r".into(),
            at_ms,
        }
    }

    #[test]
    fn the_latest_verdict_wins_and_a_clear_withdraws_it() {
        let history = vec![
            review("a", Verdict::Accept, 1),
            review("b", Verdict::Reject, 2),
            review("a", Verdict::Relabel("cat".into()), 3),
            review("b", Verdict::Clear, 4),
            review("c", Verdict::Reject, 5),
        ];
        let latest = latest_reviews(history);
        assert_eq!(
            latest,
            vec![
                review("a", Verdict::Relabel("cat".into()), 3),
                review("c", Verdict::Reject, 5)
            ]
        );
    }
}
