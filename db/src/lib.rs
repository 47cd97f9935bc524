//! The database both domains share.
//!
//! aTES runs on PostgreSQL in production and on an embedded SQLite file by default. The backend
//! is chosen at run time from the URL, so the domains talk to one [`sqlx::AnyPool`] and write
//! their SQL once with `$1` placeholders; the few dialect differences ask [`Db::backend`].
//! Time is stored as microseconds since the Unix epoch (`BIGINT`), which both backends order and
//! compare the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Connection as _, Executor, Transaction};

mod lock;
mod notify;
mod page;

pub use lock::{HeldLock, Lock};
pub use notify::{Channel, Listener};
pub use page::{Page, PageRequest};
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

fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Microseconds since the Unix epoch, the stored form of every instant.
/// Whether a failure means the store is busy (no connection, or no writer's turn, came free in
/// time) rather than broken: the caller may answer "try again shortly".
pub fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut)
}

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

/// `$first, $first + 1, …`: `count` numbered placeholders, for an `IN (…)` list that follows
/// other parameters. A list that is all of its statement's parameters takes
/// [`list_placeholders`], which is much cheaper on SQLite.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `count` placeholders for a list that is all of a statement's parameters, in order:
/// `$1, $2, …` on PostgreSQL, bare `?` on SQLite, which numbers them in order as well.
///
/// SQLite keeps named parameters (`$n`) in a list that it searches for each one when it
/// prepares the statement, and sqlx searches it again for each one when it binds: time
/// quadratic in their number. A statement of 8,000 `$n` took 138 ms to prepare and bind where
/// the same with `?` took 1.2 ms (Python's sqlite3, which binds by name the same way), and the
/// ledger writes such statements while it holds the one writer's turn.
pub fn list_placeholders(backend: Backend, count: usize) -> String {
    match backend {
        Backend::Postgres => placeholders(1, count),
        Backend::Sqlite => vec!["?"; count].join(", "),
    }
}

/// `rows` tuples of `columns` placeholders, `($1, $2), ($3, $4), …`, for a multi-row
/// `VALUES` that is all of its statement's parameters (see [`list_placeholders`]).
pub fn row_placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    match backend {
        Backend::Postgres => numbered_rows(1, rows, columns),
        Backend::Sqlite => {
            vec![format!("({})", list_placeholders(backend, columns)); rows].join(", ")
        }
    }
}

/// `rows` tuples of `columns` numbered placeholders from `$first`: `($3, $4), ($5, $6), …`,
/// for a multi-row `VALUES` that follows other parameters.
pub fn numbered_rows(first: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(first + row * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of `select … WHERE key IN` for these keys, in no particular order.
pub async fn fetch_in<T>(db: &Db, select_in: &str, keys: &[String]) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{select_in} ({})",
        list_placeholders(db.backend, keys.len())
    );
    bind_all_as(
        sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql)),
        keys.iter().map(|key| Value::Text(key.clone())),
    )
    .fetch_all(db.pool())
    .await
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

/// A value bound into a statement assembled at run time.
#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    Int(i64),
    /// A text column left empty.
    Null,
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for Value {
    fn from(int: i64) -> Self {
        Self::Int(int)
    }
}

impl From<Option<String>> for Value {
    fn from(text: Option<String>) -> Self {
        text.map_or(Self::Null, Self::Text)
    }
}

/// Statements binding more parameters than this run unprepared.
///
/// sqlx keeps up to 100 prepared statements a connection, one for each distinct text. A
/// multi-row insert or a long `IN` list has a text of its own for each row count and is
/// seldom run twice. Kept prepared, it would push out of the cache the small statements that
/// every request repeats (which must then be prepared again), and hold the server's plan
/// (PostgreSQL) or compiled program (SQLite) of a statement that will not come back.
pub const PREPARE_UP_TO: usize = 64;

/// Whether a statement binding `params` parameters is kept prepared ([`PREPARE_UP_TO`]).
fn keep_prepared(params: usize) -> bool {
    params <= PREPARE_UP_TO
}

/// Binds `values` in order; a statement binding many runs unprepared ([`PREPARE_UP_TO`]).
pub fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    values: impl IntoIterator<Item = Value>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let mut bound = 0;
    for value in values {
        bound += 1;
        query = match value {
            Value::Text(text) => query.bind(text),
            Value::Int(int) => query.bind(int),
            Value::Null => query.bind(None::<String>),
        };
    }
    query.persistent(keep_prepared(bound))
}

/// Binds `values` in order, for a query whose rows are read as `O`; a statement binding many
/// runs unprepared ([`PREPARE_UP_TO`]).
pub fn bind_all_as<'q, O>(
    mut query: sqlx::query::QueryAs<'q, Any, O, sqlx::any::AnyArguments>,
    values: impl IntoIterator<Item = Value>,
) -> sqlx::query::QueryAs<'q, Any, O, sqlx::any::AnyArguments>
where
    O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    let mut bound = 0;
    for value in values {
        bound += 1;
        query = match value {
            Value::Text(text) => query.bind(text),
            Value::Int(int) => query.bind(int),
            Value::Null => query.bind(None::<String>),
        };
    }
    query.persistent(keep_prepared(bound))
}

/// Binds accepted by one statement: below SQLite's and PostgreSQL's limits.
const MAX_BINDS: usize = 8_000;

/// Like [`insert_rows`], with a `tail` ending in `RETURNING key`: the keys of the rows
/// inserted.
pub async fn insert_rows_returning(
    conn: &mut sqlx::AnyConnection,
    head: &str,
    tail: &str,
    columns: usize,
    values: Vec<Value>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut keys = Vec::new();
    for (sql, chunk) in statements(Backend::of(conn), head, tail, columns, values) {
        let query = bind_all_as::<(String,)>(sqlx::query_as(sqlx::AssertSqlSafe(sql)), chunk);
        keys.extend(query.fetch_all(&mut *conn).await?.into_iter().map(|(k,)| k));
    }
    Ok(keys)
}

/// Multi-row statements for `values`, each with the values it binds.
fn statements(
    backend: Backend,
    head: &str,
    tail: &str,
    columns: usize,
    values: Vec<Value>,
) -> Vec<(String, Vec<Value>)> {
    let rows_per_statement = (MAX_BINDS / columns).max(1);
    let mut statements = Vec::new();
    let mut values = values.into_iter().peekable();
    while values.peek().is_some() {
        let chunk: Vec<Value> = values.by_ref().take(rows_per_statement * columns).collect();
        let rows = row_placeholders(backend, chunk.len() / columns, columns);
        statements.push((format!("{head} {rows} {tail}"), chunk));
    }
    statements
}

/// Inserts many rows with few statements: `head` is `INSERT INTO t (a, b) VALUES`, `tail` what
/// follows the rows (`ON CONFLICT …`, or nothing), and `values` holds `columns` values a row.
/// Returns the rows affected.
pub async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    head: &str,
    tail: &str,
    columns: usize,
    values: Vec<Value>,
) -> Result<u64, sqlx::Error> {
    let mut affected = 0;
    for (sql, chunk) in statements(Backend::of(conn), head, tail, columns, values) {
        let query = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk);
        affected += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(affected)
}

/// The WHERE clause of a statement built from the conditions a caller gave, and the values
/// they bind, numbered as they are added: a list names only its filters in use, so each shape
/// of it has a plan of its own.
#[derive(Debug, Default)]
pub struct Conditions {
    conditions: Vec<String>,
    values: Vec<Value>,
}

impl Conditions {
    /// A placeholder bound to `value`, for a condition or a clause to write around it.
    pub fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("${}", self.values.len())
    }

    /// `column operator $n`, bound to `value`.
    pub fn compare(&mut self, column: &str, operator: &str, value: impl Into<Value>) {
        let placeholder = self.bind(value);
        self.conditions
            .push(format!("{column} {operator} {placeholder}"));
    }

    /// A condition written with placeholders from [`Conditions::bind`].
    pub fn push(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// `WHERE a AND b ` (with its trailing space), or nothing without conditions.
    pub fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {} ", self.conditions.join(" AND "))
        }
    }

    /// The values, in placeholder order.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}
