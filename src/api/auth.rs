//! Optional bearer-token auth: every `dcd.v1` and reflection call must carry
//! `authorization: Bearer <key>` (the scheme's name in any case, RFC 7235), compared in
//! constant time so the key cannot be guessed byte by byte from timings. An empty key is
//! refused when the server starts: it would let `Bearer ` with nothing after it in.

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The interceptor; with no key configured it lets everything through.
#[derive(Clone)]
pub struct BearerAuth {
    key: Option<Vec<u8>>,
}

impl BearerAuth {
    /// Requires `key` when given; an empty or blank key is refused.
    pub fn new(key: Option<String>) -> Result<BearerAuth, crate::service::ServiceError> {
        if key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(crate::service::ServiceError::InvalidArgument {
                field: "api_key",
                reason: "the API key is empty; give a non-empty --api-key (DCD_API_KEY), or leave it out to serve without auth".into(),
            });
        }
        Ok(BearerAuth {
            key: key.map(String::into_bytes),
        })
    }
}

impl BearerAuth {
    /// Whether a request offering `token` (None: no key sent) may proceed; the refusal says
    /// what was wrong.
    pub fn check(&self, token: Option<&str>) -> Result<(), &'static str> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        match token {
            Some(token) if !token.is_empty() && bool::from(token.as_bytes().ct_eq(key)) => Ok(()),
            Some(_) => Err(
                "the API key is wrong; send the key the server was started with (--api-key / DCD_API_KEY)",
            ),
            None => Err(
                "this server needs an API key: send the metadata `authorization: Bearer <key>`",
            ),
        }
    }

    /// Whether a key is required at all.
    pub fn required(&self) -> bool {
        self.key.is_some()
    }
}

/// The token of an `authorization: Bearer <token>` value (the scheme in any case).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let offered = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        self.check(offered).map_err(Status::unauthenticated)?;
        Ok(request)
    }
}
