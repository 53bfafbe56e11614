//! What kind of failure an error is. Every layer's error enum says which kind each of its
//! variants is (an exhaustive `kind()` beside the enum); the gRPC status code (`api::status`)
//! and the command's exit code are both derived from the kind, so the two cannot disagree.

use std::fmt;

/// The kind of a failure, named after the gRPC codes a server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request (or command line) itself is wrong: fix it and retry.
    InvalidArgument,
    /// A named thing (pool, key, job, weights file) does not exist.
    NotFound,
    /// Something with that name or key is already there.
    AlreadyExists,
    /// The request is well formed, but the system is not in a state to do it (a read-only
    /// data directory, a pool of another backbone, no usable GPU).
    FailedPrecondition,
    /// The caller may not touch that path.
    PermissionDenied,
    /// Out of space, memory or a pool's capacity: free some and retry.
    ResourceExhausted,
    /// Busy or going away (a data directory locked by another process, a server shutting
    /// down, a server that cannot be reached): retry later.
    Unavailable,
    /// Stopped on request.
    Cancelled,
    /// Stored data is damaged.
    DataLoss,
    /// A bug, or a failure of the machine (I/O, driver).
    Internal,
}

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::FailedPrecondition,
        ErrorKind::PermissionDenied,
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::Cancelled,
        ErrorKind::DataLoss,
        ErrorKind::Internal,
    ];

    /// The exit code of a command that failed this way (see [`EXIT_CODES`]).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidArgument
            | ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::FailedPrecondition
            | ErrorKind::PermissionDenied => 2,
            ErrorKind::ResourceExhausted | ErrorKind::Unavailable => 3,
            ErrorKind::Cancelled | ErrorKind::DataLoss | ErrorKind::Internal => 1,
        }
    }

    /// The name used in messages (the gRPC code's name).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::AlreadyExists => "ALREADY_EXISTS",
            ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::DataLoss => "DATA_LOSS",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The exit codes of every `dcd` command, as `--help` prints them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  an internal error, damaged data, or a cancelled job (see the message and the log)
  2  the request is wrong: a bad argument, something not found or already there, a
     precondition not met (e.g. a pool of another backbone), a path not allowed
  3  try again later: busy (data directory locked, server unavailable) or out of space,
     memory or pool capacity";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_is_in_the_table() {
        for kind in ErrorKind::ALL {
            let code = kind.exit_code();
            assert!(
                EXIT_CODES.contains(&format!("\n  {code}  ")),
                "{kind}: exit {code}"
            );
        }
    }
}
