//! Where the token comes from: the `Authorization` header (RFC 6750 §2.1) always, and a cookie
//! or a query parameter (RFC 6750 §2.3) only when configured.

use std::borrow::Cow;
use std::fmt;

use http::header::{AUTHORIZATION, COOKIE};
use http::{Extensions, HeaderMap, Uri};

use crate::dpop::Scheme;
use crate::error::{AuthError, AuthErrorKind};

/// Takes the bearer token from a request, if it carries one there.
///
/// Return `Ok(None)` when this source holds no token, and an error built with
/// [`AuthError::invalid_request`] when it holds something malformed. The layer consults the
/// `Authorization` header and then every configured source; a request with tokens in more than
/// one place is refused (RFC 6750 §2: clients must use only one method).
pub trait TokenSource: Send + Sync + 'static {
    /// The token in this request, if this source has one.
    fn extract<'r>(
        &self,
        headers: &'r HeaderMap,
        uri: &'r Uri,
    ) -> Result<Option<Cow<'r, str>>, AuthError>;

    /// Whether a token from this source travels in the URL. Successful responses to such
    /// requests get `Cache-Control: private` unless they set their own (RFC 6750 §2.3).
    /// Defaults to `false`.
    fn in_url(&self) -> bool {
        false
    }

    /// The RFC 6750 method this source implements, for `bearer_methods_supported` in the
    /// protected-resource metadata (RFC 9728): `"header"`, `"body"` or `"query"`. Defaults to
    /// `None` (a cookie or a custom header is no RFC 6750 method).
    fn bearer_method(&self) -> Option<&'static str> {
        None
    }

    /// The token in this request, when the source also needs what a layer in front of the
    /// authentication layer put in the request's extensions (as [`FormBodyToken`] does).
    /// Defaults to [`extract`](Self::extract).
    fn extract_with_extensions<'r>(
        &self,
        headers: &'r HeaderMap,
        uri: &'r Uri,
        extensions: &'r Extensions,
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        let _ = extensions;
        self.extract(headers, uri)
    }

    /// Removes this source's token from a request, for a layer with
    /// [`hide_credentials`](crate::layer::BearerAuthLayer::hide_credentials). Defaults to
    /// removing nothing: a custom source that carries the token elsewhere should remove it.
    fn remove(&self, headers: &mut HeaderMap, uri: &mut Uri) {
        let _ = (headers, uri);
    }
}

/// The `Authorization: Bearer <token>` header, per RFC 6750 §2.1: the scheme is
/// case-insensitive, one or more spaces separate it from exactly one `b64token`, and a request
/// may carry only one `Authorization` header. Other schemes (e.g. `Basic`) are not bearer tokens
/// and count as no token.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizationHeader;

impl TokenSource for AuthorizationHeader {
    fn extract<'r>(
        &self,
        headers: &'r HeaderMap,
        _uri: &'r Uri,
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        bearer_from_headers(headers).map(|t| t.map(Cow::Borrowed))
    }
}

pub(crate) fn bearer_from_headers(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    Ok(credentials_from_headers(headers, false)?.map(|(token, _)| token))
}

/// The token of the one `Authorization` header: `Bearer`, or `DPoP` (RFC 9449 §7.1) when
/// `dpop` is on. Other schemes count as no token.
pub(crate) fn credentials_from_headers(
    headers: &HeaderMap,
    dpop: bool,
) -> Result<Option<(&str, Scheme)>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::invalid_request("several Authorization headers"));
    }
    // One pass over the token: a token `parse_credentials` accepts is a b64token, so a header
    // that yields one is visible ASCII and the header's own character check would only repeat
    // the scan. Any other outcome is worded against the header as a whole, bad bytes first.
    let not_visible = || AuthError::invalid_request("Authorization header is not visible ASCII");
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| not_visible())?;
    match parse_credentials(text, dpop) {
        Ok(Some(found)) => Ok(Some(found)),
        _ if value.to_str().is_err() => Err(not_visible()),
        other => other,
    }
}

/// Parses one `Authorization` value: `Bearer 1*SP b64token` (or `DPoP 1*SP b64token` when
/// `dpop` is on), with the surrounding optional whitespace of the field value (RFC 9110 §5.5)
/// ignored.
fn parse_credentials(value: &str, dpop: bool) -> Result<Option<(&str, Scheme)>, AuthError> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(AuthError::invalid_request("empty Authorization header"));
    }
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let (scheme, name) = if scheme.eq_ignore_ascii_case("bearer") {
        (Scheme::Bearer, "Bearer")
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        (Scheme::Dpop, "DPoP")
    } else {
        return Ok(None);
    };
    let refuse = |description: String| {
        let error = AuthError::invalid_request(description);
        match scheme {
            Scheme::Bearer => error,
            Scheme::Dpop => error.via_dpop(),
        }
    };
    if rest.starts_with('\t') {
        return Err(refuse(format!("the {name} scheme is followed by a tab")));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(refuse(format!("{name} scheme without a token")));
    }
    if !is_b64token(token) {
        return Err(refuse(format!(
            "the Authorization header must carry exactly one b64token after {name}"
        )));
    }
    Ok(Some((token, scheme)))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750 §2.1).
fn is_b64token(token: &str) -> bool {
    is_b64token_bytes(token.as_bytes())
}

fn is_b64token_bytes(token: &[u8]) -> bool {
    let mut body = token;
    while let [rest @ .., b'='] = body {
        body = rest;
    }
    if body.is_empty() {
        return false;
    }
    // Every request runs this over the whole token. Whole blocks are folded without branches, in
    // arithmetic the compiler turns into SIMD compares (a lookup table would not vectorize);
    // about twice as fast as a table for a 700-byte token.
    let mut blocks = body.chunks_exact(32);
    for block in &mut blocks {
        if !block.iter().fold(true, |ok, &b| ok & is_b64token_byte(b)) {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| is_b64token_byte(b))
}

/// A byte a `b64token` may contain before its trailing `=`.
#[inline(always)]
fn is_b64token_byte(b: u8) -> bool {
    // `b | 0x20` folds A-Z onto a-z and maps nothing else into a-z.
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// A token in a cookie, for browser clients. Configure with
/// [`AuthenticatorBuilder::token_source`](crate::AuthenticatorBuilder::token_source); pair it with
/// CSRF protection, since browsers send cookies on cross-site requests.
#[derive(Debug, Clone)]
pub struct CookieToken {
    name: String,
}

impl CookieToken {
    /// Reads the cookie called `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl TokenSource for CookieToken {
    /// Removes the cookie from every `Cookie` header, keeping the others; a header left empty
    /// goes.
    fn remove(&self, headers: &mut HeaderMap, _uri: &mut Uri) {
        let kept: Vec<String> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|pair| {
                        pair.split_once('=')
                            .is_none_or(|(name, _)| name != self.name)
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|value| !value.is_empty())
            .collect();
        headers.remove(COOKIE);
        for value in kept {
            if let Ok(value) = http::HeaderValue::try_from(value) {
                headers.append(COOKIE, value);
            }
        }
    }

    fn extract<'r>(
        &self,
        headers: &'r HeaderMap,
        _uri: &'r Uri,
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        let mut found = None;
        for header in headers.get_all(COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for pair in header.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name != self.name {
                    continue;
                }
                if found.is_some() {
                    return Err(AuthError::invalid_request(format!(
                        "several `{}` cookies",
                        self.name
                    )));
                }
                let value = value.trim_matches('"');
                if value.is_empty() || !is_b64token(value) {
                    return Err(AuthError::invalid_request(format!(
                        "the `{}` cookie is not a token",
                        self.name
                    )));
                }
                found = Some(value);
            }
        }
        Ok(found.map(Cow::Borrowed))
    }
}

/// A token in a URI query parameter (RFC 6750 §2.3, usually `access_token`). The RFC
/// discourages it: URLs end up in logs and browser history. Use only where nothing else works.
#[derive(Debug, Clone)]
pub struct QueryToken {
    name: String,
}

impl QueryToken {
    /// Reads the query parameter called `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl TokenSource for QueryToken {
    /// `"query"` when the parameter is RFC 6750's `access_token`.
    fn bearer_method(&self) -> Option<&'static str> {
        (self.name == "access_token").then_some("query")
    }

    fn extract<'r>(
        &self,
        _headers: &'r HeaderMap,
        uri: &'r Uri,
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        let Some(query) = uri.query() else {
            return Ok(None);
        };
        let mut found = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(name).as_deref() != Some(self.name.as_str()) {
                continue;
            }
            if found.is_some() {
                return Err(AuthError::invalid_request(format!(
                    "several `{}` query parameters",
                    self.name
                )));
            }
            let value = percent_decode(value)
                .filter(|v| !v.is_empty() && is_b64token(v))
                .ok_or_else(|| {
                    AuthError::invalid_request(format!("`{}` is not a token", self.name))
                })?;
            found = Some(value);
        }
        Ok(found)
    }

    fn in_url(&self) -> bool {
        true
    }

    /// Removes the parameter from the query, keeping the other parameters as they were.
    fn remove(&self, _headers: &mut HeaderMap, uri: &mut Uri) {
        let Some(query) = uri.query() else {
            return;
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
                percent_decode(name).as_deref() != Some(self.name.as_str())
            })
            .collect();
        let path_and_query = if kept.is_empty() {
            uri.path().to_owned()
        } else {
            format!("{}?{}", uri.path(), kept.join("&"))
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(path_and_query) = http::uri::PathAndQuery::try_from(path_and_query) {
            parts.path_and_query = Some(path_and_query);
            if let Ok(without) = Uri::from_parts(parts) {
                *uri = without;
            }
        }
    }
}

/// A token in an `application/x-www-form-urlencoded` request body (feature `axum`), as RFC 6750
/// §2.2's
/// `access_token` parameter. Opt-in, and it needs its layer in front of the authentication
/// layer, which reads such bodies (within a size bound) and hands them on intact:
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{Router, routing::post};
/// use tower_oauth2::token_source::FormBodyToken;
/// # fn f(builder: tower_oauth2::AuthenticatorBuilder) -> Result<(), tower_oauth2::ConfigError> {
/// let body_tokens = FormBodyToken::new();
/// let auth = builder.token_source(body_tokens.clone()).build()?;
/// let app: Router = Router::new()
///     .route("/events", post(|| async { "ok" }))
///     .layer(auth.layer())
///     .layer(body_tokens.layer()); // outside: runs first
/// # let _ = app; Ok(()) }
/// # }
/// ```
///
/// Only a request whose method has a body (not `GET` or `HEAD`), whose content type is
/// `application/x-www-form-urlencoded` and whose `Content-Length` is at most
/// [`max_bytes`](Self::max_bytes) (64 KiB by default) is read; others go on untouched and carry
/// no body token. RFC 6750 discourages this method too: prefer the `Authorization` header.
/// [`hide_credentials`](crate::layer::BearerAuthLayer::hide_credentials) does not rewrite
/// bodies: the parameter stays in the body the handler reads.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone)]
pub struct FormBodyToken {
    pub(crate) max_bytes: usize,
}

#[cfg(feature = "axum")]
impl Default for FormBodyToken {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "axum")]
impl FormBodyToken {
    /// Reads form bodies of at most 64 KiB.
    pub fn new() -> Self {
        Self {
            max_bytes: 64 * 1024,
        }
    }

    /// The largest body read for a token, in bytes; larger ones are not read.
    #[must_use]
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }
}

/// What the [`FormBodyToken`] layer found in a request's body; it puts one in every request.
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub(crate) enum BodyToken {
    /// No body token (not a form, too large, no parameter).
    None,
    /// The `access_token` parameter.
    Found(String),
    /// A malformed one: the reason.
    Invalid(&'static str),
}

#[cfg(feature = "axum")]
impl BodyToken {
    /// What a form body holds: one `access_token` parameter that is a `b64token`, or none.
    pub(crate) fn of_form(body: &[u8]) -> Self {
        let Ok(body) = std::str::from_utf8(body) else {
            return BodyToken::Invalid("the form body is not UTF-8");
        };
        let mut found = BodyToken::None;
        for pair in body.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(name).as_deref() != Some("access_token") {
                continue;
            }
            if !matches!(found, BodyToken::None) {
                return BodyToken::Invalid("several access_token parameters in the body");
            }
            found = match percent_decode(value) {
                Some(token) if !token.is_empty() && is_b64token(&token) => {
                    BodyToken::Found(token.into_owned())
                }
                _ => BodyToken::Invalid("the body's access_token is not a token"),
            };
        }
        found
    }
}

#[cfg(feature = "axum")]
impl TokenSource for FormBodyToken {
    fn extract<'r>(
        &self,
        _headers: &'r HeaderMap,
        _uri: &'r Uri,
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        Ok(None)
    }

    fn extract_with_extensions<'r>(
        &self,
        _headers: &'r HeaderMap,
        _uri: &'r Uri,
        extensions: &'r Extensions,
    ) -> Result<Option<Cow<'r, str>>, AuthError> {
        match extensions.get::<BodyToken>() {
            Some(BodyToken::Found(token)) => Ok(Some(Cow::Borrowed(token))),
            Some(BodyToken::None) => Ok(None),
            Some(BodyToken::Invalid(reason)) => Err(AuthError::invalid_request(*reason)),
            None => Err(AuthError::new(
                AuthErrorKind::LayerMissing,
                "FormBodyToken found nothing its layer read: add `.layer(body_tokens.layer())` \
                 outside the authentication layer",
            )),
        }
    }

    fn bearer_method(&self) -> Option<&'static str> {
        Some("body")
    }
}

/// Decodes `%XX` escapes and `+` (form encoding); `None` for a broken escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// A token found in a request.
pub(crate) struct Found<'r> {
    pub(crate) token: Cow<'r, str>,
    pub(crate) carrier: Carrier,
    /// It came in the URL.
    pub(crate) in_url: bool,
}

/// Where a token came from: the `Authorization` header (`source` `None`) or a configured
/// source, and its scheme.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Carrier {
    source: Option<usize>,
    pub(crate) scheme: Scheme,
}

/// The configured sources, header first.
pub(crate) struct Sources {
    extra: Vec<Box<dyn TokenSource>>,
}

impl Sources {
    pub(crate) fn new(extra: Vec<Box<dyn TokenSource>>) -> Self {
        Self { extra }
    }

    /// The one token in the request, where it came from and its scheme (`DPoP` only when
    /// `dpop` is on); `None` if there is none, `invalid_request` if there are several.
    pub(crate) fn extract<'r>(
        &self,
        headers: &'r HeaderMap,
        uri: &'r Uri,
        extensions: &'r Extensions,
        dpop: bool,
    ) -> Result<Option<Found<'r>>, AuthError> {
        let mut found = credentials_from_headers(headers, dpop)?.map(|(token, scheme)| Found {
            token: Cow::Borrowed(token),
            carrier: Carrier {
                source: None,
                scheme,
            },
            in_url: false,
        });
        for (index, source) in self.extra.iter().enumerate() {
            if let Some(token) = source.extract_with_extensions(headers, uri, extensions)? {
                if found.is_some() {
                    return Err(AuthError::new(
                        AuthErrorKind::InvalidRequest,
                        "the request carries more than one token",
                    ));
                }
                found = Some(Found {
                    token,
                    carrier: Carrier {
                        source: Some(index),
                        scheme: Scheme::Bearer,
                    },
                    in_url: source.in_url(),
                });
            }
        }
        Ok(found)
    }

    /// Takes the token out of the request it came in: the `Authorization` header (and the
    /// `DPoP` proof with it), or what the source's [`TokenSource::remove`] removes.
    pub(crate) fn remove(&self, carrier: Carrier, headers: &mut HeaderMap, uri: &mut Uri) {
        match carrier.source.and_then(|i| self.extra.get(i)) {
            Some(source) => source.remove(headers, uri),
            None => {
                headers.remove(AUTHORIZATION);
                if carrier.scheme == Scheme::Dpop {
                    headers.remove(crate::dpop::DPOP);
                }
            }
        }
    }

    /// The RFC 6750 methods these sources implement: `"header"` first, always.
    pub(crate) fn bearer_methods(&self) -> Vec<&'static str> {
        let mut methods = vec!["header"];
        for method in self.extra.iter().filter_map(|s| s.bearer_method()) {
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
        methods
    }
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("extra", &self.extra.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header's value through the layer's path, checked to agree with the grammar applied
    /// to the value as a string.
    fn bearer(value: &str) -> Result<Option<String>, AuthErrorKind> {
        let mut headers = HeaderMap::new();
        let header = http::HeaderValue::from_str(value).expect("a valid header value");
        headers.insert(AUTHORIZATION, header);
        let through_headers = bearer_from_headers(&headers)
            .map(|t| t.map(str::to_owned))
            .map_err(|e| e.kind());
        let full_grammar = parse_credentials(value, false)
            .map(|t| t.map(|(t, _)| t.to_owned()))
            .map_err(|e| e.kind());
        assert_eq!(through_headers, full_grammar, "{value:?}");
        through_headers
    }

    #[test]
    fn b64token_bytes_are_exactly_rfc_6750s() {
        for b in 0..=u8::MAX {
            let spec = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64token_byte(b), spec, "byte {b:#04x}");
        }
        // Long enough for whole 32-byte blocks and a remainder, with the bad byte in each.
        let good = "aZ09-._~+/".repeat(10);
        assert!(is_b64token(&good));
        for at in [0, 31, 32, 63, 64, 99] {
            let mut bad = good.clone().into_bytes();
            bad[at] = b'!';
            assert!(!is_b64token_bytes(&bad), "bad byte at {at}");
        }
    }

    #[test]
    fn non_ascii_header_is_refused() {
        let mut headers = HeaderMap::new();
        let value = http::HeaderValue::from_bytes("Bearer abc\u{e9}".as_bytes()).expect("obs-text");
        headers.insert(AUTHORIZATION, value);
        let err = bearer_from_headers(&headers).expect_err("non-ASCII");
        assert_eq!(err.kind(), AuthErrorKind::InvalidRequest);
    }

    #[test]
    fn authorization_grammar() {
        let some = |t: &str| Ok(Some(t.to_owned()));
        assert_eq!(bearer("Bearer abc.def-_~+/=="), some("abc.def-_~+/=="));
        assert_eq!(bearer("bearer abc"), some("abc"));
        assert_eq!(bearer("BEARER   abc  "), some("abc"));
        assert_eq!(bearer("Bearer abc "), some("abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(bearer("Bearer"), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(bearer("  "), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(bearer("Bearer "), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(bearer("Bearer a b"), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(
            bearer("Bearer a,Bearer b"),
            Err(AuthErrorKind::InvalidRequest)
        );
        assert_eq!(bearer("Bearer\tabc"), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(bearer("Bearer ==="), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(bearer("Bearer a=b"), Err(AuthErrorKind::InvalidRequest));
    }

    #[test]
    fn dpop_scheme_only_when_on() {
        fn dpop(v: &str, on: bool) -> Result<Option<(&str, Scheme)>, AuthErrorKind> {
            parse_credentials(v, on).map_err(|e| e.kind())
        }
        assert_eq!(dpop("DPoP abc", true), Ok(Some(("abc", Scheme::Dpop))));
        assert_eq!(dpop("dpop  abc", true), Ok(Some(("abc", Scheme::Dpop))));
        assert_eq!(dpop("Bearer abc", true), Ok(Some(("abc", Scheme::Bearer))));
        assert_eq!(dpop("DPoP abc", false), Ok(None));
        assert_eq!(dpop("DPoP", true), Err(AuthErrorKind::InvalidRequest));
        assert_eq!(dpop("DPoP a b", true), Err(AuthErrorKind::InvalidRequest));
        assert!(parse_credentials("DPoP a b", true).is_err_and(|e| e.is_dpop()));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn form_bodies() {
        let of = |body: &str| match BodyToken::of_form(body.as_bytes()) {
            BodyToken::Found(token) => Ok(Some(token)),
            BodyToken::None => Ok(None),
            BodyToken::Invalid(reason) => Err(reason),
        };
        assert_eq!(
            of("a=1&access_token=abc.def&b=2"),
            Ok(Some("abc.def".into()))
        );
        assert_eq!(of("access%5Ftoken=x%2Ey"), Ok(Some("x.y".into())));
        assert_eq!(of("a=1"), Ok(None));
        assert_eq!(of(""), Ok(None));
        assert!(of("access_token=a&access_token=b").is_err());
        assert!(of("access_token=").is_err());
        assert!(of("access_token=a+b").is_err());
        assert!(matches!(
            BodyToken::of_form(b"access_token=\xff"),
            BodyToken::Invalid(_)
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2").as_deref(), None);
        assert_eq!(percent_decode("a%zz").as_deref(), None);
        assert_eq!(percent_decode("a%+f").as_deref(), None);
    }

    #[test]
    fn query_and_cookie_sources() {
        let uri: Uri = "/x?a=1&access_token=abc.def".parse().unwrap_or_default();
        let headers = HeaderMap::new();
        let got = QueryToken::named("access_token").extract(&headers, &uri);
        assert_eq!(got.ok().flatten().as_deref(), Some("abc.def"));

        let twice: Uri = "/x?access_token=a&access_token=b"
            .parse()
            .unwrap_or_default();
        assert!(
            QueryToken::named("access_token")
                .extract(&headers, &twice)
                .is_err()
        );

        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            http::HeaderValue::from_static("x=1; at=tok.en; y=2"),
        );
        let got = CookieToken::named("at").extract(&headers, &uri);
        assert_eq!(got.ok().flatten().as_deref(), Some("tok.en"));
    }
}
