//! The JWS protected header (RFC 7515 §4): the members this crate acts on, parsed strictly.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::Algorithm;
#[cfg(test)]
use super::compact::b64url;
use super::json::{self, MAX_DEPTH, Seen, Skip, Str, string};
use crate::error::{AuthError, AuthErrorKind};

/// The members of the protected header this crate acts on. `jku`, `x5u`, `jwk` and `x5c` are
/// deliberately not read: keys come only from configuration.
#[derive(Debug)]
pub(crate) struct Header<'h> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Cow<'h, str>>,
    pub(crate) typ: Option<Cow<'h, str>>,
}

#[cfg(test)]
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
        let alg = Algorithm::from_name(&alg_name).ok_or_else(|| {
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
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
}
