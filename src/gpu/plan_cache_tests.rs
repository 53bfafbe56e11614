//! Saved plan timings: what serves which pool, what a second start does, and what a bad or
//! unwritable file does (never an error beyond the measurement's own).

use std::cell::Cell;

use super::*;
use crate::gpu::plan::GpuPlan::{Fused, Gemm, Mma};

fn on(card: &str) -> MeasuredOn {
    MeasuredOn {
        card: card.into(),
        compute_capability: 90,
        driver: 13000,
        build: "dcd 0.1.0 0123456789abcdef".into(),
        copy: "f16".into(),
        dim: 384,
    }
}

fn t(batch: usize, plan: crate::gpu::plan::GpuPlan, ms: f64) -> PlanTiming {
    PlanTiming {
        batch,
        plan,
        seconds: ms / 1e3,
    }
}

/// Fused up to 2, gemm from 4, mma from 8 (k 100); gemm from 1 at k 1000.
fn timings() -> Timings {
    vec![
        (
            100,
            vec![
                t(1, Fused, 0.2),
                t(1, Gemm, 0.5),
                t(4, Fused, 0.9),
                t(4, Gemm, 0.6),
                t(8, Gemm, 0.9),
                t(8, Mma, 0.5),
            ],
        ),
        (1000, vec![t(1, Fused, 2.0), t(1, Gemm, 1.0)]),
    ]
}

#[test]
fn saved_timings_come_back_for_the_same_card_and_a_pool_of_similar_size() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        load(dir.path(), &on("H200"), 1000).unwrap(),
        Lookup::Missing
    );
    save(dir.path(), &on("H200"), 1000, &timings()).unwrap();
    let Lookup::Found(saved) = load(dir.path(), &on("H200"), 1999).unwrap() else {
        panic!("saved timings within a factor of two serve");
    };
    assert_eq!((saved.rows, &saved.timings), (1000, &timings()));
    assert!(
        saved.measured_unix > 1_700_000_000,
        "{}",
        saved.measured_unix
    );
    assert!(matches!(
        load(dir.path(), &on("H200"), 500),
        Ok(Lookup::Found(_))
    ));
    for rows in [499, 2001, 1_000_000] {
        assert_eq!(
            load(dir.path(), &on("H200"), rows).unwrap(),
            Lookup::OtherSize { rows: 1000 },
            "{rows} rows"
        );
    }
}

#[test]
fn another_card_driver_build_copy_or_dimension_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &on("H200"), 1000, &timings()).unwrap();
    let others = [
        on("H100"),
        MeasuredOn {
            compute_capability: 100,
            ..on("H200")
        },
        MeasuredOn {
            driver: 13010,
            ..on("H200")
        },
        MeasuredOn {
            build: "dcd 0.1.0 fedcba9876543210".into(),
            ..on("H200")
        },
        MeasuredOn {
            copy: "bf16".into(),
            ..on("H200")
        },
        MeasuredOn {
            dim: 768,
            ..on("H200")
        },
    ];
    for other in others {
        assert_eq!(
            load(dir.path(), &other, 1000).unwrap(),
            Lookup::Missing,
            "{other:?}"
        );
    }
}

#[test]
fn saving_replaces_its_own_entry_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &on("H200"), 1000, &timings()).unwrap();
    save(dir.path(), &on("H100"), 1000, &timings()).unwrap();
    let newer = vec![(100, vec![t(1, Mma, 0.1)])];
    save(dir.path(), &on("H200"), 4000, &newer).unwrap();
    let Lookup::Found(h200) = load(dir.path(), &on("H200"), 4000).unwrap() else {
        panic!("the newer H200 timings");
    };
    assert_eq!((h200.rows, h200.timings), (4000, newer));
    let Lookup::Found(h100) = load(dir.path(), &on("H100"), 1000).unwrap() else {
        panic!("the H100 timings stay");
    };
    assert_eq!(h100.timings, timings());
    assert!(
        !dir.path().join("gpu-plans.tmp").exists(),
        "the temp file was renamed"
    );
}

#[test]
fn timings_that_are_not_finite_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let with_nan = vec![(100, vec![t(1, Fused, 0.2), t(1, Gemm, f64::NAN)])];
    save(dir.path(), &on("H200"), 10, &with_nan).unwrap();
    let Lookup::Found(saved) = load(dir.path(), &on("H200"), 10).unwrap() else {
        panic!("saved");
    };
    assert_eq!(saved.timings, vec![(100, vec![t(1, Fused, 0.2)])]);
}

#[test]
fn the_file_names_plans_as_the_command_line_does() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &on("H200"), 10, &timings()).unwrap();
    let text = std::fs::read_to_string(path_in(dir.path())).unwrap();
    for plan in [
        "\"fused\"",
        "\"gemm\"",
        "\"mma\"",
        "\"format\": 1",
        "\"H200\"",
    ] {
        assert!(text.contains(plan), "{plan} in {text}");
    }
}

#[test]
fn a_file_that_cannot_be_read_is_reported_and_replaced_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(dir.path());
    for bad in ["{not json", r#"{"format": 2, "entries": []}"#, ""] {
        std::fs::write(&path, bad).unwrap();
        let err = load(dir.path(), &on("H200"), 10).unwrap_err().to_string();
        assert!(err.contains("gpu-plans.json"), "{err}");
        assert!(err.contains("measured again"), "{err}");
        save(dir.path(), &on("H200"), 10, &timings()).unwrap();
        assert!(matches!(
            load(dir.path(), &on("H200"), 10),
            Ok(Lookup::Found(_))
        ));
    }
}

/// A measurement that counts its calls.
fn measuring(
    calls: &Cell<usize>,
    timings: Timings,
) -> impl FnOnce() -> Result<Timings, String> + '_ {
    move || {
        calls.set(calls.get() + 1);
        Ok(timings)
    }
}

/// A start on the "H200" stand-in over `rows` rows in `dir`, whose measurement (if it runs)
/// counts itself in `calls` and gives `timings`.
fn start_on_h200(
    dir: &std::path::Path,
    rows: usize,
    reuse: bool,
    calls: &Cell<usize>,
    timings: Timings,
) -> Chosen {
    choose(
        dir,
        Some(&on("H200")),
        rows,
        reuse,
        measuring(calls, timings),
    )
    .unwrap()
}

#[test]
fn a_second_start_loads_what_the_first_measured() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Cell::new(0);
    let first = start_on_h200(dir.path(), 1000, true, &calls, timings());
    assert!(matches!(
        first.source,
        Source::Measured { saved: Ok(()), .. }
    ));
    let choice = first.choice.unwrap();
    assert_eq!(choice.pick(2, 100), Fused);
    assert_eq!(choice.pick(4, 100), Gemm);
    assert_eq!(choice.pick(8, 100), Mma);
    let second = start_on_h200(dir.path(), 1200, true, &calls, vec![]);
    assert_eq!(calls.get(), 1, "the second start did not measure");
    assert!(matches!(second.source, Source::Saved { rows: 1000, .. }));
    assert_eq!(second.choice, Some(choice));
    assert_eq!(second.timings, timings());
}

#[test]
fn remeasure_a_new_size_or_a_bad_file_measures_and_saves_again() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Cell::new(0);
    let gemm_only = vec![(100, vec![t(1, Gemm, 0.1), t(1, Fused, 0.3)])];
    start_on_h200(dir.path(), 1000, true, &calls, timings());
    let again = start_on_h200(dir.path(), 1000, false, &calls, gemm_only.clone());
    let Source::Measured { why, saved } = &again.source else {
        panic!("remeasure measures")
    };
    assert!(why.contains("remeasure") && saved.is_ok(), "{why}");
    assert_eq!(again.choice.as_ref().unwrap().pick(1, 100), Gemm);
    assert!(
        matches!(load(dir.path(), &on("H200"), 1000), Ok(Lookup::Found(s)) if s.timings == gemm_only)
    );

    let grown = start_on_h200(dir.path(), 5000, true, &calls, timings());
    let Source::Measured { why, .. } = &grown.source else {
        panic!("a pool five times larger measures")
    };
    assert!(why.contains("1000 rows") && why.contains("5000"), "{why}");

    std::fs::write(path_in(dir.path()), "garbage").unwrap();
    let over_bad = start_on_h200(dir.path(), 5000, true, &calls, timings());
    let Source::Measured { why, saved } = &over_bad.source else {
        panic!("an unreadable file measures")
    };
    assert!(
        why.contains("not a plan timing file") && saved.is_ok(),
        "{why}"
    );
    assert_eq!(calls.get(), 4);
    assert!(matches!(
        load(dir.path(), &on("H200"), 5000),
        Ok(Lookup::Found(_))
    ));
}

#[test]
fn without_knowing_the_build_it_measures_and_does_not_save() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Cell::new(0);
    let chosen = choose(dir.path(), None, 1000, true, measuring(&calls, timings())).unwrap();
    assert!(chosen.choice.is_some());
    let Source::Measured { saved, .. } = &chosen.source else {
        panic!("measured")
    };
    assert!(
        matches!(saved, Err(PlanCacheError::UnknownBuild(_))),
        "{saved:?}"
    );
    assert!(!path_in(dir.path()).exists());
}

#[test]
fn a_failed_or_empty_measurement_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let failed = choose(dir.path(), Some(&on("H200")), 10, true, || {
        Err::<Timings, _>("driver gone".to_string())
    });
    assert_eq!(failed.unwrap_err(), "driver gone");
    let calls = Cell::new(0);
    let empty = start_on_h200(dir.path(), 10, true, &calls, vec![(100, vec![])]);
    assert_eq!(
        empty.choice, None,
        "nothing timed, the choice in force stays"
    );
    assert!(!path_in(dir.path()).exists());
}

#[test]
fn an_unwritable_folder_keeps_the_measurement_for_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no such pool");
    let calls = Cell::new(0);
    let chosen = start_on_h200(&missing, 10, true, &calls, timings());
    assert!(chosen.choice.is_some());
    let Source::Measured { saved: Err(e), .. } = &chosen.source else {
        panic!("saving into a missing folder fails")
    };
    assert!(e.to_string().contains("no such pool"), "{e}");
}

#[test]
fn plan_modes_parse_and_name_the_fix() {
    assert_eq!("builtin".parse(), Ok(PlanMode::Builtin));
    assert_eq!("measure".parse(), Ok(PlanMode::Measure));
    assert_eq!("remeasure".parse(), Ok(PlanMode::Remeasure));
    let err = "fastest".parse::<PlanMode>().unwrap_err();
    assert!(err.contains("builtin, measure, remeasure"), "{err}");
}

#[test]
fn the_build_identity_is_this_binary_and_stable() {
    let id = build_identity().expect("a test binary can read itself");
    assert!(
        id.starts_with(concat!("dcd ", env!("CARGO_PKG_VERSION"), " ")),
        "{id}"
    );
    let digest = id.rsplit(' ').next().unwrap();
    assert_eq!(digest.len(), 16);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(build_identity(), Some(id));
}
