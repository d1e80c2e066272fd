//! The pure validation core: a token string and a key set in, a [`VerifiedToken`] or an
//! [`AuthError`] out. No tower or axum types here.

pub(crate) mod claims;
pub(crate) mod json;
pub(crate) mod jws;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{AuthError, AuthErrorKind};
use crate::keys::{Key, KeySet, KeySource, Selection};
use crate::scope::Scopes;
use jws::{Compact, Decoded, Header, b64url};

/// Registered claim names: always parsed with their RFC 7519 types, never captured raw.
pub(crate) const REGISTERED: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "scp",
];

/// What a token must satisfy besides its signature. Built by the
/// [`AuthenticatorBuilder`](crate::AuthenticatorBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// `None` only through the `dangerous` opt-out.
    pub(crate) issuer: Option<String>,
    /// Empty only through the `dangerous` opt-out.
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
    pub(crate) typ: Option<String>,
    pub(crate) max_token_size: usize,
    /// Required claims: registered ones by presence, others by presence or value.
    pub(crate) required: Vec<(Box<str>, Option<Value>)>,
    /// Claim paths whose string values become scopes (roles, permissions).
    pub(crate) scope_paths: Vec<Vec<String>>,
    /// Top-level members the claims pass must keep: roots of `scope_paths`, non-registered
    /// required claims.
    pub(crate) capture: Vec<Box<str>>,
}

impl Policy {
    fn capture_index(&self, name: &str) -> Option<usize> {
        self.capture.iter().position(|c| **c == *name)
    }
}

/// One trusted issuer: its policy and where its keys come from.
pub(crate) struct Trusted {
    pub(crate) policy: Policy,
    pub(crate) keys: KeySource,
    /// Asked about every token that passed all other checks.
    pub(crate) revocation: Option<Arc<dyn crate::RevocationCheck>>,
}

impl fmt::Debug for Trusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trusted")
            .field("policy", &self.policy)
            .field("keys", &self.keys)
            .field("revocation_check", &self.revocation.is_some())
            .finish()
    }
}

impl Trusted {
    /// Gives every issuer's policy the same capture list: the members any of them needs (roots
    /// of `scope_paths`, non-registered required claims). The claims are parsed once, before the
    /// issuer is known, so the list must serve every issuer.
    pub(crate) fn share_capture(issuers: &mut [Trusted]) {
        let mut capture: Vec<Box<str>> = Vec::new();
        for policy in issuers.iter().map(|t| &t.policy) {
            let names = policy.required.iter().map(|(n, _)| &**n).chain(
                policy
                    .scope_paths
                    .iter()
                    .filter_map(|p| p.first().map(String::as_str)),
            );
            for name in names {
                if !REGISTERED.contains(&name) && !capture.iter().any(|c| **c == *name) {
                    capture.push(name.into());
                }
            }
        }
        for trusted in issuers {
            trusted.policy.capture.clone_from(&capture);
        }
    }
}

/// A token whose signature and claims passed every check. Cheap to clone. It also holds the key
/// set that verified it, so a token kept long after a JWKS refresh keeps the old set alive.
///
/// The layer puts one in the request extensions; handlers read it through the
/// [`Claims`](crate::Claims), [`Scopes`] or `VerifiedToken` extractors, or from
/// `request.extensions()`. `Debug` prints the subject, client and scopes, never the token.
#[derive(Clone)]
pub struct VerifiedToken {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    /// The claims JSON as the token carried it (`text[..payload_len]`), followed by the
    /// unescaped text of any string claim whose JSON escapes the parser had to undo. Every
    /// string claim below is a [`Span`] of it: one allocation for all of them.
    text: Box<str>,
    payload_len: usize,
    iss: Option<Span>,
    sub: Option<Span>,
    jti: Option<Span>,
    client_id: Option<Span>,
    /// The first audience, and any others (usually none, which allocates nothing).
    aud_first: Option<Span>,
    aud_rest: Box<[Span]>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    scopes: Scopes,
    alg: Algorithm,
    /// Shared with the key that verified the token when their ids are the same.
    kid: Option<Arc<str>>,
    /// Index of the issuer that verified it, for the token cache.
    issuer: usize,
    /// The key set that verified it (`None`: the issuer's keys never change), for the token
    /// cache. Holding the `Arc` keeps the allocation alive, so pointer equality cannot be fooled
    /// by reuse.
    keys: Option<Arc<KeySet>>,
}

/// A byte range of [`TokenInner::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// Builds [`TokenInner::text`] and its spans from the payload the claims were parsed from.
struct TextBuilder {
    base: usize,
    payload_len: usize,
    extra: String,
}

impl TextBuilder {
    fn new(payload: &[u8]) -> Self {
        Self {
            base: payload.as_ptr() as usize,
            payload_len: payload.len(),
            extra: String::new(),
        }
    }

    /// Where `s` will be: inside the payload if it is a slice of it (the parser borrowed it),
    /// else appended after it (JSON escapes made the parser build it; a live allocation of its
    /// own never overlaps the payload's).
    fn span(&mut self, s: &str) -> Span {
        let inside = (s.as_ptr() as usize)
            .checked_sub(self.base)
            .filter(|start| start + s.len() <= self.payload_len);
        let start = inside.unwrap_or_else(|| {
            let start = self.payload_len + self.extra.len();
            self.extra.push_str(s);
            start
        });
        // The token is at most `max_token_size` bytes, which the builder keeps to 1 MiB.
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(s.len()).unwrap_or(0),
        }
    }

    /// The text: the payload, then what `span` appended.
    fn finish(self, payload: Vec<u8>) -> Result<Box<str>, AuthError> {
        let mut text =
            String::from_utf8(payload).map_err(|_| AuthError::malformed("claims are not UTF-8"))?;
        text.push_str(&self.extra);
        Ok(text.into_boxed_str())
    }
}

impl VerifiedToken {
    /// `sub`: the principal the token is about.
    pub fn subject(&self) -> Option<&str> {
        self.text(self.inner.sub)
    }

    /// `iss`: who issued the token.
    pub fn issuer(&self) -> Option<&str> {
        self.text(self.inner.iss)
    }

    /// `aud`: the audiences, whether the token sent a string or an array.
    pub fn audience(&self) -> impl Iterator<Item = &str> + '_ {
        let inner = &*self.inner;
        inner
            .aud_first
            .iter()
            .chain(inner.aud_rest.iter())
            .map(|span| self.text(Some(*span)).unwrap_or_default())
    }

    fn text(&self, span: Option<Span>) -> Option<&str> {
        let span = span?;
        let start = span.start as usize;
        self.inner.text.get(start..start + span.len as usize)
    }

    /// `client_id` (RFC 9068 §2.2): the OAuth client the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.text(self.inner.client_id)
    }

    /// `jti`: the token's unique id.
    pub fn jwt_id(&self) -> Option<&str> {
        self.text(self.inner.jti)
    }

    /// `exp` in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<u64> {
        self.inner.exp
    }

    /// Roughly the heap bytes this token holds besides its fixed-size part, for the cache's
    /// memory bound.
    pub(crate) fn weight(&self) -> usize {
        let inner = &self.inner;
        inner.text.len() + inner.aud_rest.len() * 8 + inner.scopes.heap_bytes()
    }

    /// The issuer (its index) and key set that verified the token, for the token cache.
    pub(crate) fn verified_by(&self) -> (usize, Option<&Arc<KeySet>>) {
        (self.inner.issuer, self.inner.keys.as_ref())
    }

    /// `iat` in seconds since the Unix epoch.
    pub fn issued_at(&self) -> Option<u64> {
        self.inner.iat
    }

    /// `nbf` in seconds since the Unix epoch.
    pub fn not_before(&self) -> Option<u64> {
        self.inner.nbf
    }

    /// The granted scopes: `scope` and `scp`, plus any configured role claims.
    pub fn scopes(&self) -> &Scopes {
        &self.inner.scopes
    }

    /// The signature algorithm the token was verified with.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }

    /// The `kid` of the key that verified the token, if the token named one.
    pub fn key_id(&self) -> Option<&str> {
        self.inner.kid.as_deref()
    }

    /// The verified claims JSON, as the token carried it.
    pub fn claims_json(&self) -> &[u8] {
        let inner = &*self.inner;
        inner
            .text
            .as_bytes()
            .get(..inner.payload_len)
            .unwrap_or_default()
    }

    /// Deserializes the verified claims into `T`.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.claims_json())
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("sub", &self.subject())
            .field("client_id", &self.client_id())
            .field("iss", &self.issuer())
            .field("scopes", &self.scopes())
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Validates `token` against `policy` with the keys in `keys`, at time `now`.
///
/// Order: size, shape, header (`alg`, `crit`), claims syntax, issuer, key and signature, then the
/// time and audience checks. Issuer comes before the key lookup so that, with several issuers,
/// a token from an unknown one never causes a key lookup.
pub(crate) fn verify(
    token: &str,
    issuers: &[Trusted],
    now: u64,
) -> Result<VerifiedToken, AuthError> {
    verify_detailed(token, issuers, now)
}

/// [`verify`]; the token also records which issuer and key set verified it
/// ([`VerifiedToken::verified_by`]), for the token cache.
pub(crate) fn verify_detailed(
    token: &str,
    issuers: &[Trusted],
    now: u64,
) -> Result<VerifiedToken, AuthError> {
    // Size limit and capture list are the same for every issuer.
    let Some(first) = issuers.first() else {
        return Err(AuthError::new(
            AuthErrorKind::KeysUnavailable,
            "no issuer is configured",
        ));
    };
    if token.len() > first.policy.max_token_size {
        return Err(AuthError::new(
            AuthErrorKind::TooLarge,
            format!("token is longer than {} bytes", first.policy.max_token_size),
        ));
    }
    let parts = Compact::split(token)?;
    // A header is usually under 200 bytes: decoded on the stack.
    let header_json = Decoded::<256>::new(parts.header, "header")?;
    let header = Header::from_json(header_json.as_slice())?;
    let kid = header.kid.as_deref();
    let payload = b64url(parts.payload, "payload").map_err(|e| e.with_claimed(kid, None))?;
    let mut claims =
        claims::parse(&payload, &first.policy.capture).map_err(|e| e.with_claimed(kid, None))?;
    let (index, trusted) = select_issuer(issuers, claims.iss.as_deref())
        .map_err(|e| e.with_claimed(kid, claims.iss.as_deref()))?;
    let policy = &trusted.policy;
    let keys = trusted.keys.snapshot();
    let key_set = keys.identity();
    let key = check_token(&parts, &header, &claims, policy, &keys, now)
        .map_err(|e| e.with_claimed(kid, claims.iss.as_deref()))?;

    let scopes = if policy.scope_paths.is_empty() {
        Scopes::from_strs(&mut claims.scopes)
    } else {
        let mut names: Vec<&str> = claims.scopes.iter().map(|s| &**s).collect();
        for path in &policy.scope_paths {
            let root = path.first().and_then(|name| policy.capture_index(name));
            if let Some(value) = root.and_then(|i| claims.captured[i].as_ref()) {
                collect_path(value, &path[1..], &mut names);
            }
        }
        Scopes::from_strs(&mut names)
    };
    let kid = match (header.kid, key.shared_kid()) {
        (Some(named), Some(shared)) if *named == **shared => Some(Arc::clone(shared)),
        (named, _) => named.map(|k| Arc::from(&*k)),
    };
    let mut text = TextBuilder::new(&payload);
    let mut span = |s: &Option<Cow<'_, str>>| s.as_deref().map(|s| text.span(s));
    let (iss, sub, jti, client_id) = (
        span(&claims.iss),
        span(&claims.sub),
        span(&claims.jti),
        span(&claims.client_id),
    );
    let mut audiences = claims.aud.iter().map(|a| text.span(a));
    let aud_first = audiences.next();
    let aud_rest = audiences.collect();
    let (exp, nbf, iat) = (claims.exp, claims.nbf, claims.iat);
    drop(claims);
    let payload_len = payload.len();
    let verified = VerifiedToken {
        inner: Arc::new(TokenInner {
            text: text.finish(payload)?,
            payload_len,
            iss,
            sub,
            jti,
            client_id,
            aud_first,
            aud_rest,
            exp,
            nbf,
            iat,
            scopes,
            alg: header.alg,
            kid,
            issuer: index,
            keys: key_set,
        }),
    };
    check_revocation(trusted, &verified)?;
    Ok(verified)
}

fn check_revocation(trusted: &Trusted, token: &VerifiedToken) -> Result<(), AuthError> {
    match &trusted.revocation {
        Some(revocation) if revocation.is_revoked(token) => Err(AuthError::new(
            AuthErrorKind::Revoked,
            "token has been revoked",
        )
        .with_claimed(token.key_id(), token.issuer())),
        _ => Ok(()),
    }
}

/// The checks a cached token goes through again on every use: `exp` and `nbf` against the
/// clock, and the issuer's revocation check.
pub(crate) fn recheck(token: &VerifiedToken, trusted: &Trusted, now: u64) -> Result<(), AuthError> {
    let claims = &*token.inner;
    let leeway = trusted.policy.leeway;
    let claimed = |e: AuthError| e.with_claimed(token.key_id(), token.issuer());
    if let Some(exp) = claims.exp
        && now >= exp.saturating_add(leeway)
    {
        return Err(claimed(AuthError::new(
            AuthErrorKind::Expired,
            "token has expired (exp)",
        )));
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(claimed(AuthError::new(
            AuthErrorKind::NotYetValid,
            "token is not yet valid (nbf)",
        )));
    }
    check_revocation(trusted, token)
}

/// The checks that need the claims: issuer, then the key and signature, then the rest.
/// The issuer whose `iss` the token names, before any key is looked up.
fn select_issuer<'a>(
    issuers: &'a [Trusted],
    iss: Option<&str>,
) -> Result<(usize, &'a Trusted), AuthError> {
    let found = issuers
        .iter()
        .enumerate()
        .find(|(_, t)| match (&t.policy.issuer, iss) {
            (None, _) => true,
            (Some(configured), Some(iss)) => configured == iss,
            (Some(_), None) => false,
        });
    found.ok_or_else(|| {
        let description = match iss {
            None => "token has no issuer (iss)",
            Some(_) if issuers.len() > 1 => "unknown issuer (iss)",
            Some(_) => "wrong issuer (iss)",
        };
        AuthError::new(AuthErrorKind::WrongIssuer, description)
    })
}

/// The checks that need the issuer's policy: type, key and signature, then the claims.
/// Returns the key that verified the signature.
fn check_token<'k>(
    parts: &Compact<'_>,
    header: &Header<'_>,
    claims: &claims::RawClaims<'_>,
    policy: &Policy,
    keys: &'k KeySet,
    now: u64,
) -> Result<&'k Key, AuthError> {
    if let Some(required) = &policy.typ
        && !header
            .typ
            .as_deref()
            .is_some_and(|t| typ_matches(t, required))
    {
        return Err(AuthError::new(
            AuthErrorKind::WrongType,
            format!("token type (typ) must be {required}"),
        ));
    }
    let key = verify_signature(parts, header, keys)?;
    check_claims(claims, policy, now)?;
    Ok(key)
}

/// Checks the signature with the keys the header selects. Used by the layer and, on its own, by
/// the JOSE test vectors. Returns the key that verified it.
pub(crate) fn verify_signature<'k>(
    parts: &Compact<'_>,
    header: &Header<'_>,
    keys: &'k KeySet,
) -> Result<&'k Key, AuthError> {
    if keys.is_empty() {
        return Err(AuthError::new(
            AuthErrorKind::KeysUnavailable,
            "the issuer's signing keys are not available",
        ));
    }
    let selection = keys.select(header.kid.as_deref(), header.alg);
    match selection {
        Selection::One(_) | Selection::Each { .. } => {}
        Selection::AlgorithmNotAllowed => {
            return Err(AuthError::new(
                AuthErrorKind::AlgorithmNotAllowed,
                "the key named by kid does not allow this algorithm",
            ));
        }
        Selection::Ambiguous => {
            return Err(AuthError::new(
                AuthErrorKind::UnknownKey,
                "several keys share this kid",
            ));
        }
        Selection::Unknown => {
            let description = match header.kid {
                Some(_) => "no key with this kid",
                None => "no key for this algorithm",
            };
            return Err(AuthError::new(AuthErrorKind::UnknownKey, description));
        }
    }
    if parts.signature.is_empty() {
        return Err(AuthError::malformed("empty signature"));
    }
    // Up to RSA-4096 (512 bytes; the decoder asks for room for 513) on the stack; larger RSA
    // signatures go to the heap.
    let signature = Decoded::<520>::new(parts.signature, "signature")?;
    let signature = signature.as_slice();
    let message = parts.signing_input.as_bytes();
    if let Some(key) = selection
        .keys()
        .find(|key| key.verify(header.alg, message, signature))
    {
        return Ok(key);
    }
    match selection {
        // The token's kid is unknown and no key without a kid verified it: a key this set does
        // not have (yet), which is what a refreshing source needs to know.
        Selection::Each {
            kidless_only: true, ..
        } => Err(AuthError::new(
            AuthErrorKind::UnknownKey,
            "no key with this kid",
        )),
        _ => Err(AuthError::new(
            AuthErrorKind::BadSignature,
            "signature does not verify",
        )),
    }
}

fn check_claims(
    claims: &claims::RawClaims<'_>,
    policy: &Policy,
    now: u64,
) -> Result<(), AuthError> {
    let leeway = policy.leeway;
    match claims.exp {
        Some(exp) if now >= exp.saturating_add(leeway) => {
            return Err(AuthError::new(
                AuthErrorKind::Expired,
                "token has expired (exp)",
            ));
        }
        None if policy.require_exp => {
            return Err(AuthError::new(
                AuthErrorKind::MissingClaim,
                "token has no expiry (exp)",
            ));
        }
        _ => {}
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(AuthError::new(
            AuthErrorKind::NotYetValid,
            "token is not yet valid (nbf)",
        ));
    }
    if let Some(iat) = claims.iat
        && iat > now.saturating_add(leeway)
    {
        return Err(AuthError::new(
            AuthErrorKind::IssuedInFuture,
            "token was issued in the future (iat)",
        ));
    }
    if !policy.audiences.is_empty()
        && !claims
            .aud
            .iter()
            .any(|a| policy.audiences.iter().any(|p| p == a))
    {
        let description = if claims.aud.is_empty() {
            "token has no audience (aud)"
        } else {
            "wrong audience (aud)"
        };
        return Err(AuthError::new(AuthErrorKind::WrongAudience, description));
    }
    for (name, expected) in &policy.required {
        let present = match &**name {
            "iss" => claims.iss.is_some(),
            "sub" => claims.sub.is_some(),
            "aud" => !claims.aud.is_empty(),
            "exp" => claims.exp.is_some(),
            "nbf" => claims.nbf.is_some(),
            "iat" => claims.iat.is_some(),
            "jti" => claims.jti.is_some(),
            "client_id" => claims.client_id.is_some(),
            "scope" | "scp" => !claims.scopes.is_empty(),
            other => {
                let value = policy
                    .capture_index(other)
                    .and_then(|i| claims.captured[i].as_ref());
                match (value, expected) {
                    (Some(value), Some(expected)) => value == expected,
                    (value, None) => value.is_some(),
                    (None, Some(_)) => false,
                }
            }
        };
        if !present {
            return Err(AuthError::new(
                AuthErrorKind::MissingClaim,
                format!("required claim `{name}` is missing or has the wrong value"),
            ));
        }
    }
    Ok(())
}

/// Follows `path` into `value` and adds the strings found there (an array of strings, or one
/// space-delimited string) to `out`. Anything else is ignored: role claims are additive.
fn collect_path<'v>(value: &'v Value, path: &[String], out: &mut Vec<&'v str>) {
    let mut value = value;
    for segment in path {
        match value.get(segment) {
            Some(next) => value = next,
            None => return,
        }
    }
    match value {
        Value::String(s) => out.extend(s.split(' ').filter(|t| !t.is_empty())),
        Value::Array(items) => out.extend(items.iter().filter_map(Value::as_str)),
        _ => {}
    }
}

/// `typ` comparison per RFC 7515 §4.1.9: case-insensitive, and `application/` may be omitted.
fn typ_matches(actual: &str, required: &str) -> bool {
    fn strip(t: &str) -> &str {
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    }
    strip(actual).eq_ignore_ascii_case(strip(required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
        assert!(!typ_matches("", "at+jwt"));
    }

    #[test]
    fn role_paths() {
        let v = serde_json::json!({"roles": ["a", 1, "b"], "s": "c d"});
        let mut out = Vec::new();
        collect_path(&v, &["roles".into()], &mut out);
        collect_path(&v, &["s".into()], &mut out);
        collect_path(&v, &["missing".into()], &mut out);
        assert_eq!(
            out.iter().map(|s| &**s).collect::<Vec<_>>(),
            vec!["a", "b", "c", "d"]
        );
    }
}
