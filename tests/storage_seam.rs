//! The storage seam holds: a second backend, written here against the traits alone (pools in
//! memory, brute-force search that filters by labels and keys itself, not by the local
//! backend's row filter), serves the same service. The same vectors give the same pool
//! details, searches and debug sets (label filter, excluded keys, listed negatives, a
//! negative pool, a reference pool with a label estimate, near-duplicate removal, a budget,
//! a distance-percentile cap) as the local store, and deleting a pool retires its handle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use dcd::debugset::{ErrorLabel, LabelPolicy};
use dcd::index::manager::{Engine, IndexStatus};
use dcd::service::storage::{Lookup, PoolRows, PoolSearch, PoolStorage, Selection, StoredPool};
use dcd::service::{
    CreatePool, DebugSetRequest, ErrorSample, QueryInput, SearchRequest, Service, ServiceError,
};
use dcd::store::{Item, JobBatch, NewItem, PoolRecord, PoolSpec, Store, StoreError};
use dcd::types::{Dtype, Matrix, Metric, Neighbor, RowId};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rand::{Rng, SeedableRng};

mod common;

const DIM: usize = 16;

/// Pools kept in memory.
#[derive(Default)]
struct MemoryStorage {
    pools: Mutex<BTreeMap<String, Arc<MemoryPool>>>,
    next_id: Mutex<i64>,
}

struct MemoryPool {
    state: RwLock<MemoryRows>,
}

struct MemoryRows {
    record: PoolRecord,
    vectors: Vec<f32>,
    items: Vec<Item>,
    retired: bool,
}

impl PoolStorage for MemoryStorage {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn create(&self, spec: &PoolSpec) -> dcd::service::Result<PoolRecord> {
        let mut pools = self.pools.lock();
        if pools.contains_key(&spec.name) {
            return Err(StoreError::PoolExists {
                name: spec.name.clone(),
            }
            .into());
        }
        let mut id = self.next_id.lock();
        *id += 1;
        let record = PoolRecord {
            id: *id,
            name: spec.name.clone(),
            dim: spec.dim,
            dtype: spec.dtype,
            metric: Metric::L2,
            backbone: spec.backbone.clone(),
            weights: spec.weights.clone(),
            pooling: spec.pooling.clone(),
            created_at: 0,
            rows: 0,
            uid: None,
        };
        pools.insert(
            spec.name.clone(),
            Arc::new(MemoryPool {
                state: RwLock::new(MemoryRows {
                    record: record.clone(),
                    vectors: Vec::new(),
                    items: Vec::new(),
                    retired: false,
                }),
            }),
        );
        Ok(record)
    }

    fn list(&self) -> dcd::service::Result<Vec<PoolRecord>> {
        Ok(self
            .pools
            .lock()
            .values()
            .map(|p| p.state.read().record.clone())
            .collect())
    }

    fn record(&self, name: &str) -> dcd::service::Result<PoolRecord> {
        Ok(self.open(name)?.record())
    }

    fn open(&self, name: &str) -> dcd::service::Result<Arc<dyn StoredPool>> {
        match self.pools.lock().get(name) {
            Some(p) => Ok(p.clone()),
            None => Err(StoreError::PoolNotFound { name: name.into() }.into()),
        }
    }

    fn delete(&self, name: &str) -> dcd::service::Result<()> {
        match self.pools.lock().remove(name) {
            Some(_) => Ok(()),
            None => Err(StoreError::PoolNotFound { name: name.into() }.into()),
        }
    }
}

impl MemoryPool {
    fn live(&self) -> dcd::service::Result<RwLockReadGuard<'_, MemoryRows>> {
        let s = self.state.read();
        if s.retired {
            return Err(StoreError::PoolDeleted {
                name: s.record.name.clone(),
            }
            .into());
        }
        Ok(s)
    }
}

impl StoredPool for MemoryPool {
    fn record(&self) -> PoolRecord {
        self.state.read().record.clone()
    }

    fn rows(&self) -> dcd::service::Result<Box<dyn PoolRows + '_>> {
        Ok(Box::new(MemoryView(self.live()?)))
    }

    fn ready(&self, _: Engine, _: bool) -> dcd::service::Result<Box<dyn PoolSearch + '_>> {
        let view = MemoryView(self.live()?);
        if view.is_empty() {
            return Err(dcd::index::IndexError::EmptyPool.into());
        }
        Ok(Box::new(view))
    }

    fn append(
        &self,
        vectors: &Matrix,
        items: &[NewItem],
        job: Option<&JobBatch<'_>>,
    ) -> dcd::service::Result<Range<u64>> {
        assert!(job.is_none(), "this backend keeps no job records");
        let mut s = self.state.write();
        let start = s.items.len() as u64;
        for (i, item) in items.iter().enumerate() {
            s.items.push(Item {
                row: (start as usize + i) as RowId,
                key: item.key.clone(),
                label: item.label.clone(),
                content_hash: item.content_hash.clone(),
                metadata: item.metadata.clone(),
            });
        }
        s.vectors.extend_from_slice(&vectors.data);
        s.record.rows = s.items.len() as u64;
        Ok(start..s.record.rows)
    }

    fn index_status(&self) -> IndexStatus {
        IndexStatus {
            indexed_rows: None,
            params: None,
            problem: Some("exact search only".into()),
        }
    }

    fn index_building(&self) -> bool {
        false
    }

    fn catch_up_index(&self, _: bool) -> dcd::service::Result<()> {
        self.live().map(|_| ())
    }

    fn retire(&self) {
        self.state.write().retired = true;
    }
}

struct MemoryView<'a>(RwLockReadGuard<'a, MemoryRows>);

impl MemoryView<'_> {
    fn row(&self, row: RowId) -> &[f32] {
        let dim = self.0.record.dim;
        &self.0.vectors[row as usize * dim..(row as usize + 1) * dim]
    }

    fn allowed(&self, row: usize, within: Option<&Selection>) -> bool {
        let Some(s) = within else { return true };
        let item = &self.0.items[row];
        let label_ok = s.labels.is_empty()
            || item
                .label
                .as_ref()
                .is_some_and(|l| s.labels.iter().any(|x| x == l));
        label_ok && !s.exclude_keys.iter().any(|k| k == &item.key)
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl PoolRows for MemoryView<'_> {
    fn record(&self) -> &PoolRecord {
        &self.0.record
    }

    fn len(&self) -> usize {
        self.0.items.len()
    }

    fn vectors(&self, rows: &[RowId]) -> dcd::service::Result<Matrix> {
        let data = rows.iter().flat_map(|&r| self.row(r).to_vec()).collect();
        Ok(Matrix::new(rows.len(), self.dim(), data))
    }

    fn items(&self, rows: &[RowId]) -> dcd::service::Result<Vec<Item>> {
        Ok(rows
            .iter()
            .map(|&r| self.0.items[r as usize].clone())
            .collect())
    }

    fn row_of_key(&self, key: &str) -> dcd::service::Result<Option<RowId>> {
        Ok(self.0.items.iter().find(|i| i.key == key).map(|i| i.row))
    }

    fn existing_keys(&self, keys: &[&str]) -> dcd::service::Result<HashSet<String>> {
        Ok(self
            .0
            .items
            .iter()
            .filter(|i| keys.contains(&i.key.as_str()))
            .map(|i| i.key.clone())
            .collect())
    }

    fn keys_by_hash(&self, hashes: &[&str]) -> dcd::service::Result<HashMap<String, String>> {
        Ok(self
            .0
            .items
            .iter()
            .filter_map(|i| {
                let h = i.content_hash.as_ref()?;
                hashes
                    .contains(&h.as_str())
                    .then(|| (h.clone(), i.key.clone()))
            })
            .collect())
    }

    fn labels_in_range(
        &self,
        from: usize,
        to: usize,
    ) -> dcd::service::Result<Vec<(RowId, Option<String>)>> {
        Ok(self.0.items[from..to.min(self.len())]
            .iter()
            .map(|i| (i.row, i.label.clone()))
            .collect())
    }

    fn label_histogram(&self) -> dcd::service::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for i in &self.0.items {
            *out.entry(i.label.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        Ok(out)
    }

    fn select(
        &self,
        labels: &[String],
        exclude_keys: &[String],
    ) -> dcd::service::Result<Option<Selection>> {
        if labels.is_empty() && exclude_keys.is_empty() {
            return Ok(None);
        }
        let excluded = exclude_keys
            .iter()
            .filter(|k| self.0.items.iter().any(|i| &i.key == *k))
            .count();
        Ok(Some(Selection {
            labels: labels.to_vec(),
            exclude_keys: exclude_keys.to_vec(),
            excluded,
            rows: None,
        }))
    }
}

impl PoolSearch for MemoryView<'_> {
    fn engine_name(&self) -> String {
        "memory".into()
    }

    fn search(
        &self,
        queries: &Matrix,
        lookup: &Lookup<'_>,
    ) -> dcd::service::Result<Vec<Vec<Neighbor>>> {
        Ok(queries
            .iter_rows()
            .map(|q| {
                let mut all: Vec<Neighbor> = (0..self.len())
                    .filter(|&r| self.allowed(r, lookup.within))
                    .map(|r| Neighbor {
                        id: r as RowId,
                        distance: l2(q, self.row(r as RowId)),
                    })
                    .collect();
                all.sort_by(|a, b| a.rank_cmp(b));
                all.truncate(lookup.k);
                all
            })
            .collect())
    }

    fn rerank(
        &self,
        queries: &Matrix,
        lists: &mut [Vec<Neighbor>],
        k: usize,
    ) -> dcd::service::Result<()> {
        for (list, q) in lists.iter_mut().zip(queries.iter_rows()) {
            for n in list.iter_mut() {
                n.distance = l2(q, self.row(n.id));
            }
            list.sort_by(|a, b| a.rank_cmp(b));
            list.truncate(k);
        }
        Ok(())
    }
}

/// Three pools of clustered vectors with weak labels (a fifth of them wrong): the pool the
/// set is drawn from, negatives, and a clean reference.
fn fill(service: &Service) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centers: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-6.0..6.0)).collect())
        .collect();
    for (name, n, noise) in [("pool", 1500, 0.2), ("negs", 200, 0.2), ("ref", 400, 0.0)] {
        service
            .create_pool(&CreatePool {
                name: name.into(),
                backbone: None,
                weights: None,
                pooling: None,
                dim: Some(DIM),
                dtype: Dtype::F32,
            })
            .unwrap();
        let mut data = Vec::new();
        let mut items = Vec::new();
        for i in 0..n {
            let c = rng.gen_range(0..centers.len());
            data.extend(centers[c].iter().map(|x| x + rng.gen_range(-1.5..1.5)));
            let label = if rng.gen::<f32>() < noise {
                (c + 1) % centers.len()
            } else {
                c
            };
            items.push(NewItem {
                key: format!("{name}/{i}"),
                label: Some(format!("class{label}")),
                ..Default::default()
            });
        }
        // Near-copies, for the near-duplicate rule.
        if name == "pool" {
            for i in 0..20 {
                let row: Vec<f32> = data[i * DIM..(i + 1) * DIM].to_vec();
                data.extend(row.iter().map(|x| x + 1e-3));
                items.push(NewItem {
                    key: format!("{name}/copy{i}"),
                    label: items[i].label.clone(),
                    ..Default::default()
                });
            }
        }
        let pool = service.pool(name).unwrap();
        pool.append(&Matrix::new(items.len(), DIM, data), &items, None)
            .unwrap();
    }
}

fn services() -> (tempfile::TempDir, Arc<Service>, Arc<Service>) {
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        dcd::app::settings(
            dcd::service::AllowedRoots::Any,
            &common::cpu_runtime(),
            None,
        )
    };
    let local = Service::open(&dir.path().join("local"), settings()).unwrap();
    let jobs = Arc::new(Store::open(&dir.path().join("memory")).unwrap());
    let memory = Service::with_storage(jobs, Box::<MemoryStorage>::default(), settings());
    fill(&local);
    fill(&memory);
    (dir, local, memory)
}

fn request(service: &Service) -> DebugSetRequest {
    let rows = service.pool("pool").unwrap();
    let errors: Vec<ErrorSample> = (0..6)
        .map(|i| {
            let v = rows.rows().unwrap().vectors(&[i * 97]).unwrap().data;
            ErrorSample {
                input: QueryInput::Vector(v.iter().map(|x| x + 0.3).collect()),
                truth: ErrorLabel {
                    label: (i % 2 == 0).then(|| format!("class{}", i % 4)),
                    weight: 1.0,
                },
            }
        })
        .collect();
    let mut req = DebugSetRequest::new("pool", errors, 40);
    req.exact = true;
    req.labels = vec!["class0".into(), "class1".into(), "class2".into()];
    req.exclude_keys = vec!["pool/3".into(), "pool/5".into(), "nope".into()];
    req.negatives = vec![QueryInput::Key("pool/11".into())];
    req.negative_pool = Some("negs".into());
    req.reference_pool = Some("ref".into());
    req.label_policy = Some(LabelPolicy::Replace);
    req.dedup_distance = Some(0.01);
    req.max_distance_percentile = Some(1.0);
    req.merge.budget = Some(60);
    req
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn a_second_backend_gives_the_local_answers() {
    let (_dir, local, memory) = services();

    let names = |s: &Service| {
        s.list_pools()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.rows))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&local), names(&memory));
    assert_eq!(
        local.pool_details("pool").unwrap().labels,
        memory.pool_details("pool").unwrap().labels
    );

    let search = SearchRequest {
        pool: "pool".into(),
        queries: vec![QueryInput::Key("pool/42".into())],
        k: 10,
        labels: vec!["class2".into()],
        exact: true,
        ef: None,
    };
    let (a, _) = local.search(&search).unwrap();
    let (b, engine) = memory.search(&search).unwrap();
    assert_eq!(engine, "memory");
    let keys = |o: &Vec<Result<Vec<dcd::service::Hit>, String>>| -> Vec<String> {
        o[0].as_ref()
            .unwrap()
            .iter()
            .map(|h| h.key.clone())
            .collect()
    };
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(keys(&a).len(), 10);

    let (a, b) = (
        local.build_debug_set(&request(&local)).unwrap(),
        memory.build_debug_set(&request(&memory)).unwrap(),
    );
    assert!(
        a.items.len() > 20,
        "{} items: {:?}",
        a.items.len(),
        a.funnel
    );
    assert_eq!(a.excluded, 2);
    assert_eq!(a.excluded, b.excluded);
    assert!(a.reference.is_some() && b.reference.is_some());
    assert!(!a.vetoes.is_empty(), "the negatives vetoed nothing");
    let set = |r: &dcd::service::DebugSetResult| -> Vec<(String, Option<String>)> {
        r.items
            .iter()
            .map(|i| (i.key.clone(), i.train_label().map(str::to_owned)))
            .collect()
    };
    assert_eq!(set(&a), set(&b));
    for (x, y) in a.items.iter().zip(&b.items) {
        assert!(close(x.best_distance, y.best_distance), "{x:?} / {y:?}");
        assert_eq!(x.gap.is_some(), y.gap.is_some());
    }
    assert_eq!(a.label_counts, b.label_counts);
    assert_eq!(
        a.vetoes.iter().map(|v| &v.negative).collect::<Vec<_>>(),
        b.vetoes.iter().map(|v| &v.negative).collect::<Vec<_>>()
    );
    // Excluded keys and labels outside the filter never come back.
    for i in &b.items {
        assert!(i.key != "pool/3" && i.key != "pool/5");
        assert_ne!(i.label.as_deref(), Some("class3"));
    }
}

#[test]
fn deleting_retires_the_handle_on_either_backend() {
    let (_dir, local, memory) = services();
    for service in [&local, &memory] {
        let old = service.pool("negs").unwrap();
        assert_eq!(service.delete_pool("negs").unwrap(), 200);
        let e = old.catch_up_index(true).unwrap_err();
        assert!(
            matches!(e, ServiceError::Store(StoreError::PoolDeleted { .. })),
            "{e}"
        );
        assert!(matches!(
            service.pool("negs").map(|_| ()).unwrap_err(),
            ServiceError::Store(StoreError::PoolNotFound { .. })
        ));
    }
}
