//! What the fuzz targets share: the test keys of `tests/data/keys`, tokens minted with them at
//! start-up, an authenticator that trusts those keys, and the token oracle.
//!
//! The oracle: a string that verifies must be a minted token. ECDSA signatures are not unique
//! (`s` and `n - s` both verify, and signing again gives another signature), so for ES* tokens
//! it is enough that the string has a minted token's signing input (`header.payload`); for the
//! deterministic schemes (RS256 PKCS#1 v1.5, EdDSA, HMAC) the whole string must be minted.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use tower_oauth2::{Algorithm, AuthError, Authenticator, Key, KeySet, TokenCache, VerifiedToken};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "events-api";
pub const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub const JWKS: &str = include_str!("../../tests/data/keys/jwks.json");
const RSA_PRIVATE: &str = include_str!("../../tests/data/keys/rsa_private.pem");
const EC_PRIVATE: &str = include_str!("../../tests/data/keys/ec_private.pem");
const EC384_PRIVATE: &str = include_str!("../../tests/data/keys/ec384_private.pem");
const ED_PRIVATE: &str = include_str!("../../tests/data/keys/ed_private.pem");

/// 2026-01-01 and 2100-01-01: fixed, so that a minted token is the same string on every run
/// (except for ECDSA's random signatures) and stays valid.
const IAT: u64 = 1_767_225_600;
const EXP: u64 = 4_102_444_800;

/// A token signed at start-up, which the authenticator must accept.
#[derive(Debug, Clone)]
pub struct Minted {
    pub alg: Algorithm,
    pub token: String,
    /// `header.payload`: what the signature covers.
    pub signing_input: String,
}

impl Minted {
    /// Whether this algorithm's signatures are not unique (ECDSA).
    pub fn malleable(&self) -> bool {
        matches!(self.alg, Algorithm::ES256 | Algorithm::ES384)
    }
}

fn provider() -> &'static CryptoProvider {
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let _ = provider.install_default();
    provider
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_key(alg: Algorithm) -> (EncodingKey, &'static str) {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()),
        Algorithm::ES384 => EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()),
        Algorithm::HS256 => Ok(EncodingKey::from_secret(HMAC_SECRET)),
        other => panic!("no test key for {other:?}"),
    };
    let kid = match alg {
        Algorithm::RS256 => "rsa-1",
        Algorithm::ES256 => "ec-1",
        Algorithm::ES384 => "ec384-1",
        Algorithm::EdDSA => "ed-1",
        _ => "hmac-1",
    };
    (key.expect("test key"), kid)
}

/// Signs `header.claims` (JSON text, base64url-encoded here) under `alg` with its test key.
pub fn sign(alg: Algorithm, header_json: &str, claims_json: &str) -> Minted {
    let (key, _) = signing_key(alg);
    let signing_input = format!("{}.{}", b64(header_json), b64(claims_json));
    let jwt_alg: jsonwebtoken::Algorithm = alg.name().parse().expect("jsonwebtoken alg");
    let signer = (provider().signer_factory)(&jwt_alg, &key).expect("signer");
    let signature = jsonwebtoken::signature::Signer::try_sign(&*signer, signing_input.as_bytes())
        .expect("signature");
    Minted {
        alg,
        token: format!("{signing_input}.{}", b64(signature)),
        signing_input,
    }
}

/// The algorithms tokens are minted for.
pub const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::EdDSA,
    Algorithm::HS256,
];

/// Two tokens per algorithm: an RFC 9068 header with `kid`, and a bare one (tried against
/// every key that allows its algorithm), with different claims.
fn mint_all() -> Vec<Minted> {
    let full = serde_json::json!({
        "iss": ISSUER, "sub": "user-42", "aud": AUDIENCE, "exp": EXP, "iat": IAT,
        "nbf": IAT, "jti": "jti-1", "client_id": "client-7", "scope": "events:read events:write",
    })
    .to_string();
    let short = serde_json::json!({
        "iss": ISSUER, "aud": [AUDIENCE, "other"], "exp": EXP, "sub": "s",
    })
    .to_string();
    let mut minted = Vec::new();
    for alg in ALGORITHMS {
        let (_, kid) = signing_key(alg);
        let with_kid = serde_json::json!({"alg": alg.name(), "typ": "at+jwt", "kid": kid});
        let bare = serde_json::json!({"alg": alg.name()});
        minted.push(sign(alg, &with_kid.to_string(), &full));
        minted.push(sign(alg, &bare.to_string(), &short));
    }
    minted
}

/// The tokens minted at start-up (once per process).
pub fn minted() -> &'static [Minted] {
    static MINTED: OnceLock<Vec<Minted>> = OnceLock::new();
    MINTED.get_or_init(mint_all)
}

/// An authenticator trusting the test JWKS and the HMAC secret (kid `hmac-1`), with the default
/// policy; `cache` turns the verified-token cache on.
pub fn authenticator(cache: bool) -> Authenticator {
    let keys = KeySet::from_jwks_json(JWKS).expect("test JWKS");
    let hmac = Key::hmac(HMAC_SECRET, Algorithm::HS256)
        .expect("HMAC key")
        .with_kid("hmac-1");
    let cache = if cache {
        TokenCache::new()
    } else {
        TokenCache::disabled()
    };
    let auth = Authenticator::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys)
        .key(hmac)
        .token_cache(cache)
        .build()
        .expect("authenticator");
    for m in minted() {
        if let Err(e) = auth.verify(&m.token) {
            panic!("a minted {:?} token does not verify: {e}", m.alg);
        }
    }
    auth
}

/// The minted token `token` stands for, if any: the same string, or for ECDSA the same
/// signing input.
pub fn minted_match(token: &str) -> Option<&'static Minted> {
    let signing_input = token.rsplit_once('.').map(|(input, _)| input);
    minted()
        .iter()
        .find(|m| m.token == token || (m.malleable() && signing_input == Some(&*m.signing_input)))
}

/// The oracle: panics if `token` verified but is no minted token.
pub fn check(token: &str, result: &Result<VerifiedToken, AuthError>) {
    if result.is_ok() && minted_match(token).is_none() {
        panic!("a token that was never minted verifies: {token:?}");
    }
}
