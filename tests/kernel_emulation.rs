//! dcd's tensor-core kernel (`kernels/l2_mma.cu`) run on the CPU: compiled as C++ against the
//! emulator in `kernels/emulator/` (CUDA's thread, barrier, atomic and WMMA calls done by OS
//! threads) and checked there against double-precision distances. This is what every build
//! can check of the kernel's indexing, synchronisation and selection without a GPU; the same
//! kernel's cases on a device are in tests/gpu.rs.

use std::path::Path;
use std::process::Command;

#[test]
fn mma_kernel_selects_the_rows_within_the_bound_on_the_cpu_emulator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let emulator = root.join("kernels/emulator");
    let out = tempfile::tempdir().unwrap();
    let exe = out.path().join("l2_mma_check");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let built = Command::new(&cxx)
        .args(["-std=c++20", "-O2", "-pthread", "-Wall", "-Wno-unknown-pragmas"])
        .arg("-include")
        .arg(emulator.join("cuda_emulator.h"))
        .arg("-I")
        .arg(emulator.join("include"))
        .arg(emulator.join("l2_mma_check.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the C++ compiler {cxx:?} ({e}): install g++ (10 or newer, for C++20) or set CXX")
        });
    assert!(
        built.status.success(),
        "compiling the emulated kernel failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    print!("{stdout}");
    assert!(
        run.status.success(),
        "the emulated kernel failed its checks ({}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("all l2_mma emulator checks passed"));
}
