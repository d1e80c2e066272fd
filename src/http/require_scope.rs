//! [`RequireScope`], the route layer that demands scopes of the verified token.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::AuthError;
use crate::http::layer::{LayerContext, ResponseFuture, call_ready};
use crate::token::VerifiedToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// A route layer that lets a request through only if its verified token grants the required
/// scopes; otherwise 403 `insufficient_scope` with the required scopes in the challenge
/// (RFC 6750 §3.1). Put it on routes behind an [`Authenticator`](crate::Authenticator) layer.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{Router, routing::get};
/// use tower_oauth2::RequireScope;
///
/// let app: Router = Router::new()
///     .route("/events", get(|| async { "events" }))
///     .route_layer(RequireScope::all(["events:read"]));
/// # }
/// ```
#[derive(Clone)]
pub struct RequireScope {
    inner: Arc<Requirement>,
}

struct Requirement {
    mode: Mode,
    scopes: Box<[Box<str>]>,
    /// Space-delimited, for the challenge's `scope` attribute.
    joined: String,
}

impl RequireScope {
    /// Requires every one of `scopes`. A string with spaces counts as the scopes it lists
    /// (`"a b"` is `"a"` and `"b"`), as in a `scope` claim. With no scope at all, every
    /// authenticated request passes (a warning is logged).
    pub fn all<S: AsRef<str>>(scopes: impl IntoIterator<Item = S>) -> Self {
        Self::new(Mode::All, scopes)
    }

    /// Requires at least one of `scopes` (split on spaces like [`RequireScope::all`]). With no
    /// scope at all, no request passes (a warning is logged).
    pub fn any<S: AsRef<str>>(scopes: impl IntoIterator<Item = S>) -> Self {
        Self::new(Mode::Any, scopes)
    }

    fn new<S: AsRef<str>>(mode: Mode, scopes: impl IntoIterator<Item = S>) -> Self {
        let mut list: Vec<Box<str>> = Vec::new();
        for s in scopes {
            for scope in s.as_ref().split(' ').filter(|t| !t.is_empty()) {
                if !list.iter().any(|known| **known == *scope) {
                    list.push(scope.into());
                }
            }
        }
        if list.is_empty() {
            let effect = match mode {
                Mode::All => "lets every authenticated request through",
                Mode::Any => "refuses every request",
            };
            tracing::warn!("RequireScope with no scope {effect}");
        }
        let joined = list.join(" ");
        Self {
            inner: Arc::new(Requirement {
                mode,
                scopes: list.into_boxed_slice(),
                joined,
            }),
        }
    }

    /// The required scopes, in the order given (duplicates removed).
    pub fn scopes(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.scopes.iter().map(|s| &**s)
    }

    /// Whether every scope is required ([`all`](Self::all)) rather than one of them
    /// ([`any`](Self::any)).
    pub fn requires_all(&self) -> bool {
        self.inner.mode == Mode::All
    }

    /// Checks `token` against the requirement.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), AuthError> {
        let granted = token.scopes();
        let ok = match self.inner.mode {
            Mode::All => granted.contains_all(self.inner.scopes.iter()),
            Mode::Any => granted.contains_any(self.inner.scopes.iter()),
        };
        if ok {
            return Ok(());
        }
        let description = match self.inner.mode {
            Mode::All => format!("requires scope {}", self.inner.joined),
            Mode::Any => format!("requires one of the scopes {}", self.inner.joined),
        };
        Err(AuthError::insufficient_scope(
            self.inner.joined.clone(),
            description,
        ))
    }
}

impl fmt::Debug for RequireScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("mode", &self.inner.mode)
            .field("scopes", &self.inner.scopes)
            .finish()
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            requirement: self.clone(),
        }
    }
}

/// The service [`RequireScope`] wraps around a route.
#[derive(Clone, Debug)]
pub struct RequireScopeService<S> {
    inner: S,
    requirement: RequireScope,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopeService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let extensions = request.extensions();
        let result = match (
            extensions.get::<LayerContext>(),
            extensions.get::<VerifiedToken>(),
        ) {
            (Some(_), Some(token)) => self.requirement.check(token),
            (Some(_), None) => Err(AuthError::missing_token()),
            (None, _) => Err(AuthError::layer_missing("RequireScope")),
        };
        match result {
            Ok(()) => ResponseFuture::inner(call_ready(&mut self.inner, request)),
            Err(error) => {
                let extensions = request.extensions();
                let context = extensions.get::<LayerContext>();
                let telemetry = context.map(|c| c.auth.telemetry());
                crate::http::audit::rejected(&error, extensions.get::<VerifiedToken>(), telemetry);
                let grpc = crate::http::rejection::is_grpc(request.headers());
                ResponseFuture::reject(LayerContext::respond(context, &error, grpc))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_strings_are_split_like_scope_claims() {
        let r = RequireScope::all(["a b", "b", " c "]);
        assert_eq!(
            &*r.inner.scopes,
            ["a".into(), "b".into(), "c".into()] as [Box<str>; 3]
        );
        assert_eq!(r.inner.joined, "a b c");
        assert!(
            RequireScope::any(Vec::<&str>::new())
                .inner
                .scopes
                .is_empty()
        );
    }
}
