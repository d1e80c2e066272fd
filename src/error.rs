//! Errors: [`ConfigError`] for configuration mistakes, [`AuthError`] for rejected requests, and
//! their RFC 6750 §3 rendering.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

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
    /// The header's `typ` is not the required one.
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
    /// The authentication layer is not installed in front of this route (500).
    LayerMissing,
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

    /// A 400 `invalid_request` error, for [`TokenSource`](crate::TokenSource) implementations
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
            }),
        }
    }

    /// Records what the rejected token claimed as its `kid` and `iss`.
    pub(crate) fn with_claimed(mut self, kid: Option<&str>, iss: Option<&str>) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.claimed_kid = kid.map(str::to_owned);
        inner.claimed_iss = iss.map(str::to_owned);
        self
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

    /// The HTTP status this error is answered with: 400, 401, 403 or 500.
    pub fn status(&self) -> StatusCode {
        match self.inner.kind {
            AuthErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            AuthErrorKind::InsufficientScope => StatusCode::FORBIDDEN,
            AuthErrorKind::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code: `invalid_request`, `invalid_token`, `insufficient_scope`,
    /// or `None` when the request carried no token at all.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.inner.kind {
            AuthErrorKind::MissingToken | AuthErrorKind::LayerMissing => None,
            AuthErrorKind::InvalidRequest => Some("invalid_request"),
            AuthErrorKind::InsufficientScope => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// Shorthand for `kind() == AuthErrorKind::Expired`.
    pub fn is_expired(&self) -> bool {
        self.inner.kind == AuthErrorKind::Expired
    }

    /// The `WWW-Authenticate` challenge for this error (RFC 6750 §3), or `None` for a 500.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        if self.inner.kind == AuthErrorKind::LayerMissing {
            return None;
        }
        let mut challenge = String::with_capacity(96);
        challenge.push_str("Bearer realm=\"");
        push_quoted(&mut challenge, realm);
        challenge.push('"');
        if let Some(code) = self.error_code() {
            challenge.push_str(", error=\"");
            challenge.push_str(code);
            challenge.push_str("\", error_description=\"");
            push_restricted(&mut challenge, &self.inner.description);
            challenge.push('"');
        }
        if let Some(scope) = &self.inner.scope {
            challenge.push_str(", scope=\"");
            push_restricted(&mut challenge, scope);
            challenge.push('"');
        }
        Some(challenge)
    }

    /// The default JSON body: `{"error": …, "error_description": …}` (no `error` member when the
    /// request carried no token, as in the challenge).
    pub fn json_body(&self) -> String {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
            error_description: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            scope: Option<&'a str>,
        }
        let body = Body {
            error: self.error_code(),
            error_description: &self.inner.description,
            scope: self.inner.scope.as_deref(),
        };
        // Serializing a struct of strings into a String cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// The default response: status, `WWW-Authenticate`, `Cache-Control: no-store`, a JSON body,
    /// and a copy of this error in the extensions.
    pub fn to_response(&self, realm: &str) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(self.json_body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.www_authenticate(realm)
            && let Ok(value) = HeaderValue::try_from(challenge)
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        response.extensions_mut().insert(self.clone());
        response
    }
}

/// Appends `value` as the content of an RFC 9110 quoted-string (the realm): `"` and `\` are
/// escaped, and characters a header value cannot carry are replaced.
fn push_quoted(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
}

/// Appends `value` restricted to the characters RFC 6750 §3 allows in `error_description` and
/// `scope` (%x20-21 / %x23-5B / %x5D-7E: no `"`, no `\`); others become `?`.
fn push_restricted(out: &mut String, value: &str) {
    out.extend(value.chars().map(|c| match c {
        ' ' | '!' | '#'..='[' | ']'..='~' => c,
        _ => '?',
    }));
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

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        self.to_response(crate::authenticator::DEFAULT_REALM)
            .map(axum::body::Body::from)
    }
}

/// Turns an [`AuthError`] into the response sent to the client. Install one with
/// [`AuthenticatorBuilder::rejection`](crate::AuthenticatorBuilder::rejection) to replace the
/// default JSON body; any `Fn(&AuthError) -> Response<Bytes>` closure is one.
///
/// The layer adds a copy of the error to the response's extensions after calling it.
pub trait Rejection: Send + Sync + 'static {
    /// Builds the response for `error`.
    fn respond(&self, error: &AuthError) -> Response<Bytes>;
}

impl<F> Rejection for F
where
    F: Fn(&AuthError) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, error: &AuthError) -> Response<Bytes> {
        self(error)
    }
}

/// The default [`Rejection`]: [`AuthError::to_response`] with the configured realm.
#[derive(Debug, Clone)]
pub struct DefaultRejection {
    realm: String,
}

impl DefaultRejection {
    /// A default rejection that names `realm` in its challenge.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
        }
    }
}

impl Rejection for DefaultRejection {
    fn respond(&self, error: &AuthError) -> Response<Bytes> {
        error.to_response(&self.realm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        let e = AuthError::missing_token();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            e.www_authenticate("api").as_deref(),
            Some("Bearer realm=\"api\"")
        );
        assert!(!e.json_body().contains("\"error\""));
    }

    #[test]
    fn challenge_escapes_quotes_and_control_characters() {
        let e = AuthError::new(AuthErrorKind::WrongIssuer, "issuer \"x\\y\"\n");
        let challenge = e.www_authenticate("r\"").unwrap_or_default();
        assert_eq!(
            challenge,
            "Bearer realm=\"r\\\"\", error=\"invalid_token\", \
             error_description=\"issuer ?x?y??\""
        );
        assert!(HeaderValue::try_from(challenge).is_ok());
    }

    #[test]
    fn insufficient_scope_is_403_with_scope() {
        let e = AuthError::insufficient_scope("a b".into(), "needs a and b".into());
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let response = e.to_response("api");
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"api\", error=\"insufficient_scope\", \
             error_description=\"needs a and b\", scope=\"a b\""
        );
        assert_eq!(
            response.body().as_ref(),
            br#"{"error":"insufficient_scope","error_description":"needs a and b","scope":"a b"}"#
        );
        assert!(response.extensions().get::<AuthError>().is_some());
    }
}
