//! The GraphQL schema: roots merged from one module per aggregate.

mod accounting;
mod dead_letters;
mod error;
mod figures;
mod history;
pub mod ids;
mod node;
mod page;
mod pass;
mod payday;
mod popug;
mod scalars;
pub mod shape;
mod statement;
mod subscription;
mod task;
mod turns;

use std::sync::Arc;

use accounting_domain::{Figures, Ledger, Payday, Queues};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, MergedObject, Schema, SchemaBuilder};
use ates_db::Db;
use ates_events::outbox::StoredEvent;
use task_domain::{Permission, Popug, PopugId, Popugs, Tracker};

use crate::auth_events::AuthEvents;
use crate::rate_limit::Turns;
use crate::session::Session;
use crate::workers::accounting::Accounting;
use crate::workers::delivery::Delivery;
use crate::workers::feed::Feed;
use accounting::PriceLoader;
pub use error::{ApiError, ApiResult};
use history::HistoryLoader;
pub use pass::{Driven, Pass};
use popug::{PopugLoader, PopugObject};
use task::TaskLoader;

#[derive(MergedObject, Default)]
pub struct Query(
    node::NodeQuery,
    popug::PopugQuery,
    task::TaskQuery,
    accounting::AccountingQuery,
    figures::FiguresQuery,
    payday::PaydayQuery,
    dead_letters::DeadLetterQuery,
    statement::StatementQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    task::TaskMutation,
    payday::PaydayMutation,
    dead_letters::DeadLetterMutation,
);

pub use subscription::Subscription;

pub type AtesSchema = Schema<Query, Mutation, Subscription>;

/// What the resolvers work with, shared by every request.
#[derive(Clone)]
pub struct Services {
    pub tracker: Tracker,
    pub popugs: Popugs,
    pub accounting: Arc<Accounting>,
    pub feed: Arc<Feed>,
    /// Day closes, and the business calendar and clock.
    pub payday: Payday,
    pub figures: Figures,
    pub queues: Queues,
    pub delivery: Arc<Delivery>,
    /// Popug Data Updated, as every transport applies it (dead letters are replayed through it).
    pub auth_events: AuthEvents,
    pub db: Db,
}

impl Services {
    /// After a commit of `events`: tells subscribers, and waits until accounting has the
    /// events (bounded; false when it gave up).
    pub async fn committed(&self, events: &[StoredEvent]) -> bool {
        self.feed.committed();
        self.accounting.settle(events).await
    }

    /// After a commit whose events nobody waits for: wakes their consumers, here and on the
    /// other replicas.
    pub fn wake(&self) {
        self.feed.committed();
        self.accounting.wake();
    }
}

/// The schema without its services: enough to print the SDL.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription)
}

/// Bounds on the shape of a query, checked before it runs.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub depth: usize,
    /// Fields weighted by the pages they sit in (`first` × the page's selection).
    pub complexity: usize,
    pub shape: shape::ShapeLimits,
    /// Introspection and "did you mean" suggestions.
    pub introspection: bool,
}

pub fn build_schema(services: Services, limits: QueryLimits, turns: Arc<Turns>) -> AtesSchema {
    let builder = schema_builder()
        .data(services)
        .extension(turns::TakeTurns(turns))
        .extension(pass::Passes)
        .extension(shape::Shape(limits.shape))
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity);
    if limits.introspection {
        builder.finish()
    } else {
        builder
            .disable_introspection()
            .disable_suggestions()
            .finish()
    }
}

/// The SDL of the public contract, as committed in `schema.graphql`.
pub fn export_sdl() -> String {
    schema_builder().finish().sdl()
}

/// Loaders live for one request: they batch, and their cache must not outlive it.
pub struct Loaders {
    popugs: DataLoader<PopugLoader>,
    tasks: DataLoader<TaskLoader>,
    prices: DataLoader<PriceLoader>,
    histories: DataLoader<HistoryLoader>,
    /// Their fetches wait for the executor's pass to end (`pass`).
    pass: Arc<Pass>,
}

/// How long a loader waits for more keys before it loads: not at all, because a fetch waits
/// for the pass of the executor that registers the keys to end ([`Pass`]). async-graphql's
/// default of 1 ms added that much to every request that reads a price or a name.
const GATHER: std::time::Duration = std::time::Duration::ZERO;

impl Loaders {
    pub fn new(services: &Services) -> Self {
        let pass = Arc::new(Pass::default());
        Self {
            popugs: Self::loader(&pass, PopugLoader::new(services.popugs.clone())),
            tasks: Self::loader(&pass, TaskLoader(services.tracker.clone())),
            prices: Self::loader(&pass, PriceLoader(services.accounting.ledger().clone())),
            histories: Self::loader(&pass, HistoryLoader(services.accounting.ledger().clone())),
            pass,
        }
    }

    fn loader<T: Send + Sync + 'static>(pass: &Arc<Pass>, load: T) -> DataLoader<T> {
        let pass = Arc::clone(pass);
        DataLoader::new(load, move |fetch| pass.spawn(fetch)).delay(GATHER)
    }

    /// What drives the request's executor in passes.
    pub fn pass(&self) -> &Arc<Pass> {
        &self.pass
    }
}

/// Typed access to what the schema and the request carry.
pub(crate) trait ContextExt {
    fn actor(&self) -> ApiResult<&Popug>;
    /// The actor, if their role holds `permission`; `action` says what for, when it does not.
    fn actor_may(&self, permission: Permission, action: &str) -> ApiResult<&Popug>;
    fn services(&self) -> &Services;
    fn loaders(&self) -> &Loaders;

    fn tracker(&self) -> &Tracker {
        &self.services().tracker
    }
    fn popugs(&self) -> &Popugs {
        &self.services().popugs
    }
    fn ledger(&self) -> &Ledger {
        self.services().accounting.ledger()
    }
    fn payday(&self) -> &Payday {
        &self.services().payday
    }
    fn figures(&self) -> &Figures {
        &self.services().figures
    }
    fn queues(&self) -> &Queues {
        &self.services().queues
    }
    fn feed(&self) -> &Arc<Feed> {
        &self.services().feed
    }
    fn popug_loader(&self) -> &DataLoader<PopugLoader> {
        &self.loaders().popugs
    }
    fn task_loader(&self) -> &DataLoader<TaskLoader> {
        &self.loaders().tasks
    }
    fn price_loader(&self) -> &DataLoader<PriceLoader> {
        &self.loaders().prices
    }
    fn history_loader(&self) -> &DataLoader<HistoryLoader> {
        &self.loaders().histories
    }
}

/// The idempotency key a mutation was sent with (`Idempotency-Key`), and when the key was first
/// claimed: what a mutation needs to make its effect the key's own.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: String,
    pub claimed_at: chrono::DateTime<chrono::Utc>,
}

/// The popug behind a session, or why there is none to act for.
pub(crate) fn actor_of(session: Option<&Session>) -> ApiResult<&Popug> {
    match session {
        Some(Session::Popug(popug)) => Ok(popug),
        Some(Session::Deactivated) => Err(ApiError::forbidden("this popug has been deactivated")),
        Some(Session::Unavailable) => Err(ApiError::internal("popug replica unavailable")),
        Some(Session::Busy) => Err(ApiError::Unavailable),
        _ => Err(ApiError::Unauthenticated),
    }
}

/// `actor`, if their role holds `permission`; `action` says what for, when it does not.
pub(crate) fn may(actor: &Popug, permission: Permission, action: &str) -> ApiResult<()> {
    if actor.role.may(permission) {
        Ok(())
    } else {
        Err(forbidden(permission, action))
    }
}

impl ContextExt for Context<'_> {
    fn actor(&self) -> ApiResult<&Popug> {
        actor_of(self.data_opt::<Session>())
    }

    fn actor_may(&self, permission: Permission, action: &str) -> ApiResult<&Popug> {
        let actor = self.actor()?;
        may(actor, permission, action)?;
        Ok(actor)
    }

    fn services(&self) -> &Services {
        self.data_unchecked::<Services>()
    }

    fn loaders(&self) -> &Loaders {
        self.data_unchecked::<Loaders>()
    }
}

/// "only admin or accountant may …".
fn forbidden(permission: Permission, action: &str) -> ApiError {
    let holders: Vec<&str> = permission.holders().iter().map(|r| r.as_str()).collect();
    ApiError::forbidden(format!("only {} may {action}", holders.join(" or ")))
}

/// The one popug whose money `actor` asks about: their own when `requested` is `None`.
pub(crate) fn money_of(
    actor: &Popug,
    requested: Option<PopugId>,
    action: &str,
) -> ApiResult<PopugId> {
    match requested {
        None => Ok(actor.id.clone()),
        Some(id) if actor.may_see_money_of(&id) => Ok(id),
        Some(_) => Err(forbidden(Permission::KeepBooks, action)),
    }
}

/// Whose money a list shows `actor`: for a bookkeeper, who they ask for (everyone's when
/// `None`); for anyone else, their own.
pub(crate) fn money_scope(
    actor: &Popug,
    requested: Option<PopugId>,
    action: &str,
) -> ApiResult<Option<PopugId>> {
    if actor.role.may(Permission::KeepBooks) {
        Ok(requested)
    } else {
        money_of(actor, requested, action).map(Some)
    }
}

pub(crate) async fn load_popug(ctx: &Context<'_>, id: &PopugId) -> ApiResult<PopugObject> {
    let popug = ctx
        .popug_loader()
        .load_one(id.clone())
        .await?
        .ok_or_else(|| ApiError::internal(format!("popug {id} is not in the replica")))?;
    Ok(PopugObject(popug))
}
