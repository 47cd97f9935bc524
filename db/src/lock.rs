//! PostgreSQL advisory locks: every key the product takes, in one enum, and the two ways of
//! holding one.
//!
//! On SQLite there is one process and one writer at a time, so there is nothing to take: a
//! transaction lock is a no-op, and a session lock is held at once.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection};

use crate::{Backend, Db};

/// The advisory locks of aTES. The compiler refuses two variants with one key, so no two
/// mechanisms can share a lock by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Lock {
    /// Held by whoever posts to the ledger (the consumer of any replica, or a producer posting
    /// its own events), for one transaction: two postings never wait for each other's rows in a
    /// circle, and a consumer never redoes another's batch.
    Posting = 0x0A7E_5002,
    /// Held by the replica relaying the outbox to NATS, for as long as it relays.
    Relay = 0x0A7E_5003,
    /// Held by the replica closing business days, for the whole close. Until this key had
    /// its own value it shared the posting lock's, and a close stopped every posting.
    DayClose = 0x0A7E_5004,
}

impl Lock {
    pub fn key(self) -> i64 {
        self as i64
    }
}

/// A session lock, held on a connection of its own until [`HeldLock::release`]. Dropped
/// without a release, the connection is closed rather than pooled, which releases it too.
pub struct HeldLock {
    lock: Lock,
    /// `None` on SQLite.
    conn: Option<PoolConnection<Any>>,
}

impl Db {
    /// Takes `lock` until the transaction `conn` is in ends, waiting for it if need be.
    pub async fn lock_transaction(
        &self,
        conn: &mut AnyConnection,
        lock: Lock,
    ) -> Result<(), sqlx::Error> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock.key())
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Waits for `lock` and holds it.
    pub async fn lock_session(&self, lock: Lock) -> Result<HeldLock, sqlx::Error> {
        if self.backend() == Backend::Sqlite {
            return Ok(HeldLock { lock, conn: None });
        }
        let mut conn = self.pool().acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock.key())
            .execute(&mut *conn)
            .await?;
        Ok(HeldLock {
            lock,
            conn: Some(conn),
        })
    }

    /// Takes `lock` when nobody holds it; `None` when somebody does.
    pub async fn try_lock_session(&self, lock: Lock) -> Result<Option<HeldLock>, sqlx::Error> {
        if self.backend() == Backend::Sqlite {
            return Ok(Some(HeldLock { lock, conn: None }));
        }
        let mut conn = self.pool().acquire().await?;
        let taken: i64 = sqlx::query_scalar(
            "SELECT CAST(CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(lock.key())
        .fetch_one(&mut *conn)
        .await?;
        Ok((taken == 1).then_some(HeldLock {
            lock,
            conn: Some(conn),
        }))
    }
}

impl HeldLock {
    /// Whether the lock is still held: its connection still answers. A connection that was
    /// cut took the lock with it.
    pub async fn is_held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok(),
        }
    }

    /// Gives the lock back, and its connection to the pool.
    pub async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.lock.key())
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // Closing the connection releases the lock.
            drop(conn.detach());
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not back to the pool with the lock held: the server releases it when the
            // connection closes.
            drop(conn.detach());
        }
    }
}
