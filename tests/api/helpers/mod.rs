//! What the black-box tests share: the harness (`app`), the real binary (`process`), the
//! invariants checked after a scenario (`invariants`), and the fakes of the systems the gateway
//! talks to (`fakes`).

mod app;
pub mod fakes;
mod invariants;
mod process;

use std::future::Future;

pub use app::{
    TestApp, TestDatabase, User, WantedFakes, config, global_id, key_of, token, token_with,
};
pub use invariants::{assert_events_match_their_schemas, assert_ledger_invariants, settled};
pub use process::{Gateway, js_dir, post_graphql, run_gateway};

pub const SECRET: &str = "test-secret-shared-with-the-auth-service";

/// What the auth service signs the events it posts with.
pub const EVENTS_SECRET: &str = "test-secret-of-auth-events";
/// The bearer token `/metrics` takes in tests.
pub const METRICS_TOKEN: &str = "test-token-of-prometheus";

/// What a scenario runs on: a started gateway ([`TestApp`]) or just a fresh database
/// ([`TestDatabase`]), on each backend.
pub trait Fixture: Sized {
    fn sqlite() -> impl Future<Output = Self>;
    /// `None` (the run is skipped, loudly) when no PostgreSQL is configured.
    fn postgres() -> impl Future<Output = Option<Self>>;
}

impl Fixture for TestDatabase {
    async fn sqlite() -> Self {
        TestDatabase::sqlite()
    }

    async fn postgres() -> Option<Self> {
        TestDatabase::postgres().await
    }
}

impl Fixture for TestApp {
    async fn sqlite() -> Self {
        TestApp::sqlite().await
    }

    async fn postgres() -> Option<Self> {
        TestApp::postgres().await
    }
}

/// Runs `scenario` on a SQLite fixture.
pub async fn on_sqlite<F: Fixture, R: Future<Output = ()>>(scenario: impl FnOnce(F) -> R) {
    scenario(F::sqlite().await).await
}

/// Runs `scenario` on a PostgreSQL fixture, when a server is configured.
pub async fn on_postgres<F: Fixture, R: Future<Output = ()>>(scenario: impl FnOnce(F) -> R) {
    if let Some(fixture) = F::postgres().await {
        scenario(fixture).await
    }
}

/// One test per backend for each scenario `async fn name(fixture)`, where the fixture is a
/// [`TestApp`] or a [`TestDatabase`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::helpers::on_sqlite(super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::helpers::on_postgres(super::$name).await
                }
            )*
        }
    };
}

/// Popugs `popug-0`, `popug-1`, … with the roles given, known to the tracker straight from the
/// domain (no gateway): their actors, in that order.
pub async fn domain_popugs(
    popugs: &task_domain::Popugs,
    roles: &[&str],
) -> Vec<task_domain::Actor> {
    let mut actors = Vec::with_capacity(roles.len());
    for (i, role) in roles.iter().enumerate() {
        let claims = task_domain::PopugClaims {
            id: task_domain::PopugId(format!("popug-{i}")),
            name: format!("popug {i}"),
            email: None,
            role: task_domain::Role::from_claim(role),
            issued_at: chrono::Utc::now(),
        };
        actors.push(
            popugs
                .sync(&claims)
                .await
                .expect("the popug is known")
                .actor(),
        );
    }
    actors
}
