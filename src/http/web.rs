//! The web client: its build served at `/`, and `index.html` for every
//! other path that is not a file, so client-side routes survive a reload.
//!
//! Hashed assets (`/assets/…`) never change under their name and are cached
//! for a year; everything else (`index.html`, the service worker) is
//! revalidated on every load, so a new build reaches people on their next
//! visit. A Content-Security-Policy keeps the page to its own origin.

use std::path::Path;

use axum::{
    Router,
    http::{HeaderValue, Request, header},
    middleware::{self, Next},
    response::Response,
};
use tower_http::services::{ServeDir, ServeFile};

/// Scripts and connections stay on this origin; the CRDT engine is
/// WebAssembly (`wasm-unsafe-eval`); React sets inline styles.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The routes serving `dir`; `None` if it has no `index.html`.
pub(super) fn router<S: Clone + Send + Sync + 'static>(dir: &Path) -> Option<Router<S>> {
    let index = dir.join("index.html");
    if !index.is_file() {
        return None;
    }
    let files = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(index));
    Some(
        Router::new()
            // A missing asset is a 404, never the page: an old page asking
            // for a file of an earlier build must not cache HTML as script.
            .nest_service("/assets", ServeDir::new(dir.join("assets")))
            .fallback_service(files)
            .layer(middleware::from_fn(headers)),
    )
}

async fn headers(req: Request<axum::body::Body>, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut resp = next.run(req).await;
    let immutable = asset && resp.status().is_success();
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
