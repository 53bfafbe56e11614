//! HNSW engines: recall against exact search, self-reachability after parallel builds,
//! incremental adds, filters, save/reload, and repair of missing, damaged or lagging files.

use dcd::index::exact::ExactIndex;
use dcd::index::graph::{HnswGraph, HnswParams};
use dcd::index::manager::{self, Engine};
use dcd::index::{AnnIndex, IndexError, RowFilter, SearchParams};
use dcd::store::{NewItem, PoolSpec, Store};
use dcd::synth::ClusterSpec;
use dcd::types::{Dtype, Matrix, Neighbor, VectorView};

const K: usize = 10;

fn data(n: usize, nq: usize, dim: usize) -> (Matrix, Matrix) {
    let spec = ClusterSpec {
        dim,
        clusters: (n / 500).max(8),
        seed: 17,
    };
    (spec.sample(n, 0), spec.sample(nq, 1))
}

fn recall(
    index: &dyn AnnIndex,
    view: VectorView<'_>,
    queries: &Matrix,
    params: &SearchParams<'_>,
) -> f64 {
    let exact = ExactIndex::build(view);
    let truth = exact
        .search_batch(
            view,
            queries,
            &SearchParams {
                ef: None,
                ..*params
            },
        )
        .unwrap();
    let got = index.search_batch(view, queries, params).unwrap();
    let hit: usize = got
        .iter()
        .zip(&truth)
        .map(|(g, t)| g.iter().filter(|n| t.iter().any(|x| x.id == n.id)).count())
        .sum();
    hit as f64 / truth.iter().map(Vec::len).sum::<usize>() as f64
}

fn sorted_ok(hits: &[Neighbor]) -> bool {
    hits.windows(2).all(|w| w[0].rank_cmp(&w[1]).is_le())
}

#[test]
fn native_graph_reaches_recall_at_default_ef_and_finds_every_point() {
    let (base, queries) = data(20_000, 300, 64);
    let view = VectorView::f32(&base.data, 64);
    let graph = HnswGraph::build(view, HnswParams::default()).unwrap();
    assert_eq!(graph.len(), 20_000);
    let r = recall(&graph, view, &queries, &SearchParams::k(K));
    assert!(r >= 0.95, "recall@10 at default ef = {r}");
    let one = graph
        .search(view, queries.row(0), &SearchParams::k(K))
        .unwrap();
    assert_eq!(one.len(), K);
    assert!(sorted_ok(&one));
    let lost = graph.unreachable_rows(view, 64);
    assert!(
        lost.is_empty(),
        "{} rows cannot find themselves: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn incremental_adds_keep_recall() {
    let (base, queries) = data(12_000, 200, 48);
    let view = VectorView::f32(&base.data, 48);
    let mut graph = HnswGraph::new(48, HnswParams::default()).unwrap();
    for end in [1, 2, 500, 6_000, 12_000] {
        graph.extend(view.prefix(end)).unwrap();
        assert_eq!(graph.len(), end);
    }
    assert!(recall(&graph, view, &queries, &SearchParams::k(K)) >= 0.95);
    assert!(graph.unreachable_rows(view, 64).is_empty());
    assert!(matches!(
        graph.extend(view.prefix(10)),
        Err(IndexError::AheadOfStore { .. })
    ));
}

#[test]
fn per_query_ef_trades_recall() {
    let (base, queries) = data(10_000, 200, 32);
    let view = VectorView::f32(&base.data, 32);
    let graph = HnswGraph::build(
        view,
        HnswParams {
            m: 8,
            ef_construction: 64,
            ..HnswParams::default()
        },
    )
    .unwrap();
    let low = recall(
        &graph,
        view,
        &queries,
        &SearchParams {
            k: K,
            ef: Some(10),
            filter: None,
        },
    );
    let high = recall(
        &graph,
        view,
        &queries,
        &SearchParams {
            k: K,
            ef: Some(400),
            filter: None,
        },
    );
    assert!(high >= low, "{high} < {low}");
    assert!(high >= 0.99, "{high}");
}

#[test]
fn filtered_search_returns_only_allowed_rows() {
    let (base, queries) = data(10_000, 100, 32);
    let view = VectorView::f32(&base.data, 32);
    let graph = HnswGraph::build(view, HnswParams::default()).unwrap();
    // Broad filter: answered by the graph. Narrow filter: answered by an exact scan.
    for modulus in [2u32, 50] {
        let filter = RowFilter::from_rows((0..10_000).filter(|r| r % modulus == 0), 10_000);
        let params = SearchParams {
            k: K,
            ef: Some(128),
            filter: Some(&filter),
        };
        for q in queries.iter_rows() {
            let hits = graph.search(view, q, &params).unwrap();
            assert_eq!(hits.len(), K);
            assert!(hits.iter().all(|h| h.id % modulus == 0));
        }
        let r = recall(&graph, view, &queries, &params);
        assert!(r >= 0.95, "filter 1/{modulus}: recall {r}");
    }
    let empty = RowFilter::from_rows([], 10_000);
    let hits = graph
        .search(
            view,
            queries.row(0),
            &SearchParams {
                k: K,
                ef: None,
                filter: Some(&empty),
            },
        )
        .unwrap();
    assert!(hits.is_empty());
}

#[test]
fn f16_vectors_index_too() {
    let (base, queries) = data(5_000, 100, 32);
    let halves = dcd::index::distance::to_f16(&base.data);
    let view = VectorView::F16 {
        data: &halves,
        dim: 32,
    };
    let graph = HnswGraph::build(view, HnswParams::default()).unwrap();
    assert!(recall(&graph, view, &queries, &SearchParams::k(K)) >= 0.95);
}

#[cfg(feature = "hnsw-rs")]
#[test]
fn hnsw_rs_engine_answers_through_the_same_trait() {
    use dcd::index::hnsw::HnswRsIndex;
    let (base, queries) = data(8_000, 100, 32);
    let view = VectorView::f32(&base.data, 32);
    let index = HnswRsIndex::build(view, HnswParams::default()).unwrap();
    assert_eq!(index.len(), 8_000);
    let r = recall(
        &index,
        view,
        &queries,
        &SearchParams {
            k: K,
            ef: Some(64),
            filter: None,
        },
    );
    assert!(r >= 0.95, "hnsw_rs recall {r}");
    let filter = RowFilter::from_rows((0..8_000).filter(|r| r % 2 == 0), 8_000);
    let hits = index
        .search(
            view,
            queries.row(0),
            &SearchParams {
                k: K,
                ef: Some(64),
                filter: Some(&filter),
            },
        )
        .unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.id % 2 == 0));
}

#[test]
fn saved_graphs_reload_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = data(4_000, 50, 16);
    let view = VectorView::f32(&base.data, 16);
    let graph = HnswGraph::build(view, HnswParams::default()).unwrap();
    let path = dir.path().join("g.graph");
    graph.save(&path).unwrap();
    let back = HnswGraph::load(&path, 16, false).unwrap();
    assert_eq!(back.params(), graph.params());
    for q in queries.iter_rows() {
        assert_eq!(
            graph.search(view, q, &SearchParams::k(K)).unwrap(),
            back.search(view, q, &SearchParams::k(K)).unwrap()
        );
    }
    let e = HnswGraph::load(&path, 17, false).err().unwrap();
    assert!(e.to_string().contains("16-d"), "{e}");

    // Memory-mapped links answer the same, save the same bytes, and grow by copying out.
    let mapped = HnswGraph::load(&path, 16, true).unwrap();
    assert!(mapped.is_mapped() && !back.is_mapped());
    for q in queries.iter_rows() {
        assert_eq!(
            back.search(view, q, &SearchParams::k(K)).unwrap(),
            mapped.search(view, q, &SearchParams::k(K)).unwrap()
        );
    }
    let again = dir.path().join("again.graph");
    mapped.save(&again).unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&path).unwrap()
    );
    let mut more = base.data.clone();
    more.extend(dcd::synth::uniform(500, 16, 9).data);
    let mut grown = HnswGraph::load(&path, 16, true).unwrap();
    grown.extend(VectorView::f32(&more, 16)).unwrap();
    assert!(!grown.is_mapped());
    assert_eq!(grown.len(), 4_500);

    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        HnswGraph::load(&path, 16, false),
        Err(IndexError::CorruptIndexFile { .. })
    ));
    assert!(matches!(
        HnswGraph::load(&path, 16, true),
        Err(IndexError::CorruptIndexFile { .. })
    ));
    std::fs::write(&path, &bytes[..100]).unwrap();
    assert!(matches!(
        HnswGraph::load(&path, 16, false),
        Err(IndexError::CorruptIndexFile { .. })
    ));
}

fn pool_with(store: &Store, name: &str, m: &Matrix) -> dcd::store::Pool {
    store
        .create_pool(&PoolSpec {
            weights: None,
            pooling: None,
            name: name.into(),
            dim: m.dim,
            dtype: Dtype::F32,
            backbone: None,
        })
        .unwrap();
    let mut pool = store.open_pool(name).unwrap();
    let items: Vec<NewItem> = (0..m.rows)
        .map(|i| NewItem {
            key: format!("k{i}"),
            ..NewItem::default()
        })
        .collect();
    pool.append(m, &items).unwrap();
    pool
}

#[test]
fn the_manager_catches_up_and_rebuilds_missing_or_damaged_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (base, queries) = data(3_000, 50, 16);
    let first = Matrix::new(2_000, 16, base.data[..2_000 * 16].to_vec());
    let mut pool = pool_with(&store, "m", &first);
    let path = manager::graph_path(&pool);

    let index = manager::open(&pool, Engine::Native, HnswParams::default()).unwrap();
    assert_eq!(index.len(), 2_000);
    assert!(path.exists(), "a built index is saved");
    assert_eq!(manager::status(&pool).indexed_rows, Some(2_000));

    // The store grows; the saved index lags and is caught up on open.
    let rest = Matrix::new(1_000, 16, base.data[2_000 * 16..].to_vec());
    let items: Vec<NewItem> = (2_000..3_000)
        .map(|i| NewItem {
            key: format!("k{i}"),
            ..NewItem::default()
        })
        .collect();
    pool.append(&rest, &items).unwrap();
    let index = manager::open(&pool, Engine::Native, HnswParams::default()).unwrap();
    assert_eq!(index.len(), 3_000);
    assert_eq!(manager::status(&pool).indexed_rows, Some(3_000));
    assert!(
        recall(
            index.as_ref(),
            pool.vectors(),
            &queries,
            &SearchParams::k(K)
        ) >= 0.95
    );

    // Damaged, foreign, empty and missing files are rebuilt, never an error.
    let good = std::fs::read(&path).unwrap();
    let mut damaged = good.clone();
    damaged[200] ^= 1;
    for bytes in [damaged, b"garbage".to_vec(), Vec::new()] {
        std::fs::write(&path, &bytes).unwrap();
        let index = manager::open(&pool, Engine::Native, HnswParams::default()).unwrap();
        assert_eq!(index.len(), 3_000);
        assert!(
            HnswGraph::load(&path, 16, false).is_ok(),
            "the rebuilt index is saved again"
        );
    }
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        manager::open(&pool, Engine::Native, HnswParams::default())
            .unwrap()
            .len(),
        3_000
    );
    let mapped = manager::open_with(&pool, Engine::Native, HnswParams::default(), true).unwrap();
    assert_eq!(mapped.len(), 3_000);
    assert!(
        recall(
            mapped.as_ref(),
            pool.vectors(),
            &queries,
            &SearchParams::k(K)
        ) >= 0.95
    );

    // An index from a bigger pool (ahead of the store) is rebuilt too.
    let other = tempfile::tempdir().unwrap();
    let big = Matrix::new(3_000, 16, base.data.clone());
    HnswGraph::build(VectorView::f32(&big.data, 16), HnswParams::default())
        .unwrap()
        .save(&other.path().join("g"))
        .unwrap();
    let store2 = Store::open(other.path()).unwrap();
    let small = pool_with(&store2, "s", &first);
    std::fs::copy(other.path().join("g"), manager::graph_path(&small)).unwrap();
    assert_eq!(
        manager::open(&small, Engine::Native, HnswParams::default())
            .unwrap()
            .len(),
        2_000
    );

    let engines = [
        Engine::Exact,
        #[cfg(feature = "hnsw-rs")]
        Engine::HnswRs,
    ];
    for engine in engines {
        assert_eq!(
            manager::open(&pool, engine, HnswParams::default())
                .unwrap()
                .len(),
            3_000
        );
    }
}

#[test]
fn empty_indexes_and_bad_parameters_are_clear_errors() {
    let graph = HnswGraph::new(8, HnswParams::default()).unwrap();
    let e = graph
        .search(VectorView::f32(&[], 8), &[0.0; 8], &SearchParams::k(1))
        .unwrap_err();
    assert!(matches!(e, IndexError::EmptyPool), "{e}");
    for p in [
        HnswParams {
            m: 1,
            ..HnswParams::default()
        },
        HnswParams {
            ef_construction: 0,
            ..HnswParams::default()
        },
    ] {
        let e = HnswGraph::new(8, p).err().unwrap();
        assert!(matches!(e, IndexError::InvalidParameter { .. }), "{e}");
    }
}
