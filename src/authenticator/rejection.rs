//! [`Rejection`]: how the application wants a rejected request answered, part of the
//! authenticator's configuration. The default answer is rendered by the HTTP layer.

use bytes::Bytes;
use http::Response;

use crate::error::AuthError;

/// The realm named in `WWW-Authenticate` challenges unless configured otherwise.
pub(crate) const DEFAULT_REALM: &str = "api";

/// Turns an [`AuthError`] into the response sent to the client. Install one with
/// [`AuthenticatorBuilder::rejection`](crate::AuthenticatorBuilder::rejection) to replace the
/// default JSON body; any `Fn(&AuthError) -> Response<Bytes>` closure is one.
///
/// The layer adds a copy of the error to the response's extensions after calling it.
pub trait Rejection: Send + Sync + 'static {
    /// Builds the response for `error`.
    fn respond(&self, error: &AuthError) -> Response<Bytes>;
}

impl<F> Rejection for F
where
    F: Fn(&AuthError) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, error: &AuthError) -> Response<Bytes> {
        self(error)
    }
}
