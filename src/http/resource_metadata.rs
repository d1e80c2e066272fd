//! Serving the protected-resource metadata (RFC 9728) over axum.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};

use crate::authenticator::Authenticator;

impl Authenticator {
    /// A router that serves the protected-resource metadata (RFC 9728 §3) of the configured
    /// [`ProtectedResource`](crate::ProtectedResource) at its well-known path
    /// (`/.well-known/oauth-protected-resource` followed by the resource's path), as JSON that
    /// clients may cache for an hour and read from any origin (browser-based clients fetch it
    /// cross-origin). Merge it into the app outside the authentication layer: the document is
    /// public. Without a configured resource the router is empty (and a warning is logged).
    ///
    /// ```
    /// # #[cfg(feature = "axum")] {
    /// use axum::{Router, routing::post};
    /// use tower_oauth2::{Algorithm, Authenticator, Key, ProtectedResource};
    ///
    /// # fn main() -> Result<(), tower_oauth2::ConfigError> {
    /// let auth = Authenticator::builder()
    ///     .issuer("https://as.example.com")
    ///     .key(Key::hmac([42u8; 32], Algorithm::HS256)?)
    ///     .protected_resource(ProtectedResource::new("https://api.example.com/mcp"))
    ///     .build()?;
    /// let app: Router = Router::new()
    ///     .route("/mcp", post(|| async { "tools" }))
    ///     .layer(auth.layer())
    ///     .merge(auth.resource_metadata_router());
    /// # let _ = app; Ok(()) }
    /// # }
    /// ```
    pub fn resource_metadata_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let Some((path, document)) = self.resource_metadata() else {
            tracing::warn!("resource_metadata_router without a protected resource serves nothing");
            return Router::new();
        };
        let document = bytes::Bytes::from(document.to_owned());
        Router::new().route(
            path,
            get(move || {
                let document = document.clone();
                async move { metadata_response(document) }
            }),
        )
    }
}

fn metadata_response(document: bytes::Bytes) -> Response {
    let mut response = document.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
