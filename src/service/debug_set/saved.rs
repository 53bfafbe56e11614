//! Saved debug-train sets: a set built and stored under a name with a manifest that rebuilds
//! it exactly — the pool as it was (rows, identity, backbone and a digest of its weights),
//! every request parameter, the error samples, negatives and held-out inputs as the vectors
//! they resolved to (with a digest of what was sent), the dcd version and the time. On an
//! unchanged pool the manifest's request gives the same items in the same order. Sets are
//! listed, read back with their items, compared (added, removed, relabelled) and deleted; a
//! pool's sets go with it.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{inputs_of, PoolAtSave, ReviewCarry, SavedInput, SetManifest};
use super::rounds::round_of_manifest;
use super::{DebugItem, DebugSetRequest, DebugSetResult};
use crate::service::{QueryInput, Result, Service, ServiceError};
use crate::store::{latest_reviews, PoolRecord, Review, SavedItem, SavedSet};
use crate::types::hex;

/// A saved set read back.
#[derive(Clone, Debug, Serialize)]
pub struct SavedDebugSet {
    /// Its record.
    pub record: SavedSet,
    /// How it was built.
    pub manifest: SetManifest,
    /// What the build reported (the result without its items).
    pub summary: serde_json::Value,
    /// Its items, in order.
    pub items: Vec<SavedItem>,
    /// Each reviewed item's latest verdict (cleared ones left out), in the set's order.
    pub reviews: Vec<Review>,
}

/// What changed from one saved set to another, by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SetDiff {
    /// Items of the second set only.
    pub added: Vec<SavedItem>,
    /// Items of the first set only.
    pub removed: Vec<SavedItem>,
    /// Items in both whose training label changed: (first, second).
    pub relabelled: Vec<(SavedItem, SavedItem)>,
}

impl Service {
    /// Builds a debug-train set and saves it as `name` (with `parent`, the round it
    /// follows: `from_set` where not given), manifest and items in one commit. Returns the
    /// set and its record.
    pub fn build_and_save_debug_set(
        &self,
        req: &DebugSetRequest,
        name: &str,
        parent: Option<&str>,
    ) -> Result<(DebugSetResult, SavedSet)> {
        crate::store::Store::check_set_name(name)?;
        let parent = match (parent, req.from_set.as_deref()) {
            (Some(p), Some(f)) if p != f => {
                return Err(ServiceError::InvalidArgument {
                    field: "parent",
                    reason: format!(
                    "a round built from_set {f:?} follows that set; leave parent out or give {f:?}"
                ),
                })
            }
            (p, f) => p.or(f),
        };
        if let Some(p) = parent {
            self.store().saved_set(p)?;
        }
        // Refused before any work: a name that is taken or cannot be used.
        match self.store().saved_set(name) {
            Ok(_) => return Err(crate::store::StoreError::SetExists { name: name.into() }.into()),
            Err(crate::store::StoreError::SetNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let (manifest, resolved) = self.manifest_of(req)?;
        let mut result = self.build_set(&resolved)?;
        result.request.from_set = req.from_set.clone();
        result.round = round_of_manifest(&manifest);
        let mut summary = result.clone();
        summary.items.clear();
        let record = SavedSet {
            name: name.into(),
            pool: req.pool.clone(),
            parent: parent.map(str::to_owned),
            created_at: manifest.created_at,
            items: result.items.len() as u64,
            manifest: to_json(&manifest)?,
            summary: to_json(&summary)?,
        };
        let items: Vec<SavedItem> = result.items.iter().map(saved_item).collect();
        self.store().save_set(&record, &items)?;
        Ok((result, record))
    }

    /// The saved set `name`, with its manifest, summary and items.
    pub fn saved_debug_set(&self, name: &str) -> Result<SavedDebugSet> {
        let record = self.store().saved_set(name)?;
        let items = self.store().saved_set_items(name)?;
        let mut reviews = latest_reviews(self.store().set_review_history(name)?);
        let position: HashMap<&str, usize> = items
            .iter()
            .enumerate()
            .rev()
            .map(|(i, it)| (it.key.as_str(), i))
            .collect();
        reviews.sort_by_key(|r| position.get(r.key.as_str()).copied());
        let unreadable = |what: &str, e: serde_json::Error| ServiceError::Internal {
            what: format!("the {what} of saved set {name:?} cannot be read: {e}"),
        };
        Ok(SavedDebugSet {
            manifest: serde_json::from_str(&record.manifest)
                .map_err(|e| unreadable("manifest", e))?,
            summary: serde_json::from_str(&record.summary).map_err(|e| unreadable("summary", e))?,
            record,
            items,
            reviews,
        })
    }

    /// Every saved set (of `pool` when given), newest first.
    pub fn saved_debug_sets(&self, pool: Option<&str>) -> Result<Vec<SavedSet>> {
        Ok(self.store().saved_sets(pool)?)
    }

    /// Deletes the saved set `name` (its rounds keep their own items; their parent is gone).
    pub fn delete_saved_debug_set(&self, name: &str) -> Result<()> {
        Ok(self.store().delete_saved_set(name)?)
    }

    /// What changed from saved set `a` to saved set `b`, by key.
    pub fn diff_saved_debug_sets(&self, a: &str, b: &str) -> Result<SetDiff> {
        let (a, b) = (
            self.store().saved_set_items(a)?,
            self.store().saved_set_items(b)?,
        );
        Ok(diff(&a, &b))
    }

    /// Builds the saved set `name` again from its manifest (nothing is saved). On the pool
    /// as it was, the items are the saved ones, in the same order.
    pub fn rebuild_saved_debug_set(&self, name: &str) -> Result<DebugSetResult> {
        let saved = self.saved_debug_set(name)?;
        let mut result = self.build_set(&self.manifest_request(&saved.manifest)?)?;
        result.request.from_set = saved.manifest.request.from_set.clone();
        result.round = round_of_manifest(&saved.manifest);
        Ok(result)
    }

    /// The request a manifest rebuilds: its parameters, its inputs as their vectors, and
    /// what the reviews carried.
    pub(super) fn manifest_request(&self, m: &SetManifest) -> Result<DebugSetRequest> {
        let mut base = m.request.clone();
        base.errors_pool = None;
        (base.errors, base.negatives, base.holdout) = inputs_of(m);
        self.with_carry(&base, &m.carry)
    }

    /// The manifest of `req` on its pool now, and `req` with every input replaced by the
    /// vector it resolves to (what the manifest rebuilds).
    fn manifest_of(&self, req: &DebugSetRequest) -> Result<(SetManifest, DebugSetRequest)> {
        let (round, carry, inherited_inputs) = match &req.from_set {
            Some(parent) => self.round_of(req, parent)?,
            None => (req.clone(), ReviewCarry::default(), false),
        };
        let req = &round;
        let handle = self.pool(&req.pool)?;
        let key_pool = match &req.errors_pool {
            Some(name) if name != &req.pool => {
                let other = self.pool(name)?;
                crate::service::query::check_same_space(&handle, &other)?;
                other
            }
            _ => handle.clone(),
        };
        let mut other_pools = std::collections::BTreeMap::new();
        for (role, name) in [
            ("errors_pool", &req.errors_pool),
            ("negative_pool", &req.negative_pool),
            ("holdout_pool", &req.holdout_pool),
            ("reference_pool", &req.reference_pool),
        ] {
            if let Some(name) = name.as_ref().filter(|n| *n != &req.pool) {
                other_pools.insert(role.to_owned(), pool_at_save(&self.pool_record(name)?));
            }
        }
        let inputs: Vec<&QueryInput> = req.errors.iter().map(|e| &e.input).collect();
        let vectors = self.resolve(&handle, &key_pool, &inputs, "error samples")?;
        let errors: Vec<SavedInput> = req
            .errors
            .iter()
            .zip(vectors)
            .map(|(e, v)| SavedInput {
                label: e.truth.label.clone(),
                weight: e.truth.weight,
                ..saved_input(&e.input, v)
            })
            .collect();
        let listed = |inputs: &[QueryInput], field| -> Result<Vec<SavedInput>> {
            let vectors = self.resolve_listed(&handle, &key_pool, inputs, field)?;
            Ok(inputs
                .iter()
                .zip(vectors)
                .map(|(q, v)| saved_input(q, Ok(v)))
                .collect())
        };
        let record = handle.record();
        let mut request = req.clone();
        request.errors.clear();
        request.negatives.clear();
        request.holdout.clear();
        let manifest = SetManifest {
            dcd_version: env!("CARGO_PKG_VERSION").into(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            pool: pool_at_save(&record),
            other_pools,
            negatives: listed(&req.negatives, "negatives")?,
            holdout: listed(&req.holdout, "holdout")?,
            errors,
            request,
            carry,
            inherited_inputs,
        };
        let resolved = self.manifest_request(&manifest)?;
        Ok((manifest, resolved))
    }
}

fn saved_input(q: &QueryInput, v: std::result::Result<Vec<f32>, String>) -> SavedInput {
    let (sent, digest) = match q {
        QueryInput::Image { bytes, .. } => ("image", hex(&Sha256::digest(bytes))),
        QueryInput::Vector(v) => (
            "vector",
            hex(&Sha256::digest(bytemuck::cast_slice::<f32, u8>(v))),
        ),
        QueryInput::Key(k) => ("key", k.clone()),
    };
    let (vector, failed) = match v {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    SavedInput {
        sent: sent.into(),
        digest,
        vector,
        failed,
        label: None,
        weight: 1.0,
    }
}

fn pool_at_save(r: &PoolRecord) -> PoolAtSave {
    PoolAtSave {
        name: r.name.clone(),
        rows: r.rows,
        uid: r.uid.map(|u| hex(&u)),
        dim: r.dim,
        backbone: r.backbone.clone(),
        weights: r.weights.clone(),
        weights_sha256: r.weights.as_deref().and_then(weights_digest),
        pooling: r.pooling.clone(),
    }
}

/// SHA-256 of a weights file, computed once per (path, size, modification time): a model id
/// or a folder of files has none here.
fn weights_digest(weights: &str) -> Option<String> {
    use std::sync::{Mutex, OnceLock};
    type Seen = HashMap<(String, u64, std::time::SystemTime), String>;
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    let path = Path::new(weights);
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let id = (weights.to_owned(), meta.len(), meta.modified().ok()?);
    let seen = SEEN.get_or_init(Default::default);
    if let Some(d) = seen.lock().ok()?.get(&id) {
        return Some(d.clone());
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).ok()?;
    let digest = hex(&h.finalize());
    seen.lock().ok()?.insert(id, digest.clone());
    Some(digest)
}

fn saved_item(i: &DebugItem) -> SavedItem {
    SavedItem {
        row: i.row,
        key: i.key.clone(),
        label: i.label.clone(),
        train_label: i.train_label().map(str::to_owned),
        distance: i.best_distance,
        mode: i.mode,
        support: i.support,
        found_by: i.found_by.iter().map(|f| f.error).collect(),
    }
}

fn to_json(v: &impl Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ServiceError::Internal {
        what: format!("cannot write a saved set's record: {e}"),
    })
}

/// Items of `b` not in `a`, of `a` not in `b`, and in both with another training label; a
/// key listed twice (keep_duplicates) counts once, at its first place.
pub fn diff(a: &[SavedItem], b: &[SavedItem]) -> SetDiff {
    let first = |items: &[SavedItem]| -> HashMap<String, usize> {
        let mut at = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            at.entry(it.key.clone()).or_insert(i);
        }
        at
    };
    let (in_a, in_b) = (first(a), first(b));
    let mut out = SetDiff::default();
    for (i, it) in b.iter().enumerate() {
        if in_b[&it.key] != i {
            continue;
        }
        match in_a.get(&it.key) {
            None => out.added.push(it.clone()),
            Some(&j) if a[j].train_label != it.train_label => {
                out.relabelled.push((a[j].clone(), it.clone()))
            }
            Some(_) => {}
        }
    }
    for (i, it) in a.iter().enumerate() {
        if in_a[&it.key] == i && !in_b.contains_key(&it.key) {
            out.removed.push(it.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, label: &str) -> SavedItem {
        SavedItem {
            row: 0,
            key: key.into(),
            label: Some(label.into()),
            train_label: Some(label.into()),
            distance: 1.0,
            mode: 0,
            support: 1,
            found_by: vec![0],
        }
    }

    #[test]
    fn diff_names_added_removed_and_relabelled_once_each() {
        let a = [
            item("x", "cat"),
            item("y", "dog"),
            item("z", "dog"),
            item("x", "cat"),
        ];
        let b = [item("y", "cat"), item("w", "dog"), item("z", "dog")];
        let d = diff(&a, &b);
        let keys = |v: &[SavedItem]| v.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&d.added), ["w"]);
        assert_eq!(keys(&d.removed), ["x"]);
        assert_eq!(d.relabelled.len(), 1);
        assert_eq!(d.relabelled[0].0.train_label.as_deref(), Some("dog"));
        assert_eq!(d.relabelled[0].1.train_label.as_deref(), Some("cat"));
        assert_eq!(diff(&b, &b), SetDiff::default());
    }
}
