//! Statements assembled at run time: placeholders for lists and rows, binding values in order,
//! multi-row inserts, and the conditions of a list's WHERE clause.

use sqlx::Any;

use crate::{Backend, Db};

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

/// Binds `values` in order to `query` (a `Query` or a `QueryAs`, which share no trait), and
/// keeps the statement prepared only when it binds few ([`PREPARE_UP_TO`]).
macro_rules! bind_in_order {
    ($query:ident, $values:ident) => {{
        let mut bound = 0;
        for value in $values {
            bound += 1;
            $query = match value {
                Value::Text(text) => $query.bind(text),
                Value::Int(int) => $query.bind(int),
                Value::Null => $query.bind(None::<String>),
            };
        }
        $query.persistent(keep_prepared(bound))
    }};
}

/// Binds `values` in order; a statement binding many runs unprepared ([`PREPARE_UP_TO`]).
pub fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    values: impl IntoIterator<Item = Value>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    bind_in_order!(query, values)
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
    bind_in_order!(query, values)
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
#[derive(Debug, Default, Clone)]
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

    /// Whether any row of `table` meets the conditions: a query that stops at the first.
    pub async fn any(self, db: &crate::Db, table: &str) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {table} {}LIMIT 1) AS found",
            self.clause()
        );
        let (count,): (i64,) = bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), self.values)
            .fetch_one(db.pool())
            .await?;
        Ok(count > 0)
    }

    /// How many rows of `table` meet the conditions: one `COUNT(*)`.
    pub async fn count(self, db: &crate::Db, table: &str) -> Result<i64, sqlx::Error> {
        let sql = format!("SELECT COUNT(*) FROM {table} {}", self.clause());
        let (count,): (i64,) = bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), self.values)
            .fetch_one(db.pool())
            .await?;
        Ok(count)
    }
}
