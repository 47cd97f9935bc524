//! PostgreSQL's `NOTIFY`/`LISTEN`, by which one replica tells the others what it committed.
//! Every channel is in one enum. On SQLite (one process) there is nobody to tell.

use sqlx::Executor;
use sqlx::postgres::PgListener;

use crate::{Backend, Db};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Events were appended to the outbox: consumers and subscribers look now.
    Appended,
    /// A popug changed (payload: its id): forget what is kept of it in memory.
    PopugChanged,
    /// A popug's sessions must end (payload: its id).
    PopugRevoked,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Self::Appended, Self::PopugChanged, Self::PopugRevoked];

    pub fn name(self) -> &'static str {
        match self {
            Self::Appended => "ates_outbox",
            Self::PopugChanged => "ates_popug_changed",
            Self::PopugRevoked => "ates_popug_revoked",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|channel| channel.name() == name)
    }
}

impl Db {
    /// Notifies `channel` with `payload`, when the transaction `executor` is in commits (at
    /// once outside one).
    pub async fn notify<'e, E>(
        &self,
        executor: E,
        channel: Channel,
        payload: &str,
    ) -> Result<(), sqlx::Error>
    where
        E: Executor<'e, Database = sqlx::Any>,
    {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel.name())
                .bind(payload.to_owned())
                .execute(executor)
                .await?;
        }
        Ok(())
    }
}

/// A connection of its own, listening on every [`Channel`] (PostgreSQL only).
pub struct Listener(PgListener);

impl Listener {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen_all(Channel::ALL.map(Channel::name)).await?;
        Ok(Self(listener))
    }

    /// The next notification: its channel and payload. An error means the connection was
    /// lost, and with it whatever was notified until a new listener connects.
    pub async fn recv(&mut self) -> Result<(Channel, String), sqlx::Error> {
        loop {
            let note = self.0.recv().await?;
            if let Some(channel) = Channel::named(note.channel()) {
                return Ok((channel, note.payload().to_owned()));
            }
        }
    }
}
