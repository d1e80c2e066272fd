//! The tower middleware: [`BearerAuthLayer`] and the [`BearerAuth`] service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::{Admitted, Authenticator, Rejection};
use crate::dpop::{DPOP_NONCE, Scheme};
use crate::error::AuthError;
use crate::http::audit;
use crate::http::rejection::{DefaultRejection, grpc_answer, is_grpc};

/// Placed in the request extensions by the layer on every request it lets through, so that
/// [`RequireScope`](crate::RequireScope) and the extractors can tell "no token" (optional mode)
/// from "no layer", and answer with the application's [`Rejection`].
#[derive(Clone)]
pub(crate) struct LayerContext {
    /// The layer's authenticator: its rejection and metrics.
    pub(crate) auth: Authenticator,
    /// The token came with the DPoP scheme: later refusals go in the `DPoP` challenge.
    pub(crate) dpop: bool,
}

impl LayerContext {
    /// Renders `error` with the layer's rejection, or the default one when there is no layer;
    /// the gRPC way for a gRPC request (`grpc`).
    pub(crate) fn respond(
        context: Option<&Self>,
        error: &AuthError,
        grpc: bool,
    ) -> Response<Bytes> {
        let dpop_error;
        let error = match context {
            Some(context) if context.dpop && !error.is_dpop() => {
                dpop_error = error.clone().via_dpop();
                &dpop_error
            }
            _ => error,
        };
        let mut response = match context {
            Some(context) => context.auth.rejection_for_layers().respond(error),
            None => DefaultRejection::default().respond(error),
        };
        response.extensions_mut().insert(error.clone());
        if grpc {
            return grpc_answer(error, response);
        }
        response
    }
}

impl Authenticator {
    /// The tower layer that authenticates every request with this authenticator.
    pub fn layer(&self) -> BearerAuthLayer {
        BearerAuthLayer {
            auth: self.clone(),
            rejection: Arc::clone(self.rejection_for_layers()),
            optional: false,
            hide_credentials: false,
        }
    }

    /// The application's rejection, or the default one with this configuration's realm,
    /// protected-resource metadata and DPoP challenge.
    pub(crate) fn rejection_for_layers(&self) -> &Arc<dyn Rejection> {
        self.layer_rejection(|| {
            let (custom, realm) = self.rejection();
            match custom {
                Some(rejection) => Arc::clone(rejection),
                None => {
                    let mut rejection = DefaultRejection::new(realm);
                    if let Some(url) = self.resource_metadata_url() {
                        rejection = rejection.with_resource_metadata(url);
                    }
                    if let Some((algs, bearer)) = self.dpop_challenge() {
                        rejection = rejection.with_dpop(algs, bearer);
                    }
                    Arc::new(rejection)
                }
            }
        })
    }
}

/// The layer built by [`Authenticator::layer`]. Cheap to clone.
#[derive(Clone)]
pub struct BearerAuthLayer {
    auth: Authenticator,
    /// The application's rejection, or the default one with the configured realm.
    rejection: Arc<dyn Rejection>,
    optional: bool,
    hide_credentials: bool,
}

impl BearerAuthLayer {
    /// Removes the token from every request it lets through before the inner service sees
    /// it: the `Authorization` header (and a DPoP proof), the cookie of a
    /// [`CookieToken`](crate::token_source::CookieToken) (other cookies stay), the parameter
    /// of a [`QueryToken`](crate::token_source::QueryToken) (other parameters stay), or what a
    /// custom source's [`remove`](crate::token_source::TokenSource::remove) removes. For
    /// services that forward requests (a gateway, a proxy) and must not pass the caller's
    /// credentials on. Handlers still get the [`VerifiedToken`](crate::VerifiedToken).
    #[must_use]
    pub fn hide_credentials(mut self) -> Self {
        self.hide_credentials = true;
        self
    }

    /// Optional authentication: a request without any token goes through unauthenticated (the
    /// handler sees `None` from `Option<Claims<_>>`), while a request with a token that fails
    /// validation is still rejected.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("optional", &self.optional)
            .field("hide_credentials", &self.hide_credentials)
            .finish()
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            auth: self.auth.clone(),
            rejection: Arc::clone(&self.rejection),
            optional: self.optional,
            hide_credentials: self.hide_credentials,
        }
    }
}

/// The middleware service: validates the bearer token, then calls the inner service with the
/// [`VerifiedToken`](crate::VerifiedToken) in the request extensions, or answers the rejection itself.
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    auth: Authenticator,
    rejection: Arc<dyn Rejection>,
    optional: bool,
    hide_credentials: bool,
}

impl<S> fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("optional", &self.optional)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let outcome = self.auth.authenticate_request(
            request.method(),
            request.headers(),
            request.uri(),
            request.extensions(),
            None,
        );
        if let Err(error) = &outcome
            && (error.needs_introspection() || self.auth.may_refetch_keys(error))
        {
            // The token names a key this source may not have yet (a rotation): fetch the keys
            // again, single-flight and rate-limited, then decide. Or it must be introspected
            // and its answer is not cached: ask the endpoint (one call per token). The only
            // paths that await.
            let auth = self.auth.clone();
            let rejection = Arc::clone(&self.rejection);
            let error = error.clone();
            let optional = self.optional;
            let hide = self.hide_credentials;
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::boxed(Box::pin(async move {
                let (headers, uri) = (request.headers(), request.uri());
                let resolved = auth
                    .wait_for(&error, headers, uri, request.extensions())
                    .await;
                let outcome = auth.authenticate_request(
                    request.method(),
                    request.headers(),
                    request.uri(),
                    request.extensions(),
                    resolved.as_ref(),
                );
                match admit(&auth, &rejection, (optional, hide), &mut request, outcome) {
                    Admission::In(post) => {
                        let mut result = inner.call(request).await;
                        if let Ok(response) = &mut result {
                            post.apply(response);
                        }
                        result
                    }
                    Admission::Out(response) => Ok(response.map(ResBody::from)),
                }
            }));
        }
        match admit(
            &self.auth,
            &self.rejection,
            (self.optional, self.hide_credentials),
            &mut request,
            outcome,
        ) {
            Admission::In(post) => {
                let future = call_ready(&mut self.inner, request);
                ResponseFuture::with(future, post)
            }
            Admission::Out(response) => ResponseFuture::reject(response),
        }
    }
}

impl Authenticator {
    /// What a request refused with `error` waits for before it is decided again: an
    /// introspection answer for its token, or a refetch of its issuer's keys.
    async fn wait_for(
        &self,
        error: &AuthError,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        extensions: &http::Extensions,
    ) -> Option<crate::authenticator::Resolved> {
        #[cfg(feature = "introspection")]
        if error.needs_introspection() {
            return self.introspect_request(headers, uri, extensions).await;
        }
        let _ = (headers, uri, extensions);
        self.refetch_keys(error).await;
        None
    }
}

/// What [`admit`] decided.
enum Admission {
    /// Call the inner service, then finish its response.
    In(Post),
    /// Answer this rejection.
    Out(Response<Bytes>),
}

/// What the layer adds to a successful response of the inner service.
#[derive(Default)]
struct Post {
    /// `Cache-Control: private` unless the response has its own: the token came in the URL
    /// (RFC 6750 §2.3).
    private: bool,
    /// A fresh `DPoP-Nonce` (RFC 9449 §8.2): the proof's nonce is aging.
    dpop_nonce: Option<HeaderValue>,
}

impl Post {
    fn apply<B>(self, response: &mut Response<B>) {
        if self.private {
            mark_private(response);
        }
        if let Some(nonce) = self.dpop_nonce {
            response.headers_mut().insert(DPOP_NONCE, nonce);
        }
    }
}

/// Lets the request in (with its [`VerifiedToken`](crate::VerifiedToken) and the layer's context
/// in the extensions) or builds the rejection, with its audit event either way.
/// `(optional, hide)`: the layer's options.
fn admit<B>(
    auth: &Authenticator,
    rejection: &Arc<dyn Rejection>,
    (optional, hide): (bool, bool),
    request: &mut Request<B>,
    outcome: Result<Option<Admitted>, AuthError>,
) -> Admission {
    let (token, post, dpop) = match outcome {
        Ok(Some(admitted)) => {
            if hide {
                // `Request` lends one `&mut` at a time: the URI is taken out and put back.
                let mut uri = std::mem::take(request.uri_mut());
                auth.remove_credentials(admitted.carrier, request.headers_mut(), &mut uri);
                *request.uri_mut() = uri;
            }
            let post = Post {
                private: admitted.in_url,
                dpop_nonce: admitted
                    .dpop_nonce
                    .and_then(|n| HeaderValue::try_from(n).ok()),
            };
            let dpop = admitted.carrier.scheme == Scheme::Dpop;
            (Some(admitted.token), post, dpop)
        }
        Ok(None) if optional => (None, Post::default(), false),
        refused => {
            let error = refused.err().unwrap_or_else(AuthError::missing_token);
            let grpc = is_grpc(request.headers());
            return Admission::Out(reject(auth, rejection, &error, grpc));
        }
    };
    let telemetry = auth.telemetry();
    match &token {
        Some(token) => audit::accepted(token, telemetry),
        None => audit::anonymous(telemetry),
    }
    let extensions = request.extensions_mut();
    extensions.insert(LayerContext {
        auth: auth.clone(),
        dpop,
    });
    if let Some(token) = token {
        extensions.insert(token);
    }
    Admission::In(post)
}

/// The rejection's response, with a fresh DPoP nonce when nonces are on, answered the gRPC way
/// for a gRPC request.
fn reject(
    auth: &Authenticator,
    rejection: &Arc<dyn Rejection>,
    error: &AuthError,
    grpc: bool,
) -> Response<Bytes> {
    audit::rejected(error, None, Some(auth.telemetry()));
    let mut response = rejection.respond(error);
    response.extensions_mut().insert(error.clone());
    // With nonces on, every 401 carries a fresh one: the client's retry can use it at once.
    if response.status() == http::StatusCode::UNAUTHORIZED
        && let Some(nonce) = auth.fresh_dpop_nonce()
        && let Ok(nonce) = HeaderValue::try_from(nonce)
    {
        response.headers_mut().insert(DPOP_NONCE, nonce);
    }
    if grpc {
        return grpc_answer(error, response);
    }
    response
}

/// `Cache-Control: private` on a successful response that has no cache policy of its own: the
/// token came in the URL (RFC 6750 §2.3).
fn mark_private<B>(response: &mut Response<B>) {
    if response.status().is_success() {
        let headers = response.headers_mut();
        if !headers.contains_key(http::header::CACHE_CONTROL) {
            headers.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("private"),
            );
        }
    }
}

/// Calls the service that was polled ready and leaves a clone in its place: only the polled
/// instance is known to be ready (see tower's "be careful when cloning inner services").
pub(crate) fn call_ready<S: Service<R> + Clone, R>(inner: &mut S, request: R) -> S::Future {
    let clone = inner.clone();
    std::mem::replace(inner, clone).call(request)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// The response future of [`BearerAuth`] and [`RequireScopeService`](crate::RequireScopeService):
    /// the inner service's future, or a rejection that is ready at once. Boxed only on the one
    /// path that awaits I/O: refetching a remote key set for an unknown `kid`.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] future: F, post: Option<Post> },
        Reject { response: Option<Response<B>> },
        Boxed { future: Option<BoxFuture<Result<Response<B>, E>>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future, post: None },
        }
    }

    /// The inner future, whose successful response gets what `post` adds.
    fn with(future: F, post: Post) -> Self {
        let post = (post.private || post.dpop_nonce.is_some()).then_some(post);
        Self {
            kind: Kind::Inner { future, post },
        }
    }

    pub(crate) fn reject(response: Response<Bytes>) -> Self
    where
        B: From<Bytes>,
    {
        Self {
            kind: Kind::Reject {
                response: Some(response.map(B::from)),
            },
        }
    }

    fn boxed(future: BoxFuture<Result<Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Boxed {
                future: Some(future),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, post } => {
                let mut result = std::task::ready!(future.poll(cx));
                if let Ok(response) = &mut result
                    && let Some(post) = post.take()
                {
                    post.apply(response);
                }
                Poll::Ready(result)
            }
            KindProj::Reject { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: a contract violation by the caller, answered
                // with `Pending` rather than a panic.
                None => Poll::Pending,
            },
            KindProj::Boxed { future } => match future {
                Some(inner) => {
                    let output = std::task::ready!(inner.as_mut().poll(cx));
                    *future = None;
                    Poll::Ready(output)
                }
                // Polled again after completion: as above.
                None => Poll::Pending,
            },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
