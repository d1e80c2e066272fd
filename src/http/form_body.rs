//! The layer a [`FormBodyToken`] source needs: it reads `application/x-www-form-urlencoded`
//! bodies (within a size bound) for their `access_token` parameter (RFC 6750 §2.2) and hands
//! each body on intact.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::rejection::DEFAULT_REALM;
use crate::error::AuthError;
use crate::http::layer::call_ready;
use crate::token_source::{BodyToken, FormBodyToken};

impl FormBodyToken {
    /// The layer to put in front of (outside) the authentication layer.
    pub fn layer(&self) -> FormBodyTokenLayer {
        FormBodyTokenLayer {
            max_bytes: self.max_bytes,
        }
    }
}

/// Reads form bodies for [`FormBodyToken`]; from [`FormBodyToken::layer`].
#[derive(Debug, Clone)]
pub struct FormBodyTokenLayer {
    max_bytes: usize,
}

impl<S> Layer<S> for FormBodyTokenLayer {
    type Service = FormBodyTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FormBodyTokenService {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

/// The service of [`FormBodyTokenLayer`].
#[derive(Debug, Clone)]
pub struct FormBodyTokenService<S> {
    inner: S,
    max_bytes: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for FormBodyTokenService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let max = self.max_bytes;
        if !readable(&request, max) {
            request.extensions_mut().insert(BodyToken::None);
            return Box::pin(call_ready(&mut self.inner, request));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match axum::body::to_bytes(body, max).await {
                Ok(bytes) => {
                    parts.extensions.insert(BodyToken::of_form(&bytes));
                    inner
                        .call(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                // Longer than it said, or cut short: nothing can be handed on.
                Err(_) => Ok(AuthError::invalid_request(
                    "the form body does not match its Content-Length",
                )
                .to_response(DEFAULT_REALM)
                .map(Body::from)),
            }
        })
    }
}

/// Whether to read the body: a method with a body, a form, a declared length within `max`.
fn readable(request: &Request<Body>, max: usize) -> bool {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    let headers = request.headers();
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    form && length.is_some_and(|n| n <= max)
}
