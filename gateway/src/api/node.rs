//! Relay's refetching: the `Node` interface over every type with a global id ([`super::ids`]),
//! and `node`/`nodes` to fetch an object again by that id alone.

use async_graphql::{Context, ID, Interface, Object};
use futures::future::try_join_all;
use task_domain::{Permission, Popug, PopugId, TaskId};

use super::accounting::AuditLogEntry;
use super::ids::{Kind, decode};
use super::payday::{MailObject, PayoutObject};
use super::popug::PopugObject;
use super::task::TaskObject;
use super::{ApiError, ApiResult, ContextExt, may};

/// An object Relay can refetch by its global id.
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "Unique across every type: pass it to `node` to fetch the object again."
))]
pub enum Node {
    Task(TaskObject),
    Popug(PopugObject),
    AuditLogEntry(AuditLogEntry),
    Payout(PayoutObject),
    Mail(MailObject),
}

/// The most ids one `nodes` call may name.
const MAX_NODES: usize = 100;

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this global id, as the type's own field would show it to the caller;
    /// null when there is none.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Node>> {
        let actor = ctx.actor()?;
        let (kind, key) = parse(&id)?;
        fetch(ctx, actor, kind, key).await
    }

    /// The objects with these global ids, in their order (at most 100); null where there is
    /// none.
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> ApiResult<Vec<Option<Node>>> {
        let actor = ctx.actor()?;
        if ids.len() > MAX_NODES {
            return Err(ApiError::BadUserInput(format!(
                "`nodes` takes at most {MAX_NODES} ids"
            )));
        }
        let wanted = ids.iter().map(parse).collect::<ApiResult<Vec<_>>>()?;
        try_join_all(
            wanted
                .into_iter()
                .map(|(kind, key)| fetch(ctx, actor, kind, key)),
        )
        .await
    }
}

fn parse(id: &ID) -> ApiResult<(Kind, String)> {
    decode(id).ok_or_else(|| ApiError::BadUserInput(format!("`{}` is not a global id", id.0)))
}

/// One object, under the rule its own list follows: tasks for everyone; popugs for the popug
/// themselves and those who may list popugs; log entries and payouts for their popug and
/// bookkeepers (null for anyone else, as when there is none); mail for admins.
async fn fetch(
    ctx: &Context<'_>,
    actor: &Popug,
    kind: Kind,
    key: String,
) -> ApiResult<Option<Node>> {
    let found = match kind {
        Kind::Task => ctx
            .task_loader()
            .load_one(TaskId(key))
            .await?
            .map(|task| Node::Task(TaskObject(task))),
        Kind::Popug => {
            let id = PopugId(key);
            if id != actor.id {
                may(actor, Permission::ListPopugs, "look up another popug")?;
            }
            ctx.popug_loader()
                .load_one(id)
                .await?
                .map(|popug| Node::Popug(PopugObject(popug)))
        }
        // Money is its popug's and the bookkeepers', as in `auditLog` and `payouts`. Another
        // popug's entry answers as one that is not there: payout ids are made of a popug and a
        // day, and a refusal would tell who was paid when.
        Kind::AuditLogEntry => match key.parse::<i64>() {
            Ok(seq) => ctx
                .ledger()
                .entry(seq)
                .await?
                .filter(|entry| actor.may_see_money_of(&entry.popug_id))
                .map(|entry| Node::AuditLogEntry(AuditLogEntry(entry))),
            Err(_) => None,
        },
        Kind::Payout => ctx
            .queues()
            .payout(&key)
            .await?
            .filter(|payout| actor.may_see_money_of(&payout.popug_id))
            .map(|payout| Node::Payout(PayoutObject(payout))),
        Kind::Mail => {
            may(actor, Permission::Administer, "read the mailbox")?;
            ctx.queues()
                .mail(&key)
                .await?
                .map(|mail| Node::Mail(MailObject(mail)))
        }
    };
    Ok(found)
}
