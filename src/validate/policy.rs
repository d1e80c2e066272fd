//! The policy a token must satisfy besides its signature, one per trusted issuer, and the
//! claims checks that apply it.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::dpop::DpopMode;
use crate::error::{AuthError, AuthErrorKind};
use crate::jose::claims::{REGISTERED, RawClaims};
use crate::keys::KeySource;
use crate::token::VerifiedToken;
use crate::validate::revocation::RevocationCheck;

/// What a token must satisfy besides its signature. Built by the
/// [`AuthenticatorBuilder`](crate::AuthenticatorBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// `None` only through the `dangerous` opt-out.
    pub(crate) issuer: Option<String>,
    /// Empty only through the `dangerous` opt-out.
    pub(crate) audiences: Vec<String>,
    /// The protected resource (RFC 9728) among `audiences`, named when a token is for another.
    pub(crate) resource: Option<Box<str>>,
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
    /// Refuse tokens bound to a key (`cnf`, RFC 7800) presented as bearer tokens: no binding
    /// can be verified on a bearer request, and accepting them throws the binding away.
    pub(crate) refuse_unverified_cnf: bool,
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
    pub(crate) fn capture_index(&self, name: &str) -> Option<usize> {
        self.capture.iter().position(|c| **c == *name)
    }
}

/// One trusted issuer: its policy and where its keys come from.
pub(crate) struct Trusted {
    pub(crate) policy: Policy,
    pub(crate) keys: KeySource,
    /// Asked about every token that passed all other checks.
    pub(crate) revocation: Option<Arc<dyn RevocationCheck>>,
    /// How its tokens may be presented.
    pub(crate) dpop: DpopMode,
    /// It verifies JWTs itself (it has keys); `false` for an issuer whose tokens are all
    /// introspected, which a JWT's `iss` never selects.
    pub(crate) jwt: bool,
}

impl fmt::Debug for Trusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trusted")
            .field("policy", &self.policy)
            .field("keys", &self.keys)
            .field("revocation_check", &self.revocation.is_some())
            .field("dpop", &self.dpop)
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

/// `exp` and `nbf` against the clock, with the leeway: the checks a token must pass at every
/// use, verified just now or taken from the cache.
pub(crate) fn check_time(
    exp: Option<u64>,
    nbf: Option<u64>,
    leeway: u64,
    now: u64,
) -> Result<(), AuthError> {
    if let Some(exp) = exp
        && now >= exp.saturating_add(leeway)
    {
        return Err(AuthError::new(
            AuthErrorKind::Expired,
            "token has expired (exp)",
        ));
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(AuthError::new(
            AuthErrorKind::NotYetValid,
            "token is not yet valid (nbf)",
        ));
    }
    Ok(())
}

/// The claims checks after the signature: `exp` required unless waived, the time checks,
/// `iat`, audience, required claims.
pub(crate) fn check_claims(
    claims: &RawClaims<'_>,
    policy: &Policy,
    now: u64,
) -> Result<(), AuthError> {
    let leeway = policy.leeway;
    if claims.exp.is_none() && policy.require_exp {
        return Err(AuthError::new(
            AuthErrorKind::MissingClaim,
            "token has no expiry (exp)",
        ));
    }
    check_time(claims.exp, claims.nbf, leeway, now)?;
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
        let description = match (&policy.resource, claims.aud.is_empty()) {
            (_, true) => "token has no audience (aud)".into(),
            (Some(resource), false) => {
                format!("token is for another resource: aud does not name {resource}").into()
            }
            (None, false) => std::borrow::Cow::Borrowed("wrong audience (aud)"),
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

/// The rules for a token presented as a bearer token, checked on every request (cached or
/// not): its issuer must accept bearer tokens, and a token bound to a key (`cnf`, RFC 7800)
/// is refused unless the binding is checked elsewhere (the `dangerous` opt-out), since no
/// binding can be verified on a bearer request.
pub(crate) fn check_bearer(token: &VerifiedToken, trusted: &Trusted) -> Result<(), AuthError> {
    if trusted.dpop == DpopMode::Required {
        return Err(AuthError::new(
            AuthErrorKind::DpopRequired,
            "this issuer's tokens must be DPoP-bound and presented with the DPoP scheme",
        ));
    }
    if token.is_sender_constrained() && trusted.policy.refuse_unverified_cnf {
        return Err(AuthError::new(
            AuthErrorKind::SenderConstrained,
            "token is sender-constrained (cnf): it cannot be used as a bearer token",
        ));
    }
    Ok(())
}

/// The rules for a token presented with the DPoP scheme, before its proof is checked: its
/// issuer must accept DPoP, and it must be bound to a DPoP key. Returns that key's thumbprint.
pub(crate) fn check_dpop_bound<'t>(
    token: &'t VerifiedToken,
    trusted: &Trusted,
) -> Result<&'t str, AuthError> {
    if trusted.dpop == DpopMode::BearerOnly {
        return Err(AuthError::new(
            AuthErrorKind::DpopBinding,
            "this issuer's tokens are not accepted with the DPoP scheme",
        ));
    }
    token.dpop_thumbprint().ok_or_else(|| {
        AuthError::new(
            AuthErrorKind::DpopBinding,
            "the token is not DPoP-bound (no cnf.jkt)",
        )
    })
}

/// Follows `path` into `value` and adds the strings found there (an array of strings, or one
/// space-delimited string) to `out`. Anything else is ignored: role claims are additive.
pub(crate) fn collect_path<'v>(value: &'v Value, path: &[String], out: &mut Vec<&'v str>) {
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
pub(crate) fn typ_matches(actual: &str, required: &str) -> bool {
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
