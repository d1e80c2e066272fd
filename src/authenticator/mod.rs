//! The authenticator: the validation policy, the keys and the token sources, shared by every
//! layer built from it. [`AuthenticatorBuilder`] configures it; [`Issuer`] describes one trusted
//! issuer; [`TokenCache`] and [`RevocationCheck`] are the validation pipeline's options.

mod builder;
pub(crate) mod issuer;
pub(crate) mod rejection;
pub(crate) mod resource;

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Uri};

use crate::error::AuthError;
use crate::keys::KeySource;
use crate::token::VerifiedToken;
use crate::token_source::Sources;
use crate::validate::cache::Cache;
use crate::validate::policy::Trusted;
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
}

impl Authenticator {
    /// Starts a builder with the secure defaults.
    pub fn builder() -> AuthenticatorBuilder {
        AuthenticatorBuilder::default()
    }

    /// Validates one token string: header, claims syntax, issuer, key and signature, then the
    /// remaining claims. Unlike the layer, it never waits for a refetch when the token names an
    /// unknown `kid`: a rotated key reaches it with the next refresh (or after a request through
    /// the layer fetched it). For code outside tower (a WebSocket
    /// handshake, a message consumer) that has the token in hand.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let now = crate::time::now();
        let issuers = &self.shared.issuers;
        let Some(cache) = &self.shared.cache else {
            return validate::verify(token, issuers, now);
        };
        let key = Cache::key(token);
        if let Some(cached) = cache.get(&key) {
            let (issuer, keys) = cached.verified_by();
            let trusted = &issuers[issuer];
            // The very key set that verified it; after any change, verify again.
            if trusted.keys.snapshot().is(keys) {
                validate::recheck(&cached, trusted, now)?;
                return Ok(cached);
            }
            cache.remove(&key);
        }
        let verified = validate::verify(token, issuers, now)?;
        cache.insert(key, verified.clone());
        Ok(verified)
    }

    /// How many verified tokens the cache holds, and their approximate size in bytes (for
    /// metrics); `None` with the cache off.
    pub fn token_cache_stats(&self) -> Option<(u64, u64)> {
        self.shared
            .cache
            .as_ref()
            .map(|cache| (cache.len(), cache.weighted_size()))
    }

    /// Takes the token from a request's headers and URI (per the configured token sources) and
    /// validates it. `Ok(None)`: the request carries no token.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Option<VerifiedToken>, AuthError> {
        Ok(self
            .authenticate_request(headers, uri)?
            .map(|(token, _)| token))
    }

    /// [`authenticate`](Self::authenticate), also telling whether the token came in the URL.
    pub(crate) fn authenticate_request(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Option<(VerifiedToken, bool)>, AuthError> {
        match self.shared.sources.extract(headers, uri)? {
            Some((token, in_url)) => self.verify(&token).map(|t| Some((t, in_url))),
            None => Ok(None),
        }
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
