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
//!     .build()
//!     .await?;
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
mod seal;
mod secret;
mod signing;
pub mod store;
mod token;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::authenticator::{Authenticator, AuthenticatorBuilder, Issuer, RevocationCheck};
use crate::dangerous::DangerousIssuerExt;
use crate::error::ConfigError;
use crate::keys::{Algorithm, KeySet, SharedKeys};
use crate::time;
use crate::token::VerifiedToken;

pub use authorize::{AuthorizationRequest, ConsentDecision, ConsentHandler};
pub use lifetime::{LifetimeError, TokenLifetime};
pub use secret::{ClientSecret, SecretError, SecretHash};
pub use signing::SigningKey;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
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
    pub(crate) verify_keys: SharedKeys,
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
    ring_lock: tokio::sync::Mutex<()>,
    /// Whether the signing keys live in the store (generated and shared by every instance)
    /// rather than being given to the builder.
    keys_in_store: bool,
    /// Seals stored private keys, when the app configured a key-encryption secret.
    sealer: Option<seal::Sealer>,
    /// Where the denylist sync has read the store's revocation log up to.
    revocation_cursor: tokio::sync::Mutex<u64>,
    /// How often the store is polled for revocations and signing keys.
    sync_interval: Duration,
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
    /// this server's authenticators, until every token it can have signed has expired: the
    /// longest access-token lifetime of the server and its clients, plus the leeway (forever if
    /// any is unlimited). With keys kept in the store, the rotation is stored, and other
    /// instances pick it up within the sync interval.
    pub async fn rotate_signing_key(&self, key: SigningKey) -> Result<(), StoreError> {
        self.state.rotate(key).await
    }

    /// Reads the revocations the store logged since the last sync into the denylist the
    /// server's authenticators consult; returns how many were new to it. The server does this
    /// every [`sync_interval`](AuthorizationServerBuilder::sync_interval) in the background;
    /// call it to apply a revocation made through [`store`](Self::store) at once.
    pub async fn load_revocations(&self) -> Result<usize, StoreError> {
        self.state.sync_revocations().await
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

    /// Signs an access token's claims with the active key.
    pub(crate) fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        self.ring.load().active.key.sign("at+jwt", claims)
    }

    /// Until when a key retired now must stay published: every access token it can have
    /// signed has expired by then. `None`: forever.
    async fn retire_until(&self, now: u64) -> Result<Option<u64>, StoreError> {
        let mut longest = self.access_lifetime.duration();
        for client in self.store.clients().await? {
            match client.access_token_lifetime {
                None => {}
                Some(TokenLifetime::Unlimited) => longest = None,
                Some(TokenLifetime::Limited(d)) => longest = longest.map(|l| l.max(d)),
            }
            if longest.is_none() {
                break;
            }
        }
        Ok(longest.map(|d| now + d.as_secs() + 1 + self.leeway))
    }

    async fn rotate(&self, key: SigningKey) -> Result<(), StoreError> {
        let verify = key
            .verification_key()
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let _changing = self.ring_lock.lock().await;
        let now = time::now();
        let current = self.ring.load_full();
        if current.published().any(|k| k.kid() == key.kid()) {
            return Err(StoreError::Conflict(format!(
                "signing key {} is already in use",
                key.kid()
            )));
        }
        let until = self.retire_until(now).await?;
        if self.keys_in_store {
            let record = self.key_record(&key, now)?;
            self.store.rotate_signing_key(record, until).await?;
        }
        let mut retired: Vec<RingKey> = current
            .retired
            .iter()
            .filter(|r| r.needed_at(now, self.leeway))
            .cloned()
            .collect();
        let mut old = current.active.clone();
        old.until = until.map_or(Until::Forever, Until::Time);
        retired.push(old);
        self.publish(KeyRing {
            active: RingKey::new(key, verify, Until::Active),
            retired,
        });
        tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "signing_key_rotated",
            kid = self.ring.load().active.key.kid(),
            "signing key rotated"
        );
        Ok(())
    }

    /// A key as the store keeps it, sealed when a key-encryption secret is configured.
    fn key_record(
        &self,
        key: &SigningKey,
        now: u64,
    ) -> Result<store::SigningKeyRecord, StoreError> {
        let der = key.private_der();
        let (private_key, encrypted) = match &self.sealer {
            Some(sealer) => (
                sealer
                    .seal(key.kid(), der)
                    .map_err(StoreError::Unavailable)?,
                true,
            ),
            None => (der.to_vec(), false),
        };
        Ok(store::SigningKeyRecord {
            kid: key.kid().to_owned(),
            algorithm: signing::alg_name(key.algorithm()).to_owned(),
            private_key,
            encrypted,
            created_at: now,
            active: false,
            retired_until: None,
        })
    }

    /// Rebuilds the ring from the store's keys when they differ from the ring's.
    async fn sync_keys(&self) -> Result<(), StoreError> {
        let records = self.store.signing_keys().await?;
        let ring = self.ring.load();
        let same = records.iter().filter(|r| r.active).count() == 1
            && records
                .iter()
                .any(|r| r.active && r.kid == ring.active.key.kid())
            && records
                .iter()
                .filter(|r| !r.active)
                .all(|r| ring.retired.iter().any(|k| k.key.kid() == r.kid));
        if same {
            return Ok(());
        }
        let _changing = self.ring_lock.lock().await;
        match ring_from_records(&records, self.sealer.as_ref()) {
            Ok(Some(ring)) => self.publish(ring),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(target: "tower_oauth2::server", %error, "stored signing keys are unusable");
            }
        }
        Ok(())
    }

    /// Installs a ring and the verification keys derived from it.
    fn publish(&self, ring: KeyRing) {
        let keys = KeySet::new(
            std::iter::once(ring.active.verify.clone())
                .chain(ring.retired.iter().map(|r| r.verify.clone())),
        );
        self.ring.store(Arc::new(ring));
        self.verify_keys.replace(keys);
    }

    /// Drops retired keys whose tokens have all expired, and expired denylist entries.
    fn prune(&self, now: u64) {
        self.denylist.prune(now.saturating_sub(self.leeway));
        let ring = self.ring.load_full();
        if !ring.retired.iter().any(|r| !r.needed_at(now, self.leeway)) {
            return;
        }
        // A rotation in progress will prune when it publishes; try again next time.
        let Ok(_changing) = self.ring_lock.try_lock() else {
            return;
        };
        // Reloaded under the lock: a rotation may have landed in between.
        let ring = self.ring.load_full();
        let retired = ring
            .retired
            .iter()
            .filter(|r| r.needed_at(now, self.leeway))
            .cloned()
            .collect();
        self.publish(KeyRing {
            active: ring.active.clone(),
            retired,
        });
    }

    /// Reads the store's revocation log since the last sync into the denylist.
    pub(crate) async fn sync_revocations(&self) -> Result<usize, StoreError> {
        let mut cursor = self.revocation_cursor.lock().await;
        let (revoked, next) = self.store.revocations_since(*cursor).await?;
        *cursor = next;
        Ok(self
            .denylist
            .add(revoked.into_iter().map(|r| (r.jti, r.expires_at))))
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

/// How long a key stays in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Until {
    /// The active key.
    Active,
    /// Retired, published until this time (plus the leeway).
    Time(u64),
    /// Retired, but it may have signed a token that never expires.
    Forever,
}

/// A signing key with its verification key and how long it stays published.
#[derive(Clone)]
pub(crate) struct RingKey {
    pub(crate) key: SigningKey,
    verify: crate::keys::Key,
    until: Until,
}

impl RingKey {
    fn new(key: SigningKey, verify: crate::keys::Key, until: Until) -> Self {
        Self { key, verify, until }
    }

    /// Whether a token this key signed may still be valid at `now`.
    fn needed_at(&self, now: u64, leeway: u64) -> bool {
        match self.until {
            Until::Active | Until::Forever => true,
            Until::Time(t) => t.saturating_add(leeway) > now,
        }
    }
}

/// The ring the store's key records describe; `None` without an active key.
fn ring_from_records(
    records: &[store::SigningKeyRecord],
    sealer: Option<&seal::Sealer>,
) -> Result<Option<KeyRing>, ConfigError> {
    let mut active = None;
    let mut retired = Vec::new();
    for record in records {
        let der = match (record.encrypted, sealer) {
            (false, Some(_)) => {
                tracing::warn!(
                    target: "tower_oauth2::server",
                    kid = %record.kid,
                    "stored signing key is not sealed (it predates key_encryption_secret); \
                     rotate the signing key to replace it with a sealed one"
                );
                record.private_key.clone()
            }
            (false, None) => record.private_key.clone(),
            (true, Some(sealer)) => sealer
                .open(&record.kid, &record.private_key)
                .map_err(ConfigError::new)?,
            (true, None) => {
                return Err(ConfigError::new(format!(
                    "stored signing key {} is sealed: configure key_encryption_secret",
                    record.kid
                )));
            }
        };
        let key = SigningKey::from_der(&record.algorithm, &der, &record.kid)?;
        let verify = key.verification_key()?;
        if record.active {
            active = Some(RingKey::new(key, verify, Until::Active));
        } else {
            let until = record.retired_until.map_or(Until::Forever, Until::Time);
            retired.push(RingKey::new(key, verify, until));
        }
    }
    Ok(active.map(|active| KeyRing { active, retired }))
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
        self.add(
            tokens
                .iter()
                .filter(|t| t.kind == store::TokenKind::Access)
                .map(|t| (t.id.clone(), t.expires_at)),
        );
    }

    /// Adds `(jti, exp)` entries; returns how many were new.
    pub(crate) fn add(&self, entries: impl IntoIterator<Item = (String, Option<u64>)>) -> usize {
        let current = self.entries.load();
        let new: Vec<_> = entries
            .into_iter()
            .filter(|(jti, _)| !current.contains_key(jti))
            .collect();
        if new.is_empty() {
            return 0;
        }
        self.entries.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.extend(new.iter().cloned());
            next
        });
        new.len()
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

impl RevocationCheck for DenylistCheck {
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
    key_encryption_secret: Option<Vec<u8>>,
    sync_interval: Duration,
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
            key_encryption_secret: None,
            sync_interval: Duration::from_secs(1),
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

    /// The key to sign with, managed by the application (it is not stored). Without one, the
    /// store's keys are used, or a key for [`signing_algorithm`](Self::signing_algorithm) is
    /// generated and saved there at build (lost on restart only with [`MemoryStore`]).
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

    /// Seals the signing keys the server keeps in its store with AES-256-GCM under a key
    /// derived from `secret` (at least 32 bytes; keep it outside the database, like Hydra's
    /// system secret). Without it, stored private keys are plain DER.
    pub fn key_encryption_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.key_encryption_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How often revocations and signing keys are read from the store (default 1 s): the
    /// longest a revocation made by another instance goes unnoticed by this one's
    /// authenticators, and a rotation by its JWKS.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Clock skew the server's authenticator allows (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Checks the configuration, loads (or creates) the signing keys and the revocations from
    /// the store, and builds the server. While the server lives, background tasks sync
    /// revocations and signing keys from the store every
    /// [`sync_interval`](Self::sync_interval) and purge expired rows every 10 minutes.
    pub async fn build(self) -> Result<AuthorizationServer, ConfigError> {
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
        if self.sync_interval.is_zero() {
            return Err(ConfigError::new("sync_interval must be positive"));
        }
        let sealer = self
            .key_encryption_secret
            .as_deref()
            .map(seal::Sealer::new)
            .transpose()?;
        let keys_in_store = self.signing_key.is_none();
        let unreachable =
            |e: StoreError| ConfigError::new(format!("the store could not be read: {e}"));
        let ring = match self.signing_key {
            Some(key) => {
                let verify = key.verification_key()?;
                KeyRing {
                    active: RingKey::new(key, verify, Until::Active),
                    retired: Vec::new(),
                }
            }
            None => {
                let stored = store.signing_keys().await.map_err(unreachable)?;
                match ring_from_records(&stored, sealer.as_ref())? {
                    Some(ring) => ring,
                    None => {
                        // The first instance creates the key; a racing one gets the winner's.
                        let key = SigningKey::generate(self.signing_algorithm)?;
                        let der = key.private_der();
                        let (private_key, encrypted) = match &sealer {
                            Some(sealer) => {
                                (sealer.seal(key.kid(), der).map_err(ConfigError::new)?, true)
                            }
                            None => (der.to_vec(), false),
                        };
                        let record = store::SigningKeyRecord {
                            kid: key.kid().to_owned(),
                            algorithm: signing::alg_name(key.algorithm()).to_owned(),
                            private_key,
                            encrypted,
                            created_at: time::now(),
                            active: true,
                            retired_until: None,
                        };
                        let active = store.init_signing_key(record).await.map_err(unreachable)?;
                        ring_from_records(&[active], sealer.as_ref())?
                            .ok_or_else(|| ConfigError::new("the store kept no active key"))?
                    }
                }
            }
        };
        let verify_keys = SharedKeys::new(KeySet::new(
            std::iter::once(ring.active.verify.clone())
                .chain(ring.retired.iter().map(|r| r.verify.clone())),
        ));
        let denylist = Arc::new(Denylist::default());

        let issuer_trust = trust(
            &issuer,
            &audiences,
            &verify_keys,
            &denylist,
            self.allow_unlimited,
        );
        let authenticator = AuthenticatorBuilder::from(issuer_trust)
            .leeway(self.leeway)
            .build()?;

        let state = Arc::new(ServerState {
            issuer,
            endpoint_base,
            audiences,
            store,
            ring: ArcSwap::from_pointee(ring),
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
            ring_lock: tokio::sync::Mutex::new(()),
            keys_in_store,
            sealer,
            revocation_cursor: tokio::sync::Mutex::new(0),
            sync_interval: self.sync_interval,
        });
        state.sync_revocations().await.map_err(unreachable)?;
        tokio::spawn(housekeeping(Arc::downgrade(&state)));
        tokio::spawn(sync_loop(Arc::downgrade(&state)));
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
    verify_keys: &SharedKeys,
    denylist: &Arc<Denylist>,
    allow_unlimited: bool,
) -> Issuer {
    let mut trust = Issuer::new(issuer)
        .require_type("at+jwt")
        .shared_keys(verify_keys.clone())
        .revocation_check(DenylistCheck(Arc::clone(denylist)));
    for audience in audiences {
        trust = trust.audience(audience.clone());
    }
    if allow_unlimited {
        trust = trust.allow_missing_exp();
    }
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
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let now = time::now();
        state.prune(now);
        let purged = async {
            // Revocations stay in the log while validators may still accept the token.
            let rows = state
                .store
                .purge_expired(now.saturating_sub(state.leeway))
                .await?;
            let keys = state
                .store
                .purge_signing_keys(now.saturating_sub(state.leeway))
                .await?;
            Ok::<_, StoreError>(rows + keys)
        };
        match purged.await {
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

/// Keeps the denylist and the key ring in step with the store (other instances' revocations
/// and rotations). While the store is unreachable the last synced state stays in force.
async fn sync_loop(state: Weak<ServerState>) {
    let interval = match state.upgrade() {
        Some(state) => state.sync_interval,
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signal = state
        .upgrade()
        .and_then(|state| state.store.revocation_signal());
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        match &mut signal {
            Some(receiver) => {
                tokio::select! {
                    _ = ticker.tick() => {}
                    changed = receiver.changed() => {
                        if changed.is_err() {
                            // The store stopped pushing: polling goes on.
                            signal = None;
                        }
                    }
                }
            }
            None => {
                ticker.tick().await;
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        let result = async {
            state.sync_revocations().await?;
            if state.keys_in_store {
                state.sync_keys().await?;
            }
            Ok::<_, StoreError>(())
        };
        match (result.await, failing_since) {
            (Ok(()), None) => {}
            (Ok(()), Some(since)) => {
                failing_since = None;
                tracing::info!(
                    target: "tower_oauth2::server",
                    stale_for = ?since.elapsed(),
                    "store reachable again; revocations and keys are in sync"
                );
            }
            (Err(error), None) => {
                failing_since = Some(std::time::Instant::now());
                tracing::warn!(
                    target: "tower_oauth2::server",
                    %error,
                    "store unreachable: validating with the last synced denylist and keys, \
                     which may be stale"
                );
            }
            (Err(_), Some(_)) => {}
        }
    }
}
