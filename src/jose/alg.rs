//! [`Algorithm`]: the JWS signature algorithms this crate verifies, by their RFC 7518 names.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm (RFC 7518 §3; RFC 8037 for EdDSA) that this crate verifies.
///
/// `none` is not one of them and never will be. The enum is this crate's own, not
/// jsonwebtoken's, so that a new jsonwebtoken major is not a breaking change here, and it is
/// `#[non_exhaustive]` so that algorithms can be added (ES512, ML-DSA) without one either.
///
/// ```
/// use tower_oauth2::Algorithm;
/// assert_eq!("ES256".parse::<Algorithm>().ok(), Some(Algorithm::ES256));
/// assert_eq!(Algorithm::EdDSA.name(), "EdDSA");
/// assert!("none".parse::<Algorithm>().is_err());
/// assert!("es256".parse::<Algorithm>().is_err(), "names are case-sensitive");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in a fixed order (an algorithm's position is its bit in a key's
    /// allow-list).
    pub(crate) const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::EdDSA,
    ];

    /// The RSA family (RS*, PS*): what an RSA key allows unless narrowed.
    pub(crate) const RSA: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    /// The `alg` name, as in a JWS header or a JWK.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm with this `alg` name, compared case-sensitively (RFC 7515 §4.1.1).
    /// Whether this is an HMAC (symmetric) algorithm.
    pub(crate) fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// A `match` rather than a scan of [`ALL`](Self::ALL): it runs once per request, on the
    /// header; the unit test below keeps it in step with [`name`](Self::name).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "EdDSA" => Algorithm::EdDSA,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an [`Algorithm`] from a name this crate does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm;

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a JWS algorithm this crate verifies")
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl serde::Serialize for Algorithm {
    /// As its `alg` name.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    /// From its `alg` name, case-sensitively; an algorithm this crate does not verify is an
    /// error.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format_args!("unsupported JWS algorithm {name:?}"))
        })
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses an `alg` name, case-sensitively; `none` is never one.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or(UnknownAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_jsonwebtoken() {
        // Same names as jsonwebtoken's enum, which the crypto backends are reached through.
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
            let theirs: jsonwebtoken::Algorithm = alg.name().parse().unwrap_or_else(|_| {
                panic!("jsonwebtoken does not know {alg}");
            });
            assert_eq!(format!("{theirs:?}"), alg.name());
        }
        for bad in ["none", "None", "hs256", "ES512", "", "RS256 "] {
            assert_eq!(Algorithm::from_name(bad), None, "{bad:?}");
            assert!(
                serde_json::from_value::<Algorithm>(bad.into()).is_err(),
                "{bad:?}"
            );
        }
        let json = serde_json::to_value(Algorithm::PS384).unwrap_or_default();
        assert_eq!(json, "PS384");
        assert_eq!(
            serde_json::from_value::<Algorithm>(json).ok(),
            Some(Algorithm::PS384)
        );
    }
}
