//! The validation pipeline: a token string and the trusted issuers in, a [`VerifiedToken`] or
//! an [`AuthError`] out. No tower, axum or HTTP types here.
//!
//! [`verify`] runs the steps in order (size, shape, header, claims syntax, issuer, key and
//! signature, then the claims policy of [`policy`]); [`cache`] keeps verified tokens and
//! [`recheck`] is what a cached token goes through again; [`revocation`] is the hook asked last.

pub(crate) mod cache;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod jose_vectors;
pub(crate) mod policy;
pub(crate) mod revocation;

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::{AuthError, AuthErrorKind};
use crate::jose::claims;
use crate::jose::compact::{Compact, Decoded, b64url};
use crate::jose::header::Header;
use crate::keys::{Key, KeySet, Selection};
use crate::token::{Scopes, TextBuilder, TokenInner, VerifiedToken};
use policy::{Policy, Trusted, check_claims, check_time, collect_path, typ_matches};

/// Validates `token` against the trusted issuers at time `now`. The token records which issuer
/// and key set verified it ([`VerifiedToken::verified_by`]), for the token cache.
///
///
/// Order: size, shape, header (`alg`, `crit`), claims syntax, issuer, key and signature, then the
/// time and audience checks. Issuer comes before the key lookup so that, with several issuers,
/// a token from an unknown one never causes a key lookup.
pub(crate) fn verify(
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
    let claims =
        claims::parse(&payload, &first.policy.capture).map_err(|e| e.with_claimed(kid, None))?;
    let (index, trusted) = select_issuer(issuers, claims.iss.as_deref())
        .map_err(|e| e.with_claimed(kid, claims.iss.as_deref()))?;
    let policy = &trusted.policy;
    let keys = trusted.keys.snapshot();
    let key_set = keys.identity();
    let key = check_token(&parts, &header, &claims, policy, &keys, now)
        .map_err(|e| e.with_claimed(kid, claims.iss.as_deref()))?;

    let kid = match (header.kid, key.shared_kid()) {
        (Some(named), Some(shared)) if *named == **shared => Some(Arc::clone(shared)),
        (named, _) => named.map(|k| Arc::from(&*k)),
    };
    let verifier = Verifier {
        alg: Some(header.alg),
        kid,
        issuer: index,
        keys: key_set,
    };
    let verified = Assembled::new(&payload, claims, policy, verifier).finish(payload)?;
    check_revocation(trusted, &verified)?;
    Ok(verified)
}

/// What verified a token: the signature's algorithm and key, or the issuer's introspection
/// endpoint (`alg` and `kid` `None`), and the issuer and key set for the token cache.
pub(crate) struct Verifier {
    pub(crate) alg: Option<crate::jose::Algorithm>,
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) issuer: usize,
    pub(crate) keys: Option<Arc<KeySet>>,
}

/// A [`VerifiedToken`] from claims that passed every check, but for its text: the scopes (with
/// the issuer's role claims) and where each string claim will be. It borrows nothing, so the
/// payload the claims borrowed can then be moved into the token.
struct Assembled {
    text: TextBuilder,
    inner: TokenInner,
}

impl Assembled {
    fn new(
        payload: &[u8],
        mut claims: claims::RawClaims<'_>,
        policy: &Policy,
        verifier: Verifier,
    ) -> Self {
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
        let mut text = TextBuilder::new(payload);
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
        let jkt = claims.jkt.as_deref().map(|j| text.span(j));
        let inner = TokenInner {
            text: Box::default(),
            payload_len: payload.len(),
            iss,
            sub,
            jti,
            client_id,
            aud_first,
            aud_rest,
            exp: claims.exp,
            nbf: claims.nbf,
            iat: claims.iat,
            scopes,
            confirmed: claims.confirmation,
            jkt,
            alg: verifier.alg,
            kid: verifier.kid,
            issuer: verifier.issuer,
            keys: verifier.keys,
        };
        Self { text, inner }
    }

    /// The token, with `payload` (the one given to [`new`](Self::new)) as its text.
    fn finish(self, payload: Vec<u8>) -> Result<VerifiedToken, AuthError> {
        let mut inner = self.inner;
        inner.text = self.text.finish(payload)?;
        Ok(VerifiedToken::new(inner))
    }
}

/// Validates the claims an introspection endpoint (RFC 7662) answered for an active token of
/// issuer `index`: `claims` is the response with `active` removed, its `iss` (filled in with
/// the issuer's when the response has none) already compared. They get the same checks as a
/// JWT's claims: `exp` (unless waived), `nbf`, `iat`, audience, required claims, revocation.
/// Claims that do not parse (a registered claim of the wrong type) are `Malformed`, which the
/// caller treats as an answer it cannot use.
#[cfg(feature = "introspection")]
pub(crate) fn introspected(
    claims_json: Vec<u8>,
    issuers: &[Trusted],
    index: usize,
    now: u64,
) -> Result<VerifiedToken, AuthError> {
    let Some(trusted) = issuers.get(index) else {
        return Err(AuthError::new(
            AuthErrorKind::KeysUnavailable,
            "no issuer is configured",
        ));
    };
    let policy = &trusted.policy;
    let claims = claims::parse(&claims_json, &policy.capture)?;
    check_claims(&claims, policy, now).map_err(|e| e.with_claimed(None, claims.iss.as_deref()))?;
    let verifier = Verifier {
        alg: None,
        kid: None,
        issuer: index,
        keys: None,
    };
    let verified = Assembled::new(&claims_json, claims, policy, verifier).finish(claims_json)?;
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
    let leeway = trusted.policy.leeway;
    check_time(token.expires_at(), token.not_before(), leeway, now)
        .map_err(|e| e.with_claimed(token.key_id(), token.issuer()))?;
    check_revocation(trusted, token)
}

/// The issuer whose `iss` the token names, before any key is looked up.
fn select_issuer<'a>(
    issuers: &'a [Trusted],
    iss: Option<&str>,
) -> Result<(usize, &'a Trusted), AuthError> {
    let found = issuers
        .iter()
        .enumerate()
        .filter(|(_, t)| t.jwt)
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
