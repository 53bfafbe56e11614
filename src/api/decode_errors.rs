//! A request the server cannot decode (malformed protobuf, a string field that is not UTF-8)
//! is the caller's mistake: tonic's codec answers it INTERNAL, as if the server had failed.
//! This wrapper around a gRPC service turns exactly those answers into INVALID_ARGUMENT, so
//! clients do not retry them and alerts on INTERNAL stay meaningful.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::server::NamedService;

/// What prost's decode errors start with (`prost::DecodeError`'s Display).
const DECODE_ERROR: &str = "failed to decode Protobuf message";

/// `S` with decode failures answered INVALID_ARGUMENT.
#[derive(Clone)]
pub struct DecodeErrorsAreInvalid<S>(pub S);

impl<S: NamedService> NamedService for DecodeErrorsAreInvalid<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for DecodeErrorsAreInvalid<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            reclassify(response.headers_mut());
            Ok(response)
        })
    }
}

/// A trailers-only answer (the status in the headers, as tonic sends an error found before
/// the handler ran) of INTERNAL for a decode error becomes INVALID_ARGUMENT.
fn reclassify(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let decode = headers
        .get("grpc-message")
        .is_some_and(|m| percent_decoded(m.as_bytes()).starts_with(DECODE_ERROR.as_bytes()));
    if internal && decode {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

/// A `grpc-message` header as text (it is percent-encoded on the wire, spaces included).
fn percent_decoded(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// For errors met while reading a client stream (they reach the handler as items): the
/// same rule on a status.
pub fn reclassify_status(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::Internal && status.message().starts_with(DECODE_ERROR) {
        tonic::Status::invalid_argument(status.message().to_owned())
    } else {
        status
    }
}
