//! The web console's files, embedded in the binary (nothing is fetched from elsewhere: a
//! gateway's LAN may have no Internet). Plain HTML, CSS and JavaScript with no build step and no
//! third-party code: a few tens of kilobytes, served with a strict Content-Security-Policy.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// Scripts and styles from the console itself only; connections to this host (the admin API,
/// the AWS APIs, MQTT over WebSocket on its own port).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            ("content-type", content_type),
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/console`: the page.
pub(crate) async fn page() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `/console/{file}`: its script and style sheet.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file("text/javascript; charset=utf-8", APP_JS),
        "app.css" => file("text/css; charset=utf-8", APP_CSS),
        "" | "index.html" => file("text/html; charset=utf-8", INDEX),
        _ => (axum::http::StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
