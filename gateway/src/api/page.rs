//! Relay cursor connections over the domain's forward pages.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use ates_db::{Page, PageRequest};

use super::{ApiError, ApiResult};

pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

/// What a page costs in the complexity limit: each of the items it may hold costs what one
/// item's selection costs, so `first: 100` of a deep selection is priced as such.
pub fn cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.map_or(DEFAULT_PAGE, |n| {
        usize::try_from(n).unwrap_or(0).min(MAX_PAGE)
    });
    1 + items.max(1) * child_complexity
}

/// Checks `first` and `after` as a client sent them.
pub fn request(first: Option<i32>, after: Option<String>) -> ApiResult<PageRequest> {
    let first = match first {
        None => DEFAULT_PAGE,
        Some(n) if n >= 0 && n as usize <= MAX_PAGE => n as usize,
        Some(_) => {
            return Err(ApiError::BadUserInput(format!(
                "first must be between 0 and {MAX_PAGE}"
            )));
        }
    };
    Ok(PageRequest { first, after })
}

/// A connection whose cursors are the items' keys.
pub fn connection<T, N: OutputType>(
    page: Page<T>,
    request: &PageRequest,
    key: impl Fn(&T) -> String,
    node: impl Fn(T) -> N,
) -> Connection<String, N> {
    let mut connection = Connection::new(request.after.is_some(), page.has_next);
    connection.edges = page
        .items
        .into_iter()
        .map(|item| Edge::new(key(&item), node(item)))
        .collect();
    connection
}
