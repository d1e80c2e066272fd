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

/// The members of a private or symmetric key, which a public JWK must not carry.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public key sent in a message (a DPoP proof's `jwk` header, RFC 9449 §4.2): an asymmetric
/// key with no private member, parsed with the checks of [`parse_jwk`]. Returns the key and its
/// RFC 7638 thumbprint.
pub(crate) fn parse_public_jwk(value: &Value) -> Result<(Key, String), String> {
    let obj = value.as_object().ok_or("a JWK must be a JSON object")?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(format!(
            "the JWK carries the private or symmetric member `{member}`"
        ));
    }
    let key = parse_jwk(value, false)?;
    Ok((key, thumbprint(obj)?))
}

/// The RFC 7638 JWK thumbprint: base64url of the SHA-256 of the required members of the key
/// type, in lexicographic order, as JSON without whitespace.
pub(crate) fn thumbprint(obj: &serde_json::Map<String, Value>) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let names: &[&str] = match obj.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("oct") => &["k", "kty"],
        _ => return Err("no thumbprint for this `kty`".into()),
    };
    let mut canonical = String::with_capacity(160);
    canonical.push('{');
    for (i, name) in names.iter().enumerate() {
        let value = obj
            .get(*name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing `{name}`"))?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        // A JSON string: the value's own escapes (base64url needs none).
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
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

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_of_rfc_7638_example() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let obj = jwk.as_object().cloned().unwrap_or_default();
        assert_eq!(
            thumbprint(&obj).as_deref(),
            Ok("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        let jkt = parse_public_jwk(&jwk).map(|(_, jkt)| jkt);
        assert_eq!(
            jkt.as_deref(),
            Ok("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn public_jwk_refuses_private_members() {
        let x = "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";
        let public = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        assert!(parse_public_jwk(&public).is_ok());
        for member in PRIVATE_MEMBERS {
            let mut private = public.clone();
            private[member] = Value::from("AAAA");
            let err = parse_public_jwk(&private).err().unwrap_or_default();
            assert!(err.contains(member), "{member}: {err}");
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
