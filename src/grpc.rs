//! Helpers for tonic services behind the layer (feature `tonic`): the [`VerifiedToken`] of a
//! call, and a scope check inside one method, both answering a refusal as a `tonic::Status` the
//! way the layer and [`RequireScope`] answer it (`UNAUTHENTICATED` or `PERMISSION_DENIED`, the
//! same message, the RFC 6750 `www-authenticate` in its metadata).
//!
//! The layer and `RequireScope` protect a whole service router; [`require_scope`] is for one
//! method that needs more than the rest:
//!
//! ```
//! use tower_oauth2::RequireScope;
//! use tower_oauth2::grpc::require_scope;
//!
//! fn watch(request: &tonic::Request<()>) -> Result<String, tonic::Status> {
//!     // The service's router has `RequireScope::all(["events:read"])`; watching needs more.
//!     let token = require_scope(request, &RequireScope::all(["events:watch"]))?;
//!     Ok(token.subject().unwrap_or_default().to_owned())
//! }
//! // Without the layer in front, a call is refused with INTERNAL.
//! let refused = watch(&tonic::Request::new(())).err().map(|s| s.code());
//! assert_eq!(refused, Some(tonic::Code::Internal));
//! ```

use http::header::CONTENT_TYPE;

use crate::error::AuthError;
use crate::http::layer::LayerContext;
use crate::http::require_scope::RequireScope;
use crate::token::VerifiedToken;

/// The token the layer verified for this call. Without one (the layer in optional mode let an
/// anonymous call through) the call is refused with `UNAUTHENTICATED`; without the layer,
/// with `INTERNAL`.
pub fn verified_token<T>(request: &tonic::Request<T>) -> Result<&VerifiedToken, tonic::Status> {
    let extensions = request.extensions();
    match (
        extensions.get::<LayerContext>(),
        extensions.get::<VerifiedToken>(),
    ) {
        (Some(_), Some(token)) => Ok(token),
        (Some(_), None) => Err(refuse(request, &AuthError::missing_token())),
        (None, _) => Err(refuse(
            request,
            &AuthError::layer_missing("grpc::verified_token"),
        )),
    }
}

/// The call's token, if it grants what `scope` requires; otherwise `PERMISSION_DENIED` with
/// the required scopes in the challenge (and an audit event), as [`RequireScope`] answers.
pub fn require_scope<'r, T>(
    request: &'r tonic::Request<T>,
    scope: &RequireScope,
) -> Result<&'r VerifiedToken, tonic::Status> {
    let token = verified_token(request)?;
    match scope.check(token) {
        Ok(()) => Ok(token),
        Err(error) => {
            let context = request.extensions().get::<LayerContext>();
            let telemetry = context.map(|c| c.auth.telemetry());
            crate::http::audit::rejected(&error, Some(token), telemetry);
            Err(refuse(request, &error))
        }
    }
}

/// `error` as the layer's gRPC answer, turned into a `Status`.
fn refuse<T>(request: &tonic::Request<T>, error: &AuthError) -> tonic::Status {
    let context = request.extensions().get::<LayerContext>();
    let response = LayerContext::respond(context, error, true);
    let mut headers = response.headers().clone();
    // What made it a gRPC answer, not metadata of the status.
    headers.remove(CONTENT_TYPE);
    tonic::Status::from_header_map(&headers)
        .unwrap_or_else(|| tonic::Status::internal(error.description().to_owned()))
}
