//! Sealing signing keys at rest: AES-256-GCM under a key derived (HKDF-SHA256) from the
//! application's key-encryption secret, with the key id as associated data so a sealed key
//! cannot be swapped into another record.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};

use crate::error::ConfigError;

/// Seals and opens stored private keys. `Debug` prints nothing of the key.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer for `secret`, which must have at least 32 bytes.
    pub(crate) fn new(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < 32 {
            return Err(ConfigError::new(
                "key_encryption_secret needs at least 32 bytes",
            ));
        }
        Self::derived(b"tower-oauth2 signing-key sealing v1", secret)
    }

    /// A sealer whose key is derived from `secret` for the purpose `label` (an HKDF salt), so
    /// that one secret never yields the same key for two purposes. `secret` needs at least 32
    /// bytes of entropy; the caller vouches for that.
    pub(crate) fn derived(label: &[u8], secret: &[u8]) -> Result<Self, ConfigError> {
        let failed = || ConfigError::new("deriving the key-encryption key failed");
        let prk = Salt::new(HKDF_SHA256, label).extract(secret);
        let okm = prk
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .map_err(|_| failed())?;
        let key = UnboundKey::from(okm);
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `nonce || ciphertext || tag`.
    pub(crate) fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| "the OS random source failed".to_owned())?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        Ok([&nonce[..], &sealed].concat())
    }

    /// Opens what [`seal`](Self::seal) produced for the same `kid`.
    pub(crate) fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let wrong = || {
            format!(
                "signing key {kid}: cannot be opened (wrong key_encryption_secret, or tampered)"
            )
        };
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| wrong())?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::Sealer;

    #[test]
    fn sealed_keys_open_only_with_the_same_secret_and_kid() {
        let sealer = Sealer::new(&[7u8; 32]).expect("sealer");
        let sealed = sealer.seal("k1", b"private der").expect("seal");
        assert!(!sealed.windows(11).any(|w| w == b"private der"));
        assert_eq!(sealer.open("k1", &sealed).expect("open"), b"private der");
        assert!(sealer.open("k2", &sealed).is_err(), "bound to its kid");
        let other = Sealer::new(&[8u8; 32]).expect("sealer");
        assert!(other.open("k1", &sealed).is_err(), "bound to its secret");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(sealer.open("k1", &tampered).is_err());
        assert!(sealer.open("k1", &sealed[..5]).is_err());
        assert!(Sealer::new(&[1u8; 31]).is_err());
    }
}
