//! DPoP (RFC 9449) client helpers: proof keys from the test key set and proofs with any header
//! and claims.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower_oauth2::Algorithm;
use tower_oauth2::dpop::jwk_thumbprint;

use super::{JWKS, now, sign_raw, signing_key};

/// A client's proof key: a key pair of the test set, with its public JWK (no `kid`, `alg` or
/// `use`, as a client sends it) and thumbprint.
pub struct ClientKey {
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub jwk: Value,
    pub jkt: String,
}

pub fn client(kid: &str, alg: Algorithm) -> ClientKey {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let mut jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    for member in ["kid", "alg", "use"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    let jkt = jwk_thumbprint(&jwk.to_string()).unwrap();
    ClientKey {
        alg,
        key: signing_key(alg).0,
        jwk,
        jkt,
    }
}

/// The usual client: Ed25519.
pub fn alice() -> ClientKey {
    client("ed-1", Algorithm::EdDSA)
}

/// Another client: P-384.
pub fn mallory() -> ClientKey {
    client("ec384-1", Algorithm::ES384)
}

pub fn unique_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// A valid proof's header and claims for `method url` (with `ath` when there is a `token`), to
/// edit before signing.
pub fn parts(key: &ClientKey, method: &str, url: &str, token: Option<&str>) -> (Value, Value) {
    let header = json!({"typ": "dpop+jwt", "alg": key.alg, "jwk": key.jwk});
    let mut claims = json!({
        "jti": unique_jti(),
        "htm": method,
        "htu": url,
        "iat": now(),
    });
    if let Some(token) = token {
        claims["ath"] = json!(ath(token));
    }
    (header, claims)
}

pub fn sign(key: &ClientKey, header: &Value, claims: &Value) -> String {
    sign_raw(&header.to_string(), &claims.to_string(), &key.key, key.alg)
}

/// A valid proof for `method url`, with `ath` of `token` if given.
pub fn proof_for(key: &ClientKey, method: &str, url: &str, token: Option<&str>) -> String {
    let (header, claims) = parts(key, method, url, token);
    sign(key, &header, &claims)
}
