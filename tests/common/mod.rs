//! Shared fixtures: test keys, a token minter that can write any header and claims bytes, the
//! events API of the example, and a one-shot request helper.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_oauth2::{
    Algorithm, Authenticator, Claims, KeySet, RequireScope, Scopes, StandardClaims,
};

pub mod dpop;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "events-api";
pub const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub const RSA_PRIVATE: &str = include_str!("../data/keys/rsa_private.pem");
pub const RSA_PUBLIC: &str = include_str!("../data/keys/rsa_public.pem");
pub const EC_PRIVATE: &str = include_str!("../data/keys/ec_private.pem");
pub const EC384_PRIVATE: &str = include_str!("../data/keys/ec384_private.pem");
pub const ED_PRIVATE: &str = include_str!("../data/keys/ed_private.pem");
pub const ATTACKER_RSA_PRIVATE: &str = include_str!("../data/keys/attacker_rsa_private.pem");
pub const JWKS: &str = include_str!("../data/keys/jwks.json");

/// The backend the crate under test was built with.
pub fn provider() -> &'static CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(not(feature = "aws-lc-rs"))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    // `jsonwebtoken::encode` and friends need a process default when both backends are on.
    let _ = provider.install_default();
    provider
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `alg` as jsonwebtoken names it, for signing with its crypto provider.
pub fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.name().parse().unwrap()
}

/// The private key and kid the test JWKS pairs with `alg`.
pub fn signing_key(alg: Algorithm) -> (EncodingKey, &'static str) {
    match alg {
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            "rsa-1",
        ),
        Algorithm::PS256 => (
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            "rsa-1",
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            "ec-1",
        ),
        Algorithm::ES384 => (
            EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap(),
            "ec384-1",
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
            "ed-1",
        ),
        Algorithm::HS256 => (EncodingKey::from_secret(HMAC_SECRET), "hmac-1"),
        other => panic!("no test key for {other:?}"),
    }
}

/// Signs `header_json.claims_json` (raw bytes, so tests can write duplicate members or
/// non-objects) with `key` under `alg`.
pub fn sign_raw(header_json: &str, claims_json: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header_json), b64(claims_json));
    let signer = (provider().signer_factory)(&jwt_alg(alg), key).unwrap();
    let signature = jsonwebtoken::signature::Signer::try_sign(&*signer, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature))
}

/// Claims that pass the standard authenticator, with `scope`.
pub fn claims(scope: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "sub": "user-42",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": "jti-1",
        "client_id": "client-7",
        "scope": scope,
    })
}

/// A valid token signed with the JWKS key for `alg`, carrying `claims`.
pub fn token_with(alg: Algorithm, claims: &Value) -> String {
    let (key, kid) = signing_key(alg);
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
    sign_raw(&header.to_string(), &claims.to_string(), &key, alg)
}

/// A valid ES256 token with `scope`.
pub fn token(scope: &str) -> String {
    token_with(Algorithm::ES256, &claims(scope))
}

pub fn builder() -> tower_oauth2::AuthenticatorBuilder {
    provider();
    Authenticator::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(JWKS).unwrap())
}

/// The standard authenticator: the test JWKS, issuer and audience, default policy.
pub fn authenticator() -> Authenticator {
    builder().build().unwrap()
}

/// The same, plus the HMAC secret as kid `hmac-1` (HS256 only).
pub fn authenticator_with_hmac() -> Authenticator {
    let key = tower_oauth2::Key::hmac(HMAC_SECRET, Algorithm::HS256)
        .unwrap()
        .with_kid("hmac-1");
    builder().key(key).build().unwrap()
}

async fn me(Claims(c): Claims<StandardClaims>) -> Json<Value> {
    Json(json!({"sub": c.sub, "client_id": c.client_id, "scopes": c.scopes}))
}

/// The events API of `examples/protected_service.rs`, behind `auth`.
pub fn app(auth: &Authenticator) -> Router {
    Router::new()
        .route(
            "/events/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<u64>| async move {
                    Json(json!({"id": id}))
                },
            )
            .route_layer(RequireScope::all(["events:read"])),
        )
        .route(
            "/events",
            post(|| async { (StatusCode::CREATED, Json(json!({"created": true}))) })
                .route_layer(RequireScope::all(["events:write"])),
        )
        .route("/me", get(me))
        .route("/scopes", get(|s: Scopes| async move { s.to_string() }))
        .layer(auth.layer())
        .route("/public", get(|| async { "public" }))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn challenge(&self) -> &str {
        self.headers
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    pub fn description(&self) -> &str {
        self.body
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

/// GET `path` with `Authorization: Bearer <token>`.
pub async fn get_with(app: &Router, path: &str, token: &str) -> Reply {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}
