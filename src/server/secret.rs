//! Client secrets: generated from the OS random source, shown once, stored only as a digest,
//! compared in constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly generated client secret: 256 bits from the operating system's random source,
/// base64url-encoded. Hand it to the client once ([`ClientSecret::expose`]) and keep only its
/// [`SecretHash`]. `Debug` and `Display` never print it.
#[derive(Clone)]
pub struct ClientSecret(String);

/// The digest a server stores instead of a client secret.
///
/// SHA-256, not a slow password hash: the secrets are 256 uniformly random bits, so a stolen
/// digest cannot be brute-forced whatever the hash speed; a slow KDF protects low-entropy
/// passwords, and would only make every token request expensive. Comparison is constant-time.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

/// The operating system's random source failed, or a stored digest does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError(String);

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SecretError {}

impl ClientSecret {
    /// Generates a secret and its digest.
    pub fn generate() -> Result<(ClientSecret, SecretHash), SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| SecretError(format!("the OS random source failed: {e}")))?;
        let secret = ClientSecret(URL_SAFE_NO_PAD.encode(bytes));
        let hash = SecretHash::of(secret.expose());
        Ok((secret, hash))
    }

    /// A secret the application chose (e.g. a demo client's from the environment): at least
    /// 32 characters, so that it is not guessable; generated secrets are always preferable.
    pub fn from_value(secret: impl Into<String>) -> Result<Self, SecretError> {
        let secret = secret.into();
        if secret.chars().count() < 32 {
            return Err(SecretError(
                "a client secret needs at least 32 characters".into(),
            ));
        }
        Ok(ClientSecret(secret))
    }

    /// The secret itself, to show the client once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

impl SecretHash {
    const PREFIX: &'static str = "sha256:";

    /// The digest of `secret` (e.g. one an application supplies for a demo client).
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is the secret, in time independent of where they differ.
    pub fn verify(&self, presented: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&candidate).into()
    }

    /// The storage form: `sha256:` and the base64url digest.
    pub fn to_stored(&self) -> String {
        format!("{}{}", Self::PREFIX, URL_SAFE_NO_PAD.encode(self.0))
    }

    /// Reads the storage form back.
    pub fn from_stored(stored: &str) -> Result<Self, SecretError> {
        let encoded = stored
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| SecretError("a stored secret digest starts with `sha256:`".into()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretError("a stored secret digest is not base64url".into()))?;
        let digest: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SecretError("a stored secret digest is not 32 bytes".into()))?;
        Ok(Self(digest))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_distinct_and_verify_only_themselves() -> Result<(), SecretError> {
        let (a, hash_a) = ClientSecret::generate()?;
        let (b, _) = ClientSecret::generate()?;
        assert_eq!(a.expose().len(), 43, "256 bits in unpadded base64url");
        assert_ne!(a.expose(), b.expose());
        assert!(hash_a.verify(a.expose()));
        assert!(!hash_a.verify(b.expose()));
        assert!(!hash_a.verify(""));
        assert!(!hash_a.verify(&a.expose()[..42]));
        Ok(())
    }

    #[test]
    fn nothing_secret_in_debug_and_the_stored_form_round_trips() -> Result<(), SecretError> {
        let (secret, hash) = ClientSecret::generate()?;
        for text in [format!("{secret:?}"), format!("{hash:?}")] {
            assert!(!text.contains(secret.expose()) && !text.contains(&hash.to_stored()[7..]));
        }
        let stored = hash.to_stored();
        assert!(stored.starts_with("sha256:") && !stored.contains(secret.expose()));
        assert_eq!(SecretHash::from_stored(&stored)?, hash);
        for bad in ["", "md5:abc", "sha256:!!", "sha256:AAAA"] {
            assert!(SecretHash::from_stored(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
