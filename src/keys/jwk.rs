//! JWK (RFC 7517) parsing into verification keys.
//!
//! Written by hand rather than through `jsonwebtoken::jwk::Jwk` so that one odd member (an
//! unknown `alg`, a private-use `kty`) skips that key instead of failing a whole JWKS, and so that
//! `use`, `key_ops`, key sizes and curve/algorithm agreement are checked before a key is trusted.

use crate::jose::Algorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{Key, Material, rsa_key};

/// Builds a [`Key`] from one JWK. `allow_oct` admits symmetric (`oct`) keys, which only an
/// explicitly configured single JWK may be, never a member of a JWKS.
pub(crate) fn parse_jwk(value: &Value, allow_oct: bool) -> Result<Key, String> {
    let obj = value.as_object().ok_or("a JWK must be a JSON object")?;
    let member = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{name}` must be a string")),
        }
    };
    let required = |name: &str| -> Result<&str, String> {
        member(name)?.ok_or_else(|| format!("missing `{name}`"))
    };

    match member("use")? {
        None | Some("sig") => {}
        Some(other) => return Err(format!("`use` is {other:?}, not \"sig\"")),
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array().ok_or("`key_ops` must be an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("`key_ops` does not include \"verify\"".into());
        }
    }
    let kty = required("kty")?;
    let kid = member("kid")?;
    let alg = match member("alg")? {
        None => None,
        Some(name) => {
            Some(Algorithm::from_name(name).ok_or_else(|| format!("unsupported `alg` {name:?}"))?)
        }
    };

    let key = match kty {
        "RSA" => rsa_key(&b64(required("n")?, "n")?, &b64(required("e")?, "e")?)?,
        "EC" => {
            let (curve_alg, size) = match required("crv")? {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let x = b64(required("x")?, "x")?;
            let y = b64(required("y")?, "y")?;
            if x.len() != size || y.len() != size {
                return Err(format!("EC coordinates must be {size} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::new(&Material::Ec(&point), &[curve_alg])?
        }
        "OKP" => {
            match required("crv")? {
                "Ed25519" => {}
                other => return Err(format!("unsupported OKP curve {other:?}")),
            }
            let x = b64(required("x")?, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 public key must be 32 bytes".into());
            }
            Key::new(&Material::Ed25519(&x), &[Algorithm::EdDSA])?
        }
        "oct" if allow_oct => {
            let k = b64(required("k")?, "k")?;
            let alg = alg.ok_or("an `oct` JWK must name its HS* `alg`")?;
            Key::hmac(&k, alg).map_err(|e| e.to_string())?
        }
        "oct" => return Err("symmetric `oct` keys are not accepted from a JWKS".into()),
        other => return Err(format!("unsupported `kty` {other:?}")),
    };
    // A JWK's `alg` pins the key to that one algorithm (RFC 7517 §4.4).
    let key = match alg {
        Some(alg) => key
            .with_algorithms([alg])
            .map_err(|_| format!("`alg` {alg:?} does not fit a {kty} key"))?,
        None => key,
    };
    Ok(match kid {
        Some(kid) => key.with_kid(kid),
        None => key,
    })
}

fn b64(value: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("`{name}` is not base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_wrong_use_ops_and_alg() {
        let x = "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";
        let ok = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        assert!(parse_jwk(&ok, false).is_ok());
        let rsa = serde_json::json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5; 256]), "e": "AQAB"});
        assert!(parse_jwk(&rsa, false).is_ok());
        for bad in [
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "enc"}),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "key_ops": ["encrypt"]}),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "RS256"}),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "none"}),
            serde_json::json!({"kty": "OKP", "crv": "X25519", "x": x}),
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            serde_json::json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5; 256]), "e": "AQ"}),
            serde_json::json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5; 256]), "e": "Ag"}),
        ] {
            assert!(parse_jwk(&bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn oct_only_when_explicit() {
        let k = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let oct = serde_json::json!({"kty": "oct", "k": k, "alg": "HS256", "kid": "s"});
        assert!(parse_jwk(&oct, false).is_err());
        let key = parse_jwk(&oct, true);
        assert!(
            matches!(key, Ok(ref k) if k.kid() == Some("s") && k.algorithms() == [Algorithm::HS256])
        );
    }
}
