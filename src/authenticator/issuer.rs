//! [`Issuer`]: one trusted token issuer with its own audience, keys and claim mapping, for an
//! [`Authenticator`](crate::Authenticator) that accepts tokens from several (multi-tenant).

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::dpop::DpopMode;
use crate::error::ConfigError;
use crate::jose::claims::REGISTERED;
use crate::keys::{Key, KeySet, KeySource, SharedKeys};
use crate::validate::policy::{Policy, Trusted};
use crate::validate::revocation::RevocationCheck;

/// One trusted issuer. The token's `iss` picks the issuer whose settings apply; a token from an
/// issuer that is not configured is refused before any key lookup or fetch.
///
/// The [`AuthenticatorBuilder`](crate::AuthenticatorBuilder)'s own `issuer`, `audience`, keys
/// and claim options describe the first issuer; add more with
/// [`AuthenticatorBuilder::trust`](crate::AuthenticatorBuilder::trust).
///
/// ```
/// use tower_oauth2::{Algorithm, Authenticator, Issuer, Key};
///
/// # fn main() -> Result<(), tower_oauth2::ConfigError> {
/// let auth = Authenticator::builder()
///     .issuer("https://login.tenant-a.example")
///     .audience("orders-api")
///     .key(Key::hmac([1u8; 32], Algorithm::HS256)?)
///     .trust(
///         Issuer::new("https://idp.tenant-b.example/realms/b")
///             .audience("account")
///             .key(Key::hmac([2u8; 32], Algorithm::HS256)?)
///             .scopes_from_claim(["realm_access", "roles"]),
///     )
///     .build()?;
/// # let _ = auth; Ok(()) }
/// ```
#[derive(Default)]
#[must_use]
pub struct Issuer {
    pub(crate) issuer: Option<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) keys: KeySet,
    pub(crate) jwks_files: Vec<PathBuf>,
    #[cfg(feature = "remote")]
    pub(crate) jwks_url: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) required: Vec<(Box<str>, Option<Value>)>,
    pub(crate) scope_paths: Vec<Vec<String>>,
    pub(crate) revocation: Option<std::sync::Arc<dyn RevocationCheck>>,
    /// Tokens of this issuer may omit `exp` (set through [`dangerous`](crate::dangerous)).
    pub(crate) allow_missing_exp: bool,
    /// Tokens of this issuer with `cnf` are accepted as bearer tokens (set through
    /// [`dangerous`](crate::dangerous)).
    pub(crate) accept_unverified_cnf: bool,
    /// Keys another part of the process keeps current.
    pub(crate) shared_keys: Option<SharedKeys>,
    /// How this issuer's tokens may be presented; `None`: the default for the configuration.
    pub(crate) dpop: Option<DpopMode>,
    /// Tokens that are not its JWTs go to its introspection endpoint.
    #[cfg(feature = "introspection")]
    pub(crate) introspection: Option<crate::introspection::Introspection>,
}

impl Issuer {
    /// An issuer whose tokens carry exactly this `iss`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: Some(issuer.into()),
            ..Self::default()
        }
    }

    /// An audience accepted from this issuer (repeatable; at least one).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// A verification key of this issuer.
    pub fn key(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// Every key of a set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        for key in keys.keys() {
            self.keys.push(key.clone());
        }
        self
    }

    /// The keys of a JWKS file, read when the authenticator is built.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.jwks_files.push(path.into());
        self
    }

    /// Keys of this issuer that another part of the process replaces whole (see
    /// [`SharedKeys`]). Not combined with static keys, JWKS files or a JWKS URL.
    pub fn shared_keys(mut self, keys: SharedKeys) -> Self {
        self.shared_keys = Some(keys);
        self
    }

    /// This issuer's JWKS URL (feature `remote`). Without keys, a file or a URL, the URL is
    /// discovered from the issuer's metadata.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// How this issuer's tokens may be presented: as bearer tokens, with DPoP proofs
    /// (RFC 9449), or either. Without it: [`DpopMode::Allowed`] when the authenticator has a
    /// [`Dpop`](crate::dpop::Dpop) configuration, else [`DpopMode::BearerOnly`]. A mode other
    /// than `BearerOnly` needs that configuration.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop = Some(mode);
        self
    }

    /// Validates this issuer's opaque tokens through its introspection endpoint (RFC 7662,
    /// feature `introspection`; see [`Introspection`](crate::introspection::Introspection)).
    /// With keys (static, a file or a JWKS URL) too, a JWS naming this issuer is still verified
    /// locally; without any, no JWKS is discovered and every token of this issuer is
    /// introspected. At most one issuer of an authenticator introspects: an opaque token names
    /// no issuer, and it must not be sent to another's endpoint.
    #[cfg(feature = "introspection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
    pub fn introspection(mut self, introspection: crate::introspection::Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// Requires the header's `typ` (e.g. `"at+jwt"`) on this issuer's tokens.
    pub fn require_type(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Requires the claim `name` on this issuer's tokens.
    pub fn required_claim(mut self, name: impl Into<String>) -> Self {
        self.required.push((name.into().into_boxed_str(), None));
        self
    }

    /// Requires the (non-registered) claim `name` to equal `value` on this issuer's tokens.
    pub fn required_claim_value(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        self.required
            .push((name.into().into_boxed_str(), Some(value.into())));
        self
    }

    /// Adds the strings at a claim path of this issuer's tokens to their scopes (see
    /// [`AuthenticatorBuilder::scopes_from_claim`](crate::AuthenticatorBuilder::scopes_from_claim)).
    pub fn scopes_from_claim<S: Into<String>>(mut self, path: impl IntoIterator<Item = S>) -> Self {
        self.scope_paths
            .push(path.into_iter().map(Into::into).collect());
        self
    }

    /// Refuses this issuer's tokens that `check` says are revoked (see [`RevocationCheck`]).
    ///
    /// [`RevocationCheck`]: crate::RevocationCheck
    pub fn revocation_check(mut self, check: impl RevocationCheck) -> Self {
        self.revocation = Some(std::sync::Arc::new(check));
        self
    }

    /// Checks this issuer's settings and builds its policy and key source, and hands back its
    /// introspection settings, which the builder starts once the issuer's index is known.
    pub(crate) fn build(self, globals: &Globals) -> Result<Built, ConfigError> {
        let name = self.issuer.clone().unwrap_or_else(|| "(any issuer)".into());
        let context = |e: &str| ConfigError::new(format!("issuer {name}: {e}"));
        let issuer = match (self.issuer, globals.any_issuer) {
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
        if self.audiences.is_empty() && !globals.any_audience {
            return Err(context(
                "no audience configured: call .audience(..) with this API's identifier",
            ));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(context("audience must not be empty"));
        }
        for (claim, value) in &self.required {
            if claim.is_empty() {
                return Err(context("a required claim needs a name"));
            }
            if value.is_some() && REGISTERED.contains(&&**claim) {
                return Err(context(&format!(
                    "required_claim_value(\"{claim}\", ..): `{claim}` is a registered claim; \
                     use its own option (issuer, audience, ...)"
                )));
            }
        }
        if self
            .scope_paths
            .iter()
            .any(|p| p.is_empty() || p.iter().any(String::is_empty))
        {
            return Err(context("scopes_from_claim needs a non-empty path of names"));
        }
        #[cfg(feature = "remote")]
        let url_configured = self.jwks_url.is_some();
        #[cfg(not(feature = "remote"))]
        let url_configured = false;
        let other_keys = !self.keys.is_empty() || !self.jwks_files.is_empty() || url_configured;
        #[cfg(feature = "introspection")]
        let introspection = self.introspection;
        #[cfg(not(feature = "introspection"))]
        let introspection: Option<()> = None;
        // An introspecting issuer without keys of any kind verifies no JWT itself.
        let jwt = other_keys || self.shared_keys.is_some() || introspection.is_none();
        if self.shared_keys.is_some() && other_keys {
            return Err(context(
                "configure either shared keys or static keys, JWKS files and a JWKS URL",
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
                // Shared keys: neither fetched nor discovered.
                (None, _) if self.shared_keys.is_some() => KeySource::Static(KeySet::default()),
                (Some(_), _) if !keys.is_empty() => {
                    return Err(context(
                        "configure either a JWKS URL or static keys, not both",
                    ));
                }
                (Some(url), _) => globals.start_remote(Location::Url(url), &name)?,
                // Introspection only: no keys to fetch or discover.
                (None, _) if !jwt => KeySource::Static(KeySet::default()),
                // No keys at all: discover them from the issuer's metadata.
                (None, Some(issuer)) if keys.is_empty() => globals.start_remote(
                    Location::Discover {
                        issuer: issuer.clone(),
                    },
                    &name,
                )?,
                (None, _) => KeySource::Static(keys),
            }
        };
        #[cfg(not(feature = "remote"))]
        let source = KeySource::Static(keys);
        let source = match self.shared_keys {
            Some(shared) => KeySource::Shared(shared),
            None => source,
        };
        if let KeySource::Static(keys) = &source
            && keys.is_empty()
            && jwt
        {
            return Err(ConfigError::new(
                "no verification key configured: add .key(..), .keys(..) or .jwks_file(..)",
            ));
        }
        let policy = Policy {
            issuer,
            audiences: self.audiences,
            resource: None,
            leeway: globals.leeway,
            require_exp: globals.require_exp && !self.allow_missing_exp,
            refuse_unverified_cnf: !(globals.accept_unverified_cnf || self.accept_unverified_cnf),
            typ: self.typ,
            max_token_size: globals.max_token_size,
            required: self.required,
            scope_paths: self.scope_paths,
            capture: Vec::new(),
        };
        let dpop = match (self.dpop, globals.dpop) {
            (Some(DpopMode::BearerOnly), _) => DpopMode::BearerOnly,
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "a DPoP mode other than BearerOnly needs .dpop(Dpop::new(external_url)) on \
                     the builder: proofs are checked against the service's URL",
                ));
            }
            (Some(mode), true) => mode,
            (None, true) => DpopMode::Allowed,
            (None, false) => DpopMode::BearerOnly,
        };
        #[cfg(feature = "introspection")]
        if introspection.is_some() && policy.issuer.is_none() {
            return Err(ConfigError::new(
                "introspection needs a configured issuer, not accept_any_issuer",
            ));
        }
        let trusted = Trusted {
            policy,
            keys: source,
            revocation: self.revocation,
            dpop,
            jwt,
        };
        Ok(Built {
            trusted,
            #[cfg(feature = "introspection")]
            introspection,
        })
    }
}

/// What [`Issuer::build`] hands back.
pub(crate) struct Built {
    pub(crate) trusted: Trusted,
    #[cfg(feature = "introspection")]
    pub(crate) introspection: Option<crate::introspection::Introspection>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The settings every issuer of one authenticator shares.
pub(crate) struct Globals {
    pub(crate) leeway: u64,
    pub(crate) max_token_size: usize,
    pub(crate) require_exp: bool,
    pub(crate) any_issuer: bool,
    pub(crate) any_audience: bool,
    pub(crate) accept_unverified_cnf: bool,
    /// The authenticator checks DPoP proofs.
    pub(crate) dpop: bool,
    #[cfg(feature = "remote")]
    pub(crate) http_client: Option<reqwest::Client>,
    #[cfg(feature = "remote")]
    pub(crate) remote: crate::keys::remote::RemoteConfig,
}

#[cfg(feature = "remote")]
impl Globals {
    /// Checks the URL and the limits, then starts a remote key source.
    fn start_remote(
        &self,
        location: crate::keys::remote::Location,
        issuer: &str,
    ) -> Result<KeySource, ConfigError> {
        use crate::keys::remote::{Location, RemoteJwks, check_url};
        match &location {
            Location::Url(url) => check_url(url)?,
            Location::Discover { issuer } => check_url(issuer).map_err(|e| {
                ConfigError::new(format!("discovery from the issuer needs an https URL: {e}"))
            })?,
        }
        let config = &self.remote;
        if config.min_refresh > config.max_refresh || config.min_refresh.is_zero() {
            return Err(ConfigError::new("jwks_refresh_bounds: need 0 < min <= max"));
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::new("jwks_timeout must be more than zero"));
        }
        if config.cooldown.is_zero() {
            return Err(ConfigError::new(
                "jwks_cooldown must be more than zero: it is the rate limit on refetches",
            ));
        }
        Ok(KeySource::Remote(RemoteJwks::start(
            location,
            issuer,
            self.client()?,
            config.clone(),
        )?))
    }

    /// The configured HTTP client, or a new one that checks every redirect.
    pub(crate) fn client(&self) -> Result<reqwest::Client, ConfigError> {
        match &self.http_client {
            Some(client) => Ok(client.clone()),
            None => reqwest::Client::builder()
                .redirect(crate::keys::remote::redirect_policy())
                .build()
                .map_err(|e| ConfigError::new(format!("cannot create the HTTP client: {e}"))),
        }
    }
}
