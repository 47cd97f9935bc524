//! Relay's object identification: a global id on every object a client may refetch, and
//! `node`/`nodes` to refetch it by that id alone.
//!
//! A global id is the object's type and its own key, `Task:0193…`, in unpadded URL-safe
//! base64: opaque to clients, safe in a URL, and unique across types (a payout's key is also
//! the key of its log entry's event, and popug keys are whatever the auth service chose).
//! Every argument that names an object takes its global id, or the type's own key as clients
//! sent it before global ids existed.

use async_graphql::{Context, ID, Interface, Object};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::try_join_all;
use task_domain::{Permission, PopugId, TaskId};

use super::accounting::AuditLogEntry;
use super::payday::{MailObject, PayoutObject};
use super::popug::PopugObject;
use super::task::TaskObject;
use super::{ApiError, ApiResult, ContextExt, may, money_of};

/// The types that carry a global id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Task,
    Popug,
    AuditLogEntry,
    Payout,
    Mail,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Task,
        Kind::Popug,
        Kind::AuditLogEntry,
        Kind::Payout,
        Kind::Mail,
    ];

    /// The GraphQL type's name, which is also the id's prefix.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Task => "Task",
            Kind::Popug => "Popug",
            Kind::AuditLogEntry => "AuditLogEntry",
            Kind::Payout => "Payout",
            Kind::Mail => "Mail",
        }
    }
}

/// The global id of the object of `kind` whose own key is `key`.
pub fn global_id(kind: Kind, key: &str) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{}:{key}", kind.name())))
}

/// The type and key a global id names; `None` for anything that is not one.
pub fn decode(id: &str) -> Option<(Kind, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, key) = text.split_once(':')?;
    let kind = Kind::ALL.into_iter().find(|kind| kind.name() == name)?;
    Some((kind, key.to_owned()))
}

/// The key of the `kind` object that `id` names: by its global id, or by the key itself, as
/// clients named objects before global ids. Another type's global id is refused.
pub fn key_of(kind: Kind, id: &str) -> ApiResult<String> {
    match decode(id) {
        Some((found, key)) if found == kind => Ok(key),
        Some((found, _)) => Err(ApiError::BadUserInput(format!(
            "`{id}` is the id of a {}, not of a {}",
            found.name(),
            kind.name()
        ))),
        None => Ok(id.to_owned()),
    }
}

pub fn popug_key(id: &ID) -> ApiResult<PopugId> {
    key_of(Kind::Popug, id).map(PopugId)
}

pub fn task_key(id: &ID) -> ApiResult<TaskId> {
    key_of(Kind::Task, id).map(TaskId)
}

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
pub const MAX_NODES: usize = 100;

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this global id, as the type's own field would show it to the caller;
    /// null when there is none.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Node>> {
        ctx.actor()?;
        let (kind, key) = parse(&id)?;
        fetch(ctx, kind, key).await
    }

    /// The objects with these global ids, in their order (at most 100); null where there is
    /// none.
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> ApiResult<Vec<Option<Node>>> {
        ctx.actor()?;
        if ids.len() > MAX_NODES {
            return Err(ApiError::BadUserInput(format!(
                "`nodes` takes at most {MAX_NODES} ids"
            )));
        }
        let wanted = ids.iter().map(parse).collect::<ApiResult<Vec<_>>>()?;
        try_join_all(wanted.into_iter().map(|(kind, key)| fetch(ctx, kind, key))).await
    }
}

fn parse(id: &ID) -> ApiResult<(Kind, String)> {
    decode(id).ok_or_else(|| ApiError::BadUserInput(format!("`{}` is not a global id", id.0)))
}

/// One object, under the rule its own list follows: tasks for everyone; popugs for the popug
/// themselves and those who may list popugs; log entries and payouts for their popug and
/// bookkeepers; mail for admins.
async fn fetch(ctx: &Context<'_>, kind: Kind, key: String) -> ApiResult<Option<Node>> {
    let actor = ctx.actor()?;
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
        // Money is its popug's and the bookkeepers', as in `auditLog` and `payouts`.
        Kind::AuditLogEntry => match key.parse::<i64>() {
            Ok(seq) => ctx
                .ledger()
                .entry(seq)
                .await?
                .map(|entry| -> ApiResult<Node> {
                    money_of(
                        actor,
                        Some(entry.popug_id.clone()),
                        "read another popug's log",
                    )?;
                    Ok(Node::AuditLogEntry(AuditLogEntry(entry)))
                })
                .transpose()?,
            Err(_) => None,
        },
        Kind::Payout => ctx
            .queues()
            .payout(&key)
            .await?
            .map(|payout| -> ApiResult<Node> {
                money_of(
                    actor,
                    Some(payout.popug_id.clone()),
                    "see another popug's payouts",
                )?;
                Ok(Node::Payout(PayoutObject(payout)))
            })
            .transpose()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_id_names_its_type_and_key() {
        let id = global_id(Kind::Payout, "0193a0c2-7f00-7000-8000-000000000001");
        assert_eq!(
            decode(&id),
            Some((
                Kind::Payout,
                "0193a0c2-7f00-7000-8000-000000000001".to_owned()
            ))
        );
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn a_key_is_taken_as_it_is_or_by_its_global_id() {
        assert_eq!(key_of(Kind::Popug, "popug-7").unwrap(), "popug-7");
        let global = global_id(Kind::Popug, "popug-7");
        assert_eq!(key_of(Kind::Popug, &global).unwrap(), "popug-7");
        // Keys may hold the separator.
        let global = global_id(Kind::Popug, "auth:42");
        assert_eq!(key_of(Kind::Popug, &global).unwrap(), "auth:42");
    }

    #[test]
    fn another_types_global_id_is_refused() {
        let task = global_id(Kind::Task, "0193a0c2-7f00-7000-8000-000000000001");
        let refused = key_of(Kind::Payout, &task).unwrap_err();
        assert!(
            matches!(refused, ApiError::BadUserInput(ref m) if m.contains("of a Task, not of a Payout"))
        );
    }

    #[test]
    fn ids_are_unique_across_types() {
        let key = "0193a0c2-7f00-7000-8000-000000000001";
        let ids: std::collections::HashSet<ID> = Kind::ALL
            .into_iter()
            .map(|kind| global_id(kind, key))
            .collect();
        assert_eq!(ids.len(), Kind::ALL.len());
    }
}
