//! [`AuthenticatorBuilder`]: every option of an [`Authenticator`], checked at
//! [`build`](AuthenticatorBuilder::build).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::issuer::{Globals, Issuer};
use super::rejection::{DEFAULT_REALM, Rejection};
use super::resource::ProtectedResource;
use super::{Authenticator, Shared};
use crate::dpop::{Dpop, DpopMode};
use crate::error::ConfigError;
use crate::keys::{Key, KeySet, SharedKeys};
use crate::token_source::{AuthorizationHeader, Sources, TokenSource};
use crate::validate::cache::{Cache, TokenCache};
use crate::validate::policy::Trusted;
use crate::validate::revocation::RevocationCheck;

/// Builds an [`Authenticator`]. Setters never fail; [`build`](Self::build) reports every
/// configuration mistake as a [`ConfigError`].
///
/// The defaults are the secure ones: issuer and audience must be configured, `exp` is required,
/// leeway is 60 s, tokens are at most 8 KiB, and HMAC is accepted only with an explicitly
/// configured secret.
#[must_use]
pub struct AuthenticatorBuilder {
    primary: Issuer,
    extra: Vec<Issuer>,
    #[cfg(feature = "remote")]
    http_client: Option<reqwest::Client>,
    #[cfg(feature = "remote")]
    remote: crate::keys::remote::RemoteConfig,
    leeway: Duration,
    max_token_size: usize,
    sources: Vec<Box<dyn TokenSource>>,
    realm: Cow<'static, str>,
    rejection: Option<Arc<dyn Rejection>>,
    resource: Option<ProtectedResource>,
    pub(crate) any_issuer: bool,
    pub(crate) any_audience: bool,
    pub(crate) allow_missing_exp: bool,
    pub(crate) accept_unverified_cnf: bool,
    token_cache: TokenCache,
    dpop: Option<Dpop>,
}

impl Default for AuthenticatorBuilder {
    fn default() -> Self {
        Self {
            primary: Issuer::default(),
            extra: Vec::new(),
            #[cfg(feature = "remote")]
            http_client: None,
            #[cfg(feature = "remote")]
            remote: crate::keys::remote::RemoteConfig::default(),
            leeway: Duration::from_secs(60),
            max_token_size: 8 * 1024,
            sources: Vec::new(),
            realm: Cow::Borrowed(DEFAULT_REALM),
            rejection: None,
            resource: None,
            any_issuer: false,
            any_audience: false,
            allow_missing_exp: false,
            accept_unverified_cnf: false,
            token_cache: TokenCache::new(),
            dpop: None,
        }
    }
}

/// The largest `max_token_size` a builder accepts.
const MAX_TOKEN_SIZE_LIMIT: usize = 1024 * 1024;

impl AuthenticatorBuilder {
    /// The issuer tokens must name in `iss`, compared exactly. Required (unless waived through
    /// [`dangerous`](crate::dangerous)). With the feature `remote` and no keys configured, the
    /// keys are discovered from it: its metadata (`/.well-known/openid-configuration`, else
    /// `/.well-known/oauth-authorization-server`) must name this exact issuer, and its
    /// `jwks_uri` becomes the `jwks_url`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.primary.issuer = Some(issuer.into());
        self
    }

    /// An audience this service accepts: the token's `aud` (a string or an array) must contain
    /// one of the configured audiences. Call again to accept several. At least one is required
    /// (unless waived through [`dangerous`](crate::dangerous)).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.primary = self.primary.audience(audience);
        self
    }

    /// The verified-token cache (on by default, [`TokenCache::new`](crate::TokenCache::new)):
    /// a token seen before skips signature verification and claim parsing, while `exp`, `nbf`,
    /// the revocation check and the key set are checked again on every request.
    /// [`TokenCache::disabled`](crate::TokenCache::disabled) turns it off.
    pub fn token_cache(mut self, cache: TokenCache) -> Self {
        self.token_cache = cache;
        self
    }

    /// Refuses tokens that `check` says are revoked (see [`RevocationCheck`](crate::validate::revocation::RevocationCheck)).
    pub fn revocation_check(mut self, check: impl RevocationCheck) -> Self {
        self.primary = self.primary.revocation_check(check);
        self
    }

    /// Adds a verification key.
    pub fn key(mut self, key: Key) -> Self {
        self.primary = self.primary.key(key);
        self
    }

    /// Adds every key of a set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.primary = self.primary.keys(keys);
        self
    }

    /// Adds the keys of a JWKS file, read by [`build`](Self::build) (a missing or malformed file
    /// is a [`ConfigError`] there). Unusable keys in it are skipped with a warning.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.primary = self.primary.jwks_file(path);
        self
    }

    /// Verifies with keys that another part of the process replaces whole (see
    /// [`SharedKeys`]): every request sees the set current when it arrived. Not combined with
    /// static keys, JWKS files or a JWKS URL.
    pub fn shared_keys(mut self, keys: SharedKeys) -> Self {
        self.primary = self.primary.shared_keys(keys);
        self
    }

    /// Fetches the keys from this JWKS URL (feature `remote`), caches them and refreshes them
    /// in the background: before they go stale (`Cache-Control: max-age` within
    /// [`jwks_refresh_bounds`](Self::jwks_refresh_bounds), `ETag` revalidation), and when a
    /// token names an unknown `kid` (single-flight, at most once per
    /// [`jwks_cooldown`](Self::jwks_cooldown)). A failed fetch keeps the previous keys.
    /// `https` is required, except for loopback hosts, and redirects must keep to that. Building
    /// needs a tokio runtime with time and IO enabled.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.primary = self.primary.jwks_url(url);
        self
    }

    /// The HTTP client for every fetch (proxies, custom CAs, timeouts of your own). Defaults to
    /// a reqwest client with rustls.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The bounds within which a JWKS response's `Cache-Control: max-age` sets the refresh
    /// interval. Defaults to 5 minutes and 24 hours; without `max-age`, 1 hour within them.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn jwks_refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.remote.min_refresh = min;
        self.remote.max_refresh = max;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s, so that a flood of forged
    /// kids costs at most one upstream request per cooldown; requests that arrive during such a
    /// fetch wait for it. Defaults to 30 seconds; must be more than zero.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn jwks_cooldown(mut self, cooldown: Duration) -> Self {
        self.remote.cooldown = cooldown;
        self
    }

    /// How long one JWKS fetch may take, body included. Defaults to 10 seconds.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn jwks_timeout(mut self, timeout: Duration) -> Self {
        self.remote.timeout = timeout;
        self
    }

    /// Also accepts tokens from another issuer, with its own audience, keys and claim mapping
    /// (multi-tenant). The token's `iss` picks the issuer; an unknown `iss` is refused before
    /// any key lookup or fetch. Leeway, token size, token sources, the HTTP client and the
    /// rejection are shared.
    pub fn trust(mut self, issuer: Issuer) -> Self {
        self.extra.push(issuer);
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Defaults to 60 seconds; at most 10
    /// minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires the header's `typ`, e.g. `"at+jwt"` for RFC 9068 access tokens (compared
    /// case-insensitively, `application/` optional). Defaults to no check, since many identity
    /// providers send `JWT`.
    pub fn require_type(mut self, typ: impl Into<String>) -> Self {
        self.primary = self.primary.require_type(typ);
        self
    }

    /// Requires the claim `name` to be present. Defaults to none beyond `exp`, `iss` and `aud`.
    pub fn required_claim(mut self, name: impl Into<String>) -> Self {
        self.primary = self.primary.required_claim(name);
        self
    }

    /// Requires the claim `name` (not a registered claim such as `iss` or `aud`, which have
    /// their own options) to equal `value`.
    pub fn required_claim_value(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        self.primary = self.primary.required_claim_value(name, value);
        self
    }

    /// Adds the strings at a claim path to the token's scopes, so that roles and permissions can
    /// be required like scopes: `["realm_access", "roles"]` for Keycloak realm roles,
    /// `["permissions"]` for Auth0 RBAC. The path is a list of member names, so names that
    /// contain dots (`"https://example.com/roles"`) work. The value there may be an array of
    /// strings or a space-delimited string; anything else adds nothing.
    pub fn scopes_from_claim<S: Into<String>>(mut self, path: impl IntoIterator<Item = S>) -> Self {
        self.primary = self.primary.scopes_from_claim(path);
        self
    }

    /// The longest token accepted, in bytes. Defaults to 8 KiB; at least 64 and at most 1 MiB.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// Also looks for the token in another place, such as a cookie
    /// ([`CookieToken`](crate::token_source::CookieToken)) or a query parameter
    /// ([`QueryToken`](crate::token_source::QueryToken)). The `Authorization` header is always read.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        // The header is always read; adding it again would count every token twice.
        if !(&source as &dyn std::any::Any).is::<AuthorizationHeader>() {
            self.sources.push(Box::new(source));
        }
        self
    }

    /// The realm named in `WWW-Authenticate` challenges. Defaults to `"api"`. Used by the
    /// default rejection only; a custom [`rejection`](Self::rejection) writes its own headers.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Cow::Owned(realm.into());
        self
    }

    /// Replaces the rejection response (status, headers, body). The layer still adds the
    /// [`AuthError`](crate::AuthError) to the response extensions.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use tower_oauth2::{AuthError, Authenticator};
    ///
    /// let builder = Authenticator::builder().rejection(|e: &AuthError| {
    ///     let mut r = Response::new(Bytes::from(format!("denied: {e}")));
    ///     *r.status_mut() = e.status();
    ///     r
    /// });
    /// # let _ = builder;
    /// ```
    pub fn rejection(mut self, rejection: impl Rejection) -> Self {
        self.rejection = Some(Arc::new(rejection));
        self
    }

    /// Describes this API as a protected resource (RFC 9728): its identifier becomes the
    /// audience tokens must carry (RFC 8707), added to the first issuer's audiences and used by
    /// every trusted issuer configured without one; the default rejection names the metadata
    /// document in `resource_metadata="…"`; and
    /// [`resource_metadata_router`](Authenticator::resource_metadata_router) serves it. See
    /// [`ProtectedResource`].
    pub fn protected_resource(mut self, resource: ProtectedResource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Accepts DPoP-bound tokens (RFC 9449) with proofs checked as `dpop` says: every issuer
    /// then takes both bearer and DPoP tokens ([`DpopMode::Allowed`]) unless its mode says
    /// otherwise ([`dpop_mode`](Self::dpop_mode), [`Issuer::dpop`](crate::Issuer::dpop)).
    /// Challenges name both schemes, with `algs`.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// How the first issuer's tokens may be presented (see [`Issuer::dpop`](crate::Issuer::dpop)).
    pub fn dpop_mode(mut self, mode: DpopMode) -> Self {
        self.primary = self.primary.dpop(mode);
        self
    }

    /// Validates the issuer's opaque tokens through its introspection endpoint (RFC 7662,
    /// feature `introspection`): see [`Issuer::introspection`](crate::Issuer::introspection) and
    /// [`Introspection`](crate::introspection::Introspection).
    #[cfg(feature = "introspection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
    pub fn introspection(mut self, introspection: crate::introspection::Introspection) -> Self {
        self.primary = self.primary.introspection(introspection);
        self
    }

    /// Checks the configuration and builds the authenticator.
    pub fn build(mut self) -> Result<Authenticator, ConfigError> {
        if self.leeway > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "leeway above 10 minutes is not a clock skew",
            ));
        }
        if self.max_token_size < 64 {
            return Err(ConfigError::new(
                "max_token_size below 64 bytes rejects every JWT",
            ));
        }
        // A verified token records its claims as 32-bit offsets; 1 MiB is far beyond any
        // access token and keeps them exact.
        if self.max_token_size > MAX_TOKEN_SIZE_LIMIT {
            return Err(ConfigError::new(format!(
                "max_token_size above {MAX_TOKEN_SIZE_LIMIT} bytes (1 MiB) is not supported"
            )));
        }
        if !self.extra.is_empty() && self.any_issuer {
            return Err(ConfigError::new(
                "accept_any_issuer cannot be combined with several trusted issuers",
            ));
        }
        let sources = Sources::new(self.sources);
        let resource = match self.resource.take() {
            Some(resource) => {
                let names: Vec<&str> = std::iter::once(&self.primary)
                    .chain(&self.extra)
                    .filter_map(|i| i.issuer.as_deref())
                    .collect();
                let metadata = resource.build(&names, &sources.bearer_methods())?;
                let audience = &metadata.resource;
                if !self.primary.audiences.contains(audience) {
                    self.primary.audiences.push(audience.clone());
                }
                for issuer in self.extra.iter_mut().filter(|i| i.audiences.is_empty()) {
                    issuer.audiences.push(audience.clone());
                }
                Some(metadata)
            }
            None => None,
        };
        let mut globals = Globals {
            leeway: self.leeway.as_secs(),
            max_token_size: self.max_token_size,
            require_exp: !self.allow_missing_exp,
            any_issuer: self.any_issuer,
            any_audience: self.any_audience,
            accept_unverified_cnf: self.accept_unverified_cnf,
            dpop: self.dpop.is_some(),
            #[cfg(feature = "remote")]
            http_client: self.http_client,
            #[cfg(feature = "remote")]
            remote: self.remote,
        };
        let mut built = vec![self.primary.build(&globals)?];
        globals.any_issuer = false;
        globals.any_audience = false;
        for issuer in self.extra {
            built.push(issuer.build(&globals)?);
        }
        #[cfg(feature = "introspection")]
        let mut introspector = None;
        let mut issuers: Vec<Trusted> = Vec::with_capacity(built.len());
        for (index, built) in built.into_iter().enumerate() {
            let trusted = built.trusted;
            #[cfg(not(feature = "introspection"))]
            let _ = index;
            #[cfg(feature = "introspection")]
            if let Some(introspection) = built.introspection {
                if introspector.is_some() {
                    return Err(ConfigError::new(
                        "introspection is configured for two issuers: an opaque token names no \
                         issuer, so only one may introspect",
                    ));
                }
                let name = trusted.policy.issuer.as_deref().unwrap_or_default();
                introspector = Some(introspection.build(name, index, globals.client()?)?);
            }
            if issuers
                .iter()
                .any(|t| t.policy.issuer == trusted.policy.issuer)
            {
                return Err(ConfigError::new(format!(
                    "issuer {} is configured twice",
                    trusted.policy.issuer.as_deref().unwrap_or_default()
                )));
            }
            issuers.push(trusted);
        }
        Trusted::share_capture(&mut issuers);
        if let Some(metadata) = &resource {
            for trusted in &mut issuers {
                if trusted.policy.audiences.contains(&metadata.resource) {
                    trusted.policy.resource = Some(metadata.resource.as_str().into());
                }
            }
        }
        let dpop = match self.dpop {
            Some(dpop) if issuers.iter().any(|t| t.dpop != DpopMode::BearerOnly) => {
                Some(dpop.build()?)
            }
            _ => None,
        };
        let mut resource = resource;
        if let (Some(metadata), Some(checker)) = (&mut resource, &dpop) {
            let required = issuers.iter().all(|t| t.dpop == DpopMode::Required);
            metadata.add_dpop(checker.algs(), required);
        }
        let leeways = issuers.iter().map(|t| t.policy.leeway).collect();
        let telemetry =
            crate::telemetry::Telemetry::new(issuers.iter().map(|t| t.policy.issuer.clone()));
        Ok(Authenticator {
            shared: Arc::new(Shared {
                layer_rejection: std::sync::OnceLock::new(),
                telemetry,
                cache: Cache::new(self.token_cache, leeways),
                issuers,
                sources,
                rejection: self.rejection,
                resource,
                realm: self.realm.into(),
                dpop,
                #[cfg(feature = "introspection")]
                introspection: introspector,
            }),
        })
    }
}

impl fmt::Debug for AuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatorBuilder")
            .field("issuer", &self.primary)
            .field("more_issuers", &self.extra)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl From<Issuer> for AuthenticatorBuilder {
    /// A builder whose first issuer is `issuer`, with every other option at its default: for
    /// an issuer described once and used both alone and beside others
    /// ([`trust`](AuthenticatorBuilder::trust)).
    fn from(issuer: Issuer) -> Self {
        Self {
            primary: issuer,
            ..Self::default()
        }
    }
}
