//! The console's static files, built into the binary: htmx (vendored, its
//! hash pinned here and in the page's `integrity` attribute) and the CSS.

use super::view::error_page;
use crate::error::Error;
use axum::extract::Path;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

/// htmx's file name (its version in it, so a new one is a new URL).
pub const HTMX: &str = "htmx-2.0.11.min.js";
/// The subresource-integrity hash of [`HTMX`] (sha384, base64).
pub const HTMX_SRI: &str =
    "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg";
static HTMX_JS: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");
static CONSOLE_CSS: &[u8] = include_bytes!("../../assets/console.css");
/// The console's own script (a few lines: relative times, copy buttons).
static CONSOLE_JS: &[u8] = include_bytes!("../../assets/console.js");

/// `stem-<digest>.ext`: a name that changes with the content.
fn named(stem: &str, ext: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(body));
    format!("{stem}-{}.{ext}", &digest[..12])
}

static CSS_NAME: LazyLock<String> = LazyLock::new(|| named("console", "css", CONSOLE_CSS));
static JS_NAME: LazyLock<String> = LazyLock::new(|| named("console", "js", CONSOLE_JS));

/// The stylesheet's file name.
pub fn css() -> &'static str {
    &CSS_NAME
}

/// The console script's file name.
pub fn js() -> &'static str {
    &JS_NAME
}

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        HTMX => (HTMX_JS, "text/javascript; charset=utf-8"),
        f if f == css() => (CONSOLE_CSS, "text/css; charset=utf-8"),
        f if f == js() => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        _ => return error_page(None, Error::invalid_path()),
    };
    let mut r = body.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(kind).expect("a content type"),
    );
    // The names change with the content.
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha384};

    #[test]
    fn the_vendored_htmx_is_the_one_whose_hash_is_pinned() {
        let sum = Sha384::digest(HTMX_JS);
        let sri = format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(sum)
        );
        assert_eq!(sri, HTMX_SRI);
    }
}
