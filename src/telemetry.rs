//! Metrics (feature `metrics`), recorded through the [`metrics`](https://docs.rs/metrics)
//! facade: install any recorder (`metrics-exporter-prometheus`, …) **before the first
//! request** and they appear; without the feature every call here compiles to nothing.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tower_oauth2_auth_total` | counter | `issuer`, `outcome` (`accepted`, `rejected`, `anonymous`), `reason` (`ok` or the [`AuthErrorKind`](crate::error::AuthErrorKind), e.g. `Expired`) |
//! | `tower_oauth2_token_cache_total` | counter | `result` (`hit`, `miss`) |
//! | `tower_oauth2_validation_seconds` | histogram | — (a token checked in full, accepted or refused: not taken from the cache) |
//! | `tower_oauth2_cached_tokens` | gauge | `cache` (`token`, `introspection`) |
//! | `tower_oauth2_jwks_fetches_total` | counter | `issuer`, `outcome` (`ok`, `not_modified`, `error`) |
//! | `tower_oauth2_keys` | gauge | `issuer`: the keys of its remote JWKS |
//! | `tower_oauth2_introspection_calls_total` | counter | `issuer`, `outcome` (`active`, `inactive`, `error`) |
//! | `tower_oauth2_server_tokens_issued_total` | counter | `grant` |
//! | `tower_oauth2_server_token_requests_refused_total` | counter | `grant`, `error` (the OAuth error code) |
//! | `tower_oauth2_server_client_auth_failures_total` | counter | `reason` |
//! | `tower_oauth2_server_revocations_total` | counter | `kind` (`access_token`, `refresh_token`) |
//!
//! Label values are bounded: `issuer` is a *configured* issuer (a rejected token's claimed
//! `iss` that names none is `other`; no token, or one whose `iss` cannot be read, is `none`), and every other value comes from a fixed list of this
//! crate's (a grant type no server supports is `other`). No subject, client id, token or
//! other client-supplied string is ever a label.
//!
//! The per-request counters of the layer are resolved once per authenticator and issuer, so a
//! request served from the token cache costs two atomic additions (see `BENCHMARKS.md`).

/// The counter of authentication decisions.
pub const AUTH: &str = "tower_oauth2_auth_total";
/// The counter of token-cache lookups.
pub const TOKEN_CACHE: &str = "tower_oauth2_token_cache_total";
/// The histogram of the time to check a token that was not in the cache (accepted or refused),
/// in seconds.
pub const VALIDATION_SECONDS: &str = "tower_oauth2_validation_seconds";
/// The gauge of cached tokens.
pub const CACHED_TOKENS: &str = "tower_oauth2_cached_tokens";
/// The counter of JWKS fetches.
pub const JWKS_FETCHES: &str = "tower_oauth2_jwks_fetches_total";
/// The gauge of keys held from a remote JWKS.
pub const KEYS: &str = "tower_oauth2_keys";
/// The counter of introspection calls.
pub const INTROSPECTION_CALLS: &str = "tower_oauth2_introspection_calls_total";
/// The counter of access tokens the authorization server issued.
pub const SERVER_TOKENS_ISSUED: &str = "tower_oauth2_server_tokens_issued_total";
/// The counter of token requests the authorization server refused.
pub const SERVER_TOKENS_REFUSED: &str = "tower_oauth2_server_token_requests_refused_total";
/// The counter of failed client authentications at the authorization server.
pub const SERVER_CLIENT_AUTH_FAILURES: &str = "tower_oauth2_server_client_auth_failures_total";
/// The counter of tokens the authorization server revoked.
pub const SERVER_REVOCATIONS: &str = "tower_oauth2_server_revocations_total";

// Some calls are made only by optional features (`remote`, `introspection`, `server`).
#[cfg(feature = "metrics")]
#[allow(dead_code)]
mod on {
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    use metrics::{Counter, counter, gauge, histogram};

    /// The layer's per-request counters of one authenticator, resolved at first use (so a
    /// recorder installed before the first request is the one they record into).
    pub(crate) struct Telemetry {
        /// The configured issuers' labels, by issuer index.
        issuers: Box<[Arc<str>]>,
        hot: OnceLock<Hot>,
    }

    struct Hot {
        accepted: Box<[Counter]>,
        hit: Counter,
        miss: Counter,
    }

    impl Telemetry {
        pub(crate) fn new(issuers: impl IntoIterator<Item = Option<String>>) -> Self {
            let issuers = issuers
                .into_iter()
                .map(|i| Arc::from(i.as_deref().unwrap_or("any")))
                .collect();
            Self {
                issuers,
                hot: OnceLock::new(),
            }
        }

        fn hot(&self) -> &Hot {
            self.hot.get_or_init(|| Hot {
                accepted: self
                    .issuers
                    .iter()
                    .map(|issuer| {
                        counter!(super::AUTH, "issuer" => Arc::clone(issuer), "outcome" => "accepted", "reason" => "ok")
                    })
                    .collect(),
                hit: counter!(super::TOKEN_CACHE, "result" => "hit"),
                miss: counter!(super::TOKEN_CACHE, "result" => "miss"),
            })
        }

        /// The label of the configured issuer `iss` names; `other` for an issuer that is not
        /// configured, `none` when no issuer is known (no token, or one that does not parse).
        fn label(&self, iss: Option<&str>) -> Arc<str> {
            let Some(iss) = iss else {
                return Arc::from("none");
            };
            self.issuers
                .iter()
                .find(|i| ***i == *iss)
                .map_or_else(|| Arc::from("other"), Arc::clone)
        }

        pub(crate) fn accepted(&self, issuer: usize) {
            if let Some(counter) = self.hot().accepted.get(issuer) {
                counter.increment(1);
            }
        }

        pub(crate) fn anonymous(&self) {
            counter!(super::AUTH, "issuer" => "none", "outcome" => "anonymous", "reason" => "ok")
                .increment(1);
        }

        /// A refusal; `reason` is the error kind's name, `iss` the (claimed) issuer.
        pub(crate) fn rejected(&self, iss: Option<&str>, reason: &'static str) {
            counter!(super::AUTH, "issuer" => self.label(iss), "outcome" => "rejected", "reason" => reason)
                .increment(1);
        }

        pub(crate) fn cache_hit(&self) {
            self.hot().hit.increment(1);
        }

        /// A cache miss: the token was verified, taking the time since `started`; `cached`
        /// counts the tokens now cached (when there is a cache).
        pub(crate) fn verified(&self, started: Instant, cached: impl FnOnce() -> Option<u64>) {
            self.hot().miss.increment(1);
            histogram!(super::VALIDATION_SECONDS).record(started.elapsed().as_secs_f64());
            if let Some(count) = cached() {
                cached_tokens("token", count);
            }
        }

        /// When the work the histogram times starts.
        pub(crate) fn start() -> Instant {
            Instant::now()
        }
    }

    pub(crate) fn cached_tokens(cache: &'static str, count: u64) {
        #[allow(clippy::cast_precision_loss)]
        gauge!(super::CACHED_TOKENS, "cache" => cache).set(count as f64);
    }

    pub(crate) fn jwks_fetch(issuer: &Arc<str>, outcome: &'static str, keys: Option<usize>) {
        counter!(super::JWKS_FETCHES, "issuer" => Arc::clone(issuer), "outcome" => outcome)
            .increment(1);
        if let Some(keys) = keys {
            #[allow(clippy::cast_precision_loss)]
            gauge!(super::KEYS, "issuer" => Arc::clone(issuer)).set(keys as f64);
        }
    }

    pub(crate) fn introspection_call(issuer: &Arc<str>, outcome: &'static str) {
        counter!(super::INTROSPECTION_CALLS, "issuer" => Arc::clone(issuer), "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn server_token_issued(grant: &'static str) {
        counter!(super::SERVER_TOKENS_ISSUED, "grant" => grant).increment(1);
    }

    pub(crate) fn server_token_refused(grant: &'static str, error: &'static str) {
        counter!(super::SERVER_TOKENS_REFUSED, "grant" => grant, "error" => error).increment(1);
    }

    pub(crate) fn server_client_auth_failure(reason: &'static str) {
        counter!(super::SERVER_CLIENT_AUTH_FAILURES, "reason" => reason).increment(1);
    }

    pub(crate) fn server_revocation(kind: &'static str) {
        counter!(super::SERVER_REVOCATIONS, "kind" => kind).increment(1);
    }
}

/// The same calls, doing nothing: they compile away.
#[cfg(not(feature = "metrics"))]
#[allow(dead_code, clippy::unused_self, clippy::needless_pass_by_value)]
mod off {
    use std::sync::Arc;

    pub(crate) struct Telemetry;

    /// When the timed work started: nothing, without the feature.
    pub(crate) struct Started;

    impl Telemetry {
        #[inline(always)]
        pub(crate) fn new(_issuers: impl IntoIterator<Item = Option<String>>) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn accepted(&self, _issuer: usize) {}
        #[inline(always)]
        pub(crate) fn anonymous(&self) {}
        #[inline(always)]
        pub(crate) fn rejected(&self, _iss: Option<&str>, _reason: &'static str) {}
        #[inline(always)]
        pub(crate) fn cache_hit(&self) {}
        #[inline(always)]
        pub(crate) fn verified(&self, _started: Started, _cached: impl FnOnce() -> Option<u64>) {}
        #[inline(always)]
        pub(crate) fn start() -> Started {
            Started
        }
    }

    #[inline(always)]
    pub(crate) fn cached_tokens(_cache: &'static str, _count: u64) {}
    #[inline(always)]
    pub(crate) fn jwks_fetch(_issuer: &Arc<str>, _outcome: &'static str, _keys: Option<usize>) {}
    #[inline(always)]
    pub(crate) fn introspection_call(_issuer: &Arc<str>, _outcome: &'static str) {}
    #[inline(always)]
    pub(crate) fn server_token_issued(_grant: &'static str) {}
    #[inline(always)]
    pub(crate) fn server_token_refused(_grant: &'static str, _error: &'static str) {}
    #[inline(always)]
    pub(crate) fn server_client_auth_failure(_reason: &'static str) {}
    #[inline(always)]
    pub(crate) fn server_revocation(_kind: &'static str) {}
}

/// A grant type as a bounded label: the ones this crate's server knows, else `other`.
#[cfg(feature = "server")]
pub(crate) fn grant_label(grant: &str) -> &'static str {
    match grant {
        "authorization_code" => "authorization_code",
        "client_credentials" => "client_credentials",
        "refresh_token" => "refresh_token",
        "password" => "password",
        "urn:ietf:params:oauth:grant-type:device_code" => "device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange" => "token_exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => "jwt_bearer",
        _ => "other",
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;
#[cfg(feature = "metrics")]
pub(crate) use on::*;
