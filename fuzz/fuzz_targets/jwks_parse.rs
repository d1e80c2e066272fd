//! Key parsing through the public API: `KeySet::from_jwks_json`, `KeySet::from_secret_jwks_json`,
//! `Key::from_jwk_json` and `Key::from_pem`. The first byte picks the parser, the rest is its
//! input (lossily UTF-8 for the JSON parsers, raw for PEM).
//!
//! Oracle: nothing panics (errors are errors); a key never allows an algorithm outside its
//! family, and HMAC only from a secret JWKS or an `oct` JWK; a JWK's `alg` pins its key to
//! that algorithm; no two keys of a parsed set share a `kid`; and keys that parsed can verify
//! (here: try the minted tokens against them) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth2::{Algorithm, Authenticator, Key, KeySet, TokenCache};
use tower_oauth2_fuzz::{AUDIENCE, ISSUER, minted};

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The algorithms of every key family; a key's list must be a non-empty subset of one.
fn families() -> [Vec<Algorithm>; 7] {
    use Algorithm::*;
    [
        vec![RS256, RS384, RS512, PS256, PS384, PS512],
        vec![ES256],
        vec![ES384],
        vec![EdDSA],
        vec![HS256],
        vec![HS384],
        vec![HS512],
    ]
}

fn check_key(key: &Key, hmac_allowed: bool) {
    let algs = key.algorithms();
    assert!(!algs.is_empty(), "a key with no algorithm: {key:?}");
    assert!(
        hmac_allowed || !algs.iter().copied().any(is_hmac),
        "an HMAC key from a source that must not give one: {key:?}"
    );
    assert!(
        families()
            .iter()
            .any(|family| algs.iter().all(|a| family.contains(a))),
        "a key whose algorithms span families: {key:?}"
    );
    // Narrowing to what it already allows always works.
    assert!(key.clone().with_algorithms(algs).is_ok());
    let _ = format!("{key:?}");
}

fn check_set(set: &KeySet, hmac_allowed: bool) {
    let mut kids: Vec<&str> = set.keys().iter().filter_map(Key::kid).collect();
    let len = kids.len();
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), len, "several keys of a JWKS share a kid");
    for key in set.keys() {
        check_key(key, hmac_allowed);
    }
    if set.is_empty() {
        return;
    }
    let auth = Authenticator::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(set.clone())
        .token_cache(TokenCache::disabled())
        .build()
        .expect("a non-empty key set makes an authenticator");
    for m in minted() {
        let _ = auth.verify(&m.token);
    }
}

/// The `alg` member of a JWK, if it is a string.
fn declared_alg(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode % 4 {
        0 => {
            if let Ok(set) = KeySet::from_jwks_json(&text) {
                check_set(&set, false);
            }
        }
        1 => {
            if let Ok(set) = KeySet::from_secret_jwks_json(&text) {
                check_set(&set, true);
            }
        }
        2 => {
            if let Ok(key) = Key::from_jwk_json(&text) {
                check_key(&key, true);
                if let Some(alg) = declared_alg(&text) {
                    assert_eq!(
                        key.algorithms()
                            .iter()
                            .map(|a| a.name())
                            .collect::<Vec<_>>(),
                        vec![alg.as_str()],
                        "a JWK's alg does not pin its key"
                    );
                }
                check_set(&KeySet::new([key]), true);
            }
        }
        _ => {
            if let Ok(key) = Key::from_pem(rest) {
                check_key(&key, false);
                assert!(key.kid().is_none(), "a PEM key has no kid");
                check_set(&KeySet::new([key]), false);
            }
        }
    }
});
