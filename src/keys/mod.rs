//! Verification keys: a [`Key`] fixes the algorithms it may verify, and a [`KeySet`] is an
//! immutable set of keys selected by `kid`.
//!
//! Keys come from PEM ([`Key::from_pem`]), a JWK ([`Key::from_jwk_json`]), a JWKS document
//! ([`KeySet::from_jwks_json`]) or an HMAC secret ([`Key::hmac`]). A `KeySet` never changes once
//! built. The authenticator reaches its keys through a [`KeySource`], which hands validation
//! one immutable snapshot per request; a refreshing source (a remote JWKS) will swap whole
//! snapshots, so readers never see half a set and never wait on a lock.

mod jwk;
pub(crate) mod pem;
#[cfg(feature = "remote")]
pub(crate) mod remote;
mod verifier;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::error::ConfigError;
pub(crate) use verifier::Material;
use verifier::Verifier;

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

/// Where an authenticator's keys come from. Validation takes a [`Snapshot`] and reads only
/// that; nothing in the validation core knows how the keys got there.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// Keys fixed at build time.
    Static(KeySet),
    /// A JWKS fetched over HTTP and refreshed.
    #[cfg(feature = "remote")]
    Remote(std::sync::Arc<remote::RemoteJwks>),
    /// Keys another part of the process replaces whole (the authorization server's).
    #[cfg(feature = "server")]
    Live(std::sync::Arc<arc_swap::ArcSwap<KeySet>>),
}

impl KeySource {
    /// The keys to validate one request with.
    pub(crate) fn snapshot(&self) -> Snapshot<'_> {
        match self {
            KeySource::Static(set) => Snapshot::Borrowed(set),
            #[cfg(feature = "remote")]
            KeySource::Remote(remote) => Snapshot::Shared(remote.snapshot()),
            #[cfg(feature = "server")]
            KeySource::Live(live) => Snapshot::Shared(live.load()),
        }
    }
}

/// One immutable view of a [`KeySource`]'s keys.
pub(crate) enum Snapshot<'a> {
    /// A set the source owns for its whole life.
    Borrowed(&'a KeySet),
    /// The set a refreshing source held when the request came in.
    #[cfg(any(feature = "remote", feature = "server"))]
    Shared(arc_swap::Guard<std::sync::Arc<KeySet>>),
}

impl Snapshot<'_> {
    /// The shared set itself, for a source whose keys change (`None`: they never do).
    pub(crate) fn identity(&self) -> Option<std::sync::Arc<KeySet>> {
        match self {
            Snapshot::Borrowed(_) => None,
            #[cfg(any(feature = "remote", feature = "server"))]
            Snapshot::Shared(set) => Some(std::sync::Arc::clone(set)),
        }
    }

    /// Whether this is the set `identity` returned earlier.
    pub(crate) fn is(&self, identity: Option<&std::sync::Arc<KeySet>>) -> bool {
        match (self, identity) {
            (Snapshot::Borrowed(_), None) => true,
            #[cfg(any(feature = "remote", feature = "server"))]
            (Snapshot::Shared(set), Some(held)) => std::sync::Arc::ptr_eq(set, held),
            _ => false,
        }
    }
}

impl std::ops::Deref for Snapshot<'_> {
    type Target = KeySet;

    fn deref(&self) -> &KeySet {
        match self {
            Snapshot::Borrowed(set) => set,
            #[cfg(any(feature = "remote", feature = "server"))]
            Snapshot::Shared(set) => set,
        }
    }
}

/// The largest RSA modulus the backend verifies with.
#[cfg(feature = "aws-lc-rs")]
const MAX_RSA_BITS: usize = 8192;
#[cfg(not(feature = "aws-lc-rs"))]
const MAX_RSA_BITS: usize = 4096;

/// An RSA verification key from its big-endian modulus and exponent, after the checks every RSA
/// key gets wherever it comes from. It allows the whole RSA family (RS*, PS*).
pub(crate) fn rsa_key(n: &[u8], e: &[u8]) -> Result<Key, String> {
    let bits = significant_bits(n);
    if bits < 2048 {
        return Err(format!(
            "RSA modulus is {bits} bits; at least 2048 are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "RSA modulus is {bits} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    // An even or tiny exponent is not an RSA public key (e = 1 "verifies" by copying).
    if e.last().is_none_or(|b| b & 1 == 0) || significant_bits(e) < 2 {
        return Err("RSA exponent must be odd and at least 3".into());
    }
    if has_roca_fingerprint(n) {
        return Err(
            "RSA modulus has the ROCA fingerprint (CVE-2017-15361): it can be factored".into(),
        );
    }
    Key::new(&Material::Rsa { n, e }, AlgorithmFamily::Rsa.algorithms())
}

/// The number of significant bits of a big-endian unsigned integer.
pub(crate) fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

/// The ROCA test (Nemec et al., CCS 2017): moduli made by the vulnerable Infineon library are,
/// modulo each small prime p below, in the subgroup generated by 65537. A random modulus passes
/// all 38 tests with negligible probability.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, b| (r * 256 + u32::from(*b)) % p);
        let generator = 65_537 % p;
        let mut power = 1;
        for _ in 0..p {
            if power == residue {
                return true;
            }
            power = power * generator % p;
        }
        false
    })
}

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
    kid: Option<Arc<str>>,
    algorithms: AlgorithmSet,
    verifier: Verifier,
}

impl Key {
    /// A public key from PEM: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC P-256/P-384 or Ed25519
    /// (`PUBLIC KEY`). RSA keys allow RS256/384/512 and PS256/384/512, EC keys the one
    /// algorithm of their curve, Ed25519 keys EdDSA; narrow with [`Key::with_algorithms`].
    ///
    /// Private keys, certificates and other curves are refused, and RSA keys get the same checks
    /// as in a JWK (2048 bits or more, an odd exponent of at least 3, not a ROCA-weak modulus).
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
        let parsed = pem::parse(pem.as_ref()).map_err(|e| ConfigError::new(format!("PEM: {e}")))?;
        let key = match parsed {
            pem::PublicKey::Rsa { n, e } => rsa_key(&n, &e),
            pem::PublicKey::Ec { point, p384 } => {
                let alg = if p384 {
                    Algorithm::ES384
                } else {
                    Algorithm::ES256
                };
                Self::new(&Material::Ec(&point), &[alg])
            }
            pem::PublicKey::Ed25519(x) => Self::new(&Material::Ed25519(&x), &[Algorithm::EdDSA]),
        };
        key.map_err(|e| ConfigError::new(format!("PEM: {e}")))
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
        Self::new(&Material::Hmac(secret), &[algorithm]).map_err(ConfigError::new)
    }

    /// One key from a JWK JSON object (RFC 7517). `RSA`, `EC` (P-256, P-384), `OKP` (Ed25519)
    /// and `oct` (HMAC) keys are accepted. A JWK whose `use` is not `sig`, whose `key_ops` lacks
    /// `verify`, or whose `alg` does not fit its key type is refused.
    pub fn from_jwk_json(json: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new(format!("JWK is not valid JSON: {e}")))?;
        parse_jwk(&value, true).map_err(|e| ConfigError::new(format!("JWK: {e}")))
    }

    /// A key for `algorithms`, its material prepared for verification now; refused if the
    /// crypto backend cannot parse it.
    pub(crate) fn new(material: &Material<'_>, algorithms: &[Algorithm]) -> Result<Self, String> {
        Ok(Self {
            kid: None,
            algorithms: AlgorithmSet::of(algorithms),
            verifier: Verifier::new(material, algorithms)?,
        })
    }

    /// Sets the key id that tokens name in their `kid` header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(Arc::from(kid.into()));
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
        self.verifier = self.verifier.retain(|alg| set.contains(alg));
        Ok(self)
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key id, shared: a verified token naming it keeps this one instead of a copy.
    pub(crate) fn shared_kid(&self) -> Option<&Arc<str>> {
        self.kid.as_ref()
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
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify(alg, message, signature)
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
    /// The one key with the token's `kid`; it allows the token's algorithm.
    One(&'a Key),
    /// Every key that allows `alg` (only those without a `kid` when `kidless_only`); at least
    /// one exists.
    Each {
        keys: &'a [Key],
        alg: Algorithm,
        kidless_only: bool,
    },
    /// The key with the token's `kid` does not allow its algorithm.
    AlgorithmNotAllowed,
    /// Several keys share the token's `kid`: which one the issuer meant is ambiguous.
    Ambiguous,
    /// No key fits.
    Unknown,
}

impl<'a> Selection<'a> {
    /// The keys to try, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a Key> {
        let (one, each) = match *self {
            Selection::One(key) => (Some(key), None),
            Selection::Each {
                keys,
                alg,
                kidless_only,
            } => (None, Some((keys, alg, kidless_only))),
            _ => (None, None),
        };
        let each = each.into_iter().flat_map(|(keys, alg, kidless_only)| {
            keys.iter()
                .filter(move |k| k.allows(alg) && (!kidless_only || k.kid.is_none()))
        });
        one.into_iter().chain(each)
    }
}

impl KeySet {
    /// A set of the given keys. A `kid` carried by several keys is ambiguous: tokens naming it
    /// are refused (a warning is logged here).
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Self {
        let set = Self {
            keys: keys.into_iter().collect(),
        };
        set.warn_duplicate_kids();
        set
    }

    /// Parses a JWKS document (`{"keys": [...]}`, RFC 7517 §5). Keys that cannot be used for
    /// signature verification (`use: enc`, `key_ops` without `verify`, unsupported `kty`, `crv`
    /// or `alg`, malformed members, weak RSA, symmetric `oct` keys) are skipped with a `tracing`
    /// warning; they never make the whole set fail. A `kid` that several entries share is
    /// ambiguous, so every entry carrying it is skipped too. Only a document that is not a JWKS
    /// is an error.
    pub fn from_jwks_json(json: &str) -> Result<Self, ConfigError> {
        Self::from_jwks(json, false)
    }

    /// Like [`KeySet::from_jwks_json`], but also accepts symmetric `oct` keys (HS256/384/512,
    /// with their `alg`): for a JWKS that is a secret you configure, such as a file of shared
    /// keys. Never use it for a JWKS fetched from an identity provider.
    pub fn from_secret_jwks_json(json: &str) -> Result<Self, ConfigError> {
        Self::from_jwks(json, true)
    }

    fn from_jwks(json: &str, allow_oct: bool) -> Result<Self, ConfigError> {
        Self::from_jwks_limited(json, allow_oct, usize::MAX)
    }

    /// Parses a JWKS of at most `max_entries` entries (counted before any key is parsed).
    pub(crate) fn from_jwks_limited(
        json: &str,
        allow_oct: bool,
        max_entries: usize,
    ) -> Result<Self, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks = serde_json::from_str(json).map_err(|e| {
            ConfigError::new(format!(
                "not a JWKS document (expected {{\"keys\": [...]}}): {e}"
            ))
        })?;
        if jwks.keys.len() > max_entries {
            return Err(ConfigError::new(format!(
                "the JWKS has {} entries; at most {max_entries} are accepted",
                jwks.keys.len()
            )));
        }
        fn kid_of(value: &serde_json::Value) -> Option<&str> {
            value.get("kid").and_then(|k| k.as_str())
        }
        let mut kid_counts: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::new();
        for kid in jwks.keys.iter().filter_map(kid_of) {
            *kid_counts.entry(kid).or_default() += 1;
        }
        let mut keys = Vec::with_capacity(jwks.keys.len());
        for (index, value) in jwks.keys.iter().enumerate() {
            let kid = kid_of(value);
            let parsed = if kid.is_some_and(|kid| kid_counts[kid] > 1) {
                Err("several JWKs share this kid".to_owned())
            } else {
                parse_jwk(value, allow_oct)
            };
            match parsed {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    tracing::warn!(index, kid = kid.unwrap_or(""), %reason, "skipping unusable JWK");
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
    ///
    /// A `kid` selects the key with that id, and only it. A token whose `kid` no key carries
    /// may still be verified by the keys configured without one (a PEM key, say), and a token
    /// without `kid` by every key; in both cases only keys that allow its algorithm.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection<'_> {
        if let Some(kid) = kid {
            let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid));
            match (named.next(), named.next()) {
                (Some(_), Some(_)) => return Selection::Ambiguous,
                (Some(key), None) if key.allows(alg) => return Selection::One(key),
                (Some(_), None) => return Selection::AlgorithmNotAllowed,
                (None, _) => {}
            }
        }
        let kidless_only = kid.is_some();
        let each = Selection::Each {
            keys: &self.keys,
            alg,
            kidless_only,
        };
        if each.keys().next().is_some() {
            each
        } else {
            Selection::Unknown
        }
    }

    /// Logs a warning for every `kid` that more than one key carries: tokens naming it will be
    /// refused as ambiguous.
    fn warn_duplicate_kids(&self) {
        for (i, key) in self.keys.iter().enumerate() {
            if let Some(kid) = key.kid()
                && self.keys[..i].iter().any(|k| k.kid() == Some(kid))
            {
                tracing::warn!(
                    kid,
                    "several keys share this kid; tokens naming it are refused"
                );
            }
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

    fn kids<'a>(selection: &Selection<'a>) -> Vec<Option<&'a str>> {
        selection.keys().map(Key::kid).collect()
    }

    #[test]
    fn selection_by_kid_and_algorithm() -> Result<(), ConfigError> {
        let set = KeySet::new([
            Key::from_pem(ED_PEM)?.with_kid("a"),
            Key::hmac([1u8; 32], Algorithm::HS256)?.with_kid("h"),
            Key::hmac([2u8; 32], Algorithm::HS256)?.with_kid("dup"),
            Key::hmac([3u8; 32], Algorithm::HS256)?.with_kid("dup"),
        ]);
        assert_eq!(
            kids(&set.select(Some("a"), Algorithm::EdDSA)),
            vec![Some("a")]
        );
        assert!(matches!(
            set.select(Some("a"), Algorithm::HS256),
            Selection::AlgorithmNotAllowed
        ));
        assert!(matches!(
            set.select(Some("zz"), Algorithm::EdDSA),
            Selection::Unknown
        ));
        assert!(matches!(
            set.select(Some("dup"), Algorithm::HS256),
            Selection::Ambiguous
        ));
        let no_kid = set.select(None, Algorithm::HS256);
        assert_eq!(kids(&no_kid), vec![Some("h"), Some("dup"), Some("dup")]);
        assert!(matches!(
            set.select(None, Algorithm::ES256),
            Selection::Unknown
        ));
        Ok(())
    }

    #[test]
    fn keys_without_kid_serve_tokens_whose_kid_is_unknown() -> Result<(), ConfigError> {
        let set = KeySet::new([
            Key::from_pem(ED_PEM)?,
            Key::hmac([1u8; 32], Algorithm::HS256)?.with_kid("h"),
        ]);
        assert_eq!(
            kids(&set.select(Some("rotated"), Algorithm::EdDSA)),
            vec![None]
        );
        assert!(matches!(
            set.select(Some("rotated"), Algorithm::HS256),
            Selection::Unknown
        ));
        assert_eq!(
            kids(&set.select(Some("h"), Algorithm::HS256)),
            vec![Some("h")]
        );
        Ok(())
    }

    #[test]
    fn rsa_policy_checks() {
        let n = [0xc5u8; 256];
        assert!(rsa_key(&n, &[1, 0, 1]).is_ok());
        assert!(rsa_key(&n[..128], &[1, 0, 1]).is_err(), "1024 bits");
        assert!(rsa_key(&n, &[1]).is_err(), "e = 1");
        assert!(rsa_key(&n, &[1, 0, 0]).is_err(), "even e");
        assert!(rsa_key(&[0xc5u8; 1100], &[1, 0, 1]).is_err(), "8800 bits");
        assert_eq!(significant_bits(&[0, 0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[]), 0);
    }

    #[test]
    fn pem_refuses_private_keys_and_certificates() {
        for (pem, needle) in [
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "private key",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "private key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "unsupported PEM type",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "PEM",
            ),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n", "no matching -----END"),
        ] {
            let err = Key::from_pem(pem)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(needle), "{err}");
        }
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
            {"kty":"OKP","crv":"Ed25519","kid":"twice","x":"Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"},
            {"kty":"OKP","crv":"Ed25519","kid":"twice","x":"Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"},
            "not an object"
        ]}"#;
        let set = KeySet::from_jwks_json(jwks)?;
        let kids: Vec<_> = set.keys().iter().filter_map(Key::kid).collect();
        assert_eq!(kids, vec!["ok"]);
        assert!(KeySet::from_jwks_json("[]").is_err());
        let secret = KeySet::from_secret_jwks_json(
            r#"{"keys":[{"kty":"oct","kid":"s","alg":"HS256","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#,
        )?;
        assert_eq!(secret.keys()[0].algorithms(), vec![Algorithm::HS256]);
        Ok(())
    }
}
