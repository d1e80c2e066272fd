//! Verification keys: a [`Key`] fixes the algorithms it may verify, and a [`KeySet`] is an
//! immutable set of keys selected by `kid`.
//!
//! Keys come from PEM ([`Key::from_pem`]), a JWK ([`Key::from_jwk_json`]), a JWKS document
//! ([`KeySet::from_jwks_json`]) or an HMAC secret ([`Key::hmac`]). A `KeySet` never changes once
//! built; a refreshing source swaps whole sets, so readers never see half a set.

mod jwk;

use std::fmt;
use std::path::Path;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::error::ConfigError;

pub(crate) use jwk::parse_jwk;

/// The algorithms this crate verifies. `none` is not among them and never will be.
pub(crate) const SUPPORTED: [Algorithm; 12] = [
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

/// Parses a JWS `alg` name (case-sensitive, RFC 7515 §4.1.1) into a supported algorithm.
pub(crate) fn algorithm_from_name(name: &str) -> Option<Algorithm> {
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

/// A small set of algorithms, one bit each.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AlgorithmSet(u16);

impl AlgorithmSet {
    fn bit(alg: Algorithm) -> u16 {
        SUPPORTED
            .iter()
            .position(|a| *a == alg)
            .map_or(0, |i| 1 << i)
    }

    pub(crate) fn of(algs: &[Algorithm]) -> Self {
        Self(algs.iter().fold(0, |acc, a| acc | Self::bit(*a)))
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    pub(crate) fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        SUPPORTED.into_iter().filter(move |a| self.contains(*a))
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// One verification key and the algorithms it may verify.
///
/// The key, never the token's header, decides the algorithm: a token whose `alg` is not in the
/// key's list is rejected before any cryptography runs. `Debug` never prints key material.
#[derive(Clone)]
pub struct Key {
    kid: Option<Box<str>>,
    algorithms: AlgorithmSet,
    decoding: DecodingKey,
}

impl Key {
    /// A public key from PEM: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC P-256/P-384 or Ed25519
    /// (`PUBLIC KEY`). RSA keys allow RS256/384/512 and PS256/384/512, EC keys the one
    /// algorithm of their curve, Ed25519 keys EdDSA; narrow with [`Key::with_algorithms`].
    ///
    /// ```
    /// # fn main() -> Result<(), tower_oauth2::ConfigError> {
    /// let pem = "-----BEGIN PUBLIC KEY-----\n\
    ///     MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
    ///     -----END PUBLIC KEY-----\n";
    /// let key = tower_oauth2::Key::from_pem(pem)?.with_kid("ed-1");
    /// assert_eq!(key.kid(), Some("ed-1"));
    /// # Ok(()) }
    /// ```
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = pem.as_ref();
        if let Ok(decoding) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(decoding, AlgorithmFamily::Rsa.algorithms()));
        }
        if let Ok(decoding) = DecodingKey::from_ec_pem(pem) {
            let alg = match decoding.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => Algorithm::ES256,
                Ok(97) => Algorithm::ES384,
                _ => {
                    return Err(ConfigError::new(
                        "PEM EC key: only the P-256 and P-384 curves are supported",
                    ));
                }
            };
            return Ok(Self::new(decoding, &[alg]));
        }
        if let Ok(decoding) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self::new(decoding, &[Algorithm::EdDSA]));
        }
        Err(ConfigError::new(
            "PEM: not an RSA, EC (P-256/P-384) or Ed25519 public key \
             (expected -----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----)",
        ))
    }

    /// A public key from a PEM file; see [`Key::from_pem`].
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::new(format!("reading {}: {e}", path.display())))?;
        Self::from_pem(pem)
    }

    /// An HMAC secret for `algorithm` (HS256, HS384 or HS512). HMAC is only ever accepted through
    /// a key built here or from an explicit `oct` JWK ([`Key::from_jwk_json`]); a JWKS document
    /// never contributes HMAC keys.
    ///
    /// The secret must be at least as long as the hash output (RFC 7518 §3.2): 32, 48 or 64 bytes.
    ///
    /// ```
    /// use tower_oauth2::{Algorithm, Key};
    /// let key = Key::hmac([7u8; 32], Algorithm::HS256);
    /// assert!(key.is_ok());
    /// assert!(Key::hmac(b"short", Algorithm::HS256).is_err());
    /// assert!(Key::hmac([7u8; 32], Algorithm::RS256).is_err());
    /// ```
    pub fn hmac(secret: impl AsRef<[u8]>, algorithm: Algorithm) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        let min = match algorithm {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            other => {
                return Err(ConfigError::new(format!(
                    "an HMAC secret needs an HS* algorithm, not {other:?}"
                )));
            }
        };
        if secret.len() < min {
            return Err(ConfigError::new(format!(
                "HMAC secret for {algorithm:?} is {} bytes; RFC 7518 §3.2 requires at least {min}",
                secret.len()
            )));
        }
        Ok(Self::new(DecodingKey::from_secret(secret), &[algorithm]))
    }

    /// One key from a JWK JSON object (RFC 7517). `RSA`, `EC` (P-256, P-384), `OKP` (Ed25519)
    /// and `oct` (HMAC) keys are accepted. A JWK whose `use` is not `sig`, whose `key_ops` lacks
    /// `verify`, or whose `alg` does not fit its key type is refused.
    pub fn from_jwk_json(json: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new(format!("JWK is not valid JSON: {e}")))?;
        parse_jwk(&value, true).map_err(|e| ConfigError::new(format!("JWK: {e}")))
    }

    pub(crate) fn new(decoding: DecodingKey, algorithms: &[Algorithm]) -> Self {
        Self {
            kid: None,
            algorithms: AlgorithmSet::of(algorithms),
            decoding,
        }
    }

    /// Sets the key id that tokens name in their `kid` header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into().into_boxed_str());
        self
    }

    /// Narrows the algorithms this key may verify. Every algorithm must belong to the key's
    /// family (RSA, EC, EdDSA or HMAC) and be among those it already allows.
    pub fn with_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Result<Self, ConfigError> {
        let list: Vec<Algorithm> = algorithms.into_iter().collect();
        let set = AlgorithmSet::of(&list);
        if list.is_empty() || set.0 == 0 {
            return Err(ConfigError::new(
                "a key needs at least one supported algorithm",
            ));
        }
        if list.iter().any(|a| !set.contains(*a)) || !set.is_subset_of(self.algorithms) {
            return Err(ConfigError::new(format!(
                "algorithms {list:?} do not fit this key (it allows {:?})",
                self.algorithms
            )));
        }
        self.algorithms = set;
        Ok(self)
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.algorithms.iter().collect()
    }

    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(alg)
    }

    /// Verifies `signature` over `message` with `alg`, which the caller has checked this key
    /// allows.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &Vec<u8>) -> bool {
        match (crate::backend::PROVIDER.verifier_factory)(&alg, &self.decoding) {
            Ok(verifier) => verifier.verify(message, signature).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// An immutable set of verification keys.
///
/// A token with a `kid` is checked only against the keys with that id; a token without one is
/// tried against every key that allows its algorithm.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// What [`KeySet::select`] found for a token.
pub(crate) enum Selection<'a> {
    /// Keys to try, in order; each allows the token's algorithm.
    Candidates(Vec<&'a Key>),
    /// A key with the token's `kid` exists but does not allow its algorithm.
    AlgorithmNotAllowed,
    /// No key fits.
    Unknown,
}

impl KeySet {
    /// A set of the given keys.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// Parses a JWKS document (`{"keys": [...]}`, RFC 7517 §5). Keys that cannot be used for
    /// signature verification (`use: enc`, `key_ops` without `verify`, unsupported `kty`, `crv`
    /// or `alg`, malformed members, symmetric `oct` keys) are skipped with a `tracing` warning;
    /// they never make the whole set fail. Only a document that is not a JWKS is an error.
    pub fn from_jwks_json(json: &str) -> Result<Self, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks = serde_json::from_str(json).map_err(|e| {
            ConfigError::new(format!(
                "not a JWKS document (expected {{\"keys\": [...]}}): {e}"
            ))
        })?;
        let mut keys = Vec::with_capacity(jwks.keys.len());
        for (index, value) in jwks.keys.iter().enumerate() {
            match parse_jwk(value, false) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    let kid = value.get("kid").and_then(|k| k.as_str()).unwrap_or("");
                    tracing::warn!(index, kid, %reason, "skipping unusable JWK");
                }
            }
        }
        Ok(Self { keys })
    }

    /// Reads and parses a JWKS file; see [`KeySet::from_jwks_json`].
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("reading {}: {e}", path.display())))?;
        Self::from_jwks_json(&json)
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Adds a key.
    pub(crate) fn push(&mut self, key: Key) {
        self.keys.push(key);
    }

    /// The keys a token with this `kid` and `alg` may be verified with.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection<'_> {
        let mut candidates = Vec::new();
        let mut kid_matched = false;
        for key in &self.keys {
            let fits_kid = match kid {
                Some(kid) => key.kid() == Some(kid),
                None => true,
            };
            if fits_kid {
                kid_matched = true;
                if key.allows(alg) {
                    candidates.push(key);
                }
            }
        }
        if !candidates.is_empty() {
            Selection::Candidates(candidates)
        } else if kid.is_some() && kid_matched {
            Selection::AlgorithmNotAllowed
        } else {
            Selection::Unknown
        }
    }
}

impl FromIterator<Key> for KeySet {
    fn from_iter<I: IntoIterator<Item = Key>>(iter: I) -> Self {
        Self::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn algorithm_set_round_trips() {
        let set = AlgorithmSet::of(&[Algorithm::RS256, Algorithm::EdDSA]);
        assert!(set.contains(Algorithm::RS256));
        assert!(!set.contains(Algorithm::HS256));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Algorithm::RS256, Algorithm::EdDSA]
        );
    }

    #[test]
    fn pem_ed25519_allows_only_eddsa() -> Result<(), ConfigError> {
        let key = Key::from_pem(ED_PEM)?;
        assert_eq!(key.algorithms(), vec![Algorithm::EdDSA]);
        assert!(key.clone().with_algorithms([Algorithm::RS256]).is_err());
        assert!(!format!("{key:?}").contains("MCow"));
        Ok(())
    }

    #[test]
    fn garbage_pem_is_a_config_error() {
        let err = Key::from_pem("not a pem")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("PEM"), "{err}");
    }

    #[test]
    fn selection_by_kid_and_algorithm() -> Result<(), ConfigError> {
        let set = KeySet::new([
            Key::from_pem(ED_PEM)?.with_kid("a"),
            Key::hmac([1u8; 32], Algorithm::HS256)?.with_kid("h"),
        ]);
        assert!(
            matches!(set.select(Some("a"), Algorithm::EdDSA), Selection::Candidates(c) if c.len() == 1)
        );
        assert!(matches!(
            set.select(Some("a"), Algorithm::HS256),
            Selection::AlgorithmNotAllowed
        ));
        assert!(matches!(
            set.select(Some("zz"), Algorithm::EdDSA),
            Selection::Unknown
        ));
        assert!(
            matches!(set.select(None, Algorithm::HS256), Selection::Candidates(c) if c.len() == 1)
        );
        assert!(matches!(
            set.select(None, Algorithm::ES256),
            Selection::Unknown
        ));
        Ok(())
    }

    #[test]
    fn jwks_skips_bad_keys_and_keeps_good_ones() -> Result<(), ConfigError> {
        let jwks = r#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"ok","x":"Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"},
            {"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"},
            {"kty":"oct","kid":"secret","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty":"XYZ","kid":"weird"},
            {"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"},
            {"kty":"RSA","kid":"broken","n":"!!","e":"AQAB"},
            "not an object"
        ]}"#;
        let set = KeySet::from_jwks_json(jwks)?;
        let kids: Vec<_> = set.keys().iter().filter_map(Key::kid).collect();
        assert_eq!(kids, vec!["ok"]);
        assert!(KeySet::from_jwks_json("[]").is_err());
        Ok(())
    }
}
