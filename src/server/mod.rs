//! The authorization server (feature `server`): an axum [`Router`] an app mounts to issue
//! tokens to its own API clients, without running a separate identity server.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_oauth2::server::AuthorizationServer;
//! use tower_oauth2::server::store::MemoryStore;
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
//! - **Admin console** (feature `console`, [`console`](AuthorizationServer::console)):
//!   server-rendered pages for the same operations and the audit log, for people logged in
//!   through this server's own `/authorize` (see [below](#admin-console)).
//! - **Audit**: a `tracing` event (target `tower_oauth2::audit`) for every token issued or
//!   refused, every revocation and every admin action.
//!
//! # Admin console
//!
//! With the `console` feature, [`AuthorizationServer::console`] returns a router of
//! server-rendered pages (maud templates, which escape every value; no inline script or style;
//! JavaScript only adds copy buttons) to mount at the path of its base URL:
//!
//! ```no_run
//! # #[cfg(feature = "console")]
//! # async fn f(
//! #     server: tower_oauth2::server::AuthorizationServer,
//! #     app: axum::Router,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! # use tower_oauth2::server::ConsoleConfig;
//! let console = server.console(ConsoleConfig::new("https://api.example.com/console")).await?;
//! let app = app.nest("/console", console);
//! # let _ = app; Ok(()) }
//! ```
//!
//! The console is a confidential client of this server (`tower-oauth2-console`). A visit
//! without a session is sent to `/authorize` with PKCE S256 and a `state` bound to the browser;
//! the app's [`ConsentHandler`] authenticates the person, and only logins granted the admin
//! scope get a session. Sessions are server-side with idle and absolute timeouts; the cookie is
//! `HttpOnly`, `SameSite=Strict`, and `Secure` except over http on loopback. Forms carry a CSRF
//! token and are refused from another origin; every answer has a strict
//! `Content-Security-Policy`, `X-Frame-Options: DENY` and `Cache-Control: no-store`.
//!
//! Errors are RFC 6749 §5.2 JSON bodies; bad input is never a 500, repeated parameters are
//! `invalid_request`, and every token response carries `Cache-Control: no-store`.

mod admin;
mod approval;
mod audit;
mod authorize;
mod background;
mod builder;
mod claims;
mod client_auth;
#[cfg(feature = "remote")]
mod client_metadata;
#[cfg(feature = "console")]
mod console;
mod denylist;
mod http;
mod introspect;
mod lifetime;
mod metadata;
mod registration;
mod resource;
mod revoke;
mod ring;
mod seal;
mod secret;
mod signing;
#[cfg(feature = "smtp")]
mod smtp;
mod state;
pub mod store;
mod token;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::authenticator::Authenticator;
use crate::authenticator::Issuer;

use state::ServerState;

pub use approval::{
    ApprovalRule, ApproverDirectory, ApproverGroup, ApproverGroups, Notification, NotificationKind,
    Notifier,
};
pub use audit::AuditKind;
pub use authorize::{AuthorizationRequest, ConsentDecision, ConsentHandler};
pub use builder::AuthorizationServerBuilder;
pub use claims::{ClaimsContext, ClaimsError, ClaimsHook, PROTECTED_CLAIMS};
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use client_metadata::ClientIdMetadata;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub use console::{CONSOLE_CLIENT_ID, ConsoleConfig, ConsoleError};
pub use lifetime::{LifetimeError, TokenLifetime};
pub use registration::DynamicRegistration;
pub use resource::ResourceServer;
pub use secret::{ClientSecret, SecretError, SecretHash};
pub use signing::SigningKey;
#[cfg(feature = "smtp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smtp")))]
pub use smtp::{SmtpNotifier, SmtpNotifierBuilder};
use store::{Store, StoreError};
pub use token::PasswordVerifier;

/// The boxed future the app's hooks return.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether newly registered clients may authenticate at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ApprovalPolicy {
    /// Clients are approved when registered (the default).
    #[default]
    Automatic,
    /// Clients are registered pending; the first administrator to decide approves or rejects
    /// them.
    Manual,
    /// Clients are registered pending, and approved when every approver group's rule is
    /// satisfied, or rejected by any member's rejection; see [`ApproverGroups`]. Only members
    /// of the groups may decide (others get 403).
    Groups(ApproverGroups),
}

/// An authorization server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct AuthorizationServer {
    state: Arc<ServerState>,
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
            .route("/register", post(registration::register))
            .route(
                "/register/{client_id}",
                get(registration::read)
                    .put(registration::replace)
                    .delete(registration::delete),
            )
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
    /// `typ: at+jwt`, this issuer and one of the server's audiences. It takes bearer tokens and
    /// DPoP-bound ones (RFC 9449) with proofs for the issuer's origin (`https://host:port`
    /// followed by the request path), with the server's DPoP algorithms and nonces. For an API
    /// reached at another URL (behind a proxy, another host), build one with
    /// `AuthenticatorBuilder::from(server.trusted_issuer()).dpop(Dpop::new(api_url))`.
    pub fn authenticator(&self) -> Authenticator {
        self.state.authenticator.clone()
    }

    /// The same trust as [`authenticator`](Self::authenticator), as an [`Issuer`] to combine
    /// with external identity providers through
    /// [`AuthenticatorBuilder::trust`](crate::AuthenticatorBuilder::trust).
    pub fn trusted_issuer(&self) -> Issuer {
        self.state.trusted_issuer()
    }

    /// An authenticator for one of this server's resource servers (RFC 8707): it trusts this
    /// server's tokens as [`authenticator`](Self::authenticator) does, but only those whose
    /// `aud` names `resource` — not the server's other audiences, nor another resource — and it
    /// describes the resource (RFC 9728): its challenges name the metadata, and
    /// [`resource_metadata_router`](Authenticator::resource_metadata_router) serves it, with
    /// this server as the authorization server. The resource must be known to the server
    /// ([`resource_server`](AuthorizationServerBuilder::resource_server), or an
    /// [`audience`](AuthorizationServerBuilder::audience)), or clients could not get tokens
    /// for it: otherwise a [`ConfigError`](crate::ConfigError). DPoP-bound tokens are taken
    /// with proofs for the resource's origin, as with [`authenticator`](Self::authenticator).
    ///
    /// ```no_run
    /// # async fn f(server: tower_oauth2::server::AuthorizationServer) -> Result<(), tower_oauth2::ConfigError> {
    /// use tower_oauth2::ProtectedResource;
    ///
    /// let mcp = server.resource_authenticator(
    ///     ProtectedResource::new("https://api.example.com/mcp").scopes_supported(["mcp:tools"]),
    /// )?;
    /// let layer = mcp.layer();
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn resource_authenticator(
        &self,
        resource: crate::authenticator::ProtectedResource,
    ) -> Result<Authenticator, crate::error::ConfigError> {
        let state = &self.state;
        let uri = resource.resource().to_owned();
        if !state.resources.knows(&uri) {
            return Err(crate::error::ConfigError::new(format!(
                "{uri} is not a resource of this server: register it with \
                 .resource_server(ResourceServer::new(..))"
            )));
        }
        let origin = crate::dpop::origin(&uri).to_owned();
        let issuer = builder::trust(
            &state.issuer,
            &[uri],
            &state.verify_keys,
            &state.denylist,
            state.allow_unlimited,
        );
        crate::authenticator::AuthenticatorBuilder::from(issuer)
            .leeway(std::time::Duration::from_secs(state.leeway))
            .protected_resource(resource)
            .dpop(state.dpop_settings.for_url(origin))
            .build()
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The token endpoint's URL, as the metadata names it.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.state.endpoint_base)
    }

    /// The OAuth 2.0 flows of this server for an OpenAPI document (feature `utoipa`; see
    /// [`ApiSecurity::oauth2`](crate::openapi::ApiSecurity::oauth2)): authorization code (when
    /// it has a consent handler) and client credentials at its endpoints, refresh at its token
    /// endpoint.
    #[cfg(feature = "utoipa")]
    #[cfg_attr(docsrs, doc(cfg(feature = "utoipa")))]
    pub fn openapi_flows(&self) -> crate::openapi::OAuth2Flows {
        let token = self.token_endpoint();
        let flows = crate::openapi::OAuth2Flows::new()
            .client_credentials(token.clone())
            .refresh_url(token.clone());
        match self.authorization_endpoint() {
            Some(authorize) => flows.authorization_code(authorize, token),
            None => flows,
        }
    }

    /// The authorization endpoint's URL, as the metadata names it; `None` when the server has
    /// no consent handler (no authorization-code grant).
    pub fn authorization_endpoint(&self) -> Option<String> {
        self.state
            .consent
            .is_some()
            .then(|| format!("{}/authorize", self.state.endpoint_base))
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

    /// Waits until every audit event recorded so far is in the store's audit log. Events are
    /// appended in the background, a batch at a time; call this before a graceful shutdown, or
    /// in a test before reading the log.
    pub async fn flush_audit(&self) {
        self.state.audit.flush().await;
    }

    /// How many audit events never reached the store's audit log (its queue was full, or the
    /// store kept failing); they are still in `tracing`.
    pub fn audit_events_lost(&self) -> u64 {
        self.state.audit.lost()
    }

    /// Registers a client directly (as the admin API does), e.g. a demo client at start-up.
    /// `secret` sets its secret; `None` generates one. Returns the client and, when generated,
    /// the secret to hand over once.
    pub async fn register_client(
        &self,
        registration: ClientRegistration,
    ) -> Result<(store::ClientRecord, Option<ClientSecret>), RegistrationError> {
        admin::register(&self.state, None, registration).await
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
