//! The database both domains share.
//!
//! aTES runs on PostgreSQL in production and on an embedded SQLite file by default. The backend
//! is chosen at run time from the URL, so the domains talk to one [`sqlx::AnyPool`] and write
//! their SQL once with `$1` placeholders; the few dialect differences ask [`Db::backend`].
//! Time is stored as microseconds since the Unix epoch (`BIGINT`), which both backends order and
//! compare the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Connection as _, Executor, Transaction};

mod bind;
pub mod idempotency;
mod lock;
mod notify;
mod page;
#[cfg(feature = "testing")]
pub mod testing;

pub use bind::{
    Conditions, PREPARE_UP_TO, Value, bind_all, bind_all_as, fetch_in, insert_rows,
    insert_rows_returning, list_placeholders, numbered_rows, placeholders, row_placeholders,
};
pub use lock::{HeldLock, Lock};
pub use notify::{Channel, Listener};
pub use page::{Order, Page, PageRequest, read_page};
pub use sqlx::Error as SqlError;

/// Which dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The dialect of a connection taken from the pool.
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL (expected postgres://… or sqlite://…)")]
    UnsupportedUrl,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Backup(String),
}

/// How long a pooled connection may sit idle before it is tested (pinged) again when handed
/// out.
const PING_WHEN_IDLE: Duration = Duration::from_secs(5);

/// A pool, the backend behind it, and the clock that stamps what is written. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    clock: Clock,
    /// SQLite's one writer at a time, taken in turn by this process's writers.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// How long a caller waits for a connection, or for its turn to write.
    acquire_timeout: Duration,
}

/// A transaction that will write; it derefs to its connection. On SQLite it holds this
/// process's turn to write until it ends.
pub struct WriteTransaction {
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Where business time comes from: when a task was created, when the log received an entry,
/// which business day it is.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// The instant written in a file (RFC 3339), read at each use: time stands still until the
    /// file changes. For tests and rehearsals of a day close; never for production.
    File(Arc<PathBuf>),
}

impl Clock {
    /// Now, truncated to what the database keeps, so a value read back equals the one written.
    /// A file clock whose file cannot be read or parsed falls back to the system's time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => now(),
            Self::File(path) => Self::read(path).unwrap_or_else(|_| now()),
        }
    }

    /// Checks that a file clock can be read, so a mistake shows at start.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::System => Ok(()),
            Self::File(path) => Self::read(path).map(|_| ()),
        }
    }

    fn read(path: &std::path::Path) -> Result<DateTime<Utc>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the clock file {}: {e}", path.display()))?;
        let at = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
            format!(
                "the clock file {} does not hold an RFC 3339 instant: {e}",
                path.display()
            )
        })?;
        Ok(from_micros(to_micros(at.with_timezone(&Utc))))
    }
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl Db {
    /// Connects to `url`; a SQLite file is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        Self::connect_with(url, max_connections, Duration::from_secs(10)).await
    }

    /// Connects, with a bound on how long a caller waits for a free connection.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            create_private(url);
            (Backend::Sqlite, with_create_mode(url))
        } else {
            return Err(DbError::UnsupportedUrl);
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // sqlx pings every connection it hands out, by default: one more round trip for
            // each of a request's queries. Only a connection that sat idle a while is tested
            // now; one in steady use has just shown it works.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; writers queue on the busy
                        // timeout instead of failing, because every write transaction takes the
                        // write lock up front (`BEGIN IMMEDIATE`, see `begin_write`). FULL
                        // syncs the log at every commit: with NORMAL, WAL mode may lose the
                        // last commits on a power cut, and with them a fee, a payout or an
                        // event a client was already told about.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            backend,
            clock: Clock::System,
            writer: Arc::default(),
            acquire_timeout,
        })
    }

    /// The same pool, stamping time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by this handle's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Writes a consistent copy of a SQLite database to the new file `to`, owner-only, while
    /// gateways go on writing: `VACUUM INTO` reads one snapshot, the write-ahead log included
    /// (copying the database file alone misses what still sits in `-wal`). PostgreSQL is backed
    /// up with its own tools (`pg_dump`).
    pub async fn backup_to(&self, to: &Path) -> Result<(), DbError> {
        if self.backend != Backend::Sqlite {
            return Err(DbError::Backup(
                "on PostgreSQL, back up with pg_dump (README, Backups)".into(),
            ));
        }
        let path = to
            .to_str()
            .ok_or_else(|| DbError::Backup("the backup path must be UTF-8".into()))?;
        // Created empty and owner-only first (SQLite writes into an empty file): the copy
        // holds every popug's money. Creating it is also what refuses an existing file.
        create_owner_only(to).map_err(|error| {
            DbError::Backup(match error.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "{} exists already: a backup never overwrites a file",
                    to.display()
                ),
                _ => format!("cannot create {}: {error}", to.display()),
            })
        })?;
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(&self.pool)
            .await;
        if let Err(error) = copied {
            // No half-written file is left to be taken for a backup.
            let _ = std::fs::remove_file(to);
            return Err(error.into());
        }
        Ok(())
    }

    /// Applies the migrations of this backend that are not applied yet.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite a deferred transaction that reads first and writes later can fail with
    /// `SQLITE_BUSY` when another writer got there in between, whatever the busy timeout;
    /// taking the write lock at `BEGIN` makes concurrent writers wait their turn instead. The
    /// writers of this process also queue for their turn here first, in order: SQLite's own
    /// wait (the busy timeout) sleeps and polls, which under load leaves the lock idle between
    /// writers and lets one writer wait seconds behind luckier ones. The busy timeout is left
    /// for other processes (`gateway close-day`).
    pub async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        match self.backend {
            Backend::Postgres => Ok(WriteTransaction {
                tx: self.pool.begin().await?,
                _turn: None,
            }),
            Backend::Sqlite => {
                let turn = self.writer_turn().await?;
                Ok(WriteTransaction {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: Some(turn),
                })
            }
        }
    }

    /// Runs `statements` (`;`-separated) as one writing transaction in one round trip to
    /// SQLite's connection thread, and returns the rows they return, as `O`. `values` are
    /// bound in order across the statements. SQLite only: PostgreSQL writes several tables in
    /// one statement (a writing `WITH`) instead.
    ///
    /// A transaction of several statements costs a round trip each (`BEGIN`, each statement,
    /// `COMMIT`) while the one writer's turn is held; here the turn is held for one. On an
    /// error the transaction is rolled back, or the connection closed when that fails too.
    pub async fn fetch_all_as_one_write<O>(
        &self,
        statements: &str,
        values: Vec<Value>,
    ) -> Result<Vec<O>, sqlx::Error>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        debug_assert_eq!(self.backend, Backend::Sqlite, "a script is for SQLite");
        let _turn = self.writer_turn().await?;
        let mut conn = self.pool.acquire().await?;
        let script = format!("BEGIN IMMEDIATE; {statements}; COMMIT");
        let rows = bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(script)), values)
            .fetch_all(&mut *conn)
            .await;
        if rows.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
            // Nothing to roll back (the error came before BEGIN took effect, or at COMMIT's
            // own rollback), or a broken connection: either way it does not go back to the
            // pool with a transaction open.
            drop(conn.detach());
        }
        rows
    }

    /// On SQLite, this process's turn to write, to hold while one statement writes outside a
    /// [`WriteTransaction`] (on the pool, in autocommit). Such a write would otherwise meet the
    /// lock of a writer that holds its turn and poll for it (the busy timeout), sleeping far
    /// longer than the wait in the queue. `None` on PostgreSQL, whose writers lock rows.
    pub async fn turn_to_write(
        &self,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, sqlx::Error> {
        match self.backend {
            Backend::Postgres => Ok(None),
            Backend::Sqlite => self.writer_turn().await.map(Some),
        }
    }

    /// This process's turn to write on SQLite (see [`Db::begin_write`]).
    async fn writer_turn(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, sqlx::Error> {
        // A turn that does not come is a busy store, like a pool with no free connection.
        tokio::time::timeout(self.acquire_timeout, Arc::clone(&self.writer).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }

    /// `FOR UPDATE` where the backend has row locks; SQLite's write lock already covers it.
    pub fn lock_rows(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(|_| ())
    }
}

/// Creates the SQLite file of `url`, readable and writable by its owner only, when it is not
/// there yet: SQLite would create it with the process's umask (world-readable, usually), and
/// gives its `-wal` and `-shm` files the mode of the database file.
fn create_private(url: &str) {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') || url.contains("mode=memory") {
        return;
    }
    // There already, or the folder is missing or not ours: then SQLite opens it, or says
    // why not in its own words.
    let _ = create_owner_only(Path::new(path));
}

/// Creates the new, empty file `path`, readable and writable by its owner only.
fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Whether a failure means the store is busy or out of reach for now (no connection, or no
/// writer's turn, came free in time; the connection broke; the server is restarting or not
/// yet accepting connections) rather than broken: the caller may answer "try again shortly".
pub fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions (class 08), the server shutting down (57P01,
            // 57P02) or starting (57P03). SQLite: the database is busy or locked.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "5" | "6")
        }),
        _ => false,
    }
}

/// Microseconds since the Unix epoch, the stored form of every instant.
pub fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The system's now, truncated to what the database keeps. Business time comes from
/// [`Db::now`], which a test may control.
pub fn now() -> DateTime<Utc> {
    from_micros(to_micros(Utc::now()))
}

/// Creates an empty PostgreSQL database named `name` on the server `admin_url` points at, and
/// returns its URL: for tests and benchmarks.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, DbError> {
    let admin = Db::connect(admin_url, 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await?;
    admin.pool().close().await;
    let base = admin_url
        .split('?')
        .next()
        .and_then(|url| url.rsplit_once('/'))
        .map(|(base, _)| base)
        .ok_or(DbError::UnsupportedUrl)?;
    Ok(format!("{base}/{name}"))
}

/// Drops a database made by [`create_database`], disconnecting whoever still uses it.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let admin = Db::connect(admin_url, 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(admin.pool())
    .await?;
    admin.pool().close().await;
    Ok(())
}
