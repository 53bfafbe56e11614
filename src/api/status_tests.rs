//! Every error variant's gRPC code and exit code, in one table: both follow from the
//! variant's kind, so a server and the command line cannot disagree about a failure.

use std::path::PathBuf;

use super::status::{code_of, code_of_kind, kind_of_code, remote_error};
use crate::error::Error;
use crate::error_kind::ErrorKind;
use crate::features::FeatureError;
use crate::formats::FormatError;
use crate::index::IndexError;
use crate::service::ServiceError;
use crate::store::StoreError;
use tonic::Code;

fn io() -> std::io::Error {
    std::io::Error::other("boom")
}

fn disk_full() -> std::io::Error {
    std::io::Error::from_raw_os_error(28) // ENOSPC
}

fn p() -> PathBuf {
    PathBuf::from("/x")
}

fn s() -> String {
    "x".to_owned()
}

/// (error, gRPC code, exit code), one row per variant.
fn table() -> Vec<(Error, Code, u8)> {
    use Code::*;
    let store = |e: StoreError, c, x| (Error::Store(e), c, x);
    let index = |e: IndexError, c, x| (Error::Index(e), c, x);
    let service = |e: ServiceError, c, x| (Error::Service(e), c, x);
    let feature = |e: FeatureError, c, x| (Error::from(e), c, x);
    let format = |e: FormatError, c, x| (Error::Format(e), c, x);
    vec![
        store(StoreError::DataDirLocked { path: p() }, Unavailable, 3),
        store(
            StoreError::InvalidPoolName {
                name: s(),
                reason: "r",
            },
            InvalidArgument,
            2,
        ),
        store(StoreError::PoolExists { name: s() }, AlreadyExists, 2),
        store(StoreError::PoolNotFound { name: s() }, NotFound, 2),
        store(StoreError::PoolDeleted { name: s() }, NotFound, 2),
        store(StoreError::JobNotFound { id: s() }, NotFound, 2),
        store(StoreError::SetNotFound { name: s() }, NotFound, 2),
        store(StoreError::SetExists { name: s() }, AlreadyExists, 2),
        store(
            StoreError::InvalidSetName {
                name: s(),
                reason: "r",
            },
            InvalidArgument,
            2,
        ),
        store(
            StoreError::InvalidDimension { dim: 0, max: 1 },
            InvalidArgument,
            2,
        ),
        store(
            StoreError::DimensionMismatch {
                pool: s(),
                expected: 1,
                got: 2,
            },
            InvalidArgument,
            2,
        ),
        store(StoreError::NonFinite { row: 0, col: 0 }, InvalidArgument, 2),
        store(
            StoreError::VectorTooLarge {
                row: 0,
                squared_norm: 1e40,
            },
            InvalidArgument,
            2,
        ),
        store(
            StoreError::InvalidItem {
                key: s(),
                reason: s(),
            },
            InvalidArgument,
            2,
        ),
        store(
            StoreError::ItemCountMismatch {
                items: 1,
                vectors: 2,
            },
            InvalidArgument,
            2,
        ),
        store(
            StoreError::DuplicateKey {
                pool: s(),
                key: s(),
            },
            AlreadyExists,
            2,
        ),
        store(
            StoreError::InvalidMetadata {
                key: s(),
                reason: s(),
            },
            InvalidArgument,
            2,
        ),
        store(
            StoreError::PoolFull {
                pool: s(),
                rows: 1,
                max: 1,
            },
            ResourceExhausted,
            3,
        ),
        store(
            StoreError::CorruptVectorFile {
                path: p(),
                reason: s(),
            },
            DataLoss,
            1,
        ),
        store(
            StoreError::TruncatedVectorFile {
                path: p(),
                found: 1,
                committed: 2,
            },
            DataLoss,
            1,
        ),
        store(StoreError::MissingItem { pool_id: 1, row: 0 }, DataLoss, 1),
        store(
            StoreError::ItemsDisagree {
                pool: s(),
                rows: 1,
                items: 2,
            },
            DataLoss,
            1,
        ),
        store(
            StoreError::CatalogUnreadable {
                path: p(),
                reason: s(),
            },
            DataLoss,
            1,
        ),
        store(
            StoreError::Catalog {
                action: "a",
                source: rusqlite::Error::InvalidQuery,
            },
            Internal,
            1,
        ),
        store(StoreError::ReadOnly { path: p() }, FailedPrecondition, 2),
        store(
            StoreError::NotWritable {
                path: p(),
                source: io(),
            },
            FailedPrecondition,
            2,
        ),
        store(
            StoreError::Io {
                path: p(),
                source: io(),
            },
            Internal,
            1,
        ),
        store(
            StoreError::Io {
                path: p(),
                source: disk_full(),
            },
            ResourceExhausted,
            3,
        ),
        index(IndexError::InvalidK { k: 0, max: 1 }, InvalidArgument, 2),
        index(
            IndexError::DimensionMismatch {
                expected: 1,
                got: 2,
                query: 0,
            },
            InvalidArgument,
            2,
        ),
        index(
            IndexError::NonFiniteQuery { query: 0, col: 0 },
            InvalidArgument,
            2,
        ),
        index(
            IndexError::VectorTooLarge {
                query: 0,
                squared_norm: 1e40,
            },
            InvalidArgument,
            2,
        ),
        index(IndexError::EmptyPool, FailedPrecondition, 2),
        index(
            IndexError::InvalidParameter {
                name: "ef",
                value: s(),
                reason: "r",
            },
            InvalidArgument,
            2,
        ),
        index(
            IndexError::AheadOfStore {
                index_rows: 2,
                pool_rows: 1,
            },
            Internal,
            1,
        ),
        index(
            IndexError::CorruptIndexFile {
                path: p(),
                reason: s(),
            },
            Internal,
            1,
        ),
        index(IndexError::Backend(s()), Internal, 1),
        index(
            IndexError::Io {
                path: p(),
                source: io(),
            },
            Internal,
            1,
        ),
        index(
            IndexError::Io {
                path: p(),
                source: disk_full(),
            },
            ResourceExhausted,
            3,
        ),
        format(FormatError::Unsupported { path: p() }, InvalidArgument, 2),
        format(
            FormatError::Malformed {
                path: p(),
                reason: s(),
            },
            InvalidArgument,
            2,
        ),
        format(
            FormatError::Io {
                path: p(),
                source: io(),
            },
            Internal,
            1,
        ),
        format(
            FormatError::Io {
                path: p(),
                source: disk_full(),
            },
            ResourceExhausted,
            3,
        ),
        feature(
            FeatureError::UnknownBackbone {
                name: s(),
                known: s(),
            },
            InvalidArgument,
            2,
        ),
        feature(
            FeatureError::WeightsNotFound {
                what: s(),
                hint: s(),
            },
            NotFound,
            2,
        ),
        feature(
            FeatureError::WeightsUnreadable {
                path: p(),
                reason: s(),
            },
            FailedPrecondition,
            2,
        ),
        feature(
            FeatureError::MissingTensor {
                name: s(),
                expected: vec![1],
                source_name: s(),
                layout: s(),
            },
            FailedPrecondition,
            2,
        ),
        feature(
            FeatureError::TensorShape {
                name: s(),
                expected: vec![1],
                found: vec![2],
                source_name: s(),
                layout: s(),
            },
            FailedPrecondition,
            2,
        ),
        feature(FeatureError::Config(s()), InvalidArgument, 2),
        feature(
            FeatureError::Tensor(candle_core::Error::Msg(s())),
            Internal,
            1,
        ),
        service(
            ServiceError::InvalidArgument {
                field: "f",
                reason: s(),
            },
            InvalidArgument,
            2,
        ),
        service(ServiceError::NoModel { pool: s() }, FailedPrecondition, 2),
        service(
            ServiceError::KeyNotFound {
                pool: s(),
                key: s(),
            },
            NotFound,
            2,
        ),
        service(
            ServiceError::IncompatiblePools {
                a: s(),
                a_space: s(),
                b: s(),
                b_space: s(),
            },
            FailedPrecondition,
            2,
        ),
        service(
            ServiceError::NothingUsable {
                what: "w",
                count: 1,
                first: s(),
            },
            InvalidArgument,
            2,
        ),
        service(
            ServiceError::PathNotAllowed {
                path: p(),
                roots: s(),
            },
            PermissionDenied,
            2,
        ),
        service(
            ServiceError::PathPermissionDenied {
                path: p(),
                reason: s(),
            },
            PermissionDenied,
            2,
        ),
        service(
            ServiceError::OverLimit {
                what: s(),
                fix: "f",
                flag: "--f",
            },
            InvalidArgument,
            2,
        ),
        service(ServiceError::Cancelled { what: "w" }, Cancelled, 1),
        service(
            ServiceError::PathUnreadable {
                path: p(),
                reason: s(),
            },
            NotFound,
            2,
        ),
        service(
            ServiceError::BadManifest {
                path: p(),
                line: 1,
                reason: s(),
            },
            InvalidArgument,
            2,
        ),
        service(
            ServiceError::NoImages {
                path: p(),
                hint: s(),
            },
            InvalidArgument,
            2,
        ),
        service(
            ServiceError::JobFinished {
                id: s(),
                state: s(),
            },
            FailedPrecondition,
            2,
        ),
        service(ServiceError::Internal { what: s() }, Internal, 1),
        service(ServiceError::ShuttingDown, Unavailable, 3),
        service(
            ServiceError::BadSetting {
                flag: "exact-plans",
                value: s(),
                reason: "r",
            },
            InvalidArgument,
            2,
        ),
        (Error::Usage(s()), InvalidArgument, 2),
        (Error::Network(s()), Unavailable, 3),
        (
            Error::io("cannot read x")(std::io::Error::from(std::io::ErrorKind::NotFound)),
            NotFound,
            2,
        ),
        (
            Error::io("cannot write x")(disk_full()),
            ResourceExhausted,
            3,
        ),
        (
            Error::io("cannot write x")(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
            PermissionDenied,
            2,
        ),
        (Error::io("cannot write x")(io()), Internal, 1),
        (
            Error::JobEnded {
                id: s(),
                state: crate::store::JobState::Cancelled,
                reason: s(),
            },
            Cancelled,
            1,
        ),
        (
            Error::JobEnded {
                id: s(),
                state: crate::store::JobState::Failed,
                reason: s(),
            },
            Internal,
            1,
        ),
        (Error::Internal(s()), Internal, 1),
        (
            Error::Remote {
                kind: ErrorKind::NotFound,
                message: s(),
            },
            NotFound,
            2,
        ),
    ]
}

#[test]
fn every_variant_has_its_code_and_exit_code() {
    for (e, code, exit) in table() {
        assert_eq!((code_of(&e), e.exit_code()), (code, exit), "{e:?}");
        // What a client receives is the same code.
        let text = e.to_string();
        assert_eq!(tonic::Status::from(e).code(), code, "{text}");
    }
}

/// The service's pass-through variants keep the kind of what they carry, and come out of
/// the service as the layer's own variant: one error, one code, whichever way it travelled.
#[test]
fn a_lower_layer_error_passes_through_the_service_unchanged() {
    let through = |e: ServiceError| {
        let kind = e.kind();
        let e = Error::from(e);
        assert_eq!(e.kind(), kind, "{e:?}");
        e
    };
    let e = through(StoreError::PoolNotFound { name: s() }.into());
    assert!(
        matches!(e, Error::Store(StoreError::PoolNotFound { .. })),
        "{e:?}"
    );
    assert_eq!(code_of(&e), Code::NotFound);
    let e = through(IndexError::EmptyPool.into());
    assert!(matches!(e, Error::Index(IndexError::EmptyPool)), "{e:?}");
    let e = through(FeatureError::Config(s()).into());
    assert!(matches!(e, Error::Feature(_)), "{e:?}");
    let e = through(ServiceError::ShuttingDown);
    assert!(
        matches!(e, Error::Service(ServiceError::ShuttingDown)),
        "{e:?}"
    );
}

#[test]
fn a_remote_status_keeps_its_kind_and_exit_code() {
    for kind in ErrorKind::ALL {
        let code = code_of_kind(kind);
        assert_eq!(kind_of_code(code), kind);
        let e = remote_error(tonic::Status::new(code, "said the server"));
        assert_eq!((e.kind(), e.exit_code()), (kind, kind.exit_code()));
        assert!(e.to_string().contains("said the server"), "{e}");
    }
    // Codes dcd never sends still land on a kind a caller can act on.
    assert_eq!(kind_of_code(Code::DeadlineExceeded), ErrorKind::Unavailable);
    assert_eq!(
        kind_of_code(Code::Unauthenticated),
        ErrorKind::PermissionDenied
    );
    assert_eq!(kind_of_code(Code::Unknown), ErrorKind::Internal);
}
