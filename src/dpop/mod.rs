//! DPoP (RFC 9449): access tokens bound to a key the client proves it holds on every request.
//!
//! [`Dpop`] configures how proofs are checked (the service's external URL, the algorithms, the
//! `iat` window, the replay cache, optional server nonces); [`DpopMode`] says, per issuer,
//! whether its tokens come as `Bearer`, as `DPoP`, or either. The checks of one proof
//! (RFC 9449 §4.3), in order:
//!
//! 1. exactly one `DPoP` header, a compact JWS of at most 8 KiB;
//! 2. header: `typ` `dpop+jwt`, an `alg` from the configured list (asymmetric only: `none` and
//!    HMAC can never be configured), no `crit`, and a `jwk` that is a public key only;
//! 3. the signature, under that `jwk` with that `alg`;
//! 4. claims: `htm` equals the request method; `htu` equals the request URI (the configured
//!    external URL and the request path) after RFC 3986 normalisation, with no query or
//!    fragment; `iat` within the window; `ath` the SHA-256 of the access token; `nonce` one
//!    this service issued, when nonces are on;
//! 5. the `jti` not seen before within the window (a bounded replay cache: of two concurrent
//!    requests with one proof, exactly one passes);
//! 6. then the caller compares the key's RFC 7638 thumbprint with the token's `cnf.jkt`.
//!
//! Every failure is `invalid_dpop_proof` (401), except a missing or stale nonce, which is
//! `use_dpop_nonce` with a fresh `DPoP-Nonce` header.

mod htu;
mod nonce;
mod replay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, Uri};
use serde::de::DeserializeSeed;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{AuthError, AuthErrorKind, ConfigError};
use crate::jose::Algorithm;
use crate::jose::compact::{Compact, Decoded, b64url};
use crate::jose::json::{MAX_DEPTH, StrictValue};
use crate::keys::{Key, parse_public_jwk, thumbprint};
use crate::validate::policy::typ_matches;
pub(crate) use nonce::{NonceCheck, Nonces};

/// How a request presented its token (`Authorization: Bearer` or `Authorization: DPoP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// The request header that carries the proof (RFC 9449 §4.1).
pub(crate) const DPOP: &str = "dpop";
/// The response header that carries a server nonce (RFC 9449 §8.1).
pub const DPOP_NONCE: &str = "dpop-nonce";
/// The largest proof accepted, in bytes. A proof with an RSA-4096 key is about 1.8 KiB.
const MAX_PROOF: usize = 8 * 1024;
/// The longest `jti` accepted.
const MAX_JTI: usize = 256;

/// How an issuer's tokens may be presented (per issuer: [`Issuer::dpop`](crate::Issuer::dpop),
/// [`AuthenticatorBuilder::dpop_mode`](crate::AuthenticatorBuilder::dpop_mode)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopMode {
    /// `Authorization: Bearer` only; a DPoP-bound token (`cnf`) is refused. The default without
    /// a [`Dpop`] configuration.
    BearerOnly,
    /// Both: tokens without `cnf` as `Bearer`, DPoP-bound tokens as `DPoP` with a proof. The
    /// default with a [`Dpop`] configuration.
    Allowed,
    /// `Authorization: DPoP` with a proof only; a bearer token is refused.
    Required,
}

/// How DPoP proofs are checked. Give it to
/// [`AuthenticatorBuilder::dpop`](crate::AuthenticatorBuilder::dpop); every issuer then accepts
/// DPoP-bound tokens ([`DpopMode::Allowed`]) unless its mode says otherwise.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth2::dpop::{Dpop, DpopMode};
/// use tower_oauth2::{Algorithm, Authenticator, Key};
///
/// # fn main() -> Result<(), tower_oauth2::ConfigError> {
/// let auth = Authenticator::builder()
///     .issuer("https://issuer.example")
///     .audience("orders-api")
///     .key(Key::hmac([42u8; 32], Algorithm::HS256)?)
///     // The URL clients call, as they see it (behind a proxy: the proxy's).
///     .dpop(Dpop::new("https://api.example.com").iat_window(Duration::from_secs(30)))
///     .dpop_mode(DpopMode::Required)
///     .build()?;
/// # let _ = auth; Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct Dpop {
    external_url: String,
    algorithms: Vec<Algorithm>,
    iat_window: Option<Duration>,
    replay_capacity: u64,
    nonce_secret: Option<Vec<u8>>,
    nonce_rotation: Duration,
}

impl Dpop {
    /// Proofs for requests to `external_url`: the scheme, host, port and path prefix clients
    /// use to reach this service (`https://api.example.com`, or `https://example.com/api` when
    /// a proxy strips `/api`). A proof's `htu` must equal it followed by the request path as
    /// the layer sees it: under axum's `Router::nest("/api", ..)` that path has lost `/api`,
    /// so put the prefix in the URL here too. The request's own `Host` header is never trusted
    /// for this.
    pub fn new(external_url: impl Into<String>) -> Self {
        Self {
            external_url: external_url.into(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            iat_window: None,
            replay_capacity: 100_000,
            nonce_secret: None,
            nonce_rotation: Duration::from_secs(300),
        }
    }

    /// The proof algorithms accepted (default: ES256, ES384, EdDSA, PS256, RS256). Asymmetric
    /// only: an HMAC algorithm is a configuration error.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How far a proof's `iat` may be from now, either way, clock skew included (default
    /// 60 s, whatever the authenticator's leeway: a proof is made just before it is sent).
    /// Proofs are remembered for twice this long at least, to refuse replays.
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window = Some(window);
        self
    }

    /// How many recent proofs the replay cache holds (default 100 000; when full, the older
    /// half is forgotten first). Size it above the proofs the service sees in four `iat`
    /// windows: a proof forgotten early could be replayed within its window.
    pub fn replay_capacity(mut self, capacity: u64) -> Self {
        self.replay_capacity = capacity;
        self
    }

    /// Requires a server nonce in every proof (RFC 9449 §9). Nonces are derived from `secret`
    /// (at least 32 bytes; share it among the instances of one service) and the time window,
    /// so no state is kept. A proof without a nonce, or with one older than the previous
    /// window, gets 401 `use_dpop_nonce` with a fresh nonce in the `DPoP-Nonce` header.
    pub fn nonces(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.nonce_secret = Some(secret.into());
        self
    }

    /// How often the nonce changes (default 5 minutes); a nonce is accepted for one to two
    /// periods.
    pub fn nonce_rotation(mut self, rotation: Duration) -> Self {
        self.nonce_rotation = rotation;
        self
    }

    /// The same settings for another external URL.
    #[cfg(feature = "server")]
    pub(crate) fn for_url(&self, external_url: String) -> Self {
        Self {
            external_url,
            ..self.clone()
        }
    }

    /// Checks the settings.
    pub(crate) fn build(self) -> Result<ProofChecker, ConfigError> {
        let base = htu::normalise(&self.external_url)
            .map_err(|e| ConfigError::new(format!("DPoP external URL: {e}")))?;
        let base = base.trim_end_matches('/').to_owned();
        if self.algorithms.is_empty() {
            return Err(ConfigError::new("DPoP: no proof algorithm allowed"));
        }
        if let Some(alg) = self.algorithms.iter().find(|a| a.is_hmac()) {
            return Err(ConfigError::new(format!(
                "DPoP: {} is symmetric; proofs are signed with the client's private key",
                alg.name()
            )));
        }
        let window = self.iat_window.map_or(DEFAULT_IAT_WINDOW, |w| w.as_secs());
        if window == 0 || window > 3600 {
            return Err(ConfigError::new(
                "DPoP: the iat window must be between 1 s and 1 hour",
            ));
        }
        if self.replay_capacity < 1000 {
            return Err(ConfigError::new(
                "DPoP: the replay cache must hold at least 1000 proofs",
            ));
        }
        let nonces = match self.nonce_secret {
            Some(secret) if secret.len() < 32 => {
                return Err(ConfigError::new(
                    "DPoP: the nonce secret must be at least 32 bytes",
                ));
            }
            Some(secret) => Nonces::new(&secret, self.nonce_rotation.as_secs()),
            None => None,
        };
        let mut algs_text = String::new();
        for alg in &self.algorithms {
            if !algs_text.is_empty() {
                algs_text.push(' ');
            }
            algs_text.push_str(alg.name());
        }
        Ok(ProofChecker {
            base,
            algorithms: self.algorithms,
            algs_text: algs_text.into(),
            window,
            // A proof is accepted for 2 × window after it was first seen at most.
            replay: replay::Replay::new(2 * window + 1, self.replay_capacity),
            #[allow(clippy::borrowed_box, reason = "moka's weigher takes the key type")]
            keys: moka::sync::Cache::builder()
                .max_capacity(4 * 1024 * 1024)
                .weigher(|segment: &Box<str>, _| {
                    u32::try_from(segment.len() + 512).unwrap_or(u32::MAX)
                })
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            nonces,
        })
    }
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("external_url", &self.external_url)
            .field("algorithms", &self.algorithms)
            .field("iat_window", &self.iat_window)
            .field("replay_capacity", &self.replay_capacity)
            .field("nonces", &self.nonce_secret.is_some())
            .finish()
    }
}

/// Seconds a proof's `iat` may be from now by default.
const DEFAULT_IAT_WINDOW: u64 = 60;

/// The default proof algorithms: what clients use (ES256 first, the one every client has).
const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::PS256,
    Algorithm::RS256,
];

/// The origin of an absolute URL: `scheme://authority`, without path (the whole URL when it
/// has none).
#[cfg(feature = "server")]
pub(crate) fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find('/') {
        Some(slash) => &url[..start + slash],
        None => url,
    }
}

/// The RFC 7638 thumbprint of a public JWK (the JSON of one key), as a token's `cnf.jkt` holds
/// it: for tests and for authorization servers that bind tokens themselves.
pub fn jwk_thumbprint(jwk_json: &str) -> Result<String, ConfigError> {
    let value: Value = serde_json::from_str(jwk_json)
        .map_err(|e| ConfigError::new(format!("JWK is not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ConfigError::new("a JWK must be a JSON object"))?;
    thumbprint(obj).map_err(|e| ConfigError::new(format!("JWK: {e}")))
}

/// Checks proofs: built from a [`Dpop`], shared by every request.
pub(crate) struct ProofChecker {
    /// The normalised external URL, without a trailing `/`.
    base: String,
    algorithms: Vec<Algorithm>,
    /// `algs` of the challenge: the algorithms, space-separated.
    algs_text: Box<str>,
    /// Seconds a proof's `iat` may be from now.
    window: u64,
    /// Hashes of (thumbprint, `jti`) of recent proofs.
    replay: replay::Replay,
    /// Proof headers seen before (base64url), with their keys: at most 4 MiB of headers.
    keys: moka::sync::Cache<Box<str>, Arc<ProofKey>>,
    nonces: Option<Nonces>,
}

impl fmt::Debug for ProofChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofChecker")
            .field("base", &self.base)
            .field("algorithms", &self.algs_text)
            .field("window", &self.window)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

/// A proof that passed every check.
pub(crate) struct Proof {
    key: Arc<ProofKey>,
    /// The nonce was from the previous window: send a fresh one.
    pub(crate) nonce_aging: bool,
}

impl Proof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub(crate) fn jkt(&self) -> &str {
        &self.key.jkt
    }
}

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> AuthError {
    AuthError::new(AuthErrorKind::InvalidDpopProof, description).via_dpop()
}

impl ProofChecker {
    /// The algorithms, space-separated, as the challenge's `algs` names them.
    pub(crate) fn algs(&self) -> &str {
        &self.algs_text
    }

    /// The external URL, normalised: for an endpoint configured by its full URL (a token
    /// endpoint), the `htu` its proofs must carry.
    #[cfg(feature = "server")]
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn nonces(&self) -> Option<&Nonces> {
        self.nonces.as_ref()
    }

    /// The `htu` a proof for a request to `uri` must carry: the external URL and the path.
    pub(crate) fn resource_htu(&self, uri: &Uri) -> Result<String, AuthError> {
        let mut htu = String::with_capacity(self.base.len() + uri.path().len());
        htu.push_str(&self.base);
        htu::push_path(&mut htu, uri.path())
            .map_err(|_| AuthError::invalid_request("the request path has a broken escape"))?;
        Ok(htu)
    }

    /// Checks the one proof in `headers` for a request `method htu`, made with the access token
    /// whose SHA-256 is `access_token` when there is one (a resource request; `None` at a
    /// token endpoint).
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        method: &Method,
        htu: &str,
        access_token: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<Proof, AuthError> {
        let mut values = headers.get_all(DPOP).iter();
        let proof = match (values.next(), values.next()) {
            (None, _) => return Err(invalid("the request has no DPoP proof")),
            (Some(_), Some(_)) => return Err(invalid("the request has more than one DPoP proof")),
            (Some(value), None) => value,
        };
        if proof.len() > MAX_PROOF {
            return Err(invalid(format!(
                "the DPoP proof is longer than {MAX_PROOF} bytes"
            )));
        }
        let proof = proof
            .to_str()
            .map_err(|_| invalid("the DPoP proof is not visible ASCII"))?;
        let parts = Compact::split(proof.trim_matches([' ', '\t']))
            .map_err(|_| invalid("the DPoP proof is not a compact JWS"))?;

        // The header: typ, alg, no crit, a public jwk; the same bytes in every proof of one
        // client, so parsed once.
        let proof_key = self.proof_key(parts.header)?;
        let ProofKey { alg, key, jkt } = &*proof_key;
        let alg = *alg;

        // The signature.
        if parts.signature.is_empty() {
            return Err(invalid("the DPoP proof has no signature"));
        }
        let signature = Decoded::<520>::new(parts.signature, "signature")
            .map_err(|_| invalid("the DPoP proof's signature is not base64url"))?;
        if !key.verify(alg, parts.signing_input.as_bytes(), signature.as_slice()) {
            return Err(invalid("the DPoP proof's signature does not verify"));
        }

        // The claims.
        let claims = json_object(parts.payload, "claims")?;
        let string = |name: &'static str| -> Result<&str, AuthError> {
            match claims.get(name) {
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(invalid(format!("the DPoP proof's {name} is not a string"))),
                None => Err(invalid(format!("the DPoP proof has no {name}"))),
            }
        };
        let jti = string("jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI {
            return Err(invalid(format!(
                "the DPoP proof's jti must have 1 to {MAX_JTI} characters"
            )));
        }
        if string("htm")? != method.as_str() {
            return Err(invalid("the DPoP proof's htm is not this request's method"));
        }
        // Clients send it normalised already, usually: equal as it is, it needs no parsing
        // (`htu` is normalised, so a query or fragment in it cannot be equal).
        let proof_htu = string("htu")?;
        if proof_htu != htu {
            let normalised =
                htu::normalise(proof_htu).map_err(|e| invalid(format!("the DPoP proof's {e}")))?;
            if normalised != htu {
                return Err(invalid("the DPoP proof's htu is not this request's URI"));
            }
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("the DPoP proof has no integer iat"))?;
        if iat > now.saturating_add(self.window) {
            return Err(invalid("the DPoP proof was issued in the future (iat)"));
        }
        if iat.saturating_add(self.window) < now {
            return Err(invalid("the DPoP proof is too old (iat)"));
        }
        if let Some(digest) = access_token {
            let ath = string("ath")?;
            let mut presented = [0u8; 32];
            let matches = ath.len() == 43
                && URL_SAFE_NO_PAD.decode_slice(ath, &mut presented).ok() == Some(32)
                && presented == *digest;
            if !matches {
                return Err(invalid(
                    "the DPoP proof's ath is not the hash of this access token",
                ));
            }
        }
        let nonce_aging = match &self.nonces {
            None => false,
            Some(nonces) => {
                let nonce = match claims.get("nonce") {
                    Some(Value::String(nonce)) => nonce,
                    Some(_) => return Err(invalid("the DPoP proof's nonce is not a string")),
                    None => {
                        return Err(AuthError::new(
                            AuthErrorKind::UseDpopNonce,
                            "a DPoP nonce is required: use the one in DPoP-Nonce",
                        )
                        .via_dpop());
                    }
                };
                match nonces.check(nonce, now) {
                    Some(age) => age == NonceCheck::Previous,
                    None => {
                        return Err(AuthError::new(
                            AuthErrorKind::UseDpopNonce,
                            "the DPoP nonce is stale or unknown: use the one in DPoP-Nonce",
                        )
                        .via_dpop());
                    }
                }
            }
        };

        // Last, so that a proof refused above does not use up its jti.
        let mut hasher = Sha256::new();
        hasher.update(jkt.as_bytes());
        hasher.update([0]);
        hasher.update(jti.as_bytes());
        if !self.replay.first_use(&hasher.finalize().into(), now) {
            return Err(invalid("the DPoP proof has been used before (jti)"));
        }
        Ok(Proof {
            key: Arc::clone(&proof_key),
            nonce_aging,
        })
    }
}

/// The key of a proof's header, with the algorithm the header names and the key's thumbprint.
struct ProofKey {
    alg: Algorithm,
    key: Key,
    jkt: String,
}

impl ProofChecker {
    /// The key of the proof whose protected header is `segment` (base64url): parsed and
    /// checked once, then kept, since a client sends the same header with every proof. Only
    /// headers that pass are kept; the signature is still checked on every request.
    fn proof_key(&self, segment: &str) -> Result<Arc<ProofKey>, AuthError> {
        if let Some(known) = self.keys.get(segment) {
            return Ok(known);
        }
        let header = json_object(segment, "header")?;
        match header.get("typ").and_then(Value::as_str) {
            Some(typ) if typ_matches(typ, "dpop+jwt") => {}
            _ => return Err(invalid("the DPoP proof's typ is not dpop+jwt")),
        }
        if header.contains_key("crit") {
            return Err(invalid(
                "the DPoP proof has a crit header this service does not understand",
            ));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Algorithm::from_name)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or_else(|| {
                invalid(format!(
                    "the DPoP proof's alg is not one of {}",
                    self.algs_text
                ))
            })?;
        let jwk = header
            .get("jwk")
            .ok_or_else(|| invalid("the DPoP proof has no jwk header"))?;
        let (key, jkt) =
            parse_public_jwk(jwk).map_err(|e| invalid(format!("the DPoP proof's jwk: {e}")))?;
        if !key.allows(alg) {
            return Err(invalid("the DPoP proof's alg does not fit its jwk"));
        }
        let known = Arc::new(ProofKey { alg, key, jkt });
        self.keys.insert(segment.into(), Arc::clone(&known));
        Ok(known)
    }
}

/// Decodes one part of a proof into a JSON object, strictly (no duplicate members).
fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, AuthError> {
    let bytes = b64url(part, what)
        .map_err(|_| invalid(format!("the DPoP proof's {what} is not base64url")))?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = StrictValue { depth: MAX_DEPTH }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match value {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid(format!(
            "the DPoP proof's {what} is not a JSON object"
        ))),
    }
}
