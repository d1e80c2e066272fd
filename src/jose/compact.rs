//! JWS compact serialization (RFC 7515 §7.1): splitting and strict base64url.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::AuthError;

/// The three parts of a compact JWS, still encoded.
pub(crate) struct Compact<'t> {
    /// `header.payload`, the signing input.
    pub(crate) signing_input: &'t str,
    pub(crate) header: &'t str,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
}

impl<'t> Compact<'t> {
    pub(crate) fn split(token: &'t str) -> Result<Self, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::malformed(
                "a JWS has exactly three dot-separated parts",
            ));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(AuthError::malformed("empty header or payload"));
        }
        let signing_input = &token[..header.len() + 1 + payload.len()];
        Ok(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }
}

/// Decodes unpadded, canonical base64url (RFC 7515 §2): padding, other alphabets and non-zero
/// trailing bits are all refused.
pub(crate) fn b64url(part: &str, what: &'static str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| not_base64url(what))
}

/// A base64url part decoded into a stack buffer of `N` bytes when it fits, else onto the heap.
pub(crate) struct Decoded<const N: usize> {
    inline: [u8; N],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl<const N: usize> Decoded<N> {
    pub(crate) fn new(part: &str, what: &'static str) -> Result<Self, AuthError> {
        let mut out = Self {
            inline: [0; N],
            len: 0,
            heap: None,
        };
        if base64::decoded_len_estimate(part.len()) <= N {
            out.len = URL_SAFE_NO_PAD
                .decode_slice(part, &mut out.inline)
                .map_err(|_| not_base64url(what))?;
        } else {
            out.heap = Some(b64url(part, what)?);
        }
        Ok(out)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => &self.inline[..self.len],
        }
    }
}

fn not_base64url(what: &str) -> AuthError {
    AuthError::malformed(format!("{what} is not canonical unpadded base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_three_parts() {
        assert!(Compact::split("a.b.c").is_ok());
        assert!(
            Compact::split("a.b.").is_ok(),
            "an empty signature is checked later"
        );
        for bad in ["a.b", "a.b.c.d", ".b.c", "a..c", ""] {
            assert!(Compact::split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64url_is_strict() {
        assert!(b64url("Zm9v", "x").is_ok());
        assert!(b64url("Zm9=", "x").is_err());
        assert!(b64url("Zm8=", "x").is_err(), "padding");
        assert!(b64url("Zm9+", "x").is_err(), "standard alphabet");
        assert!(b64url("Zm9w", "x").is_ok());
        assert!(b64url("Zm9x", "x").is_ok());
        assert!(b64url("Zh", "x").is_err(), "non-zero trailing bits");
    }
}
