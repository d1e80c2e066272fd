//! [`RevocationCheck`]: a hook that refuses tokens whose signature and claims are fine but which
//! their issuer has revoked.

use crate::token::VerifiedToken;

/// Decides whether a verified token has been revoked. Asked once per request, after every other
/// check passed; a revoked token is refused with 401 `invalid_token` ("token has been revoked",
/// [`AuthErrorKind::Revoked`](crate::AuthErrorKind::Revoked)).
///
/// It runs on the request path and cannot wait: answer from memory (a denylist of `jti`s kept
/// up to date in the background), never from a database or network call. The authorization
/// server (feature `server`) installs one on the authenticators it hands out.
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::{Arc, RwLock};
/// use tower_oauth2::{Algorithm, Authenticator, Key, VerifiedToken};
///
/// # fn main() -> Result<(), tower_oauth2::ConfigError> {
/// let denylist: Arc<RwLock<HashSet<String>>> = Arc::default();
/// let check = {
///     let denylist = Arc::clone(&denylist);
///     move |token: &VerifiedToken| {
///         token.jwt_id().is_some_and(|jti| {
///             denylist.read().map_or(true, |set| set.contains(jti))
///         })
///     }
/// };
/// let auth = Authenticator::builder()
///     .issuer("https://issuer.test")
///     .audience("api")
///     .key(Key::hmac([7u8; 32], Algorithm::HS256)?)
///     .revocation_check(check)
///     .build()?;
/// # let _ = auth; Ok(()) }
/// ```
pub trait RevocationCheck: Send + Sync + 'static {
    /// Whether `token` has been revoked.
    fn is_revoked(&self, token: &VerifiedToken) -> bool;
}

impl<F> RevocationCheck for F
where
    F: Fn(&VerifiedToken) -> bool + Send + Sync + 'static,
{
    fn is_revoked(&self, token: &VerifiedToken) -> bool {
        self(token)
    }
}
