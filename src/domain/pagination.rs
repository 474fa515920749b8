//! Relay-style keyset pagination over time-ordered UUID ids: one SQL statement a page.
//!
//! Paging forward from `after`, the query also fetches the `after` row itself: its
//! presence proves a previous page exists, so `hasPreviousPage` is exact without a
//! second statement (and symmetrically for `before` when paging backward).

use base64::{Engine, engine::general_purpose::STANDARD};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// A validated page request.
#[derive(Clone, Debug)]
pub struct PageRequest {
    direction: Direction,
    size: u64,
    after: Option<Uuid>,
    before: Option<Uuid>,
}

/// One page of results, in ascending id order.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous_page: bool,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// The same page bounds around other items (rows once their related data is loaded).
    pub fn with_items<U>(&self, items: Vec<U>) -> Page<U> {
        Page { items, has_previous_page: self.has_previous_page, has_next_page: self.has_next_page }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_previous_page: self.has_previous_page,
            has_next_page: self.has_next_page,
        }
    }
}

/// An opaque cursor: base64 of the node's id.
pub fn encode_cursor(id: Uuid) -> String {
    STANDARD.encode(id.to_string())
}

pub fn decode_cursor(cursor: &str) -> Result<Uuid> {
    STANDARD
        .decode(cursor.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| Uuid::parse_str(&text).ok())
        .ok_or_else(|| Error::bad_input("invalid pagination cursor"))
}

fn page_size(argument: &str, value: i32) -> Result<u64> {
    match u64::try_from(value) {
        Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
        _ => Err(Error::bad_input(format!("{argument} must be between 0 and {MAX_PAGE_SIZE}"))),
    }
}

impl PageRequest {
    pub fn new(first: Option<i32>, after: Option<&str>, last: Option<i32>, before: Option<&str>) -> Result<Self> {
        let after = after.map(decode_cursor).transpose()?;
        let before = before.map(decode_cursor).transpose()?;
        let (direction, size) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(Error::bad_input("pass either first or last, not both"));
            }
            (Some(first), None) => (Direction::Forward, page_size("first", first)?),
            (None, Some(last)) => (Direction::Backward, page_size("last", last)?),
            // `before` alone reads the page that ends there.
            (None, None) if before.is_some() && after.is_none() => (Direction::Backward, DEFAULT_PAGE_SIZE),
            (None, None) => (Direction::Forward, DEFAULT_PAGE_SIZE),
        };
        Ok(Self { direction, size, after, before })
    }

    /// Runs `select` (already filtered to what the caller may see) for this page, keyed
    /// on the UUID column `id`.
    pub async fn fetch<E, C>(
        &self,
        conn: &C,
        select: Select<E>,
        id: E::Column,
        id_of: impl Fn(&E::Model) -> Uuid,
    ) -> Result<Page<E::Model>>
    where
        E: EntityTrait,
        C: ConnectionTrait,
    {
        let rows = self.window(select, id).all(conn).await?;
        Ok(self.page_of(rows, id_of))
    }

    /// `select` narrowed to this page's rows, in order, with the boundary rows that prove
    /// a page on either side; for a query that selects more than the entity's model
    /// (joins, partial models), whose rows then go through [`PageRequest::page_of`].
    pub fn window<E: EntityTrait>(&self, select: Select<E>, id: E::Column) -> Select<E> {
        let forward = self.direction == Direction::Forward;
        let mut select = select;
        if let Some(after) = self.after {
            select = select.filter(if forward { id.gte(after) } else { id.gt(after) });
        }
        if let Some(before) = self.before {
            select = select.filter(if forward { id.lt(before) } else { id.lte(before) });
        }
        select = if forward { select.order_by_asc(id) } else { select.order_by_desc(id) };
        select.limit(self.size + 1 + u64::from(self.anchor().is_some()))
    }

    /// The boundary row on the side we page away from, fetched as proof of a page there.
    fn anchor(&self) -> Option<Uuid> {
        if self.direction == Direction::Forward { self.after } else { self.before }
    }

    /// The page in the rows of [`PageRequest::window`].
    pub fn page_of<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> Uuid) -> Page<T> {
        let anchor_seen = match (self.anchor(), rows.first()) {
            (Some(anchor), Some(row)) if id_of(row) == anchor => {
                rows.remove(0);
                true
            }
            _ => false,
        };
        let more = rows.len() as u64 > self.size;
        rows.truncate(self.size as usize);
        if self.direction == Direction::Forward {
            Page { items: rows, has_previous_page: anchor_seen, has_next_page: more }
        } else {
            rows.reverse();
            Page { items: rows, has_previous_page: more, has_next_page: anchor_seen }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_bad_input() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        for bad in ["", "!!!", "bm90LWEtdXVpZA=="] {
            assert!(matches!(decode_cursor(bad), Err(Error::BadInput(_))), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_capped_and_exclusive() {
        assert!(PageRequest::new(Some(MAX_PAGE_SIZE as i32 + 1), None, None, None).is_err());
        assert!(PageRequest::new(Some(-1), None, None, None).is_err());
        assert!(PageRequest::new(Some(1), None, Some(1), None).is_err());
        assert!(PageRequest::new(Some(0), None, None, None).is_ok());
        let before = PageRequest::new(None, None, None, Some(&encode_cursor(Uuid::now_v7()))).unwrap();
        assert_eq!(before.direction, Direction::Backward);
    }
}
