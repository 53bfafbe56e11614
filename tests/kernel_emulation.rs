//! dcd's CUDA kernels (`kernels/*.cu`) run on the CPU: compiled as C++ against the emulator in
//! `kernels/emulator/` (a block's threads as fibers on one OS thread, with CUDA's barriers,
//! shuffles, atomics and WMMA calls done by them), launched as `src/gpu/` launches them, and
//! checked against double-precision distances. This is what every build can check of the
//! kernels' indexing, synchronisation and selection without a GPU; their cases on a device
//! are in tests/gpu/.

use std::path::Path;
use std::process::Command;

/// Compiles `kernels/emulator/{check}.cpp` with the emulator and runs it under each of the
/// emulator's schedules (`DCD_EMU_SCHEDULE`: every thread in turn, then one warp at a time,
/// which lets a warp drift as far ahead of its block as it can); its output names every case,
/// and a failed check fails the test with the program's report and the schedule. Returns the
/// output of the first run.
fn emulate(check: &str) -> String {
    let emulator = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/emulator");
    let out = tempfile::tempdir().unwrap();
    let exe = out.path().join(check);
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let built = Command::new(&cxx)
        .args(["-std=c++20", "-O2", "-Wall", "-Wno-unknown-pragmas"])
        // CUDA code reads a uint32 as a pair of halves; nvcc allows it, so must g++ here.
        .arg("-fno-strict-aliasing")
        .arg("-include")
        .arg(emulator.join("cuda_emulator.h"))
        .arg("-I")
        .arg(emulator.join("include"))
        .arg(emulator.join(format!("{check}.cpp")))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the C++ compiler {cxx:?} ({e}): install g++ (10 or newer, for C++20) or set CXX")
        });
    assert!(
        built.status.success(),
        "compiling {check} failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut first = None;
    for schedule in ["threads", "warps"] {
        let run = Command::new(&exe)
            .env("DCD_EMU_SCHEDULE", schedule)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        println!("== schedule {schedule}\n{stdout}");
        assert!(
            run.status.success(),
            "{check} failed with DCD_EMU_SCHEDULE={schedule} ({}):\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(stdout.contains("emulator checks passed"), "{stdout}");
        first.get_or_insert(stdout);
    }
    first.expect("two schedules ran")
}

/// l2_mma.cu (f16, bf16, f32 as 3xTF32): every row within the bound listed once with its
/// distance, counts, room, filter, padding queries, partial chunks and tiles, rows without
/// 16-byte alignment; fill_tail.
/// Also: the tile shapes and shared memory the launcher uses are the kernel's own.
#[test]
fn mma_kernel_selects_the_rows_within_the_bound_on_the_cpu_emulator() {
    use dcd::gpu::mma_shape::{rows_per_tile, shared_bytes, QUERIES_PER_TILE};
    use dcd::gpu::GpuDtype;
    let out = emulate("l2_mma_check");
    for (name, dtype) in [
        ("f16", GpuDtype::F16),
        ("bf16", GpuDtype::BF16),
        ("f32", GpuDtype::F32),
    ] {
        let want = format!(
            "shape {name} rows={} shared={}",
            rows_per_tile(dtype),
            shared_bytes(dtype)
        );
        assert!(
            out.contains(&want),
            "src/gpu/mma_shape.rs says {want:?}; the kernel:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("shape queries={QUERIES_PER_TILE}")),
        "{out}"
    );
}

/// l2_topk.cu: the fused scan, the select over strided tiles (gemm plan and the mma plan's
/// sample), the wide plan's tiles, the radix merge on ties, and the exact refine, each against
/// the host's top-k.
/// Also: the list sizes and shared memory the launcher uses are the kernels' own layouts.
#[test]
fn top_k_kernels_agree_with_the_host_on_the_cpu_emulator() {
    use dcd::gpu::topk_shape::{best_bytes, list_pairs, merge_bytes, RADIX_BINS, ROUND};
    let out = emulate("l2_topk_check");
    let mut want = vec![format!("shape round={ROUND} bins={RADIX_BINS}")];
    for k in [1, 100, 128, 129, 1000, 4096] {
        want.push(format!("shape list_pairs k={k} kp={}", list_pairs(k)));
    }
    for groups in [1, 2, 4, 8] {
        for kp in [128, 1024, 4096] {
            let bytes = best_bytes(groups, kp);
            want.push(format!("shape best groups={groups} kp={kp} bytes={bytes}"));
        }
    }
    for kp in [128, 1024, 16384] {
        want.push(format!("shape merge kp={kp} bytes={}", merge_bytes(kp)));
    }
    for line in want {
        assert!(
            out.lines().any(|l| l == line),
            "src/gpu/topk_shape.rs says {line:?}; the kernels:\n{out}"
        );
    }
}
