//! [`AuthorizationServerBuilder`]: the server's configuration, its checks, and
//! [`build`](AuthorizationServerBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::authenticator::{AuthenticatorBuilder, Issuer};
use crate::dangerous::DangerousIssuerExt;
use crate::error::ConfigError;
use crate::keys::{Algorithm, KeySet, SharedKeys};
use crate::time;

use super::background::{housekeeping, sync_loop};
use super::denylist::{Denylist, DenylistCheck};
use super::ring::{KeyRing, RingKey, Until, ring_from_records};
use super::{
    ApprovalPolicy, AuthorizationServer, ConsentHandler, PasswordVerifier, ServerState, SigningKey,
    Store, StoreError, TokenLifetime, client_auth, seal, signing, store,
};

/// Configures an [`AuthorizationServer`]. Setters never fail; [`build`](Self::build) reports
/// every mistake as a [`ConfigError`].
#[must_use]
pub struct AuthorizationServerBuilder {
    issuer: Option<String>,
    endpoint_base: Option<String>,
    audiences: Vec<String>,
    resource_servers: Vec<super::ResourceServer>,
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
    claims: Option<Arc<dyn super::ClaimsHook>>,
    registration: Option<super::DynamicRegistration>,
    refresh_grace: Option<Duration>,
    #[cfg(feature = "remote")]
    client_metadata: Option<super::ClientIdMetadata>,
    auth_failures: (u32, Duration),
    leeway: Duration,
    key_encryption_secret: Option<Vec<u8>>,
    sync_interval: Duration,
    accept_json: bool,
    dpop_algorithms: Option<Vec<crate::keys::Algorithm>>,
    dpop_nonce_secret: Option<Vec<u8>>,
    audit_retention: (Duration, u64),
    approver_directory: Option<Arc<dyn super::ApproverDirectory>>,
    notifier: Option<Arc<dyn super::Notifier>>,
}

impl Default for AuthorizationServerBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            endpoint_base: None,
            audiences: Vec::new(),
            resource_servers: Vec::new(),
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
            claims: None,
            registration: None,
            refresh_grace: None,
            #[cfg(feature = "remote")]
            client_metadata: None,
            auth_failures: (10, Duration::from_secs(60)),
            leeway: Duration::from_secs(60),
            key_encryption_secret: None,
            sync_interval: Duration::from_secs(1),
            accept_json: false,
            dpop_algorithms: None,
            dpop_nonce_secret: None,
            audit_retention: (Duration::from_secs(90 * 86_400), 1_000_000),
            approver_directory: None,
            notifier: None,
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

    /// A resource server tokens may be requested for with RFC 8707's `resource` parameter, at
    /// `/authorize` and `/token`: the access token's `aud` is then the resource's URI, its
    /// scopes and lifetime within the resource's (see [`ResourceServer`](super::ResourceServer)).
    /// Repeatable. The audiences are resources too; a request without `resource` gets the
    /// first audience, as before, and one naming an unknown resource `invalid_target`.
    pub fn resource_server(mut self, resource: super::ResourceServer) -> Self {
        self.resource_servers.push(resource);
        self
    }

    /// Where clients, codes and tokens are kept. Required: [`MemoryStore`](super::store::MemoryStore)
    /// for tests and demos.
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
    /// generated and saved there at build (lost on restart only with
    /// [`MemoryStore`](super::store::MemoryStore)).
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

    /// The algorithms a DPoP proof (RFC 9449) at the token endpoint may use (default: ES256,
    /// ES384, EdDSA, PS256, RS256; asymmetric only). The token endpoint always accepts proofs:
    /// a token request with one gets an access token bound to its key (`cnf.jkt`,
    /// `token_type` `DPoP`), and a public client's refresh token is bound to it too.
    pub fn dpop_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = crate::keys::Algorithm>,
    ) -> Self {
        self.dpop_algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires a server nonce (RFC 9449 §8) in every DPoP proof at the token endpoint, derived
    /// from `secret` (at least 32 bytes; the same on every instance) and a 5-minute window: a
    /// proof without one, or with a stale one, gets 400 `use_dpop_nonce` and a fresh nonce in
    /// the `DPoP-Nonce` header.
    pub fn dpop_nonces(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.dpop_nonce_secret = Some(secret.into());
        self
    }

    /// Lets `POST /token` also take its parameters as a JSON object of string members
    /// (`Content-Type: application/json`), as clients written for Kong's OAuth 2.0 plugin send
    /// them: `{"grant_type": "client_credentials", "client_id": "…", "client_secret": "…"}`.
    /// Such a body is treated exactly like the form body: same grants, same client
    /// authentication, same errors. A member that is not a string (a number, `true`, `null`, an
    /// array or an object), a member given twice, anything but one object, or a body over the
    /// size limit is `invalid_request`.
    ///
    /// Defaults to `false`: RFC 6749 §3.2 defines the token request as
    /// `application/x-www-form-urlencoded`, and a JSON body is then `invalid_request`.
    ///
    /// ```
    /// # async fn f() -> Result<(), tower_oauth2::ConfigError> {
    /// let server = tower_oauth2::server::AuthorizationServer::builder()
    ///     .issuer("https://auth.example.com")
    ///     .accept_json_token_requests(true)
    ///     .build()
    ///     .await?;
    /// # let _ = server; Ok(()) }
    /// ```
    pub fn accept_json_token_requests(mut self, accept: bool) -> Self {
        self.accept_json = accept;
        self
    }

    /// How long the store's audit log keeps events, and how many it keeps at most: older
    /// events, then the oldest beyond `max_events`, are deleted by the housekeeping every ten
    /// minutes. `max_events` must be at least 1.
    ///
    /// Defaults to 90 days and 1,000,000 events.
    pub fn audit_retention(mut self, max_age: Duration, max_events: u64) -> Self {
        self.audit_retention = (max_age, max_events);
        self
    }

    /// Where the app keeps who is in which approver group, for
    /// [`ApprovalPolicy::Groups`]; asked with each decision. Without one, membership comes from
    /// the groups' listed members and the [membership claim](super::ApproverGroups::membership_claim).
    pub fn approver_directory(mut self, directory: impl super::ApproverDirectory) -> Self {
        self.approver_directory = Some(Arc::new(directory));
        self
    }

    /// Tells people about registrations: submitted (to the approver groups' addresses),
    /// approved and rejected (to the client's contacts). Delivered in the background, each
    /// tried up to four times; a failure is logged and never undoes or delays a decision. E.g.
    /// [`SmtpNotifier`](super::SmtpNotifier) (feature `smtp`). Defaults to none.
    pub fn notifier(mut self, notifier: impl super::Notifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
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

    /// Adds the app's claims (roles, tenant, e-mail) to every access token, from `hook`; the
    /// registered claims ([`PROTECTED_CLAIMS`](super::PROTECTED_CLAIMS)) stay the server's. A
    /// hook that fails answers the token request `server_error` and issues nothing.
    pub fn custom_claims(mut self, hook: impl super::ClaimsHook) -> Self {
        self.claims = Some(Arc::new(hook));
        self
    }

    /// A grace window for refresh-token retries (off by default; at most 5 minutes). A
    /// rotated-out refresh token presented again by its client within `window` of its rotation
    /// — a retry after a lost response — gets the very answer its rotation gave (the same new
    /// access and refresh token), as long as that new refresh token is unused. Outside the
    /// window, after the new token was used, or from another client, reuse detection applies as
    /// without it. The answer is kept on the rotated-out token's record, sealed with a key
    /// derived from that token's value (which the store never holds), so only its holder's
    /// retry opens it. Stores that do not keep it ([`Store::successor`](super::Store::successor)
    /// left at its default) have no grace window.
    pub fn refresh_token_grace(mut self, window: Duration) -> Self {
        self.refresh_grace = Some(window);
        self
    }

    /// Accepts Client ID Metadata Documents (feature `remote`): a `client_id` that is an
    /// `https` URL is fetched and describes a public client (see
    /// [`ClientIdMetadata`](super::ClientIdMetadata)); advertised in the metadata as
    /// `client_id_metadata_document_supported`. Off by default.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn client_id_metadata_documents(mut self, config: super::ClientIdMetadata) -> Self {
        self.client_metadata = Some(config);
        self
    }

    /// Turns on dynamic client registration (RFC 7591) at `POST {endpoint_base}/register`, with
    /// RFC 7592 management at `/register/{client_id}`, advertised in the metadata as
    /// `registration_endpoint`. Off by default. See [`DynamicRegistration`](super::DynamicRegistration).
    pub fn dynamic_registration(mut self, registration: super::DynamicRegistration) -> Self {
        self.registration = Some(registration);
        self
    }

    /// Turns on the (legacy) `password` grant, checking credentials with `verifier`.
    pub fn password_verifier(mut self, verifier: impl PasswordVerifier) -> Self {
        self.password = Some(Arc::new(verifier));
        self
    }

    /// Failed client authentications allowed per client id, and per peer address, within
    /// `window` before further attempts get 429 (default 10 per minute); wrong passwords of the
    /// `password` grant count the same way per username. A key's window starts at its first
    /// failure; when it ends the count starts over.
    ///
    /// Whether a request is refused is decided in process memory, so a successful
    /// authentication never waits for the store. How failures are counted depends on the
    /// store:
    ///
    /// - **Shared (`PostgresStore`).** Each failure is also counted in the database (one
    ///   statement, on the failure path only), and the instance adopts the count and window the
    ///   database answers with; the window is timed by the database's clock. Failures are thus
    ///   counted across instances: a key blocked on one instance is refused on another at that
    ///   instance's next failure for the key, or at its next sync — announced through
    ///   `LISTEN/NOTIFY`, so usually at once, and at the latest within
    ///   [`sync_interval`](Self::sync_interval). So across N instances a key gets at most
    ///   `max_failures + N − 1` failed attempts per window, plus the attempts that were already
    ///   in flight (past the check) when it became blocked. A request refused with 429 is not
    ///   counted.
    /// - **In process (`MemoryStore`, `SqliteStore`, and stores that do not implement
    ///   [`Store::record_auth_failures`](super::store::Store::record_auth_failures)).** Each
    ///   instance counts its own failures: across N instances, up to `N × max_failures` per
    ///   window.
    ///
    /// If the store cannot record a failure (unreachable, or slower than 2 s), the failure is
    /// still counted by the instance that saw it and a warning is logged: an outage never lifts
    /// the limit, but while it lasts each instance limits on its own (up to `N × max_failures`).
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
        if self.audit_retention.1 == 0 {
            return Err(ConfigError::new(
                "audit_retention: max_events must be at least 1",
            ));
        }
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
        let resources = super::resource::Resources::new(self.resource_servers, &audiences)?;
        #[cfg(feature = "remote")]
        let client_metadata = match self.client_metadata {
            Some(_) if self.consent.is_none() => {
                return Err(ConfigError::new(
                    "client_id_metadata_documents: such clients use authorization_code, which \
                     needs a consent handler",
                ));
            }
            Some(config) => Some(config.check()?),
            None => None,
        };
        let registration = self
            .registration
            .map(|r| r.check(self.consent.is_some(), self.password.is_some()))
            .transpose()?;
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
        if self
            .refresh_grace
            .is_some_and(|g| g.is_zero() || g > Duration::from_secs(300))
        {
            return Err(ConfigError::new(
                "refresh_token_grace must be between 1 s and 5 min: it is for network retries",
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
        // DPoP proofs, with the same algorithms and nonces at the token endpoint and at the APIs
        // of this process.
        let mut dpop_settings = crate::dpop::Dpop::new(String::new());
        if let Some(algorithms) = self.dpop_algorithms {
            dpop_settings = dpop_settings.algorithms(algorithms);
        }
        if let Some(secret) = self.dpop_nonce_secret {
            dpop_settings = dpop_settings.nonces(secret);
        }
        // The in-process authenticator takes the server's DPoP-bound tokens on the issuer's
        // origin, where an API beside the server is served.
        let authenticator = AuthenticatorBuilder::from(issuer_trust)
            .leeway(self.leeway)
            .dpop(dpop_settings.for_url(crate::dpop::origin(&issuer).to_owned()))
            .build()?;
        let any_resource = AuthenticatorBuilder::from(trust(
            &issuer,
            &resources.uris(),
            &verify_keys,
            &denylist,
            self.allow_unlimited,
        ))
        .leeway(self.leeway)
        .build()?;

        let dpop = dpop_settings
            .for_url(format!("{endpoint_base}/token"))
            .build()?;

        let audit = super::audit::AuditLog::start(Arc::clone(&store));
        let state = Arc::new(ServerState {
            issuer,
            endpoint_base,
            audiences,
            resources,
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
            claims: self.claims,
            registration,
            refresh_grace: self.refresh_grace,
            #[cfg(feature = "remote")]
            client_metadata,
            limiter: client_auth::RateLimiter::new(self.auth_failures.0, self.auth_failures.1),
            clients: client_auth::ClientCache::new(),
            authenticator,
            any_resource,
            leeway: self.leeway.as_secs(),
            ring_lock: tokio::sync::Mutex::new(()),
            keys_in_store,
            sealer,
            revocation_cursor: tokio::sync::Mutex::new(0),
            client_cursor: tokio::sync::Mutex::new(0),
            sync_interval: self.sync_interval,
            accept_json: self.accept_json,
            dpop,
            dpop_settings,
            audit,
            audit_retention: self.audit_retention,
            approver_directory: self.approver_directory,
            notifications: super::approval::Notifications::start(self.notifier),
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
pub(super) fn trust(
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
