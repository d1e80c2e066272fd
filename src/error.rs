//! Errors: [`ConfigError`] for configuration mistakes, [`AuthError`] for rejected requests.
//!
//! Kinds and text only: how an `AuthError` is answered over HTTP (status, RFC 6750 challenge,
//! body) is the HTTP layer's business (`crate::http::rejection`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A configuration mistake found while building an [`Authenticator`](crate::Authenticator) or
/// loading keys. Never a panic: every builder returns `Result<_, ConfigError>`.
#[derive(Debug, Clone)]
pub struct ConfigError {
    message: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Why a request was rejected. Match on this, not on the `Display` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No token in the request (RFC 6750 §3.1: 401 without an error code).
    MissingToken,
    /// The Authorization header is malformed, or the request carries several tokens
    /// (400 `invalid_request`).
    InvalidRequest,
    /// The token is not a well-formed JWS compact serialization with JSON header and claims.
    Malformed,
    /// The token is longer than the configured maximum.
    TooLarge,
    /// The header names an algorithm that is unknown, unsupported or `none`.
    UnsupportedAlgorithm,
    /// The header names an algorithm that the selected key does not allow.
    AlgorithmNotAllowed,
    /// The header carries a `crit` parameter this crate does not understand.
    UnsupportedCritical,
    /// No configured key matches the token's `kid` (or, without `kid`, its algorithm).
    UnknownKey,
    /// The signing keys have not been fetched yet, or every fetch so far failed.
    KeysUnavailable,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `iss` does not match the configured issuer.
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    WrongAudience,
    /// The header's `typ` is not the required one, or an introspection answer is about a
    /// refresh token.
    WrongType,
    /// A required claim is missing or has the wrong value.
    MissingClaim,
    /// The claims do not fit the type a handler asked for with [`Claims<T>`](crate::Claims).
    ClaimsMismatch,
    /// The token lacks a scope the route requires (403 `insufficient_scope`).
    InsufficientScope,
    /// The token verified but its issuer has revoked it (see
    /// [`RevocationCheck`](crate::RevocationCheck)).
    Revoked,
    /// The token is sender-constrained (a `cnf` claim, RFC 7800: bound to a DPoP key or a TLS
    /// client certificate) but was presented as a plain bearer token, which would throw the
    /// binding away (401 `invalid_token`).
    SenderConstrained,
    /// The DPoP proof (RFC 9449) is missing, malformed, signed wrongly, for another request, too
    /// old or replayed (401 `invalid_dpop_proof`).
    InvalidDpopProof,
    /// The DPoP proof lacks a server nonce, or has a stale one (401 `use_dpop_nonce`; the
    /// response's `DPoP-Nonce` header has a fresh one).
    UseDpopNonce,
    /// The token's DPoP binding does not fit the request: the proof's key is not the one the
    /// token is bound to (`cnf.jkt`), the token is not bound to a key, or its issuer's tokens
    /// are not accepted with the DPoP scheme (401 `invalid_token`).
    DpopBinding,
    /// The token's issuer requires DPoP and the token came as a bearer token (401
    /// `invalid_token`).
    DpopRequired,
    /// The issuer's introspection endpoint (RFC 7662) says the token is not active: unknown,
    /// expired or revoked (401 `invalid_token`).
    Inactive,
    /// The token must be introspected (RFC 7662) and the introspection endpoint could not
    /// answer: down, slow, or answering garbage. 503 with `Retry-After`, not 401: the token may
    /// be fine.
    IntrospectionUnavailable,
    /// The authentication layer is not installed in front of this route (500).
    LayerMissing,
}

impl AuthErrorKind {
    /// A stable snake_case name (`expired`, `bad_signature`, …): the `reason` of metrics and
    /// logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest => "invalid_request",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnsupportedCritical => "unsupported_critical",
            Self::UnknownKey => "unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongType => "wrong_type",
            Self::MissingClaim => "missing_claim",
            Self::ClaimsMismatch => "claims_mismatch",
            Self::InsufficientScope => "insufficient_scope",
            Self::Revoked => "revoked",
            Self::SenderConstrained => "sender_constrained",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::DpopBinding => "dpop_binding",
            Self::DpopRequired => "dpop_required",
            Self::Inactive => "inactive",
            Self::IntrospectionUnavailable => "introspection_unavailable",
            Self::LayerMissing => "layer_missing",
        }
    }
}

/// A rejected request: what failed, and how to answer it (RFC 6750 §3).
///
/// The `Display` text is for humans and logs; it never contains the token.
/// A copy of the error is placed in the rejection response's extensions.
#[derive(Clone)]
pub struct AuthError {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: AuthErrorKind,
    description: Cow<'static, str>,
    /// For `InsufficientScope`: the scopes the route requires, space-delimited.
    scope: Option<String>,
    /// `kid` and `iss` as the rejected token claimed them (unverified), for diagnostics.
    claimed_kid: Option<String>,
    claimed_iss: Option<String>,
    /// The request used the DPoP scheme (or the error is about DPoP): its challenge is the
    /// `DPoP` one.
    dpop: bool,
    /// For `IntrospectionUnavailable`: when to try again, in seconds.
    retry_after: Option<u32>,
    /// The token is not the local verifier's: its introspection result is not known yet (the
    /// synchronous path stops here; the layer introspects and decides again).
    introspect: bool,
}

impl AuthError {
    pub(crate) fn new(kind: AuthErrorKind, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                description: description.into(),
                scope: None,
                claimed_kid: None,
                claimed_iss: None,
                dpop: false,
                retry_after: None,
                introspect: false,
            }),
        }
    }

    pub(crate) fn missing_token() -> Self {
        Self::new(AuthErrorKind::MissingToken, "a bearer token is required")
    }

    pub(crate) fn malformed(what: impl Into<Cow<'static, str>>) -> Self {
        let what = what.into();
        Self::new(AuthErrorKind::Malformed, format!("malformed token: {what}"))
    }

    /// A 400 `invalid_request` error, for [`TokenSource`](crate::token_source::TokenSource) implementations
    /// that find a malformed token carrier.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidRequest, description)
    }

    pub(crate) fn layer_missing(what: &str) -> Self {
        Self::new(
            AuthErrorKind::LayerMissing,
            format!(
                "{what} found no authentication layer: is `Authenticator::layer()` installed in \
                 front of this route?"
            ),
        )
    }

    pub(crate) fn insufficient_scope(required: String, description: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind: AuthErrorKind::InsufficientScope,
                description: description.into(),
                scope: Some(required),
                claimed_kid: None,
                claimed_iss: None,
                dpop: false,
                retry_after: None,
                introspect: false,
            }),
        }
    }

    /// `IntrospectionUnavailable`: the introspection endpoint could not answer; try again in
    /// `retry_after` seconds.
    #[cfg(feature = "introspection")]
    pub(crate) fn introspection_unavailable(
        description: impl Into<Cow<'static, str>>,
        retry_after: u32,
    ) -> Self {
        let mut error = Self::new(AuthErrorKind::IntrospectionUnavailable, description);
        Arc::make_mut(&mut error.inner).retry_after = Some(retry_after);
        error
    }

    /// The token needs introspection, which only an asynchronous caller can do.
    #[cfg(feature = "introspection")]
    pub(crate) fn introspection_pending() -> Self {
        let mut error = Self::introspection_unavailable(
            "this token must be introspected: use the layer or Authenticator::verify_async",
            1,
        );
        Arc::make_mut(&mut error.inner).introspect = true;
        error
    }

    /// Whether the token awaits introspection (see [`introspection_pending`](Self::introspection_pending)).
    pub(crate) fn needs_introspection(&self) -> bool {
        self.inner.introspect
    }

    /// For [`AuthErrorKind::IntrospectionUnavailable`]: how many seconds to wait before trying
    /// again (the `Retry-After` of the 503).
    pub fn retry_after(&self) -> Option<u32> {
        self.inner.retry_after
    }

    /// Records what the rejected token claimed as its `kid` and `iss`.
    pub(crate) fn with_claimed(mut self, kid: Option<&str>, iss: Option<&str>) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.claimed_kid = kid.map(str::to_owned);
        inner.claimed_iss = iss.map(str::to_owned);
        self
    }

    /// Marks the error as one of a request that used the DPoP scheme.
    pub(crate) fn via_dpop(mut self) -> Self {
        Arc::make_mut(&mut self.inner).dpop = true;
        self
    }

    /// Whether the request used the DPoP scheme (RFC 9449) or the error is about its proof: the
    /// challenge that carries the error is then the `DPoP` one.
    pub fn is_dpop(&self) -> bool {
        self.inner.dpop
    }

    /// The `kid` the rejected token's header named, if it got that far. Unverified: for
    /// diagnosing key rotation, never for decisions.
    pub fn claimed_key_id(&self) -> Option<&str> {
        self.inner.claimed_kid.as_deref()
    }

    /// The `iss` the rejected token's claims named, if they could be read. Unverified.
    pub fn claimed_issuer(&self) -> Option<&str> {
        self.inner.claimed_iss.as_deref()
    }

    /// What failed.
    pub fn kind(&self) -> AuthErrorKind {
        self.inner.kind
    }

    /// The human-readable reason, as sent in `error_description`.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// For [`AuthErrorKind::InsufficientScope`]: the scopes the route requires.
    pub fn required_scope(&self) -> Option<&str> {
        self.inner.scope.as_deref()
    }

    /// Shorthand for `kind() == AuthErrorKind::Expired`.
    pub fn is_expired(&self) -> bool {
        self.inner.kind == AuthErrorKind::Expired
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthError")
            .field("kind", &self.inner.kind)
            .field("description", &self.inner.description)
            .finish()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl std::error::Error for AuthError {}
