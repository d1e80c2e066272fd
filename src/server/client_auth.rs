//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1) for confidential clients,
//! `none` (just the `client_id`) for public ones, with failed attempts rate limited per client id
//! and per peer address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Extensions, HeaderMap, header};

use super::SecretHash;
use super::http::{OAuthError, Params};
use super::store::{AuthFailures, ClientRecord, ClientStatus, Store, StoreError};

/// Credentials a request presented, before they are checked.
struct Presented {
    client_id: String,
    /// `None`: the request names its client without a secret (a public client, or an empty
    /// secret, which no confidential client has).
    secret: Option<String>,
    /// The Basic secret as sent, when form-decoding changed it: many clients (authlib,
    /// requests) skip RFC 6749 §2.3.1's form-encoding, so the secret is checked both ways.
    raw_secret: Option<String>,
}

/// Reads the client's credentials from the Authorization header or the form; more than one
/// method is `invalid_request`, none is `invalid_client`.
fn presented(headers: &HeaderMap, params: &mut Params) -> Result<Presented, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client(
                    "client authentication must use the Basic scheme",
                ));
            }
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            let decode = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let decoded = decode(secret);
            Some(Presented {
                client_id: decode(id),
                raw_secret: (decoded != secret).then(|| secret.to_owned()),
                secret: Some(decoded).filter(|s| !s.is_empty()),
            })
        }
    };
    let post_secret = params.take("client_secret");
    let post_id = params.take("client_id");
    match (basic, post_id, post_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not both Basic and client_secret",
        )),
        (Some(basic), Some(id), None) if id != basic.client_id => Err(OAuthError::invalid_request(
            "client_id differs from the authenticated client",
        )),
        (Some(basic), _, None) => Ok(basic),
        (None, Some(client_id), secret) => Ok(Presented {
            client_id,
            secret: secret.filter(|s| !s.is_empty()),
            raw_secret: None,
        }),
        (None, None, _) => Err(OAuthError::invalid_client(
            "client authentication required (client_secret_basic, client_secret_post, or \
             client_id alone for a public client)",
        )),
    }
}

/// Whether `id` could be a registered client id (1–128 characters of `[A-Za-z0-9-._~]`, as
/// registration requires): anything else is refused before it reaches the store.
pub(crate) fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The peer's address, when the app serves with `into_make_service_with_connect_info`.
pub(crate) fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Approved clients by id, as last read from the store, so that a token request reads nothing
/// before the write that stores its tokens.
///
/// An entry can be stale: another instance may have changed the client. That is caught where
/// it matters: [`Store::issue_tokens`] stores tokens only if the client's stored record still
/// equals the one the request authenticated with, and the request is run once more with the
/// stored record otherwise. This instance's admin changes remove the entry at once, and other
/// instances' arrive with the store sync; an entry lives at most [`CLIENT_TTL`] in any case.
#[derive(Debug, Clone)]
pub(crate) struct ClientCache(moka::sync::Cache<String, Arc<ClientRecord>>);

/// How long a cached client is trusted at most, for the endpoints that do not store tokens
/// (introspection, revocation) when the store has no change feed to sync from.
pub(crate) const CLIENT_TTL: Duration = Duration::from_secs(30);

/// Clients cached at most (about 1 KiB each).
const CLIENT_CACHE_ENTRIES: u64 = 10_000;

impl ClientCache {
    pub(crate) fn new() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(CLIENT_CACHE_ENTRIES)
                .time_to_live(CLIENT_TTL)
                .build(),
        )
    }

    /// Forgets a client, after it changed.
    pub(crate) fn invalidate(&self, client_id: &str) {
        self.0.invalidate(client_id);
    }
}

/// Whether `presented` authenticates `client`: its secret for a confidential client (both
/// comparisons run, so timing does not tell which form matched), no secret for a public one.
fn secret_matches(client: &ClientRecord, presented: &Presented) -> bool {
    match (&client.secret_hash, &presented.secret) {
        (Some(hash), Some(secret)) => {
            let decoded = hash.verify(secret);
            let raw = presented
                .raw_secret
                .as_deref()
                .is_some_and(|raw| hash.verify(raw));
            decoded | raw
        }
        (None, None) => true,
        // A public client that sends a secret, or a confidential one that sends none.
        _ => false,
    }
}

/// Which clients an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clients {
    /// Confidential and public clients (token and revocation endpoints; RFC 7009 §5).
    All,
    /// Confidential clients only (introspection: RFC 7662 §2.1 wants the caller authorized,
    /// and a public client proves nothing).
    Confidential,
}

/// Authenticates the client of a request, consuming `client_id` and `client_secret` from the
/// form. Pending, rejected and disabled clients fail like a wrong secret would, after the
/// secret has been checked.
///
/// With `cache`, an approved client whose cached record matches the secret is taken from it
/// (see [`ClientCache`]); otherwise, and without `cache`, the client is read from the store.
pub(crate) async fn authenticate(
    state: &super::ServerState,
    cache: Option<&ClientCache>,
    request: &http::request::Parts,
    params: &mut Params,
    clients: Clients,
) -> Result<ClientRecord, OAuthError> {
    let (store, audit, limiter) = (&*state.store, &state.audit, &state.limiter);
    let presented = presented(&request.headers, params)?;
    if presented.secret.is_none() && clients == Clients::Confidential {
        return Err(OAuthError::invalid_client(
            "client authentication required: this endpoint serves confidential clients only",
        ));
    }
    // No registered id is longer (admin registration caps it), and long ones would only bloat
    // the rate limiter.
    if !state.plausible_client_id(&presented.client_id) {
        return Err(OAuthError::invalid_client("client authentication failed"));
    }
    let peer = peer(&request.extensions);
    let keys = [
        Some(format!("client:{}", presented.client_id)),
        peer.map(|ip| format!("peer:{ip}")),
    ];
    let now = Instant::now();
    if let Some(wait) = keys
        .iter()
        .flatten()
        .filter_map(|k| limiter.blocked(k, now))
        .max()
    {
        super::audit::client_auth_refused(audit, &presented.client_id, peer, "rate limited");
        return Err(OAuthError::rate_limited(wait));
    }
    if let Some(cached) = cache.and_then(|c| c.0.get(&presented.client_id))
        && secret_matches(&cached, &presented)
    {
        return Ok(ClientRecord::clone(&cached));
    }
    // Not cached, or the secret does not match the cached record (which may predate a
    // rotation): the store decides.
    let client = store.client(&presented.client_id).await?;
    // Hash even for an unknown client so the response time does not tell ids apart.
    let matches = match &client {
        Some(client) => secret_matches(client, &presented),
        None => {
            SecretHash::of("").verify(presented.secret.as_deref().unwrap_or_default());
            false
        }
    };
    if let Some(client) = client.as_ref().filter(|_| !matches)
        && client.is_public()
    {
        // Not a guess at a secret: a public client must send none.
        super::audit::client_auth_refused(
            audit,
            &client.client_id,
            peer,
            "secret from a public client",
        );
        return Err(OAuthError::invalid_client(
            "client authentication failed: a public client sends no secret",
        ));
    }
    if clients == Clients::Confidential && client.as_ref().is_some_and(ClientRecord::is_public) {
        super::audit::client_auth_refused(audit, &presented.client_id, peer, "public client");
        return Err(OAuthError::invalid_client(
            "client authentication required: this endpoint serves confidential clients only",
        ));
    }
    let Some(client) = client.filter(|_| matches) else {
        let keys: Vec<String> = keys.into_iter().flatten().collect();
        limiter.record_failures(store, &keys, now).await;
        super::audit::client_auth_refused(audit, &presented.client_id, peer, "bad credentials");
        return Err(OAuthError::invalid_client("client authentication failed"));
    };
    if client.status != ClientStatus::Approved {
        super::audit::client_auth_refused(audit, &client.client_id, peer, client.status.as_str());
        return Err(OAuthError::invalid_client(format!(
            "client is {}",
            client.status.as_str()
        )));
    }
    if let Some(cache) = cache {
        cache
            .0
            .insert(client.client_id.clone(), Arc::new(client.clone()));
    }
    Ok(client)
}

/// Counts failed authentications per key in fixed windows; a key with `max_failures` in the
/// current window is refused until the window ends.
///
/// The check ([`blocked`](Self::blocked)) is in memory only, so a successful authentication
/// never waits for the store. Failures are counted in memory first — so a store that cannot be
/// reached never lifts the limit — and then, through
/// [`Store::record_auth_failures`], in the store, when it shares counts between instances
/// (PostgreSQL): the instance then takes the shared count and window for the key. Keys other
/// instances blocked arrive with [`sync`](Self::sync), which the server's sync loop runs.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<Entries>,
    /// Where [`sync`](Self::sync) has read the store's blocked keys up to.
    cursor: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Instant, u32)>,
    last_sweep: Option<Instant>,
}

/// Keys kept before expired windows are swept (at most once a second).
const SWEEP_AT: usize = 10_000;
/// Keys tracked at most: about 20 MB. Beyond, new keys are not counted until a sweep frees
/// room (a flood of distinct ids then goes unthrottled rather than exhausting memory).
const MAX_KEYS: usize = 100_000;
/// How long a failed authentication waits for the store to count it; beyond, it is counted in
/// this instance only (and the failure answered).
const SHARED_COUNT_WAIT: Duration = Duration::from_secs(2);

impl RateLimiter {
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            entries: Mutex::new(Entries::default()),
            cursor: AtomicU64::new(0),
        }
    }

    /// How long `key` must wait, if it is over its limit.
    pub(crate) fn blocked(&self, key: &str, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().ok()?;
        let (start, count) = entries.map.get(key)?;
        let end = *start + self.window;
        (*count >= self.max_failures && end > now).then(|| end - now)
    }

    /// Counts a failure of each of `keys` (distinct) here, then in the store if it shares
    /// counts, and adopts the shared counts it answers with. A store that fails or is slow
    /// leaves the local count in force, and is logged.
    pub(crate) async fn record_failures(&self, store: &dyn Store, keys: &[String], now: Instant) {
        for key in keys {
            self.failed(key, now);
        }
        let shared = tokio::time::timeout(
            SHARED_COUNT_WAIT,
            store.record_auth_failures(keys, self.max_failures, self.window),
        )
        .await;
        match shared {
            Ok(Ok(Some(counts))) => {
                let now = Instant::now();
                for failures in &counts {
                    self.adopt(failures, now);
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::warn!(
                target: "tower_oauth2::server",
                %error,
                "failed authentication not counted in the store: counted by this instance only"
            ),
            Err(_) => tracing::warn!(
                target: "tower_oauth2::server",
                "the store took over {SHARED_COUNT_WAIT:?} to count a failed authentication: \
                 counted by this instance only"
            ),
        }
    }

    /// Reads the keys other instances have blocked since the last sync (stores that share
    /// failure counts only), so that they are refused here too.
    pub(crate) async fn sync(&self, store: &dyn Store) -> Result<(), StoreError> {
        let cursor = self.cursor.load(Ordering::Relaxed);
        if let Some((blocks, next)) = store.auth_blocks(cursor, self.max_failures).await? {
            let now = Instant::now();
            for failures in &blocks {
                self.adopt(failures, now);
            }
            self.cursor.store(next, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Takes a key's shared count and window, unless this instance counted more in a window
    /// that is still live (failures it could not record in the store).
    fn adopt(&self, failures: &AuthFailures, now: Instant) {
        let Some(start) = (now + failures.remaining).checked_sub(self.window) else {
            return;
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let window = self.window;
        let local = entries.map.get(&failures.key).copied();
        if local.is_some_and(|(at, count)| at + window > now && count > failures.count) {
            return;
        }
        if local.is_none() && entries.map.len() >= MAX_KEYS {
            return;
        }
        entries
            .map
            .insert(failures.key.clone(), (start, failures.count));
    }

    /// Counts a failure of `key` in this instance.
    pub(crate) fn failed(&self, key: &str, now: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let due = entries
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
        if entries.map.len() >= SWEEP_AT && due {
            let window = self.window;
            entries.map.retain(|_, (start, _)| *start + window > now);
            entries.last_sweep = Some(now);
        }
        if entries.map.len() >= MAX_KEYS && !entries.map.contains_key(key) {
            tracing::warn!(
                target: "tower_oauth2::server",
                "client authentication rate limiter is full; not counting a new key"
            );
            return;
        }
        let window = self.window;
        let entry = entries.map.entry(key.to_owned()).or_insert((now, 0));
        if entry.0 + window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_max_failures_until_the_window_ends() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.failed("k", t0);
        }
        assert_eq!(limiter.blocked("k", t0), None);
        limiter.failed("k", t0);
        assert_eq!(limiter.blocked("k", t0), Some(Duration::from_secs(60)));
        assert_eq!(limiter.blocked("other", t0), None);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(limiter.blocked("k", later), None);
        limiter.failed("k", later);
        assert_eq!(limiter.blocked("k", later), None, "a new window starts");
    }

    use crate::server::store::{
        CodeRecord, RevokedAccess, SigningKeyRecord, StoreFuture, TokenHash, TokenRecord,
    };

    /// A store that shares failure counts: it answers every failure with `count` (and
    /// `remaining`), lists `blocks` as blocked, or — `count` `None` — is unreachable. Every
    /// other operation fails.
    struct Shared {
        count: Option<u32>,
        remaining: Duration,
        blocks: Vec<AuthFailures>,
    }

    fn down<T: Send + 'static>() -> StoreFuture<'static, T> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "down".into(),
        ))))
    }

    impl Store for Shared {
        fn insert_client(&self, _: ClientRecord) -> StoreFuture<'_, ()> {
            down()
        }
        fn client<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<ClientRecord>> {
            down()
        }
        fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
            down()
        }
        fn update_client(&self, _: ClientRecord) -> StoreFuture<'_, bool> {
            down()
        }
        fn delete_client<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
            down()
        }
        fn insert_code(&self, _: CodeRecord) -> StoreFuture<'_, ()> {
            down()
        }
        fn take_code<'a>(
            &'a self,
            _: &'a TokenHash,
            _: &'a str,
        ) -> StoreFuture<'a, Option<(CodeRecord, bool)>> {
            down()
        }
        fn insert_tokens(&self, _: Vec<TokenRecord>) -> StoreFuture<'_, bool> {
            down()
        }
        fn find_refresh<'a>(&'a self, _: &'a TokenHash) -> StoreFuture<'a, Option<TokenRecord>> {
            down()
        }
        fn rotate_refresh<'a>(&'a self, _: &'a str, _: Vec<TokenRecord>) -> StoreFuture<'a, bool> {
            down()
        }
        fn token<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
            down()
        }
        fn revoke_token<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
            down()
        }
        fn revoke_family<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
            down()
        }
        fn revoke_client_tokens<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
            down()
        }
        fn client_tokens<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, Vec<TokenRecord>> {
            down()
        }
        fn revoked_access_tokens(&self, _: u64) -> StoreFuture<'_, Vec<TokenRecord>> {
            down()
        }
        fn revocations_since(&self, _: u64) -> StoreFuture<'_, (Vec<RevokedAccess>, u64)> {
            down()
        }
        fn purge_expired(&self, _: u64) -> StoreFuture<'_, u64> {
            down()
        }
        fn signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>> {
            down()
        }
        fn init_signing_key(&self, _: SigningKeyRecord) -> StoreFuture<'_, SigningKeyRecord> {
            down()
        }
        fn rotate_signing_key(&self, _: SigningKeyRecord, _: Option<u64>) -> StoreFuture<'_, ()> {
            down()
        }
        fn purge_signing_keys(&self, _: u64) -> StoreFuture<'_, u64> {
            down()
        }
        fn record_auth_failures<'a>(
            &'a self,
            keys: &'a [String],
            _: u32,
            _: Duration,
        ) -> StoreFuture<'a, Option<Vec<AuthFailures>>> {
            let Some(count) = self.count else {
                return down();
            };
            let counts = keys
                .iter()
                .map(|key| AuthFailures {
                    key: key.clone(),
                    count,
                    remaining: self.remaining,
                })
                .collect();
            Box::pin(std::future::ready(Ok(Some(counts))))
        }
        fn auth_blocks(
            &self,
            cursor: u64,
            _: u32,
        ) -> StoreFuture<'_, Option<(Vec<AuthFailures>, u64)>> {
            Box::pin(std::future::ready(Ok(Some((
                self.blocks.clone(),
                cursor + 1,
            )))))
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_never_lifts_the_limit() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let store = Shared {
            count: None,
            remaining: Duration::ZERO,
            blocks: Vec::new(),
        };
        let keys = ["client:c".to_owned(), "peer:192.0.2.1".to_owned()];
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.record_failures(&store, &keys, t0).await;
        }
        assert_eq!(limiter.blocked("client:c", t0), None);
        limiter.record_failures(&store, &keys, t0).await;
        for key in &keys {
            assert!(
                limiter.blocked(key, t0).is_some(),
                "{key}: counted in process"
            );
        }
    }

    #[tokio::test]
    async fn shared_counts_and_blocks_are_adopted() {
        let window = Duration::from_secs(60);
        let limiter = RateLimiter::new(3, window);
        // Other instances counted 2 before this one's first failure: the key is blocked here
        // after one local failure, until the shared window (30 s left) ends.
        let store = Shared {
            count: Some(3),
            remaining: Duration::from_secs(30),
            blocks: Vec::new(),
        };
        let t0 = Instant::now();
        limiter
            .record_failures(&store, &["client:c".to_owned()], t0)
            .await;
        let wait = limiter
            .blocked("client:c", Instant::now())
            .expect("blocked by the shared count");
        assert!(
            wait <= Duration::from_secs(30) && wait > Duration::from_secs(29),
            "{wait:?}"
        );

        // A lower shared count does not lower what this instance counted in a live window
        // (failures it could not record while the store was unreachable).
        for _ in 0..3 {
            limiter.failed("client:d", Instant::now());
        }
        let store = Shared {
            count: Some(1),
            remaining: window,
            blocks: Vec::new(),
        };
        limiter
            .record_failures(&store, &["client:d".to_owned()], Instant::now())
            .await;
        assert!(limiter.blocked("client:d", Instant::now()).is_some());

        // A key another instance blocked arrives with the sync, with no failure seen here.
        let store = Shared {
            count: Some(1),
            remaining: window,
            blocks: vec![AuthFailures {
                key: "client:e".into(),
                count: 5,
                remaining: Duration::from_secs(10),
            }],
        };
        assert_eq!(limiter.blocked("client:e", Instant::now()), None);
        limiter.sync(&store).await.expect("sync");
        let wait = limiter
            .blocked("client:e", Instant::now())
            .expect("blocked by the sync");
        assert!(wait <= Duration::from_secs(10), "{wait:?}");
        assert_eq!(limiter.cursor.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn credentials_from_basic_or_post_but_not_both() {
        let mut headers = HeaderMap::new();
        let basic = STANDARD.encode("my%20client:s%3Acret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().expect("header"),
        );
        let mut params = Params::parse(b"grant_type=x").expect("params");
        let p = presented(&headers, &mut params).expect("basic");
        assert_eq!(
            (p.client_id.as_str(), p.secret.as_deref()),
            ("my client", Some("s:cret"))
        );

        let mut params = Params::parse(b"client_secret=x").expect("params");
        assert_eq!(
            presented(&headers, &mut params).err().map(|e| e.code),
            Some("invalid_request")
        );

        let mut params = Params::parse(b"client_id=a&client_secret=b").expect("params");
        let p = presented(&HeaderMap::new(), &mut params).expect("post");
        assert_eq!(
            (p.client_id.as_str(), p.secret.as_deref()),
            ("a", Some("b"))
        );

        // A client id alone, or with an empty secret (Basic `a:` included): no secret.
        for form in [&b"client_id=a"[..], b"client_id=a&client_secret="] {
            let mut params = Params::parse(form).expect("params");
            let p = presented(&HeaderMap::new(), &mut params).expect("public");
            assert_eq!((p.client_id.as_str(), p.secret), ("a", None));
        }
        let mut headers = HeaderMap::new();
        let basic = STANDARD.encode("a:");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().expect("header"),
        );
        let mut params = Params::parse(b"grant_type=x").expect("params");
        let p = presented(&headers, &mut params).expect("basic without secret");
        assert_eq!((p.client_id.as_str(), p.secret), ("a", None));

        let mut params = Params::parse(b"grant_type=x").expect("params");
        assert_eq!(
            presented(&HeaderMap::new(), &mut params)
                .err()
                .map(|e| e.code),
            Some("invalid_client")
        );
    }
}
