//! The one place errors become gRPC statuses. Every variant of every layer's error is named
//! here (no catch-all arm), so a new variant cannot reach a client with the wrong code.

use tonic::{Code, Status};

use crate::error::Error;
use crate::features::FeatureError;
use crate::formats::FormatError;
use crate::index::IndexError;
use crate::service::ServiceError;
use crate::store::StoreError;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        if is_disk_full(&e) {
            tracing::error!(error = %e, "the data directory's disk is full");
            let text = format!(
                "disk full: {e}; free space under the data directory (what was stored before stays stored)"
            );
            return Status::new(
                Code::ResourceExhausted,
                crate::types::clip_for_message(&text, MAX_MESSAGE_BYTES),
            );
        }
        let code = code_of(&e);
        if code == Code::Internal || code == Code::Unavailable {
            tracing::error!(error = %e, "request failed on the server side");
        }
        Status::new(
            code,
            crate::types::clip_for_message(&e.to_string(), MAX_MESSAGE_BYTES),
        )
    }
}

/// True when the error comes from a full disk (or quota): a condition of the machine that
/// clears when space is freed, so RESOURCE_EXHAUSTED rather than INTERNAL.
pub fn is_disk_full(e: &Error) -> bool {
    match e {
        Error::Store(e) => e.is_disk_full(),
        Error::Index(IndexError::Io { source, .. })
        | Error::Format(FormatError::Io { source, .. }) => crate::files::is_disk_full(source),
        _ => false,
    }
}

/// Longest error text sent: it travels in the `grpc-message` header, and clients refuse
/// header blocks beyond a few KiB (requests may echo names of any length).
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// The gRPC code of an error.
pub fn code_of(e: &Error) -> Code {
    match e {
        Error::Store(e) => store_code(e),
        Error::Index(e) => index_code(e),
        Error::Format(e) => match e {
            FormatError::Unsupported { .. } | FormatError::Malformed { .. } => {
                Code::InvalidArgument
            }
            FormatError::Io { .. } => Code::Internal,
        },
        Error::Feature(e) => feature_code(e),
        Error::Service(e) => service_code(e),
        #[cfg(feature = "cuda")]
        Error::Gpu(e) => match e {
            crate::gpu::GpuError::KTooLarge { .. } => Code::InvalidArgument,
            crate::gpu::GpuError::NoDevice { .. }
            | crate::gpu::GpuError::MissingLibrary { .. }
            | crate::gpu::GpuError::OldDriver { .. }
            | crate::gpu::GpuError::NotCuda { .. }
            | crate::gpu::GpuError::ComputeCapability { .. }
            | crate::gpu::GpuError::OutOfHalfRange(_) => Code::FailedPrecondition,
            crate::gpu::GpuError::OutOfMemory { .. } => Code::ResourceExhausted,
            // The service asks half copies of f32 pools only (NotHalfCopy is a bug), and never
            // returns Unidentified (it only stops plan timings being saved).
            crate::gpu::GpuError::Driver { .. }
            | crate::gpu::GpuError::NotHalfCopy { .. }
            | crate::gpu::GpuError::Unidentified { .. } => Code::Internal,
        },
        Error::Usage(_) => Code::InvalidArgument,
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::PoolNotFound { .. }
        | StoreError::PoolDeleted { .. }
        | StoreError::JobNotFound { .. } => Code::NotFound,
        StoreError::PoolExists { .. } | StoreError::DuplicateKey { .. } => Code::AlreadyExists,
        StoreError::InvalidPoolName { .. }
        | StoreError::InvalidDimension { .. }
        | StoreError::DimensionMismatch { .. }
        | StoreError::NonFinite { .. }
        | StoreError::VectorTooLarge { .. }
        | StoreError::InvalidItem { .. }
        | StoreError::ItemCountMismatch { .. }
        | StoreError::InvalidMetadata { .. } => Code::InvalidArgument,
        StoreError::PoolFull { .. } => Code::ResourceExhausted,
        StoreError::DataDirLocked { .. } => Code::Unavailable,
        StoreError::ReadOnly { .. } | StoreError::NotWritable { .. } => Code::FailedPrecondition,
        StoreError::CorruptVectorFile { .. }
        | StoreError::TruncatedVectorFile { .. }
        | StoreError::MissingItem { .. }
        | StoreError::ItemsDisagree { .. }
        | StoreError::CatalogUnreadable { .. } => Code::DataLoss,
        StoreError::Catalog { .. } | StoreError::Io { .. } => Code::Internal,
    }
}

fn index_code(e: &IndexError) -> Code {
    match e {
        IndexError::InvalidK { .. }
        | IndexError::DimensionMismatch { .. }
        | IndexError::NonFiniteQuery { .. }
        | IndexError::VectorTooLarge { .. }
        | IndexError::InvalidParameter { .. } => Code::InvalidArgument,
        IndexError::EmptyPool => Code::FailedPrecondition,
        IndexError::AheadOfStore { .. }
        | IndexError::CorruptIndexFile { .. }
        | IndexError::Backend(_)
        | IndexError::Io { .. } => Code::Internal,
    }
}

fn feature_code(e: &FeatureError) -> Code {
    match e {
        FeatureError::UnknownBackbone { .. } | FeatureError::Config(_) => Code::InvalidArgument,
        FeatureError::WeightsNotFound { .. } => Code::NotFound,
        FeatureError::WeightsUnreadable { .. }
        | FeatureError::MissingTensor { .. }
        | FeatureError::TensorShape { .. } => Code::FailedPrecondition,
        FeatureError::Tensor(_) => Code::Internal,
    }
}

fn service_code(e: &ServiceError) -> Code {
    match e {
        ServiceError::InvalidArgument { .. }
        | ServiceError::NothingUsable { .. }
        | ServiceError::BadManifest { .. }
        | ServiceError::NoImages { .. } => Code::InvalidArgument,
        ServiceError::NoModel { .. }
        | ServiceError::IncompatiblePools { .. }
        | ServiceError::JobFinished { .. } => Code::FailedPrecondition,
        ServiceError::KeyNotFound { .. } | ServiceError::PathUnreadable { .. } => Code::NotFound,
        ServiceError::PathNotAllowed { .. } | ServiceError::PathPermissionDenied { .. } => {
            Code::PermissionDenied
        }
        ServiceError::OverLimit { .. } => Code::InvalidArgument,
        ServiceError::Cancelled { .. } => Code::Cancelled,
        ServiceError::Internal { .. } => Code::Internal,
        ServiceError::ShuttingDown => Code::Unavailable,
    }
}
