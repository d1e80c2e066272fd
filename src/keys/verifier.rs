//! Signature verification with key material prepared once, when the key is loaded.
//!
//! On the aws-lc-rs backend each (key, algorithm) pair is parsed into an
//! `aws_lc_rs::signature::ParsedPublicKey` (or an `hmac::Key`) when the [`Key`](super::Key) is
//! built, so a request does not parse the key again: for an RSA key that saves rebuilding the
//! key and its Montgomery context, for EC and Ed25519 decoding and checking the point, for HMAC
//! hashing the padded secret. A key aws-lc-rs cannot parse (an EC point off its curve, say) is
//! refused when it is loaded rather than failing every verification later.
//!
//! On the RustCrypto backend verification goes through jsonwebtoken's provider, as before.

/// The public (or, for HMAC, secret) material of a key, as read from PEM or a JWK.
pub(crate) enum Material<'a> {
    /// Big-endian modulus and exponent, already checked (size, exponent, ROCA).
    Rsa { n: &'a [u8], e: &'a [u8] },
    /// An uncompressed SEC 1 point (`04 || x || y`).
    Ec(&'a [u8]),
    /// A 32-byte Ed25519 public key.
    Ed25519(&'a [u8]),
    /// An HMAC secret, already checked against its algorithm's minimum size.
    Hmac(&'a [u8]),
}

pub(crate) use imp::Verifier;

#[cfg(feature = "aws-lc-rs")]
mod imp {
    use std::sync::Arc;

    use crate::jose::Algorithm;
    use aws_lc_rs::hmac;
    use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};

    use super::Material;

    /// One prepared verifier per algorithm the key allows.
    #[derive(Clone)]
    pub(crate) struct Verifier(Arc<[(Algorithm, Prepared)]>);

    #[derive(Clone)]
    enum Prepared {
        Signature(ParsedPublicKey),
        /// Boxed: an `hmac::Key` holds the prepared inner and outer hash states (over 1 KiB).
        Hmac(Box<hmac::Key>),
    }

    fn public_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match alg {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
            _ => return None,
        })
    }

    fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
        match alg {
            Algorithm::HS256 => Some(hmac::HMAC_SHA256),
            Algorithm::HS384 => Some(hmac::HMAC_SHA384),
            Algorithm::HS512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }

    impl Verifier {
        /// Prepares `material` for each of `algorithms`, all of which must fit it.
        pub(crate) fn new(
            material: &Material<'_>,
            algorithms: &[Algorithm],
        ) -> Result<Self, String> {
            let rsa_der;
            let public: &[u8] = match material {
                Material::Rsa { n, e } => {
                    rsa_der = super::rsa_public_key_der(n, e);
                    &rsa_der
                }
                Material::Ec(point) => point,
                Material::Ed25519(x) => x,
                Material::Hmac(secret) => secret,
            };
            let prepared = algorithms
                .iter()
                .map(|&alg| {
                    let prepared = match (material, hmac_algorithm(alg), public_algorithm(alg)) {
                        (Material::Hmac(secret), Some(hmac_alg), _) => {
                            Prepared::Hmac(Box::new(hmac::Key::new(hmac_alg, secret)))
                        }
                        (Material::Hmac(_), None, _) | (_, _, None) => {
                            return Err(format!("{alg:?} does not fit this key"));
                        }
                        (_, _, Some(verification)) => Prepared::Signature(
                            ParsedPublicKey::new(verification, public)
                                .map_err(|e| format!("the key is not a valid {alg:?} key: {e}"))?,
                        ),
                    };
                    Ok((alg, prepared))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Self(prepared.into()))
        }

        /// The same verifier restricted to `keep`.
        pub(crate) fn retain(&self, keep: impl Fn(Algorithm) -> bool) -> Self {
            Self(
                self.0
                    .iter()
                    .filter(|(alg, _)| keep(*alg))
                    .cloned()
                    .collect(),
            )
        }

        /// Whether `signature` over `message` verifies with `alg`. HMAC tags are compared in
        /// constant time (`aws_lc_rs::hmac::verify`).
        pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
            match self.0.iter().find(|(a, _)| *a == alg) {
                Some((_, Prepared::Signature(key))) => key.verify_sig(message, signature).is_ok(),
                Some((_, Prepared::Hmac(key))) => hmac::verify(key, message, signature).is_ok(),
                None => false,
            }
        }
    }
}

#[cfg(not(feature = "aws-lc-rs"))]
mod imp {
    use jsonwebtoken::DecodingKey;

    use crate::jose::Algorithm;

    use super::Material;

    /// jsonwebtoken's key, verified through the RustCrypto provider.
    #[derive(Clone)]
    pub(crate) struct Verifier(DecodingKey);

    impl Verifier {
        pub(crate) fn new(
            material: &Material<'_>,
            _algorithms: &[Algorithm],
        ) -> Result<Self, String> {
            Ok(Self(match material {
                Material::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
                Material::Ec(point) => DecodingKey::from_ec_der(point),
                Material::Ed25519(x) => DecodingKey::from_ed_der(x),
                Material::Hmac(secret) => DecodingKey::from_secret(secret),
            }))
        }

        pub(crate) fn retain(&self, _keep: impl Fn(Algorithm) -> bool) -> Self {
            self.clone()
        }

        pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
            match (crate::keys::backend::PROVIDER.verifier_factory)(&theirs(alg), &self.0) {
                Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
                Err(_) => false,
            }
        }
    }

    /// The same algorithm as jsonwebtoken names it, for its crypto provider.
    fn theirs(alg: Algorithm) -> jsonwebtoken::Algorithm {
        match alg {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::HS384 => jsonwebtoken::Algorithm::HS384,
            Algorithm::HS512 => jsonwebtoken::Algorithm::HS512,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
            Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
#[cfg_attr(not(feature = "aws-lc-rs"), allow(dead_code))]
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_unsigned_integer(n, &mut body);
    der_unsigned_integer(e, &mut body);
    let mut out = Vec::with_capacity(body.len() + 6);
    out.push(0x30);
    der_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn der_unsigned_integer(value: &[u8], out: &mut Vec<u8>) {
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let digits = &value[start..];
    // A set top bit would make the integer negative: prefix a zero byte. Zero is one zero byte.
    let pad = digits.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    der_length(digits.len() + usize::from(pad), out);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    out.push(0x80 | (bytes.len() - start) as u8);
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_der_matches_the_encoding_aws_lc_rs_produces() {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("RSA key generation");
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(public);
        assert_eq!(
            rsa_public_key_der(&components.n, &components.e),
            public.as_ref(),
            "DER RSAPublicKey"
        );
        // Leading zero bytes are not significant; a zero exponent byte string encodes as 0.
        let mut padded = vec![0, 0];
        padded.extend_from_slice(&components.n);
        assert_eq!(rsa_public_key_der(&padded, &components.e), public.as_ref());
    }

    #[test]
    fn der_lengths() {
        let mut out = Vec::new();
        der_length(0x7f, &mut out);
        der_length(0x80, &mut out);
        der_length(0x1234, &mut out);
        assert_eq!(out, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
        let mut zero = Vec::new();
        der_unsigned_integer(&[0, 0], &mut zero);
        assert_eq!(zero, [0x02, 0x01, 0x00]);
    }
}

#[cfg(all(test, feature = "aws-lc-rs"))]
mod load_time_checks {
    use crate::keys::Key;

    const X: &str = "OnFOoAZCYE06yf1ODwEPlO97Q-DjN4M9Yjkt_KSn38Y";
    const Y: &str = "4XlWIfE_hxSh4wXDP8ZYWXGqM_Z9Dr6xvibIT8Y2mcg";

    fn ec_jwk(y: &str) -> String {
        format!(r#"{{"kty":"EC","crv":"P-256","x":"{X}","y":"{y}"}}"#)
    }

    #[test]
    fn an_ec_point_off_the_curve_is_refused_when_loaded() {
        assert!(
            Key::from_jwk_json(&ec_jwk(Y)).is_ok(),
            "the real point loads"
        );
        // The same x with y changed in its last byte: not a point of P-256.
        let off_curve = format!("{}k", &Y[..Y.len() - 1]);
        let err = Key::from_jwk_json(&ec_jwk(&off_curve)).expect_err("off-curve point");
        assert!(err.to_string().contains("not a valid ES256 key"), "{err}");
    }
}
