//! The review page (`dcd serve --http-addr`): one page and its script and style, embedded in
//! the binary (no CDN, nothing fetched from elsewhere), and a JSON API under `/api` that runs
//! every call as a gRPC call runs (admitted, on the blocking pool, counted). With an API key
//! the API wants it as `authorization: Bearer <key>` or as the cookie `POST /api/session`
//! sets (so the page's thumbnails load too); the page asks for it when a call says 401.

pub mod demo;
mod routes;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use super::auth::{bearer_token, BearerAuth};
use super::{DcdApi, Shutdown};
use crate::types::hex;

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The name of the cookie that carries the key (hex) for the page's own requests.
const KEY_COOKIE: &str = "dcd_key";

/// What every handler reaches.
#[derive(Clone)]
pub(super) struct Page {
    pub(super) api: DcdApi,
    auth: BearerAuth,
    pub(super) demo: demo::Demo,
}

/// An API failure: its HTTP status, the gRPC code's name and the sentence that says what to
/// do, as JSON `{"code", "error"}`.
#[derive(Debug)]
pub(super) struct HttpError {
    status: StatusCode,
    code: String,
    message: String,
}

impl HttpError {
    pub(super) fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_ARGUMENT".into(),
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for HttpError {
    fn from(s: tonic::Status) -> HttpError {
        let kind = super::status::kind_of_code(s.code());
        HttpError {
            status: StatusCode::from_u16(super::status::http_status_of_kind(kind))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: format!("{:?}", s.code()),
            message: s.message().to_owned(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// Serves the page and its API on `listener` until `shutdown`; request bodies (uploads) up to
/// `max_body_bytes`; the demo from `demo`.
pub async fn serve(
    listener: TcpListener,
    api: DcdApi,
    auth: BearerAuth,
    max_body_bytes: usize,
    demo: demo::Demo,
    shutdown: Shutdown,
) {
    let page = Page { api, auth, demo };
    let app = router(page, max_body_bytes);
    let mut stop = shutdown;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.wait().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the review page's server stopped");
    }
}

fn router(page: Page, max_body_bytes: usize) -> Router {
    let api = routes::api()
        .route_layer(middleware::from_fn_with_state(page.clone(), require_key))
        .route("/session", post(session));
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .nest("/api", api)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(page)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The key a request offers: its bearer token, else the page's cookie.
fn offered_key(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
    {
        return Some(token.to_owned());
    }
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == KEY_COOKIE)?
        .1;
    let bytes = unhex(value)?;
    String::from_utf8(bytes).ok()
}

async fn require_key(State(page): State<Page>, request: Request, next: Next) -> Response {
    match page.auth.check(offered_key(request.headers()).as_deref()) {
        Ok(()) => next.run(request).await,
        Err(why) => HttpError {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHENTICATED".into(),
            message: why.replace("the metadata", "the header").to_owned(),
        }
        .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct SessionForm {
    key: String,
}

/// Checks a key and hands it back as a cookie only this site sends, for the page's own
/// requests (thumbnails cannot carry a header).
async fn session(State(page): State<Page>, Json(form): Json<SessionForm>) -> Response {
    match page.auth.check(Some(&form.key)) {
        Ok(()) => {
            let cookie = format!(
                "{KEY_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                hex(form.key.as_bytes())
            );
            (
                StatusCode::OK,
                [(header::SET_COOKIE, cookie)],
                Json(serde_json::json!({ "required": page.auth.required() })),
            )
                .into_response()
        }
        Err(why) => HttpError {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHENTICATED".into(),
            message: why.into(),
        }
        .into_response(),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(offered_key(&h), None);
        h.insert(header::COOKIE, "a=b; dcd_key=736563726574".parse().unwrap());
        assert_eq!(offered_key(&h).as_deref(), Some("secret"));
        h.insert(header::AUTHORIZATION, "Bearer other".parse().unwrap());
        assert_eq!(offered_key(&h).as_deref(), Some("other"));
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, "dcd_key=zz".parse().unwrap());
        assert_eq!(offered_key(&bad), None);
    }
}
