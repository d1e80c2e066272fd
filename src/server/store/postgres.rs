//! [`PostgresStore`]: the [`Store`](super::Store) in a PostgreSQL database, through sqlx.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgQueryResult,
};
use sqlx::{Connection, Postgres};
use tokio::sync::watch;

use super::sql::{self, db_error, token_columns};
use super::sql_store::{Dialect, GroupCommit, Lock, Statements, sql_store, statements};
use super::{AuthFailures, StoreError};

/// Serializes appends to the revocation log (and everything else that revokes or purges
/// tokens), so that sequence order is commit order: a reader that has seen entry `n` has
/// seen every entry before it. Advisory locks with two `int4` keys live apart from those with
/// one `bigint` key, which [`lock_entities`] uses.
const LOG_LOCK: &str = "SELECT pg_advisory_xact_lock(1953460018, 1)";

/// Serializes signing-key changes, so two instances rotating at once both take effect in turn.
const KEYS_LOCK: &str = "SELECT pg_advisory_xact_lock(1953460018, 2)";

/// The channel revocations are announced on.
const CHANNEL: &str = "tower_oauth2_revocations";

/// Wakes listeners after revocations are logged; the payload is the store's schema.
const NOTIFY: &str = "SELECT pg_notify('tower_oauth2_revocations', current_schema())";

/// The database's clock in milliseconds since the Unix epoch: failure windows are timed by it,
/// so that instances whose clocks differ share one window.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

/// Counts one failure for each key of `$1` (a `text[]`) in its window of `$3` ms, starting a
/// window where none is live, and returns each key's count and the milliseconds its window has
/// left. When a count has just reached `$2` it also announces on [`CHANNEL`], so that other
/// instances sync the block at once (the scalar subquery makes the announcing CTE run).
const RECORD_FAILURES: &str = concat!(
    "WITH now AS (SELECT ",
    db_now_ms!(),
    " AS ms), \
     up AS (INSERT INTO oauth2_auth_failures AS f \
       (key, window_start, window_end, count, updated_at) \
       SELECT k, now.ms, now.ms + $3, 1, now.ms FROM unnest($1::text[]) AS k, now \
       ON CONFLICT (key) DO UPDATE SET \
       window_start = CASE WHEN f.window_end <= excluded.updated_at \
         THEN excluded.window_start ELSE f.window_start END, \
       window_end = CASE WHEN f.window_end <= excluded.updated_at \
         THEN excluded.window_end ELSE f.window_end END, \
       count = CASE WHEN f.window_end <= excluded.updated_at \
         THEN 1 ELSE LEAST(f.count + 1, 4294967295) END, \
       updated_at = excluded.updated_at \
       RETURNING key, count, window_end - updated_at AS remaining_ms), \
     announced AS (SELECT pg_notify('tower_oauth2_revocations', current_schema()) \
       FROM up WHERE count = $2 LIMIT 1) \
     SELECT key, count, remaining_ms, (SELECT count(*) FROM announced) AS announced FROM up"
);

/// The keys that failed at `updated_at >= $1` and have at least `$2` failures in a window that
/// has not ended, with the milliseconds it has left; and the database's clock (one row with a
/// NULL key when there are none).
const AUTH_BLOCKS: &str = concat!(
    "WITH now AS (SELECT ",
    db_now_ms!(),
    " AS ms) \
     SELECT now.ms AS now_ms, f.key, f.count, f.window_end - now.ms AS remaining_ms \
     FROM now LEFT JOIN oauth2_auth_failures f \
     ON f.updated_at >= $1 AND f.count >= $2 AND f.window_end > now.ms"
);

/// How far back of the database's clock at one read of [`AUTH_BLOCKS`] the next one starts:
/// far more than a failure's statement takes from its timestamp to its commit, so none is
/// skipped. Keys that failed within it are read again (harmless).
const AUTH_BLOCKS_OVERLAP_MS: u64 = 5_000;

/// How long the revocation listener waits before it tries to reconnect.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A [`Store`](super::Store) in a PostgreSQL database, shared by any number of server instances.
///
/// [`connect`](Self::connect) applies the store's migrations, embedded in the crate; its
/// tables are named `oauth2_*`, and sqlx records the migrations in `_sqlx_migrations`. When the
/// app runs sqlx migrations of its own, give the store a schema of its own with
/// [`connect_with_schema`](Self::connect_with_schema) so the two migration histories do not
/// meet.
///
/// Each [`Store`](super::Store) method is one statement or one transaction. Redeeming a code and rotating a
/// refresh token are a compare-and-set (`UPDATE … WHERE used = FALSE` / `state = 'active'`):
/// of concurrent callers on any instance, the one whose update matched wins, the others see
/// the row already changed. Transaction-scoped advisory locks order what a row lock cannot:
/// storing tokens into a refresh-token family against revoking that family (or the client's
/// tokens), and appends to the revocation log, so that
/// [`revocations_since`](super::Store::revocations_since) never skips an entry.
///
/// Whenever access-token revocations are logged, the transaction also sends
/// `NOTIFY tower_oauth2_revocations` (payload: the schema), and
/// [`revocation_signal`](super::Store::revocation_signal) listens for it (on one pooled connection,
/// from the first call on), so that every instance syncs its denylist at once rather than at
/// its next poll.
///
/// Failed client authentications are counted for every instance in `oauth2_auth_failures`
/// ([`record_auth_failures`](super::Store::record_auth_failures), windows timed by the
/// database's clock); a key that reaches the limit is announced on the same channel, and
/// [`auth_blocks`](super::Store::auth_blocks) lists the keys blocked since a cursor.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_oauth2::server::store::PostgresStore;
///
/// let store = PostgresStore::connect_with_schema("postgres://app@db/app", "oauth2").await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    commits: GroupCommit,
    /// The revocation signal, once something asked for it.
    signal: Arc<OnceLock<watch::Receiver<u64>>>,
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL; `sslmode=require` and friends
    /// use rustls) and brings the store's tables up to date, in the connection's default
    /// schema. Callers wait at most 5 s for a pooled connection.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = parse_url(url)?;
        let pool = pool_options()
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Self::migrated(pool).await
    }

    /// Like [`connect`](Self::connect), with the store's tables in `schema`: created if
    /// missing, and made the `search_path` of every pooled connection. The name must match
    /// `[a-z_][a-z0-9_]*` (at most 63 bytes), since it is written into the `CREATE SCHEMA`
    /// statement.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        let options = parse_url(url)?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(db_error)?;
        // Asked first, so that a role without CREATE on the database can use an existing
        // schema.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut conn)
                .await
                .map_err(db_error)?;
        if !exists {
            // An identifier cannot be bound; the name was checked above to be a plain one.
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            // `query`, not `raw_sql`: the latter's future is not `Send` for every lifetime,
            // so an app could not await this inside `tokio::spawn`.
            match sqlx::query(&create).execute(&mut conn).await {
                // Another process created it at the same moment.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                other => {
                    other.map_err(db_error)?;
                }
            }
        }
        // Best effort: the schema exists either way.
        let _ = conn.close().await;
        let schema: Arc<str> = Arc::from(schema);
        let pool = pool_options()
            .after_connect(move |conn, _meta| {
                let schema = Arc::clone(&schema);
                Box::pin(async move {
                    sqlx::query("SELECT set_config('search_path', $1, false)")
                        .bind(&*schema)
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Self::migrated(pool).await
    }

    /// A store on a pool the application configured itself (sizes, timeouts — how long a
    /// request waits for a connection while the database is down —, TLS, `search_path`);
    /// brings the store's tables up to date in the pool's schema.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::migrated(pool).await
    }

    async fn migrated(pool: PgPool) -> Result<Self, StoreError> {
        let mut migrator = sqlx::migrate!("migrations/postgres");
        // Versions applied by someone else's migrations are no reason to refuse to start.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(sql::migrate_error)?;
        Ok(Self {
            commits: GroupCommit::start::<Self, _>(
                pool.clone(),
                <Self as super::sql_store::SqlStore>::write_loop,
            ),
            pool,
            signal: Arc::default(),
        })
    }

    /// The connection pool, for health checks, `LISTEN`, or the app's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// [`Store::record_auth_failures`](super::Store::record_auth_failures): one
    /// `INSERT … ON CONFLICT DO UPDATE … RETURNING` for every key.
    async fn record_failures(
        &self,
        keys: &[String],
        max: u32,
        window: Duration,
    ) -> Result<Vec<AuthFailures>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
        let rows = sqlx::query(RECORD_FAILURES)
            .bind(keys)
            .bind(i64::from(max))
            .bind(window_ms.max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(failures_from_row).collect()
    }

    /// [`Store::auth_blocks`](super::Store::auth_blocks).
    async fn blocks(&self, cursor: u64, max: u32) -> Result<(Vec<AuthFailures>, u64), StoreError> {
        let rows = sqlx::query(AUTH_BLOCKS)
            .bind(sql::clamp_i64(cursor))
            .bind(i64::from(max))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut blocks = Vec::with_capacity(rows.len());
        let mut now = 0;
        for row in &rows {
            now = sql::from_i64(try_get(row, "now_ms")?, "database clock")?;
            if try_get::<Option<String>>(row, "key")?.is_some() {
                blocks.push(failures_from_row(row)?);
            }
        }
        Ok((blocks, now.saturating_sub(AUTH_BLOCKS_OVERLAP_MS)))
    }
}

fn try_get<'r, T>(row: &'r sqlx::postgres::PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    use sqlx::Row as _;
    row.try_get(name)
        .map_err(|e| sql::corrupt(format_args!("column {name}: {e}")))
}

/// A key's count from a row of [`RECORD_FAILURES`] or [`AUTH_BLOCKS`].
fn failures_from_row(row: &sqlx::postgres::PgRow) -> Result<AuthFailures, StoreError> {
    let count: i64 = try_get(row, "count")?;
    let remaining: i64 = try_get(row, "remaining_ms")?;
    Ok(AuthFailures {
        key: try_get(row, "key")?,
        count: u32::try_from(count.max(0)).unwrap_or(u32::MAX),
        remaining: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
    })
}

/// Counts the notifications on [`CHANNEL`] from this store's schema into `sender` (and bumps
/// it after a reconnection, since notifications may have been missed), until every receiver
/// is gone.
async fn listen_revocations(pool: PgPool, sender: watch::Sender<u64>) {
    let bump = |sender: &watch::Sender<u64>| sender.send_modify(|n| *n = n.wrapping_add(1));
    while !pool.is_closed() {
        let connected = async {
            let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(&pool)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>((schema, listener))
        };
        let (schema, mut listener) = tokio::select! {
            _ = sender.closed() => return,
            connected = connected => match connected {
                Ok(connected) => connected,
                Err(error) => {
                    tracing::debug!(target: "tower_oauth2::server", %error, "revocation listener cannot connect");
                    tokio::select! {
                        _ = sender.closed() => return,
                        _ = tokio::time::sleep(LISTEN_RETRY) => continue,
                    }
                }
            },
        };
        bump(&sender);
        loop {
            tokio::select! {
                _ = sender.closed() => return,
                note = listener.try_recv() => match note {
                    Ok(Some(note)) => {
                        if schema.as_deref().is_none_or(|s| s == note.payload()) {
                            bump(&sender);
                        }
                    }
                    // The connection was lost; `try_recv` reconnects.
                    Ok(None) => bump(&sender),
                    Err(error) => {
                        tracing::debug!(target: "tower_oauth2::server", %error, "revocation listener failed");
                        break;
                    }
                },
            }
        }
        tokio::select! {
            _ = sender.closed() => return,
            _ = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    url.parse::<PgConnectOptions>()
        .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL URL: {e}")))
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().acquire_timeout(sql::ACQUIRE_TIMEOUT)
}

/// Whether `schema` is a plain lower-case identifier, safe to write into SQL unquoted.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63
        && !schema.starts_with("pg_");
    if plain {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "schema name {schema:?} must match [a-z_][a-z0-9_]*, be at most 63 bytes and not \
             start with pg_"
        )))
    }
}

/// The advisory-lock key of a client or a refresh-token family.
fn entity_key(kind: &str, id: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    let mut key = [0; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

/// Takes the transaction-scoped advisory locks of the clients and families `tokens` belong
/// to, in ascending key order (so two transactions never wait on each other in a cycle).
/// Every transaction takes these before [`LOG_LOCK`] and before any row lock.
async fn lock_entities(
    conn: &mut PgConnection,
    clients: impl IntoIterator<Item = &str>,
    families: impl IntoIterator<Item = &str>,
) -> Result<(), StoreError> {
    let mut keys: Vec<i64> = clients
        .into_iter()
        .map(|c| entity_key("client", c))
        .chain(families.into_iter().map(|f| entity_key("family", f)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    match keys.as_slice() {
        [] => {}
        [key] => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(*key)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        // One round trip for all, still in ascending order: the sorted subquery (fenced by
        // OFFSET 0) feeds the locking function row by row.
        _ => {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(k) FROM \
                 (SELECT k FROM unnest($1::bigint[]) AS t(k) ORDER BY k OFFSET 0) AS sorted",
            )
            .bind(keys)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
    }
    Ok(())
}

async fn execute(conn: &mut PgConnection, statement: &'static str) -> Result<(), StoreError> {
    sqlx::query(statement)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The revocation statement for `$column`: revoke the tokens whose `$column` is `$1`, log the
/// access tokens among them in issue order, and return them.
macro_rules! revocation_sql {
    ($column:literal) => {
        concat!(
            "WITH revoked AS (UPDATE oauth2_tokens SET state = 'revoked' WHERE ",
            $column,
            " = $1 AND state <> 'revoked' RETURNING ",
            token_columns!(),
            "), logged AS (INSERT INTO oauth2_revocation_log (jti, expires_at) \
             SELECT id, expires_at FROM revoked WHERE kind = 'access_token' \
             ORDER BY issued_at, id) \
             SELECT ",
            token_columns!(),
            " FROM revoked"
        )
    };
}

impl Dialect for PostgresStore {
    type DB = Postgres;

    /// Every transaction is READ COMMITTED whatever the database's default: the advisory
    /// locks taken first only order transactions if each statement sees what committed while
    /// it waited (under REPEATABLE READ the snapshot predates the wait).
    const BEGIN: &'static str = "BEGIN ISOLATION LEVEL READ COMMITTED";

    const SQL: Statements = statements! {
        true = "TRUE",
        false = "FALSE",
        active = "active",
        inactive = "NOT active",
        revoke = revocation_sql,
    };

    const REVOCATION_LOGS: bool = true;

    /// A crash of the database server (not of the app) can lose the last fraction of a second
    /// of audit events (`wal_writer_delay`, 200 ms by default, three times at most); the
    /// tokens, revocations and clients are committed durably as before.
    const AUDIT_TRANSACTION: Option<&'static str> = Some("SET LOCAL synchronous_commit TO OFF");

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn group_commit(&self) -> &GroupCommit {
        &self.commits
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Transaction-scoped advisory locks: [`lock_entities`] for clients and families,
    /// [`LOG_LOCK`] and [`KEYS_LOCK`].
    async fn lock(conn: &mut PgConnection, lock: Lock<'_>) -> Result<(), StoreError> {
        match lock {
            Lock::Owners(tokens) => {
                lock_entities(
                    conn,
                    tokens.iter().map(|t| t.client_id.as_str()),
                    tokens.iter().filter_map(|t| t.family_id.as_deref()),
                )
                .await
            }
            Lock::Issues(issues) => {
                let mut clients = Vec::new();
                let mut families = Vec::new();
                for issue in issues {
                    clients.push(issue.client.client_id.as_str());
                    for token in &issue.tokens {
                        clients.push(token.client_id.as_str());
                        families.extend(token.family_id.as_deref());
                    }
                }
                lock_entities(conn, clients, families).await
            }
            Lock::Client(client_id) => lock_entities(conn, [client_id], []).await,
            Lock::Family(family_id) => lock_entities(conn, [], [family_id]).await,
            Lock::Log => execute(conn, LOG_LOCK).await,
            Lock::Keys => execute(conn, KEYS_LOCK).await,
        }
    }

    /// [`NOTIFY`]: delivered to listeners when the transaction commits.
    async fn notify(conn: &mut PgConnection) -> Result<(), StoreError> {
        execute(conn, NOTIFY).await
    }

    /// The failed-authentication windows that have ended, by the database's clock.
    async fn purge_dialect_rows(conn: &mut PgConnection) -> Result<(), StoreError> {
        execute(
            conn,
            concat!(
                "DELETE FROM oauth2_auth_failures WHERE window_end <= ",
                db_now_ms!()
            ),
        )
        .await
    }
}

sql_store! {
    PostgresStore,
    /// Changes when any instance logs a revocation in this store's schema, or a key reaches
    /// the failed-authentication limit (PostgreSQL `LISTEN/NOTIFY`), and after the listening
    /// connection was re-established. The first
    /// call starts the listener task, on the current tokio runtime (`None` outside one); it
    /// holds one pooled connection and ends when the store and every receiver are dropped.
    fn revocation_signal(&self) -> Option<watch::Receiver<u64>> {
        if let Some(receiver) = self.signal.get() {
            return Some(receiver.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let receiver = self.signal.get_or_init(|| {
            let (sender, receiver) = watch::channel(0);
            runtime.spawn(listen_revocations(self.pool.clone(), sender));
            receiver
        });
        Some(receiver.clone())
    }

    /// Shared by every instance on this schema: one `INSERT … ON CONFLICT DO UPDATE …
    /// RETURNING` for all the keys, in windows timed by the database's clock. A key whose count
    /// has just reached `max` is announced on the revocation channel, so every instance's
    /// [`revocation_signal`](Store::revocation_signal) changes and it syncs the block at once.
    fn record_auth_failures<'a>(
        &'a self,
        keys: &'a [String],
        max: u32,
        window: Duration,
    ) -> StoreFuture<'a, Option<Vec<AuthFailures>>> {
        Box::pin(async move { self.record_failures(keys, max, window).await.map(Some) })
    }

    fn auth_blocks(
        &self,
        cursor: u64,
        max: u32,
    ) -> StoreFuture<'_, Option<(Vec<AuthFailures>, u64)>> {
        Box::pin(async move { self.blocks(cursor, max).await.map(Some) })
    }
}

/// The constructors can be awaited in spawned tasks (compile-time check).
#[allow(dead_code)]
fn constructors_are_send() {
    fn send<T: Send>(_: T) {}
    send(PostgresStore::connect("postgres://localhost/x"));
    send(PostgresStore::connect_with_schema(
        "postgres://localhost/x",
        "s",
    ));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::server::store::sql::tests::{
        exercise, family_races, foreign_cursor, out_of_range, race,
    };
    use crate::server::store::{Store, TokenKind, TokenRecord, TokenState};

    const URL_VAR: &str = "TOWER_OAUTH2_TEST_POSTGRES_URL";

    fn url() -> Option<String> {
        let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty());
        if url.is_none() {
            println!("skipped: {URL_VAR} is not set");
        }
        url
    }

    fn fresh_schema(name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("t_{name}_{}_{nanos}", std::process::id())
    }

    async fn drop_schema(store: &PostgresStore, schema: &str) {
        validate_schema(schema).expect("plain name");
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(store.pool())
            .await
            .expect("drop schema");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn behaves_like_the_memory_store_and_has_one_winner_across_pools() {
        let Some(url) = url() else { return };
        let schema = fresh_schema("pg");
        let store = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("connect");
        out_of_range(&store).await;
        exercise(&store).await;
        // A second instance on the same schema (migrations already applied).
        let other = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("second pool");
        let stores: [Arc<dyn Store>; 2] = [Arc::new(store.clone()), Arc::new(other)];
        race(&stores).await;
        family_races(&stores).await;
        drop_schema(&store, &schema).await;
    }

    #[tokio::test]
    async fn a_foreign_cursor_starts_the_log_over() {
        let Some(url) = url() else { return };
        let schema = fresh_schema("cursor");
        let store = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("connect");
        foreign_cursor(&store).await;
        // The same tables through a pool handed in by the application.
        let adopted = PostgresStore::from_pool(store.pool().clone())
            .await
            .expect("from_pool");
        let (entries, _) = adopted.revocations_since(0).await.expect("since");
        assert!(entries.iter().any(|e| e.jti == "fc-a"));
        drop_schema(&store, &schema).await;
    }

    /// Failure counts per key in windows by the database's clock: one statement counts every
    /// key, a window that ended starts over at 1, `auth_blocks` reads the keys at the limit
    /// since a cursor, and `purge_expired` deletes ended windows. The stores that do not share
    /// counts say so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_authentications_are_counted_in_shared_windows() {
        let window = Duration::from_millis(800);
        assert_eq!(
            crate::server::store::MemoryStore::new()
                .record_auth_failures(&["client:x".into()], 3, window)
                .await,
            Ok(None)
        );
        let Some(url) = url() else { return };
        let schema = fresh_schema("fail");
        let store = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("connect");
        let other = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("a second instance");
        let keys = vec!["client:a".to_owned(), "peer:192.0.2.1".to_owned()];
        for n in 1..=3u32 {
            // Alternately through each instance's pool.
            let on = if n % 2 == 0 { &other } else { &store };
            let mut counts = on
                .record_auth_failures(&keys, 3, window)
                .await
                .expect("recorded")
                .expect("shared");
            counts.sort_by(|a, b| a.key.cmp(&b.key));
            assert_eq!(counts.len(), 2);
            for (counted, key) in counts.iter().zip(&keys) {
                assert_eq!((&counted.key, counted.count), (key, n));
                assert!(counted.remaining <= window, "{counted:?}");
            }
        }
        let (blocked, cursor) = other
            .auth_blocks(0, 3)
            .await
            .expect("read")
            .expect("shared");
        let mut blocked: Vec<_> = blocked.into_iter().map(|b| b.key).collect();
        blocked.sort();
        assert_eq!(blocked, keys);
        assert!(cursor > 0);
        let (over, _) = other
            .auth_blocks(0, 4)
            .await
            .expect("read")
            .expect("shared");
        assert!(over.is_empty(), "none has 4 failures: {over:?}");
        // A cursor past every failure reads none.
        let (later, _) = other
            .auth_blocks(cursor + 60_000, 3)
            .await
            .expect("read")
            .expect("shared");
        assert!(later.is_empty(), "{later:?}");

        tokio::time::sleep(window + Duration::from_millis(100)).await;
        let (ended, _) = other
            .auth_blocks(0, 3)
            .await
            .expect("read")
            .expect("shared");
        assert!(ended.is_empty(), "ended windows block nothing: {ended:?}");
        let counts = store
            .record_auth_failures(&keys[..1], 3, window)
            .await
            .expect("recorded")
            .expect("shared");
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].count, 1, "a new window");
        store.purge_expired(0).await.expect("purge");
        let left: Vec<String> = sqlx::query_scalar("SELECT key FROM oauth2_auth_failures")
            .fetch_all(store.pool())
            .await
            .expect("rows");
        assert_eq!(left, ["client:a"], "the ended window of the peer is purged");
        drop_schema(&store, &schema).await;
    }

    #[test]
    fn schema_names_are_plain_and_not_reserved() {
        assert!(validate_schema("tenant_1").is_ok());
        for bad in ["", "Upper", "1st", "a-b", "pg_temp", "x\"; DROP"] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn revocations_notify_listeners() {
        let Some(url) = url() else { return };
        let schema = fresh_schema("notify");
        let store = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("connect");
        let mut listener = sqlx::postgres::PgListener::connect_with(store.pool())
            .await
            .expect("listener");
        listener
            .listen("tower_oauth2_revocations")
            .await
            .expect("listen");
        let access = TokenRecord {
            id: "n1".into(),
            kind: TokenKind::Access,
            hash: None,
            client_id: "c".into(),
            subject: "s".into(),
            family_id: None,
            scopes: Vec::new(),
            issued_at: 1,
            expires_at: None,
            state: TokenState::Active,
            resources: Vec::new(),
            dpop_jkt: None,
        };
        assert_eq!(store.insert_tokens(vec![access]).await, Ok(true));
        assert!(store.revoke_token("n1").await.expect("revoke").is_some());
        // Other tests' stores notify on the same channel; the payload tells them apart.
        let ours = async {
            loop {
                let note = listener.recv().await.expect("notification");
                if note.payload() == schema {
                    break;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), ours)
            .await
            .expect("notified in time");
        drop(listener);

        // The same through the store's signal, from a revocation on another instance.
        let mut signal = store.revocation_signal().expect("in a runtime");
        let other = PostgresStore::connect_with_schema(&url, &schema)
            .await
            .expect("second instance");
        // The listener is up once it has announced its (re)connection.
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed())
            .await
            .expect("listening in time")
            .expect("listener alive");
        let seen = *signal.borrow_and_update();
        let access = TokenRecord {
            id: "n2".into(),
            state: TokenState::Active,
            ..store.token("n1").await.expect("read").expect("stored")
        };
        assert_eq!(other.insert_tokens(vec![access]).await, Ok(true));
        assert!(other.revoke_token("n2").await.expect("revoke").is_some());
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed())
            .await
            .expect("signalled in time")
            .expect("listener alive");
        assert!(*signal.borrow() > seen);
        drop_schema(&store, &schema).await;
    }

    #[test]
    fn schema_names_are_checked() {
        for good in ["a", "_x", "t_1_2", "oauth2"] {
            assert!(validate_schema(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a;drop",
            "a b",
            "\"a\"",
            &"a".repeat(64),
        ] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}
