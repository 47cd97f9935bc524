//! Global ids (Relay's object identification): the type of an object and its own key, `Task:0193…`,
//! in unpadded URL-safe base64: opaque to clients, safe in a URL, and unique across types (a
//! payout's key is also the key of its log entry's event, and popug keys are whatever the auth
//! service chose). Every argument that names an object takes its global id, or the type's own
//! key as clients sent it before global ids existed.

use async_graphql::ID;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use task_domain::{PopugId, TaskId};

use super::{ApiError, ApiResult};

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
    pub(super) const ALL: [Kind; 5] = [
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
