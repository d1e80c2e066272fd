//! Server-provided DPoP nonces (RFC 9449 §9) without server state: a nonce is the number of its
//! time window and an HMAC-SHA256 tag over it. A nonce of the current or the previous window is
//! accepted, so a nonce lives between one and two rotation periods; instances that share the
//! secret accept each other's nonces.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Domain separation: this key signs nothing else, but a secret reused elsewhere should not
/// yield tags that mean something there.
const LABEL: &[u8] = b"tower-oauth2 DPoP nonce v1";
/// Bytes of the tag kept in a nonce: 128 bits.
const TAG: usize = 16;

#[derive(Clone)]
pub(crate) struct Nonces {
    mac: Hmac<Sha256>,
    /// Seconds per window.
    rotation: u64,
}

/// How a nonce compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// From the current window.
    Current,
    /// From the previous window: still accepted, and a fresh one should be sent.
    Previous,
}

impl Nonces {
    pub(crate) fn new(secret: &[u8], rotation: u64) -> Option<Self> {
        let mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
        Some(Self {
            mac,
            rotation: rotation.max(1),
        })
    }

    fn mac(&self, window: u64) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(LABEL);
        mac.update(&window.to_be_bytes());
        mac
    }

    /// The nonce of the window `now` falls in.
    pub(crate) fn issue(&self, now: u64) -> String {
        let window = now / self.rotation;
        let mut raw = [0u8; 8 + TAG];
        raw[..8].copy_from_slice(&window.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(window).finalize().into_bytes()[..TAG]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce a client sent back: `None` when it is forged, malformed or too old.
    pub(crate) fn check(&self, nonce: &str, now: u64) -> Option<NonceCheck> {
        let mut raw = [0u8; 8 + TAG];
        if nonce.len() != 32 || URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw).ok()? != raw.len() {
            return None;
        }
        let mut window = [0u8; 8];
        window.copy_from_slice(&raw[..8]);
        let window = u64::from_be_bytes(window);
        let current = now / self.rotation;
        let age = if window == current {
            NonceCheck::Current
        } else if window.checked_add(1) == Some(current) {
            NonceCheck::Previous
        } else {
            return None;
        };
        let mac = self.mac(window);
        // Constant time (the `hmac` crate compares with `subtle`).
        mac.verify_truncated_left(&raw[8..]).ok()?;
        Some(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_live_one_to_two_windows_and_cannot_be_forged() {
        let (nonces, other) = (Nonces::new(&[7; 32], 300), Nonces::new(&[8; 32], 300));
        assert!(
            nonces.is_some() && other.is_some(),
            "any key length is accepted"
        );
        let (Some(nonces), Some(other)) = (nonces, other) else {
            return;
        };
        let now = 1_700_000_000;
        let nonce = nonces.issue(now);
        assert_eq!(nonce.len(), 32);
        assert_eq!(nonces.check(&nonce, now), Some(NonceCheck::Current));
        assert_eq!(nonces.check(&nonce, now + 300), Some(NonceCheck::Previous));
        assert_eq!(nonces.check(&nonce, now + 600), None);
        assert_eq!(nonces.check(&nonce, now - 300), None, "from the future");
        assert_eq!(other.check(&nonce, now), None, "another secret");
        let mut forged = nonce.clone().into_bytes();
        forged[31] = if forged[31] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap_or_default();
        assert_eq!(nonces.check(&forged, now), None);
        assert_eq!(nonces.check("short", now), None);
        assert_eq!(nonces.check(&"!".repeat(32), now), None);
    }
}
