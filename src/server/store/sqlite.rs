//! [`SqliteStore`]: the [`Store`](super::Store) in an SQLite database, through sqlx.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};

use super::StoreError;
use super::sql::{self, db_error, token_columns};
use super::sql_store::{Dialect, GroupCommit, Lock, Statements, sql_store, statements};

/// How long a statement waits for another connection's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a file-backed store's pool.
const MAX_CONNECTIONS: u32 = 8;

/// A [`Store`](super::Store) in an SQLite database: durable, for one server instance or a few processes on
/// one host sharing the file. (For instances on several hosts, use
/// `PostgresStore`, feature `postgres`.)
///
/// [`open`](Self::open) creates the file if needed, switches it to WAL mode, and applies the
/// store's migrations, embedded in the crate (sqlx's `_sqlx_migrations` table records them: keep
/// the store in its own file rather than in a database that other sqlx migrations manage).
///
/// Each [`Store`](super::Store) method is one statement or one `BEGIN IMMEDIATE` transaction, so the races
/// the trait decides — redeeming a code, rotating a refresh token — have exactly one winner
/// across connections and processes: the winner is whoever's `UPDATE … WHERE` still matched
/// (`used = 0`, `state = 'active'`).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_oauth2::server::store::SqliteStore;
///
/// let store = SqliteStore::open("/var/lib/myapp/oauth2.db").await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection (the same pool as `pool` for an in-memory database, or one the
    /// application configured).
    writer: SqlitePool,
    commits: GroupCommit,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and brings its schema up to
    /// date. The file is put in WAL mode with `synchronous = FULL` (a commit is on disk before
    /// it returns), foreign keys on and a busy timeout of 5 s; callers wait at most 5 s for a
    /// pooled connection.
    ///
    /// Reads go through a pool of connections; writes through one connection, so that this
    /// process's writers queue in order rather than sleep on SQLite's file lock, and the
    /// tokens of concurrent token requests are committed together (group commit: one
    /// transaction and one sync to disk for all the requests waiting, each answered after it).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // The statement journal of a group commit's multi-row INSERT outgrows its 64 KiB
            // in memory; on the default temp store it then becomes a file created and
            // deleted on every commit.
            .pragma("temp_store", "memory");
        // Transactions run on the writer only, so only it can be left in one.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(sql::ACQUIRE_TIMEOUT)
            .after_release(close_if_left_in_transaction)
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        // Migrate before the readers connect: a reader's first statement must see the schema.
        Self::migrate(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(sql::ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(Self::with_pools(pool, writer))
    }

    /// A store in a private in-memory database, gone when the store is dropped: for tests.
    /// Its pool holds one connection that is never recycled, so every operation sees the same
    /// database.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(sql::ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Self::migrated(pool).await
    }

    /// A store on a pool the application configured itself (sizes, timeouts, pragmas; WAL
    /// mode and a busy timeout are recommended); brings its schema up to date. Reads and
    /// writes share the pool.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::migrate(&pool).await?;
        Ok(Self::with_pools(pool.clone(), pool))
    }

    fn with_pools(pool: SqlitePool, writer: SqlitePool) -> Self {
        let commits = GroupCommit::start::<Self, _>(
            writer.clone(),
            <Self as super::sql_store::SqlStore>::write_loop,
        );
        Self {
            pool,
            writer,
            commits,
        }
    }

    async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // Versions applied by someone else's migrations are no reason to refuse to start.
        migrator.set_ignore_missing(true);
        // sqlx takes no lock around SQLite migrations: a second process opening a new file at
        // the same moment fails on the tables the first just created. Running again finds the
        // migrations applied.
        let mut attempt = 0;
        loop {
            match migrator.run(pool).await {
                Ok(()) => break,
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(error) => return Err(sql::migrate_error(error)),
            }
        }
        Ok(())
    }

    /// The connection pool, for health checks or the app's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Whether a connection coming back to the pool may be reused: not if sqlx still counts it in
/// a transaction. When a write fails because the disk is full (or on some I/O errors), SQLite
/// rolls the transaction back by itself; sqlx does not notice, its own `ROLLBACK` then fails
/// ("no transaction is active"), and every later `BEGIN` on that connection would fail with
/// "non-zero transaction depth" until the connection is closed — so the store would keep
/// failing after the disk has room again. A connection that sqlx counts out of any transaction
/// (every commit) is reused at once; otherwise the ping first lets the worker finish the
/// rollback a dropped transaction queued.
fn close_if_left_in_transaction(
    conn: &mut SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    use sqlx::Connection as _;
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        conn.ping().await?;
        let reusable = !conn.is_in_transaction();
        if !reusable {
            tracing::warn!(
                target: "tower_oauth2::server",
                "closing an SQLite connection SQLite had rolled back under sqlx"
            );
        }
        Ok(reusable)
    })
}

/// The revocation statement for `$column`: revoke the tokens whose `$column` is `$1` and
/// return them; [`SqlStore::revoke_where`](super::sql_store::SqlStore::revoke_where) logs them.
macro_rules! revocation_sql {
    ($column:literal) => {
        concat!(
            "UPDATE oauth2_tokens SET state = 'revoked' WHERE ",
            $column,
            " = $1 AND state <> 'revoked' RETURNING ",
            token_columns!()
        )
    };
}

impl Dialect for SqliteStore {
    type DB = Sqlite;

    /// A write transaction that holds the database's write lock from its first statement, so
    /// it never fails half-way on a lock upgrade.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    const SQL: Statements = statements! {
        true = "1",
        false = "0",
        active = "active = 1",
        inactive = "active = 0",
        revoke = revocation_sql,
    };

    const REVOCATION_LOGS: bool = false;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn group_commit(&self) -> &GroupCommit {
        &self.commits
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Nothing to take: every transaction holds the database's write lock (`BEGIN IMMEDIATE`),
    /// so they run one after another.
    fn lock<'c>(
        _: &'c mut SqliteConnection,
        _: Lock<'c>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'c {
        std::future::ready(Ok(()))
    }

    /// Nothing to announce: other processes poll.
    fn notify(_: &mut SqliteConnection) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
}

sql_store!(SqliteStore);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::server::store::Store;
    use crate::server::store::sql::tests::{
        exercise, family_races, foreign_cursor, out_of_range, race,
    };

    /// A fresh database file path, removed (with its WAL files) on drop.
    struct TempDb(std::path::PathBuf);

    impl TempDb {
        fn new(name: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            Self(std::env::temp_dir().join(format!(
                "tower-oauth2-{name}-{}-{nanos}.db",
                std::process::id()
            )))
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    #[tokio::test]
    async fn in_memory_store_behaves_like_the_memory_store() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        out_of_range(&store).await;
        exercise(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn file_store_persists_and_has_one_winner_across_pools() {
        let db = TempDb::new("sqlite-store");
        {
            let store = SqliteStore::open(&db.0).await.expect("open");
            exercise(&store).await;
        }
        // Reopened (migrations already applied), and shared by two pools as two processes
        // would share it.
        let a = SqliteStore::open(&db.0).await.expect("reopen");
        let b = SqliteStore::open(&db.0).await.expect("second pool");
        assert!(a.client("c1").await.expect("read").is_some(), "persisted");
        let stores: [Arc<dyn Store>; 2] = [Arc::new(a.clone()), Arc::new(b)];
        race(&stores).await;
        family_races(&stores).await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(a.pool())
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn a_corrupt_row_is_an_error_not_a_panic() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        sqlx::query(
            "INSERT INTO oauth2_tokens (id, kind, hash, client_id, subject, family_id, scopes, \
             issued_at, expires_at, state) \
             VALUES ('t', 'access_token', NULL, 'c', 's', NULL, 'not json', 1, NULL, 'active')",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        let error = store.token("t").await.expect_err("corrupt");
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.starts_with("corrupt row")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_foreign_cursor_starts_the_log_over() {
        let store = SqliteStore::open_in_memory().await.expect("open");
        foreign_cursor(&store).await;
    }

    #[tokio::test]
    async fn a_store_on_the_apps_own_pool() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_millis(200))
            .connect("sqlite::memory:")
            .await
            .expect("pool");
        let store = SqliteStore::from_pool(pool).await.expect("migrated");
        foreign_cursor(&store).await;
        // Opening the same pool again finds the schema up to date.
        SqliteStore::from_pool(store.pool().clone())
            .await
            .expect("re-open");
    }
}
