//! A remote JWKS (feature `remote`): fetched over HTTPS, cached, refreshed in the background
//! before it goes stale, refetched (single-flight, with a cooldown) when a token names an
//! unknown `kid`, and kept when a fetch fails (stale-if-error).
//!
//! Readers take an `Arc<KeySet>` snapshot from an [`ArcSwap`]: they never wait on a lock or on
//! the network when their key is cached, and a new set replaces the old one in one store.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use tokio::sync::oneshot;

use super::KeySet;
use crate::error::ConfigError;

/// Limits and timings of a remote JWKS. Every field has a default; see each setter.
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

/// What a remote key source has done so far, for health endpoints and metrics.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct KeySourceState {
    /// Where the keys come from.
    pub url: String,
    /// When the last fetch that produced or confirmed keys finished.
    pub last_success: Option<SystemTime>,
    /// The last fetch error, cleared by the next success.
    pub last_error: Option<String>,
    /// The `kid`s of the keys in use (empty strings for keys without one).
    pub key_ids: Vec<String>,
    /// Requests made to the JWKS URL so far.
    pub fetch_count: u64,
    /// How long the last good answer may be used before the next refresh (from
    /// `Cache-Control: max-age`, clamped).
    pub refresh_interval: Option<Duration>,
}

/// A failed JWKS fetch. The previous keys, if any, stay in use.
#[derive(Debug, Clone)]
pub struct KeyFetchError(pub(crate) String);

impl std::error::Error for KeyFetchError {}

type FetchError = KeyFetchError;

impl fmt::Display for KeyFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct Mutable {
    /// Counts finished fetches, so that callers who waited on another's fetch share its result.
    generation: u64,
    etag: Option<String>,
    state: KeySourceState,
    /// When the last fetch for an unknown `kid` started.
    last_kid_fetch: Option<Instant>,
}

pub(crate) struct RemoteJwks {
    url: String,
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
            .field("url", &self.url)
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Creates the source with no keys and starts its background refresh, whose first fetch
    /// runs at once. Needs a tokio runtime.
    pub(crate) fn start(
        url: String,
        client: reqwest::Client,
        config: RemoteConfig,
    ) -> Result<Arc<Self>, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "a remote JWKS needs a tokio runtime: build the authenticator inside one",
            )
        })?;
        let (stop, stopped) = oneshot::channel();
        let source = Arc::new(Self {
            mutable: Mutex::new(Mutable {
                generation: 0,
                etag: None,
                state: KeySourceState {
                    url: url.clone(),
                    ..KeySourceState::default()
                },
                last_kid_fetch: None,
            }),
            url,
            client,
            config,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetch: tokio::sync::Mutex::new(()),
            _stop: stop,
        });
        runtime.spawn(refresh_loop(Arc::downgrade(&source), stopped));
        Ok(source)
    }

    /// The keys in use now.
    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    pub(crate) fn state(&self) -> KeySourceState {
        self.lock().state.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mutable> {
        self.mutable.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a token naming an unknown `kid` may trigger a fetch now: no such fetch started
    /// within the cooldown. Cheap and lock-free for the caller's purposes (a short mutex).
    pub(crate) fn may_refetch(&self) -> bool {
        let now = Instant::now();
        self.lock()
            .last_kid_fetch
            .is_none_or(|t| now.duration_since(t) >= self.config.cooldown)
    }

    /// Fetches again because a token named an unknown `kid`. Concurrent callers share one
    /// fetch; within the cooldown after one started, nothing is fetched. Returns whether the
    /// key set may have changed, so that the caller retries its lookup.
    pub(crate) async fn refetch_for_unknown_kid(&self) -> bool {
        if !self.may_refetch() {
            return false;
        }
        let guard = self.fetch.lock().await;
        {
            let mut mutable = self.lock();
            let now = Instant::now();
            if let Some(started) = mutable.last_kid_fetch
                && now.duration_since(started) < self.config.cooldown
            {
                // Another caller fetched while this one waited: use its result.
                return true;
            }
            mutable.last_kid_fetch = Some(now);
        }
        let result = self.fetch_now().await;
        drop(guard);
        result.is_ok()
    }

    /// Fetches now and installs what it gets. Single-flight: a caller that finds a fetch in
    /// flight waits for it and shares its result instead of fetching again.
    pub(crate) async fn refresh(&self) -> Result<Duration, FetchError> {
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

    /// One fetch; the caller holds the fetch lock. Returns how long the answer may be used.
    async fn fetch_now(&self) -> Result<Duration, FetchError> {
        let etag = self.lock().etag.clone();
        let outcome = tokio::time::timeout(self.config.timeout, self.get(etag.as_deref())).await;
        let outcome = outcome.unwrap_or_else(|_| {
            Err(KeyFetchError(format!(
                "no answer within {:?}",
                self.config.timeout
            )))
        });
        let mut mutable = self.lock();
        mutable.generation += 1;
        mutable.state.fetch_count += 1;
        match outcome {
            Ok(Fetched { keys, etag, ttl }) => {
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
                tracing::debug!(url = %self.url, keys = mutable.state.key_ids.len(), ?ttl, "JWKS fetched");
                Ok(ttl)
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "JWKS fetch failed; keeping the previous keys");
                mutable.state.last_error = Some(error.0.clone());
                Err(error)
            }
        }
    }

    async fn get(&self, etag: Option<&str>) -> Result<Fetched, FetchError> {
        let mut request = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let mut response = request
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
            return Err(KeyFetchError(format!("HTTP status {status}")));
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| KeyFetchError(format!("body: {e}")))?
        {
            if body.len() + chunk.len() > self.config.max_bytes {
                return Err(KeyFetchError(format!(
                    "JWKS larger than {} bytes",
                    self.config.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text =
            std::str::from_utf8(&body).map_err(|_| KeyFetchError("JWKS is not UTF-8".into()))?;
        let keys = KeySet::from_jwks_json(text).map_err(|e| KeyFetchError(e.to_string()))?;
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
        let mut ttl = config.default_refresh;
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                let lower = directive.to_ascii_lowercase();
                if lower == "no-cache" || lower == "no-store" {
                    ttl = Duration::ZERO;
                } else if let Some(secs) = lower.strip_prefix("max-age=")
                    && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
                {
                    ttl = Duration::from_secs(secs);
                }
            }
        }
        ttl.clamp(config.min_refresh, config.max_refresh)
    }
}

struct Fetched {
    /// `None`: 304 Not Modified, the current keys stay.
    keys: Option<KeySet>,
    etag: Option<String>,
    ttl: Duration,
}

/// Fetches at once, then again shortly before each answer goes stale; after a failure, retries
/// with exponential backoff. Ends when the source is dropped.
async fn refresh_loop(source: Weak<RemoteJwks>, mut stopped: oneshot::Receiver<()>) {
    let mut delay = Duration::ZERO;
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stopped => return,
        }
        let Some(source) = source.upgrade() else {
            return;
        };
        delay = match source.refresh().await {
            Ok(ttl) => {
                failures = 0;
                // Refresh at 90 % of the lifetime, so readers never hold a stale set.
                ttl.mul_f64(0.9)
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_secs(1u64 << failures.min(16));
                backoff.min(source.config.max_backoff)
            }
        };
    }
}
