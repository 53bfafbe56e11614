//! The one place errors become gRPC statuses, and statuses from a server become errors: both
//! through the error's [`ErrorKind`] (each layer's `kind()` names every variant, with no
//! catch-all arm, so a new variant cannot reach a client with the wrong code).

use tonic::{Code, Status};

use crate::error::Error;
use crate::error_kind::ErrorKind;
use crate::formats::FormatError;
use crate::index::IndexError;

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

/// The gRPC code of an error: the code of its kind.
pub fn code_of(e: &Error) -> Code {
    code_of_kind(e.kind())
}

/// The gRPC code a kind of failure is answered with.
pub fn code_of_kind(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The HTTP status a kind of failure is answered with on the review page's API (the usual
/// mapping of gRPC codes: a failed precondition is the caller's to fix, 400).
pub fn http_status_of_kind(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => 400,
        ErrorKind::PermissionDenied => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::AlreadyExists => 409,
        ErrorKind::ResourceExhausted => 429,
        ErrorKind::Cancelled => 499,
        ErrorKind::DataLoss | ErrorKind::Internal => 500,
        ErrorKind::Unavailable => 503,
    }
}

/// The kind of failure a status from a server names. Codes dcd never answers with map to
/// the nearest kind: DEADLINE_EXCEEDED and ABORTED to UNAVAILABLE (retry), OUT_OF_RANGE to
/// INVALID_ARGUMENT, UNAUTHENTICATED to PERMISSION_DENIED, the rest to INTERNAL.
pub fn kind_of_code(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
        Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => ErrorKind::Unavailable,
        Code::Cancelled => ErrorKind::Cancelled,
        Code::DataLoss => ErrorKind::DataLoss,
        Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal => ErrorKind::Internal,
    }
}

/// A status from a remote server as an error of the kind its code names.
pub fn remote_error(status: Status) -> Error {
    Error::Remote {
        kind: kind_of_code(status.code()),
        message: status.message().to_owned(),
    }
}
