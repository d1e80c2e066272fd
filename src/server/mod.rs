//! The authorization server (feature `server`): an axum [`Router`] an app mounts to issue
//! tokens to its own API clients, without running a separate identity server.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_oauth2::server::{AuthorizationServer, MemoryStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = AuthorizationServer::builder()
//!     .issuer("https://api.example.com")
//!     .store(MemoryStore::new())
//!     .access_token_lifetime("1h".parse()?)
//!     .build()?;
//! let api = Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .layer(server.authenticator().layer()); // validates this server's tokens in process
//! let app = Router::new()
//!     .nest("/oauth2", server.router()) // /token /revoke /introspect /authorize /jwks.json
//!     .merge(server.metadata_router()) // /.well-known/oauth-authorization-server
//!     .nest("/admin", server.admin_router()) // protect it, e.g. with an admin scope
//!     .merge(api);
//! # let _ = app; Ok(()) }
//! ```
//!
//! - **Token endpoint** (`POST /token`, RFC 6749): `client_credentials`; `refresh_token` with
//!   rotation and reuse detection (a rotated-out refresh token presented again revokes its whole
//!   family, access tokens included); `authorization_code` with PKCE S256 and exact
//!   `redirect_uri` matching, after an app-supplied [`ConsentHandler`] approved the request at
//!   `/authorize`; `password` only with an app-supplied [`PasswordVerifier`] (a legacy grant;
//!   prefer the authorization code).
//! - **Clients** authenticate with `client_secret_basic` or `client_secret_post`. Secrets are
//!   256 random bits, shown once, stored as a [`SecretHash`], compared in constant time. Failed
//!   authentications are rate limited per client id and per peer address (the peer is known when
//!   the app serves with `into_make_service_with_connect_info::<SocketAddr>()`).
//! - **Access tokens** are JWTs per RFC 9068 (`typ: at+jwt`; `iss`, `sub`, `aud`, `exp`, `iat`,
//!   `jti`, `client_id`, `scope`), signed with a [`SigningKey`] (ES256 by default, EdDSA or
//!   RS256). [`rotate_signing_key`](AuthorizationServer::rotate_signing_key) keeps a retired
//!   key in the JWKS until the last token it signed has expired. Refresh tokens and codes are
//!   opaque random strings, stored hashed.
//! - **Revocation** (RFC 7009) and **introspection** (RFC 7662), for authenticated clients.
//! - **Metadata** (RFC 8414) and the **JWKS** of the signing keys.
//! - **Admin API** ([`admin_router`](AuthorizationServer::admin_router)): JSON endpoints to
//!   register, approve, reject, list, show, disable and delete clients, rotate a secret, list a
//!   client's tokens and revoke one. The app must protect it.
//! - **Audit**: a `tracing` event (target `tower_oauth2::audit`) for every token issued or
//!   refused, every revocation and every admin action.
//!
//! Errors are RFC 6749 §5.2 JSON bodies; bad input is never a 500, repeated parameters are
//! `invalid_request`, and every token response carries `Cache-Control: no-store`.

mod admin;
mod audit;
mod authorize;
mod client_auth;
mod http;
mod introspect;
mod lifetime;
mod metadata;
mod revoke;
mod secret;
mod signing;
pub mod store;
mod token;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use jsonwebtoken::Algorithm;

use crate::authenticator::{Authenticator, AuthenticatorBuilder};
use crate::error::ConfigError;
use crate::issuer::Issuer;
use crate::keys::KeySet;
use crate::validate::{self, VerifiedToken};

pub use authorize::{AuthorizationRequest, ConsentDecision, ConsentHandler};
pub use lifetime::{LifetimeError, TokenLifetime};
pub use secret::{ClientSecret, SecretError, SecretHash};
pub use signing::SigningKey;
pub use store::{MemoryStore, Store, StoreError};
pub use token::PasswordVerifier;

/// The boxed future the app's hooks return.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether newly registered clients may authenticate at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalPolicy {
    /// Clients are approved when registered (the default).
    #[default]
    Automatic,
    /// Clients are registered pending; an administrator approves or rejects them.
    Manual,
}

/// An authorization server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct AuthorizationServer {
    state: Arc<ServerState>,
}

/// Everything the endpoints share.
pub(crate) struct ServerState {
    pub(crate) issuer: String,
    /// Where [`AuthorizationServer::router`] is mounted, for the metadata's endpoint URLs.
    pub(crate) endpoint_base: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ring: ArcSwap<KeyRing>,
    /// The verification keys of the ring, shared with the authenticators this server hands out.
    pub(crate) verify_keys: Arc<ArcSwap<KeySet>>,
    pub(crate) denylist: Arc<Denylist>,
    pub(crate) access_lifetime: TokenLifetime,
    pub(crate) refresh_lifetime: TokenLifetime,
    pub(crate) code_lifetime: Duration,
    pub(crate) allow_unlimited: bool,
    pub(crate) approval: ApprovalPolicy,
    pub(crate) consent: Option<Arc<dyn ConsentHandler>>,
    pub(crate) password: Option<Arc<dyn PasswordVerifier>>,
    pub(crate) limiter: client_auth::RateLimiter,
    pub(crate) authenticator: Authenticator,
    /// Seconds of clock skew the authenticator allows: how long past `exp` a revoked token's
    /// `jti` must stay on the denylist.
    pub(crate) leeway: u64,
    /// Serializes changes to the key ring (rotation, pruning); readers never take it.
    ring_lock: std::sync::Mutex<()>,
}

impl AuthorizationServer {
    /// Starts configuring a server.
    pub fn builder() -> AuthorizationServerBuilder {
        AuthorizationServerBuilder::default()
    }

    /// The token, revocation, introspection, authorization and JWKS endpoints: `POST /token`,
    /// `POST /revoke`, `POST /introspect`, `GET|POST /authorize`, `GET /jwks.json`. Mount it
    /// where [`endpoint_base`](AuthorizationServerBuilder::endpoint_base) says (by default
    /// `/oauth2`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/token", post(token::handle))
            .route("/revoke", post(revoke::handle))
            .route("/introspect", post(introspect::handle))
            .route("/authorize", get(authorize::handle).post(authorize::handle))
            .route("/jwks.json", get(metadata::jwks))
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(Arc::clone(&self.state))
    }

    /// The RFC 8414 metadata document at `/.well-known/oauth-authorization-server` (with the
    /// issuer's path appended, as RFC 8414 §3 says). Merge it at the root of the app.
    pub fn metadata_router(&self) -> Router {
        let path = metadata::well_known_path(&self.state.issuer);
        Router::new()
            .route(&path, get(metadata::document))
            .with_state(Arc::clone(&self.state))
    }

    /// The admin API (JSON): see the [module documentation](self). It performs no
    /// authorization of its own: put it behind the app's admin authentication, e.g.
    /// `server.authenticator().layer()` with [`RequireScope`](crate::RequireScope).
    pub fn admin_router(&self) -> Router {
        admin::router(Arc::clone(&self.state))
    }

    /// An authenticator for this server's access tokens: it shares the signing keys directly
    /// (no HTTP hop, rotation seen at once) and refuses revoked tokens. It requires
    /// `typ: at+jwt`, this issuer and one of the server's audiences.
    pub fn authenticator(&self) -> Authenticator {
        self.state.authenticator.clone()
    }

    /// The same trust as [`authenticator`](Self::authenticator), as an [`Issuer`] to combine
    /// with external identity providers through
    /// [`AuthenticatorBuilder::trust`](crate::AuthenticatorBuilder::trust).
    pub fn trusted_issuer(&self) -> Issuer {
        self.state.trusted_issuer()
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The store this server keeps its clients and tokens in.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.state.store)
    }

    /// The key id new tokens are signed with.
    pub fn signing_key_id(&self) -> String {
        self.state.ring.load().active.key.kid().to_owned()
    }

    /// Makes `key` the signing key. The previous key stays in the JWKS, and keeps verifying in
    /// this server's authenticators, until the last token it signed has expired (forever if it
    /// signed an unlimited token).
    pub fn rotate_signing_key(&self, key: SigningKey) -> Result<(), ConfigError> {
        self.state.rotate(key)
    }

    /// Loads the store's revoked, unexpired access tokens into the denylist the server's
    /// authenticators consult; returns how many. [`build`](AuthorizationServerBuilder::build)
    /// does this in the background when it runs inside a Tokio runtime; call it yourself (and
    /// await it before serving) when the server was built outside one, or after revoking
    /// through [`store`](Self::store) directly.
    pub async fn load_revocations(&self) -> Result<usize, StoreError> {
        self.state.load_revocations().await
    }

    /// Registers a client directly (as the admin API does), e.g. a demo client at start-up.
    /// `secret` sets its secret; `None` generates one. Returns the client and, when generated,
    /// the secret to hand over once.
    pub async fn register_client(
        &self,
        registration: ClientRegistration,
    ) -> Result<(store::ClientRecord, Option<ClientSecret>), RegistrationError> {
        admin::register(&self.state, registration).await
    }
}

impl fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.state.issuer)
            .field("signing_key", &self.state.ring.load().active.key)
            .finish_non_exhaustive()
    }
}

pub use admin::{ClientRegistration, RegistrationError};

impl ServerState {
    fn trusted_issuer(&self) -> Issuer {
        trust(
            &self.issuer,
            &self.audiences,
            &self.verify_keys,
            &self.denylist,
            self.allow_unlimited,
        )
    }

    /// The lifetimes a client's tokens get.
    pub(crate) fn lifetimes(&self, client: &store::ClientRecord) -> (TokenLifetime, TokenLifetime) {
        (
            client.access_token_lifetime.unwrap_or(self.access_lifetime),
            client
                .refresh_token_lifetime
                .unwrap_or(self.refresh_lifetime),
        )
    }

    /// Signs an access token's claims with the active key and notes its expiry on the key.
    pub(crate) fn sign(
        &self,
        claims: &serde_json::Value,
        exp: Option<u64>,
    ) -> Result<String, String> {
        let ring = self.ring.load();
        ring.active.note_expiry(exp);
        ring.active.key.sign("at+jwt", claims)
    }

    fn rotate(&self, key: SigningKey) -> Result<(), ConfigError> {
        let verify = key.verification_key()?;
        let _changing = self
            .ring_lock
            .lock()
            .map_err(|_| ConfigError::new("key ring lock poisoned"))?;
        let now = validate::now();
        let current = self.ring.load_full();
        if current.active.key.kid() == key.kid()
            || current.retired.iter().any(|r| r.key.kid() == key.kid())
        {
            return Err(ConfigError::new(format!(
                "signing key {} is already in use",
                key.kid()
            )));
        }
        let mut retired: Vec<RingKey> = current
            .retired
            .iter()
            .filter(|r| r.needed_at(now))
            .cloned()
            .collect();
        retired.push(current.active.clone());
        let ring = KeyRing {
            active: RingKey::new(key, verify),
            retired,
        };
        self.publish(ring);
        tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "signing_key_rotated",
            kid = self.ring.load().active.key.kid(),
            "signing key rotated"
        );
        Ok(())
    }

    /// Installs a ring and the verification keys derived from it.
    fn publish(&self, ring: KeyRing) {
        let keys = KeySet::new(
            std::iter::once(ring.active.verify.clone())
                .chain(ring.retired.iter().map(|r| r.verify.clone())),
        );
        self.ring.store(Arc::new(ring));
        self.verify_keys.store(Arc::new(keys));
    }

    /// Drops retired keys whose tokens have all expired, and expired denylist entries.
    fn prune(&self, now: u64) {
        self.denylist.prune(now.saturating_sub(self.leeway));
        let ring = self.ring.load_full();
        if !ring.retired.iter().any(|r| !r.needed_at(now)) {
            return;
        }
        let Ok(_changing) = self.ring_lock.lock() else {
            return;
        };
        // Reloaded under the lock: a rotation may have landed in between.
        let ring = self.ring.load_full();
        let retired = ring
            .retired
            .iter()
            .filter(|r| r.needed_at(now))
            .cloned()
            .collect();
        self.publish(KeyRing {
            active: ring.active.clone(),
            retired,
        });
    }

    /// Puts the store's revoked, unexpired access tokens on the in-memory denylist.
    pub(crate) async fn load_revocations(&self) -> Result<usize, StoreError> {
        let revoked = self
            .store
            .revoked_access_tokens(validate::now().saturating_sub(self.leeway))
            .await?;
        self.denylist.extend(&revoked);
        Ok(revoked.len())
    }
}

/// The active signing key and the retired ones still published.
pub(crate) struct KeyRing {
    pub(crate) active: RingKey,
    pub(crate) retired: Vec<RingKey>,
}

impl KeyRing {
    /// Every published key, active first.
    pub(crate) fn published(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.active.key).chain(self.retired.iter().map(|r| &r.key))
    }
}

/// A signing key with its verification key and the latest expiry of any token it signed.
#[derive(Clone)]
pub(crate) struct RingKey {
    pub(crate) key: SigningKey,
    verify: crate::keys::Key,
    /// The latest `exp` signed (`u64::MAX` once an unlimited token was signed).
    last_exp: Arc<AtomicU64>,
}

/// Clock skew allowed for when deciding a retired key is no longer needed.
const RETIRE_SLACK: u64 = 300;

impl RingKey {
    fn new(key: SigningKey, verify: crate::keys::Key) -> Self {
        Self {
            key,
            verify,
            last_exp: Arc::new(AtomicU64::new(0)),
        }
    }

    fn note_expiry(&self, exp: Option<u64>) {
        self.last_exp
            .fetch_max(exp.unwrap_or(u64::MAX), Ordering::AcqRel);
    }

    /// Whether a token this key signed may still be valid at `now`.
    fn needed_at(&self, now: u64) -> bool {
        self.last_exp
            .load(Ordering::Acquire)
            .saturating_add(RETIRE_SLACK)
            > now
    }
}

/// The `jti`s of revoked access tokens that have not expired, for the in-process
/// authenticators. Copy-on-write: readers never lock.
#[derive(Default)]
pub(crate) struct Denylist {
    entries: ArcSwap<HashMap<String, Option<u64>>>,
}

impl Denylist {
    pub(crate) fn contains(&self, jti: &str) -> bool {
        let entries = self.entries.load();
        !entries.is_empty() && entries.contains_key(jti)
    }

    /// Adds the access tokens among `tokens`.
    pub(crate) fn extend(&self, tokens: &[store::TokenRecord]) {
        let access: Vec<_> = tokens
            .iter()
            .filter(|t| t.kind == store::TokenKind::Access)
            .map(|t| (t.id.clone(), t.expires_at))
            .collect();
        if access.is_empty() {
            return;
        }
        self.entries.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.extend(access.iter().cloned());
            next
        });
    }

    fn prune(&self, now: u64) {
        if self
            .entries
            .load()
            .values()
            .all(|exp| exp.is_none_or(|e| e > now))
        {
            return;
        }
        self.entries.rcu(|current| {
            current
                .iter()
                .filter(|(_, exp)| exp.is_none_or(|e| e > now))
                .map(|(k, v)| (k.clone(), *v))
                .collect::<HashMap<_, _>>()
        });
    }
}

struct DenylistCheck(Arc<Denylist>);

impl crate::RevocationCheck for DenylistCheck {
    fn is_revoked(&self, token: &VerifiedToken) -> bool {
        token.jwt_id().is_some_and(|jti| self.0.contains(jti))
    }
}

/// Configures an [`AuthorizationServer`]. Setters never fail; [`build`](Self::build) reports
/// every mistake as a [`ConfigError`].
#[must_use]
pub struct AuthorizationServerBuilder {
    issuer: Option<String>,
    endpoint_base: Option<String>,
    audiences: Vec<String>,
    store: Option<Arc<dyn Store>>,
    signing_key: Option<SigningKey>,
    signing_algorithm: Algorithm,
    access_lifetime: TokenLifetime,
    refresh_lifetime: TokenLifetime,
    code_lifetime: Duration,
    allow_unlimited: bool,
    approval: ApprovalPolicy,
    consent: Option<Arc<dyn ConsentHandler>>,
    password: Option<Arc<dyn PasswordVerifier>>,
    auth_failures: (u32, Duration),
    leeway: Duration,
}

impl Default for AuthorizationServerBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            endpoint_base: None,
            audiences: Vec::new(),
            store: None,
            signing_key: None,
            signing_algorithm: Algorithm::ES256,
            access_lifetime: TokenLifetime::Limited(Duration::from_secs(3600)),
            refresh_lifetime: TokenLifetime::Limited(Duration::from_secs(30 * 86_400)),
            code_lifetime: Duration::from_secs(60),
            allow_unlimited: false,
            approval: ApprovalPolicy::Automatic,
            consent: None,
            password: None,
            auth_failures: (10, Duration::from_secs(60)),
            leeway: Duration::from_secs(60),
        }
    }
}

impl AuthorizationServerBuilder {
    /// The issuer identifier (`iss`): an `https` URL without query or fragment (`http` only on
    /// a loopback host). Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The absolute URL [`router`](AuthorizationServer::router) is mounted at, for the
    /// metadata's endpoint URLs. Defaults to the issuer followed by `/oauth2`.
    pub fn endpoint_base(mut self, url: impl Into<String>) -> Self {
        self.endpoint_base = Some(url.into());
        self
    }

    /// An audience (`aud`) of the access tokens: the API identifier. Repeatable; the first is
    /// put in tokens, and the server's authenticator accepts any. Defaults to the issuer.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Where clients, codes and tokens are kept. Required: [`MemoryStore`] for tests and demos.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store shared with other parts of the app.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The key to sign with. Without one, a key for
    /// [`signing_algorithm`](Self::signing_algorithm) is generated at build (and lost on
    /// restart: tokens issued before it no longer verify).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// The algorithm of a generated signing key: `ES256` (default), `EdDSA` or `RS256`.
    pub fn signing_algorithm(mut self, alg: Algorithm) -> Self {
        self.signing_algorithm = alg;
        self
    }

    /// How long access tokens live (default 1 hour); a client's own lifetime overrides it.
    /// [`TokenLifetime::Unlimited`] needs [`allow_unlimited_access_tokens`](Self::allow_unlimited_access_tokens).
    pub fn access_token_lifetime(mut self, lifetime: TokenLifetime) -> Self {
        self.access_lifetime = lifetime;
        self
    }

    /// How long refresh tokens live (default 30 days), counted from each rotation.
    pub fn refresh_token_lifetime(mut self, lifetime: TokenLifetime) -> Self {
        self.refresh_lifetime = lifetime;
        self
    }

    /// How long an authorization code may wait to be redeemed (default 60 s, at most 10 min).
    pub fn authorization_code_lifetime(mut self, lifetime: Duration) -> Self {
        self.code_lifetime = lifetime;
        self
    }

    /// Lets the server (or a client's registration) issue access tokens without `exp`, and its
    /// authenticator accept them. Off by default: such a token is valid until revoked.
    pub fn allow_unlimited_access_tokens(mut self, allow: bool) -> Self {
        self.allow_unlimited = allow;
        self
    }

    /// Whether new clients start approved or pending (default [`ApprovalPolicy::Automatic`]).
    pub fn approval_policy(mut self, policy: ApprovalPolicy) -> Self {
        self.approval = policy;
        self
    }

    /// The app's consent decision for `/authorize`; without one the authorization-code grant is
    /// off.
    pub fn consent_handler(mut self, handler: impl ConsentHandler) -> Self {
        self.consent = Some(Arc::new(handler));
        self
    }

    /// Turns on the (legacy) `password` grant, checking credentials with `verifier`.
    pub fn password_verifier(mut self, verifier: impl PasswordVerifier) -> Self {
        self.password = Some(Arc::new(verifier));
        self
    }

    /// Failed client authentications allowed per client id, and per peer address, within
    /// `window` before further attempts get 429 (default 10 per minute).
    pub fn client_auth_rate_limit(mut self, max_failures: u32, window: Duration) -> Self {
        self.auth_failures = (max_failures, window);
        self
    }

    /// Clock skew the server's authenticator allows (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Checks the configuration and builds the server. Inside a Tokio runtime, a background
    /// task purges expired codes and tokens every 10 minutes while the server lives.
    pub fn build(self) -> Result<AuthorizationServer, ConfigError> {
        let issuer = self
            .issuer
            .ok_or_else(|| ConfigError::new("no issuer configured: call .issuer(..)"))?;
        check_url(&issuer, "issuer")?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let endpoint_base = match self.endpoint_base {
            Some(base) => {
                check_url(&base, "endpoint_base")?;
                base.trim_end_matches('/').to_owned()
            }
            None => format!("{issuer}/oauth2"),
        };
        let store = self.store.ok_or_else(|| {
            ConfigError::new("no store configured: call .store(MemoryStore::new()) or another")
        })?;
        let mut audiences = self.audiences;
        if audiences.iter().any(String::is_empty) {
            return Err(ConfigError::new("audience must not be empty"));
        }
        if audiences.is_empty() {
            audiences.push(issuer.clone());
        }
        if self.access_lifetime == TokenLifetime::Unlimited && !self.allow_unlimited {
            return Err(ConfigError::new(
                "access_token_lifetime is unlimited: also call \
                 .allow_unlimited_access_tokens(true), knowing such tokens never expire",
            ));
        }
        for lifetime in [self.access_lifetime, self.refresh_lifetime] {
            check_lifetime(lifetime).map_err(ConfigError::new)?;
        }
        if self.code_lifetime.is_zero() || self.code_lifetime > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "authorization_code_lifetime must be between 1 s and 10 min (RFC 6749 §4.1.2)",
            ));
        }
        if self.auth_failures.0 == 0 || self.auth_failures.1.is_zero() {
            return Err(ConfigError::new(
                "client_auth_rate_limit needs at least one failure and a positive window",
            ));
        }
        let key = match self.signing_key {
            Some(key) => key,
            None => SigningKey::generate(self.signing_algorithm)?,
        };
        let verify = key.verification_key()?;
        let active = RingKey::new(key, verify.clone());
        let verify_keys = Arc::new(ArcSwap::from_pointee(KeySet::new([verify])));
        let denylist = Arc::new(Denylist::default());

        let issuer_trust = trust(
            &issuer,
            &audiences,
            &verify_keys,
            &denylist,
            self.allow_unlimited,
        );
        let authenticator = AuthenticatorBuilder::for_issuer(issuer_trust)
            .leeway(self.leeway)
            .build()?;

        let state = Arc::new(ServerState {
            issuer,
            endpoint_base,
            audiences,
            store,
            ring: ArcSwap::from_pointee(KeyRing {
                active,
                retired: Vec::new(),
            }),
            verify_keys,
            denylist,
            access_lifetime: self.access_lifetime,
            refresh_lifetime: self.refresh_lifetime,
            code_lifetime: self.code_lifetime,
            allow_unlimited: self.allow_unlimited,
            approval: self.approval,
            consent: self.consent,
            password: self.password,
            limiter: client_auth::RateLimiter::new(self.auth_failures.0, self.auth_failures.1),
            authenticator,
            leeway: self.leeway.as_secs(),
            ring_lock: std::sync::Mutex::new(()),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(housekeeping(Arc::downgrade(&state)));
        }
        Ok(AuthorizationServer { state })
    }
}

impl fmt::Debug for AuthorizationServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServerBuilder")
            .field("issuer", &self.issuer)
            .field("access_lifetime", &self.access_lifetime)
            .field("refresh_lifetime", &self.refresh_lifetime)
            .finish_non_exhaustive()
    }
}

/// The longest limited lifetime: beyond it, use `unlimited` (a NumericDate must stay readable).
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A limited lifetime must be positive and at most 100 years.
pub(crate) fn check_lifetime(lifetime: TokenLifetime) -> Result<(), String> {
    match lifetime.duration() {
        Some(d) if d.is_zero() => Err("token lifetimes must be positive".into()),
        Some(d) if d > MAX_LIFETIME => {
            Err("token lifetimes above 100 years must be written `unlimited`".into())
        }
        _ => Ok(()),
    }
}

/// How this server's authenticators trust its tokens.
fn trust(
    issuer: &str,
    audiences: &[String],
    verify_keys: &Arc<ArcSwap<KeySet>>,
    denylist: &Arc<Denylist>,
    allow_unlimited: bool,
) -> Issuer {
    let mut trust = Issuer::new(issuer)
        .require_type("at+jwt")
        .revocation_check(DenylistCheck(Arc::clone(denylist)));
    for audience in audiences {
        trust = trust.audience(audience.clone());
    }
    trust.live_keys = Some(Arc::clone(verify_keys));
    trust.allow_missing_exp = allow_unlimited;
    trust
}

/// An issuer or endpoint URL: https (http only on a loopback host), no query or fragment.
fn check_url(url: &str, what: &str) -> Result<(), ConfigError> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => rest.split(['/', ':']).next().unwrap_or_default(),
        };
        if !matches!(host, "localhost" | "127.0.0.1" | "::1") {
            return Err(ConfigError::new(format!(
                "{what} {url:?} must use https (http only on a loopback host)"
            )));
        }
        rest
    } else {
        return Err(ConfigError::new(format!(
            "{what} {url:?} must be an https URL"
        )));
    };
    if rest.is_empty() || rest.starts_with('/') || url.contains(['?', '#']) {
        return Err(ConfigError::new(format!(
            "{what} {url:?} needs a host and no query or fragment"
        )));
    }
    Ok(())
}

/// Purges expired rows and retired keys while the server lives.
async fn housekeeping(state: Weak<ServerState>) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    let mut loaded = false;
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if !loaded {
            match state.load_revocations().await {
                Ok(_) => loaded = true,
                Err(error) => tracing::warn!(
                    target: "tower_oauth2::server",
                    %error,
                    "loading revoked tokens from the store failed; retrying"
                ),
            }
        }
        let now = validate::now();
        state.prune(now);
        match state.store.purge_expired(now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(target: "tower_oauth2::server", purged = n, "expired rows purged")
            }
            Err(error) => {
                tracing::warn!(target: "tower_oauth2::server", %error, "purging expired rows failed")
            }
        }
    }
}
