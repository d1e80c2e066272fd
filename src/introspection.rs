//! Opaque access tokens, validated through the issuer's introspection endpoint (RFC 7662,
//! feature `introspection`).
//!
//! An issuer configured with [`Introspection`] has its tokens checked by asking its
//! introspection endpoint, authenticated as a client of that issuer. A token that is a JWS of an
//! issuer with keys is still verified locally; any other token (an opaque string, or a JWT of an
//! issuer without keys) is introspected. The answer must say `active: true`, and its `iss` (when
//! present), `aud`, `exp`, `nbf` and `scope` get the same checks as a JWT's claims, so the
//! result is the same [`VerifiedToken`]: extractors,
//! [`RequireScope`](crate::RequireScope) and audit events work unchanged. An answer about a
//! refresh token (`token_type` `refresh_token` or its URN, or `typ` `Refresh` or `Offline`) is
//! refused ([`AuthErrorKind::WrongType`]): RFC 7662 endpoints may introspect refresh tokens
//! too, and one must not pass for an access token.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_oauth2::Authenticator;
//! use tower_oauth2::introspection::Introspection;
//!
//! # fn main() -> Result<(), tower_oauth2::ConfigError> {
//! let auth = Authenticator::builder()
//!     .issuer("https://idp.example.com")
//!     .audience("orders-api")
//!     // The endpoint comes from the issuer's metadata (`introspection_endpoint`) unless set.
//!     .introspection(
//!         Introspection::new("orders-api", std::env::var("INTROSPECTION_SECRET").unwrap_or_default())
//!             .max_cache(Duration::from_secs(60)),
//!     )
//!     .build()?;
//! # let _ = auth; Ok(()) }
//! ```
//!
//! # Cost, failures and revocation
//!
//! - **Cache.** An answer is kept under the SHA-256 of the token (never the token): an active
//!   token until its `exp`, at most [`max_cache`](Introspection::max_cache) (5 minutes by
//!   default); an inactive or refused one for [`negative_cache`](Introspection::negative_cache)
//!   (10 s). With the cache warm a request never waits on the network.
//! - **One call per token.** Concurrent requests with the same uncached token wait for one
//!   introspection call and share its answer, as requests naming an unknown `kid` share one
//!   JWKS refetch. At most [`max_concurrency`](Introspection::max_concurrency) calls are in
//!   flight; each has a [`timeout`](Introspection::timeout) and a response-size bound.
//! - **When the endpoint is down** (an error, a timeout, a status other than 200, or an answer
//!   that is not a JSON object with a boolean `active` and well-typed claims): a cached token
//!   keeps working; an
//!   uncached one is answered **503 with `Retry-After`**, not 401, since the token may well be
//!   fine ([`AuthErrorKind::IntrospectionUnavailable`];
//!   gRPC status 14 `UNAVAILABLE`). The failure is logged with its reason under the target
//!   `tower_oauth2::audit`; failures are never cached. A 400 `unsupported_token_type` (RFC 7009
//!   §2.2.1) is the one error taken as an answer: the endpoint does not introspect tokens of
//!   this type (oidc-provider answers so for JWTs), so the token is refused (401) and cached as
//!   refused.
//! - **Revocation takes effect when the cache entry ends**: a token revoked at the issuer is
//!   accepted here for up to `max_cache` more. Lower `max_cache` for faster revocation at the
//!   price of more calls; `Duration::ZERO` asks on every request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::{AuthError, AuthErrorKind, ConfigError};
use crate::keys::remote::{check_url, discover_endpoint, read_limited};
use crate::token::VerifiedToken;
use crate::validate::{self, policy::Trusted};

/// How an [`Issuer`](crate::Issuer) introspects its tokens: the client this API is at the
/// issuer, the endpoint, and the cache and limits. See the [module](self) documentation.
#[must_use]
#[derive(Clone)]
pub struct Introspection {
    pub(crate) endpoint: Option<String>,
    client_id: String,
    client_secret: String,
    secret_post: bool,
    token_type_hint: Option<String>,
    max_cache: Duration,
    negative_cache: Duration,
    capacity: u64,
    timeout: Duration,
    max_concurrency: usize,
    max_response_bytes: usize,
    retry_after: Duration,
}

impl Introspection {
    /// Introspects as the client `client_id` with `client_secret`, sent with HTTP Basic
    /// authentication (`client_secret_basic`, RFC 6749 §2.3.1). The secret is never logged or
    /// printed by `Debug`.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            endpoint: None,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            secret_post: false,
            token_type_hint: None,
            max_cache: Duration::from_secs(5 * 60),
            negative_cache: Duration::from_secs(10),
            capacity: 10_000,
            timeout: Duration::from_secs(5),
            max_concurrency: 16,
            max_response_bytes: 64 * 1024,
            retry_after: Duration::from_secs(5),
        }
    }

    /// The introspection endpoint. Without it, it is discovered from the issuer's metadata
    /// (`introspection_endpoint`) at the first introspection. https, or http on loopback.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Sends the client credentials in the form body (`client_secret_post`) instead of HTTP
    /// Basic authentication.
    pub fn client_secret_post(mut self) -> Self {
        self.secret_post = true;
        self
    }

    /// Sends `token_type_hint` (RFC 7662 §2.1), e.g. `"access_token"`. None by default.
    pub fn token_type_hint(mut self, hint: impl Into<String>) -> Self {
        self.token_type_hint = Some(hint.into());
        self
    }

    /// How long an active token's answer is kept at most (it is never kept past its `exp`).
    /// 5 minutes by default; a revocation at the issuer takes effect here within this time.
    /// `Duration::ZERO` introspects on every request.
    pub fn max_cache(mut self, max: Duration) -> Self {
        self.max_cache = max;
        self
    }

    /// How long an inactive or refused token's answer is kept: 10 s by default.
    pub fn negative_cache(mut self, ttl: Duration) -> Self {
        self.negative_cache = ttl;
        self
    }

    /// How many answers the cache holds at most: 10 000 by default.
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// How long one introspection call may take, including the wait for a free slot
    /// ([`max_concurrency`](Self::max_concurrency)): 5 s by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many introspection calls may be in flight at once: 16 by default.
    pub fn max_concurrency(mut self, calls: usize) -> Self {
        self.max_concurrency = calls;
        self
    }

    /// The largest introspection answer read, in bytes: 64 KiB by default.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The `Retry-After` of the 503 sent when the endpoint cannot answer: 5 s by default
    /// (rounded up to whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Checks the settings and starts the introspector of issuer `index`.
    pub(crate) fn build(
        self,
        issuer: &str,
        index: usize,
        client: reqwest::Client,
    ) -> Result<Introspector, ConfigError> {
        let context = |e: &str| ConfigError::new(format!("issuer {issuer}: introspection: {e}"));
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(context("the client id and secret must not be empty"));
        }
        if let Some(url) = &self.endpoint {
            check_url(url).map_err(|e| context(&e.to_string()))?;
        } else {
            check_url(issuer).map_err(|e| {
                context(&format!(
                    "discovering the endpoint needs an https issuer URL: {e}"
                ))
            })?;
        }
        if self.timeout.is_zero() || self.max_concurrency == 0 {
            return Err(context(
                "timeout and max_concurrency must be more than zero",
            ));
        }
        if self.max_response_bytes < 64 {
            return Err(context("max_response_bytes below 64 refuses every answer"));
        }
        if self.capacity == 0 && !(self.max_cache.is_zero() && self.negative_cache.is_zero()) {
            return Err(context(
                "cache_capacity 0 needs max_cache and negative_cache of zero",
            ));
        }
        let retry_after = u32::try_from(self.retry_after.as_secs_f64().ceil() as u64)
            .unwrap_or(u32::MAX)
            .max(1);
        let endpoint = OnceCell::new_with(self.endpoint.clone());
        Ok(Introspector {
            issuer: issuer.to_owned(),
            label: Arc::from(issuer),
            index,
            client,
            endpoint,
            cache: moka::sync::Cache::builder()
                .max_capacity(self.capacity)
                .expire_after(Ttl)
                .build(),
            in_flight: Mutex::default(),
            permits: Semaphore::new(self.max_concurrency),
            retry_after,
            config: self,
        })
    }
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("client_secret_post", &self.secret_post)
            .field("max_cache", &self.max_cache)
            .field("negative_cache", &self.negative_cache)
            .finish_non_exhaustive()
    }
}

/// An answer and how long to keep it.
#[derive(Clone)]
struct Cached {
    outcome: Result<VerifiedToken, AuthError>,
    ttl: Duration,
}

/// Each cache entry lives for its own time.
struct Ttl;

impl moka::Expiry<[u8; 32], Cached> for Ttl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Cached,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// One call in flight, shared by every request with the same token.
type Flight = Arc<OnceCell<Result<VerifiedToken, AuthError>>>;

/// One issuer's introspection at run time: the endpoint, the answer cache, the calls in flight.
pub(crate) struct Introspector {
    issuer: String,
    /// The issuer, for metrics.
    label: Arc<str>,
    /// The issuer's index among the authenticator's trusted issuers.
    index: usize,
    client: reqwest::Client,
    /// Configured, or discovered at the first call (a failed discovery is tried again).
    endpoint: OnceCell<String>,
    cache: moka::sync::Cache<[u8; 32], Cached>,
    in_flight: Mutex<HashMap<[u8; 32], Flight>>,
    permits: Semaphore,
    /// Seconds, for the 503's `Retry-After`.
    retry_after: u32,
    config: Introspection,
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.issuer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// The issuer's index among the trusted issuers.
    pub(crate) fn issuer_index(&self) -> usize {
        self.index
    }

    /// Whether a token the local verifier refused with `error` is this issuer's to introspect:
    /// it is not a JWS (`Malformed`), or its `iss` names no issuer with keys (`WrongIssuer`).
    pub(crate) fn takes(&self, error: &AuthError) -> bool {
        matches!(
            error.kind(),
            AuthErrorKind::Malformed | AuthErrorKind::WrongIssuer
        )
    }

    /// The cached answer for the token with SHA-256 `digest`, if any.
    pub(crate) fn cached(&self, digest: &[u8; 32]) -> Option<Result<VerifiedToken, AuthError>> {
        self.cache.get(digest).map(|cached| cached.outcome)
    }

    /// How many answers the cache holds.
    pub(crate) fn cached_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// How many tokens have a call in flight (or waiting for a slot).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The answer for `token`: from the cache, or from one introspection call shared by every
    /// concurrent request with the same token.
    pub(crate) async fn resolve(
        &self,
        token: &str,
        digest: [u8; 32],
        issuers: &[Trusted],
    ) -> Result<VerifiedToken, AuthError> {
        if let Some(outcome) = self.cached(&digest) {
            return outcome;
        }
        let flight = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(in_flight.entry(digest).or_default())
        };
        let outcome = flight
            .get_or_init(|| async {
                // Leaves the map when this call ends, or is dropped with a request that went
                // away: the map holds only calls some request still waits for.
                let _leave = Leave {
                    in_flight: &self.in_flight,
                    digest,
                    flight: &flight,
                };
                let outcome = self.call(token, issuers).await;
                let (ttl, label) = match &outcome {
                    // An endpoint failure is never kept: the next request asks again.
                    Err(e) if e.kind() == AuthErrorKind::IntrospectionUnavailable => {
                        (None, "error")
                    }
                    Err(_) => (Some(self.config.negative_cache), "inactive"),
                    Ok(token) => (Some(self.positive_ttl(token)), "active"),
                };
                crate::telemetry::introspection_call(&self.label, label);
                if let Some(ttl) = ttl.filter(|ttl| !ttl.is_zero()) {
                    let outcome = outcome.clone();
                    self.cache.insert(digest, Cached { outcome, ttl });
                    crate::telemetry::cached_tokens("introspection", self.cached_count());
                }
                // Later requests find the cache (or call again); waiters hold the flight.
                outcome
            })
            .await;
        outcome.clone()
    }

    /// Until the token's `exp`, at most `max_cache`.
    fn positive_ttl(&self, token: &VerifiedToken) -> Duration {
        let max = self.config.max_cache;
        match token.expires_at() {
            Some(exp) => Duration::from_secs(exp.saturating_sub(crate::time::now())).min(max),
            None => max,
        }
    }

    /// One introspection call and the checks of its answer.
    async fn call(&self, token: &str, issuers: &[Trusted]) -> Result<VerifiedToken, AuthError> {
        let started = Instant::now();
        let permit = tokio::time::timeout(self.config.timeout, self.permits.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            return Err(self.unavailable("too many introspection calls in flight"));
        };
        // Discovery (at the first call) and the call itself, within what is left of the time.
        let remaining = self.config.timeout.saturating_sub(started.elapsed());
        let work = async {
            let endpoint = self.endpoint().await?;
            self.post(&endpoint, token).await
        };
        let body = match tokio::time::timeout(remaining, work).await {
            Ok(result) => result?,
            Err(_) => return Err(self.unavailable("the introspection call timed out")),
        };
        self.check_answer(&body, issuers)
    }

    /// The endpoint: configured, or discovered once from the issuer's metadata.
    async fn endpoint(&self) -> Result<String, AuthError> {
        let found = self
            .endpoint
            .get_or_try_init(|| async {
                let found = discover_endpoint(
                    &self.client,
                    &self.issuer,
                    "introspection_endpoint",
                    self.config.max_response_bytes.max(512 * 1024),
                )
                .await;
                found.map_err(|e| self.unavailable(&e.to_string()))
            })
            .await?;
        Ok(found.clone())
    }

    /// POSTs the token (RFC 7662 §2.1) and reads the answer's body.
    async fn post(&self, endpoint: &str, token: &str) -> Result<Vec<u8>, AuthError> {
        let config = &self.config;
        // The serializer is not `Send`: the body is finished before the first await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token);
            if let Some(hint) = &config.token_type_hint {
                form.append_pair("token_type_hint", hint);
            }
            if config.secret_post {
                form.append_pair("client_id", &config.client_id);
                form.append_pair("client_secret", &config.client_secret);
            }
            form.finish()
        };
        let mut request = self
            .client
            .post(endpoint)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if !config.secret_post {
            request = request.header(
                AUTHORIZATION,
                basic(&config.client_id, &config.client_secret),
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.unavailable(&format!("request: {e}")))?;
        let status = response.status();
        let body = read_limited(response, config.max_response_bytes).await;
        if status == http::StatusCode::BAD_REQUEST
            && let Ok(body) = &body
            && let Ok(error) = serde_json::from_slice::<OAuthError>(body)
            && error.error == "unsupported_token_type"
        {
            // The endpoint does not introspect tokens of this type (RFC 7009 §2.2.1's code;
            // oidc-provider answers so for JWTs): an answer about the token, not a failure to
            // answer.
            return Err(AuthError::new(
                AuthErrorKind::Inactive,
                "the introspection endpoint refused this token (unsupported_token_type)",
            )
            .with_claimed(None, Some(&self.issuer)));
        }
        if status != http::StatusCode::OK {
            return Err(self.unavailable(&format!("HTTP status {status}")));
        }
        body.map_err(|e| self.unavailable(&e.to_string()))
    }

    /// Checks an answer: `active` must be `true`, `iss` (when present) this issuer's; the rest
    /// are a JWT's claims checks.
    fn check_answer(&self, body: &[u8], issuers: &[Trusted]) -> Result<VerifiedToken, AuthError> {
        let Ok(mut answer) = serde_json::from_slice::<Map<String, Value>>(body) else {
            return Err(self.unavailable("the answer is not a JSON object"));
        };
        match answer.remove("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Err(AuthError::new(
                    AuthErrorKind::Inactive,
                    "token is not active (introspection)",
                )
                .with_claimed(None, Some(&self.issuer)));
            }
            _ => return Err(self.unavailable("the answer has no boolean `active`")),
        }
        // A member that is null is one the endpoint has no value for.
        answer.retain(|_, value| !value.is_null());
        match answer.get("iss") {
            None => {
                answer.insert("iss".into(), Value::String(self.issuer.clone()));
            }
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(_) => {
                return Err(AuthError::new(
                    AuthErrorKind::WrongIssuer,
                    "the introspection answer names another issuer (iss)",
                ));
            }
        }
        if describes_refresh_token(&answer) {
            return Err(AuthError::new(
                AuthErrorKind::WrongType,
                "the introspection answer is for a refresh token, not an access token",
            )
            .with_claimed(None, Some(&self.issuer)));
        }
        let json = serde_json::to_vec(&answer)
            .map_err(|_| self.unavailable("the answer cannot be re-encoded"))?;
        validate::introspected(json, issuers, self.index, crate::time::now()).map_err(|e| {
            // Claims of the wrong type (`"exp": "soon"`) are garbage from the endpoint, not a
            // verdict on the token.
            if e.kind() == AuthErrorKind::Malformed {
                self.unavailable(&format!("the answer's claims: {}", e.description()))
            } else {
                e
            }
        })
    }

    /// The 503 error for an endpoint that could not answer, logged with its reason (never the
    /// token).
    fn unavailable(&self, reason: &str) -> AuthError {
        tracing::warn!(
            target: "tower_oauth2::audit",
            outcome = "introspection_failed",
            iss = %self.issuer,
            reason,
            "the introspection endpoint could not answer"
        );
        AuthError::introspection_unavailable(
            "the token's introspection endpoint is not available; try again later",
            self.retry_after,
        )
        .with_claimed(None, Some(&self.issuer))
    }
}

/// Whether an active answer is about a refresh token. RFC 7662 lets a client introspect refresh
/// tokens too, and an endpoint may answer `active: true` for one the API's client may see; it
/// must not then work as an access token. Refresh tokens are named by `token_type`
/// `refresh_token` (this crate's server), its RFC 8693 URN, or Keycloak's `typ` (`Refresh`, and
/// `Offline` for its offline refresh tokens).
/// (oidc-provider leaves `token_type` out for a refresh token; its answer has no `aud`, so the
/// audience check refuses it.)
fn describes_refresh_token(answer: &Map<String, Value>) -> bool {
    let token_type = answer.get("token_type").and_then(Value::as_str);
    token_type.is_some_and(|t| {
        t.eq_ignore_ascii_case("refresh_token")
            || t == "urn:ietf:params:oauth:token-type:refresh_token"
    }) || answer
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("refresh") || t.eq_ignore_ascii_case("offline"))
}

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(serde::Deserialize)]
struct OAuthError {
    error: String,
}

/// Takes a call out of the map of calls in flight when dropped: when it finished, or when the
/// request that ran it went away (another waiting request then runs it again, under the same
/// flight). Without it, tokens whose requests all went away would stay in the map.
struct Leave<'a> {
    in_flight: &'a Mutex<HashMap<[u8; 32], Flight>>,
    digest: [u8; 32],
    flight: &'a Flight,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(&self.digest)
            .is_some_and(|f| Arc::ptr_eq(f, self.flight))
        {
            in_flight.remove(&self.digest);
        }
    }
}

/// `Authorization: Basic` with the client id and secret form-encoded first (RFC 6749 §2.3.1).
fn basic(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // RFC 6749 §2.3.1: `application/x-www-form-urlencoded` before Base64.
        assert_eq!(basic("a b", "p:w"), "Basic YStiOnAlM0F3");
    }

    #[tokio::test]
    async fn requests_that_go_away_leave_no_call_behind() {
        // An endpoint that accepts and never answers.
        let bound = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .and_then(|l| l.local_addr().map(|a| (l, a)));
        assert!(bound.is_ok(), "a loopback listener: {bound:?}");
        let Ok((listener, address)) = bound else {
            return;
        };
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let introspector = Introspection::new("rs", "secret")
            .endpoint(format!("http://{address}/introspect"))
            .build("https://issuer.test", 0, reqwest::Client::new());
        assert!(introspector.is_ok(), "{introspector:?}");
        let Ok(introspector) = introspector else {
            return;
        };
        for i in 0..20u8 {
            let token = format!("token-{i}");
            let call = introspector.resolve(&token, [i; 32], &[]);
            let cut = tokio::time::timeout(Duration::from_millis(20), call).await;
            assert!(cut.is_err(), "the endpoint never answers");
        }
        assert_eq!(introspector.in_flight(), 0);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let config = Introspection::new("rs", "s3cr3t-value");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
