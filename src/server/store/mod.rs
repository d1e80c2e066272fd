//! Where the authorization server keeps its clients, authorization codes, tokens, revocation
//! log and signing keys.
//!
//! The [`Store`] trait is small on purpose: every operation is one atomic step, so a store backed
//! by a database implements each as one statement or transaction. The two that decide races are
//! [`Store::take_code`] (an authorization code is handed out once) and
//! [`Store::rotate_refresh`] (a refresh token is rotated once): of any number of concurrent
//! redemptions, exactly one wins.
//!
//! Token values are never stored: codes and refresh tokens are kept as the SHA-256
//! [`TokenHash`] of their value, access tokens (self-contained JWTs) by their `jti`.
//!
//! Three stores come with the crate: [`MemoryStore`] (in process memory, for tests and demos),
//! `SqliteStore` (feature `sqlite`: an SQLite file, for one instance or a few processes on
//! one host) and `PostgresStore` (feature `postgres`: shared by any number of instances). The
//! SQL stores create and migrate their tables (`oauth2_*`) when they open.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_store;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sha2::{Digest, Sha256};

use super::{SecretHash, TokenLifetime};

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

/// The future every [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Storage for the authorization server. Implementations must make each method atomic.
pub trait Store: Send + Sync + 'static {
    /// Adds a client; [`StoreError::Conflict`] if its id is taken.
    fn insert_client(&self, client: ClientRecord) -> StoreFuture<'_, ()>;
    /// The client with this id.
    fn client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Option<ClientRecord>>;
    /// Every client, in registration order.
    fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>>;
    /// Replaces a client's record; `false` if there is no such client.
    fn update_client(&self, client: ClientRecord) -> StoreFuture<'_, bool>;
    /// Removes a client and its unused authorization codes; `false` if there is no such client.
    /// Its tokens are revoked first with [`revoke_client_tokens`](Self::revoke_client_tokens).
    fn delete_client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, bool>;

    /// Stores an authorization code.
    fn insert_code(&self, code: CodeRecord) -> StoreFuture<'_, ()>;
    /// Redeems the code with this hash for `client_id`, in one atomic step: if the code was
    /// issued to that client, marks it used and returns it with `true` if it was unused, or
    /// with `false` if it had been redeemed before (so the caller can revoke what the first
    /// redemption issued). A code of another client is returned unchanged with `false`, so
    /// presenting it cannot spoil it for its own client. Of concurrent callers with the same
    /// hash, at most one gets `true`. Expired codes are returned too; the caller checks
    /// `expires_at`.
    fn take_code<'a>(
        &'a self,
        hash: &'a TokenHash,
        client_id: &'a str,
    ) -> StoreFuture<'a, Option<(CodeRecord, bool)>>;

    /// Stores newly issued tokens (an access token and, with it, perhaps a refresh token), in
    /// one atomic step, and returns `true`. If their family has been revoked with
    /// [`revoke_family`](Self::revoke_family) — a code redeemed twice, whose second redemption
    /// got there before the first one's tokens — they are stored already revoked and the result
    /// is `false`.
    fn insert_tokens(&self, tokens: Vec<TokenRecord>) -> StoreFuture<'_, bool>;
    /// The refresh token with this hash, whatever its state.
    fn find_refresh<'a>(&'a self, hash: &'a TokenHash) -> StoreFuture<'a, Option<TokenRecord>>;
    /// Rotation, in one atomic step: if the refresh token `old_id` is still
    /// [`TokenState::Active`], marks it [`TokenState::Rotated`], stores `issued` and returns
    /// `true`; otherwise changes nothing and returns `false`. Of concurrent callers with the
    /// same `old_id`, at most one gets `true`.
    fn rotate_refresh<'a>(
        &'a self,
        old_id: &'a str,
        issued: Vec<TokenRecord>,
    ) -> StoreFuture<'a, bool>;
    /// The token (access or refresh) with this id.
    fn token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>>;
    /// Marks one token revoked; returns it if it was not revoked before.
    fn revoke_token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>>;
    /// Marks every token of a refresh-token family revoked, and the family itself, so that
    /// later [`insert_tokens`](Self::insert_tokens) into it fail; returns the tokens that were
    /// not revoked before.
    fn revoke_family<'a>(&'a self, family_id: &'a str) -> StoreFuture<'a, Vec<TokenRecord>>;
    /// Marks every token of a client revoked; returns those that were not.
    fn revoke_client_tokens<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Vec<TokenRecord>>;
    /// A client's tokens that are neither revoked, rotated nor expired at `now`.
    fn client_tokens<'a>(
        &'a self,
        client_id: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Vec<TokenRecord>>;
    /// The access tokens that are revoked and not yet expired at `now`: the denylist.
    fn revoked_access_tokens(&self, now: u64) -> StoreFuture<'_, Vec<TokenRecord>>;
    /// The access tokens revoked after `cursor` (a position this store hands out, starting
    /// from 0), and the cursor to ask with next time. Instances poll this to keep their
    /// in-memory denylists in sync; entries may repeat, and expired ones may be left out.
    fn revocations_since(&self, cursor: u64) -> StoreFuture<'_, (Vec<RevokedAccess>, u64)>;
    /// The clients changed (updated or deleted) after `cursor` (a position this store hands
    /// out, starting from 0), and the cursor to ask with next time; `None` if the store keeps
    /// no such feed (the default: right for a store that one instance uses alone). Instances
    /// poll it with the revocation sync to drop changed clients from their caches; ids may
    /// repeat.
    fn client_changes_since(&self, cursor: u64) -> StoreFuture<'_, Option<(Vec<String>, u64)>> {
        let _ = cursor;
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Deletes codes and tokens that expired before `now`, and returns how many; a store that
    /// shares failed-authentication counts also deletes the windows that have ended (not
    /// counted).
    fn purge_expired(&self, now: u64) -> StoreFuture<'_, u64>;

    /// The stored signing keys: the active one and the retired ones, oldest first.
    fn signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>>;
    /// Makes `key` the active signing key if there is none yet, in one atomic step, and
    /// returns the active key — `key`, or the one another instance installed first.
    fn init_signing_key(&self, key: SigningKeyRecord) -> StoreFuture<'_, SigningKeyRecord>;
    /// Rotation, in one atomic step: the active key becomes retired with `retired_until`
    /// (`None`: kept forever) and `key` becomes active.
    fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        retired_until: Option<u64>,
    ) -> StoreFuture<'_, ()>;
    /// Deletes retired keys whose `retired_until` is before `now`; returns how many.
    fn purge_signing_keys(&self, now: u64) -> StoreFuture<'_, u64>;

    /// Stores the tokens of one successful grant, in one atomic step, provided that the
    /// client's stored record still equals [`TokenIssue::client`], the record the request
    /// authenticated with (it may have come from a cache): a client changed, disabled or
    /// deleted meanwhile gets [`IssueOutcome::ClientChanged`] and nothing is stored. With
    /// [`TokenIssue::rotate`], the refresh token is rotated as
    /// [`rotate_refresh`](Self::rotate_refresh) does; otherwise the tokens are inserted as
    /// [`insert_tokens`](Self::insert_tokens) does.
    ///
    /// The default implementation composes the methods above (a read before the write, and a
    /// check after it that revokes the client's tokens if the client is no longer approved).
    /// The crate's stores implement it in one transaction, and the SQL stores commit the
    /// tokens of concurrent requests together (group commit): one transaction, one sync to
    /// disk, for many requests, each answered only after the commit.
    fn issue_tokens(&self, issue: TokenIssue) -> StoreFuture<'_, IssueOutcome> {
        Box::pin(async move {
            let client_id = issue.client.client_id.clone();
            if self.client(&client_id).await?.as_ref() != Some(&issue.client) {
                return Ok(IssueOutcome::ClientChanged);
            }
            let outcome = match &issue.rotate {
                Some(old_id) => {
                    if !self.rotate_refresh(old_id, issue.tokens).await? {
                        return Ok(IssueOutcome::NotRotated);
                    }
                    IssueOutcome::Stored
                }
                None if self.insert_tokens(issue.tokens).await? => IssueOutcome::Stored,
                None => IssueOutcome::Revoked,
            };
            // Disabled or deleted between the read and the write: the tokens must not outlive
            // the operator's change.
            let approved = self
                .client(&client_id)
                .await?
                .is_some_and(|c| c.status == ClientStatus::Approved);
            if !approved {
                self.revoke_client_tokens(&client_id).await?;
                return Ok(IssueOutcome::ClientChanged);
            }
            Ok(outcome)
        })
    }

    /// The [`Successor`] that the rotation of refresh token `token_id` stored, if any. The
    /// default: none, so a store that does not keep successors (its `issue_tokens` ignores
    /// [`TokenIssue::successor`]) simply has no grace window.
    fn successor<'a>(&'a self, token_id: &'a str) -> StoreFuture<'a, Option<Successor>> {
        let _ = token_id;
        Box::pin(async { Ok(None) })
    }

    /// A push channel for the revocation sync: a store that can announce new revocations
    /// (PostgreSQL `LISTEN/NOTIFY`) returns a receiver whose value changes when any instance
    /// logs one, and the server syncs at once instead of at its next poll. `None` (the
    /// default): polling only.
    fn revocation_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Records one failed authentication for each of `keys` (distinct; `client:<id>`,
    /// `peer:<address>`, `user:<digest>`) in a failure count every instance on this store
    /// shares, in one atomic step per key: a key's window starts at its first failure, by the
    /// store's clock, and lasts `window`; a failure after it ends starts a new one at 1.
    /// Returns each key's count in its current window, including this failure, and how long
    /// the window has left. A store that can announce changes (as
    /// [`revocation_signal`](Self::revocation_signal) does) announces a key whose count has
    /// just reached `max`, so other instances learn of the block at once.
    ///
    /// `None` (the default): the store does not share failure counts, and each instance
    /// counts in process only ([`MemoryStore`], `SqliteStore`). The server calls this only
    /// after a failure, never on a successful authentication.
    fn record_auth_failures<'a>(
        &'a self,
        keys: &'a [String],
        max: u32,
        window: std::time::Duration,
    ) -> StoreFuture<'a, Option<Vec<AuthFailures>>> {
        let _ = (keys, max, window);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// The keys whose shared failure count is at least `max` in a window that has not ended,
    /// among those that failed since `cursor` (a position this store hands out, starting from
    /// 0), and the cursor to ask with next time; entries may repeat. Instances poll this with
    /// their revocation sync to refuse keys that other instances blocked. `None` (the
    /// default): failure counts are not shared.
    fn auth_blocks(
        &self,
        cursor: u64,
        max: u32,
    ) -> StoreFuture<'_, Option<(Vec<AuthFailures>, u64)>> {
        let _ = (cursor, max);
        Box::pin(std::future::ready(Ok(None)))
    }

    // --- audit log ---

    /// Appends audit events, in order, in one atomic step; the store assigns each its
    /// [`AuditRecord::seq`] (the `seq` given is ignored). The default keeps nothing: a store
    /// that does not implement the audit log leaves the events to `tracing` alone.
    fn append_audit(&self, events: Vec<AuditRecord>) -> StoreFuture<'_, ()> {
        let _ = events;
        Box::pin(std::future::ready(Ok(())))
    }

    /// The audit events that match `query`, newest first: at most
    /// [`AuditQuery::limit`] of them, all with a `seq` below [`AuditQuery::before`] when it is
    /// set (the `seq` of the last event of the previous page). Empty by default.
    fn audit_events(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>> {
        let _ = query;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Deletes the audit events older than `older_than` (seconds since the Unix epoch), then
    /// the oldest ones beyond the newest `max_rows`; returns how many. Nothing by default.
    fn purge_audit(&self, older_than: u64, max_rows: u64) -> StoreFuture<'_, u64> {
        let _ = (older_than, max_rows);
        Box::pin(std::future::ready(Ok(0)))
    }

    /// For every client with a `token_issued` event in the log: when the last one happened,
    /// and how many happened at or after `since`. Empty by default.
    fn client_activity(&self, since: u64) -> StoreFuture<'_, Vec<ClientActivity>> {
        let _ = since;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    // --- approval decisions ---

    /// Records an approver's decision on a pending client and settles its status, in one
    /// atomic step, serialized with other decisions on the same client: if the approver has
    /// decided on this client before, changes nothing and answers
    /// [`DecisionOutcome::AlreadyDecided`]; if the client is not pending,
    /// [`DecisionOutcome::NotPending`]; otherwise stores the decision, calls `settle` with
    /// every decision on the client (oldest first), sets the status it returns (if any), and
    /// answers [`DecisionOutcome::Recorded`]. Of approvers deciding at the same moment, each
    /// sees the decisions committed before its own, so exactly one settles the client.
    ///
    /// The default refuses ([`StoreError::Unavailable`]): approver groups need a store that
    /// implements it, as the crate's three do.
    fn decide<'a>(
        &'a self,
        decision: ApprovalDecision,
        settle: &'a (dyn Fn(&[ApprovalDecision]) -> Option<ClientStatus> + Send + Sync),
    ) -> StoreFuture<'a, DecisionOutcome> {
        let _ = (decision, settle);
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "this store keeps no approval decisions".into(),
        ))))
    }

    /// The decisions recorded on a client, oldest first. Empty by default.
    fn decisions<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Vec<ApprovalDecision>> {
        let _ = client_id;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve the registration.
    Approve,
    /// Reject it.
    Reject,
}

impl Decision {
    /// `approve` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }

    /// The decision with this name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "approve" => Some(Decision::Approve),
            "reject" => Some(Decision::Reject),
            _ => None,
        }
    }
}

/// An approver's decision on a client registration ([`Store::decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    /// The client decided on.
    pub client_id: String,
    /// The approver's subject.
    pub approver: String,
    /// Approve or reject.
    pub decision: Decision,
    /// The approver groups the approver decided as (empty under
    /// [`ApprovalPolicy::Manual`](crate::server::ApprovalPolicy::Manual)).
    pub groups: Vec<String>,
    /// The approver's comment.
    pub comment: Option<String>,
    /// When, seconds since the Unix epoch.
    pub decided_at: u64,
}

/// What [`Store::decide`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DecisionOutcome {
    /// No client has that id.
    NotFound,
    /// The approver had decided on this client before: that decision stands, nothing changed.
    AlreadyDecided {
        /// The approver's earlier decision.
        earlier: ApprovalDecision,
        /// The client as it is.
        client: ClientRecord,
    },
    /// The client is not pending: nothing changed.
    NotPending(ClientRecord),
    /// The decision is recorded.
    Recorded {
        /// The client after it: its status changed if `settle` said so.
        client: ClientRecord,
        /// Every decision on the client, oldest first, this one last.
        decisions: Vec<ApprovalDecision>,
        /// Whether this decision changed the client's status.
        settled: bool,
    },
}

/// One event of the persistent audit log ([`Store::append_audit`]). Never holds a secret or
/// a token value: token ids (`jti`), family ids, scopes, grant types and error codes only.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The event's position in the log, assigned by the store when it is appended (0 before):
    /// later events have larger values. Pages of [`Store::audit_events`] continue from it.
    pub seq: u64,
    /// When it happened, seconds since the Unix epoch.
    pub at: u64,
    /// What happened: `token_issued`, `token_refused`, `client_auth_refused`,
    /// `token_revoked`, `refresh_token_reuse`, `code_reuse`, `admin_action`, … (see
    /// [`AuditKind`](crate::server::AuditKind)).
    pub kind: String,
    /// The client concerned, if any.
    pub client_id: Option<String>,
    /// Who acted, if known: the subject of a token issued to a user, of an administrator.
    pub actor: Option<String>,
    /// The rest, as a JSON object (grant, scope, jti, error, reason, peer, …).
    pub detail: serde_json::Value,
}

/// Which audit events [`Store::audit_events`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only this client's events.
    pub client_id: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events at or after this time (seconds since the Unix epoch).
    pub since: Option<u64>,
    /// Only events before this time (seconds since the Unix epoch).
    pub until: Option<u64>,
    /// Only events with a `seq` below this one: the cursor of the next page.
    pub before: Option<u64>,
    /// At most this many events.
    pub limit: usize,
}

impl AuditQuery {
    /// Every event, newest first, `limit` at a time.
    pub fn new(limit: usize) -> Self {
        Self {
            client_id: None,
            kind: None,
            since: None,
            until: None,
            before: None,
            limit,
        }
    }

    /// Whether `event` matches the filters (not the cursor or limit).
    pub fn matches(&self, event: &AuditRecord) -> bool {
        self.client_id
            .as_deref()
            .is_none_or(|c| event.client_id.as_deref() == Some(c))
            && self.kind.as_deref().is_none_or(|k| event.kind == k)
            && self.since.is_none_or(|t| event.at >= t)
            && self.until.is_none_or(|t| event.at < t)
            && self.before.is_none_or(|b| event.seq < b)
    }
}

/// A client's token issuance, from the audit log ([`Store::client_activity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientActivity {
    /// The client.
    pub client_id: String,
    /// When its last token was issued, seconds since the Unix epoch.
    pub last_issued_at: u64,
    /// How many tokens it was issued at or after the time asked about.
    pub issued_since: u64,
}

/// A key's failed authentications in its current window, as every instance on a store that
/// shares them counts them ([`Store::record_auth_failures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailures {
    /// The rate-limiter key (`client:<id>`, `peer:<address>`, `user:<digest>`).
    pub key: String,
    /// Failures in the window so far, on every instance.
    pub count: u32,
    /// How long the window has left, by the store's clock.
    pub remaining: std::time::Duration,
}

/// The tokens of one successful grant, for [`Store::issue_tokens`].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIssue {
    /// The client as the request authenticated it. The tokens are stored only if the store's
    /// record of the client still equals it.
    pub client: ClientRecord,
    /// For the refresh grant, the id of the refresh token being rotated.
    pub rotate: Option<String>,
    /// The tokens to store: an access token and perhaps a refresh token.
    pub tokens: Vec<TokenRecord>,
    /// With a refresh-token grace window, what the rotated-out token's row keeps, written in
    /// the same atomic step as the rotation (see [`Store::successor`]).
    pub successor: Option<Successor>,
}

/// What a rotation leaves on the rotated-out refresh token for the server's grace window: the
/// answer to the refresh (its new token pair), sealed under a key derived from the rotated-out
/// token's value — which the store never holds — so only its holder's retry can open it; and
/// when it was rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    /// `nonce || ciphertext || tag` (AES-256-GCM).
    pub sealed: Vec<u8>,
    /// The rotation's time, seconds since the Unix epoch.
    pub rotated_at: u64,
}

/// What [`Store::issue_tokens`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueOutcome {
    /// The tokens are stored, active.
    Stored,
    /// The tokens are stored already revoked: their family was revoked (an authorization code
    /// redeemed twice), as with [`Store::insert_tokens`] returning `false`.
    Revoked,
    /// The refresh token to rotate was no longer active: nothing is stored.
    NotRotated,
    /// The client's stored record is not the one the request authenticated with (changed,
    /// disabled or deleted): nothing is stored, or what was is revoked.
    ClientChanged,
}

/// A revoked access token, as instances sync it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedAccess {
    /// The token's `jti`.
    pub jti: String,
    /// When it would have expired (`None`: never).
    pub expires_at: Option<u64>,
}

/// A signing key as stored. `private_key` is the DER of the private key (PKCS#8 for EC and
/// Ed25519, PKCS#1 for RSA), sealed with AES-256-GCM when the server has a key-encryption
/// secret (`encrypted`). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id.
    pub kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub algorithm: String,
    /// The private key, DER, perhaps sealed.
    pub private_key: Vec<u8>,
    /// Whether `private_key` is sealed with the server's key-encryption secret.
    pub encrypted: bool,
    /// When it was created, seconds since the Unix epoch.
    pub created_at: u64,
    /// Whether new tokens are signed with it (exactly one key is active).
    pub active: bool,
    /// For a retired key, until when it stays published (`None`: forever, or active).
    pub retired_until: Option<u64>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("encrypted", &self.encrypted)
            .field("active", &self.active)
            .field("retired_until", &self.retired_until)
            .finish_non_exhaustive()
    }
}

/// A store operation failed: the backend is unreachable or refused, or a record conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A record with the same key exists.
    Conflict(String),
    /// The backend failed (connection lost, pool exhausted, …). The request can be retried.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict(what) => write!(f, "conflict: {what}"),
            StoreError::Unavailable(why) => write!(f, "store unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The SHA-256 digest of an opaque token (authorization code or refresh token): what a store
/// keeps instead of the value. `Debug` prints a short prefix only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The digest of a token value.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A digest read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A grant type a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantType {
    /// `authorization_code` (with PKCE).
    AuthorizationCode,
    /// `client_credentials`.
    ClientCredentials,
    /// `refresh_token`.
    RefreshToken,
    /// `password` (legacy; only with a [`PasswordVerifier`](crate::server::PasswordVerifier)).
    Password,
}

impl GrantType {
    /// Every grant type, in the order metadata lists them.
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::Password,
    ];

    /// The `grant_type` parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Password => "password",
        }
    }

    /// The grant type a `grant_type` value names.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == value)
    }
}

/// Where a client stands with the server's approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientStatus {
    /// Registered, waiting for an administrator; cannot authenticate.
    Pending,
    /// May authenticate and obtain tokens.
    Approved,
    /// Refused by an administrator; cannot authenticate.
    Rejected,
    /// Switched off by an administrator (its tokens were revoked); cannot authenticate.
    Disabled,
}

impl ClientStatus {
    /// The status as the admin API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Pending => "pending",
            ClientStatus::Approved => "approved",
            ClientStatus::Rejected => "rejected",
            ClientStatus::Disabled => "disabled",
        }
    }

    /// The status the admin API spelling names.
    pub fn parse(value: &str) -> Option<Self> {
        [
            ClientStatus::Pending,
            ClientStatus::Approved,
            ClientStatus::Rejected,
            ClientStatus::Disabled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// A registered client. Its secret is kept only as a [`SecretHash`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    /// The `client_id`.
    pub client_id: String,
    /// A human-readable name.
    pub name: String,
    /// The digest of the client secret; `None` for a public client (RFC 6749 §2.1: a native
    /// app, a single-page app, a CLI), which authenticates with no secret
    /// (`token_endpoint_auth_method: none`) and may use only the `authorization_code` (with
    /// PKCE) and `refresh_token` grants.
    pub secret_hash: Option<SecretHash>,
    /// Redirect URIs for the authorization-code grant, matched exactly.
    pub redirect_uris: Vec<String>,
    /// The grant types the client may use.
    pub grant_types: Vec<GrantType>,
    /// The scopes the client may request.
    pub scopes: Vec<String>,
    /// The scopes granted when a request names none (a subset of `scopes`).
    pub default_scopes: Vec<String>,
    /// Overrides the server's access-token lifetime.
    pub access_token_lifetime: Option<TokenLifetime>,
    /// Overrides the server's refresh-token lifetime.
    pub refresh_token_lifetime: Option<TokenLifetime>,
    /// Approval status.
    pub status: ClientStatus,
    /// Registration time, seconds since the Unix epoch.
    pub created_at: u64,
    /// E-mail addresses of the people responsible for the client, told when its registration
    /// is approved or rejected.
    pub contacts: Vec<String>,
    /// The digest of the registration access token (RFC 7592) of a dynamically registered
    /// client, with which it reads, changes and deletes its registration; `None` for clients
    /// registered otherwise.
    pub registration_token: Option<SecretHash>,
}

impl ClientRecord {
    /// Whether this is a public client (no secret).
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    /// Whether `secret` is this client's secret (constant time); always `false` for a public
    /// client.
    pub fn verify_secret(&self, secret: &str) -> bool {
        self.secret_hash.as_ref().is_some_and(|h| h.verify(secret))
    }

    /// `none` for a public client, else `client_secret_basic` (RFC 7591 §2; such a client may
    /// also use `client_secret_post`).
    pub fn token_endpoint_auth_method(&self) -> &'static str {
        if self.is_public() {
            "none"
        } else {
            "client_secret_basic"
        }
    }
}

/// An authorization code waiting to be redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// The digest of the code.
    pub hash: TokenHash,
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request, which the token request must repeat.
    pub redirect_uri: String,
    /// The resource owner who consented.
    pub subject: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The PKCE S256 code challenge.
    pub code_challenge: String,
    /// The family the tokens issued for this code belong to, so that a second redemption can
    /// revoke them.
    pub family_id: String,
    /// Whether the code has been redeemed.
    pub used: bool,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The resource indicators (RFC 8707) of the authorization request: what the tokens may
    /// be for. Empty: the server's default audience.
    pub resources: Vec<String>,
    /// The `dpop_jkt` of the authorization request (RFC 9449 §10): the redemption must come
    /// with a DPoP proof by this key.
    pub dpop_jkt: Option<String>,
}

/// Access token or refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A JWT access token, identified by its `jti`.
    Access,
    /// An opaque refresh token, found by its [`TokenHash`].
    Refresh,
}

impl TokenKind {
    /// `access_token` or `refresh_token`, as RFC 7009's `token_type_hint` spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
    }
}

/// The life cycle of an issued token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenState {
    /// Usable until it expires.
    Active,
    /// A refresh token that has been exchanged for a new one; presenting it again is reuse.
    Rotated,
    /// Revoked.
    Revoked,
}

impl TokenState {
    /// The state as storage and the admin API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Rotated => "rotated",
            TokenState::Revoked => "revoked",
        }
    }
}

/// One issued token, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The id: the `jti` of an access token; a random id for a refresh token.
    pub id: String,
    /// Access or refresh token.
    pub kind: TokenKind,
    /// For a refresh token, the digest of its value.
    pub hash: Option<TokenHash>,
    /// The client it was issued to.
    pub client_id: String,
    /// The subject (`sub`): the resource owner, or the client itself for client credentials.
    pub subject: String,
    /// The refresh-token family: every refresh token rotated from one grant, and the access
    /// tokens issued with them. `None` for tokens issued without a refresh token.
    pub family_id: Option<String>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// Issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Expiry, seconds since the Unix epoch; `None` for an unlimited token.
    pub expires_at: Option<u64>,
    /// Where it is in its life cycle.
    pub state: TokenState,
    /// The resource indicators (RFC 8707): an access token's audiences; a refresh token's
    /// grant, which later refreshes may narrow but not widen. Empty: the server's default
    /// audience.
    pub resources: Vec<String>,
    /// The thumbprint of the DPoP key the token is bound to (RFC 9449): an access token's
    /// `cnf.jkt`; a public client's refresh token, which only a proof by that key may use.
    pub dpop_jkt: Option<String>,
}

impl TokenRecord {
    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}
