//! Options that weaken validation, fenced off so that using one is a visible decision.
//!
//! ```
//! use tower_oauth2::dangerous::DangerousBuilderExt;
//! use tower_oauth2::{Algorithm, Authenticator, Key};
//!
//! # fn main() -> Result<(), tower_oauth2::ConfigError> {
//! // A test fixture that mints tokens without an audience.
//! let auth = Authenticator::builder()
//!     .issuer("https://issuer.test")
//!     .accept_any_audience()
//!     .key(Key::hmac([1u8; 32], Algorithm::HS256)?)
//!     .build()?;
//! # let _ = auth; Ok(()) }
//! ```

use crate::authenticator::AuthenticatorBuilder;

/// Builder options that turn off a check. Each one widens what an attacker with any token from
/// the same keys can do; prefer configuring the real value.
pub trait DangerousBuilderExt: Sized {
    /// Accepts tokens from any issuer (the `iss` claim is not checked). Only safe when the keys
    /// are used by a single issuer that is the only one you trust.
    #[must_use]
    fn accept_any_issuer(self) -> Self;

    /// Accepts tokens for any audience (the `aud` claim is not checked): a token minted for
    /// another API of the same issuer will be accepted here.
    #[must_use]
    fn accept_any_audience(self) -> Self;

    /// Accepts tokens without `exp`, which never expire. A token with `exp` is still checked.
    #[must_use]
    fn allow_missing_exp(self) -> Self;

    /// Accepts sender-constrained tokens (with a `cnf` claim, RFC 7800: bound to a DPoP key or
    /// a TLS client certificate) presented as plain bearer tokens, from every trusted issuer.
    /// Whoever copies such a token can then use it; only for a deployment that checks the
    /// binding elsewhere (e.g. mutual TLS at a proxy that also checks the certificate
    /// thumbprint).
    #[must_use]
    fn accept_unverified_confirmation(self) -> Self;
}

impl DangerousBuilderExt for AuthenticatorBuilder {
    fn accept_any_issuer(mut self) -> Self {
        self.any_issuer = true;
        self
    }

    fn accept_any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    fn allow_missing_exp(mut self) -> Self {
        self.allow_missing_exp = true;
        self
    }

    fn accept_unverified_confirmation(mut self) -> Self {
        self.accept_unverified_cnf = true;
        self
    }
}

/// The weakenings that are set per [`Issuer`](crate::Issuer), for an authenticator that trusts
/// several issuers of which only some need them.
pub trait DangerousIssuerExt: Sized {
    /// Accepts this issuer's tokens without `exp`. A token with `exp` is still checked.
    #[must_use]
    fn allow_missing_exp(self) -> Self;

    /// Accepts this issuer's sender-constrained tokens (`cnf`) as plain bearer tokens; see
    /// [`DangerousBuilderExt::accept_unverified_confirmation`].
    #[must_use]
    fn accept_unverified_confirmation(self) -> Self;
}

impl DangerousIssuerExt for crate::authenticator::Issuer {
    fn allow_missing_exp(mut self) -> Self {
        self.allow_missing_exp = true;
        self
    }

    fn accept_unverified_confirmation(mut self) -> Self {
        self.accept_unverified_cnf = true;
        self
    }
}
