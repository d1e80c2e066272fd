//! JWS compact serialization (RFC 7515 §7.1): splitting, strict base64url, and the protected
//! header.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::json::{self, MAX_DEPTH, Seen, Skip, Str, string};
use crate::error::{AuthError, AuthErrorKind};
use crate::keys::algorithm_from_name;

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

/// The members of the protected header this crate acts on. `jku`, `x5u`, `jwk` and `x5c` are
/// deliberately not read: keys come only from configuration.
#[derive(Debug)]
pub(crate) struct Header<'h> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Cow<'h, str>>,
    pub(crate) typ: Option<Cow<'h, str>>,
}

impl Header<'static> {
    /// Decodes and parses a header, owning what it keeps.
    pub(crate) fn parse(encoded: &str) -> Result<Self, AuthError> {
        let json = b64url(encoded, "header")?;
        let header = Header::from_json(&json)?;
        Ok(Header {
            alg: header.alg,
            kid: header.kid.map(|k| Cow::Owned(k.into_owned())),
            typ: header.typ.map(|t| Cow::Owned(t.into_owned())),
        })
    }
}

impl<'h> Header<'h> {
    /// Parses a decoded header, borrowing its strings from `json` where it can.
    pub(crate) fn from_json(json: &'h [u8]) -> Result<Self, AuthError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let raw = RawHeaderSeed
            .deserialize(&mut de)
            .and_then(|h| de.end().map(|()| h));
        let raw = raw.map_err(|e| AuthError::malformed(json::describe("header", json, &e)))?;

        if raw.crit {
            return Err(AuthError::new(
                AuthErrorKind::UnsupportedCritical,
                "the header has a `crit` parameter this validator does not understand",
            ));
        }
        if raw.b64 == Some(false) {
            return Err(AuthError::new(
                AuthErrorKind::UnsupportedCritical,
                "unencoded payloads (b64: false) are not supported",
            ));
        }
        let alg_name = raw
            .alg
            .ok_or_else(|| AuthError::malformed("header has no `alg`"))?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(AuthError::new(
                AuthErrorKind::UnsupportedAlgorithm,
                "unsigned tokens (alg none) are never accepted",
            ));
        }
        let alg = algorithm_from_name(&alg_name).ok_or_else(|| {
            AuthError::new(
                AuthErrorKind::UnsupportedAlgorithm,
                "unsupported signature algorithm",
            )
        })?;
        Ok(Self {
            alg,
            kid: raw.kid,
            typ: raw.typ,
        })
    }
}

#[derive(Default)]
struct RawHeader<'de> {
    alg: Option<Cow<'de, str>>,
    kid: Option<Cow<'de, str>>,
    typ: Option<Cow<'de, str>>,
    crit: bool,
    b64: Option<bool>,
}

struct RawHeaderSeed;

impl<'de> DeserializeSeed<'de> for RawHeaderSeed {
    type Value = RawHeader<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RawHeaderSeed {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut header = RawHeader::default();
        let mut seen = Seen::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            seen.insert(&name)?;
            match &*name {
                "alg" => header.alg = Some(string(&mut map, "alg")?),
                "kid" => header.kid = Some(string(&mut map, "kid")?),
                "typ" => header.typ = Some(string(&mut map, "typ")?),
                "crit" => {
                    map.next_value_seed(Skip { depth: MAX_DEPTH })?;
                    header.crit = true;
                }
                "b64" => {
                    header.b64 = Some(
                        map.next_value()
                            .map_err(|_| json::error("`b64` must be a boolean"))?,
                    );
                }
                _ => map.next_value_seed(Skip { depth: MAX_DEPTH })?,
            }
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn header_parses_alg_kid_typ() {
        let h = Header::parse(&enc(r#"{"alg":"ES256","kid":"k\u0031","typ":"at+jwt"}"#));
        let h = h.map_err(|e| e.to_string());
        assert!(
            matches!(h, Ok(Header { alg: Algorithm::ES256, ref kid, ref typ })
            if kid.as_deref() == Some("k1") && typ.as_deref() == Some("at+jwt"))
        );
    }

    #[test]
    fn header_refusals() {
        let cases = [
            (r#"{"alg":"none"}"#, AuthErrorKind::UnsupportedAlgorithm),
            (r#"{"alg":"nOnE"}"#, AuthErrorKind::UnsupportedAlgorithm),
            (r#"{"alg":"ES512"}"#, AuthErrorKind::UnsupportedAlgorithm),
            (r#"{"alg":"HS256","alg":"RS256"}"#, AuthErrorKind::Malformed),
            (r#"{"alg":5}"#, AuthErrorKind::Malformed),
            (r#"{"kid":"x"}"#, AuthErrorKind::Malformed),
            (r#"["alg"]"#, AuthErrorKind::Malformed),
            (r#"{"alg":"HS256"} x"#, AuthErrorKind::Malformed),
            (
                r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
                AuthErrorKind::UnsupportedCritical,
            ),
            (
                r#"{"alg":"HS256","b64":false}"#,
                AuthErrorKind::UnsupportedCritical,
            ),
        ];
        for (json, kind) in cases {
            let got = Header::parse(&enc(json)).err().map(|e| e.kind());
            assert_eq!(got, Some(kind), "{json}");
        }
    }

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
