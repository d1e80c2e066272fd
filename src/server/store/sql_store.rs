//! The one implementation of [`Store`](super::Store) behind `SqliteStore` and `PostgresStore`.
//!
//! Both stores run the same statements on tables of the same names and columns (their
//! migrations differ in column types, collations and keys), with `$n` placeholders, which
//! SQLite accepts too. What differs is behind
//! [`Dialect`], which each store type implements:
//!
//! - how a write transaction begins ([`Dialect::BEGIN`]): SQLite takes the database's write
//!   lock at once (`BEGIN IMMEDIATE`); PostgreSQL runs READ COMMITTED;
//! - the locks a transaction takes before it touches rows ([`Dialect::lock`]): PostgreSQL
//!   advisory locks; none on SQLite, whose write transactions exclude each other;
//! - the announcement of logged revocations at commit ([`Dialect::notify`]): PostgreSQL
//!   `NOTIFY`; nothing on SQLite;
//! - the text of the statements that differ ([`Statements`], written by [`statements!`] from
//!   one template): boolean literals, and the revocation, which PostgreSQL logs in the same
//!   statement (a data-modifying `WITH`) and SQLite afterwards.
//!
//! [`SqlStore`] is the implementation, generic over the dialect; [`sql_store!`] implements
//! [`Store`](super::Store) with it for a store type.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row as _};
use sqlx::{Transaction, Type};

use super::sql::{
    self, clamp_i64, client_columns, code_columns, db_error, db_error_as, opt_to_i64,
    signing_key_columns, to_i64, token_columns,
};
use super::{
    ApprovalDecision, AuditQuery, AuditRecord, ClientActivity, ClientRecord, ClientStatus,
    CodeRecord, Decision, DecisionOutcome, IssueOutcome, RevokedAccess, SigningKeyRecord,
    StoreError, Successor, TokenHash, TokenIssue, TokenKind, TokenRecord, TokenState,
};
use crate::server::SecretHash;

/// The connection type of a dialect's database.
pub(super) type Connection<D> = <<D as Dialect>::DB as Database>::Connection;

type Row<D> = <<D as Dialect>::DB as Database>::Row;

type Query<'q, D> =
    sqlx::query::Query<'q, <D as Dialect>::DB, <<D as Dialect>::DB as Database>::Arguments<'q>>;

/// What a transaction locks, with [`Dialect::lock`], before it touches rows.
// Without PostgreSQL, no dialect reads what is locked.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub(super) enum Lock<'a> {
    /// The clients and refresh-token families of tokens about to be stored: against a
    /// concurrent revocation of the family or the client's tokens, whichever locks second
    /// sees what the first committed.
    Owners(&'a [TokenRecord]),
    /// The same for the tokens of several grants committed together, and the clients they
    /// were issued to.
    Issues(&'a [&'a TokenIssue]),
    /// A client, whose tokens are about to be revoked.
    Client(&'a str),
    /// A refresh-token family, about to be revoked.
    Family(&'a str),
    /// The revocation log, and everything else that revokes or purges tokens: appends in
    /// commit order, so that a reader that has seen entry `n` has seen every entry before it.
    /// Taken after the others.
    Log,
    /// The signing keys, so that two instances rotating at once both take effect in turn.
    Keys,
}

/// The statements whose text differs between the dialects; [`statements!`] writes them.
#[derive(Debug)]
pub(super) struct Statements {
    /// Marks an unused code of a client used (`$1` hash, `$2` client) and returns it.
    pub(super) take_code: &'static str,
    /// Selects the active signing key.
    pub(super) active_key: &'static str,
    /// Retires the active signing key, until `$1`.
    pub(super) retire_key: &'static str,
    /// Deletes the retired keys whose `retired_until` is at most `$1`.
    pub(super) purge_keys: &'static str,
    /// Inserts an active signing key (`$1`…`$5`: kid, algorithm, private key, encrypted,
    /// created_at).
    pub(super) insert_active_key: &'static str,
    /// Revokes the token with id `$1` unless it is revoked, and returns it (`token_columns!`).
    pub(super) revoke_id: &'static str,
    /// Revokes the tokens of family `$1` that are not revoked, and returns them.
    pub(super) revoke_family: &'static str,
    /// Revokes the tokens of client `$1` that are not revoked, and returns them.
    pub(super) revoke_client: &'static str,
}

/// A dialect's [`Statements`], from the spelling of `true` and `false` in assignments, of
/// "the key is active" and "the key is not active" in conditions, and the name of a macro that
/// writes the revocation statement for a column (`revoke!("family_id")`).
macro_rules! statements {
    (
        true = $true:literal,
        false = $false:literal,
        active = $active:literal,
        inactive = $inactive:literal,
        revoke = $revoke:ident $(,)?
    ) => {
        $crate::server::store::sql_store::Statements {
            take_code: concat!(
                "UPDATE oauth2_codes SET used = ",
                $true,
                " WHERE hash = $1 AND client_id = $2 AND used = ",
                $false,
                " RETURNING ",
                $crate::server::store::sql::code_columns!()
            ),
            active_key: concat!(
                "SELECT ",
                $crate::server::store::sql::signing_key_columns!(),
                " FROM oauth2_signing_keys WHERE ",
                $active
            ),
            retire_key: concat!(
                "UPDATE oauth2_signing_keys SET active = ",
                $false,
                ", retired_until = $1 WHERE ",
                $active
            ),
            purge_keys: concat!(
                "DELETE FROM oauth2_signing_keys WHERE ",
                $inactive,
                " AND retired_until IS NOT NULL AND retired_until <= $1"
            ),
            insert_active_key: concat!(
                "INSERT INTO oauth2_signing_keys \
                 (kid, algorithm, private_key, encrypted, created_at, active, retired_until) \
                 VALUES ($1, $2, $3, $4, $5, ",
                $true,
                ", NULL)"
            ),
            revoke_id: $revoke!("id"),
            revoke_family: $revoke!("family_id"),
            revoke_client: $revoke!("client_id"),
        }
    };
}

pub(super) use statements;

/// What differs between the SQL databases, implemented by each store type.
pub(super) trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type DB: Database + sqlx::database::HasStatementCache;

    /// The statement that begins every transaction.
    const BEGIN: &'static str;

    /// The statements whose text differs.
    const SQL: Statements;

    /// Whether the revocation statements ([`Statements::revoke_id`] and its siblings) append
    /// the access tokens they revoke to the revocation log themselves; otherwise
    /// [`SqlStore::revoke_where`] does, after them.
    const REVOCATION_LOGS: bool;

    /// Run first in the audit log's append transactions, if any: PostgreSQL commits them
    /// without waiting for the WAL flush (the events are already appended behind the requests
    /// they record, so the request path never waits for them; this keeps their commits from
    /// queueing with the tokens' own on the disk).
    const AUDIT_TRANSACTION: Option<&'static str> = None;

    /// The store's pool, for reads.
    fn pool(&self) -> &Pool<Self::DB>;

    /// The pool that writes go through. SQLite's has one connection, so that the process's
    /// writers queue in order instead of sleeping on each other's file lock; PostgreSQL
    /// writes through its one pool.
    fn writer(&self) -> &Pool<Self::DB> {
        self.pool()
    }

    /// The queue of [`Store::issue_tokens`](super::Store::issue_tokens) calls waiting for the
    /// group commit.
    fn group_commit(&self) -> &GroupCommit;

    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &<Self::DB as Database>::QueryResult) -> u64;

    /// Takes `lock` until the transaction on `conn` ends.
    fn lock<'c>(
        conn: &'c mut Connection<Self>,
        lock: Lock<'c>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'c;

    /// Announces, at commit, that the transaction on `conn` logged revocations of access
    /// tokens.
    fn notify(
        conn: &mut Connection<Self>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + '_;

    /// Deletes, in [`SqlStore::purge_expired`]'s transaction, expired rows of tables only this
    /// dialect has (PostgreSQL: the shared failed-authentication windows that have ended).
    /// Nothing by default.
    fn purge_dialect_rows(
        conn: &mut Connection<Self>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + '_ {
        let _ = conn;
        std::future::ready(Ok(()))
    }
}

/// The [`Store`](super::Store) operations on a [`Dialect`]'s database. Its where clause lists
/// what sqlx must offer for the types the store binds and reads.
pub(super) trait SqlStore: Dialect
where
    for<'c> &'c mut Connection<Self>: Executor<'c, Database = Self::DB>,
    for<'q> <Self::DB as Database>::Arguments<'q>: IntoArguments<'q, Self::DB>,
    for<'a> &'a str: ColumnIndex<Row<Self>>,
    usize: ColumnIndex<Row<Self>>,
    for<'q> &'q str: Encode<'q, Self::DB> + Type<Self::DB>,
    for<'q> String: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
    for<'q> Option<String>: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
    for<'q> Vec<u8>: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
    for<'q> Option<Vec<u8>>: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
    for<'q> bool: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
    for<'q> i64: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
    for<'q> Option<i64>: Encode<'q, Self::DB> + Decode<'q, Self::DB> + Type<Self::DB>,
{
    /// A transaction, begun with [`Dialect::BEGIN`].
    async fn begin(&self) -> Result<Transaction<'static, Self::DB>, StoreError> {
        self.writer()
            .begin_with(Self::BEGIN)
            .await
            .map_err(db_error)
    }

    /// Binds a client's columns in `client_columns!` order: client_id, name, secret hash,
    /// redirect URIs, grant types, scopes, default scopes, both lifetimes, status, created_at.
    /// The insert and the update share it.
    fn bind_client(
        query: Query<'_, Self>,
        client: ClientRecord,
    ) -> Result<Query<'_, Self>, StoreError> {
        let created_at = to_i64(client.created_at, "created_at")?;
        Ok(query
            .bind(client.client_id)
            .bind(client.name)
            .bind(sql::secret_text(client.secret_hash.as_ref()))
            .bind(sql::list_json(&client.redirect_uris))
            .bind(sql::grants_json(&client.grant_types))
            .bind(sql::list_json(&client.scopes))
            .bind(sql::list_json(&client.default_scopes))
            .bind(sql::lifetime_text(client.access_token_lifetime))
            .bind(sql::lifetime_text(client.refresh_token_lifetime))
            .bind(client.status.as_str())
            .bind(created_at)
            .bind(sql::list_json(&client.contacts))
            .bind(
                client
                    .registration_token
                    .as_ref()
                    .map(SecretHash::to_stored),
            ))
    }

    /// Binds a token's columns in `token_columns!` order.
    fn bind_token<'q>(
        query: Query<'q, Self>,
        token: &TokenRecord,
    ) -> Result<Query<'q, Self>, StoreError> {
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
            .bind(token.state.as_str())
            .bind(sql::list_json(&token.resources))
            .bind(token.dpop_jkt.clone()))
    }

    /// Inserts one token; a taken id (or refresh-token digest) is a [`StoreError::Conflict`].
    async fn insert_token(
        conn: &mut Connection<Self>,
        token: &TokenRecord,
    ) -> Result<(), StoreError> {
        Self::bind_token(sqlx::query(INSERT_TOKEN), token)?
            .execute(&mut *conn)
            .await
            .map_err(db_error_as(|| format!("token id {} exists", token.id)))?;
        Ok(())
    }

    /// Inserts one token unless its id (or digest) is taken; whether it was inserted.
    async fn insert_token_if_new(
        conn: &mut Connection<Self>,
        token: &TokenRecord,
    ) -> Result<bool, StoreError> {
        let done = Self::bind_token(sqlx::query(INSERT_TOKEN_IF_NEW), token)?
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(Self::rows_affected(&done) == 1)
    }

    /// Appends a revoked access token to the revocation log. The caller holds [`Lock::Log`]
    /// and, before it commits, calls [`Dialect::notify`].
    async fn log_revocation(
        conn: &mut Connection<Self>,
        token: &TokenRecord,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO oauth2_revocation_log (jti, expires_at) VALUES ($1, $2)")
            .bind(token.id.clone())
            .bind(opt_to_i64(token.expires_at, "expires_at")?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// A client, from the columns `client_columns!` lists.
    fn client_from_row(row: &Row<Self>) -> Result<ClientRecord, StoreError> {
        let secret: String = col(row, "secret_hash")?;
        let status: String = col(row, "status")?;
        Ok(ClientRecord {
            client_id: col(row, "client_id")?,
            name: col(row, "name")?,
            secret_hash: sql::parse_secret(&secret)?,
            redirect_uris: sql::parse_list(
                &col::<_, String>(row, "redirect_uris")?,
                "redirect_uris",
            )?,
            grant_types: sql::parse_grants(&col::<_, String>(row, "grant_types")?)?,
            scopes: sql::parse_list(&col::<_, String>(row, "scopes")?, "scopes")?,
            default_scopes: sql::parse_list(
                &col::<_, String>(row, "default_scopes")?,
                "default_scopes",
            )?,
            access_token_lifetime: sql::parse_lifetime(
                col(row, "access_token_lifetime")?,
                "access_token_lifetime",
            )?,
            refresh_token_lifetime: sql::parse_lifetime(
                col(row, "refresh_token_lifetime")?,
                "refresh_token_lifetime",
            )?,
            status: ClientStatus::parse(&status)
                .ok_or_else(|| sql::corrupt(format_args!("client status {status:?}")))?,
            created_at: sql::from_i64(col(row, "created_at")?, "created_at")?,
            contacts: sql::parse_list(&col::<_, String>(row, "contacts")?, "contacts")?,
            registration_token: col::<_, Option<String>>(row, "registration_token_hash")?
                .map(|stored| {
                    SecretHash::from_stored(&stored)
                        .map_err(|e| sql::corrupt(format_args!("registration_token_hash: {e}")))
                })
                .transpose()?,
        })
    }

    /// An authorization code, from the columns `code_columns!` lists.
    fn code_from_row(row: &Row<Self>) -> Result<CodeRecord, StoreError> {
        Ok(CodeRecord {
            hash: sql::parse_hash(col(row, "hash")?)?,
            client_id: col(row, "client_id")?,
            redirect_uri: col(row, "redirect_uri")?,
            subject: col(row, "subject")?,
            scopes: sql::parse_list(&col::<_, String>(row, "scopes")?, "scopes")?,
            code_challenge: col(row, "code_challenge")?,
            family_id: col(row, "family_id")?,
            used: col(row, "used")?,
            expires_at: sql::from_i64(col(row, "expires_at")?, "expires_at")?,
            resources: sql::parse_list(&col::<_, String>(row, "resources")?, "resources")?,
            dpop_jkt: col(row, "dpop_jkt")?,
        })
    }

    /// A token, from the columns `token_columns!` lists.
    fn token_from_row(row: &Row<Self>) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            id: col(row, "id")?,
            kind: sql::parse_kind(&col::<_, String>(row, "kind")?)?,
            hash: col::<_, Option<Vec<u8>>>(row, "hash")?
                .map(sql::parse_hash)
                .transpose()?,
            client_id: col(row, "client_id")?,
            subject: col(row, "subject")?,
            family_id: col(row, "family_id")?,
            scopes: sql::parse_list(&col::<_, String>(row, "scopes")?, "scopes")?,
            issued_at: sql::from_i64(col(row, "issued_at")?, "issued_at")?,
            expires_at: col::<_, Option<i64>>(row, "expires_at")?
                .map(|e| sql::from_i64(e, "expires_at"))
                .transpose()?,
            state: sql::parse_state(&col::<_, String>(row, "state")?)?,
            resources: sql::parse_list(&col::<_, String>(row, "resources")?, "resources")?,
            dpop_jkt: col(row, "dpop_jkt")?,
        })
    }

    /// A signing key, from the columns `signing_key_columns!` lists.
    fn signing_key_from_row(row: &Row<Self>) -> Result<SigningKeyRecord, StoreError> {
        Ok(SigningKeyRecord {
            kid: col(row, "kid")?,
            algorithm: col(row, "algorithm")?,
            private_key: col(row, "private_key")?,
            encrypted: col(row, "encrypted")?,
            created_at: sql::from_i64(col(row, "created_at")?, "created_at")?,
            active: col(row, "active")?,
            retired_until: col::<_, Option<i64>>(row, "retired_until")?
                .map(|e| sql::from_i64(e, "retired_until"))
                .transpose()?,
        })
    }

    /// One entry of the revocation log: its sequence number and the revoked access token.
    fn revocation_from_row(row: &Row<Self>) -> Result<(u64, RevokedAccess), StoreError> {
        Ok((
            sql::from_i64(col(row, "seq")?, "seq")?,
            RevokedAccess {
                jti: col(row, "jti")?,
                expires_at: col::<_, Option<i64>>(row, "expires_at")?
                    .map(|e| sql::from_i64(e, "expires_at"))
                    .transpose()?,
            },
        ))
    }

    /// The row `query` selects, if any, decoded with `decode`.
    async fn select_optional<T>(
        &self,
        query: Query<'_, Self>,
        decode: fn(&Row<Self>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        query
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// The rows `query` selects, decoded with `decode`.
    async fn select_all<T>(
        &self,
        query: Query<'_, Self>,
        decode: fn(&Row<Self>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        query
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?
            .iter()
            .map(decode)
            .collect()
    }

    /// Runs a revocation statement ([`Statements::revoke_id`] and its siblings) for `key` and
    /// returns the tokens it revoked, in issue order; unless the statement logged the access
    /// tokens among them ([`Dialect::REVOCATION_LOGS`]), appends them to the log. The caller
    /// holds [`Lock::Log`], so the log's order is commit order.
    async fn revoke_where(
        conn: &mut Connection<Self>,
        statement: &'static str,
        key: &str,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(statement)
            .bind(key)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
        let revoked = rows
            .iter()
            .map(Self::token_from_row)
            .collect::<Result<_, _>>()?;
        let revoked = sql::sorted_tokens(revoked);
        if !Self::REVOCATION_LOGS {
            for token in revoked
                .iter()
                .filter(|t| t.kind == TokenKind::Access && t.state == TokenState::Revoked)
            {
                Self::log_revocation(conn, token).await?;
            }
        }
        Ok(revoked)
    }

    /// Inserts `key` as the active key (the caller has retired any other).
    async fn insert_active_key(
        conn: &mut Connection<Self>,
        key: &SigningKeyRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(Self::SQL.insert_active_key)
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

    async fn insert_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        Self::bind_client(
            sqlx::query(concat!(
                "INSERT INTO oauth2_clients (",
                client_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )),
            client.clone(),
        )?
        .execute(self.writer())
        .await
        .map_err(db_error_as(|| {
            format!("client {} exists", client.client_id)
        }))?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let query = sqlx::query(CLIENT_BY_ID);
        self.select_optional(query.bind(client_id), Self::client_from_row)
            .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth2_clients ORDER BY seq"
        ));
        self.select_all(query, Self::client_from_row).await
    }

    async fn update_client(&self, client: ClientRecord) -> Result<bool, StoreError> {
        let client_id = client.client_id.clone();
        let mut tx = self.begin().await?;
        let done = Self::bind_client(
            sqlx::query(
                "UPDATE oauth2_clients SET name = $2, secret_hash = $3, redirect_uris = $4, \
             grant_types = $5, scopes = $6, default_scopes = $7, access_token_lifetime = $8, \
             refresh_token_lifetime = $9, status = $10, created_at = $11, contacts = $12, \
             registration_token_hash = $13 \
             WHERE client_id = $1",
            ),
            client,
        )?
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let updated = Self::rows_affected(&done) > 0;
        if updated {
            Self::log_client_change(&mut tx, &client_id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(updated)
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM oauth2_codes WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM oauth2_approval_decisions WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let done = sqlx::query("DELETE FROM oauth2_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let deleted = Self::rows_affected(&done) > 0;
        if deleted {
            Self::log_client_change(&mut tx, client_id).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    /// Appends a changed client to the change feed, announced at commit like a revocation.
    async fn log_client_change(
        conn: &mut Connection<Self>,
        client_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO oauth2_client_changes (client_id, changed_at) VALUES ($1, $2)")
            .bind(client_id)
            .bind(clamp_i64(crate::time::now()))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Self::notify(conn).await
    }

    async fn client_changes_since(
        &self,
        cursor: u64,
    ) -> Result<Option<(Vec<String>, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, client_id FROM oauth2_client_changes WHERE seq > $1 ORDER BY seq",
        )
        .bind(clamp_i64(cursor))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        let mut changed = Vec::with_capacity(rows.len());
        let mut next = None;
        for row in &rows {
            next = Some(sql::from_i64(col(row, "seq")?, "seq")?);
            changed.push(col(row, "client_id")?);
        }
        let next = self
            .next_cursor(
                next,
                cursor,
                "SELECT COALESCE(MAX(seq), 0) FROM oauth2_client_changes",
            )
            .await?;
        Ok(Some((changed, next)))
    }

    /// The cursor after a read of a log (the revocation log, the client change feed): the last
    /// sequence number read, or with nothing new the same cursor — unless the log ends before
    /// it (`newest` selects its largest sequence number), when this is not the database that
    /// handed it out (restored, replaced, or its newest rows purged): then 0, to start over,
    /// since entries may repeat but must never be skipped.
    async fn next_cursor(
        &self,
        last_read: Option<u64>,
        cursor: u64,
        newest: &'static str,
    ) -> Result<u64, StoreError> {
        if let Some(last) = last_read {
            return Ok(last);
        }
        let newest = sql::cursor_from_i64(
            sqlx::query_scalar(newest)
                .fetch_one(self.pool())
                .await
                .map_err(db_error)?,
        )?;
        Ok(if newest < cursor { 0 } else { cursor })
    }

    async fn insert_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO oauth2_codes (",
            code_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
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
        .bind(sql::list_json(&code.resources))
        .bind(code.dpop_jkt)
        .execute(self.writer())
        .await
        .map_err(db_error_as(|| "authorization code exists".to_owned()))?;
        Ok(())
    }

    async fn take_code(
        &self,
        hash: &TokenHash,
        client_id: &str,
    ) -> Result<Option<(CodeRecord, bool)>, StoreError> {
        let mut tx = self.begin().await?;
        // The compare-and-set: only an unused code of this client matches. A concurrent
        // redemption waits for the write lock (SQLite) or the row lock (PostgreSQL), then
        // finds `used` true and matches nothing.
        let taken = sqlx::query(Self::SQL.take_code)
            .bind(hash.as_bytes().to_vec())
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let result = match taken {
            Some(row) => Some((Self::code_from_row(&row)?, true)),
            None => sqlx::query(concat!(
                "SELECT ",
                code_columns!(),
                " FROM oauth2_codes WHERE hash = $1"
            ))
            .bind(hash.as_bytes().to_vec())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .map(|row| Self::code_from_row(&row).map(|code| (code, false)))
            .transpose()?,
        };
        tx.commit().await.map_err(db_error)?;
        Ok(result)
    }

    async fn insert_tokens(&self, tokens: Vec<TokenRecord>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Against a concurrent revoke_family / revoke_client_tokens: whichever takes the
        // lock second sees what the first committed.
        Self::lock(&mut tx, Lock::Owners(&tokens)).await?;
        let mut logged = false;
        let live = Self::store_tokens(&mut tx, &tokens, &mut logged).await?;
        if logged {
            Self::notify(&mut tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(live)
    }

    /// Inserts newly issued tokens; those of a revoked family go in revoked (their access
    /// tokens logged, taking [`Lock::Log`] first unless `logged` says it is taken), and then
    /// the result is `false`. The caller holds the owners' locks.
    async fn store_tokens(
        conn: &mut Connection<Self>,
        tokens: &[TokenRecord],
        logged: &mut bool,
    ) -> Result<bool, StoreError> {
        let mut live = true;
        for token in tokens {
            let revoked = match &token.family_id {
                Some(family) => sqlx::query(
                    "SELECT 1 AS revoked FROM oauth2_revoked_families WHERE family_id = $1",
                )
                .bind(family.clone())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_error)?
                .is_some(),
                None => false,
            };
            if !revoked {
                Self::insert_token(conn, token).await?;
                continue;
            }
            live = false;
            let token = TokenRecord {
                state: TokenState::Revoked,
                ..token.clone()
            };
            if token.kind == TokenKind::Access {
                if !*logged {
                    Self::lock(conn, Lock::Log).await?;
                    *logged = true;
                }
                Self::log_revocation(conn, &token).await?;
            }
            Self::insert_token(conn, &token).await?;
        }
        Ok(live)
    }

    /// The rotation's compare-and-set and inserts. The caller holds the owners' locks, and on
    /// anything but [`Rotation::Rotated`] rolls back.
    async fn rotate(
        conn: &mut Connection<Self>,
        old_id: &str,
        issued: &[TokenRecord],
    ) -> Result<Rotation, StoreError> {
        // Only an active refresh token matches. A concurrent rotation waits for the write lock
        // (SQLite) or the row lock (PostgreSQL), then finds it rotated and matches nothing.
        let rotated = sqlx::query(
            "UPDATE oauth2_tokens SET state = 'rotated' \
             WHERE id = $1 AND kind = 'refresh_token' AND state = 'active'",
        )
        .bind(old_id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        if Self::rows_affected(&rotated) != 1 {
            return Ok(Rotation::NotActive);
        }
        for token in issued {
            if !Self::insert_token_if_new(conn, token).await? {
                return Ok(Rotation::Taken);
            }
        }
        Ok(Rotation::Rotated)
    }

    /// Keeps a rotation's [`Successor`] on the rotated-out token's row, in the rotation's
    /// transaction.
    async fn store_successor(
        conn: &mut Connection<Self>,
        old_id: &str,
        successor: &Successor,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE oauth2_tokens SET successor = $2, rotated_at = $3 WHERE id = $1")
            .bind(old_id)
            .bind(successor.sealed.clone())
            .bind(to_i64(successor.rotated_at, "rotated_at")?)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// [`Store::successor`](super::Store::successor).
    async fn successor_of(&self, token_id: &str) -> Result<Option<Successor>, StoreError> {
        let row = sqlx::query(
            "SELECT successor, rotated_at FROM oauth2_tokens \
             WHERE id = $1 AND successor IS NOT NULL AND rotated_at IS NOT NULL",
        )
        .bind(token_id)
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        row.map(|row| {
            Ok(Successor {
                sealed: col(&row, "successor")?,
                rotated_at: sql::from_i64(col(&row, "rotated_at")?, "rotated_at")?,
            })
        })
        .transpose()
    }

    /// [`Store::issue_tokens`](super::Store::issue_tokens): queued for the group commit, or
    /// committed alone when the store has no writer task.
    async fn issue_tokens(&self, issue: TokenIssue) -> Result<IssueOutcome, StoreError> {
        let Some(queue) = &self.group_commit().queue else {
            return Self::issue_alone(self.writer(), &issue).await;
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(Job::Issue(issue, _))) =
            queue.send(Job::Issue(Box::new(issue), reply)).await
        {
            // The writer task is gone (its runtime shut down): commit here.
            return Self::issue_alone(self.writer(), &issue).await;
        }
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// [`Store::revoke_token`](super::Store::revoke_token): queued for the group commit, or
    /// committed alone when the store has no writer task.
    async fn revoke_token_queued(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let Some(queue) = &self.group_commit().queue else {
            return Self::revoke_alone(self.writer(), id).await;
        };
        let (reply, answer) = oneshot::channel();
        if queue.send(Job::Revoke(id.to_owned(), reply)).await.is_err() {
            return Self::revoke_alone(self.writer(), id).await;
        }
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// The group commit's task: takes the calls waiting in `queue` (as many as have arrived,
    /// up to [`MAX_BATCH`]) and commits them together, until the store is dropped.
    async fn write_loop(pool: Pool<Self::DB>, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // An issuing caller that has gone (its request was dropped) hands nothing out:
            // skip it. A revocation is made whoever waits for it.
            jobs.retain(|job| !matches!(job, Job::Issue(_, reply) if reply.is_closed()));
            let mut issues = Vec::new();
            let mut revokes = Vec::new();
            for job in &jobs {
                match job {
                    Job::Issue(issue, _) => issues.push(&**issue),
                    Job::Revoke(id, _) => revokes.push(id.as_str()),
                }
            }
            tracing::trace!(
                target: "tower_oauth2::server",
                issues = issues.len(),
                revocations = revokes.len(),
                "group commit"
            );
            let result = Self::commit_together(&pool, &issues, &revokes).await;
            let calls = issues.len() + revokes.len();
            match result {
                Ok((outcomes, revoked)) => {
                    let mut outcomes = outcomes.into_iter();
                    let mut revoked = revoked.into_iter();
                    for job in jobs.drain(..) {
                        job.answer(|| Ok(outcomes.next()), || Ok(revoked.next()));
                    }
                }
                Err(error @ StoreError::Unavailable(_)) => {
                    // The store is down, full or read-only: every call fails alike, and so
                    // would those that queued meanwhile, which are answered now rather than
                    // after another wait for a connection.
                    for job in jobs.drain(..) {
                        job.fail(error.clone());
                    }
                    while let Ok(job) = queue.try_recv() {
                        job.fail(error.clone());
                    }
                }
                Err(error) if calls == 1 => {
                    for job in jobs.drain(..) {
                        job.fail(error.clone());
                    }
                }
                Err(error) => {
                    // A call's own fault (a taken id) failed the transaction: each call gets
                    // one of its own, and its own answer.
                    tracing::debug!(
                        target: "tower_oauth2::server",
                        %error,
                        calls,
                        "group commit failed; committing its calls one by one"
                    );
                    for job in jobs.drain(..) {
                        match job {
                            Job::Issue(issue, reply) => {
                                let _ = reply.send(Self::issue_alone(&pool, &issue).await);
                            }
                            Job::Revoke(id, reply) => {
                                let _ = reply.send(Self::revoke_alone(&pool, &id).await);
                            }
                        }
                    }
                }
            }
        }
    }

    /// One call of [`Store::issue_tokens`](super::Store::issue_tokens) in its own transaction.
    async fn issue_alone(
        pool: &Pool<Self::DB>,
        issue: &TokenIssue,
    ) -> Result<IssueOutcome, StoreError> {
        Self::commit_together(pool, &[issue], &[])
            .await?
            .0
            .pop()
            .ok_or_else(|| StoreError::Unavailable("no outcome".into()))
    }

    /// One revocation in its own transaction.
    async fn revoke_alone(
        pool: &Pool<Self::DB>,
        id: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        Ok(Self::commit_together(pool, &[], &[id])
            .await?
            .1
            .pop()
            .flatten())
    }

    /// The calls of [`Store::issue_tokens`](super::Store::issue_tokens) in `issues` and of
    /// [`Store::revoke_token`](super::Store::revoke_token) in `revokes`, in one transaction:
    /// one commit (one sync to disk) for all. Each call's outcome is what it would have been
    /// alone, in this order; an error fails them all and commits nothing.
    async fn commit_together(
        pool: &Pool<Self::DB>,
        issues: &[&TokenIssue],
        revokes: &[&str],
    ) -> Result<(Vec<IssueOutcome>, Vec<Option<TokenRecord>>), StoreError> {
        let mut tx = pool.begin_with(Self::BEGIN).await.map_err(db_error)?;
        let mut logged = false;
        let outcomes = if issues.is_empty() {
            Vec::new()
        } else {
            // The same locks as insert_tokens and rotate_refresh take, for every call at once
            // (in one order, so two instances' batches cannot deadlock on them).
            Self::lock(&mut tx, Lock::Issues(issues)).await?;
            // The clients, read under those locks: a disable or delete committed before is
            // seen here; one committed after revokes these tokens too (it takes the client's
            // lock, which waits for this transaction).
            let clients = Self::clients_by_id(&mut tx, issues).await?;
            let current = |issue: &TokenIssue| {
                clients
                    .iter()
                    .find(|c| c.client_id == issue.client.client_id)
                    .is_some_and(|c| *c == issue.client)
            };
            match issues {
                [issue] if !current(issue) => vec![IssueOutcome::ClientChanged],
                [issue] if revokes.is_empty() => vec![match &issue.rotate {
                    Some(old_id) => match Self::rotate(&mut tx, old_id, &issue.tokens).await? {
                        Rotation::Rotated => {
                            if let Some(successor) = &issue.successor {
                                Self::store_successor(&mut tx, old_id, successor).await?;
                            }
                            IssueOutcome::Stored
                        }
                        // Dropping the transaction rolls the rotation back.
                        Rotation::NotActive | Rotation::Taken => {
                            return Ok((vec![IssueOutcome::NotRotated], Vec::new()));
                        }
                    },
                    None => match Self::store_tokens(&mut tx, &issue.tokens, &mut logged).await? {
                        true => IssueOutcome::Stored,
                        false => IssueOutcome::Revoked,
                    },
                }],
                _ => Self::store_batch(&mut tx, issues, current, &mut logged).await?,
            }
        };
        let mut revoked = Vec::with_capacity(revokes.len());
        let mut notify = logged;
        if !revokes.is_empty() {
            // Taken by store_tokens or store_batch if they logged.
            if !logged {
                Self::lock(&mut tx, Lock::Log).await?;
            }
            for id in revokes {
                let token = Self::revoke_where(&mut tx, Self::SQL.revoke_id, id)
                    .await?
                    .pop();
                notify |= logs_access(token.as_slice());
                revoked.push(token);
            }
        }
        if notify {
            Self::notify(&mut tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok((outcomes, revoked))
    }

    /// The clients `issues` were issued to, as stored (one statement).
    async fn clients_by_id(
        conn: &mut Connection<Self>,
        issues: &[&TokenIssue],
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let mut ids: Vec<&str> = issues.iter().map(|i| i.client.client_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let sql = format!(
            "{CLIENT_SELECT} WHERE client_id IN ({})",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql).persistent(cacheable(ids.len()));
        for id in &ids {
            query = query.bind(*id);
        }
        query
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .iter()
            .map(Self::client_from_row)
            .collect()
    }

    /// The calls of a group commit, in a few set-wise statements whatever their number: the
    /// rotations' compare-and-set in one `UPDATE … RETURNING`, the revoked-family check in
    /// one `SELECT`, and every token in one `INSERT`. (On SQLite each statement is a trip to
    /// the connection's thread; on PostgreSQL, to the server.) A taken id fails the `INSERT`
    /// and so the batch, whose calls then commit one by one.
    async fn store_batch(
        conn: &mut Connection<Self>,
        issues: &[&TokenIssue],
        current: impl Fn(&TokenIssue) -> bool,
        logged: &mut bool,
    ) -> Result<Vec<IssueOutcome>, StoreError> {
        let mut outcomes = vec![IssueOutcome::ClientChanged; issues.len()];
        let live: Vec<usize> = (0..issues.len()).filter(|&i| current(issues[i])).collect();

        // Rotations: of several calls rotating one token, the first wins.
        let old_ids: Vec<&str> = live
            .iter()
            .filter_map(|&i| issues[i].rotate.as_deref())
            .collect();
        let mut rotated: Vec<String> = if old_ids.is_empty() {
            Vec::new()
        } else {
            let sql = format!(
                "UPDATE oauth2_tokens SET state = 'rotated' WHERE kind = 'refresh_token' \
                 AND state = 'active' AND id IN ({}) RETURNING id",
                placeholders(1, old_ids.len())
            );
            let mut query = sqlx::query(&sql).persistent(cacheable(old_ids.len()));
            for id in &old_ids {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
            rows.iter()
                .map(|row| col(row, "id"))
                .collect::<Result<_, _>>()?
        };

        // Plain issues into a revoked family go in revoked.
        let mut families: Vec<&str> = live
            .iter()
            .filter(|&&i| issues[i].rotate.is_none())
            .flat_map(|&i| {
                issues[i]
                    .tokens
                    .iter()
                    .filter_map(|t| t.family_id.as_deref())
            })
            .collect();
        families.sort_unstable();
        families.dedup();
        let revoked_families: Vec<String> = if families.is_empty() {
            Vec::new()
        } else {
            let sql = format!(
                "SELECT family_id FROM oauth2_revoked_families WHERE family_id IN ({})",
                placeholders(1, families.len())
            );
            let mut query = sqlx::query(&sql).persistent(cacheable(families.len()));
            for family in &families {
                query = query.bind(*family);
            }
            let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
            rows.iter()
                .map(|row| col(row, "family_id"))
                .collect::<Result<_, _>>()?
        };

        let mut tokens: Vec<std::borrow::Cow<'_, TokenRecord>> = Vec::new();
        for &i in &live {
            let issue = issues[i];
            outcomes[i] = match &issue.rotate {
                Some(old_id) => match rotated.iter().position(|r| r == old_id) {
                    Some(at) => {
                        rotated.swap_remove(at);
                        if let Some(successor) = &issue.successor {
                            Self::store_successor(conn, old_id, successor).await?;
                        }
                        tokens.extend(issue.tokens.iter().map(std::borrow::Cow::Borrowed));
                        IssueOutcome::Stored
                    }
                    None => IssueOutcome::NotRotated,
                },
                None => {
                    let mut outcome = IssueOutcome::Stored;
                    for token in &issue.tokens {
                        let revoked = token
                            .family_id
                            .as_ref()
                            .is_some_and(|f| revoked_families.contains(f));
                        if !revoked {
                            tokens.push(std::borrow::Cow::Borrowed(token));
                            continue;
                        }
                        outcome = IssueOutcome::Revoked;
                        let token = TokenRecord {
                            state: TokenState::Revoked,
                            ..token.clone()
                        };
                        if token.kind == TokenKind::Access {
                            if !*logged {
                                Self::lock(conn, Lock::Log).await?;
                                *logged = true;
                            }
                            Self::log_revocation(conn, &token).await?;
                        }
                        tokens.push(std::borrow::Cow::Owned(token));
                    }
                    outcome
                }
            };
        }

        if !tokens.is_empty() {
            let columns = token_columns!().split(", ").count();
            let mut sql = String::from(concat!(
                "INSERT INTO oauth2_tokens (",
                token_columns!(),
                ") VALUES "
            ));
            for k in 0..tokens.len() {
                if k > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&placeholders(k * columns + 1, columns));
                sql.push(')');
            }
            let mut query = sqlx::query(&sql).persistent(cacheable(tokens.len()));
            for token in &tokens {
                query = Self::bind_token(query, token)?;
            }
            query
                .execute(&mut *conn)
                .await
                .map_err(db_error_as(|| "a token id is taken".to_owned()))?;
        }
        Ok(outcomes)
    }

    async fn find_refresh(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE hash = $1"
        ));
        self.select_optional(query.bind(hash.as_bytes().to_vec()), Self::token_from_row)
            .await
    }

    async fn rotate_refresh(
        &self,
        old_id: &str,
        issued: Vec<TokenRecord>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // A concurrent revoke_family either ran first (the old token is revoked and the
        // update matches nothing) or waits and then revokes the new tokens too.
        Self::lock(&mut tx, Lock::Owners(&issued)).await?;
        match Self::rotate(&mut tx, old_id, &issued).await? {
            Rotation::Rotated => {
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            }
            // Dropping the transaction rolls the rotation back.
            Rotation::NotActive | Rotation::Taken => Ok(false),
        }
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE id = $1"
        ));
        self.select_optional(query.bind(id), Self::token_from_row)
            .await
    }

    async fn revoke_family(&self, family_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.begin().await?;
        Self::lock(&mut tx, Lock::Family(family_id)).await?;
        Self::lock(&mut tx, Lock::Log).await?;
        let revoked = Self::revoke_where(&mut tx, Self::SQL.revoke_family, family_id).await?;
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
        if logs_access(&revoked) {
            Self::notify(&mut tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn revoke_client_tokens(&self, client_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let mut tx = self.begin().await?;
        Self::lock(&mut tx, Lock::Client(client_id)).await?;
        Self::lock(&mut tx, Lock::Log).await?;
        let revoked = Self::revoke_where(&mut tx, Self::SQL.revoke_client, client_id).await?;
        if logs_access(&revoked) {
            Self::notify(&mut tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(revoked)
    }

    async fn client_tokens(
        &self,
        client_id: &str,
        now: u64,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE client_id = $1 AND state = 'active' \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY issued_at, id"
        ));
        let query = query.bind(client_id).bind(clamp_i64(now));
        self.select_all(query, Self::token_from_row).await
    }

    async fn revoked_access_tokens(&self, now: u64) -> Result<Vec<TokenRecord>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM oauth2_tokens WHERE kind = 'access_token' AND state = 'revoked' \
             AND (expires_at IS NULL OR expires_at > $1) ORDER BY issued_at, id"
        ));
        self.select_all(query.bind(clamp_i64(now)), Self::token_from_row)
            .await
    }

    async fn revocations_since(
        &self,
        cursor: u64,
    ) -> Result<(Vec<RevokedAccess>, u64), StoreError> {
        let rows = sqlx::query(
            "SELECT seq, jti, expires_at FROM oauth2_revocation_log WHERE seq > $1 ORDER BY seq",
        )
        .bind(clamp_i64(cursor))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut next = None;
        for row in &rows {
            let (seq, entry) = Self::revocation_from_row(row)?;
            entries.push(entry);
            next = Some(seq);
        }
        let next = self
            .next_cursor(
                next,
                cursor,
                "SELECT COALESCE(MAX(seq), 0) FROM oauth2_revocation_log",
            )
            .await?;
        Ok((entries, next))
    }

    async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let now = clamp_i64(now);
        let mut purged = 0;
        let mut first = true;
        // In chunks, each its own short transaction: one transaction deleting everything that
        // expired (hundreds of thousands of tokens on a busy server) would hold the write lock
        // for seconds, and token requests waiting behind it would time out.
        loop {
            let mut tx = self.begin().await?;
            // Serialized with the revoking transactions, which update the same token rows.
            Self::lock(&mut tx, Lock::Log).await?;
            let codes = Self::purge_chunk(&mut tx, PURGE_CODES, now).await?;
            let tokens = Self::purge_chunk(&mut tx, PURGE_TOKENS, now).await?;
            let families = Self::purge_chunk(&mut tx, PURGE_FAMILIES, now).await?;
            // A revocation of an expired token no longer needs syncing.
            let log = Self::purge_chunk(&mut tx, PURGE_LOG, now).await?;
            // No cached client is older than an hour.
            let changes = Self::purge_chunk(
                &mut tx,
                PURGE_CLIENT_CHANGES,
                now.saturating_sub(CLIENT_CHANGES_KEPT),
            )
            .await?;
            if first {
                Self::purge_dialect_rows(&mut tx).await?;
                first = false;
            }
            tx.commit().await.map_err(db_error)?;
            purged += codes + tokens;
            if [codes, tokens, families, log, changes]
                .iter()
                .all(|&n| n < PURGE_CHUNK)
            {
                return Ok(purged);
            }
        }
    }

    /// Runs one of the `PURGE_*` statements: deletes at most [`PURGE_CHUNK`] rows that expired
    /// at `until`; how many.
    async fn purge_chunk(
        conn: &mut Connection<Self>,
        statement: &'static str,
        until: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(statement)
            .bind(until)
            .bind(clamp_i64(PURGE_CHUNK))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(Self::rows_affected(&done))
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            signing_key_columns!(),
            " FROM oauth2_signing_keys ORDER BY seq"
        ));
        self.select_all(query, Self::signing_key_from_row).await
    }

    async fn init_signing_key(
        &self,
        key: SigningKeyRecord,
    ) -> Result<SigningKeyRecord, StoreError> {
        let mut tx = self.begin().await?;
        Self::lock(&mut tx, Lock::Keys).await?;
        let active = sqlx::query(Self::SQL.active_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if let Some(row) = active {
            return Self::signing_key_from_row(&row);
        }
        let key = SigningKeyRecord {
            active: true,
            retired_until: None,
            ..key
        };
        Self::insert_active_key(&mut tx, &key).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(key)
    }

    async fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        retired_until: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        Self::lock(&mut tx, Lock::Keys).await?;
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
        sqlx::query(Self::SQL.retire_key)
            .bind(opt_to_i64(retired_until, "retired_until")?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Self::insert_active_key(&mut tx, &key).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn purge_signing_keys(&self, now: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(Self::SQL.purge_keys)
            .bind(clamp_i64(now))
            .execute(self.writer())
            .await
            .map_err(db_error)?;
        Ok(Self::rows_affected(&done))
    }
    // --- approval decisions ---

    async fn decide(
        &self,
        decision: ApprovalDecision,
        settle: &(dyn Fn(&[ApprovalDecision]) -> Option<ClientStatus> + Send + Sync),
    ) -> Result<DecisionOutcome, StoreError> {
        let client_id = decision.client_id.clone();
        let mut tx = self.begin().await?;
        // Decisions on one client one at a time: each sees those committed before it.
        Self::lock(&mut tx, Lock::Client(&client_id)).await?;
        let client = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM oauth2_clients WHERE client_id = $1"
        ))
        .bind(client_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(Self::client_from_row)
        .transpose()?;
        let Some(mut client) = client else {
            return Ok(DecisionOutcome::NotFound);
        };
        let earlier = sqlx::query(DECISION_OF)
            .bind(client_id.as_str())
            .bind(decision.approver.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(Self::decision_from_row)
            .transpose()?;
        if let Some(earlier) = earlier {
            return Ok(DecisionOutcome::AlreadyDecided { earlier, client });
        }
        if client.status != ClientStatus::Pending {
            return Ok(DecisionOutcome::NotPending(client));
        }
        sqlx::query(
            "INSERT INTO oauth2_approval_decisions \
             (client_id, approver, decision, groups, comment, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(client_id.as_str())
        .bind(decision.approver.as_str())
        .bind(decision.decision.as_str())
        .bind(sql::list_json(&decision.groups))
        .bind(decision.comment.clone())
        .bind(to_i64(decision.decided_at, "decided_at")?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let decisions = sqlx::query(DECISIONS_OF)
            .bind(client_id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .iter()
            .map(Self::decision_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let settled = settle(&decisions);
        if let Some(status) = settled {
            sqlx::query("UPDATE oauth2_clients SET status = $2 WHERE client_id = $1")
                .bind(client_id.as_str())
                .bind(status.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Self::log_client_change(&mut tx, &client_id).await?;
            client.status = status;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(DecisionOutcome::Recorded {
            client,
            decisions,
            settled: settled.is_some(),
        })
    }

    async fn decisions(&self, client_id: &str) -> Result<Vec<ApprovalDecision>, StoreError> {
        self.select_all(
            sqlx::query(DECISIONS_OF).bind(client_id),
            Self::decision_from_row,
        )
        .await
    }

    fn decision_from_row(row: &Row<Self>) -> Result<ApprovalDecision, StoreError> {
        let decision: String = col(row, "decision")?;
        Ok(ApprovalDecision {
            client_id: col(row, "client_id")?,
            approver: col(row, "approver")?,
            decision: Decision::parse(&decision)
                .ok_or_else(|| sql::corrupt(format_args!("decision {decision:?}")))?,
            groups: sql::parse_list(&col::<_, String>(row, "groups")?, "groups")?,
            comment: col(row, "comment")?,
            decided_at: sql::from_i64(col(row, "decided_at")?, "decided_at")?,
        })
    }

    // --- audit log ---

    /// Appends `events` in one transaction, in multi-row inserts of at most
    /// [`AUDIT_INSERT_ROWS`] rows.
    async fn append_audit(&self, events: Vec<AuditRecord>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        if let Some(setup) = Self::AUDIT_TRANSACTION {
            sqlx::query(setup)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        for chunk in events.chunks(AUDIT_INSERT_ROWS) {
            let mut text = String::from(
                "INSERT INTO oauth2_audit (at, kind, client_id, actor, detail) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push('(');
                text.push_str(&placeholders(i * 5 + 1, 5));
                text.push(')');
            }
            let mut query = sqlx::query(&text).persistent(chunk.len() == AUDIT_INSERT_ROWS);
            for event in chunk {
                query = query
                    .bind(to_i64(event.at, "audit time")?)
                    .bind(event.kind.clone())
                    .bind(event.client_id.clone())
                    .bind(event.actor.clone())
                    .bind(event.detail.to_string());
            }
            query.execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let statement = match (query.client_id.is_some(), query.kind.is_some()) {
            (false, false) => AUDIT_PAGE,
            (true, false) => AUDIT_PAGE_CLIENT,
            (false, true) => AUDIT_PAGE_KIND,
            (true, true) => AUDIT_PAGE_CLIENT_KIND,
        };
        let mut select = sqlx::query(statement)
            .bind(clamp_i64(query.since.unwrap_or(0)))
            .bind(clamp_i64(query.until.unwrap_or(u64::MAX)))
            .bind(clamp_i64(query.before.unwrap_or(u64::MAX)))
            .bind(clamp_i64(query.limit as u64));
        if let Some(client_id) = query.client_id {
            select = select.bind(client_id);
        }
        if let Some(kind) = query.kind {
            select = select.bind(kind);
        }
        self.select_all(select, Self::audit_from_row).await
    }

    fn audit_from_row(row: &Row<Self>) -> Result<AuditRecord, StoreError> {
        let detail: String = col(row, "detail")?;
        Ok(AuditRecord {
            seq: sql::from_i64(col(row, "seq")?, "audit seq")?,
            at: sql::from_i64(col(row, "at")?, "audit time")?,
            kind: col(row, "kind")?,
            client_id: col(row, "client_id")?,
            actor: col(row, "actor")?,
            detail: serde_json::from_str(&detail)
                .map_err(|e| sql::corrupt(format_args!("audit detail: {e}")))?,
        })
    }

    /// Deletes by age, then by count, in chunks of [`PURGE_CHUNK`] rows, each its own short
    /// transaction (as [`purge_expired`](Self::purge_expired) does).
    async fn purge_audit(&self, older_than: u64, max_rows: u64) -> Result<u64, StoreError> {
        let mut purged = 0;
        loop {
            let mut tx = self.begin().await?;
            let n = Self::purge_chunk(&mut tx, PURGE_AUDIT_AGE, clamp_i64(older_than)).await?;
            tx.commit().await.map_err(db_error)?;
            purged += n;
            if n < PURGE_CHUNK {
                break;
            }
        }
        // The `seq` below which rows are beyond the newest `max_rows`.
        let Some(first_kept) = sqlx::query_scalar::<_, i64>(
            "SELECT seq FROM oauth2_audit ORDER BY seq DESC LIMIT 1 OFFSET $1",
        )
        .bind(clamp_i64(max_rows.saturating_sub(1)))
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        else {
            return Ok(purged);
        };
        loop {
            let mut tx = self.begin().await?;
            let n = Self::purge_chunk(&mut tx, PURGE_AUDIT_SEQ, first_kept).await?;
            tx.commit().await.map_err(db_error)?;
            purged += n;
            if n < PURGE_CHUNK {
                return Ok(purged);
            }
        }
    }

    async fn client_activity(&self, since: u64) -> Result<Vec<ClientActivity>, StoreError> {
        let select = sqlx::query(
            "SELECT client_id, MAX(at) AS last_at, \
             SUM(CASE WHEN at >= $1 THEN 1 ELSE 0 END) AS recent \
             FROM oauth2_audit WHERE kind = 'token_issued' AND client_id IS NOT NULL \
             GROUP BY client_id ORDER BY client_id",
        )
        .bind(clamp_i64(since));
        self.select_all(select, |row| {
            Ok(ClientActivity {
                client_id: col(row, "client_id")?,
                last_issued_at: sql::from_i64(col(row, "last_at")?, "audit time")?,
                issued_since: sql::from_i64(col(row, "recent")?, "audit count")?,
            })
        })
        .await
    }
}

/// A typed column read, where a failure means a corrupt row.
fn col<R, T>(row: &R, name: &str) -> Result<T, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| sql::corrupt(format_args!("column {name}: {e}")))
}

const INSERT_TOKEN: &str = concat!(
    "INSERT INTO oauth2_tokens (",
    token_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

const INSERT_TOKEN_IF_NEW: &str = concat!(
    "INSERT INTO oauth2_tokens (",
    token_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"
);

/// Rows of each table one purge transaction deletes at most.
const PURGE_CHUNK: u64 = 1000;

const PURGE_CODES: &str = "DELETE FROM oauth2_codes WHERE hash IN \
     (SELECT hash FROM oauth2_codes WHERE expires_at <= $1 LIMIT $2)";
const PURGE_TOKENS: &str = "DELETE FROM oauth2_tokens WHERE id IN \
     (SELECT id FROM oauth2_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)";
const PURGE_FAMILIES: &str = "DELETE FROM oauth2_revoked_families WHERE family_id IN \
     (SELECT family_id FROM oauth2_revoked_families \
      WHERE until IS NOT NULL AND until <= $1 LIMIT $2)";
const PURGE_LOG: &str = "DELETE FROM oauth2_revocation_log WHERE seq IN \
     (SELECT seq FROM oauth2_revocation_log \
      WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)";
const PURGE_CLIENT_CHANGES: &str = "DELETE FROM oauth2_client_changes WHERE seq IN \
     (SELECT seq FROM oauth2_client_changes WHERE changed_at <= $1 LIMIT $2)";

const DECISIONS_OF: &str = "SELECT client_id, approver, decision, groups, comment, decided_at \
     FROM oauth2_approval_decisions WHERE client_id = $1 ORDER BY seq";
const DECISION_OF: &str = "SELECT client_id, approver, decision, groups, comment, decided_at \
     FROM oauth2_approval_decisions WHERE client_id = $1 AND approver = $2";

/// Rows per multi-row insert of audit events.
const AUDIT_INSERT_ROWS: usize = 64;

/// A page of the audit log: `$1` since, `$2` until, `$3` before (cursor), `$4` limit, then the
/// filters present.
macro_rules! audit_page {
    ($($filter:literal)?) => {
        concat!(
            "SELECT seq, at, kind, client_id, actor, detail FROM oauth2_audit \
             WHERE at >= $1 AND at < $2 AND seq < $3",
            $($filter,)?
            " ORDER BY seq DESC LIMIT $4"
        )
    };
}
const AUDIT_PAGE: &str = audit_page!();
const AUDIT_PAGE_CLIENT: &str = audit_page!(" AND client_id = $5");
const AUDIT_PAGE_KIND: &str = audit_page!(" AND kind = $5");
const AUDIT_PAGE_CLIENT_KIND: &str = audit_page!(" AND client_id = $5 AND kind = $6");
const PURGE_AUDIT_AGE: &str = "DELETE FROM oauth2_audit WHERE seq IN \
     (SELECT seq FROM oauth2_audit WHERE at < $1 LIMIT $2)";
const PURGE_AUDIT_SEQ: &str = "DELETE FROM oauth2_audit WHERE seq IN \
     (SELECT seq FROM oauth2_audit WHERE seq < $1 LIMIT $2)";

/// Seconds a client change stays in the feed.
const CLIENT_CHANGES_KEPT: i64 = 3600;

const CLIENT_SELECT: &str = concat!("SELECT ", client_columns!(), " FROM oauth2_clients");

const CLIENT_BY_ID: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM oauth2_clients WHERE client_id = $1"
);

/// Whether a statement with `count` rows or ids is kept prepared on its connection: the
/// common small sizes are, so that they are parsed once; larger batches, whose statements
/// would crowd the connection's statement cache, are parsed each time.
fn cacheable(count: usize) -> bool {
    count <= 16
}

/// `$start, $start+1, …`: `count` placeholders.
fn placeholders(start: usize, count: usize) -> String {
    let mut text = String::with_capacity(count * 5);
    for n in start..start + count {
        if n > start {
            text.push_str(", ");
        }
        text.push('$');
        text.push_str(&n.to_string());
    }
    text
}

/// The most calls of [`Store::issue_tokens`](super::Store::issue_tokens) one group commit
/// takes.
const MAX_BATCH: usize = 256;

/// Calls waiting for the writer task before callers wait to queue.
const QUEUE: usize = 4096;

/// How a rotation's compare-and-set went.
pub(super) enum Rotation {
    /// The old refresh token was active and is rotated; the new tokens are in.
    Rotated,
    /// The old refresh token was not active: nothing changed.
    NotActive,
    /// A new token's id or digest is taken: the transaction must roll back.
    Taken,
}

/// A call waiting for the group commit, with where its answer goes.
pub(super) enum Job {
    /// [`Store::issue_tokens`](super::Store::issue_tokens).
    Issue(
        Box<TokenIssue>,
        oneshot::Sender<Result<IssueOutcome, StoreError>>,
    ),
    /// [`Store::revoke_token`](super::Store::revoke_token) of the token with this id.
    Revoke(
        String,
        oneshot::Sender<Result<Option<TokenRecord>, StoreError>>,
    ),
}

impl Job {
    /// Answers with what `issued` or `revoked` gives, whichever this call is.
    fn answer(
        self,
        issued: impl FnOnce() -> Result<Option<IssueOutcome>, StoreError>,
        revoked: impl FnOnce() -> Result<Option<Option<TokenRecord>>, StoreError>,
    ) {
        let missing = || StoreError::Unavailable("the group commit lost an answer".into());
        match self {
            Job::Issue(_, reply) => {
                let _ = reply.send(issued().and_then(|o| o.ok_or_else(missing)));
            }
            Job::Revoke(_, reply) => {
                let _ = reply.send(revoked().and_then(|o| o.ok_or_else(missing)));
            }
        }
    }

    /// Answers with `error`.
    fn fail(self, error: StoreError) {
        let error2 = error.clone();
        self.answer(|| Err(error), || Err(error2));
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the store's writer task stopped before committing".into())
}

/// The queue of a SQL store's group commit: [`Store::issue_tokens`](super::Store::issue_tokens)
/// and [`Store::revoke_token`](super::Store::revoke_token) calls go to one task per store, which
/// commits the calls that are waiting together.
///
/// Why: a token response must wait until its tokens are durable, and a commit's sync to disk
/// costs the same for one row as for a hundred. Concurrent requests share it, each answered
/// only after the commit that holds its tokens. If the runtime the store was opened on shuts
/// down, the task with it, later calls commit on their own, one transaction each.
#[derive(Debug, Clone, Default)]
pub(super) struct GroupCommit {
    /// `None`: no runtime to run the task on when the store opened; every call commits alone.
    queue: Option<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Issue(..) => "Job::Issue",
            Job::Revoke(..) => "Job::Revoke",
        })
    }
}

impl GroupCommit {
    /// Starts the writer task of store type `S` on `pool`, on the current tokio runtime.
    pub(super) fn start<S, F>(
        pool: Pool<S::DB>,
        write_loop: fn(Pool<S::DB>, mpsc::Receiver<Job>) -> F,
    ) -> Self
    where
        S: Dialect,
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self { queue: None };
        };
        let (queue, jobs) = mpsc::channel(QUEUE);
        runtime.spawn(write_loop(pool, jobs));
        Self { queue: Some(queue) }
    }
}

/// Whether revoking `tokens` logged any: the access tokens are logged.
fn logs_access(tokens: &[TokenRecord]) -> bool {
    tokens.iter().any(|t| t.kind == TokenKind::Access)
}

/// Implements [`Store`](super::Store) for a store type with a [`Dialect`], every method with
/// [`SqlStore`]'s; further items (`revocation_signal`) go into the impl as they are. A macro
/// because Rust has no delegation, and a blanket `impl<S: Dialect> Store for S` would show in
/// the public trait's documentation.
macro_rules! sql_store {
    ($store:ty $(, $($item:tt)*)?) => {
        impl $crate::server::store::sql_store::SqlStore for $store {}

        const _: () = {
            use $crate::server::store::sql_store::SqlStore;
            use $crate::server::store::{
                ApprovalDecision, AuditQuery, AuditRecord, ClientActivity, ClientRecord,
                ClientStatus, DecisionOutcome, CodeRecord, IssueOutcome, RevokedAccess, SigningKeyRecord, Store,
                StoreFuture, TokenHash, TokenIssue, TokenRecord,
            };

            impl Store for $store {
                fn insert_client(&self, client: ClientRecord) -> StoreFuture<'_, ()> {
                    Box::pin(SqlStore::insert_client(self, client))
                }

                fn client<'a>(
                    &'a self,
                    client_id: &'a str,
                ) -> StoreFuture<'a, Option<ClientRecord>> {
                    Box::pin(SqlStore::client(self, client_id))
                }

                fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
                    Box::pin(SqlStore::clients(self))
                }

                fn update_client(&self, client: ClientRecord) -> StoreFuture<'_, bool> {
                    Box::pin(SqlStore::update_client(self, client))
                }

                fn delete_client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, bool> {
                    Box::pin(SqlStore::delete_client(self, client_id))
                }

                fn insert_code(&self, code: CodeRecord) -> StoreFuture<'_, ()> {
                    Box::pin(SqlStore::insert_code(self, code))
                }

                fn take_code<'a>(
                    &'a self,
                    hash: &'a TokenHash,
                    client_id: &'a str,
                ) -> StoreFuture<'a, Option<(CodeRecord, bool)>> {
                    Box::pin(SqlStore::take_code(self, hash, client_id))
                }

                fn insert_tokens(&self, tokens: Vec<TokenRecord>) -> StoreFuture<'_, bool> {
                    Box::pin(SqlStore::insert_tokens(self, tokens))
                }

                fn issue_tokens(&self, issue: TokenIssue) -> StoreFuture<'_, IssueOutcome> {
                    Box::pin(SqlStore::issue_tokens(self, issue))
                }

                fn find_refresh<'a>(
                    &'a self,
                    hash: &'a TokenHash,
                ) -> StoreFuture<'a, Option<TokenRecord>> {
                    Box::pin(SqlStore::find_refresh(self, hash))
                }

                fn rotate_refresh<'a>(
                    &'a self,
                    old_id: &'a str,
                    issued: Vec<TokenRecord>,
                ) -> StoreFuture<'a, bool> {
                    Box::pin(SqlStore::rotate_refresh(self, old_id, issued))
                }

                fn token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
                    Box::pin(SqlStore::token(self, id))
                }

                fn successor<'a>(
                    &'a self,
                    token_id: &'a str,
                ) -> StoreFuture<'a, Option<$crate::server::store::Successor>> {
                    Box::pin(SqlStore::successor_of(self, token_id))
                }

                fn revoke_token<'a>(
                    &'a self,
                    id: &'a str,
                ) -> StoreFuture<'a, Option<TokenRecord>> {
                    Box::pin(SqlStore::revoke_token_queued(self, id))
                }

                fn revoke_family<'a>(
                    &'a self,
                    family_id: &'a str,
                ) -> StoreFuture<'a, Vec<TokenRecord>> {
                    Box::pin(SqlStore::revoke_family(self, family_id))
                }

                fn revoke_client_tokens<'a>(
                    &'a self,
                    client_id: &'a str,
                ) -> StoreFuture<'a, Vec<TokenRecord>> {
                    Box::pin(SqlStore::revoke_client_tokens(self, client_id))
                }

                fn client_tokens<'a>(
                    &'a self,
                    client_id: &'a str,
                    now: u64,
                ) -> StoreFuture<'a, Vec<TokenRecord>> {
                    Box::pin(SqlStore::client_tokens(self, client_id, now))
                }

                fn revoked_access_tokens(&self, now: u64) -> StoreFuture<'_, Vec<TokenRecord>> {
                    Box::pin(SqlStore::revoked_access_tokens(self, now))
                }

                fn revocations_since(
                    &self,
                    cursor: u64,
                ) -> StoreFuture<'_, (Vec<RevokedAccess>, u64)> {
                    Box::pin(SqlStore::revocations_since(self, cursor))
                }

                fn client_changes_since(
                    &self,
                    cursor: u64,
                ) -> StoreFuture<'_, Option<(Vec<String>, u64)>> {
                    Box::pin(SqlStore::client_changes_since(self, cursor))
                }

                fn purge_expired(&self, now: u64) -> StoreFuture<'_, u64> {
                    Box::pin(SqlStore::purge_expired(self, now))
                }

                fn signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>> {
                    Box::pin(SqlStore::signing_keys(self))
                }

                fn init_signing_key(
                    &self,
                    key: SigningKeyRecord,
                ) -> StoreFuture<'_, SigningKeyRecord> {
                    Box::pin(SqlStore::init_signing_key(self, key))
                }

                fn rotate_signing_key(
                    &self,
                    key: SigningKeyRecord,
                    retired_until: Option<u64>,
                ) -> StoreFuture<'_, ()> {
                    Box::pin(SqlStore::rotate_signing_key(self, key, retired_until))
                }

                fn purge_signing_keys(&self, now: u64) -> StoreFuture<'_, u64> {
                    Box::pin(SqlStore::purge_signing_keys(self, now))
                }

                fn append_audit(&self, events: Vec<AuditRecord>) -> StoreFuture<'_, ()> {
                    Box::pin(SqlStore::append_audit(self, events))
                }

                fn audit_events(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>> {
                    Box::pin(SqlStore::audit_events(self, query))
                }

                fn purge_audit(&self, older_than: u64, max_rows: u64) -> StoreFuture<'_, u64> {
                    Box::pin(SqlStore::purge_audit(self, older_than, max_rows))
                }

                fn client_activity(&self, since: u64) -> StoreFuture<'_, Vec<ClientActivity>> {
                    Box::pin(SqlStore::client_activity(self, since))
                }

                fn decide<'a>(
                    &'a self,
                    decision: ApprovalDecision,
                    settle: &'a (dyn Fn(&[ApprovalDecision]) -> Option<ClientStatus> + Send + Sync),
                ) -> StoreFuture<'a, DecisionOutcome> {
                    Box::pin(SqlStore::decide(self, decision, settle))
                }

                fn decisions<'a>(
                    &'a self,
                    client_id: &'a str,
                ) -> StoreFuture<'a, Vec<ApprovalDecision>> {
                    Box::pin(SqlStore::decisions(self, client_id))
                }

                $($($item)*)?
            }
        };
    };
}

pub(super) use sql_store;
