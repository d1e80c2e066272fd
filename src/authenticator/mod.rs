//! The authenticator: the validation policy, the keys and the token sources, shared by every
//! layer built from it. [`AuthenticatorBuilder`] configures it; [`Issuer`] describes one trusted
//! issuer; [`TokenCache`] and [`RevocationCheck`] are the validation pipeline's options.

mod builder;
pub(crate) mod issuer;
pub(crate) mod rejection;
pub(crate) mod resource;

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Uri};

use crate::dpop::{ProofChecker, Scheme};
use crate::error::AuthError;
use crate::keys::KeySource;
use crate::token::VerifiedToken;
use crate::token_source::{Carrier, Sources};
use crate::validate::cache::Cache;
use crate::validate::policy::{Trusted, check_bearer, check_dpop_bound};
use crate::validate::{self};

pub use crate::validate::cache::TokenCache;
pub use crate::validate::revocation::RevocationCheck;
pub use builder::AuthenticatorBuilder;
pub use issuer::Issuer;
pub use rejection::Rejection;
pub use resource::ProtectedResource;

/// Validates bearer tokens: holds the policy (issuer, audience, leeway, …), the keys and the
/// token sources. Cheap to clone; every clone and every layer built from it share one state.
///
/// ```
/// use tower_oauth2::{Algorithm, Authenticator, Key};
///
/// # fn main() -> Result<(), tower_oauth2::ConfigError> {
/// let auth = Authenticator::builder()
///     .issuer("https://issuer.example")
///     .audience("orders-api")
///     .key(Key::hmac([42u8; 32], Algorithm::HS256)?.with_kid("k1"))
///     .build()?;
/// let layer = auth.layer(); // a tower Layer
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Authenticator {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    /// One per trusted issuer; the token's `iss` picks one.
    pub(crate) issuers: Vec<Trusted>,
    /// Tokens verified before (see [`TokenCache`](crate::TokenCache)).
    pub(crate) cache: Option<Cache>,
    pub(crate) sources: Sources,
    /// `None`: the layer answers with its default rejection, naming `realm`.
    pub(crate) rejection: Option<Arc<dyn Rejection>>,
    pub(crate) realm: Box<str>,
    /// The protected-resource metadata (RFC 9728), when configured.
    pub(crate) resource: Option<resource::ResourceMetadata>,
    /// Checks DPoP proofs (RFC 9449), when some issuer accepts DPoP-bound tokens.
    pub(crate) dpop: Option<ProofChecker>,
    /// The rejection the layers answer with: the application's, or the default one for this
    /// configuration, made by the first layer.
    pub(crate) layer_rejection: std::sync::OnceLock<Arc<dyn Rejection>>,
    /// The metrics' per-request counters (feature `metrics`; nothing without it).
    pub(crate) telemetry: crate::telemetry::Telemetry,
    /// Introspects the tokens that are not JWTs of an issuer with keys (RFC 7662).
    #[cfg(feature = "introspection")]
    pub(crate) introspection: Option<crate::introspection::Introspector>,
}

/// An introspection answer obtained for a request, by the SHA-256 of its token: what the
/// synchronous path uses instead of the cache (which may have declined to keep it).
pub(crate) type Resolved = ([u8; 32], Result<VerifiedToken, AuthError>);

/// A request the authenticator let in.
pub(crate) struct Admitted {
    pub(crate) token: VerifiedToken,
    /// The token came in the URL.
    pub(crate) in_url: bool,
    /// Where it came from, for `hide_credentials`.
    pub(crate) carrier: Carrier,
    /// A DPoP nonce to send with the response: the proof's one is aging.
    pub(crate) dpop_nonce: Option<String>,
}

impl Authenticator {
    /// Starts a builder with the secure defaults.
    pub fn builder() -> AuthenticatorBuilder {
        AuthenticatorBuilder::default()
    }

    /// Validates one token string presented as a bearer token: header, claims syntax, issuer,
    /// key and signature, then the remaining claims, and the bearer rules (a DPoP-bound token,
    /// or one whose issuer requires DPoP, is refused). Unlike the layer, it never waits for a
    /// refetch when the token names an unknown `kid`: a rotated key reaches it with the next
    /// refresh (or after a request through the layer fetched it). For code outside tower (a
    /// WebSocket handshake, a message consumer) that has the token in hand.
    ///
    /// With [introspection](crate::introspection) configured, a token that must be introspected
    /// and whose answer is not cached is refused with
    /// [`AuthErrorKind::IntrospectionUnavailable`](crate::AuthErrorKind::IntrospectionUnavailable):
    /// use [`verify_async`](Self::verify_async), which asks the endpoint.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let verified = self.verify_token(token)?;
        self.check_bearer(&verified)?;
        Ok(verified)
    }

    /// [`verify`](Self::verify), asking the issuer's introspection endpoint (RFC 7662) when the
    /// token must be introspected and its answer is not cached; also waits for a JWKS refetch
    /// when the token names an unknown `kid`, as the layer does.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub async fn verify_async(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let error = match self.verify(token) {
            Err(error) => error,
            verified => return verified,
        };
        #[cfg(feature = "introspection")]
        if error.needs_introspection()
            && let Some(resolved) = self.introspect(token).await
        {
            let digest = Some(resolved.0);
            let verified = self.verify_digested(token, digest, Some(&resolved))?;
            self.check_bearer(&verified)?;
            return Ok(verified);
        }
        if self.may_refetch_keys(&error) {
            self.refetch_keys(&error).await;
            return self.verify(token);
        }
        Err(error)
    }

    /// The token's own checks, through the token cache; how it was presented is the caller's
    /// (the authorization server's introspection and revocation, which see tokens, not
    /// requests).
    pub(crate) fn verify_token(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let digest = self.needs_digest().then(|| Cache::key(token));
        self.verify_digested(token, digest, None)
    }

    /// Whether the token's SHA-256 is needed: the key of the token cache and of the
    /// introspection cache.
    fn needs_digest(&self) -> bool {
        #[cfg(feature = "introspection")]
        if self.shared.introspection.is_some() {
            return true;
        }
        self.shared.cache.is_some()
    }

    /// [`verify_token`](Self::verify_token) with the token's SHA-256 computed already (when the
    /// caller needed it too), and an introspection answer obtained for it.
    fn verify_digested(
        &self,
        token: &str,
        digest: Option<[u8; 32]>,
        resolved: Option<&Resolved>,
    ) -> Result<VerifiedToken, AuthError> {
        #[cfg(feature = "introspection")]
        if let (Some(introspector), Some(digest)) = (&self.shared.introspection, digest) {
            let answer = match resolved {
                Some((key, answer)) if *key == digest => Some(answer.clone()),
                _ => introspector.cached(&digest),
            };
            if let Some(answer) = answer {
                let verified = answer?;
                let trusted = &self.shared.issuers[introspector.issuer_index()];
                validate::recheck(&verified, trusted, crate::time::now())?;
                return Ok(verified);
            }
            return match self.verify_jwt(token, Some(digest)) {
                Err(error) if introspector.takes(&error) => Err(AuthError::introspection_pending()),
                verified => verified,
            };
        }
        let _ = resolved;
        self.verify_jwt(token, digest)
    }

    /// Asks the introspection endpoint about the token a request carries (or the cache, which
    /// another request may have filled meanwhile). `None`: no introspection, or no token.
    #[cfg(feature = "introspection")]
    pub(crate) async fn introspect_request(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        extensions: &Extensions,
    ) -> Option<Resolved> {
        let dpop = self.shared.dpop.is_some();
        let found = self
            .shared
            .sources
            .extract(headers, uri, extensions, dpop)
            .ok()??;
        self.introspect(&found.token).await
    }

    /// The introspection answer for `token`. `None`: no introspection is configured.
    #[cfg(feature = "introspection")]
    async fn introspect(&self, token: &str) -> Option<Resolved> {
        let introspector = self.shared.introspection.as_ref()?;
        let digest = Cache::key(token);
        let answer = introspector
            .resolve(token, digest, &self.shared.issuers)
            .await;
        Some((digest, answer))
    }

    /// A JWT's checks, through the token cache.
    fn verify_jwt(
        &self,
        token: &str,
        digest: Option<[u8; 32]>,
    ) -> Result<VerifiedToken, AuthError> {
        let now = crate::time::now();
        let issuers = &self.shared.issuers;
        let telemetry = &self.shared.telemetry;
        let (Some(cache), Some(key)) = (&self.shared.cache, digest) else {
            let started = crate::telemetry::Telemetry::start();
            let verified = validate::verify(token, issuers, now);
            telemetry.verified(started, || None);
            return verified;
        };
        if let Some(cached) = cache.get(&key) {
            let (issuer, keys) = cached.verified_by();
            let trusted = &issuers[issuer];
            // The very key set that verified it; after any change, verify again.
            if trusted.keys.snapshot().is(keys) {
                telemetry.cache_hit();
                validate::recheck(&cached, trusted, now)?;
                return Ok(cached);
            }
            cache.remove(&key);
        }
        let started = crate::telemetry::Telemetry::start();
        let verified = validate::verify(token, issuers, now);
        if let Ok(verified) = &verified {
            cache.insert(key, verified.clone());
        }
        telemetry.verified(started, || Some(cache.len()));
        verified
    }

    fn check_bearer(&self, token: &VerifiedToken) -> Result<(), AuthError> {
        let (issuer, _) = token.verified_by();
        check_bearer(token, &self.shared.issuers[issuer])
            .map_err(|e| e.with_claimed(token.key_id(), token.issuer()))
    }

    /// How many verified tokens the cache holds, and their approximate size in bytes (for
    /// metrics); `None` with the cache off.
    pub fn token_cache_stats(&self) -> Option<(u64, u64)> {
        self.shared
            .cache
            .as_ref()
            .map(|cache| (cache.len(), cache.weighted_size()))
    }

    /// How many introspection answers (RFC 7662) the cache holds, for metrics; `None` without
    /// introspection.
    #[cfg(feature = "introspection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
    pub fn introspection_cache_len(&self) -> Option<u64> {
        self.shared
            .introspection
            .as_ref()
            .map(crate::introspection::Introspector::cached_count)
    }

    /// Takes the token from a request (per the configured token sources) and validates it,
    /// with its DPoP proof when it comes with the DPoP scheme: the method and URI are what the
    /// proof must name. `Ok(None)`: the request carries no token. Like
    /// [`verify`](Self::verify), it answers an uncached token that must be introspected with
    /// `IntrospectionUnavailable`; the layer asks the endpoint.
    pub fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Option<VerifiedToken>, AuthError> {
        Ok(self
            .authenticate_request(method, headers, uri, &Extensions::new(), None)?
            .map(|admitted| admitted.token))
    }

    /// [`authenticate`](Self::authenticate), also telling whether the token came in the URL and
    /// whether to send a fresh DPoP nonce; `resolved`: an introspection answer obtained for the
    /// request's token.
    pub(crate) fn authenticate_request(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
        extensions: &Extensions,
        resolved: Option<&Resolved>,
    ) -> Result<Option<Admitted>, AuthError> {
        let dpop = self.shared.dpop.as_ref();
        let found = self
            .shared
            .sources
            .extract(headers, uri, extensions, dpop.is_some())?;
        let Some(found) = found else {
            return Ok(None);
        };
        let (raw, in_url, carrier) = (found.token, found.in_url, found.carrier);
        let scheme = carrier.scheme;
        let (checker, digest, token) = match (scheme, dpop) {
            (Scheme::Dpop, Some(checker)) => {
                // One SHA-256 of the token: the cache key and the proof's `ath`.
                let digest = Cache::key(&raw);
                let token = self
                    .verify_digested(&raw, Some(digest), resolved)
                    .map_err(AuthError::via_dpop)?;
                (checker, digest, token)
            }
            _ => {
                let digest = self.needs_digest().then(|| Cache::key(&raw));
                let token = self.verify_digested(&raw, digest, resolved)?;
                self.check_bearer(&token)?;
                return Ok(Some(Admitted {
                    token,
                    in_url,
                    carrier,
                    dpop_nonce: None,
                }));
            }
        };
        let claimed = |e: AuthError| e.with_claimed(token.key_id(), token.issuer()).via_dpop();
        let (issuer, _) = token.verified_by();
        let jkt = check_dpop_bound(&token, &self.shared.issuers[issuer]).map_err(claimed)?;
        // Never cached: every request's proof is checked, its jti recorded.
        let htu = checker.resource_htu(uri).map_err(claimed)?;
        let now = crate::time::now();
        let proof = checker
            .check(headers, method, &htu, Some(&digest), now)
            .map_err(claimed)?;
        if proof.jkt() != jkt {
            return Err(claimed(AuthError::new(
                crate::error::AuthErrorKind::DpopBinding,
                "the DPoP proof's key is not the one the token is bound to (cnf.jkt)",
            )));
        }
        let dpop_nonce = match checker.nonces() {
            Some(nonces) if proof.nonce_aging => Some(nonces.issue(now)),
            _ => None,
        };
        Ok(Some(Admitted {
            token,
            in_url,
            carrier,
            dpop_nonce,
        }))
    }

    /// Takes an admitted request's token out of it (`hide_credentials`).
    pub(crate) fn remove_credentials(
        &self,
        carrier: Carrier,
        headers: &mut HeaderMap,
        uri: &mut Uri,
    ) {
        self.shared.sources.remove(carrier, headers, uri);
    }

    /// A fresh DPoP nonce, when proofs must carry one: for every rejection, so that a client
    /// can retry at once.
    pub(crate) fn fresh_dpop_nonce(&self) -> Option<String> {
        let nonces = self.shared.dpop.as_ref()?.nonces()?;
        Some(nonces.issue(crate::time::now()))
    }

    /// The `algs` of the DPoP challenge and whether bearer tokens are accepted at all, when
    /// DPoP is on.
    pub(crate) fn dpop_challenge(&self) -> Option<(&str, bool)> {
        let checker = self.shared.dpop.as_ref()?;
        let bearer = self
            .shared
            .issuers
            .iter()
            .any(|t| t.dpop != crate::dpop::DpopMode::Required);
        Some((checker.algs(), bearer))
    }

    /// The key source of the issuer a rejected token named.
    fn source_for(&self, error: &AuthError) -> Option<&KeySource> {
        let issuers = &self.shared.issuers;
        match error.claimed_issuer() {
            Some(iss) => issuers
                .iter()
                .find(|t| t.policy.issuer.as_deref().is_none_or(|i| i == iss))
                .map(|t| &t.keys),
            None if issuers.len() == 1 => Some(&issuers[0].keys),
            None => None,
        }
    }

    /// Whether `error` comes from a key the issuer's remote key set may not have yet, and a
    /// refetch is allowed now (none started within the cooldown).
    pub(crate) fn may_refetch_keys(&self, error: &AuthError) -> bool {
        use crate::error::AuthErrorKind::{KeysUnavailable, UnknownKey};
        if !matches!(error.kind(), UnknownKey | KeysUnavailable) {
            return false;
        }
        match self.source_for(error) {
            #[cfg(feature = "remote")]
            Some(KeySource::Remote(remote)) => remote.may_refetch(),
            _ => false,
        }
    }

    /// Refetches the remote key set of the issuer `error` names, for an unknown `kid`
    /// (single-flight, rate-limited).
    pub(crate) async fn refetch_keys(&self, error: &AuthError) {
        #[cfg(feature = "remote")]
        if let Some(KeySource::Remote(remote)) = self.source_for(error) {
            remote.refetch_for_unknown_kid().await;
        }
        #[cfg(not(feature = "remote"))]
        let _ = error;
    }

    /// Fetches every issuer's remote JWKS now (a fetch already in flight is waited for and its
    /// result shared) and installs it; stops at the first failure. Call it once after
    /// [`build`](AuthenticatorBuilder::build) to fail fast when the keys cannot be had at start;
    /// without it, the authenticator starts empty, fetches in the background, and answers 401
    /// ("the issuer's signing keys are not available") until a fetch succeeds. A no-op for static
    /// keys.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub async fn refresh_keys(&self) -> Result<(), crate::keys::KeyFetchError> {
        for trusted in &self.shared.issuers {
            if let KeySource::Remote(remote) = &trusted.keys {
                remote.refresh().await?;
            }
        }
        Ok(())
    }

    /// The state of the first issuer's remote key source (last fetch, last error, key ids,
    /// fetch count), for health endpoints; `None` for static keys. See
    /// [`key_source_states`](Self::key_source_states) for every issuer.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn key_source_state(&self) -> Option<crate::keys::KeySourceState> {
        match &self.shared.issuers[0].keys {
            KeySource::Remote(remote) => Some(remote.state()),
            _ => None,
        }
    }

    /// The state of every issuer's remote key source, by issuer.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn key_source_states(&self) -> Vec<(String, crate::keys::KeySourceState)> {
        self.shared
            .issuers
            .iter()
            .filter_map(|t| match &t.keys {
                KeySource::Remote(remote) => {
                    Some((t.policy.issuer.clone().unwrap_or_default(), remote.state()))
                }
                _ => None,
            })
            .collect()
    }

    /// The metrics' per-request counters.
    pub(crate) fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.shared.telemetry
    }

    /// The rejection every layer of this authenticator answers with, made once by `make`.
    pub(crate) fn layer_rejection(
        &self,
        make: impl FnOnce() -> Arc<dyn Rejection>,
    ) -> &Arc<dyn Rejection> {
        self.shared.layer_rejection.get_or_init(make)
    }

    /// The application's rejection, if it configured one, and the realm for the default one.
    pub(crate) fn rejection(&self) -> (Option<&Arc<dyn Rejection>>, &str) {
        (self.shared.rejection.as_ref(), &self.shared.realm)
    }

    /// The URL of the protected-resource metadata (RFC 9728 §3.1), when a
    /// [`ProtectedResource`] is configured. The default rejection names it in every challenge;
    /// a custom [`Rejection`] can add `resource_metadata="…"` itself with it.
    pub fn resource_metadata_url(&self) -> Option<&str> {
        self.shared.resource.as_ref().map(|r| r.url.as_str())
    }

    /// The protected-resource metadata document (JSON) and the path it is served at, when a
    /// [`ProtectedResource`] is configured: for serving it without axum.
    pub fn resource_metadata(&self) -> Option<(&str, &str)> {
        self.shared
            .resource
            .as_ref()
            .map(|r| (r.well_known_path.as_str(), r.document.as_str()))
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<_> = self
            .shared
            .issuers
            .iter()
            .map(|t| (&t.policy.issuer, &t.policy.audiences, &t.keys))
            .collect();
        f.debug_struct("Authenticator")
            .field("issuers", &issuers)
            .finish_non_exhaustive()
    }
}
