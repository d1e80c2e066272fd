//! JWK (RFC 7517) parsing into verification keys.
//!
//! Written by hand rather than through `jsonwebtoken::jwk::Jwk` so that one odd member (an
//! unknown `alg`, a private-use `kty`) skips that key instead of failing a whole JWKS, and so that
//! `use`, `key_ops`, key sizes and curve/algorithm agreement are checked before a key is trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use super::{Key, algorithm_from_name};

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
    let alg = match member("alg")? {
        None => None,
        Some(name) => {
            Some(algorithm_from_name(name).ok_or_else(|| format!("unsupported `alg` {name:?}"))?)
        }
    };

    let (decoding, family_algs): (DecodingKey, Vec<Algorithm>) = match kty {
        "RSA" => {
            let n = b64(required("n")?, "n")?;
            let e = b64(required("e")?, "e")?;
            let bits = significant_bits(&n);
            if bits < 2048 {
                return Err(format!(
                    "RSA modulus is {bits} bits; at least 2048 are required"
                ));
            }
            // An even or tiny exponent is not an RSA public key (e = 1 "verifies" by copying).
            if e.last().is_none_or(|b| b & 1 == 0) || significant_bits(&e) < 2 {
                return Err("RSA exponent must be odd and at least 3".into());
            }
            (
                DecodingKey::from_rsa_raw_components(&n, &e),
                AlgorithmFamily::Rsa.algorithms().to_vec(),
            )
        }
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
            (DecodingKey::from_ec_der(&point), vec![curve_alg])
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
            (DecodingKey::from_ed_der(&x), vec![Algorithm::EdDSA])
        }
        "oct" if allow_oct => {
            let k = b64(required("k")?, "k")?;
            let alg = alg.ok_or("an `oct` JWK must name its HS* `alg`")?;
            return Key::hmac(&k, alg)
                .map(|key| with_kid(key, member("kid").ok().flatten()))
                .map_err(|e| e.to_string());
        }
        "oct" => return Err("symmetric `oct` keys are not accepted from a JWKS".into()),
        other => return Err(format!("unsupported `kty` {other:?}")),
    };

    let algorithms = match alg {
        Some(alg) if family_algs.contains(&alg) => vec![alg],
        Some(alg) => return Err(format!("`alg` {alg:?} does not fit a {kty} key")),
        None => family_algs,
    };
    Ok(with_kid(Key::new(decoding, &algorithms), member("kid")?))
}

fn with_kid(key: Key, kid: Option<&str>) -> Key {
    match kid {
        Some(kid) => key.with_kid(kid),
        None => key,
    }
}

fn b64(value: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// The number of significant bits of a big-endian unsigned integer.
fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_bits_ignores_leading_zeros() {
        assert_eq!(significant_bits(&[0, 0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[]), 0);
    }

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
