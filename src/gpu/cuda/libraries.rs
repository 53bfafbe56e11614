//! The CUDA libraries a GPU run opens, looked for before anything touches them. A cuda build
//! made by scripts/cuda_build.sh loads them on first use (cudarc's dynamic loading), and
//! cudarc panics when one is missing; dcd asks first, so an absent driver or library, or a
//! driver too old for CUDA 13, is a [`GpuError`] naming the fix and the CPU path.

use super::GpuError;

/// CUDA major version the build targets (cudarc's `cuda-13000`, candle's and dcd's PTX).
const CUDA_MAJOR: i32 = 13;

/// A library candle's device needs, with the file names it goes by (soname first).
struct Library {
    what: &'static str,
    names: &'static [&'static str],
    fix: &'static str,
}

const LIBRARIES: [Library; 3] = [
    Library {
        what: "the NVIDIA driver",
        names: &["libcuda.so.1", "libcuda.so"],
        fix: "install the NVIDIA driver (580 or newer for CUDA 13)",
    },
    Library {
        what: "cuBLAS",
        names: &["libcublas.so.13", "libcublas.so"],
        fix: "install CUDA 13's cuBLAS (e.g. `pip install nvidia-cublas`) and put its lib \
              directory on LD_LIBRARY_PATH",
    },
    Library {
        what: "cuRAND",
        names: &["libcurand.so.10", "libcurand.so"],
        fix: "install CUDA 13's cuRAND (e.g. `pip install nvidia-curand`) and put its lib \
              directory on LD_LIBRARY_PATH",
    },
];

/// Checks that the driver and the CUDA libraries open, and that the driver runs CUDA 13.
pub fn check() -> Result<(), GpuError> {
    for lib in &LIBRARIES {
        if !lib.names.iter().any(|name| opens(name)) {
            return Err(GpuError::MissingLibrary {
                what: lib.what,
                names: lib.names.join(", "),
                fix: lib.fix,
            });
        }
    }
    let version = driver_version()?;
    if version / 1000 < CUDA_MAJOR {
        return Err(GpuError::OldDriver {
            supports: format!("{}.{}", version / 1000, version % 1000 / 10),
            needs: format!("{CUDA_MAJOR}.0"),
        });
    }
    Ok(())
}

fn opens(name: &str) -> bool {
    // SAFETY: loading a CUDA library runs only its initialisers, which have no preconditions;
    // the handle is dropped at once (cudarc opens the library again on first use).
    unsafe { libloading::Library::new(name) }.is_ok()
}

/// The CUDA version the installed driver supports, as 1000 * major + 10 * minor.
pub(super) fn driver_version() -> Result<i32, GpuError> {
    let mut version = 0;
    // SAFETY: libcuda was just found, so cudarc can resolve the symbol; the pointer is to a
    // live local. cuDriverGetVersion needs no cuInit.
    let status = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) };
    status
        .result()
        .map_err(GpuError::driver("reading the driver's CUDA version"))?;
    Ok(version)
}
