//! Popugs: `me`, `popugs`, and the loader tasks use for their assignees.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, ID, Object};
use task_domain::{Permission, Popug, PopugId, Popugs, Role, TaskError};

use super::ids::{Kind, global_id};
use super::page::{Counted, Listed};
use super::{ApiResult, ContextExt, page};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "Role", remote = "task_domain::Role")]
pub enum RoleValue {
    Admin,
    Manager,
    Accountant,
    /// Every role string other than the three above: an ordinary popug.
    Worker,
}

/// An employee of UberPopug Inc., as the auth service describes them.
pub struct PopugObject(pub Popug);

#[Object(name = "Popug")]
impl PopugObject {
    /// A global id, unique across types (see `Node`).
    pub(super) async fn id(&self) -> ID {
        global_id(Kind::Popug, &self.0.id.0)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Shown to the popug themselves and to those who may list popugs (admins, managers,
    /// accountants); null for anyone else, and when the auth service gave none.
    async fn email(&self, ctx: &Context<'_>) -> ApiResult<Option<&str>> {
        Ok(self.details(ctx)?.and_then(|p| p.email.as_deref()))
    }

    /// Shown as `email` is; null for anyone else.
    async fn role(&self, ctx: &Context<'_>) -> ApiResult<Option<RoleValue>> {
        Ok(self.details(ctx)?.map(|p| p.role.into()))
    }

    /// False once the auth service deactivated the popug: it can no longer act or be assigned.
    /// Shown as `email` is; null for anyone else.
    async fn active(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        Ok(self.details(ctx)?.map(|p| p.active))
    }
}

impl PopugObject {
    /// The popug, when the caller may see more of them than their name.
    fn details(&self, ctx: &Context<'_>) -> ApiResult<Option<&Popug>> {
        let viewer = ctx.actor()?;
        Ok(viewer.may_see_details_of(&self.0.id).then_some(&self.0))
    }
}

#[derive(Default)]
pub struct PopugQuery;

#[Object]
impl PopugQuery {
    /// The popug the token belongs to, created from its claims on first sight.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<PopugObject> {
        Ok(PopugObject(ctx.actor()?.clone()))
    }

    /// Everyone, ordered by id. For admins, managers and accountants.
    #[graphql(complexity = "page::cost(first.or(last), child_complexity)")]
    async fn popugs(
        &self,
        ctx: &Context<'_>,
        role: Option<RoleValue>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Listed<PopugObject>> {
        ctx.actor_may(Permission::ListPopugs, "list popugs")?;
        let request = page::request(first, after, last, before)?;
        let role = role.map(Role::from);
        let found = ctx.popugs().list(role, &request).await?;
        Ok(page::connection(
            found,
            Counted::Popugs(role),
            |p| p.id.0.clone(),
            PopugObject,
        ))
    }
}

/// Batches the popugs a response needs into one query.
pub struct PopugLoader {
    popugs: Popugs,
}

impl PopugLoader {
    pub fn new(popugs: Popugs) -> Self {
        Self { popugs }
    }
}

impl Loader<PopugId> for PopugLoader {
    type Value = Popug;
    type Error = Arc<TaskError>;

    async fn load(&self, keys: &[PopugId]) -> Result<HashMap<PopugId, Popug>, Self::Error> {
        let found = self.popugs.by_ids(keys).await.map_err(Arc::new)?;
        Ok(found.into_iter().map(|p| (p.id.clone(), p)).collect())
    }
}
