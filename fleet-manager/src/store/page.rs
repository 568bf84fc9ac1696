//! Keyset paging for the lists: every list is read in a stable order of
//! `(key, id)` (the key is the creation time, or an image's sort key), and a
//! page starts strictly after the `(key, id)` of the previous page's last
//! row, so rows inserted or deleted meanwhile never shift a page: nothing is
//! read twice and nothing that existed throughout is skipped. A page reads
//! `limit + 1` rows to know whether another follows.

use crate::error::Result;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

/// Where a page of a list starts: after the row with this key and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub id: String,
}

/// Which part of a list to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Start after this row; `None` from the beginning.
    pub after: Option<Cursor>,
    /// At most this many rows; `None` for all of them.
    pub limit: Option<u64>,
}

impl Page {
    /// The whole list.
    pub const ALL: Page = Page {
        after: None,
        limit: None,
    };
}

/// One page of a list, and where the next one starts if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Paged<T> {
    /// The same page with each item turned into another.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }

    /// [`Self::map`] with a fallible function.
    pub fn try_map<U>(self, f: impl FnMut(T) -> Result<U>) -> Result<Paged<U>> {
        Ok(Paged {
            items: self.items.into_iter().map(f).collect::<Result<_>>()?,
            next: self.next,
        })
    }
}

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest (smallest key) first.
    Asc,
    /// Newest (largest key) first.
    Desc,
}

/// `query` ordered by `(key, id)` and cut to `page`: the rows after the
/// page's cursor, at most `limit + 1` of them (the extra one only tells that
/// a next page exists).
pub(crate) fn keyset<E, K, I>(
    query: Select<E>,
    key: K,
    id: I,
    order: Order,
    page: &Page,
) -> Select<E>
where
    E: EntityTrait,
    K: ColumnTrait,
    I: ColumnTrait,
{
    let mut query = query;
    if let Some(c) = &page.after {
        let (past_key, past_id) = match order {
            Order::Asc => (key.gt(c.key), id.gt(c.id.as_str())),
            Order::Desc => (key.lt(c.key), id.lt(c.id.as_str())),
        };
        query = query.filter(
            Condition::any()
                .add(past_key)
                .add(Condition::all().add(key.eq(c.key)).add(past_id)),
        );
    }
    query = match order {
        Order::Asc => query.order_by_asc(key).order_by_asc(id),
        Order::Desc => query.order_by_desc(key).order_by_desc(id),
    };
    match page.limit {
        Some(n) => query.limit(n.saturating_add(1)),
        None => query,
    }
}

/// Cuts the rows a [`keyset`] query read to the page and names the cursor
/// of the next page, if another row followed.
pub(crate) fn finish<T>(mut rows: Vec<T>, page: &Page, cursor: impl Fn(&T) -> Cursor) -> Paged<T> {
    let next = match page.limit {
        Some(n) if rows.len() as u64 > n => {
            rows.truncate(n as usize);
            rows.last().map(cursor)
        }
        _ => None,
    };
    Paged { items: rows, next }
}
