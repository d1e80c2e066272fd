//! The server's signing keys: generated, or loaded from PEM or a private JWK; each carries its
//! public JWK (published in the JWKS) and the verification [`Key`] the in-process authenticator
//! uses.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Map, Value, json};

use crate::error::ConfigError;
use crate::jose::compact::{Compact, b64url};
use crate::jose::header::Header;
use crate::keys::backend::PROVIDER;
use crate::keys::pem::{self, Der, OID_EC, OID_ED25519, OID_P256, OID_RSA};
use crate::keys::{Algorithm, Key, KeySet, parse_jwk};

/// A private key the authorization server signs access tokens with: ES256 (the default), EdDSA
/// (Ed25519) or RS256. Its key id is the RFC 7638 thumbprint of its public JWK unless set with
/// [`with_kid`](Self::with_kid). `Debug` never prints key material.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    /// The public JWK, without `kid`/`alg`/`use` (added by [`public_jwk`](Self::public_jwk)).
    public: Map<String, Value>,
}

impl SigningKey {
    /// Generates a key from the operating system's random source: P-256 for `ES256`, Ed25519 for
    /// `EdDSA`, 2048-bit RSA for `RS256`.
    pub fn generate(alg: Algorithm) -> Result<Self, ConfigError> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let failed = |what: &str| ConfigError::new(format!("generating {what} key failed"));
        let encoding = match alg {
            Algorithm::ES256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| failed("a P-256"))?;
                EncodingKey::from_ec_der(doc.as_ref())
            }
            Algorithm::EdDSA => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|_| failed("an Ed25519"))?;
                EncodingKey::from_ed_der(&ed25519_pkcs8(&seed))
            }
            Algorithm::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| failed("an RSA"))?;
                let pkcs8 = pair.as_der().map_err(|_| failed("an RSA"))?;
                let pkcs1 = pkcs8_inner(pkcs8.as_ref(), OID_RSA).map_err(ConfigError::new)?;
                EncodingKey::from_rsa_der(pkcs1)
            }
            other => return Err(unsupported(other)),
        };
        Self::new(alg, encoding)
    }

    /// Loads a private key from PEM: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC 1, P-256) or
    /// `RSA PRIVATE KEY` (PKCS#1). The algorithm follows from the key: ES256 for P-256, EdDSA for
    /// Ed25519, RS256 for RSA (at least 2048 bits).
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let context = |e: String| ConfigError::new(format!("signing key PEM: {e}"));
        let (label, der) = pem::block(pem.as_ref()).map_err(context)?;
        match label.as_str() {
            "PRIVATE KEY" => {
                let oid = pkcs8_algorithm(&der).map_err(context)?;
                if oid == OID_RSA {
                    let pkcs1 = pkcs8_inner(&der, OID_RSA).map_err(context)?;
                    Self::new(Algorithm::RS256, EncodingKey::from_rsa_der(pkcs1))
                } else if oid == OID_EC {
                    Self::new(Algorithm::ES256, EncodingKey::from_ec_der(&der))
                } else if oid == OID_ED25519 {
                    Self::new(Algorithm::EdDSA, EncodingKey::from_ed_der(&der))
                } else {
                    Err(context("unsupported key algorithm".into()))
                }
            }
            "EC PRIVATE KEY" => {
                let pkcs8 = sec1_to_pkcs8(&der).map_err(context)?;
                Self::new(Algorithm::ES256, EncodingKey::from_ec_der(&pkcs8))
            }
            "RSA PRIVATE KEY" => Self::new(Algorithm::RS256, EncodingKey::from_rsa_der(&der)),
            other => Err(context(format!(
                "unsupported PEM type {other:?}; expected a private key"
            ))),
        }
    }

    /// Reads [`from_pem`](Self::from_pem) from a file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        Self::from_pem(pem)
    }

    /// Loads a private JWK (RFC 7518 §6): `EC` P-256 with `d`, `OKP` Ed25519 with `d`, or `RSA`
    /// with `d`, `p`, `q`, `dp`, `dq`, `qi`. Its `kid`, when present, is kept.
    pub fn from_jwk_json(json: &str) -> Result<Self, ConfigError> {
        let context = |e: &str| ConfigError::new(format!("signing key JWK: {e}"));
        let value: Value = serde_json::from_str(json).map_err(|_| context("not a JSON object"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| context("not a JSON object"))?;
        let text = |name: &str| obj.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>, ConfigError> {
            let v = text(name).ok_or_else(|| context(&format!("missing `{name}`")))?;
            URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| context(&format!("`{name}` is not base64url")))
        };
        let key = match (text("kty"), text("crv")) {
            (Some("EC"), Some("P-256")) => {
                let d = bytes("d")?;
                let (x, y) = (bytes("x")?, bytes("y")?);
                if d.len() != 32 || x.len() != 32 || y.len() != 32 {
                    return Err(context("P-256 coordinates are 32 bytes"));
                }
                let point = [&[4u8][..], &x, &y].concat();
                Self::new(
                    Algorithm::ES256,
                    EncodingKey::from_ec_der(&ec_pkcs8(&d, Some(&point))),
                )?
            }
            (Some("OKP"), Some("Ed25519")) => {
                let d: [u8; 32] = bytes("d")?
                    .try_into()
                    .map_err(|_| context("an Ed25519 `d` is 32 bytes"))?;
                Self::new(
                    Algorithm::EdDSA,
                    EncodingKey::from_ed_der(&ed25519_pkcs8(&d)),
                )?
            }
            (Some("RSA"), _) => {
                let mut fields = Vec::new();
                for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
                    fields.push(bytes(name)?);
                }
                Self::new(
                    Algorithm::RS256,
                    EncodingKey::from_rsa_der(&rsa_pkcs1(&fields)),
                )?
            }
            _ => {
                return Err(context(
                    "expected an EC P-256, OKP Ed25519 or RSA private key",
                ));
            }
        };
        // The public half given in the JWK must be the one the private half implies.
        for name in ["x", "y", "n", "e"] {
            if let Some(given) = obj.get(name)
                && key.public.get(name) != Some(given)
            {
                return Err(context(&format!("`{name}` does not match the private key")));
            }
        }
        Ok(match text("kid") {
            Some(kid) if !kid.is_empty() => key.with_kid(kid),
            _ => key,
        })
    }

    /// Replaces the key id (by default the RFC 7638 thumbprint).
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self
    }

    /// The key id tokens name in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK as published in the JWKS, with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.public.clone();
        jwk.insert("kid".into(), Value::String(self.kid.clone()));
        jwk.insert("alg".into(), Value::String(alg_name(self.alg).into()));
        jwk.insert("use".into(), Value::String("sig".into()));
        Value::Object(jwk)
    }

    /// The private key's DER (PKCS#8 for EC and Ed25519, PKCS#1 for RSA), for a store.
    pub(crate) fn private_der(&self) -> &[u8] {
        self.encoding.as_bytes()
    }

    /// A key read back from a store: `alg` as [`alg_name`] spells it, DER as
    /// [`private_der`](Self::private_der) wrote it.
    pub(crate) fn from_der(alg: &str, der: &[u8], kid: &str) -> Result<Self, ConfigError> {
        let (alg, encoding) = match alg {
            "ES256" => (Algorithm::ES256, EncodingKey::from_ec_der(der)),
            "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_der(der)),
            "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_der(der)),
            other => {
                return Err(ConfigError::new(format!(
                    "stored signing key {kid}: unknown algorithm {other:?}"
                )));
            }
        };
        Ok(Self::new(alg, encoding)?.with_kid(kid))
    }

    /// The verification key for tokens this key signed.
    pub(crate) fn verification_key(&self) -> Result<Key, ConfigError> {
        parse_jwk(&self.public_jwk(), false)
            .map_err(|e| ConfigError::new(format!("signing key's public half: {e}")))
    }

    /// A compact JWS of `claims` with the header `{alg, typ, kid}`.
    pub(crate) fn sign(&self, typ: &str, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": alg_name(self.alg), "typ": typ, "kid": self.kid});
        let encode = |v: &Value| serde_json::to_vec(v).map(|b| URL_SAFE_NO_PAD.encode(b));
        let header = encode(&header).map_err(|e| e.to_string())?;
        let claims = encode(claims).map_err(|e| e.to_string())?;
        let mut token = format!("{header}.{claims}");
        // jsonwebtoken's own name for the algorithm; signing is not on any hot path.
        let alg: jsonwebtoken::Algorithm = self
            .alg
            .name()
            .parse()
            .map_err(|e| format!("signing key unusable: {e}"))?;
        let signer = (PROVIDER.signer_factory)(&alg, &self.encoding)
            .map_err(|e| format!("signing key unusable: {e}"))?;
        let signature = signer
            .try_sign(token.as_bytes())
            .map_err(|e| format!("signing failed: {e}"))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// Derives the public half, checks the key signs what its public half verifies.
    fn new(alg: Algorithm, encoding: EncodingKey) -> Result<Self, ConfigError> {
        let bad = |what: &str| ConfigError::new(format!("signing key: {what}"));
        let utils = &PROVIDER.key_utils;
        let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
        let mut public = Map::new();
        match alg {
            Algorithm::ES256 => {
                let (curve, x, y) = (utils.ec_pub_components_from_private_key)(
                    encoding.as_bytes(),
                    jsonwebtoken::Algorithm::ES256,
                )
                .map_err(|_| bad("not a P-256 private key"))?;
                if curve != jsonwebtoken::jwk::EllipticCurve::P256 {
                    return Err(bad("only P-256 is supported for ES256"));
                }
                // The required members only: the key id is their RFC 7638 thumbprint.
                public.insert("crv".into(), "P-256".into());
                public.insert("kty".into(), "EC".into());
                public.insert("x".into(), b64(&x));
                public.insert("y".into(), b64(&y));
            }
            Algorithm::EdDSA => {
                let x = (utils.ed_pub_components_from_private_key)(
                    encoding.as_bytes(),
                    &jsonwebtoken::jwk::EllipticCurve::Ed25519,
                )
                .map_err(|_| bad("not an Ed25519 private key"))?;
                public.insert("crv".into(), "Ed25519".into());
                public.insert("kty".into(), "OKP".into());
                public.insert("x".into(), b64(&x));
            }
            Algorithm::RS256 => {
                let (n, e) = (utils.rsa_pub_components_from_private_key)(encoding.as_bytes())
                    .map_err(|_| bad("not an RSA private key"))?;
                public.insert("e".into(), b64(&e));
                public.insert("kty".into(), "RSA".into());
                public.insert("n".into(), b64(&n));
            }
            other => return Err(unsupported(other)),
        }
        let kid = crate::keys::thumbprint(&public).map_err(|e| bad(&e))?;
        let key = Self {
            alg,
            kid,
            encoding,
            public,
        };
        // Round trip: the public half (with this crate's key checks, e.g. RSA size) verifies
        // what the private half signs.
        let verify = key.verification_key()?;
        let token = key
            .sign("JWT", &json!({"self-test": true}))
            .map_err(|e| bad(&e))?;
        let parts = Compact::split(&token).map_err(|_| bad("self-test"))?;
        let header_json = b64url(parts.header, "header").map_err(|_| bad("self-test"))?;
        let header = Header::from_json(&header_json).map_err(|_| bad("self-test"))?;
        crate::validate::verify_signature(&parts, &header, &KeySet::new([verify]))
            .map_err(|_| bad("the private key does not match its public half"))?;
        Ok(key)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn unsupported(alg: Algorithm) -> ConfigError {
    ConfigError::new(format!(
        "the server signs with ES256, EdDSA or RS256, not {alg:?}"
    ))
}

pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    alg.name()
}

/// The OID of a PKCS#8 `PrivateKeyInfo`'s algorithm.
fn pkcs8_algorithm(der: &[u8]) -> Result<Vec<u8>, String> {
    let mut info = Der::new(der).sequence()?;
    info.element(0x02)?;
    let mut algorithm = info.sequence()?;
    let oid = algorithm.element(0x06)?;
    if oid == OID_EC {
        let curve = algorithm.element(0x06)?;
        if curve != OID_P256 {
            return Err("only the P-256 curve is supported".into());
        }
    }
    Ok(oid.to_vec())
}

/// The `privateKey` octets of a PKCS#8 `PrivateKeyInfo` whose algorithm is `oid`.
fn pkcs8_inner<'a>(der: &'a [u8], oid: &[u8]) -> Result<&'a [u8], String> {
    let mut info = Der::new(der).sequence()?;
    info.element(0x02)?;
    if info.sequence()?.element(0x06)? != oid {
        return Err("unexpected key algorithm".into());
    }
    info.element(0x04)
}

/// Wraps a SEC 1 `ECPrivateKey` on P-256 in PKCS#8.
fn sec1_to_pkcs8(der: &[u8]) -> Result<Vec<u8>, String> {
    let mut key = Der::new(der).sequence()?;
    key.element(0x02)?;
    let d = key.element(0x04)?;
    let mut point = None;
    while let Some(tag) = key.peek_tag() {
        let content = key.element(tag)?;
        match tag {
            0xa0 if Der::new(content).element(0x06)? != OID_P256 => {
                return Err("only the P-256 curve is supported".into());
            }
            0xa1 => {
                let bits = Der::new(content).element(0x03)?;
                point = bits.get(1..).map(<[u8]>::to_vec);
            }
            _ => {}
        }
    }
    if d.len() != 32 {
        return Err("not a P-256 private key".into());
    }
    Ok(ec_pkcs8(d, point.as_deref()))
}

/// DER: one element.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// DER: an unsigned big-endian INTEGER.
fn uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed = pem::unsigned(bytes);
    let start = trimmed
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(trimmed.len() - 1);
    let trimmed = &trimmed[start..];
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        tlv(0x02, &[&[0u8][..], trimmed].concat())
    } else {
        tlv(0x02, trimmed)
    }
}

/// PKCS#8 for an Ed25519 seed (RFC 8410).
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let algorithm = tlv(0x30, &tlv(0x06, OID_ED25519));
    let private = tlv(0x04, &tlv(0x04, seed));
    tlv(0x30, &[tlv(0x02, &[0]), algorithm, private].concat())
}

/// PKCS#8 for a P-256 scalar (RFC 5915 inside RFC 5208).
fn ec_pkcs8(d: &[u8], point: Option<&[u8]>) -> Vec<u8> {
    let algorithm = tlv(0x30, &[tlv(0x06, OID_EC), tlv(0x06, OID_P256)].concat());
    let mut ec = [tlv(0x02, &[1]), tlv(0x04, d)].concat();
    if let Some(point) = point {
        ec.extend(tlv(0xa1, &tlv(0x03, &[&[0u8][..], point].concat())));
    }
    let private = tlv(0x04, &tlv(0x30, &ec));
    tlv(0x30, &[tlv(0x02, &[0]), algorithm, private].concat())
}

/// PKCS#1 `RSAPrivateKey` from n, e, d, p, q, dp, dq, qi.
fn rsa_pkcs1(fields: &[Vec<u8>]) -> Vec<u8> {
    let mut body = tlv(0x02, &[0]);
    for field in fields {
        if field.is_empty() {
            body.extend(tlv(0x02, &[0]));
        } else {
            body.extend(uint(field));
        }
    }
    tlv(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_publish() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let key = SigningKey::generate(alg).expect("generate");
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.kid().len(), 43, "thumbprint kid");
            let jwk = key.public_jwk();
            assert!(
                jwk.get("d").is_none(),
                "no private member in the public JWK"
            );
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(
                format!("{key:?}"),
                format!("SigningKey {{ alg: {alg:?}, kid: {:?}, .. }}", key.kid())
            );
        }
        assert!(SigningKey::generate(Algorithm::HS256).is_err());
        assert!(SigningKey::generate(Algorithm::PS256).is_err());
    }

    #[test]
    fn der_integers() {
        assert_eq!(uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[0x00, 0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(tlv(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
    }
}
