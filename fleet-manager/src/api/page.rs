//! Paging of the list endpoints.
//!
//! A list answers the same JSON array whether it is paged or not, so the
//! public client, which asks for whole lists, reads what it always read. A
//! caller that pages passes `limit` (and then `pageToken`); when more items
//! follow, the answer carries the token of the next page in the
//! `Next-Page-Token` header, and the last page has none. A token is opaque:
//! pass back exactly what the header gave. Pages are keyset pages (see
//! [`crate::store::page`]): a token names the last item of its page, so
//! items created or deleted between two calls never shift a page.

use crate::error::{Error, Result};
use crate::store::page::{Cursor, Page, Paged};
use axum::Json;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

/// The header that carries the next page's token.
pub const NEXT_PAGE_TOKEN: &str = "next-page-token";
/// The longest page of a list.
pub const MAX_LIMIT: u32 = 1000;
/// The page length when `pageToken` is given without `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// `limit` and `pageToken` of a list. Without either, the whole list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Answer at most this many items (1 to 1000) and the `Next-Page-Token`
    /// header when more follow. Without `limit` nor `pageToken` the whole
    /// list is answered.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `Next-Page-Token` of the previous page: this page starts after
    /// it (100 items when `limit` is left out).
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    page_token: Option<String>,
}

impl PageQuery {
    /// The page asked for: the whole list without `limit` and `pageToken`.
    pub fn page(&self) -> Result<Page> {
        if self.limit.is_none() && self.page_token.is_none() {
            return Ok(Page::ALL);
        }
        page(
            self.limit,
            self.page_token.as_deref(),
            DEFAULT_LIMIT,
            MAX_LIMIT,
        )
    }
}

/// `limit` (default `default`, at most `max`) and `pageToken` read into a
/// page, each refused with a precise 400 when malformed.
pub fn page(limit: Option<u32>, token: Option<&str>, default: u32, max: u32) -> Result<Page> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(Error::invalid(format!(
            "query parameter limit must be between 1 and {max}, got {limit}"
        )));
    }
    Ok(Page {
        after: token.map(decode_token).transpose()?,
        limit: Some(u64::from(limit)),
    })
}

/// The token naming `c`.
pub fn encode_token(c: &Cursor) -> String {
    format!("{}.{}", c.key, c.id)
}

/// The cursor a token names; anything not made by [`encode_token`] is a 400.
pub fn decode_token(token: &str) -> Result<Cursor> {
    let bad = || {
        Error::invalid(format!(
            "query parameter pageToken '{}' is not a page token (pass back the Next-Page-Token header of the previous page)",
            token.chars().take(100).collect::<String>().escape_debug()
        ))
    };
    let (key, id) = token.split_once('.').ok_or_else(bad)?;
    let key_ok = (1..=18).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_digit());
    if !key_ok || crate::model::check_id("page", id).is_err() {
        return Err(bad());
    }
    Ok(Cursor {
        key: key.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

/// A page of a list as the answer: the JSON array of its items, and the
/// next page's token in the `Next-Page-Token` header when another follows.
pub struct Listed<T>(pub Paged<T>);

impl<T: Serialize> IntoResponse for Listed<T> {
    fn into_response(self) -> Response {
        let next = self.0.next.as_ref().map(encode_token);
        with_next(Json(self.0.items).into_response(), next)
    }
}

/// A page of stored JSON documents as the answer, like [`Listed`]: the
/// documents are joined into one array without being decoded.
pub struct ListedRaw(pub Paged<String>);

impl IntoResponse for ListedRaw {
    fn into_response(self) -> Response {
        let docs = &self.0.items;
        let mut out = String::with_capacity(docs.iter().map(|d| d.len() + 1).sum::<usize>() + 2);
        out.push('[');
        for (i, d) in docs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(d);
        }
        out.push(']');
        let next = self.0.next.as_ref().map(encode_token);
        with_next(super::handlers::RawJson(out).into_response(), next)
    }
}

fn with_next(mut resp: Response, next: Option<String>) -> Response {
    if let Some(v) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(NEXT_PAGE_TOKEN, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let c = Cursor {
            key: 1_700_000_000_123,
            id: "inst-a.b_c".into(),
        };
        let t = encode_token(&c);
        assert_eq!(decode_token(&t).unwrap(), c);
        assert!(regex_like(&t));
        for bad in [
            "",
            "abc",
            ".inst",
            "12.",
            "-1.inst",
            "12.a/b",
            "1234567890123456789.x",
        ] {
            assert!(decode_token(bad).is_err(), "{bad:?}");
        }
    }

    /// The token pattern, by hand: digits, a dot, an id.
    fn regex_like(t: &str) -> bool {
        let (k, id) = t.split_once('.').unwrap();
        k.bytes().all(|b| b.is_ascii_digit()) && crate::model::check_id("x", id).is_ok()
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(page(None, None, 100, 1000).unwrap().limit, Some(100));
        assert!(page(Some(0), None, 100, 1000).is_err());
        assert!(page(Some(1001), None, 100, 1000).is_err());
        assert!(page(Some(1000), None, 100, 1000).is_ok());
        let all = PageQuery {
            limit: None,
            page_token: None,
        };
        assert_eq!(all.page().unwrap(), Page::ALL);
    }
}
