//! [`PostgresStore`]: the [`Store`] in a PostgreSQL database, through sqlx.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::sync::watch;

use super::sql::{
    self, clamp_i64, client_columns, code_columns, db_error, db_error_as, opt_to_i64,
    signing_key_columns, to_i64, token_columns,
};
use super::{
    ClientRecord, CodeRecord, RevokedAccess, SigningKeyRecord, Store, StoreError, StoreFuture,
    TokenHash, TokenKind, TokenRecord, TokenState,
};

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

/// How long the revocation listener waits before it tries to reconnect.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A [`Store`] in a PostgreSQL database, shared by any number of server instances.
///
/// [`connect`](Self::connect) applies the store's migrations, embedded in the crate; its
/// tables are named `oauth2_*`, and sqlx records the migrations in `_sqlx_migrations`. When the
/// app runs sqlx migrations of its own, give the store a schema of its own with
/// [`connect_with_schema`](Self::connect_with_schema) so the two migration histories do not
/// meet.
///
/// Each [`Store`] method is one statement or one transaction. Redeeming a code and rotating a
/// refresh token are a compare-and-set (`UPDATE … WHERE used = FALSE` / `state = 'active'`):
/// of concurrent callers on any instance, the one whose update matched wins, the others see
/// the row already changed. Transaction-scoped advisory locks order what a row lock cannot:
/// storing tokens into a refresh-token family against revoking that family (or the client's
/// tokens), and appends to the revocation log, so that
/// [`revocations_since`](Store::revocations_since) never skips an entry.
///
/// Whenever access-token revocations are logged, the transaction also sends
/// `NOTIFY tower_oauth2_revocations` (payload: the schema), and
/// [`revocation_signal`](Store::revocation_signal) listens for it (on one pooled connection,
/// from the first call on), so that every instance syncs its denylist at once rather than at
/// its next poll.
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
            pool,
            signal: Arc::default(),
        })
    }

    /// The connection pool, for health checks, `LISTEN`, or the app's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Every transaction is READ COMMITTED whatever the database's default: the advisory
    /// locks taken first only order transactions if each statement sees what committed while
    /// it waited (under REPEATABLE READ the snapshot predates the wait).
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(db_error)
    }
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
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

async fn lock_tokens(conn: &mut PgConnection, tokens: &[TokenRecord]) -> Result<(), StoreError> {
    lock_entities(
        conn,
        tokens.iter().map(|t| t.client_id.as_str()),
        tokens.iter().filter_map(|t| t.family_id.as_deref()),
    )
    .await
}

async fn execute(conn: &mut PgConnection, statement: &'static str) -> Result<(), StoreError> {
    sqlx::query(statement)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

const INSERT_TOKEN: &str = "INSERT INTO oauth2_tokens (id, kind, hash, client_id, subject, \
     family_id, scopes, issued_at, expires_at, state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const INSERT_TOKEN_IF_NEW: &str = "INSERT INTO oauth2_tokens (id, kind, hash, client_id, \
     subject, family_id, scopes, issued_at, expires_at, state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_token<'q>(query: Query<'q>, token: &TokenRecord) -> Result<Query<'q>, StoreError> {
    Ok(query
        .bind(token.id.clone())
        .bind(token.kind.as_str())
        .bind(token.hash.map(|h| h.as_bytes().to_vec()))
        .bind(token.client_id.clone())
        .bind(token.subject.clone())
        .bind(token.family_id.clone())
        .bind(sql::list_json(&token.scopes))
        .bind(to_i64(token.issued_at, "issued_at")?)
        .bind(opt_to_i64(token.expires_at, "expires_at")?)
        .bind(token.state.as_str()))
}

/// Appends a revoked access token to the revocation log. The caller holds [`LOG_LOCK`] and
/// sends [`NOTIFY`].
async fn log_revocation(conn: &mut PgConnection, token: &TokenRecord) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO oauth2_revocation_log (jti, expires_at) VALUES ($1, $2)")
        .bind(token.id.clone())
        .bind(opt_to_i64(token.expires_at, "expires_at")?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

fn tokens_from_rows(rows: &[PgRow]) -> Result<Vec<TokenRecord>, StoreError> {
    rows.iter().map(sql::token_from_row).collect()
}

/// The statement [`revoke_where`] runs: revoke the tokens whose `$column` is `$1`, log the
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

/// Runs a [`revocation_sql!`] statement for `key` and returns the tokens it revoked, in issue
/// order. The caller holds the log lock, so the log's order is commit order.
async fn revoke_where(
    conn: &mut PgConnection,
    statement: &'static str,
    key: &str,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(statement)
        .bind(key)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(sql::sorted_tokens(tokens_from_rows(&rows)?))
}

fn logs_access(tokens: &[TokenRecord]) -> bool {
    tokens.iter().any(|t| t.kind == TokenKind::Access)
}

impl PostgresStore {
    async fn do_insert_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        sql::bind_client(
            sqlx::query(concat!(
                "INSERT INTO oauth2_clients (",
                client_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )),
            client.clone(),
        )?
        .execute(&self.pool)
        .await
        .map_err(db_error_as(|| {
            format!("client {} exists", client.client_id)
        }))?;
        Ok(())
    }

    async fn do_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth2_clients WHERE client_id = $1"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(sql::client_from_row)
        .transpose()
    }

    async fn do_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth2_clients ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(sql::client_from_row)
        .collect()
    }

    async fn do_update_client(&self, client: ClientRecord) -> Result<bool, StoreError> {
        let done = sql::bind_client(
            sqlx::query(
                "UPDATE oauth2_clients SET name = $2, secret_hash = $3, redirect_uris = $4, \
             grant_types = $5, scopes = $6, default_scopes = $7, access_token_lifetime = $8, \
             refresh_token_lifetime = $9, status = $10, created_at = $11 WHERE client_id = $1",
            ),
            client.clone(),
        )?
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn do_delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM oauth2_codes WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let done = sqlx::query("DELETE FROM oauth2_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn do_insert_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO oauth2_codes (",
            code_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(code.hash.as_bytes().to_vec())
        .bind(code.client_id)
        .bind(code.redirect_uri)
        .bind(code.subject)
        .bind(sql::list_json(&code.scopes))
        .bind(code.code_challenge)
        .bind(code.family_id)
        .bind(code.used)
        .bind(to_i64(code.expires_at, "expires_at")?)
        .execute(&self.pool)
        .await
        .map_err(db_error_as(|| "authorization code exists".to_owned()))?;
        Ok(())
    }

    async fn do_take_code(
        &self,
        hash: &TokenHash,
        client_id: &str,
    ) -> Result<Option<(CodeRecord, bool)>, StoreError> {
        let mut tx = self.begin().await?;
        // The compare-and-set: only an unused code of this client matches. A concurrent
        // redemption waits for the row lock, then finds `used` true and matches nothing.
        let taken = sqlx::query(concat!(
            "UPDATE oauth2_codes SET used = TRUE \
             WHERE hash = $1 AND client_id = $2 AND used = FALSE RETURNING ",
            code_columns!()
        ))
        .bind(hash.as_bytes().to_vec())
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let result = match taken {
            Some(row) => Some((sql::code_from_row(&row)?, true)),
            None => sqlx::query(concat!(
                "SELECT ",
                code_columns!(),
                " FROM oauth2_codes WHERE hash = $1"
            ))
            .bind(hash.as_bytes().to_vec())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .map(|row| sql::code_from_row(&row).map(|code| (code, false)))
            .transpose()?,
        };
        tx.commit().await.map_err(db_error)?;
        Ok(result)
    }

    async fn do_insert_tokens(&self, tokens: Vec<TokenRecord>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Against a concurrent revoke_family / revoke_client_tokens: whichever takes the
        // lock second sees what the first committed.
        lock_tokens(&mut tx, &tokens).await?;
        let mut live = true;
        let mut logged = false;
        for mut token in tokens {
            if let Some(family) = &token.family_id {
                let revoked = sqlx::query(
                    "SELECT 1 AS revoked FROM oauth2_revoked_families WHERE family_id = $1",
                )
                .bind(family.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?
                .is_some();
                if revoked {
                    token.state = TokenState::Revoked;
                    live = false;
                    if token.kind == TokenKind::Access {
                        if !logged {
                            execute(&mut tx, LOG_LOCK).await?;
                            logged = true;
                        }
                        log_revocation(&mut tx, &token).await?;
                    }
                }
            }
            bind_token(sqlx::query(INSERT_TOKEN), &token)?
                .execute(&mut *tx)
                .await
                .map_err(db_error_as(|| format!("token id {} exists", token.id)))?;
        }
        if logged {
            execute(&mut tx, NOTIFY).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(live)
    }

    async fn do_find_refresh(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE hash = $1"
        ))
        .bind(hash.as_bytes().to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(sql::token_from_row)
        .transpose()
    }

    async fn do_rotate_refresh(
        &self,
        old_id: &str,
        issued: Vec<TokenRecord>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // A concurrent revoke_family either ran first (the old token is revoked and the
        // update below matches nothing) or waits and then revokes the new tokens too.
        lock_tokens(&mut tx, &issued).await?;
        // The compare-and-set: only an active refresh token matches. A concurrent rotation
        // waits for the row lock, then finds it rotated and matches nothing.
        let rotated = sqlx::query(
            "UPDATE oauth2_tokens SET state = 'rotated' \
             WHERE id = $1 AND kind = 'refresh_token' AND state = 'active'",
        )
        .bind(old_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if rotated.rows_affected() != 1 {
            return Ok(false);
        }
        for token in &issued {
            let done = bind_token(sqlx::query(INSERT_TOKEN_IF_NEW), token)?
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if done.rows_affected() != 1 {
                // Dropping the transaction rolls the rotation back.
                return Ok(false);
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn do_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(sql::token_from_row)
        .transpose()
    }

    async fn do_revoke_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let mut tx = self.begin().await?;
        execute(&mut tx, LOG_LOCK).await?;
        let revoked = revoke_where(&mut tx, revocation_sql!("id"), id)
            .await?
            .pop();
        if logs_access(revoked.as_slice()) {
            execute(&mut tx, NOTIFY).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn do_revoke_family(&self, family_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.begin().await?;
        lock_entities(&mut tx, [], [family_id]).await?;
        execute(&mut tx, LOG_LOCK).await?;
        let revoked = revoke_where(&mut tx, revocation_sql!("family_id"), family_id).await?;
        let span = sqlx::query(
            "SELECT COUNT(*) - COUNT(expires_at) AS unlimited, MAX(expires_at) AS latest \
             FROM oauth2_tokens WHERE family_id = $1",
        )
        .bind(family_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let until = sql::family_mark_until(
            crate::time::now(),
            span.try_get("unlimited").map_err(db_error)?,
            span.try_get("latest").map_err(db_error)?,
        )?;
        sqlx::query(
            "INSERT INTO oauth2_revoked_families (family_id, until) VALUES ($1, $2) \
             ON CONFLICT (family_id) DO UPDATE SET until = EXCLUDED.until",
        )
        .bind(family_id)
        .bind(opt_to_i64(until, "family mark")?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if logs_access(&revoked) {
            execute(&mut tx, NOTIFY).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn do_revoke_client_tokens(
        &self,
        client_id: &str,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.begin().await?;
        lock_entities(&mut tx, [client_id], []).await?;
        execute(&mut tx, LOG_LOCK).await?;
        let revoked = revoke_where(&mut tx, revocation_sql!("client_id"), client_id).await?;
        if logs_access(&revoked) {
            execute(&mut tx, NOTIFY).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn do_client_tokens(
        &self,
        client_id: &str,
        now: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE client_id = $1 AND state = 'active' \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY issued_at, id"
        ))
        .bind(client_id)
        .bind(clamp_i64(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        tokens_from_rows(&rows)
    }

    async fn do_revoked_access_tokens(&self, now: u64) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE kind = 'access_token' AND state = 'revoked' \
             AND (expires_at IS NULL OR expires_at > $1) ORDER BY issued_at, id"
        ))
        .bind(clamp_i64(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        tokens_from_rows(&rows)
    }

    async fn do_revocations_since(
        &self,
        cursor: u64,
    ) -> Result<(Vec<RevokedAccess>, u64), StoreError> {
        let rows = sqlx::query(
            "SELECT seq, jti, expires_at FROM oauth2_revocation_log WHERE seq > $1 ORDER BY seq",
        )
        .bind(clamp_i64(cursor))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut next = None;
        for row in &rows {
            let (seq, entry) = sql::revocation_from_row(row)?;
            entries.push(entry);
            next = Some(seq);
        }
        let next = match next {
            Some(next) => next,
            // Nothing new. If the log ends before the cursor, this is not the database that
            // handed it out (restored, replaced, or its newest rows purged): start over, since
            // entries may repeat but must never be skipped.
            None => {
                let newest = sql::cursor_from_i64(
                    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM oauth2_revocation_log")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db_error)?,
                )?;
                if newest < cursor { 0 } else { cursor }
            }
        };
        Ok((entries, next))
    }

    async fn do_purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let now = clamp_i64(now);
        let mut tx = self.begin().await?;
        // Serialized with the revoking transactions, which update the same token rows.
        execute(&mut tx, LOG_LOCK).await?;
        let codes = sqlx::query("DELETE FROM oauth2_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let tokens = sqlx::query(
            "DELETE FROM oauth2_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM oauth2_revoked_families WHERE until IS NOT NULL AND until <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // A revocation of an expired token no longer needs syncing.
        sqlx::query(
            "DELETE FROM oauth2_revocation_log WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(codes.rows_affected() + tokens.rows_affected())
    }

    async fn do_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            signing_key_columns!(),
            " FROM oauth2_signing_keys ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(sql::signing_key_from_row)
        .collect()
    }

    async fn do_init_signing_key(
        &self,
        key: SigningKeyRecord,
    ) -> Result<SigningKeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        execute(&mut tx, KEYS_LOCK).await?;
        let active = sqlx::query(concat!(
            "SELECT ",
            signing_key_columns!(),
            " FROM oauth2_signing_keys WHERE active"
        ))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(row) = active {
            return sql::signing_key_from_row(&row);
        }
        let key = SigningKeyRecord {
            active: true,
            retired_until: None,
            ..key
        };
        insert_active_key(&mut tx, &key).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(key)
    }

    async fn do_rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        retired_until: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        execute(&mut tx, KEYS_LOCK).await?;
        let taken = sqlx::query("SELECT 1 AS taken FROM oauth2_signing_keys WHERE kid = $1")
            .bind(key.kid.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "signing key {} exists",
                key.kid
            )));
        }
        sqlx::query(
            "UPDATE oauth2_signing_keys SET active = FALSE, retired_until = $1 WHERE active",
        )
        .bind(opt_to_i64(retired_until, "retired_until")?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_active_key(&mut tx, &key).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn do_purge_signing_keys(&self, now: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM oauth2_signing_keys \
             WHERE NOT active AND retired_until IS NOT NULL AND retired_until <= $1",
        )
        .bind(clamp_i64(now))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}

/// Inserts `key` as the active key (the caller has retired any other).
async fn insert_active_key(
    conn: &mut PgConnection,
    key: &SigningKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO oauth2_signing_keys \
         (kid, algorithm, private_key, encrypted, created_at, active, retired_until) \
         VALUES ($1, $2, $3, $4, $5, TRUE, NULL)",
    )
    .bind(key.kid.clone())
    .bind(key.algorithm.clone())
    .bind(key.private_key.clone())
    .bind(key.encrypted)
    .bind(to_i64(key.created_at, "created_at")?)
    .execute(&mut *conn)
    .await
    .map_err(db_error_as(|| format!("signing key {} exists", key.kid)))?;
    Ok(())
}

impl Store for PostgresStore {
    fn insert_client(&self, client: ClientRecord) -> StoreFuture<'_, ()> {
        Box::pin(self.do_insert_client(client))
    }

    fn client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Option<ClientRecord>> {
        Box::pin(self.do_client(client_id))
    }

    fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
        Box::pin(self.do_clients())
    }

    fn update_client(&self, client: ClientRecord) -> StoreFuture<'_, bool> {
        Box::pin(self.do_update_client(client))
    }

    fn delete_client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.do_delete_client(client_id))
    }

    fn insert_code(&self, code: CodeRecord) -> StoreFuture<'_, ()> {
        Box::pin(self.do_insert_code(code))
    }

    fn take_code<'a>(
        &'a self,
        hash: &'a TokenHash,
        client_id: &'a str,
    ) -> StoreFuture<'a, Option<(CodeRecord, bool)>> {
        Box::pin(self.do_take_code(hash, client_id))
    }

    fn insert_tokens(&self, tokens: Vec<TokenRecord>) -> StoreFuture<'_, bool> {
        Box::pin(self.do_insert_tokens(tokens))
    }

    fn find_refresh<'a>(&'a self, hash: &'a TokenHash) -> StoreFuture<'a, Option<TokenRecord>> {
        Box::pin(self.do_find_refresh(hash))
    }

    fn rotate_refresh<'a>(
        &'a self,
        old_id: &'a str,
        issued: Vec<TokenRecord>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.do_rotate_refresh(old_id, issued))
    }

    fn token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
        Box::pin(self.do_token(id))
    }

    fn revoke_token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
        Box::pin(self.do_revoke_token(id))
    }

    fn revoke_family<'a>(&'a self, family_id: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
        Box::pin(self.do_revoke_family(family_id))
    }

    fn revoke_client_tokens<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
        Box::pin(self.do_revoke_client_tokens(client_id))
    }

    fn client_tokens<'a>(
        &'a self,
        client_id: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Vec<TokenRecord>> {
        Box::pin(self.do_client_tokens(client_id, now))
    }

    fn revoked_access_tokens(&self, now: u64) -> StoreFuture<'_, Vec<TokenRecord>> {
        Box::pin(self.do_revoked_access_tokens(now))
    }

    fn revocations_since(&self, cursor: u64) -> StoreFuture<'_, (Vec<RevokedAccess>, u64)> {
        Box::pin(self.do_revocations_since(cursor))
    }

    fn purge_expired(&self, now: u64) -> StoreFuture<'_, u64> {
        Box::pin(self.do_purge_expired(now))
    }

    fn signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>> {
        Box::pin(self.do_signing_keys())
    }

    fn init_signing_key(&self, key: SigningKeyRecord) -> StoreFuture<'_, SigningKeyRecord> {
        Box::pin(self.do_init_signing_key(key))
    }

    fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        retired_until: Option<u64>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.do_rotate_signing_key(key, retired_until))
    }

    fn purge_signing_keys(&self, now: u64) -> StoreFuture<'_, u64> {
        Box::pin(self.do_purge_signing_keys(now))
    }

    /// Changes when any instance logs a revocation in this store's schema (PostgreSQL
    /// `LISTEN/NOTIFY`), and after the listening connection was re-established. The first
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
