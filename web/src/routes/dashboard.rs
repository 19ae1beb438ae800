//! The web dashboard: three files compiled into the binary (no CDN, no
//! external fonts), served at `/` and `/assets/`. The page talks only to
//! the public HTTP API with the user's key; a strict content security
//! policy lets it load nothing from elsewhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::PathParams;

const INDEX: &str = include_str!("../../assets/index.html");
const SCRIPT: &str = include_str!("../../assets/app.js");
const STYLE: &str = include_str!("../../assets/app.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Served from memory: cheap to revalidate, and an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(super) async fn index() -> Response {
    file(INDEX, "text/html; charset=utf-8")
}

pub(super) async fn asset(PathParams(name): PathParams<String>) -> Result<Response, ApiError> {
    match name.as_str() {
        "app.js" => Ok(file(SCRIPT, "text/javascript; charset=utf-8")),
        "app.css" => Ok(file(STYLE, "text/css; charset=utf-8")),
        _ => Err(ApiError::not_found("file", &name)),
    }
}

/// Browsers ask for it; there is none.
pub(super) async fn no_icon() -> StatusCode {
    StatusCode::NO_CONTENT
}
