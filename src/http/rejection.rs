//! How a rejection is answered over HTTP: the status and RFC 6750 §3 error code of an
//! [`AuthError`], its `WWW-Authenticate` challenge and JSON body, and [`DefaultRejection`].

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::authenticator::rejection::{DEFAULT_REALM, Rejection};
use crate::error::{AuthError, AuthErrorKind};

/// RFC 6750 §3: the HTTP face of an error. Inherent methods of [`AuthError`], defined here
/// because rendering belongs to the HTTP layer.
impl AuthError {
    /// The HTTP status this error is answered with: 400, 401, 403 or 500.
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            AuthErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            AuthErrorKind::InsufficientScope => StatusCode::FORBIDDEN,
            AuthErrorKind::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code: `invalid_request`, `invalid_token`, `insufficient_scope`,
    /// or `None` when the request carried no token at all.
    pub fn error_code(&self) -> Option<&'static str> {
        match self.kind() {
            AuthErrorKind::MissingToken | AuthErrorKind::LayerMissing => None,
            AuthErrorKind::InvalidRequest => Some("invalid_request"),
            AuthErrorKind::InsufficientScope => Some("insufficient_scope"),
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
        if self.kind() == AuthErrorKind::LayerMissing {
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
            push_restricted(&mut challenge, self.description());
            challenge.push('"');
        }
        if let Some(scope) = self.required_scope() {
            challenge.push_str(", scope=\"");
            push_restricted(&mut challenge, scope);
            challenge.push('"');
        }
        if let Some(url) = resource_metadata {
            challenge.push_str(", resource_metadata=\"");
            push_quoted(&mut challenge, url);
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
            error_description: self.description(),
            scope: self.required_scope(),
        };
        // Serializing a struct of strings into a String cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// The default response: status, `WWW-Authenticate`, `Cache-Control: no-store`, a JSON body,
    /// and a copy of this error in the extensions.
    pub fn to_response(&self, realm: &str) -> Response<Bytes> {
        self.render(realm, None)
    }

    fn render(&self, realm: &str, resource_metadata: Option<&str>) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from(self.json_body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge(realm, resource_metadata)
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

impl Rejection for DefaultRejection {
    fn respond(&self, error: &AuthError) -> Response<Bytes> {
        error.render(&self.realm, self.resource_metadata.as_deref())
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
