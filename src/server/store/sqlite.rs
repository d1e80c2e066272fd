//! [`SqliteStore`]: the [`Store`] in an SQLite database, through sqlx.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{Row, Sqlite, Transaction};

use super::sql::{
    self, clamp_i64, client_columns, code_columns, db_error, db_error_as, opt_to_i64,
    signing_key_columns, to_i64, token_columns,
};
use super::{
    ClientRecord, CodeRecord, RevokedAccess, SigningKeyRecord, Store, StoreError, StoreFuture,
    TokenHash, TokenKind, TokenRecord, TokenState,
};

/// How long a statement waits for another connection's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a file-backed store's pool.
const MAX_CONNECTIONS: u32 = 8;

/// A [`Store`] in an SQLite database: durable, for one server instance or a few processes on
/// one host sharing the file. (For instances on several hosts, use
/// `PostgresStore`, feature `postgres`.)
///
/// [`open`](Self::open) creates the file if needed, switches it to WAL mode, and applies the
/// store's migrations, embedded in the crate (sqlx's `_sqlx_migrations` table records them: keep
/// the store in its own file rather than in a database that other sqlx migrations manage).
///
/// Each [`Store`] method is one statement or one `BEGIN IMMEDIATE` transaction, so the races
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
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and brings its schema up to
    /// date. The file is put in WAL mode, with foreign keys on and a busy timeout of 5 s;
    /// callers wait at most 5 s for a pooled connection.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(sql::ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Self::migrated(pool).await
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
    /// mode and a busy timeout are recommended); brings its schema up to date.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self, StoreError> {
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // Versions applied by someone else's migrations are no reason to refuse to start.
        migrator.set_ignore_missing(true);
        // sqlx takes no lock around SQLite migrations: a second process opening a new file at
        // the same moment fails on the tables the first just created. Running again finds the
        // migrations applied.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(error) => return Err(sql::migrate_error(error)),
            }
        }
        Ok(Self { pool })
    }

    /// The connection pool, for health checks or the app's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that holds the database's write lock from its first statement
    /// (`BEGIN IMMEDIATE`), so it never fails half-way on a lock upgrade.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)
    }
}

/// Inserts one token; a taken id (or refresh-token digest) is a [`StoreError::Conflict`].
async fn insert_token(conn: &mut SqliteConnection, token: &TokenRecord) -> Result<(), StoreError> {
    bind_token(
        sqlx::query(
            "INSERT INTO oauth2_tokens (id, kind, hash, client_id, subject, family_id, scopes, \
         issued_at, expires_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ),
        token,
    )?
    .execute(&mut *conn)
    .await
    .map_err(db_error_as(|| format!("token id {} exists", token.id)))?;
    Ok(())
}

/// Inserts one token unless its id (or digest) is taken; whether it was inserted.
async fn insert_token_if_new(
    conn: &mut SqliteConnection,
    token: &TokenRecord,
) -> Result<bool, StoreError> {
    let done = bind_token(
        sqlx::query(
            "INSERT INTO oauth2_tokens (id, kind, hash, client_id, subject, family_id, scopes, \
         issued_at, expires_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING",
        ),
        token,
    )?
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() == 1)
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

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

/// Appends the revoked access tokens among `tokens` to the revocation log.
async fn log_revocations(
    conn: &mut SqliteConnection,
    tokens: &[TokenRecord],
) -> Result<(), StoreError> {
    for token in tokens
        .iter()
        .filter(|t| t.kind == TokenKind::Access && t.state == TokenState::Revoked)
    {
        sqlx::query("INSERT INTO oauth2_revocation_log (jti, expires_at) VALUES ($1, $2)")
            .bind(token.id.clone())
            .bind(opt_to_i64(token.expires_at, "expires_at")?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

fn tokens_from_rows(rows: &[SqliteRow]) -> Result<Vec<TokenRecord>, StoreError> {
    rows.iter().map(sql::token_from_row).collect()
}

/// The statement [`revoke_where`] runs: revoke the tokens whose `$column` is `$1` and return
/// them.
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

/// Runs a [`revocation_sql!`] statement for `key`, logs the access tokens it revoked, and
/// returns what it revoked in issue order. The caller holds the write transaction.
async fn revoke_where(
    conn: &mut SqliteConnection,
    statement: &'static str,
    key: &str,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(statement)
        .bind(key)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let revoked = sql::sorted_tokens(tokens_from_rows(&rows)?);
    log_revocations(conn, &revoked).await?;
    Ok(revoked)
}

impl SqliteStore {
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
        let mut tx = self.write().await?;
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
        let mut tx = self.write().await?;
        // The compare-and-set: only an unused code of this client matches.
        let taken = sqlx::query(concat!(
            "UPDATE oauth2_codes SET used = 1 WHERE hash = $1 AND client_id = $2 AND used = 0 \
             RETURNING ",
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
        let mut tx = self.write().await?;
        let mut live = true;
        for mut token in tokens {
            if let Some(family) = &token.family_id {
                let revoked =
                    sqlx::query("SELECT 1 FROM oauth2_revoked_families WHERE family_id = $1")
                        .bind(family.clone())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_error)?
                        .is_some();
                if revoked {
                    token.state = TokenState::Revoked;
                    live = false;
                    log_revocations(&mut tx, std::slice::from_ref(&token)).await?;
                }
            }
            insert_token(&mut tx, &token).await?;
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
        let mut tx = self.write().await?;
        // The compare-and-set: only an active refresh token matches.
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
            if !insert_token_if_new(&mut tx, token).await? {
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
        let mut tx = self.write().await?;
        let revoked = revoke_where(&mut tx, revocation_sql!("id"), id)
            .await?
            .pop();
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn do_revoke_family(&self, family_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.write().await?;
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
             ON CONFLICT (family_id) DO UPDATE SET until = excluded.until",
        )
        .bind(family_id)
        .bind(opt_to_i64(until, "family mark")?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn do_revoke_client_tokens(
        &self,
        client_id: &str,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.write().await?;
        let revoked = revoke_where(&mut tx, revocation_sql!("client_id"), client_id).await?;
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
        let mut tx = self.write().await?;
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
        let mut tx = self.write().await?;
        let active = sqlx::query(concat!(
            "SELECT ",
            signing_key_columns!(),
            " FROM oauth2_signing_keys WHERE active = 1"
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
        let mut tx = self.write().await?;
        let taken = sqlx::query("SELECT 1 FROM oauth2_signing_keys WHERE kid = $1")
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
            "UPDATE oauth2_signing_keys SET active = 0, retired_until = $1 WHERE active = 1",
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
             WHERE active = 0 AND retired_until IS NOT NULL AND retired_until <= $1",
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
    conn: &mut SqliteConnection,
    key: &SigningKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO oauth2_signing_keys \
         (kid, algorithm, private_key, encrypted, created_at, active, retired_until) \
         VALUES ($1, $2, $3, $4, $5, 1, NULL)",
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

impl Store for SqliteStore {
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
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
