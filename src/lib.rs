//! OAuth 2.0 bearer-token authentication for [tower] and [axum] services.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
//!
//! One layer validates the JWT access token of every request (signature against your keys,
//! `iss`, `aud`, `exp`, `nbf`, scopes) and hands handlers the verified claims; rejections
//! follow RFC 6750. Secure by default: the key fixes the algorithm, `none` is never accepted,
//! and weakening a check takes an explicit [`dangerous`] import.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Json, Router, routing::get};
//! use tower_oauth2::{Authenticator, Claims, KeySet, RequireScope, StandardClaims};
//!
//! # fn main() -> Result<(), tower_oauth2::ConfigError> {
//! # let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1",
//! #     "x":"Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"}]}"#;
//! let auth = Authenticator::builder()
//!     .issuer("https://idp.example.com/realms/acme")
//!     .audience("orders-api")
//!     .keys(KeySet::from_jwks_json(jwks)?)
//!     .build()?;
//!
//! async fn me(Claims(c): Claims<StandardClaims>) -> Json<StandardClaims> {
//!     Json(c)
//! }
//!
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "orders" }).route_layer(RequireScope::all(["orders:read"])))
//!     .route("/me", get(me))
//!     .layer(auth.layer());
//! # let _ = app; Ok(()) }
//! # main().unwrap_or_else(|e| panic!("{e}")) }
//! ```
//!
//! # What a request goes through
//!
//! The token is taken from `Authorization: Bearer` (RFC 6750 §2.1; a cookie or query parameter
//! only when configured with [`AuthenticatorBuilder::token_source`]) → size and shape checks →
//! header (`alg`, `kid`, `typ`, `crit`) → claims syntax → issuer → key by `kid`, which fixes the
//! algorithm → signature → `exp`/`nbf`/`iat` with leeway, audience, required claims →
//! [`VerifiedToken`] in the request extensions → your handler.
//!
//! | failure | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no token | 401 | `Bearer realm="api"` |
//! | malformed `Authorization`, several tokens | 400 | `error="invalid_request"` |
//! | bad, expired, foreign or malformed token | 401 | `error="invalid_token", error_description="…"` |
//! | missing scope ([`RequireScope`]) | 403 | `error="insufficient_scope", scope="…"` |
//!
//! # Modules
//!
//! One module per job; the types most applications name are also at the crate root.
//!
//! | module | what it holds |
//! |---|---|
//! | [`authenticator`] | [`Authenticator`], its [`AuthenticatorBuilder`], trusted [`Issuer`]s, and the hooks it takes: [`TokenCache`], [`RevocationCheck`], [`Rejection`] |
//! | [`layer`] | the tower middleware: [`BearerAuthLayer`](layer::BearerAuthLayer), [`BearerAuth`](layer::BearerAuth), [`ResponseFuture`](layer::ResponseFuture), [`DefaultRejection`](layer::DefaultRejection) |
//! | [`require_scope`] | [`RequireScope`] and its service |
//! | [`token`] | what handlers get: [`VerifiedToken`], [`Scopes`] |
//! | [`extract`] | axum extractors: [`Claims`], [`StandardClaims`], and their rejection (feature `axum`) |
//! | [`keys`] | [`Key`], [`KeySet`], [`Algorithm`], [`SharedKeys`](keys::SharedKeys), and the remote JWKS state (feature `remote`) |
//! | [`token_source`] | where the token comes from: the `Authorization` header, a cookie, a query parameter |
//! | [`error`] | [`AuthError`], [`AuthErrorKind`], [`ConfigError`] |
//! | [`dpop`] | DPoP (RFC 9449): [`Dpop`](dpop::Dpop) proof checking and the per-issuer [`DpopMode`](dpop::DpopMode) |
//! | `introspection` | opaque tokens through the issuer's introspection endpoint (RFC 7662): `Introspection` (feature `introspection`) |
//! | [`dangerous`] | the options that weaken validation |
//! | [`telemetry`] | the metrics recorded with feature `metrics`: names and labels |
//! | `grpc` | `verified_token` and `require_scope` for tonic handlers (feature `tonic`) |
//! | `openapi` | `ApiSecurity`: the security scheme and per-route scopes in a utoipa OpenAPI document (feature `utoipa`) |
//! | [`server`] | the authorization server (feature `server`) |
//!
//! # Features
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `aws-lc-rs` | crypto backend: aws-lc-rs | yes |
//! | `rust-crypto` | crypto backend: the RustCrypto crates (pure Rust) | no |
//! | `axum` | the [`Claims`], [`Scopes`] and [`VerifiedToken`] extractors | yes |
//! | `remote` | JWKS URLs and discovery from the issuer, cached and refreshed (reqwest with rustls) | yes |
//! | `introspection` | opaque tokens validated through the issuer's introspection endpoint (RFC 7662), cached; implies `remote` | no |
//! | `tonic` | `grpc::verified_token` and `grpc::require_scope` for tonic handlers | no |
//! | `utoipa` | `openapi::ApiSecurity`: security schemes and per-route scopes in utoipa 5 OpenAPI documents | no |
//! | `metrics` | counters, gauges and a histogram through the `metrics` facade ([`telemetry`]) | no |
//! | `server` | the authorization server ([`server`]): token, authorization, revocation, introspection, metadata, JWKS and admin endpoints | no |
//! | `sqlite` | `server::store::SqliteStore`: the server's store in an SQLite file (sqlx, SQLite bundled); implies `server` | no |
//! | `postgres` | `server::store::PostgresStore`: the server's store in PostgreSQL (sqlx, rustls), shared by any number of instances; implies `server` | no |
//!
//! Exactly one crypto backend must be enabled; neither or both is a compile error (for a
//! pure-Rust build: `default-features = false, features = ["rust-crypto", "axum"]`).
//!
//! # Security notes
//!
//! - **The key decides the algorithm.** Each [`Key`] has an allow-list (RSA keys: RS*/PS*; EC
//!   keys: the one algorithm of their curve; Ed25519: EdDSA; HMAC: the one configured). A token
//!   whose `alg` is not in its key's list is refused before any cryptography runs, which closes
//!   the RS256→HS256 key-confusion attack.
//! - **`none` is never accepted**, in any casing. HMAC is accepted only with a secret you
//!   configure ([`Key::hmac`], an explicit `oct` JWK, [`KeySet::from_secret_jwks_json`]), never
//!   from an ordinary JWKS.
//! - **Keys come only from configuration.** The `jku`, `x5u`, `jwk` and `x5c` headers are never
//!   read, let alone fetched; a `crit` header is refused, since this crate implements no
//!   extension. A remote JWKS is fetched only from the configured URL or the one the configured
//!   issuer's metadata names, over https (plain http only on loopback; redirects likewise).
//! - **Strict parsing.** Canonical unpadded base64url only; the header and claims must be JSON
//!   objects without duplicate member names at any depth and at most 32 levels of nesting;
//!   registered claims must have their RFC 7519 types; tokens are at most 8 KiB by default.
//! - **Nothing secret is logged or printed.** Errors and `Debug` output never contain the token,
//!   its content or key material; audit events (target `tower_oauth2::audit`) carry outcome,
//!   reason, `sub`, `client_id`, `iss` and `kid` (on rejection, the `kid` and `iss` the token
//!   claimed, unverified).
//! - **Deployment caveat:** a bearer token is a password for its lifetime. Serve the API over
//!   TLS, keep access tokens short-lived, and do not put tokens in URLs ([`QueryToken`](token_source::QueryToken)) unless
//!   nothing else works.

#![cfg_attr(docsrs, feature(doc_cfg))]

// # Layers
//
// The modules form one dependency direction, low to high; a module uses only modules on its
// own level or below (`scripts/check_layers.py`, run by `.ci/run`, fails on a back-edge):
//
//   1 error, time,       error kinds and text (no HTTP), the clock,
//     telemetry          metric names and recording (feature `metrics`)
//   2 jose               algorithms, compact form, header, strict JSON, registered claims
//   3 keys               Key, KeySet, key sources (static, shared, remote JWKS), crypto backend
//   4 token              VerifiedToken, Scopes: data, no checks
//   5 validate, dpop,    the pipeline and policy, the token cache, the revocation hook;
//     introspection      DPoP proofs (RFC 9449); opaque tokens through RFC 7662
//   6 authenticator,     Authenticator and its builder, issuers, rejection hook;
//     token_source,      where the token comes from;
//     dangerous          the options that weaken validation
//   7 http               the tower layer, RequireScope, RFC 6750 rendering, audit events
//   8 extract, openapi,  axum extractors; OpenAPI security (utoipa);
//     grpc               tonic helpers
//   9 server             the authorization server
//
// The public API is a set of namespaces below, one per job (in the manner of tower-http); the
// common types are also re-exported at the root. Each type has one public home.

pub mod authenticator;
pub mod dangerous;
pub mod dpop;
pub mod error;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
mod http;
#[cfg(feature = "introspection")]
#[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
pub mod introspection;
mod jose;
pub mod keys;
#[cfg(feature = "utoipa")]
#[cfg_attr(docsrs, doc(cfg(feature = "utoipa")))]
pub mod openapi;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod telemetry;
mod time;
pub mod token;
pub mod token_source;
mod validate;

pub mod layer {
    //! The tower middleware: [`BearerAuthLayer`] (from
    //! [`Authenticator::layer`](crate::Authenticator::layer)), its [`BearerAuth`] service and
    //! [`ResponseFuture`], and the [`DefaultRejection`] it answers with.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub use crate::http::form_body::{FormBodyTokenLayer, FormBodyTokenService};
    pub use crate::http::layer::{BearerAuth, BearerAuthLayer, ResponseFuture};
    pub use crate::http::rejection::DefaultRejection;
}

pub mod require_scope {
    //! [`RequireScope`]: the route layer that demands scopes of the verified token, and its
    //! [`RequireScopeService`].
    pub use crate::http::require_scope::{RequireScope, RequireScopeService};
}

#[doc(no_inline)]
pub use authenticator::{
    Authenticator, AuthenticatorBuilder, Issuer, ProtectedResource, Rejection, RevocationCheck,
    TokenCache,
};
#[doc(no_inline)]
pub use error::{AuthError, AuthErrorKind, ConfigError};
#[cfg(feature = "axum")]
#[doc(no_inline)]
pub use extract::{Claims, StandardClaims};
#[doc(no_inline)]
pub use keys::{Algorithm, Key, KeySet};
#[doc(no_inline)]
pub use require_scope::RequireScope;
#[doc(no_inline)]
pub use token::{Scopes, VerifiedToken};

/// Compiles the README's examples as doctests (they use every feature's API).
#[cfg(all(
    doctest,
    feature = "server",
    feature = "remote",
    feature = "introspection",
    feature = "utoipa"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
