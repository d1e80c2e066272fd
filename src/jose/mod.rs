//! JOSE parsing, with no key and no policy in sight: the signature [`Algorithm`]s, the JWS
//! compact form and strict base64url ([`compact`]), the protected header ([`header`]), strict
//! JSON ([`json`]) and the registered claims with their RFC 7519 types ([`claims`]).
//!
//! Everything here is a pure function of the token's bytes; the key that verifies a token and
//! the policy its claims must meet are the business of `keys` and `validate`, above this level.

mod alg;
pub(crate) mod claims;
pub(crate) mod compact;
pub(crate) mod header;
pub(crate) mod json;

pub use alg::{Algorithm, UnknownAlgorithm};
