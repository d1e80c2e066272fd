//! What the SQL stores share besides their implementation
//! ([`sql_store`](super::sql_store), which reads the rows): how values map to columns, and how
//! database errors map to [`StoreError`].
//!
//! Lists (scopes, redirect URIs, grant types) are JSON arrays in text columns; digests are
//! 32-byte blobs; times are whole seconds in signed 64-bit integers (a `u64` above `i64::MAX`
//! is refused, never wrapped); lifetimes are their canonical [`TokenLifetime`] text; enums are
//! their `as_str` spelling. A row that does not decode is reported as
//! [`StoreError::Unavailable`] (`corrupt row: …`), never a panic.

use super::{GrantType, StoreError, TokenHash, TokenKind, TokenRecord, TokenState};
use crate::server::{SecretHash, TokenLifetime};

/// How long a caller waits for a pooled connection before the store reports itself
/// unavailable.
pub(super) const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a revoked family stays marked at least: as long as a code issued into it could
/// still be redeemed (ten minutes). Matches [`MemoryStore`](super::MemoryStore).
pub(super) const FAMILY_MARK_MIN_SECS: u64 = 600;

/// A database error as the store reports it.
pub(super) fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_) => StoreError::Unavailable(format!("corrupt row: {error}")),
        _ => StoreError::Unavailable(error.to_string()),
    }
}

/// [`db_error`], with the conflict described as `what` (`client x exists`).
pub(super) fn db_error_as(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match db_error(error) {
        StoreError::Conflict(_) => StoreError::Conflict(what()),
        other => other,
    }
}

/// A migration failure as the store reports it.
pub(super) fn migrate_error(error: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Unavailable(format!("database migration failed: {error}"))
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt row: {what}"))
}

/// A time (or other `u64`) as stored; values above `i64::MAX` are refused.
pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Unavailable(format!(
            "{what} {value} is out of range: the store keeps values up to {}",
            i64::MAX
        ))
    })
}

/// [`to_i64`] for an optional value.
pub(super) fn opt_to_i64(value: Option<u64>, what: &str) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(v, what)).transpose()
}

/// A bound for a comparison (`now`, a cursor): every stored value is at most `i64::MAX`, so a
/// larger bound compares like `i64::MAX`.
pub(super) fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn from_i64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format_args!("negative {what} {value}")))
}

/// A cursor read back from the revocation log's sequence.
pub(super) fn cursor_from_i64(value: i64) -> Result<u64, StoreError> {
    from_i64(value, "revocation cursor")
}

/// A list of strings as stored: a JSON array.
pub(super) fn list_json(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// Grant types as stored: a JSON array of their `grant_type` spellings.
pub(super) fn grants_json(grants: &[GrantType]) -> String {
    serde_json::Value::from(grants.iter().map(|g| g.as_str()).collect::<Vec<_>>()).to_string()
}

pub(super) fn parse_list(text: &str, what: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format_args!("{what}: {e}")))
}

pub(super) fn parse_grants(text: &str) -> Result<Vec<GrantType>, StoreError> {
    parse_list(text, "grant_types")?
        .iter()
        .map(|g| GrantType::parse(g).ok_or_else(|| corrupt(format_args!("grant type {g:?}"))))
        .collect()
}

/// A lifetime as stored: its canonical text.
pub(super) fn lifetime_text(lifetime: Option<TokenLifetime>) -> Option<String> {
    lifetime.map(|l| l.to_string())
}

pub(super) fn parse_lifetime(
    text: Option<String>,
    what: &str,
) -> Result<Option<TokenLifetime>, StoreError> {
    text.map(|t| {
        t.parse::<TokenLifetime>()
            .map_err(|e| corrupt(format_args!("{what}: {e}")))
    })
    .transpose()
}

pub(super) fn parse_hash(bytes: Vec<u8>) -> Result<TokenHash, StoreError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| corrupt(format_args!("a digest of {} bytes", b.len())))?;
    Ok(TokenHash::from_bytes(bytes))
}

pub(super) fn parse_kind(text: &str) -> Result<TokenKind, StoreError> {
    [TokenKind::Access, TokenKind::Refresh]
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| corrupt(format_args!("token kind {text:?}")))
}

pub(super) fn parse_state(text: &str) -> Result<TokenState, StoreError> {
    [TokenState::Active, TokenState::Rotated, TokenState::Revoked]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| corrupt(format_args!("token state {text:?}")))
}

/// The rows, decoded, sorted by issue time and id (the order the stores report tokens in).
pub(super) fn sorted_tokens(mut tokens: Vec<TokenRecord>) -> Vec<TokenRecord> {
    tokens.sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
    tokens
}

/// Until when a revoked family stays marked, given the expiries of its tokens: ten minutes
/// from now at least, as long as its longest-lived token, forever (`None`) if one never
/// expires.
pub(super) fn family_mark_until(
    now: u64,
    unlimited_tokens: i64,
    latest_expiry: Option<i64>,
) -> Result<Option<u64>, StoreError> {
    if unlimited_tokens > 0 {
        return Ok(None);
    }
    let floor = now.saturating_add(FAMILY_MARK_MIN_SECS);
    let latest = latest_expiry
        .map(|e| from_i64(e, "expires_at"))
        .transpose()?
        .unwrap_or(0);
    Ok(Some(floor.max(latest)))
}

/// What the `secret_hash` column holds for a public client (no secret); a digest is stored as
/// `sha256:…`, so the two cannot be confused.
const NO_SECRET: &str = "none";

/// The `secret_hash` column of a client.
pub(super) fn secret_text(hash: Option<&SecretHash>) -> String {
    hash.map_or_else(|| NO_SECRET.to_owned(), SecretHash::to_stored)
}

/// Reads the `secret_hash` column back.
pub(super) fn parse_secret(stored: &str) -> Result<Option<SecretHash>, StoreError> {
    if stored == NO_SECRET {
        return Ok(None);
    }
    SecretHash::from_stored(stored)
        .map(Some)
        .map_err(|e| corrupt(format_args!("secret_hash: {e}")))
}

/// The columns [`SqlStore::client_from_row`](super::sql_store::SqlStore::client_from_row) reads, for `concat!` into fixed SQL text.
macro_rules! client_columns {
    () => {
        "client_id, name, secret_hash, redirect_uris, grant_types, scopes, default_scopes, \
         access_token_lifetime, refresh_token_lifetime, status, created_at, contacts, \
         registration_token_hash"
    };
}

/// The columns [`SqlStore::code_from_row`](super::sql_store::SqlStore::code_from_row) reads.
macro_rules! code_columns {
    () => {
        "hash, client_id, redirect_uri, subject, scopes, code_challenge, family_id, used, \
         expires_at, resources, dpop_jkt"
    };
}

/// The columns [`SqlStore::token_from_row`](super::sql_store::SqlStore::token_from_row) reads.
macro_rules! token_columns {
    () => {
        "id, kind, hash, client_id, subject, family_id, scopes, issued_at, expires_at, state, \
         resources, dpop_jkt"
    };
}

/// The columns [`SqlStore::signing_key_from_row`](super::sql_store::SqlStore::signing_key_from_row) reads.
macro_rules! signing_key_columns {
    () => {
        "kid, algorithm, private_key, encrypted, created_at, active, retired_until"
    };
}

pub(super) use {client_columns, code_columns, signing_key_columns, token_columns};

/// Checks both SQL stores run: the semantics of [`MemoryStore`](super::MemoryStore) on a few
/// paths, and one winner of concurrent redemptions and rotations.
#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::{
        ClientRecord, ClientStatus, CodeRecord, GrantType, SigningKeyRecord, Store, StoreError,
        TokenHash, TokenKind, TokenRecord, TokenState,
    };
    use crate::server::{SecretHash, TokenLifetime};

    fn client(id: &str) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            name: format!("client {id}"),
            secret_hash: Some(SecretHash::of("secret")),
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["read".into(), "write".into()],
            default_scopes: vec!["read".into()],
            access_token_lifetime: Some(TokenLifetime::Limited(Duration::from_secs(5400))),
            refresh_token_lifetime: Some(TokenLifetime::Unlimited),
            status: ClientStatus::Approved,
            created_at: 100,
            contacts: vec!["ops@app.example".into()],
            registration_token: None,
        }
    }

    fn code(value: &str, client_id: &str) -> CodeRecord {
        CodeRecord {
            hash: TokenHash::of(value),
            client_id: client_id.into(),
            redirect_uri: "https://app.example/cb".into(),
            subject: "alice".into(),
            scopes: vec!["read".into()],
            code_challenge: "challenge".into(),
            family_id: "fam".into(),
            used: false,
            expires_at: 1_000,
            resources: vec!["https://api.example/mcp".into()],
            dpop_jkt: None,
        }
    }

    fn token(
        id: &str,
        kind: TokenKind,
        family: Option<&str>,
        expires_at: Option<u64>,
    ) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            kind,
            hash: (kind == TokenKind::Refresh).then(|| TokenHash::of(id)),
            client_id: "c1".into(),
            subject: "alice".into(),
            family_id: family.map(str::to_owned),
            scopes: vec!["read".into()],
            issued_at: 10,
            expires_at,
            state: TokenState::Active,
            resources: vec!["https://api.example/mcp".into()],
            dpop_jkt: None,
        }
    }

    /// A cursor this database did not hand out (it was restored or replaced) starts the log
    /// over instead of skipping what was logged since.
    pub(crate) async fn foreign_cursor(store: &dyn Store) {
        store
            .insert_tokens(vec![token("fc-a", TokenKind::Access, None, None)])
            .await
            .expect("insert");
        store.revoke_token("fc-a").await.expect("revoke");
        let (entries, next) = store.revocations_since(1_000_000).await.expect("since");
        assert!(entries.is_empty());
        assert_eq!(next, 0, "start over");
        let (entries, next) = store.revocations_since(next).await.expect("since");
        assert!(entries.iter().any(|e| e.jti == "fc-a"));
        let (again, same) = store.revocations_since(next).await.expect("since");
        assert!(again.is_empty());
        assert_eq!(same, next, "an up-to-date cursor stays");
    }

    fn key(kid: &str) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            algorithm: "ES256".into(),
            private_key: vec![1, 2, 3],
            encrypted: false,
            created_at: 5,
            active: false,
            retired_until: None,
        }
    }

    const LATER: u64 = 4_000_000_000;

    pub(in super::super) async fn exercise(store: &dyn Store) {
        // Clients.
        assert_eq!(store.insert_client(client("c1")).await, Ok(()));
        assert!(matches!(
            store.insert_client(client("c1")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.insert_client(client("c0")).await, Ok(()));
        assert_eq!(store.client("c1").await, Ok(Some(client("c1"))));
        assert_eq!(store.client("nope").await, Ok(None));
        let ids: Vec<String> = store
            .clients()
            .await
            .expect("clients")
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(ids, ["c1", "c0"], "registration order");
        let mut changed = client("c1");
        changed.status = ClientStatus::Disabled;
        changed.access_token_lifetime = None;
        assert_eq!(store.update_client(changed.clone()).await, Ok(true));
        assert_eq!(store.client("c1").await, Ok(Some(changed)));
        assert_eq!(store.update_client(client("nope")).await, Ok(false));

        // Codes: another client's attempt neither wins nor spoils the code.
        assert_eq!(store.insert_code(code("k", "c1")).await, Ok(()));
        assert!(matches!(
            store.insert_code(code("k", "c1")).await,
            Err(StoreError::Conflict(_))
        ));
        let hash = TokenHash::of("k");
        assert_eq!(
            store.take_code(&hash, "c0").await,
            Ok(Some((code("k", "c1"), false)))
        );
        let used = CodeRecord {
            used: true,
            ..code("k", "c1")
        };
        assert_eq!(
            store.take_code(&hash, "c1").await,
            Ok(Some((used.clone(), true)))
        );
        assert_eq!(store.take_code(&hash, "c1").await, Ok(Some((used, false))));
        assert_eq!(store.take_code(&TokenHash::of("x"), "c1").await, Ok(None));

        // Tokens and rotation.
        let access = token("a1", TokenKind::Access, Some("f"), Some(LATER));
        let refresh = token("r1", TokenKind::Refresh, Some("f"), None);
        assert_eq!(
            store
                .insert_tokens(vec![access.clone(), refresh.clone()])
                .await,
            Ok(true)
        );
        assert!(matches!(
            store.insert_tokens(vec![access.clone()]).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.find_refresh(&TokenHash::of("r1")).await,
            Ok(Some(refresh.clone()))
        );
        let issued = vec![
            token("a2", TokenKind::Access, Some("f"), Some(LATER)),
            token("r2", TokenKind::Refresh, Some("f"), Some(LATER)),
        ];
        assert_eq!(store.rotate_refresh("r1", issued.clone()).await, Ok(true));
        assert_eq!(store.rotate_refresh("r1", issued.clone()).await, Ok(false));
        assert_eq!(
            store.token("r1").await.map(|t| t.map(|t| t.state)),
            Ok(Some(TokenState::Rotated))
        );
        // A taken id: nothing changes.
        assert_eq!(
            store
                .rotate_refresh("r2", vec![token("a1", TokenKind::Access, Some("f"), None)])
                .await,
            Ok(false)
        );
        assert_eq!(
            store.token("r2").await.map(|t| t.map(|t| t.state)),
            Ok(Some(TokenState::Active))
        );
        let live: Vec<String> = store
            .client_tokens("c1", 20)
            .await
            .expect("client tokens")
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(live, ["a1", "a2", "r2"]);

        // Revocation and the log.
        let (log, start) = store.revocations_since(0).await.expect("log");
        assert!(log.is_empty());
        let revoked = store
            .revoke_token("a1")
            .await
            .expect("revoke")
            .expect("was live");
        assert_eq!(revoked.state, TokenState::Revoked);
        assert_eq!(store.revoke_token("a1").await, Ok(None));
        let (log, cursor) = store.revocations_since(start).await.expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].jti, "a1");
        assert_eq!(log[0].expires_at, Some(LATER));
        assert_eq!(
            store.revocations_since(cursor).await,
            Ok((Vec::new(), cursor))
        );

        // The order of the revoked tokens is unspecified (the SQL stores sort them).
        let mut family: Vec<String> = store
            .revoke_family("f")
            .await
            .expect("revoke family")
            .into_iter()
            .map(|t| t.id)
            .collect();
        family.sort();
        assert_eq!(family, ["a2", "r1", "r2"]);
        // A late insert into the revoked family is stored revoked.
        assert_eq!(
            store
                .insert_tokens(vec![token("a3", TokenKind::Access, Some("f"), Some(LATER))])
                .await,
            Ok(false)
        );
        assert_eq!(
            store.token("a3").await.map(|t| t.map(|t| t.state)),
            Ok(Some(TokenState::Revoked))
        );
        let (log, cursor2) = store.revocations_since(cursor).await.expect("log");
        let jtis: Vec<&str> = log.iter().map(|r| r.jti.as_str()).collect();
        assert_eq!(jtis, ["a2", "a3"]);
        assert!(cursor2 > cursor);
        let mut denylist: Vec<String> = store
            .revoked_access_tokens(20)
            .await
            .expect("denylist")
            .into_iter()
            .map(|t| t.id)
            .collect();
        denylist.sort();
        assert_eq!(denylist, ["a1", "a2", "a3"]);
        assert_eq!(store.client_tokens("c1", 20).await, Ok(Vec::new()));

        // Other families are unaffected; the client-wide revocation catches them.
        assert_eq!(
            store
                .insert_tokens(vec![token("b1", TokenKind::Access, Some("g"), Some(50))])
                .await,
            Ok(true)
        );
        let all = store
            .revoke_client_tokens("c1")
            .await
            .expect("revoke client");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, "b1");

        // Purging: the code (expired at 1000), b1 (50); not the unlimited r1 nor the others.
        assert_eq!(store.purge_expired(1_000).await, Ok(2));
        assert_eq!(store.token("b1").await, Ok(None));
        assert!(store.token("r1").await.expect("read").is_some());
        // The family mark outlives its tokens' expiry.
        assert_eq!(
            store
                .insert_tokens(vec![token("a4", TokenKind::Access, Some("f"), Some(LATER))])
                .await,
            Ok(false)
        );

        // Signing keys.
        let first = store.init_signing_key(key("k1")).await.expect("init");
        assert!(first.active);
        assert_eq!(store.init_signing_key(key("k2")).await, Ok(first.clone()));
        assert!(matches!(
            store.rotate_signing_key(key("k1"), Some(60)).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.rotate_signing_key(key("k2"), Some(60)).await, Ok(()));
        assert_eq!(store.rotate_signing_key(key("k3"), None).await, Ok(()));
        let keys = store.signing_keys().await.expect("keys");
        let summary: Vec<(&str, bool, Option<u64>)> = keys
            .iter()
            .map(|k| (k.kid.as_str(), k.active, k.retired_until))
            .collect();
        assert_eq!(
            summary,
            [
                ("k1", false, Some(60)),
                ("k2", false, None),
                ("k3", true, None)
            ]
        );
        assert_eq!(keys[0].private_key, [1, 2, 3]);
        assert_eq!(store.purge_signing_keys(60).await, Ok(1));
        assert_eq!(store.signing_keys().await.map(|k| k.len()), Ok(2));

        // Deleting a client takes its codes along.
        assert_eq!(store.insert_code(code("k2", "c0")).await, Ok(()));
        assert_eq!(store.delete_client("c0").await, Ok(true));
        assert_eq!(store.delete_client("c0").await, Ok(false));
        assert_eq!(store.take_code(&TokenHash::of("k2"), "c0").await, Ok(None));
    }

    /// Times beyond `i64::MAX` are refused, not wrapped, and leave nothing behind; as bounds
    /// they compare like `i64::MAX`. On an empty store.
    pub(in super::super) async fn out_of_range(store: &dyn Store) {
        let tokens = vec![
            token("fine", TokenKind::Access, None, Some(1)),
            token("big", TokenKind::Access, None, Some(u64::MAX)),
        ];
        let error = store.insert_tokens(tokens).await.expect_err("refused");
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.contains("out of range")),
            "{error:?}"
        );
        assert_eq!(store.token("fine").await, Ok(None), "rolled back");
        assert_eq!(store.token("big").await, Ok(None));
        assert_eq!(store.purge_expired(u64::MAX).await, Ok(0));
        assert_eq!(store.client_tokens("c1", u64::MAX).await, Ok(Vec::new()));
        assert_eq!(
            store.revocations_since(u64::MAX).await.map(|r| r.0),
            Ok(Vec::new())
        );
    }

    /// The checks hold for the reference store too.
    #[tokio::test]
    async fn the_memory_store_passes_the_same_checks() {
        exercise(&super::super::MemoryStore::new()).await;
        let memory: Arc<dyn Store> = Arc::new(super::super::MemoryStore::new());
        race(std::slice::from_ref(&memory)).await;
        family_races(&[memory]).await;
    }

    /// Concurrent redemptions of one code and rotations of one refresh token, spread over
    /// `stores` (separate pools on one database): exactly one winner each.
    pub(in super::super) async fn race(stores: &[Arc<dyn Store>]) {
        const RACERS: usize = 16;
        let first = &stores[0];
        first.insert_code(code("race", "rc")).await.expect("code");
        first
            .insert_tokens(vec![TokenRecord {
                client_id: "rc".into(),
                ..token("race-r0", TokenKind::Refresh, Some("race-f"), None)
            }])
            .await
            .expect("refresh token");
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let store = Arc::clone(&stores[i % stores.len()]);
            tasks.push(tokio::spawn(async move {
                let taken = store
                    .take_code(&TokenHash::of("race"), "rc")
                    .await
                    .expect("take_code")
                    .expect("code exists");
                let issued = vec![TokenRecord {
                    client_id: "rc".into(),
                    ..token(
                        &format!("race-r{}", i + 1),
                        TokenKind::Refresh,
                        Some("race-f"),
                        None,
                    )
                }];
                let rotated = store
                    .rotate_refresh("race-r0", issued)
                    .await
                    .expect("rotate_refresh");
                (taken.1, rotated)
            }));
        }
        let mut codes = 0;
        let mut rotations = 0;
        for task in tasks {
            let (code, rotated) = task.await.expect("task");
            codes += usize::from(code);
            rotations += usize::from(rotated);
        }
        assert_eq!(codes, 1, "one redemption wins");
        assert_eq!(rotations, 1, "one rotation wins");
        let active = first.client_tokens("rc", 0).await.expect("tokens");
        assert_eq!(active.len(), 1, "one successor token: {active:?}");
    }

    /// A family revoked while tokens are rotated and issued into it, and its client's tokens
    /// revoked meanwhile, from several pools at once: afterwards no token of the family is
    /// live, and no operation failed (no deadlock, no conflict).
    pub(in super::super) async fn family_races(stores: &[Arc<dyn Store>]) {
        const FAMILIES: usize = 8;
        let mut tasks = Vec::new();
        for f in 0..FAMILIES {
            let family = format!("fr{f}");
            let client = format!("fc{}", f % 2);
            let (c, fam) = (client.clone(), family.clone());
            let with = move |id: String, kind| TokenRecord {
                client_id: c.clone(),
                ..token(&id, kind, Some(&fam), Some(LATER))
            };
            stores[0]
                .insert_tokens(vec![with(format!("{family}-r0"), TokenKind::Refresh)])
                .await
                .expect("first refresh token");
            let rotator = Arc::clone(&stores[f % stores.len()]);
            let (fam, w) = (family.clone(), with.clone());
            tasks.push(tokio::spawn(async move {
                // Bounded: a store that lets rotation outrun the revocation must fail below,
                // not hang.
                for i in 0..500 {
                    let issued = vec![
                        w(format!("{fam}-a{}", i + 1), TokenKind::Access),
                        w(format!("{fam}-r{}", i + 1), TokenKind::Refresh),
                    ];
                    let old = format!("{fam}-r{i}");
                    if !rotator.rotate_refresh(&old, issued).await.expect("rotate") {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }));
            let issuer = Arc::clone(&stores[(f + 1) % stores.len()]);
            let (fam, w) = (family.clone(), with.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    issuer
                        .insert_tokens(vec![w(format!("{fam}-x{i}"), TokenKind::Access)])
                        .await
                        .expect("insert");
                    tokio::task::yield_now().await;
                }
            }));
            let revoker = Arc::clone(&stores[(f + 2) % stores.len()]);
            let fam = family.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                revoker.revoke_family(&fam).await.expect("revoke family");
            }));
            let other = Arc::clone(&stores[(f + 3) % stores.len()]);
            let (c, fam) = (client.clone(), family.clone());
            tasks.push(tokio::spawn(async move {
                other.revoke_client_tokens(&c).await.expect("revoke client");
                other
                    .revoke_token(&format!("{fam}-a1"))
                    .await
                    .expect("revoke token");
                other.purge_expired(1).await.expect("purge");
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        // The rotations have stopped (their token was revoked); the issuer's late tokens are
        // stored revoked.
        for c in ["fc0", "fc1"] {
            let live = stores[0].client_tokens(c, 0).await.expect("tokens");
            assert!(
                live.iter().all(|t| t.family_id.is_none()),
                "live tokens of revoked families: {live:?}"
            );
        }
        // Every revoked access token reached the log, in an order readers can follow.
        let (log, _) = stores[0].revocations_since(0).await.expect("log");
        let logged: std::collections::HashSet<String> = log.into_iter().map(|r| r.jti).collect();
        for t in stores[0].revoked_access_tokens(0).await.expect("denylist") {
            if t.family_id.as_deref().is_some_and(|f| f.starts_with("fr")) {
                assert!(logged.contains(&t.id), "{} not logged", t.id);
            }
        }
    }
}
