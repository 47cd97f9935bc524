//! The stores a test of this crate runs on: a SQLite file always, and a database of its own on
//! the PostgreSQL server that `TEST_DATABASE_URL` names, when it is set.

#![allow(dead_code)] // each test file uses its own part of this

use ates_db::testing::Scratch;
use ates_db::{Db, Value};
use chrono::DateTime;

/// A fresh, migrated store whose business clock reads `now` (RFC 3339) from a file.
pub struct Store {
    pub db: Db,
    pub backend: &'static str,
    scratch: Scratch,
}

impl Store {
    pub async fn sqlite(now: &str) -> Self {
        Self::open(Scratch::sqlite(), now).await
    }

    /// `None`, said aloud, without a server.
    pub async fn postgres(now: &str) -> Option<Self> {
        Some(Self::open(Scratch::postgres().await?, now).await)
    }

    async fn open(scratch: Scratch, now: &str) -> Self {
        Self {
            db: scratch.connect_at(now).await,
            backend: scratch.name(),
            scratch,
        }
    }

    /// Drops the PostgreSQL database (SQLite's file goes with the folder).
    pub async fn finish(self) {
        self.db.pool().close().await;
        self.scratch.finish().await;
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
