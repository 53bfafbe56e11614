//! Reviewing a saved set: a verdict (accept, reject, relabel, clear) for one item or for
//! every item of a mode, a weak label or an error sample, recorded with its reviewer. The
//! items a selector names are resolved here, against the set as saved; the store records
//! them all or none.

use crate::service::{Result, Service, ServiceError};
use crate::store::{latest_reviews, SavedItem, Verdict};

/// Longest reviewer name and reviewer's label.
const MAX_TEXT: usize = 256;

/// Which items of a set a verdict is for: those matching every selector given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemSelector {
    /// These items (each must be in the set).
    pub keys: Vec<String>,
    /// Every item (narrowed by the selectors below).
    pub all: bool,
    /// Items of this failure mode.
    pub mode: Option<usize>,
    /// Items with this weak label (`""`: those without one).
    pub weak_label: Option<String>,
    /// Items this error sample found.
    pub error_index: Option<usize>,
    /// Skip items that already have a verdict.
    pub unreviewed_only: bool,
}

impl ItemSelector {
    fn names_items(&self) -> bool {
        !self.keys.is_empty()
            || self.all
            || self.mode.is_some()
            || self.weak_label.is_some()
            || self.error_index.is_some()
    }

    fn matches(&self, item: &SavedItem) -> bool {
        self.mode.is_none_or(|m| item.mode == m)
            && self
                .weak_label
                .as_deref()
                .is_none_or(|l| item.label.as_deref().unwrap_or("") == l)
            && self.error_index.is_none_or(|e| item.found_by.contains(&e))
    }
}

/// A verdict for some items of a saved set.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewRequest {
    /// The saved set.
    pub set: String,
    /// Which of its items.
    pub select: ItemSelector,
    /// What the reviewer says.
    pub verdict: Verdict,
    /// Who says it (empty: `anonymous`).
    pub reviewer: String,
}

impl Service {
    /// Every verdict given on the saved set's items, oldest first.
    pub fn review_history(&self, set: &str) -> Result<Vec<crate::store::Review>> {
        Ok(self.store().set_review_history(set)?)
    }

    /// Records a verdict for the items `req` selects; returns how many. A key the set lacks
    /// records nothing.
    pub fn review_debug_set(&self, req: &ReviewRequest) -> Result<usize> {
        if !req.select.names_items() {
            return Err(ServiceError::InvalidArgument {
                field: "keys",
                reason:
                    "name the items to review: keys, all, a mode, a weak label or an error sample"
                        .into(),
            });
        }
        if let Verdict::Relabel(l) = &req.verdict {
            if l.trim().is_empty() || l.len() > MAX_TEXT {
                return Err(ServiceError::InvalidArgument {
                    field: "label",
                    reason: format!(
                        "a relabel needs the label to train with (1 to {MAX_TEXT} bytes, not blank)"
                    ),
                });
            }
        }
        let reviewer = req.reviewer.trim();
        if reviewer.len() > MAX_TEXT || reviewer.chars().any(char::is_control) {
            return Err(ServiceError::InvalidArgument {
                field: "reviewer",
                reason: format!(
                    "a reviewer's name is at most {MAX_TEXT} bytes without control characters"
                ),
            });
        }
        let reviewer = if reviewer.is_empty() {
            "anonymous"
        } else {
            reviewer
        };
        let store = self.store();
        let items = store.saved_set_items(&req.set)?;
        let reviewed: std::collections::HashSet<String> = if req.select.unreviewed_only {
            latest_reviews(store.set_review_history(&req.set)?)
                .into_iter()
                .map(|r| r.key)
                .collect()
        } else {
            Default::default()
        };
        let wanted: Option<std::collections::HashSet<&str>> = (!req.select.keys.is_empty())
            .then(|| req.select.keys.iter().map(String::as_str).collect());
        if wanted.is_some() {
            let present: std::collections::HashSet<&str> =
                items.iter().map(|i| i.key.as_str()).collect();
            if let Some(missing) = req
                .select
                .keys
                .iter()
                .find(|k| !present.contains(k.as_str()))
            {
                return Err(crate::store::StoreError::NotInSet {
                    set: req.set.clone(),
                    key: missing.clone(),
                }
                .into());
            }
        }
        let keys: Vec<String> = items
            .iter()
            .filter(|i| wanted.as_ref().is_none_or(|w| w.contains(i.key.as_str())))
            .filter(|i| req.select.matches(i))
            .filter(|i| !reviewed.contains(&i.key))
            .map(|i| i.key.clone())
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        Ok(store.review_set(&req.set, &keys, &req.verdict, reviewer)?)
    }
}
