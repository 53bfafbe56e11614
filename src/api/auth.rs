//! Optional bearer-token auth: every `dcd.v1` call must carry `authorization: Bearer <key>`,
//! compared in constant time so the key cannot be guessed byte by byte from timings.

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The interceptor; with no key configured it lets everything through.
#[derive(Clone)]
pub struct BearerAuth {
    key: Option<Vec<u8>>,
}

impl BearerAuth {
    /// Requires `key` when given.
    pub fn new(key: Option<String>) -> BearerAuth {
        BearerAuth {
            key: key.map(String::into_bytes),
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(key) = &self.key else {
            return Ok(request);
        };
        let offered = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        match offered {
            Some(token) if bool::from(token.as_bytes().ct_eq(key)) => Ok(request),
            Some(_) => Err(Status::unauthenticated(
                "the API key is wrong; send the key the server was started with (--api-key / DCD_API_KEY)",
            )),
            None => Err(Status::unauthenticated(
                "this server needs an API key: send the metadata `authorization: Bearer <key>`",
            )),
        }
    }
}
