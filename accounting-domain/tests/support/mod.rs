//! The stores a test of this crate runs on: a SQLite file always, and a database of its own on
//! the PostgreSQL server that `TEST_DATABASE_URL` names, when it is set.

#![allow(dead_code)] // each test file uses its own part of this

use std::sync::Arc;

use ates_db::{Clock, Db, Value};
use chrono::DateTime;

/// A fresh, migrated store whose business clock reads `now` (RFC 3339) from a file.
pub struct Store {
    pub db: Db,
    pub backend: &'static str,
    _dir: tempfile::TempDir,
    dropped: Option<(String, String)>,
}

impl Store {
    pub async fn sqlite(now: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("ates.db").display());
        Self::open(&url, dir, now, "sqlite", None).await
    }

    /// `None`, said aloud, without a server.
    pub async fn postgres(now: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run of this test");
            return None;
        };
        let name = format!("ates_test_{}", uuid::Uuid::new_v4().simple());
        let url = ates_db::create_database(&admin, &name)
            .await
            .expect("create");
        let dir = tempfile::tempdir().expect("dir");
        Some(Self::open(&url, dir, now, "postgres", Some((admin, name))).await)
    }

    async fn open(
        url: &str,
        dir: tempfile::TempDir,
        now: &str,
        backend: &'static str,
        dropped: Option<(String, String)>,
    ) -> Self {
        let clock = dir.path().join("clock");
        std::fs::write(&clock, now).expect("clock");
        let db = Db::connect(url, 8)
            .await
            .expect("connect")
            .with_clock(Clock::File(Arc::new(clock)));
        db.migrate().await.expect("migrate");
        Self {
            db,
            backend,
            _dir: dir,
            dropped,
        }
    }

    /// Drops the PostgreSQL database (SQLite's file goes with the folder).
    pub async fn finish(self) {
        self.db.pool().close().await;
        if let Some((admin, name)) = self.dropped {
            ates_db::drop_database(&admin, &name).await.expect("drop");
        }
    }
}

/// Runs `scenario` on each store there is.
#[macro_export]
macro_rules! on_each_store {
    ($now:expr, $scenario:expr) => {{
        let store = support::Store::sqlite($now).await;
        $scenario(&store).await;
        store.finish().await;
        if let Some(store) = support::Store::postgres($now).await {
            $scenario(&store).await;
            store.finish().await;
        }
    }};
}

pub fn micros(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at)
        .expect("an instant")
        .timestamp_micros()
}

/// A log entry as the ledger writes one, moving the popug's balance by `amount`.
pub async fn entry(db: &Db, popug: &str, kind: &str, task: &str, amount: i64, at: &str) {
    let mut tx = db.begin_write().await.expect("begin");
    let balance: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (popug_id, balance) VALUES ($1, $2) \
         ON CONFLICT (popug_id) DO UPDATE SET balance = accounts.balance + excluded.balance \
         RETURNING balance",
    )
    .bind(popug.to_owned())
    .bind(amount)
    .fetch_one(&mut *tx)
    .await
    .expect("move");
    ates_db::insert_rows(
        &mut tx,
        "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) VALUES",
        "",
        7,
        vec![
            Value::from(uuid::Uuid::new_v4().to_string()),
            kind.into(),
            amount.into(),
            balance.into(),
            task.into(),
            popug.into(),
            micros(at).into(),
        ],
    )
    .await
    .expect("log");
    tx.commit().await.expect("commit");
}
