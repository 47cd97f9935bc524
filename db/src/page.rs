//! Pages of a list in a stable order, read either way from a cursor: what every list of both
//! domains returns, so the API builds its connections one way.

use sqlx::any::AnyRow;

use crate::{Conditions, Db, Value, bind_all_as};

/// At most `first` items next to the item whose cursor is `after`: after it going forward
/// (Relay's `first`/`after`), before it going backward (`last`/`before`).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub first: usize,
    /// A cursor the list handed out (the key of an item, as text), or `None` from the end the
    /// page starts at: the start going forward, the end going backward.
    pub after: Option<String>,
    /// Read toward the start of the list instead of toward its end.
    pub backward: bool,
}

impl PageRequest {
    /// `first` items after `after`.
    pub fn forward(first: usize, after: Option<String>) -> Self {
        Self {
            first,
            after,
            backward: false,
        }
    }

    /// `last` items before `before`.
    pub fn backward(last: usize, before: Option<String>) -> Self {
        Self {
            first: last,
            after: before,
            backward: true,
        }
    }
}

/// One page of items in the list's order, and whether the list goes on before and after it.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous: bool,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// Builds a forward page from a query that asked for one item more than the page holds.
    pub fn from_overfetch(mut items: Vec<T>, first: usize) -> Self {
        let has_next = items.len() > first;
        items.truncate(first);
        Self {
            items,
            has_previous: false,
            has_next,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_previous: self.has_previous,
            has_next: self.has_next,
        }
    }
}

/// The order of a list: by one unique column, one way.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    pub column: &'static str,
    /// Greatest first (newest first, for ids that grow with time).
    pub descending: bool,
}

/// Reads the page `request` asks for of the rows of `table` that meet `conditions`, in
/// `order`. `cursor` is the request's cursor as the order column's value.
///
/// The page is one query that walks the index serving `conditions` and `order` from the
/// cursor and stops one row past the page; whether the list goes on behind the cursor is a
/// second, which stops at the first row it finds.
pub async fn read_page<R>(
    db: &Db,
    columns: &str,
    table: &str,
    mut conditions: Conditions,
    order: Order,
    request: &PageRequest,
    cursor: Option<Value>,
) -> Result<Page<R>, sqlx::Error>
where
    R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
{
    // Going backward, the rows are read against the list's order, nearest the cursor first.
    let descending = order.descending != request.backward;
    let column = order.column;
    let mut behind = None;
    if let Some(cursor) = cursor {
        let mut others = conditions.clone();
        others.compare(column, if descending { ">=" } else { "<=" }, cursor.clone());
        behind = Some(others);
        conditions.compare(column, if descending { "<" } else { ">" }, cursor);
    }
    let sql = format!(
        "SELECT {columns} FROM {table} {}ORDER BY {column} {} LIMIT {}",
        conditions.clause(),
        if descending { "DESC" } else { "ASC" },
        conditions.bind(request.first as i64 + 1)
    );
    let rows: Vec<R> = bind_all_as(
        sqlx::query_as(sqlx::AssertSqlSafe(sql)),
        conditions.into_values(),
    )
    .fetch_all(db.pool())
    .await?;
    let Page {
        mut items,
        has_next: beyond,
        ..
    } = Page::from_overfetch(rows, request.first);
    let behind = match behind {
        Some(others) => others.any(db, table).await?,
        None => false,
    };
    Ok(if request.backward {
        items.reverse();
        Page {
            items,
            has_previous: beyond,
            has_next: behind,
        }
    } else {
        Page {
            items,
            has_previous: behind,
            has_next: beyond,
        }
    })
}
