//! The SQL both databases accept, written once. Each backend says how to reach its
//! database ([`Backend`]); everything else, queries and row mapping, lives in this folder and
//! runs on either. What really differs (the delivery queue's hot path, connection setup,
//! LISTEN/NOTIFY) stays in `sqlite/` and `postgres/`.
//!
//! Queries are written with `$1`-style placeholders, which both drivers take, and in the
//! SQL both dialects share: `CAST(x AS BIGINT)` rather than `x::BIGINT`, `FALSE` rather
//! than `0`, aggregates with `FILTER (WHERE ...)`.

use std::borrow::Cow;
use std::future::Future;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Sqlite, Transaction};

use super::{StoreError, StoreResult};

mod accounts;
pub(crate) mod control;
mod figures;
mod history;
mod hooks;
mod leases;
mod operational;
mod reads;
mod requests;
pub(crate) mod retention;
pub(crate) mod rows;
mod settings;
mod sources;

/// A value for a placeholder: every column Herald stores is one of these.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Flag(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

/// PostgreSQL text cannot hold NUL, which registry events and receivers' answers may
/// contain: it becomes U+FFFD on both databases rather than failing the write on one.
fn clean(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(clean(v)))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(clean(v)))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(if v.contains('\0') { clean(&v) } else { v }))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(clean))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.as_deref().map(clean))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        v.map_or(Arg::Text(None), Arg::from)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Flag(Some(v))
    }
}
impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Self {
        Arg::Flag(v)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Bytes(Some(v.to_vec()))
    }
}
impl From<&Vec<u8>> for Arg {
    fn from(v: &Vec<u8>) -> Self {
        Arg::Bytes(Some(v.clone()))
    }
}
impl From<Option<&[u8]>> for Arg {
    fn from(v: Option<&[u8]>) -> Self {
        Arg::Bytes(v.map(<[u8]>::to_vec))
    }
}

/// A statement and its arguments, in placeholder order.
#[derive(Debug, Clone)]
pub struct Sql {
    text: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement; `.bind()` its arguments in `$1, $2, ...` order.
pub fn sql(text: impl Into<Cow<'static, str>>) -> Sql {
    Sql {
        text: text.into(),
        args: Vec::new(),
    }
}

impl Sql {
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub async fn all<C: Conn>(self, on: &mut C) -> StoreResult<Vec<C::Row>> {
        on.all(self).await
    }

    pub async fn opt<C: Conn>(self, on: &mut C) -> StoreResult<Option<C::Row>> {
        on.opt(self).await
    }

    pub async fn one<C: Conn>(self, on: &mut C) -> StoreResult<C::Row> {
        on.one(self).await
    }

    /// Rows changed.
    pub async fn exec<C: Conn>(self, on: &mut C) -> StoreResult<u64> {
        on.exec(self).await
    }
}

/// A column read by name. Failures name the column, as the driver's own errors do.
pub trait SqlRow: Send + Sync {
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn int_opt(&self, column: &str) -> StoreResult<Option<i64>>;
    fn float_opt(&self, column: &str) -> StoreResult<Option<f64>>;
    fn text(&self, column: &str) -> StoreResult<String>;
    fn text_opt(&self, column: &str) -> StoreResult<Option<String>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
    fn bytes_opt(&self, column: &str) -> StoreResult<Option<Vec<u8>>>;
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        self.bytes_opt(column)?
            .ok_or_else(|| StoreError::Database(sqlx::Error::ColumnNotFound(column.into())))
    }
}

/// Somewhere statements run: a pool, or an open transaction.
pub trait Conn: Send {
    type Row: SqlRow;
    fn all(&mut self, q: Sql) -> impl Future<Output = StoreResult<Vec<Self::Row>>> + Send;
    fn opt(&mut self, q: Sql) -> impl Future<Output = StoreResult<Option<Self::Row>>> + Send;
    fn one(&mut self, q: Sql) -> impl Future<Output = StoreResult<Self::Row>> + Send;
    /// Rows changed.
    fn exec(&mut self, q: Sql) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// A transaction: dropped without `commit`, nothing of it stays.
pub trait Tx: Conn {
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// How a database is reached; the rest of the store is written against this.
pub trait Backend: Send + Sync + 'static {
    type Row: SqlRow;
    type Pool: Conn<Row = Self::Row> + Sync;
    type Tx: Tx<Row = Self::Row>;

    /// Where reads outside a transaction go (SQLite: the readers beside the writer).
    fn reader(&self) -> Self::Pool;
    /// Where single-statement writes go (SQLite: its one writer connection).
    fn writer(&self) -> Self::Pool;
    /// A write transaction (SQLite: `BEGIN IMMEDIATE`, so it queues for the write lock
    /// instead of failing when it finds another writer got there first).
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Whether a `SELECT ... FOR UPDATE` locks rows until the transaction ends (PostgreSQL,
    /// for checks another process could race). SQLite has no such clause and needs none:
    /// its one writer serialises write transactions.
    const LOCKS_ROWS: bool;
    /// A webhook's (`w`) headers as JSON text, `[[name, hex of the sealed value], ...]`,
    /// ordered by name: so a job loads in one query.
    const HEADERS_JSON: &'static str;
    /// Follows a column: it is one of the ids of the JSON array bound as `$1`, so one
    /// statement takes a list of any length on both databases. PostgreSQL compares with an
    /// array (`= ANY`), which it always answers from the index: it guessed a subquery over
    /// the JSON at 100 rows, and then hashed those against a scan of the whole table (14 ms
    /// per claim's jobs with 20,000 deliveries stored, and growing with the table).
    const IN_JSON_IDS: &'static str;
}

/// `ids` as the JSON array `IN_JSON_IDS` (and SQLite's `json_each`) reads: compact, so
/// PostgreSQL's translation of its brackets yields an array literal.
pub(crate) fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// `clause` (such as `" FOR UPDATE OF w"`) where the database locks rows, else nothing.
pub(crate) fn locking<B: Backend>(clause: &'static str) -> &'static str {
    if B::LOCKS_ROWS {
        clause
    } else {
        ""
    }
}

/// Binds each argument with the type the driver expects for it.
macro_rules! bound {
    ($db:ty, $q:expr) => {
        $q.args
            .iter()
            .fold(sqlx::query::<$db>(&$q.text), |query, arg| match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_deref()),
                Arg::Flag(v) => query.bind(*v),
                Arg::Bytes(v) => query.bind(v.as_deref()),
            })
    };
}

/// `Conn` for one executor type; `$exec` turns `self` into the driver's executor.
macro_rules! conn_for {
    ($ty:ty, $db:ty, $row:ty, |$s:ident| $exec:expr) => {
        impl Conn for $ty {
            type Row = $row;
            async fn all(&mut self, q: Sql) -> StoreResult<Vec<$row>> {
                let $s = self;
                Ok(bound!($db, q).fetch_all($exec).await?)
            }
            async fn opt(&mut self, q: Sql) -> StoreResult<Option<$row>> {
                let $s = self;
                Ok(bound!($db, q).fetch_optional($exec).await?)
            }
            async fn one(&mut self, q: Sql) -> StoreResult<$row> {
                let $s = self;
                Ok(bound!($db, q).fetch_one($exec).await?)
            }
            async fn exec(&mut self, q: Sql) -> StoreResult<u64> {
                let $s = self;
                Ok(bound!($db, q).execute($exec).await?.rows_affected())
            }
        }
    };
}

conn_for!(PgPool, Postgres, PgRow, |s| &*s);
conn_for!(SqlitePool, Sqlite, SqliteRow, |s| &*s);
conn_for!(Transaction<'static, Postgres>, Postgres, PgRow, |s| {
    &mut **s
});
conn_for!(Transaction<'static, Sqlite>, Sqlite, SqliteRow, |s| {
    &mut **s
});

impl Tx for Transaction<'static, Postgres> {
    async fn commit(self) -> StoreResult<()> {
        Ok(Transaction::commit(self).await?)
    }
}

impl Tx for Transaction<'static, Sqlite> {
    async fn commit(self) -> StoreResult<()> {
        Ok(Transaction::commit(self).await?)
    }
}

/// `SqlRow` for a driver's row type.
macro_rules! row_for {
    ($row:ty) => {
        impl SqlRow for $row {
            fn int(&self, c: &str) -> StoreResult<i64> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
            fn int_opt(&self, c: &str) -> StoreResult<Option<i64>> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
            fn float_opt(&self, c: &str) -> StoreResult<Option<f64>> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
            fn text(&self, c: &str) -> StoreResult<String> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
            fn text_opt(&self, c: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
            fn flag(&self, c: &str) -> StoreResult<bool> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
            fn bytes_opt(&self, c: &str) -> StoreResult<Option<Vec<u8>>> {
                Ok(sqlx::Row::try_get(self, c)?)
            }
        }
    };
}

row_for!(PgRow);
row_for!(SqliteRow);

/// A unique-key violation as the conflict it means to the user; other errors unchanged.
pub(crate) fn conflict_on_unique(err: StoreError, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            StoreError::Conflict(message())
        }
        _ => err,
    }
}
