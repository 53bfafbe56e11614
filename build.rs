//! Build steps:
//! - `proto/dcd/v1/*.proto` → prost messages, tonic client and server, and the descriptor set
//!   for gRPC reflection, with protox (pure Rust, no protoc binary), into OUT_DIR.
//! - with feature `cuda`: `kernels/*.cu` → PTX in OUT_DIR with nvcc (found through `NVCC`,
//!   `CUDA_ROOT`/`CUDA_PATH`, or PATH), for compute capability `CUDA_COMPUTE_CAP` (default 90:
//!   H100/H200; at least 80, for the bf16 and TF32 tensor-core fragments). PTX, not a cubin,
//!   so newer GPUs JIT-compile it; the crate learns the capability as `DCD_CUDA_COMPUTE_CAP` and
//!   refuses older GPUs with that name.
//! - with feature `cuda`: the CUDA runtime that candle-kernels asks for (`-lcudart`, for its
//!   precompiled MoE kernels) is linked statically from the toolkit's `libcudart_static.a`, so
//!   the binary needs no CUDA library to start (see scripts/cuda_env.sh for the driver side).

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(["dcd/v1/dcd.proto"], ["proto"])?;
    std::fs::write(out.join("dcd_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_kernels(&out)?;
        link_static_cudart(&out)?;
    }
    Ok(())
}

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return p.into();
    }
    for var in ["CUDA_ROOT", "CUDA_PATH"] {
        if let Some(root) = std::env::var_os(var) {
            let p = Path::new(&root).join("bin").join("nvcc");
            if p.exists() {
                return p;
            }
        }
    }
    "nvcc".into()
}

/// The oldest compute capability the kernels compile for (A100).
const MIN_COMPUTE_CAP: u32 = 80;

fn compile_kernels(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    for var in ["NVCC", "CUDA_ROOT", "CUDA_PATH", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=kernels");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap: u32 = cap
        .trim()
        .replace('.', "")
        .parse()
        .map_err(|_| format!("CUDA_COMPUTE_CAP={cap}: give a number like 90"))?;
    if cap < MIN_COMPUTE_CAP {
        return Err(format!(
            "CUDA_COMPUTE_CAP={cap}: dcd's kernels need compute capability {}.{} or newer (bf16 and TF32 \
             tensor-core fragments); give {MIN_COMPUTE_CAP} or more, or build without --features cuda",
            MIN_COMPUTE_CAP / 10,
            MIN_COMPUTE_CAP % 10
        )
        .into());
    }
    println!("cargo:rustc-env=DCD_CUDA_COMPUTE_CAP={cap}");
    let nvcc = nvcc();
    let mut sources: Vec<PathBuf> = std::fs::read_dir("kernels")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    sources.retain(|p| p.extension().is_some_and(|e| e == "cu"));
    sources.sort();
    for src in sources {
        let stem = src.file_stem().expect("a .cu file has a stem");
        let ptx = out.join(stem).with_extension("ptx");
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(&src)
            .status()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}): the cuda feature needs nvcc; set CUDA_ROOT or NVCC (scripts/check_cuda.sh installs one from PyPI)",
                    nvcc.display()
                )
            })?;
        if !status.success() {
            return Err(format!("nvcc failed on {}", src.display()).into());
        }
    }
    Ok(())
}

/// Offers `libcudart_static.a` under the name `libcudart.a` in a directory of our own, searched
/// before the system's: the linker then resolves candle-kernels' `-lcudart` to the static
/// runtime. Without one (an unusual toolkit layout) the shared runtime is linked, as before.
fn link_static_cudart(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let roots = ["CUDA_ROOT", "CUDA_PATH"]
        .iter()
        .filter_map(|var| std::env::var_os(var).map(PathBuf::from))
        .chain(
            nvcc()
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf),
        );
    let found = roots
        .flat_map(|root| ["lib64", "lib"].map(|lib| root.join(lib).join("libcudart_static.a")))
        .find(|p| p.exists());
    let Some(archive) = found else {
        println!(
            "cargo:warning=no libcudart_static.a next to nvcc; the binary will need libcudart.so at run time"
        );
        return Ok(());
    };
    let dir = out.join("cudart-static");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&archive, dir.join("libcudart.a"))?;
    println!("cargo:rerun-if-changed={}", archive.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    Ok(())
}
