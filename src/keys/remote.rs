//! A remote JWKS (feature `remote`): fetched over HTTPS, cached, refreshed in the background
//! before it goes stale, refetched (single-flight, with a cooldown) when a token names an
//! unknown `kid`, and kept when a fetch fails (stale-if-error). Its URL is configured, or
//! discovered from the issuer's metadata (OpenID Connect Discovery, RFC 8414).
//!
//! Readers take an `Arc<KeySet>` snapshot from an [`ArcSwap`]: they never wait on a lock or on
//! the network when their key is cached, and a new set replaces the old one in one store.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::header::{ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use tokio::sync::{oneshot, watch};

use super::KeySet;
use crate::error::ConfigError;

/// Limits and timings of a remote JWKS. Every field has a default; see the builder's setters.
#[derive(Debug, Clone)]
pub(crate) struct RemoteConfig {
    pub(crate) min_refresh: Duration,
    pub(crate) max_refresh: Duration,
    pub(crate) default_refresh: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
    pub(crate) max_keys: usize,
    pub(crate) max_backoff: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(5 * 60),
            max_refresh: Duration::from_secs(24 * 60 * 60),
            default_refresh: Duration::from_secs(60 * 60),
            cooldown: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            max_bytes: 512 * 1024,
            max_keys: 100,
            max_backoff: Duration::from_secs(5 * 60),
        }
    }
}

/// Where the JWKS is.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// A configured URL.
    Url(String),
    /// Named by the issuer's metadata: `{issuer}/.well-known/openid-configuration`, else
    /// `/.well-known/oauth-authorization-server` (RFC 8414 §3); the document's `issuer` must
    /// equal this one exactly.
    Discover { issuer: String },
}

/// What a remote key source has done so far, for health endpoints and metrics.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct KeySourceState {
    /// The JWKS URL, once known.
    pub url: String,
    /// The issuer whose metadata names the JWKS URL, when it is discovered.
    pub discovered_from: Option<String>,
    /// When the last fetch that produced or confirmed keys finished.
    pub last_success: Option<SystemTime>,
    /// The last fetch error, cleared by the next success.
    pub last_error: Option<String>,
    /// The `kid`s of the keys in use (empty strings for keys without one).
    pub key_ids: Vec<String>,
    /// Fetches attempted so far.
    pub fetch_count: u64,
    /// How long the last good answer may be used (its `Cache-Control: max-age`, clamped).
    pub refresh_interval: Option<Duration>,
}

/// A failed JWKS fetch or discovery. The previous keys, if any, stay in use.
#[derive(Debug, Clone)]
pub struct KeyFetchError(pub(crate) String);

impl fmt::Display for KeyFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyFetchError {}

struct Mutable {
    /// The JWKS URL in use; `None` until discovery finds it, and again after it fails.
    url: Option<String>,
    /// Counts finished fetches, so that callers who waited on another's fetch share its result.
    generation: u64,
    etag: Option<String>,
    state: KeySourceState,
    /// When the last fetch for an unknown `kid` started.
    last_kid_fetch: Option<Instant>,
    /// That fetch, while it runs: later callers wait for it instead of fetching again.
    kid_fetch: Option<watch::Receiver<bool>>,
}

pub(crate) struct RemoteJwks {
    location: Location,
    /// The issuer whose keys these are, for metrics.
    issuer: Arc<str>,
    client: reqwest::Client,
    config: RemoteConfig,
    keys: ArcSwap<KeySet>,
    mutable: Mutex<Mutable>,
    /// Held while a fetch is in flight: concurrent callers share it.
    fetch: tokio::sync::Mutex<()>,
    /// Dropped with the source, which stops the background refresh.
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("location", &self.location)
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Creates the source with no keys and starts its background refresh, whose first fetch
    /// runs at once. Needs a tokio runtime.
    pub(crate) fn start(
        location: Location,
        issuer: &str,
        client: reqwest::Client,
        config: RemoteConfig,
    ) -> Result<Arc<Self>, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "a remote JWKS needs a tokio runtime: build the authenticator inside one",
            )
        })?;
        let (url, discovered_from) = match &location {
            Location::Url(url) => (Some(url.clone()), None),
            Location::Discover { issuer } => (None, Some(issuer.clone())),
        };
        let (stop, stopped) = oneshot::channel();
        let source = Arc::new(Self {
            mutable: Mutex::new(Mutable {
                state: KeySourceState {
                    url: url.clone().unwrap_or_default(),
                    discovered_from,
                    ..KeySourceState::default()
                },
                url,
                generation: 0,
                etag: None,
                last_kid_fetch: None,
                kid_fetch: None,
            }),
            location,
            issuer: Arc::from(issuer),
            client,
            config,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetch: tokio::sync::Mutex::new(()),
            _stop: stop,
        });
        runtime.spawn(refresh_loop(Arc::downgrade(&source), stopped));
        Ok(source)
    }

    /// The keys in use now: a guard, cheaper than cloning the `Arc` on every request.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    pub(crate) fn state(&self) -> KeySourceState {
        self.lock().state.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mutable> {
        self.mutable.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a token naming an unknown `kid` may lead to a fetch: one is running (the caller
    /// may wait for it), or none started within the cooldown.
    pub(crate) fn may_refetch(&self) -> bool {
        let now = Instant::now();
        let mutable = self.lock();
        mutable.kid_fetch.is_some()
            || mutable
                .last_kid_fetch
                .is_none_or(|t| now.duration_since(t) >= self.config.cooldown)
    }

    /// Fetches again because a token named an unknown `kid`, and waits for the outcome.
    /// Callers that arrive while such a fetch runs share it; after it, nothing is fetched until
    /// the cooldown has passed. The fetch runs in its own task, so a caller that goes away (a
    /// cancelled request) cannot abort it and leave the cooldown spent for nothing.
    pub(crate) async fn refetch_for_unknown_kid(self: &Arc<Self>) {
        let mut done = {
            let mut mutable = self.lock();
            match &mutable.kid_fetch {
                Some(running) => running.clone(),
                None => {
                    let now = Instant::now();
                    if mutable
                        .last_kid_fetch
                        .is_some_and(|t| now.duration_since(t) < self.config.cooldown)
                    {
                        tracing::debug!("unknown kid within the JWKS cooldown; not fetching");
                        return;
                    }
                    mutable.last_kid_fetch = Some(now);
                    let (finished, done) = watch::channel(false);
                    mutable.kid_fetch = Some(done.clone());
                    let source = Arc::clone(self);
                    tokio::spawn(async move {
                        tracing::info!("a token names an unknown kid; fetching the JWKS again");
                        let _ = source.refresh().await;
                        source.lock().kid_fetch = None;
                        let _ = finished.send(true);
                    });
                    done
                }
            }
        };
        // Ends when the fetch task reports, or drops its sender.
        let _ = done.wait_for(|finished| *finished).await;
    }

    /// Fetches now and installs what it gets. Single-flight: a caller that finds a fetch in
    /// flight waits for it and shares its result instead of fetching again.
    pub(crate) async fn refresh(&self) -> Result<Duration, KeyFetchError> {
        let generation = self.lock().generation;
        let _guard = self.fetch.lock().await;
        {
            let mutable = self.lock();
            if mutable.generation != generation {
                return match (&mutable.state.last_error, mutable.state.refresh_interval) {
                    (None, Some(ttl)) => Ok(ttl),
                    (Some(error), _) => Err(KeyFetchError(error.clone())),
                    (None, None) => Err(KeyFetchError("no fetch has succeeded yet".into())),
                };
            }
        }
        self.fetch_now().await
    }

    /// One fetch, discovery first when the URL is not known; the caller holds the fetch lock.
    /// Returns how long the answer may be used.
    async fn fetch_now(&self) -> Result<Duration, KeyFetchError> {
        let (url, etag) = {
            let mutable = self.lock();
            (mutable.url.clone(), mutable.etag.clone())
        };
        let fetch = async {
            let url = match url {
                Some(url) => url,
                None => self.discover().await?,
            };
            let fetched = self.get(&url, etag.as_deref()).await;
            Ok::<_, KeyFetchError>((url, fetched))
        };
        let timeout = self.config.timeout;
        let outcome = match tokio::time::timeout(timeout, fetch).await {
            Ok(Ok((url, fetched))) => (Some(url), fetched),
            Ok(Err(error)) => (None, Err(error)),
            Err(_) => (
                None,
                Err(KeyFetchError(format!("no answer within {timeout:?}"))),
            ),
        };
        let mut mutable = self.lock();
        mutable.generation += 1;
        mutable.state.fetch_count += 1;
        if let Some(url) = &outcome.0 {
            mutable.state.url.clone_from(url);
            mutable.url = Some(url.clone());
        }
        match outcome.1 {
            Ok(Fetched { keys, etag, ttl }) => {
                let (outcome, count) = match &keys {
                    Some(keys) => ("ok", keys.len()),
                    None => ("not_modified", self.keys.load().len()),
                };
                crate::telemetry::jwks_fetch(&self.issuer, outcome, Some(count));
                if let Some(keys) = keys {
                    mutable.state.key_ids = keys
                        .keys()
                        .iter()
                        .map(|k| k.kid().unwrap_or("").to_owned())
                        .collect();
                    self.keys.store(Arc::new(keys));
                    mutable.etag = etag;
                }
                mutable.state.last_success = Some(SystemTime::now());
                mutable.state.last_error = None;
                mutable.state.refresh_interval = Some(ttl);
                tracing::info!(
                    url = %mutable.state.url,
                    keys = ?mutable.state.key_ids,
                    ?ttl,
                    "JWKS fetched"
                );
                Ok(ttl)
            }
            Err(error) => {
                crate::telemetry::jwks_fetch(&self.issuer, "error", None);
                tracing::warn!(
                    url = %mutable.state.url,
                    discovered_from = mutable.state.discovered_from.as_deref(),
                    keys_kept = mutable.state.key_ids.len(),
                    %error,
                    "JWKS fetch failed; the keys already held stay in use"
                );
                if let Location::Discover { .. } = self.location {
                    // The JWKS may have moved: ask the metadata again next time.
                    mutable.url = None;
                    mutable.etag = None;
                }
                mutable.state.last_error = Some(error.0.clone());
                Err(error)
            }
        }
    }

    /// Finds the JWKS URL in the issuer's metadata.
    async fn discover(&self) -> Result<String, KeyFetchError> {
        let Location::Discover { issuer } = &self.location else {
            return Err(KeyFetchError("no JWKS URL is configured".into()));
        };
        discover_endpoint(&self.client, issuer, "jwks_uri", self.config.max_bytes).await
    }

    async fn get(&self, url: &str, etag: Option<&str>) -> Result<Fetched, KeyFetchError> {
        let mut request = self.client.get(url).header(ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| KeyFetchError(format!("request: {e}")))?;
        let ttl = self.ttl(response.headers());
        let status = response.status();
        if status == http::StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Fetched {
                keys: None,
                etag: None,
                ttl,
            });
        }
        if !status.is_success() {
            return Err(KeyFetchError(format!("{url}: HTTP status {status}")));
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(response, self.config.max_bytes).await?;
        let text =
            std::str::from_utf8(&body).map_err(|_| KeyFetchError("JWKS is not UTF-8".into()))?;
        let keys = KeySet::from_jwks_limited(text, false, self.config.max_keys)
            .map_err(|e| KeyFetchError(format!("{url}: {e}")))?;
        if keys.is_empty() {
            return Err(KeyFetchError("the JWKS has no usable signature key".into()));
        }
        if keys.len() > self.config.max_keys {
            return Err(KeyFetchError(format!(
                "the JWKS has {} keys; at most {} are accepted",
                keys.len(),
                self.config.max_keys
            )));
        }
        Ok(Fetched {
            keys: Some(keys),
            etag,
            ttl,
        })
    }

    /// How long an answer may be used: its `Cache-Control: max-age`, clamped to the configured
    /// bounds; the default interval without one; the minimum with `no-cache`/`no-store`.
    fn ttl(&self, headers: &http::HeaderMap) -> Duration {
        let config = &self.config;
        let mut max_age = None;
        let mut no_cache = false;
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                let lower = directive.to_ascii_lowercase();
                if lower == "no-cache" || lower == "no-store" {
                    no_cache = true;
                } else if let Some(secs) = lower.strip_prefix("max-age=")
                    && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
                {
                    max_age = Some(Duration::from_secs(secs));
                }
            }
        }
        let ttl = match (no_cache, max_age) {
            (true, _) => Duration::ZERO,
            (false, Some(max_age)) => max_age,
            (false, None) => config.default_refresh,
        };
        ttl.clamp(config.min_refresh, config.max_refresh)
    }
}

struct Fetched {
    /// `None`: 304 Not Modified, the current keys stay.
    keys: Option<KeySet>,
    etag: Option<String>,
    ttl: Duration,
}

/// Finds the URL named `member` (`jwks_uri`, `introspection_endpoint`) in `issuer`'s metadata
/// (see [`discover_metadata`]); the URL must pass [`check_url`].
pub(crate) async fn discover_endpoint(
    client: &reqwest::Client,
    issuer: &str,
    member: &str,
    max_bytes: usize,
) -> Result<String, KeyFetchError> {
    let (url, document) = discover_metadata(client, issuer, max_bytes).await?;
    let found = document
        .get(member)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| KeyFetchError(format!("metadata {url} has no {member}")))?;
    check_url(found).map_err(|e| KeyFetchError(e.to_string()))?;
    tracing::info!(%issuer, metadata = %url, member, url = %found, "discovered an endpoint");
    Ok(found.to_owned())
}

/// `issuer`'s metadata document and where it was found:
/// `{issuer}/.well-known/openid-configuration`, else RFC 8414's location. The document's
/// `issuer` must equal `issuer` exactly.
pub(crate) async fn discover_metadata(
    client: &reqwest::Client,
    issuer: &str,
    max_bytes: usize,
) -> Result<(String, serde_json::Map<String, serde_json::Value>), KeyFetchError> {
    let mut last = KeyFetchError(format!("no metadata found for issuer {issuer}"));
    for url in metadata_urls(issuer) {
        match metadata(client, &url, issuer, max_bytes).await {
            Ok(document) => return Ok((url, document)),
            // A document naming another issuer is a configuration error, not a reason to try
            // the next location.
            Err(Metadata::Mismatch(error)) => return Err(error),
            Err(Metadata::Unavailable(error)) => last = error,
        }
    }
    Err(last)
}

async fn metadata(
    client: &reqwest::Client,
    url: &str,
    issuer: &str,
    max_bytes: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, Metadata> {
    let unavailable = |e: String| Metadata::Unavailable(KeyFetchError(e));
    let response = client
        .get(url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| unavailable(format!("metadata {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(unavailable(format!(
            "metadata {url}: HTTP status {}",
            response.status()
        )));
    }
    let body = read_limited(response, max_bytes)
        .await
        .map_err(Metadata::Unavailable)?;
    let document: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|_| unavailable(format!("metadata {url} is not a JSON document")))?;
    let named = document.get("issuer").and_then(serde_json::Value::as_str);
    if named != Some(issuer) {
        return Err(Metadata::Mismatch(KeyFetchError(format!(
            "discovery mismatch: the metadata at {url} names issuer {:?}, not the configured {issuer:?}",
            named.unwrap_or_default()
        ))));
    }
    Ok(document)
}

enum Metadata {
    /// This location has no usable document; try the next.
    Unavailable(KeyFetchError),
    /// The document names another issuer, or an unusable JWKS URL.
    Mismatch(KeyFetchError),
}

/// The metadata locations for `issuer`: OpenID Connect Discovery appends the well-known path;
/// RFC 8414 §3.1 inserts it between host and path.
fn metadata_urls(issuer: &str) -> Vec<String> {
    let mut urls = vec![format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )];
    if let Ok(parsed) = reqwest::Url::parse(issuer) {
        let path = parsed.path().trim_end_matches('/');
        let origin = parsed.origin().ascii_serialization();
        urls.push(format!(
            "{origin}/.well-known/oauth-authorization-server{path}"
        ));
    }
    urls
}

/// Reads a response body of at most `max` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, KeyFetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| KeyFetchError(format!("body: {e}")))?
    {
        if body.len() + chunk.len() > max {
            return Err(KeyFetchError(format!("response larger than {max} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A redirect policy that applies [`check_url`] to every hop (at most 5), so a redirect cannot
/// lead a fetch to plain http on another host.
pub(crate) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if check_url(attempt.url().as_str()).is_err() {
            attempt.error("redirect to a URL that is not https (or http on loopback)")
        } else {
            attempt.follow()
        }
    })
}

/// A JWKS or issuer URL must be https, or http on a loopback host.
pub(crate) fn check_url(url: &str) -> Result<(), ConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ConfigError::new(format!("URL {url:?}: {e}")))?;
    if super::fetchable(parsed.scheme(), parsed.host_str()) {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "URL {url:?}: the scheme must be https (http only for loopback), not {}",
        parsed.scheme()
    )))
}

/// Fetches at once, then again shortly before each answer goes stale; after a failure, retries
/// with exponential backoff. Ends when the source is dropped.
async fn refresh_loop(source: Weak<RemoteJwks>, mut stopped: oneshot::Receiver<()>) {
    let mut delay = Duration::ZERO;
    let mut failures: u32 = 0;
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stopped => return,
        }
        let Some(source) = source.upgrade() else {
            return;
        };
        if first {
            first = false;
            // `refresh_keys` may have fetched before this task first ran: no second fetch.
            let fetched = {
                let mutable = source.lock();
                match (&mutable.state.last_error, mutable.state.refresh_interval) {
                    (None, Some(ttl)) => Some(ttl),
                    _ => None,
                }
            };
            if let Some(ttl) = fetched {
                delay = ttl.mul_f64(0.9);
                continue;
            }
        }
        delay = match source.refresh().await {
            Ok(ttl) => {
                failures = 0;
                // Refresh at 90 % of the lifetime, so readers never hold a stale set.
                ttl.mul_f64(0.9)
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                // 2 s, 4 s, … up to `max_backoff`, and never longer than a normal refresh.
                let backoff = Duration::from_secs(1u64 << failures.min(16));
                backoff
                    .min(source.config.max_backoff)
                    .min(source.config.min_refresh)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_locations() {
        assert_eq!(
            metadata_urls("https://idp.example/realms/acme"),
            vec![
                "https://idp.example/realms/acme/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/realms/acme",
            ]
        );
        assert_eq!(
            metadata_urls("https://idp.example/"),
            vec![
                "https://idp.example/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server",
            ]
        );
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        assert!(check_url("https://idp.example/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://idp.example/jwks").is_err());
        assert!(check_url("http://127.0.0.1.evil.example/jwks").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
    }
}
