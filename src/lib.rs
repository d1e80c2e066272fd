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
//! # Features
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `aws-lc-rs` | crypto backend: aws-lc-rs | yes |
//! | `rust-crypto` | crypto backend: the RustCrypto crates (pure Rust) | no |
//! | `axum` | the [`Claims`], [`Scopes`] and [`VerifiedToken`] extractors | yes |
//! | `remote` | JWKS URLs and discovery from the issuer, cached and refreshed (reqwest with rustls) | yes |
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
//!   TLS, keep access tokens short-lived, and do not put tokens in URLs ([`QueryToken`]) unless
//!   nothing else works.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod authenticator;
mod backend;
mod cache;
pub mod dangerous;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod issuer;
mod keys;
mod layer;
mod revocation;
mod scope;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod token_source;
mod validate;

pub use authenticator::{Authenticator, AuthenticatorBuilder};
pub use cache::TokenCache;
pub use error::{AuthError, AuthErrorKind, ConfigError, DefaultRejection, Rejection};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::{AuthRejection, Claims, StandardClaims};
pub use issuer::Issuer;
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use keys::remote::{KeyFetchError, KeySourceState};
pub use keys::{Key, KeySet};
pub use layer::{BearerAuth, BearerAuthLayer, ResponseFuture};
pub use revocation::RevocationCheck;
pub use scope::{RequireScope, RequireScopeService, Scopes};
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use server::{
    AuthorizationServer, ClientSecret, LifetimeError, SecretError, SecretHash, TokenLifetime,
};
pub use token_source::{AuthorizationHeader, CookieToken, QueryToken, TokenSource};
pub use validate::VerifiedToken;

#[doc(hidden)]
pub mod __private {
    //! Entry points for this crate's own test suite (JOSE test vectors); not a public API.

    use crate::error::AuthError;
    use crate::keys::KeySet;

    /// Checks a compact JWS as the layer does, up to and including the signature, without
    /// reading the payload as claims: shape, header, strict base64url of the payload, key
    /// selection and signature.
    pub fn verify_jws_signature(token: &str, keys: &KeySet) -> Result<(), AuthError> {
        use crate::validate::jws;
        let parts = jws::Compact::split(token)?;
        let header = jws::Header::parse(parts.header)?;
        jws::b64url(parts.payload, "payload")?;
        crate::validate::verify_signature(&parts, &header, keys).map(|_| ())
    }
}

/// Compiles the README's examples as doctests (they use every feature's API).
#[cfg(all(doctest, feature = "server", feature = "remote"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
