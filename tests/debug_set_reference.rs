//! A trusted reference pool through the real gRPC server. Four classes; the failing slice is
//! every class shifted the same way; the reference holds clean, correctly labelled items.
//! Every item of a set gets its exact gap to the reference and where that ranks in the pool;
//! `min_gap_percentile` drops exactly the candidates under it; the label estimate fitted on
//! the reference (and the labelled error samples) cleans the weak labels. A reference of another
//! space, the pool itself, a missing one, an unlabelled one where a label estimate is needed,
//! and gap percentiles out of range are refused with a clear code, and nothing stored changes.

mod common;

use common::TestServer;
use dcd::api::pb;
use dcd::api::ServerOptions;
use rand::{Rng, SeedableRng};
use tonic::Code;

const DIM: usize = 32;
const POOL: &str = "noisy";
const REFERENCE: &str = "training-set";
const CLASSES: [&str; 4] = ["a", "b", "c", "d"];

/// Class centres about 10 apart, and the failing slice's common shift (about 5 long).
struct Space {
    centers: Vec<Vec<f32>>,
    shift: Vec<f32>,
}

fn space(rng: &mut impl Rng) -> Space {
    let centers = (0..4)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-3.0..3.0)).collect())
        .collect();
    let shift = (0..DIM)
        .map(|i| if i % 2 == 0 { 1.25 } else { 0.0 })
        .collect();
    Space { centers, shift }
}

fn point(rng: &mut impl Rng, s: &Space, class: usize, shifted: bool) -> Vec<f32> {
    s.centers[class]
        .iter()
        .zip(&s.shift)
        .map(|(c, d)| c + if shifted { *d } else { 0.0 } + rng.gen_range(-0.5..0.5))
        .collect()
}

fn ingest_item(i: usize, pool: &str, key: String, label: &str, values: Vec<f32>) -> pb::IngestItem {
    pb::IngestItem {
        pool: if i == 0 { pool.into() } else { String::new() },
        key,
        label: label.into(),
        metadata_json: String::new(),
        content: Some(pb::ingest_item::Content::Vector(pb::Vector { values })),
        ..Default::default()
    }
}

struct Case {
    _dir: tempfile::TempDir,
    server: TestServer,
    reference: Vec<Vec<f32>>,
    pool_vectors: std::collections::HashMap<String, Vec<f32>>,
    errors: Vec<pb::ErrorSample>,
}

/// Pool: 150 clean and 75 shifted items per class, weak labels 70% right, keys
/// "<true class>/<clean|shifted>/<i>". Reference: 100 clean items per class, right labels.
/// Errors: four shifted items of "a" and four of "b", labelled.
async fn case(labelled_reference: bool) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        &dir.path().join("data"),
        dir.path(),
        ServerOptions::default(),
    )
    .await;
    let mut client = server.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let s = space(&mut rng);
    let mut pool = Vec::new();
    let mut pool_vectors = std::collections::HashMap::new();
    for (class, name) in CLASSES.iter().enumerate() {
        for j in 0..225 {
            let shifted = j >= 150;
            let weak = if rng.gen::<f32>() < 0.7 {
                class
            } else {
                (class + rng.gen_range(1..4)) % 4
            };
            let key = format!("{name}/{}/{j}", if shifted { "shifted" } else { "clean" });
            let values = point(&mut rng, &s, class, shifted);
            pool_vectors.insert(key.clone(), values.clone());
            pool.push(ingest_item(pool.len(), POOL, key, CLASSES[weak], values));
        }
    }
    let mut reference = Vec::new();
    let mut reference_items = Vec::new();
    for (class, name) in CLASSES.iter().enumerate() {
        for j in 0..100 {
            let values = point(&mut rng, &s, class, false);
            reference.push(values.clone());
            let label = if labelled_reference { name } else { "" };
            let key = format!("ref/{name}/{j}");
            reference_items.push(ingest_item(
                reference_items.len(),
                REFERENCE,
                key,
                label,
                values,
            ));
        }
    }
    common::raw_pool(&mut client, POOL, DIM).await;
    common::raw_pool(&mut client, REFERENCE, DIM).await;
    for items in [pool, reference_items] {
        let n = items.len() as u64;
        let s = client
            .ingest(tokio_stream::iter(items))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.stored, n);
    }
    let errors = (0..8)
        .map(|i| pb::ErrorSample {
            source: Some(pb::error_sample::Source::Vector(pb::Vector {
                values: point(&mut rng, &s, i % 2, true),
            })),
            label: CLASSES[i % 2].into(),
            weight: 0.0,
        })
        .collect();
    Case {
        _dir: dir,
        server,
        reference,
        pool_vectors,
        errors,
    }
}

fn request(c: &Case) -> pb::BuildDebugSetRequest {
    pb::BuildDebugSetRequest {
        pool: POOL.into(),
        errors: c.errors.clone(),
        k: 100,
        exact: true,
        reference_pool: REFERENCE.into(),
        ..Default::default()
    }
}

fn unlabelled(errors: &[pb::ErrorSample]) -> Vec<pb::ErrorSample> {
    errors
        .iter()
        .map(|e| pb::ErrorSample {
            label: String::new(),
            ..e.clone()
        })
        .collect()
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_gets_its_exact_gap_and_the_gap_rule_drops_exactly_the_near() {
    let c = case(true).await;
    let mut client = c.server.client().await;
    let plain = pb::BuildDebugSetRequest {
        label_policy: pb::LabelPolicy::Keep as i32,
        ..request(&c)
    };
    let set = client
        .build_debug_set(plain.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!set.items.is_empty());
    let clean = set
        .items
        .iter()
        .filter(|i| i.key.contains("/clean/"))
        .count();
    assert!(clean > 0, "k 100 reaches past the shifted items");
    // Gaps are the exact distances to the nearest reference item (exact engine).
    let nearest = |v: &[f32]| {
        c.reference
            .iter()
            .map(|r| l2(v, r))
            .fold(f32::INFINITY, f32::min)
    };
    for item in &set.items {
        let gap = item.gap.expect("every item has a gap");
        let truth = nearest(&c.pool_vectors[&item.key]);
        assert!(
            (gap - truth).abs() <= 1e-3 * truth.max(1.0),
            "{gap} vs {truth}"
        );
        let p = item.gap_percentile.expect("and a percentile");
        assert!((0.0..=1.0).contains(&p), "{p}");
    }
    let mean = |part: &str| {
        let ps: Vec<f32> = set
            .items
            .iter()
            .filter(|i| i.key.contains(part))
            .map(|i| i.gap_percentile.unwrap())
            .collect();
        ps.iter().sum::<f32>() / ps.len() as f32
    };
    let (shifted, near) = (mean("/shifted/"), mean("/clean/"));
    println!("mean gap percentile: shifted {shifted:.2}, clean {near:.2}");
    assert!(shifted > 0.6 && near < 0.5, "{shifted} {near}");
    let reference = set.summary.as_ref().unwrap().reference.clone().unwrap();
    assert_eq!(reference.pool, REFERENCE);
    assert_eq!(reference.items, 400);
    assert_eq!(reference.gap_sample, 900);
    // The sample is the whole pool (900 < 1000 rows): the percentile is the share of the pool
    // with a smaller gap, checked here from the vectors themselves.
    let mut all: Vec<f32> = c.pool_vectors.values().map(|v| nearest(v)).collect();
    all.sort_by(f32::total_cmp);
    for item in &set.items {
        let gap = nearest(&c.pool_vectors[&item.key]);
        let below = all.iter().filter(|&&g| g < gap).count() as f32 / all.len() as f32;
        assert!((item.gap_percentile.unwrap() - below).abs() <= 2.0 / 900.0);
    }
    let min = 0.6;
    let under = set
        .items
        .iter()
        .filter(|i| i.gap_percentile.unwrap() < min)
        .count();
    assert!(under > 0);
    let gapped = client
        .build_debug_set(pb::BuildDebugSetRequest {
            min_gap_percentile: Some(min),
            ..plain
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gapped.items.len(), set.items.len() - under);
    assert!(gapped
        .items
        .iter()
        .all(|i| i.gap_percentile.unwrap() >= min));
    // Far from the reference is where the failing slice lies.
    let share = |items: &[pb::DebugItem]| {
        items.iter().filter(|i| i.key.contains("/shifted/")).count() as f64 / items.len() as f64
    };
    let (before, after) = (share(&set.items), share(&gapped.items));
    println!("share of the failing slice: {before:.2} -> {after:.2} with the gap rule");
    assert!(after >= 0.95 && after > before, "{before} {after}");
    let funnel = gapped.summary.unwrap().funnel.unwrap();
    assert_eq!(funnel.gap as usize, under);
    assert_eq!(funnel.kept as usize, gapped.items.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_label_estimate_cleans_weak_labels() {
    let c = case(true).await;
    let mut client = c.server.client().await;
    let keep = client
        .build_debug_set(pb::BuildDebugSetRequest {
            label_policy: pb::LabelPolicy::Keep as i32,
            ..request(&c)
        })
        .await
        .unwrap()
        .into_inner();
    // Unlabelled error samples: the reference alone judges. By default it only reports
    // (keep); drop applies it.
    let reported = client
        .build_debug_set(pb::BuildDebugSetRequest {
            errors: unlabelled(&c.errors),
            ..request(&c)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reported.summary.unwrap().parameters.unwrap().label_policy,
        pb::LabelPolicy::Keep as i32
    );
    assert_eq!(reported.items.len(), keep.items.len());
    assert!(reported
        .items
        .iter()
        .all(|i| i.weak_label_plausible.is_some() && i.label_confidence.is_some()));
    let by_reference = client
        .build_debug_set(pb::BuildDebugSetRequest {
            errors: unlabelled(&c.errors),
            label_policy: pb::LabelPolicy::Drop as i32,
            ..request(&c)
        })
        .await
        .unwrap()
        .into_inner();
    let with_labels = client
        .build_debug_set(request(&c))
        .await
        .unwrap()
        .into_inner();
    let (k, r, l) = (
        common::label_accuracy(&keep.items),
        common::label_accuracy(&by_reference.items),
        common::label_accuracy(&with_labels.items),
    );
    println!(
        "label accuracy keep {k:.3} ({}), reference {r:.3} ({}), reference + labels {l:.3} ({})",
        keep.items.len(),
        by_reference.items.len(),
        with_labels.items.len()
    );
    assert!(k < 0.8, "weak labels are 30% wrong: {k}");
    assert!(r >= 0.9 && l >= 0.9, "{r} {l}");
    assert!(by_reference.items.len() * 2 > keep.items.len() / 2);
    let summary = by_reference.summary.unwrap();
    let estimate = summary.reference.unwrap().label_estimate.unwrap();
    assert_eq!(estimate.classes, CLASSES);
    assert_eq!(estimate.fitted_on, 400);
    assert_eq!(estimate.error_samples, 0);
    assert!(estimate.train_accuracy > 0.95);
    // Every error sample labelled: their vote judges all, and the probe, fine-tuned with all
    // of them, may still veto a label the vote let through.
    let reference = with_labels.summary.unwrap().reference.unwrap();
    let estimate = reference.label_estimate.unwrap();
    assert_eq!((estimate.fitted_on, estimate.error_samples), (408, 8));
    assert!(with_labels
        .items
        .iter()
        .all(|i| i.weak_label_plausible == Some(true) && i.label_confidence.is_some()));
    // ... unless the policy keeps every weak label (the first request above): then nothing
    // it says could change the set, and no probe is fitted.
    let reference = keep.summary.unwrap().reference.unwrap();
    assert!(reference.label_estimate.is_none());
    assert!(
        reference
            .no_label_estimate
            .contains("every error sample is labelled and the policy keeps every weak label"),
        "{}",
        reference.no_label_estimate
    );
    // Half labelled: the probe is fine-tuned with the labelled half and judges the rest.
    let mut mixed = c.errors.clone();
    for e in mixed.iter_mut().skip(4) {
        e.label.clear();
    }
    let mixed = client
        .build_debug_set(pb::BuildDebugSetRequest {
            errors: mixed,
            ..request(&c)
        })
        .await
        .unwrap()
        .into_inner();
    let m = common::label_accuracy(&mixed.items);
    println!("label accuracy, half the error samples labelled: {m:.3}");
    assert!(m >= 0.9, "{m}");
    let estimate = mixed
        .summary
        .unwrap()
        .reference
        .unwrap()
        .label_estimate
        .unwrap();
    assert_eq!((estimate.fitted_on, estimate.error_samples), (404, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_are_refused_and_an_unlabelled_one_still_gives_gaps() {
    let c = case(false).await;
    let mut client = c.server.client().await;
    common::raw_pool(&mut client, "narrow", 8).await;
    let count = |client: &mut pb::dcd_client::DcdClient<tonic::transport::Channel>| {
        let mut client = client.clone();
        async move {
            let pools = client
                .list_pools(pb::ListPoolsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .pools;
            pools
                .iter()
                .map(|p| (p.name.clone(), p.items))
                .collect::<Vec<_>>()
        }
    };
    let before = count(&mut client).await;
    let cases = [
        (
            "reference of another dimension",
            pb::BuildDebugSetRequest {
                reference_pool: "narrow".into(),
                ..request(&c)
            },
            Code::FailedPrecondition,
            "narrow",
        ),
        (
            "the pool itself",
            pb::BuildDebugSetRequest {
                reference_pool: POOL.into(),
                ..request(&c)
            },
            Code::InvalidArgument,
            "the pool the set is drawn from",
        ),
        (
            "no such pool",
            pb::BuildDebugSetRequest {
                reference_pool: "nowhere".into(),
                ..request(&c)
            },
            Code::NotFound,
            "nowhere",
        ),
        (
            "gap percentile above 1",
            pb::BuildDebugSetRequest {
                min_gap_percentile: Some(1.5),
                ..request(&c)
            },
            Code::InvalidArgument,
            "min_gap_percentile",
        ),
        (
            "gap percentile NaN",
            pb::BuildDebugSetRequest {
                min_gap_percentile: Some(f32::NAN),
                ..request(&c)
            },
            Code::InvalidArgument,
            "min_gap_percentile",
        ),
        (
            "gap percentile without a reference",
            pb::BuildDebugSetRequest {
                min_gap_percentile: Some(0.5),
                reference_pool: String::new(),
                ..request(&c)
            },
            Code::InvalidArgument,
            "reference",
        ),
        (
            "drop with nothing to judge by",
            pb::BuildDebugSetRequest {
                errors: unlabelled(&c.errors),
                label_policy: pb::LabelPolicy::Drop as i32,
                ..request(&c)
            },
            Code::InvalidArgument,
            "label estimate",
        ),
    ];
    for (what, req, code, says) in cases {
        let e = client.build_debug_set(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.message().contains(says), "{what}: {}", e.message());
    }
    // An unlabelled reference still gives gaps, and the summary says why there is no
    // estimate.
    let set = client
        .build_debug_set(pb::BuildDebugSetRequest {
            errors: unlabelled(&c.errors),
            ..request(&c)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!set.items.is_empty());
    assert!(set.items.iter().all(|i| i.gap.is_some()));
    let reference = set.summary.unwrap().reference.unwrap();
    assert!(reference.label_estimate.is_none());
    assert!(
        reference.no_label_estimate.contains("0 classes"),
        "{}",
        reference.no_label_estimate
    );
    assert_eq!(count(&mut client).await, before);
}
