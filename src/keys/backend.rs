//! The crypto backend, chosen at compile time by exactly one of the features `aws-lc-rs`
//! (default) and `rust-crypto`.
//!
//! The provider is named explicitly rather than through jsonwebtoken's process-wide default, so
//! no other crate in the build can make verification panic at run time by enabling a second
//! jsonwebtoken backend.

use jsonwebtoken::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-oauth2: choose exactly one crypto backend: enable the feature `aws-lc-rs` (the \
     default) or `rust-crypto`"
);

#[cfg(all(
    feature = "aws-lc-rs",
    feature = "rust-crypto",
    not(feature = "__all-backends")
))]
compile_error!(
    "tower-oauth2: choose exactly one crypto backend: the features `aws-lc-rs` and `rust-crypto` \
     are both enabled; with `default-features = false`, keep only `rust-crypto`"
);

/// The provider the server signs with. Verification on this backend uses keys prepared with
/// aws-lc-rs directly (`keys::verifier`), so without `server` nothing reads it.
#[cfg(feature = "aws-lc-rs")]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;

/// The provider every verification in this crate goes through.
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
pub(crate) static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

/// Stands in when no backend is enabled, so the `compile_error!` above is the only error shown.
#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
pub(crate) static PROVIDER: &CryptoProvider = unreachable_provider();

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
const fn unreachable_provider() -> &'static CryptoProvider {
    const P: CryptoProvider = CryptoProvider {
        signer_factory: |_, _| Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        verifier_factory: |_, _| Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
        key_utils: jsonwebtoken::crypto::KeyUtils::new_unimplemented(),
    };
    &P
}
