//! The GraphQL schema: roots merged from one module per aggregate.

mod error;
mod page;
mod popug;
mod task;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, EmptySubscription, MergedObject, Schema, SchemaBuilder};
use task_domain::{Popug, Popugs, Role, Tracker};

pub use error::{ApiError, ApiResult};
pub use popug::PopugLoader;

#[derive(MergedObject, Default)]
pub struct Query(popug::PopugQuery, task::TaskQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(task::TaskMutation);

pub type AtesSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema without its services: enough to print the SDL.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
}

pub fn build_schema(tracker: Tracker, popugs: Popugs) -> AtesSchema {
    schema_builder().data(tracker).data(popugs).finish()
}

/// The SDL of the public contract, as committed in `schema.graphql`.
pub fn export_sdl() -> String {
    schema_builder().finish().sdl()
}

/// Who sent the request, decided once per request before execution.
#[derive(Debug, Clone)]
pub enum Session {
    /// No token.
    Anonymous,
    /// A token that failed verification.
    Rejected,
    /// A valid token of a popug the auth service has deactivated.
    Deactivated,
    /// The replica could not be read or written; logged where it happened.
    Unavailable,
    Popug(Popug),
}

/// Data attached to every request.
pub fn request_data(popugs: &Popugs, session: Session) -> (Session, DataLoader<PopugLoader>) {
    (session, DataLoader::new(PopugLoader::new(popugs.clone()), tokio::spawn))
}

/// Typed access to what the schema and the request carry.
pub(crate) trait ContextExt {
    fn actor(&self) -> ApiResult<&Popug>;
    /// The actor, if their role is one of `roles`.
    fn actor_in(&self, roles: &[Role], action: &str) -> ApiResult<&Popug>;
    fn tracker(&self) -> &Tracker;
    fn popugs(&self) -> &Popugs;
    fn popug_loader(&self) -> &DataLoader<PopugLoader>;
}

impl ContextExt for Context<'_> {
    fn actor(&self) -> ApiResult<&Popug> {
        match self.data_opt::<Session>() {
            Some(Session::Popug(popug)) => Ok(popug),
            Some(Session::Deactivated) => Err(ApiError::forbidden("this popug has been deactivated")),
            Some(Session::Unavailable) => Err(ApiError::internal("popug replica unavailable")),
            _ => Err(ApiError::Unauthenticated),
        }
    }

    fn actor_in(&self, roles: &[Role], action: &str) -> ApiResult<&Popug> {
        let actor = self.actor()?;
        if roles.contains(&actor.role) {
            Ok(actor)
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "only {} may {action}",
                allowed.join(" or ")
            )))
        }
    }

    fn tracker(&self) -> &Tracker {
        self.data_unchecked::<Tracker>()
    }

    fn popugs(&self) -> &Popugs {
        self.data_unchecked::<Popugs>()
    }

    fn popug_loader(&self) -> &DataLoader<PopugLoader> {
        self.data_unchecked::<DataLoader<PopugLoader>>()
    }
}
