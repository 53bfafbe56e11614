//! Errors of the GPU path: the driver's failures as values, never panics.

use crate::error_kind::ErrorKind;
use crate::index::IndexError;

/// What went wrong on the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The device could not be opened (no such device, or no working driver).
    #[error("CUDA device {ordinal} is not usable: {reason}; check `nvidia-smi`, pick another --device cuda:N, or use the CPU path (--device cpu)")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// The driver's words.
        reason: String,
    },
    /// The driver or a CUDA library is not installed where the loader looks.
    #[error("CUDA is not usable here: {what} is missing (none of {names} opens); {fix}, or use the CPU path (--device cpu)")]
    MissingLibrary {
        /// Which library.
        what: &'static str,
        /// The file names looked for.
        names: String,
        /// How to install it.
        fix: &'static str,
    },
    /// The driver predates the CUDA version the build targets.
    #[error("the NVIDIA driver supports CUDA {supports}, this dcd needs CUDA {needs}; update the driver (580 or newer), or use the CPU path (--device cpu)")]
    OldDriver {
        /// CUDA version the driver supports.
        supports: String,
        /// CUDA version the build needs.
        needs: String,
    },
    /// The GPU is older than the compute capability dcd's kernels were built for.
    #[error("{}", capability_message(*.device, *.built))]
    ComputeCapability {
        /// The GPU's, as major * 10 + minor.
        device: u32,
        /// The build's `CUDA_COMPUTE_CAP`.
        built: u32,
    },
    /// The device had no memory left for an allocation (a driver or cuBLAS one).
    #[error("the GPU ran out of memory while {what}: other processes may hold its memory (see `nvidia-smi`); free it, search fewer queries per call, or use the CPU path (--device cpu, --exact-device cpu)")]
    OutOfMemory {
        /// The operation.
        what: &'static str,
    },
    /// A pool row the half-precision copy cannot hold.
    #[error(transparent)]
    OutOfHalfRange(#[from] super::certified::OutOfRange),
    /// A certified half copy asked of rows that are not f32, or in f32.
    #[error(
        "a certified half copy holds f32 rows in f16 or bf16, not {rows} rows in {copy}: copy \
         f16 rows, or f32 rows in f32, as they are (GpuExact::new; nothing needs certifying)"
    )]
    NotHalfCopy {
        /// The copy's type asked for.
        copy: &'static str,
        /// The rows' stored type.
        rows: &'static str,
    },
    /// Something a record of where plans were timed needs could not be read.
    #[error("cannot tell {what}, so GPU plan timings cannot be matched to where they were taken")]
    Unidentified {
        /// What could not be told.
        what: &'static str,
    },
    /// A driver call failed.
    #[error("CUDA failed while {what}: {reason}")]
    Driver {
        /// The operation.
        what: &'static str,
        /// The driver's words.
        reason: String,
    },
    /// k above what one selection pass holds.
    #[error(
        "k = {k} is above the GPU path's {max}; ask for fewer neighbours or search on the CPU"
    )]
    KTooLarge {
        /// Requested k.
        k: usize,
        /// The cap.
        max: usize,
    },
    /// The tensor handed over lives elsewhere.
    #[error("the GPU index needs a CUDA device, got {device}")]
    NotCuda {
        /// What was given.
        device: String,
    },
    /// Queries, k or candidate rows the index layer refuses.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A promise between dcd's parts was broken (rows and bounds that do not belong together,
    /// lists for other queries): a bug to report.
    #[error("{what}")]
    Contract {
        /// What did not hold.
        what: String,
    },
}

/// The oldest compute capability dcd's kernels compile for (build.rs refuses a lower
/// `CUDA_COMPUTE_CAP`): bf16 and TF32 tensor-core fragments.
const MIN_COMPUTE_CAP: u32 = 80;

/// Why a GPU of capability `device` cannot run kernels built for `built`, and the way out.
fn capability_message(device: u32, built: u32) -> String {
    let dotted = |cap: u32| format!("{}.{}", cap / 10, cap % 10);
    let way_out = if device >= MIN_COMPUTE_CAP {
        format!("rebuild with CUDA_COMPUTE_CAP={device} (scripts/cuda_build.sh passes it on)")
    } else {
        format!(
            "dcd's GPU path needs compute capability {} or newer",
            dotted(MIN_COMPUTE_CAP)
        )
    };
    format!(
        "this GPU has compute capability {}, and dcd's kernels were built for {} (PTX, which \
         that capability and newer GPUs run); {way_out}, or use the CPU path (--device cpu, \
         --exact-device cpu)",
        dotted(device),
        dotted(built)
    )
}

impl GpuError {
    /// What kind of failure this is (the gRPC code and exit code follow from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            GpuError::KTooLarge { .. } => ErrorKind::InvalidArgument,
            GpuError::NoDevice { .. }
            | GpuError::MissingLibrary { .. }
            | GpuError::OldDriver { .. }
            | GpuError::NotCuda { .. }
            | GpuError::ComputeCapability { .. }
            | GpuError::OutOfHalfRange(_) => ErrorKind::FailedPrecondition,
            GpuError::OutOfMemory { .. } => ErrorKind::ResourceExhausted,
            // The service asks half copies of f32 pools only (NotHalfCopy is a bug), and never
            // returns Unidentified (it only stops plan timings being saved).
            GpuError::Index(e) => e.kind(),
            GpuError::Driver { .. }
            | GpuError::Contract { .. }
            | GpuError::NotHalfCopy { .. }
            | GpuError::Unidentified { .. } => ErrorKind::Internal,
        }
    }

    /// Wraps a driver error with the operation that failed.
    pub fn driver(what: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> GpuError {
        move |e| match e.0 {
            cudarc::driver::sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY => {
                GpuError::OutOfMemory { what }
            }
            _ => GpuError::Driver {
                what,
                reason: e.to_string(),
            },
        }
    }

    /// Wraps a cuBLAS error with the operation that failed.
    pub fn cublas(
        what: &'static str,
    ) -> impl FnOnce(cudarc::cublas::result::CublasError) -> GpuError {
        move |e| match e.0 {
            cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED => {
                GpuError::OutOfMemory { what }
            }
            _ => GpuError::Driver {
                what,
                reason: format!("{e:?}"),
            },
        }
    }
}
