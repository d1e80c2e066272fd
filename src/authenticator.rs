//! [`Authenticator`]: the validation policy and keys, shared by every layer built from it.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Uri};
use serde_json::Value;

use crate::error::{AuthError, ConfigError, DefaultRejection, Rejection};
use crate::keys::{Key, KeySet, KeySource};
use crate::layer::BearerAuthLayer;
use crate::token_source::{Sources, TokenSource};
use crate::validate::{self, Policy, VerifiedToken};

/// The realm named in `WWW-Authenticate` challenges unless configured otherwise.
pub(crate) const DEFAULT_REALM: &str = "api";

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
    shared: Arc<Shared>,
}

struct Shared {
    policy: Policy,
    keys: KeySource,
    sources: Sources,
    rejection: Arc<dyn Rejection>,
}

impl Authenticator {
    /// Starts a builder with the secure defaults.
    pub fn builder() -> AuthenticatorBuilder {
        AuthenticatorBuilder::default()
    }

    /// The tower layer that authenticates every request with this authenticator.
    pub fn layer(&self) -> BearerAuthLayer {
        BearerAuthLayer::new(self.clone())
    }

    /// Validates one token string: header, claims syntax, issuer, key and signature, then the
    /// remaining claims. For code outside tower (a WebSocket
    /// handshake, a message consumer) that has the token in hand.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let keys = self.shared.keys.snapshot();
        validate::verify(token, &self.shared.policy, &keys, validate::now())
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

    /// Whether `error` comes from a key this authenticator's remote key set may not have yet,
    /// and a refetch is allowed now (none started within the cooldown).
    pub(crate) fn may_refetch_keys(&self, error: &AuthError) -> bool {
        match &self.shared.keys {
            #[cfg(feature = "remote")]
            KeySource::Remote(remote) => {
                matches!(
                    error.kind(),
                    crate::AuthErrorKind::UnknownKey | crate::AuthErrorKind::KeysUnavailable
                ) && remote.may_refetch()
            }
            _ => {
                let _ = error;
                false
            }
        }
    }

    /// Refetches the remote key set for an unknown `kid` (single-flight, rate-limited).
    pub(crate) async fn refetch_keys(&self) {
        #[cfg(feature = "remote")]
        if let KeySource::Remote(remote) = &self.shared.keys {
            remote.refetch_for_unknown_kid().await;
        }
    }

    /// Fetches the remote JWKS now and installs it. Call it once after
    /// [`build`](AuthenticatorBuilder::build) to fail fast when the keys cannot be had at start;
    /// without it, the authenticator starts empty, fetches in the background, and answers 401
    /// ("keys are not available") until a fetch succeeds. A no-op for static keys.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub async fn refresh_keys(&self) -> Result<(), crate::KeyFetchError> {
        match &self.shared.keys {
            KeySource::Remote(remote) => remote.refresh().await.map(|_| ()),
            KeySource::Static(_) => Ok(()),
        }
    }

    /// The state of the remote key source (last fetch, last error, key ids, fetch count), for
    /// health endpoints; `None` for static keys.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn key_source_state(&self) -> Option<crate::KeySourceState> {
        match &self.shared.keys {
            KeySource::Remote(remote) => Some(remote.state()),
            KeySource::Static(_) => None,
        }
    }

    pub(crate) fn rejection(&self) -> Arc<dyn Rejection> {
        Arc::clone(&self.shared.rejection)
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = &self.shared.policy;
        f.debug_struct("Authenticator")
            .field("issuer", &policy.issuer)
            .field("audiences", &policy.audiences)
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Authenticator`]. Setters never fail; [`build`](Self::build) reports every
/// configuration mistake as a [`ConfigError`].
///
/// The defaults are the secure ones: issuer and audience must be configured, `exp` is required,
/// leeway is 60 s, tokens are at most 8 KiB, and HMAC is accepted only with an explicitly
/// configured secret.
#[must_use]
pub struct AuthenticatorBuilder {
    issuer: Option<String>,
    audiences: Vec<String>,
    keys: KeySet,
    jwks_files: Vec<PathBuf>,
    #[cfg(feature = "remote")]
    jwks_url: Option<String>,
    #[cfg(feature = "remote")]
    http_client: Option<reqwest::Client>,
    #[cfg(feature = "remote")]
    remote: crate::keys::remote::RemoteConfig,
    leeway: Duration,
    typ: Option<String>,
    required: Vec<(Box<str>, Option<Value>)>,
    scope_paths: Vec<Vec<String>>,
    max_token_size: usize,
    sources: Vec<Box<dyn TokenSource>>,
    realm: Cow<'static, str>,
    rejection: Option<Arc<dyn Rejection>>,
    pub(crate) any_issuer: bool,
    pub(crate) any_audience: bool,
    pub(crate) allow_missing_exp: bool,
}

impl Default for AuthenticatorBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            keys: KeySet::default(),
            jwks_files: Vec::new(),
            #[cfg(feature = "remote")]
            jwks_url: None,
            #[cfg(feature = "remote")]
            http_client: None,
            #[cfg(feature = "remote")]
            remote: crate::keys::remote::RemoteConfig::default(),
            leeway: Duration::from_secs(60),
            typ: None,
            required: Vec::new(),
            scope_paths: Vec::new(),
            max_token_size: 8 * 1024,
            sources: Vec::new(),
            realm: Cow::Borrowed(DEFAULT_REALM),
            rejection: None,
            any_issuer: false,
            any_audience: false,
            allow_missing_exp: false,
        }
    }
}

impl AuthenticatorBuilder {
    /// The issuer tokens must name in `iss`, compared exactly. Required (unless waived through
    /// [`dangerous`](crate::dangerous)). With the feature `remote` and no keys configured, the
    /// keys are discovered from it: its metadata (`/.well-known/openid-configuration`, else
    /// `/.well-known/oauth-authorization-server`) must name this exact issuer, and its
    /// `jwks_uri` becomes the [`jwks_url`](Self::jwks_url).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An audience this service accepts: the token's `aud` (a string or an array) must contain
    /// one of the configured audiences. Call again to accept several. At least one is required
    /// (unless waived through [`dangerous`](crate::dangerous)).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds a verification key.
    pub fn key(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// Adds every key of a set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        for key in keys.keys() {
            self.keys.push(key.clone());
        }
        self
    }

    /// Adds the keys of a JWKS file, read by [`build`](Self::build) (a missing or malformed file
    /// is a [`ConfigError`] there). Unusable keys in it are skipped with a warning.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.jwks_files.push(path.into());
        self
    }

    /// Fetches the keys from this JWKS URL (feature `remote`), caches them and refreshes them
    /// in the background: before they go stale (`Cache-Control: max-age` within
    /// [`jwks_refresh_bounds`](Self::jwks_refresh_bounds), `ETag` revalidation), and when a
    /// token names an unknown `kid` (single-flight, at most once per
    /// [`jwks_cooldown`](Self::jwks_cooldown)). A failed fetch keeps the previous keys.
    /// `https` is required, except for loopback hosts. Building needs a tokio runtime.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
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
    /// kids costs at most one upstream request per cooldown. Defaults to 30 seconds.
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
        self.typ = Some(typ.into());
        self
    }

    /// Requires the claim `name` to be present. Defaults to none beyond `exp`, `iss` and `aud`.
    pub fn required_claim(mut self, name: impl Into<String>) -> Self {
        self.required.push((name.into().into_boxed_str(), None));
        self
    }

    /// Requires the claim `name` (not a registered claim such as `iss` or `aud`, which have
    /// their own options) to equal `value`.
    pub fn required_claim_value(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        self.required
            .push((name.into().into_boxed_str(), Some(value.into())));
        self
    }

    /// Adds the strings at a claim path to the token's scopes, so that roles and permissions can
    /// be required like scopes: `["realm_access", "roles"]` for Keycloak realm roles,
    /// `["permissions"]` for Auth0 RBAC. The path is a list of member names, so names that
    /// contain dots (`"https://example.com/roles"`) work. The value there may be an array of
    /// strings or a space-delimited string; anything else adds nothing.
    pub fn scopes_from_claim<S: Into<String>>(mut self, path: impl IntoIterator<Item = S>) -> Self {
        self.scope_paths
            .push(path.into_iter().map(Into::into).collect());
        self
    }

    /// The longest token accepted, in bytes. Defaults to 8 KiB.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// Also looks for the token in another place, such as a cookie
    /// ([`CookieToken`](crate::CookieToken)) or a query parameter
    /// ([`QueryToken`](crate::QueryToken)). The `Authorization` header is always read.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        // The header is always read; adding it again would count every token twice.
        if !(&source as &dyn std::any::Any).is::<crate::AuthorizationHeader>() {
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
    /// [`AuthError`] to the response extensions.
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

    /// Checks the configuration and builds the authenticator.
    pub fn build(self) -> Result<Authenticator, ConfigError> {
        let issuer = match (self.issuer, self.any_issuer) {
            (Some(issuer), _) if issuer.is_empty() => {
                return Err(ConfigError::new("issuer must not be empty"));
            }
            (Some(issuer), _) => Some(issuer),
            (None, true) => None,
            (None, false) => {
                return Err(ConfigError::new(
                    "no issuer configured: call .issuer(..) with the `iss` your tokens carry",
                ));
            }
        };
        if self.audiences.is_empty() && !self.any_audience {
            return Err(ConfigError::new(
                "no audience configured: call .audience(..) with this API's identifier",
            ));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(ConfigError::new("audience must not be empty"));
        }
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
        for (name, value) in &self.required {
            if name.is_empty() {
                return Err(ConfigError::new("a required claim needs a name"));
            }
            if value.is_some() && validate::REGISTERED.contains(&&**name) {
                return Err(ConfigError::new(format!(
                    "required_claim_value(\"{name}\", ..): `{name}` is a registered claim; \
                     use its own option (issuer, audience, ...)"
                )));
            }
        }
        if self
            .scope_paths
            .iter()
            .any(|p| p.is_empty() || p.iter().any(String::is_empty))
        {
            return Err(ConfigError::new(
                "scopes_from_claim needs a non-empty path of names",
            ));
        }
        let mut keys = self.keys;
        for path in &self.jwks_files {
            let set = KeySet::from_jwks_file(path)?;
            if set.is_empty() {
                return Err(ConfigError::new(format!(
                    "{}: the JWKS has no usable signature key",
                    path.display()
                )));
            }
            for key in set.keys() {
                keys.push(key.clone());
            }
        }
        #[cfg(feature = "remote")]
        let source = {
            use crate::keys::remote::Location;
            match (self.jwks_url, &issuer) {
                (Some(_), _) if !keys.is_empty() => {
                    return Err(ConfigError::new(
                        "configure either a JWKS URL or static keys, not both",
                    ));
                }
                (Some(url), _) => start_remote(Location::Url(url), self.http_client, self.remote)?,
                // No keys at all: discover them from the issuer's metadata.
                (None, Some(issuer)) if keys.is_empty() => start_remote(
                    Location::Discover {
                        issuer: issuer.clone(),
                    },
                    self.http_client,
                    self.remote,
                )?,
                (None, _) => KeySource::Static(keys),
            }
        };
        #[cfg(not(feature = "remote"))]
        let source = KeySource::Static(keys);
        if let KeySource::Static(keys) = &source
            && keys.is_empty()
        {
            return Err(ConfigError::new(
                "no verification key configured: add .key(..), .keys(..) or .jwks_file(..)",
            ));
        }
        let mut policy = Policy {
            issuer,
            audiences: self.audiences,
            leeway: self.leeway.as_secs(),
            require_exp: !self.allow_missing_exp,
            typ: self.typ,
            max_token_size: self.max_token_size,
            required: self.required,
            scope_paths: self.scope_paths,
            capture: Vec::new(),
        };
        policy.finish();
        let rejection = self
            .rejection
            .unwrap_or_else(|| Arc::new(DefaultRejection::new(self.realm.into_owned())));
        Ok(Authenticator {
            shared: Arc::new(Shared {
                policy,
                keys: source,
                sources: Sources::new(self.sources),
                rejection,
            }),
        })
    }
}

impl fmt::Debug for AuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatorBuilder")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// Checks the URL and the limits, then starts the remote key source.
#[cfg(feature = "remote")]
fn start_remote(
    location: crate::keys::remote::Location,
    client: Option<reqwest::Client>,
    config: crate::keys::remote::RemoteConfig,
) -> Result<KeySource, ConfigError> {
    use crate::keys::remote::{Location, check_url};
    match &location {
        Location::Url(url) => check_url(url)?,
        Location::Discover { issuer } => check_url(issuer).map_err(|e| {
            ConfigError::new(format!("discovery from the issuer needs an https URL: {e}"))
        })?,
    }
    if config.min_refresh > config.max_refresh || config.min_refresh.is_zero() {
        return Err(ConfigError::new("jwks_refresh_bounds: need 0 < min <= max"));
    }
    if config.timeout.is_zero() {
        return Err(ConfigError::new("jwks_timeout must be more than zero"));
    }
    let client = match client {
        Some(client) => client,
        None => reqwest::Client::builder()
            .build()
            .map_err(|e| ConfigError::new(format!("cannot create the HTTP client: {e}")))?,
    };
    let remote = crate::keys::remote::RemoteJwks::start(location, client, config)?;
    Ok(KeySource::Remote(remote))
}
