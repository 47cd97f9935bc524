//! Roles, and the one table of what each may do.

/// What a popug may do. Role strings the auth service invents later are ordinary popugs:
/// an unknown claim never grants more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Manager,
    Accountant,
    Worker,
}

impl Role {
    pub fn from_claim(claim: &str) -> Self {
        match claim.trim().to_ascii_lowercase().as_str() {
            "admin" => Self::Admin,
            "manager" => Self::Manager,
            "accountant" => Self::Accountant,
            _ => Self::Worker,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Accountant => "accountant",
            Self::Worker => "worker",
        }
    }

    pub const ALL: [Role; 4] = [Self::Admin, Self::Manager, Self::Accountant, Self::Worker];

    /// Tasks go to everyone but the people who hand them out.
    pub fn is_assignable(self) -> bool {
        !matches!(self, Self::Admin | Self::Manager)
    }

    pub fn may(self, permission: Permission) -> bool {
        permission.holders().contains(&self)
    }
}

/// What some roles may do and others may not: the one table of who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Shuffle the open tasks, and watch everyone's assignments live.
    ManageTasks,
    /// See everyone's money (accounts, the audit log, payouts, the daily figures), and close
    /// business days.
    KeepBooks,
    /// List the company's popugs.
    ListPopugs,
    /// The analytics, the mailbox, and sending a failed payout again.
    Administer,
}

impl Permission {
    /// The roles that hold it.
    pub fn holders(self) -> &'static [Role] {
        match self {
            Self::ManageTasks => &[Role::Admin, Role::Manager],
            Self::KeepBooks => &[Role::Admin, Role::Accountant],
            Self::ListPopugs => &[Role::Admin, Role::Manager, Role::Accountant],
            Self::Administer => &[Role::Admin],
        }
    }
}

/// The SQL condition on `popugs` that [`Role::is_assignable`] is: active, and of a role that
/// is given tasks.
pub(crate) fn assignable_condition() -> &'static str {
    static CONDITION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let excluded: Vec<String> = Role::ALL
            .iter()
            .filter(|role| !role.is_assignable())
            .map(|role| format!("'{}'", role.as_str()))
            .collect();
        format!(
            "deactivated_at IS NULL AND role NOT IN ({})",
            excluded.join(", ")
        )
    });
    &CONDITION
}
