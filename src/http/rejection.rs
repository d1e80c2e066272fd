//! How a rejection is answered over HTTP: the status and RFC 6750 §3 error code of an
//! [`AuthError`], its `WWW-Authenticate` challenge and JSON body, and [`DefaultRejection`].

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::authenticator::rejection::{DEFAULT_REALM, Rejection};
use crate::error::{AuthError, AuthErrorKind};

/// RFC 6750 §3: the HTTP face of an error. Inherent methods of [`AuthError`], defined here
/// because rendering belongs to the HTTP layer.
impl AuthError {
    /// The HTTP status this error is answered with: 400, 401, 403, 500, or 503 when the
    /// token's introspection endpoint could not answer.
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            AuthErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            AuthErrorKind::InsufficientScope => StatusCode::FORBIDDEN,
            AuthErrorKind::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
            AuthErrorKind::IntrospectionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code: `invalid_request`, `invalid_token`, `insufficient_scope`,
    /// RFC 9449's `invalid_dpop_proof` and `use_dpop_nonce`, or `None` when the request carried
    /// no token at all. A 503 (the introspection endpoint could not answer) has RFC 6749's
    /// `temporarily_unavailable` in its body and no challenge.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind() {
            AuthErrorKind::MissingToken | AuthErrorKind::LayerMissing => None,
            AuthErrorKind::IntrospectionUnavailable => Some("temporarily_unavailable"),
            AuthErrorKind::InvalidRequest => Some("invalid_request"),
            AuthErrorKind::InsufficientScope => Some("insufficient_scope"),
            AuthErrorKind::InvalidDpopProof => Some("invalid_dpop_proof"),
            AuthErrorKind::UseDpopNonce => Some("use_dpop_nonce"),
            _ => Some("invalid_token"),
        }
    }

    /// The `WWW-Authenticate` challenge for this error (RFC 6750 §3), or `None` for a 500.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        self.challenge(realm, None)
    }

    /// The `WWW-Authenticate` challenge for this error, naming the protected-resource metadata
    /// at `resource_metadata` (RFC 9728 §5.1) when given; `None` for a 500.
    pub fn challenge(&self, realm: &str, resource_metadata: Option<&str>) -> Option<String> {
        self.challenges(realm, resource_metadata, None)
    }

    /// The `WWW-Authenticate` value for this error when DPoP (RFC 9449 §7.1) is accepted:
    /// `dpop` is the `algs` of the `DPoP` challenge and whether the `Bearer` scheme is accepted
    /// too. With both, the value holds both challenges, and the error goes in the one of the
    /// scheme the request used ([`is_dpop`](Self::is_dpop)). `None` for `dpop`: the `Bearer`
    /// challenge of [`challenge`](Self::challenge). `None` for a 500 or a 503: the request's
    /// credentials were not refused.
    pub fn challenges(
        &self,
        realm: &str,
        resource_metadata: Option<&str>,
        dpop: Option<(&str, bool)>,
    ) -> Option<String> {
        if matches!(
            self.kind(),
            AuthErrorKind::LayerMissing | AuthErrorKind::IntrospectionUnavailable
        ) {
            return None;
        }
        let (bearer, dpop_algs) = match dpop {
            None => (true, None),
            Some((algs, bearer)) => (bearer, Some(algs)),
        };
        // The error belongs to the scheme the request used; with only one scheme, to that one.
        let error_in_bearer = bearer && (dpop_algs.is_none() || !self.is_dpop());
        let mut challenge = String::with_capacity(96);
        if bearer {
            challenge.push_str("Bearer realm=\"");
            push_quoted(&mut challenge, realm);
            challenge.push('"');
            if error_in_bearer {
                self.push_error(&mut challenge);
            }
            push_metadata(&mut challenge, resource_metadata);
        }
        if let Some(algs) = dpop_algs {
            if bearer {
                challenge.push_str(", ");
            }
            challenge.push_str("DPoP algs=\"");
            push_restricted(&mut challenge, algs);
            challenge.push('"');
            if !error_in_bearer {
                self.push_error(&mut challenge);
            }
            push_metadata(&mut challenge, resource_metadata);
        }
        Some(challenge)
    }

    /// `, error="…", error_description="…"` and `scope`, when the error has a code.
    fn push_error(&self, challenge: &mut String) {
        if let Some(code) = self.error_code() {
            challenge.push_str(", error=\"");
            challenge.push_str(code);
            challenge.push_str("\", error_description=\"");
            push_restricted(challenge, self.description());
            challenge.push('"');
        }
        if let Some(scope) = self.required_scope() {
            challenge.push_str(", scope=\"");
            push_restricted(challenge, scope);
            challenge.push('"');
        }
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
            error_description: self.description(),
            scope: self.required_scope(),
        };
        // Serializing a struct of strings into a String cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// The default response: status, `WWW-Authenticate`, `Cache-Control: no-store`, a JSON body,
    /// `Retry-After` on a 503, and a copy of this error in the extensions.
    pub fn to_response(&self, realm: &str) -> Response<Bytes> {
        self.render(realm, None, None)
    }

    fn render(
        &self,
        realm: &str,
        resource_metadata: Option<&str>,
        dpop: Option<(&str, bool)>,
    ) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(self.json_body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenges(realm, resource_metadata, dpop)
            && let Ok(value) = HeaderValue::try_from(challenge)
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self.clone());
        response
    }
}

/// `, resource_metadata="…"` (RFC 9728 §5.1) when there is a URL.
fn push_metadata(out: &mut String, url: Option<&str>) {
    if let Some(url) = url {
        out.push_str(", resource_metadata=\"");
        push_quoted(out, url);
        out.push('"');
    }
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, with or without a
/// `+proto`-style suffix or parameters).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("application/grpc"))
}

/// A rejection answered the gRPC way: HTTP 200 "trailers-only" (no body; the status in the
/// headers, which end the stream), `grpc-status` 16 `UNAUTHENTICATED` (7 `PERMISSION_DENIED`
/// for a missing scope, 14 `UNAVAILABLE` when the introspection endpoint could not answer, 13
/// `INTERNAL` for a missing layer), `grpc-message` with the same
/// description as the HTTP answer, and `response`'s other headers (the RFC 6750
/// `www-authenticate`, a `DPoP-Nonce`) kept as metadata.
pub(crate) fn grpc_answer(error: &AuthError, response: Response<Bytes>) -> Response<Bytes> {
    let code: u16 = match error.kind() {
        AuthErrorKind::InsufficientScope => 7,
        AuthErrorKind::IntrospectionUnavailable => 14,
        AuthErrorKind::LayerMissing => 13,
        _ => 16,
    };
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::OK;
    let headers = &mut parts.headers;
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(CACHE_CONTROL);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(error.description())) {
        headers.insert("grpc-message", message);
    }
    Response::from_parts(parts, Bytes::new())
}

/// `grpc-message` encoding (gRPC over HTTP/2): bytes outside `0x20..=0x7E`, and `%`,
/// percent-encoded.
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        self.to_response(DEFAULT_REALM).map(axum::body::Body::from)
    }
}

/// The default [`Rejection`]: [`AuthError::to_response`] with the configured realm.
#[derive(Debug, Clone)]
pub struct DefaultRejection {
    realm: String,
    resource_metadata: Option<String>,
    /// The `algs` of the DPoP challenge, and whether bearer tokens are accepted too.
    dpop: Option<(String, bool)>,
}

impl Default for DefaultRejection {
    /// Names the realm `"api"`, the authenticator's default.
    fn default() -> Self {
        Self::new(DEFAULT_REALM)
    }
}

impl DefaultRejection {
    /// A default rejection that names `realm` in its challenge.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            resource_metadata: None,
            dpop: None,
        }
    }

    /// Also names the protected-resource metadata at `url` in every challenge (RFC 9728 §5.1).
    /// The layer does this itself when a [`ProtectedResource`](crate::ProtectedResource) is
    /// configured.
    #[must_use]
    pub fn with_resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }
}

impl DefaultRejection {
    /// Challenges for a service that accepts DPoP-bound tokens (RFC 9449 §7.1): a `DPoP`
    /// challenge with `algs` (space-separated), beside the `Bearer` one when `bearer` tokens
    /// are accepted too. The layer does this itself when [`Dpop`](crate::dpop::Dpop) is
    /// configured.
    #[must_use]
    pub fn with_dpop(mut self, algs: impl Into<String>, bearer: bool) -> Self {
        self.dpop = Some((algs.into(), bearer));
        self
    }
}

impl Rejection for DefaultRejection {
    fn respond(&self, error: &AuthError) -> Response<Bytes> {
        let dpop = self
            .dpop
            .as_ref()
            .map(|(algs, bearer)| (algs.as_str(), *bearer));
        error.render(&self.realm, self.resource_metadata.as_deref(), dpop)
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

    #[test]
    fn grpc_answers_are_trailers_only_with_the_status_and_message() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&headers));
        let error = AuthError::new(AuthErrorKind::Expired, "token has expired (exp) 100%\u{e9}");
        let answer = grpc_answer(&error, error.to_response("api"));
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(answer.body().is_empty());
        assert_eq!(answer.headers()["grpc-status"], "16");
        assert_eq!(
            answer.headers()["grpc-message"],
            "token has expired (exp) 100%25%C3%A9"
        );
        assert_eq!(answer.headers()[CONTENT_TYPE], "application/grpc");
        assert!(
            answer.headers()[WWW_AUTHENTICATE]
                .to_str()
                .is_ok_and(|c| c.contains("invalid_token"))
        );
        let scope = AuthError::insufficient_scope("a".into(), "requires scope a".into());
        assert_eq!(
            grpc_answer(&scope, scope.to_response("api")).headers()["grpc-status"],
            "7"
        );
    }

    #[test]
    fn dpop_challenges_carry_the_error_of_the_scheme_used() {
        let both = DefaultRejection::new("api").with_dpop("ES256 EdDSA", true);
        let challenge = |r: &DefaultRejection, e: &AuthError| {
            r.respond(e).headers()[WWW_AUTHENTICATE]
                .to_str()
                .map(str::to_owned)
                .unwrap_or_default()
        };
        assert_eq!(
            challenge(&both, &AuthError::missing_token()),
            "Bearer realm=\"api\", DPoP algs=\"ES256 EdDSA\""
        );
        let bearer_error = AuthError::new(AuthErrorKind::Expired, "expired");
        assert_eq!(
            challenge(&both, &bearer_error),
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"expired\", \
             DPoP algs=\"ES256 EdDSA\""
        );
        let proof_error = AuthError::new(AuthErrorKind::InvalidDpopProof, "bad proof").via_dpop();
        assert_eq!(
            challenge(&both, &proof_error),
            "Bearer realm=\"api\", DPoP algs=\"ES256 EdDSA\", \
             error=\"invalid_dpop_proof\", error_description=\"bad proof\""
        );
        let only = DefaultRejection::new("api").with_dpop("ES256", false);
        assert_eq!(
            challenge(&only, &bearer_error),
            "DPoP algs=\"ES256\", error=\"invalid_token\", error_description=\"expired\""
        );
        let nonce = AuthError::new(AuthErrorKind::UseDpopNonce, "nonce").via_dpop();
        assert_eq!(nonce.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(nonce.error_code(), Some("use_dpop_nonce"));
    }

    #[test]
    fn default_rejection_names_the_resource_metadata_in_every_challenge() {
        let rejection = DefaultRejection::new("api")
            .with_resource_metadata("https://a.example/.well-known/oauth-protected-resource/m");
        let missing = rejection.respond(&AuthError::missing_token());
        assert_eq!(
            missing.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"api\", \
             resource_metadata=\"https://a.example/.well-known/oauth-protected-resource/m\""
        );
        let scope = rejection.respond(&AuthError::insufficient_scope("a".into(), "x".into()));
        assert!(
            scope.headers()[WWW_AUTHENTICATE]
                .to_str()
                .is_ok_and(|c| c.ends_with("scope=\"a\", resource_metadata=\"https://a.example/.well-known/oauth-protected-resource/m\""))
        );
        let layer_missing = rejection.respond(&AuthError::layer_missing("x"));
        assert!(layer_missing.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
