//! A popug as the task tracker knows it: its id, its role, and the claims it acts with.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::{Permission, Role};

pub use ates_events::ids::PopugId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popug {
    pub id: PopugId,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub active: bool,
}

impl Popug {
    /// Whether this popug may see `owner`'s money: their own, or anyone's with
    /// [`Permission::KeepBooks`].
    pub fn may_see_money_of(&self, owner: &PopugId) -> bool {
        self.id == *owner || self.role.may(Permission::KeepBooks)
    }

    /// Whether this popug may see `other`'s e-mail, role and active flag: their own, or
    /// anyone's with [`Permission::ListPopugs`]. Everyone may see everyone's name.
    pub fn may_see_details_of(&self, other: &PopugId) -> bool {
        self.id == *other || self.role.may(Permission::ListPopugs)
    }

    pub fn actor(&self) -> Actor {
        Actor {
            id: self.id.clone(),
            role: self.role,
        }
    }
}

/// Who is acting, as the replica knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: PopugId,
    pub role: Role,
}

/// What a token (or, later, the auth service) says about a popug, and since when.
#[derive(Debug, Clone)]
pub struct PopugClaims {
    pub id: PopugId,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    /// When the claims were issued; claims older than the replica's last change are ignored.
    pub issued_at: DateTime<Utc>,
}

#[derive(FromRow, Clone)]
pub(crate) struct PopugRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    pub(crate) role: String,
    pub(crate) changed_at: i64,
    pub(crate) deactivated_at: Option<i64>,
}

impl From<PopugRow> for Popug {
    fn from(row: PopugRow) -> Self {
        Self {
            id: PopugId(row.id),
            name: row.name,
            email: row.email,
            role: Role::from_claim(&row.role),
            active: row.deactivated_at.is_none(),
        }
    }
}
