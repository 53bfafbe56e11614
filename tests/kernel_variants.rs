//! Every CPU kernel variant this machine runs, on the backbone fixtures (and the real
//! MobileNetV2 where scripts/test.sh fetched it): the process caps the
//! kernels at each instruction-set level the CPU supports in turn (AVX-512, AVX2, baseline),
//! checks the f32 models against the PyTorch references, and bf16 where AVX512-BF16 is
//! allowed — refused with the reason where it is not, as on a CPU without it. So a kernel that
//! only an older machine takes is still checked on a newer one. (The generic f32 GEMM, the
//! `gemm` crate, dispatches on its own and is not capped.) One test in its own binary: the
//! cap is process-wide.

mod common;

use candle_core::DType;
use common::backbone_fixtures::{cpu_kernel_cases, reference_cosines};
use dcd::features::cpu::math::{cap_simd, has_avx2, has_avx512, supported_levels, SimdLevel};
use dcd::features::cpu::packed::Kernel;
use dcd::features::{Backbone, LoadOptions};

#[test]
fn every_kernel_variant_this_cpu_runs_matches_the_references() {
    let levels = supported_levels();
    println!("levels this CPU runs: {levels:?}");
    for level in levels {
        cap_simd(Some(level));
        assert_eq!(has_avx512(), level == SimdLevel::Avx512, "cap {level:?}");
        assert_eq!(has_avx2(), level >= SimdLevel::Avx2, "cap {level:?}");
        for dtype in [DType::F32, DType::BF16] {
            for (backbone, weights, reference_name, pooling) in cpu_kernel_cases() {
                let opts = LoadOptions {
                    dtype,
                    pooling,
                    ..LoadOptions::default()
                };
                let loaded = Backbone::load(backbone, Some(weights.to_str().unwrap()), &opts);
                if dtype == DType::BF16 && !Kernel::Bf16.available() {
                    let err = loaded
                        .err()
                        .expect("bf16 without its kernel must be refused");
                    assert!(err.to_string().contains("--precision f32"), "{err}");
                    continue;
                }
                assert!(
                    level == SimdLevel::Avx512 || dtype == DType::F32,
                    "bf16 ran below AVX-512"
                );
                let model = loaded.unwrap();
                let min_cos = if dtype == DType::F32 { 0.9999 } else { 0.999 };
                for (r, cos) in reference_cosines(&model, reference_name)
                    .into_iter()
                    .enumerate()
                {
                    println!("{level:?} {dtype:?} {reference_name} row {r}: cosine {cos:.7}");
                    assert!(
                        cos >= min_cos,
                        "{reference_name}, kernels capped at {level:?}, {dtype:?}: cosine {cos}"
                    );
                }
            }
        }
    }
    cap_simd(None);
}
