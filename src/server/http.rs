//! The HTTP plumbing every endpoint shares: RFC 6749 §5.2 error bodies, strict form parsing,
//! JSON responses with `Cache-Control: no-store`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

use super::store::StoreError;

/// An OAuth error response (RFC 6749 §5.2; RFC 7009 and RFC 7662 use the same form).
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: String,
    pub(crate) retry_after: Option<Duration>,
    /// A fresh DPoP nonce for the `DPoP-Nonce` header (RFC 9449 §8).
    pub(crate) dpop_nonce: Option<String>,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// RFC 9449 §5: the DPoP proof of a token request is missing or bad (400).
    pub(crate) fn invalid_dpop_proof(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
    }

    /// RFC 9449 §8: the proof needs this server's nonce, sent along (400).
    pub(crate) fn use_dpop_nonce(description: impl Into<String>, nonce: String) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, "use_dpop_nonce", description);
        error.dpop_nonce = Some(nonce);
        error
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 with `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// RFC 8707 §2: the requested resource is invalid, unknown, or not allowed.
    pub(crate) fn invalid_target(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", description)
    }

    /// 429: too many failed client authentications.
    pub(crate) fn rate_limited(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                "too many failed client authentications; retry later",
            )
        }
    }

    /// 429 `invalid_request`: too many requests of a kind from one peer (`description` says
    /// which).
    #[cfg(feature = "remote")]
    pub(crate) fn too_many(description: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request",
                description,
            )
        }
    }

    /// 429: too many wrong resource-owner passwords for one username.
    pub(crate) fn password_rate_limited(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_grant",
                "too many failed resource-owner authentications; retry later",
            )
        }
    }

    /// 503 `temporarily_unavailable`, for a store that cannot be reached.
    pub(crate) fn unavailable() -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the authorization server's store is unavailable; retry later",
            )
        }
    }

    /// 503 `server_error`: an application hook failed (the request may succeed later; the
    /// server itself did not crash).
    pub(crate) fn hook_failed(description: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", description)
    }

    /// 500 `server_error`, for a fault of the server itself (never bad input).
    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            description,
        )
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        tracing::error!(target: "tower_oauth2::server", %error, "store operation failed");
        match error {
            StoreError::Unavailable(_) => OAuthError::unavailable(),
            StoreError::Conflict(_) => OAuthError::server_error("store conflict"),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code,
            "error_description": self.description,
        });
        let mut response = json_response(self.status, &body);
        if self.code == "invalid_client" && self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth2\", charset=\"UTF-8\""),
            );
        }
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Some(nonce) = self.dpop_nonce.and_then(|n| HeaderValue::try_from(n).ok()) {
            response
                .headers_mut()
                .insert(crate::dpop::DPOP_NONCE, nonce);
        }
        response
    }
}

/// A JSON response that no cache keeps (RFC 6749 §5.1).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Whether the request's `Content-Type` is `expected` (parameters ignored, case-insensitive).
pub(crate) fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

/// Request parameters: each name at most once, empty values treated as absent (RFC 6749 §3.1);
/// except `resource`, which RFC 8707 §2 lets a request repeat.
#[derive(Debug, Default)]
pub(crate) struct Params {
    map: HashMap<String, String>,
    /// Every `resource` parameter, in order, without repeats.
    resources: Vec<String>,
}

/// The parameter RFC 8707 lets a request give several times.
const RESOURCE: &str = "resource";

impl Params {
    /// Parses `application/x-www-form-urlencoded` text, refusing repeated parameters.
    pub(crate) fn parse(text: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        let mut resources = Vec::new();
        for (name, value) in form_urlencoded::parse(text) {
            if value.is_empty() {
                continue;
            }
            if name == RESOURCE {
                if !resources.iter().any(|r| *r == value) {
                    resources.push(value.into_owned());
                }
                continue;
            }
            if map.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` is repeated",
                    printable(&name)
                )));
            }
        }
        Ok(Self { map, resources })
    }

    /// Parses a POST body, which must be form-encoded.
    pub(crate) fn from_form(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        Self::from_body(headers, body, false)
    }

    /// Parses a POST body: form-encoded, or, with `accept_json`, a JSON object of string
    /// members ([`parse_json`](Self::parse_json)).
    pub(crate) fn from_body(
        headers: &HeaderMap,
        body: &[u8],
        accept_json: bool,
    ) -> Result<Self, OAuthError> {
        let is = |expected: &str| has_media_type(headers, expected);
        if is("application/x-www-form-urlencoded") {
            Self::parse(body)
        } else if accept_json && is("application/json") {
            Self::parse_json(body)
        } else if accept_json {
            Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded or application/json",
            ))
        } else {
            Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ))
        }
    }

    /// Parses a JSON object whose members are all strings, as the form body's parameters: an
    /// empty string counts as absent, as an empty form value does. A member given twice, a
    /// member that is not a string, anything but a single object, or text that is not JSON is
    /// refused: serde_json's maps would keep the last of two members silently, so the object is
    /// read with a visitor of its own.
    pub(crate) fn parse_json(text: &[u8]) -> Result<Self, OAuthError> {
        use serde::Deserializer as _;
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let map = deserializer
            .deserialize_any(FlatObject)
            .and_then(|map| deserializer.end().map(|()| map))
            .map_err(|error| {
                OAuthError::invalid_request(format!("the JSON body is not accepted: {error}"))
            })?;
        let mut map = map;
        let resources = map.remove(RESOURCE).into_iter().collect();
        Ok(Self { map, resources })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The `resource` parameters (RFC 8707), as given.
    pub(crate) fn resources(&self) -> &[String] {
        &self.resources
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.map.remove(name)
    }
}

/// Reads one JSON object of string members into a map; see [`Params::parse_json`].
struct FlatObject;

impl<'de> serde::de::Visitor<'de> for FlatObject {
    type Value = HashMap<String, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("one object whose members are strings")
    }

    // Anything but an object is refused without echoing it: the text could be a secret.
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom("expected one object, found a string"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom("expected one object, found a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom("expected one object, found a number"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom("expected one object, found a number"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom("expected one object, found a number"))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom("expected one object, found null"))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(serde::de::Error::custom(
            "expected one object, found an array",
        ))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut seen = std::collections::HashSet::new();
        let mut map = HashMap::new();
        while let Some(name) = access.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                return Err(A::Error::custom(format!(
                    "member `{}` is repeated",
                    printable(&name)
                )));
            }
            let value = match access.next_value::<Value>()? {
                Value::String(value) => value,
                other => {
                    let kind = match other {
                        Value::Null => "null",
                        Value::Bool(_) => "a boolean",
                        Value::Number(_) => "a number",
                        Value::Array(_) => "an array",
                        Value::Object(_) => "an object",
                        Value::String(_) => "a string",
                    };
                    return Err(A::Error::custom(format!(
                        "member `{}` is {kind}; every member must be a string",
                        printable(&name)
                    )));
                }
            };
            if !value.is_empty() {
                map.insert(name, value);
            }
        }
        Ok(map)
    }
}

/// A parameter name fit for an error description: printable ASCII, bounded.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(40)
        .collect()
}

/// Splits a `scope` parameter (RFC 6749 §3.3): space-delimited `scope-token`s, at least one.
/// Whether `value` is exactly one RFC 6749 §3.3 scope-token (for configured scope lists).
pub(crate) fn is_scope_token(value: &str) -> bool {
    parse_scope(value).is_ok_and(|scopes| scopes.len() == 1)
}

/// The scopes a client that describes itself (dynamic registration, a metadata document) gets:
/// those its space-delimited `scope` member names, each of which must be in `allowed` (`Err`
/// names the first that is not), or all of `allowed` when it names none.
pub(crate) fn scopes_within(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, String> {
    let requested: Vec<String> = requested
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if requested.is_empty() {
        return Ok(allowed.to_vec());
    }
    match requested.iter().find(|s| !allowed.contains(s)) {
        Some(bad) => Err(bad.clone()),
        None => Ok(requested),
    }
}

pub(crate) fn parse_scope(value: &str) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for token in value.split(' ') {
        if token.is_empty() {
            continue;
        }
        if !token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(OAuthError::invalid_scope(
                "scope tokens are printable ASCII without spaces, quotes or backslashes",
            ));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("scope is empty"));
    }
    Ok(scopes)
}

/// Random bytes from the OS, base64url: opaque tokens, codes, ids.
pub(crate) fn random_token(bytes: usize) -> Result<String, OAuthError> {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|_| OAuthError::server_error("the OS random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        let err = Params::parse(b"grant_type=a&scope=x&grant_type=b").expect_err("refused");
        assert_eq!(err.code, "invalid_request");
        assert!(err.description.contains("grant_type"));
        let ok = Params::parse(b"a=1&b=&b=2").expect("empty value counts as absent");
        assert_eq!(ok.get("b"), Some("2"));
    }

    #[test]
    fn scope_grammar() {
        assert_eq!(
            parse_scope("read  write read").expect("ok"),
            vec!["read", "write"]
        );
        assert_eq!(
            parse_scope("  ").expect_err("refused").code,
            "invalid_scope"
        );
        assert_eq!(
            parse_scope("a\"b").expect_err("refused").code,
            "invalid_scope"
        );
        assert_eq!(
            parse_scope("caf\u{e9}").expect_err("refused").code,
            "invalid_scope"
        );
    }
}
