//! One file per part of the console; each handler reads or acts through
//! one `App` method and renders one template.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod forms;
pub mod images;
pub mod instance_form;
pub mod instances;
pub mod networks;
pub mod operations;
pub mod rollouts;
pub mod templates;
pub mod users;

use crate::api::page::decode_token;
use crate::error::Result;
use crate::store::page::Page;

/// Rows per page of a console list.
pub const PAGE_ROWS: u64 = 50;

/// The rows a form's select offers at most (templates, networks, images).
pub const CHOICES: Page = Page {
    after: None,
    limit: Some(500),
};

/// The page of a list a `pageToken` names.
pub fn page_at(token: Option<&str>) -> Result<Page> {
    Ok(Page {
        after: token
            .filter(|t| !t.is_empty())
            .map(decode_token)
            .transpose()?,
        limit: Some(PAGE_ROWS),
    })
}

/// The link to the page after the one that ended at `next`, if any:
/// `path?pageToken=…` (`path` may hold a query already).
pub fn next_link(path: &str, next: Option<&crate::store::page::Cursor>) -> Option<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    next.map(|c| {
        format!(
            "{path}{sep}pageToken={}",
            crate::console::view::urlencode(&crate::api::page::encode_token(c))
        )
    })
}

/// Unwraps a result or answers with its error's page.
macro_rules! or_page {
    ($s:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return crate::console::view::error_page(Some(&$s), e),
        }
    };
}
pub(crate) use or_page;
