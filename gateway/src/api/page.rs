//! Relay cursor connections over the domain's forward pages, each with a `totalCount`.

use accounting_domain::{LogFilter, QueueFilter};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, OutputType};
use ates_db::{Page, PageRequest};
use task_domain::{Role, TaskFilter};

use super::{ApiError, ApiResult, ContextExt};

/// A connection of our API: string cursors, and `totalCount` beside `edges` and `pageInfo`.
pub type Listed<N> = Connection<String, N, Total>;

/// What a list is, without its page: what `totalCount` counts.
pub enum Counted {
    Tasks(TaskFilter),
    Popugs(Option<Role>),
    Log(LogFilter),
    Payouts(QueueFilter),
    Mail(QueueFilter),
    DeadLetters,
}

/// The fields a connection has of its own.
pub struct Total(Counted);

#[Object]
impl Total {
    /// How many items the whole list holds, every page together: one count, by the index that
    /// serves the list, made only when this field is asked for.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        Ok(match &self.0 {
            Counted::Tasks(filter) => ctx.tracker().count(filter).await?,
            Counted::Popugs(role) => ctx.popugs().count(*role).await?,
            Counted::Log(filter) => ctx.ledger().count(filter).await?,
            Counted::Payouts(filter) => ctx.queues().count_payouts(filter).await?,
            Counted::Mail(filter) => ctx.queues().count_mail(filter).await?,
            Counted::DeadLetters => ates_events::dead_letter::count(&ctx.services().db).await?,
        })
    }
}

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

/// Checks the paging arguments as a client sent them: `first` (and `after`) to page
/// forward, or `last` (and `before`) to page backward, at most [`MAX_PAGE`] items.
pub fn request(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> ApiResult<PageRequest> {
    let size = |n: Option<i32>, name: &str| match n {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 0 && n as usize <= MAX_PAGE => Ok(n as usize),
        Some(_) => Err(ApiError::BadUserInput(format!(
            "{name} must be between 0 and {MAX_PAGE}"
        ))),
    };
    let backward = last.is_some() || before.is_some();
    if backward && (first.is_some() || after.is_some()) {
        return Err(ApiError::BadUserInput(
            "page forward with first and after, or backward with last and before, not both".into(),
        ));
    }
    Ok(if backward {
        PageRequest::backward(size(last, "last")?, before)
    } else {
        PageRequest::forward(size(first, "first")?, after)
    })
}

/// A connection whose cursors are the items' keys, of the list `counted` describes.
pub fn connection<T, N: OutputType>(
    page: Page<T>,
    counted: Counted,
    key: impl Fn(&T) -> String,
    node: impl Fn(T) -> N,
) -> Listed<N> {
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, Total(counted));
    connection.edges = page
        .items
        .into_iter()
        .map(|item| Edge::new(key(&item), node(item)))
        .collect();
    connection
}
