//! axum extractors (feature `axum`): [`Claims`], [`Scopes`], [`VerifiedToken`].

use std::any::Any;
use std::fmt;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{AuthError, AuthErrorKind};
use crate::http::layer::LayerContext;
use crate::token::Scopes;
use crate::token::VerifiedToken;

/// The verified claims of the request's token, deserialized into `T` (by default
/// [`StandardClaims`]).
///
/// Needs the [`Authenticator`](crate::Authenticator) layer in front of the route; without it the
/// extractor answers 500 saying so. With the layer in optional mode, use `Option<Claims<T>>`:
/// `None` when the request carried no token. Claims that do not fit `T` answer 401
/// `invalid_token`.
///
/// ```
/// use serde::Deserialize;
/// use tower_oauth2::Claims;
///
/// #[derive(Deserialize)]
/// struct MyClaims { sub: String, tenant: String }
///
/// async fn handler(Claims(c): Claims<MyClaims>) -> String {
///     format!("{} of {}", c.sub, c.tenant)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Claims<T = StandardClaims>(pub T);

/// The claims most handlers need, ready-made: the registered ones, the client, the scopes, and
/// every other claim in `extra`.
///
/// Deserialized from a token's claims, `scopes` holds its `scope` and `scp`; through the
/// [`Claims`] extractor it is exactly the set [`RequireScope`](crate::RequireScope) checks,
/// configured role claims included. It serializes back to claims (`scope` as a space-delimited
/// string, `extra` members at the top level), so it round-trips.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StandardClaims {
    /// `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `aud`, whether the token sent a string or an array.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// `iat`, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `client_id` (RFC 9068).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The granted scopes.
    #[serde(
        rename = "scope",
        skip_serializing_if = "Scopes::is_empty",
        serialize_with = "space_delimited"
    )]
    pub scopes: Scopes,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn space_delimited<S: serde::Serializer>(scopes: &Scopes, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(scopes)
}

impl<'de> Deserialize<'de> for StandardClaims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Value>::deserialize(d)?;
        let string = |map: &mut Map<String, Value>, name: &str| match map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(D::Error::custom(format!("`{name}` must be a string"))),
        };
        let date = |map: &mut Map<String, Value>, name: &str| match map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("`{name}` must be a NumericDate"))),
            Some(_) => Err(D::Error::custom(format!("`{name}` must be a NumericDate"))),
        };
        let aud = match map.remove("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(D::Error::custom(
                        "`aud` must be a string or an array of strings",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(D::Error::custom("`aud` must be a string or an array")),
        };
        let mut scopes = Vec::new();
        for name in ["scope", "scp"] {
            match map.remove(name) {
                Some(Value::String(s)) => scopes.extend(s.split(' ').map(Box::<str>::from)),
                Some(Value::Array(items)) => {
                    scopes.extend(items.iter().filter_map(Value::as_str).map(Box::<str>::from));
                }
                _ => {}
            }
        }
        scopes.retain(|s| !s.is_empty());
        Ok(Self {
            sub: string(&mut map, "sub")?,
            iss: string(&mut map, "iss")?,
            aud,
            exp: date(&mut map, "exp")?,
            iat: date(&mut map, "iat")?,
            jti: string(&mut map, "jti")?,
            client_id: string(&mut map, "client_id")?,
            scopes: Scopes::from_strs(&mut scopes),
            extra: map,
        })
    }
}

/// The rejection of this crate's extractors: the [`AuthError`] and the response the layer's
/// [`Rejection`](crate::Rejection) made of it.
pub struct AuthRejection {
    inner: Box<RejectionInner>,
}

struct RejectionInner {
    error: AuthError,
    response: http::Response<bytes::Bytes>,
}

impl AuthRejection {
    fn new(parts: &Parts, error: AuthError) -> Self {
        match error.kind() {
            AuthErrorKind::LayerMissing => {
                tracing::error!(target: "tower_oauth2::extract", "{error}");
            }
            AuthErrorKind::ClaimsMismatch => {
                let telemetry = parts
                    .extensions
                    .get::<LayerContext>()
                    .map(|c| c.auth.telemetry());
                let token = parts.extensions.get::<VerifiedToken>();
                crate::http::audit::rejected(&error, token, telemetry);
            }
            _ => tracing::trace!(target: "tower_oauth2::extract", "rejecting: {error}"),
        }
        let grpc = crate::http::rejection::is_grpc(&parts.headers);
        let response = LayerContext::respond(parts.extensions.get::<LayerContext>(), &error, grpc);
        Self {
            inner: Box::new(RejectionInner { error, response }),
        }
    }

    /// The error.
    pub fn error(&self) -> &AuthError {
        &self.inner.error
    }

    /// The HTTP status of the rejection.
    pub fn status(&self) -> http::StatusCode {
        self.inner.response.status()
    }

    /// The body of the rejection.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.inner.response.body()).into_owned()
    }
}

impl fmt::Debug for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRejection")
            .field("error", self.error())
            .finish()
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.error, f)
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.inner.response.map(axum::body::Body::from)
    }
}

/// The token the layer verified: `Ok(None)` when the layer let the request through without
/// one (optional mode), an error when there is no layer at all.
fn verified(parts: &Parts, what: &str) -> Result<Option<VerifiedToken>, AuthRejection> {
    if parts.extensions.get::<LayerContext>().is_none() {
        return Err(AuthRejection::new(parts, AuthError::layer_missing(what)));
    }
    Ok(parts.extensions.get::<VerifiedToken>().cloned())
}

fn required(parts: &Parts, what: &str) -> Result<VerifiedToken, AuthRejection> {
    verified(parts, what)?.ok_or_else(|| AuthRejection::new(parts, AuthError::missing_token()))
}

fn claims_of<T: DeserializeOwned + 'static>(
    parts: &Parts,
    token: &VerifiedToken,
) -> Result<T, AuthRejection> {
    let mut claims: T = token.claims().map_err(|e| {
        tracing::debug!(target: "tower_oauth2::extract", error = %e, "claims do not fit the handler's type");
        AuthRejection::new(
            parts,
            AuthError::new(
                AuthErrorKind::ClaimsMismatch,
                "the token's claims do not have the shape this resource needs",
            ),
        )
    })?;
    // The ready-made type gets the exact scope set the layer computed (role claims included).
    if let Some(standard) = (&mut claims as &mut dyn Any).downcast_mut::<StandardClaims>() {
        standard.scopes = token.scopes().clone();
    }
    Ok(claims)
}

impl<S, T> FromRequestParts<S> for Claims<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let token = required(parts, "the Claims extractor")?;
        claims_of(parts, &token).map(Claims)
    }
}

impl<S, T> OptionalFromRequestParts<S> for Claims<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match verified(parts, "the Option<Claims> extractor")? {
            Some(token) => claims_of(parts, &token).map(|c| Some(Claims(c))),
            None => Ok(None),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scopes {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        required(parts, "the Scopes extractor").map(|t| t.scopes().clone())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Scopes {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        verified(parts, "the Option<Scopes> extractor").map(|t| t.map(|t| t.scopes().clone()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        required(parts, "the VerifiedToken extractor")
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedToken {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        verified(parts, "the Option<VerifiedToken> extractor")
    }
}
