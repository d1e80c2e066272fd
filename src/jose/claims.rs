//! One strict pass over the claims JSON: registered claims with their RFC 7519 types, scopes,
//! and the few other members the policy needs. Duplicate member names are refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::json::{self, MAX_DEPTH, Seen, Skip, Str, StrictValue, string};
use crate::error::AuthError;

/// Registered claim names: always parsed with their RFC 7519 types, never captured raw.
pub(crate) const REGISTERED: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "scp",
];

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is a token that never
/// expires dressed up as one that does.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// Claims as read from the payload. Strings borrow from the payload unless JSON escapes made
/// the parser build them, so reading the claims allocates little beyond the captured members.
#[derive(Default, Debug)]
pub(crate) struct RawClaims<'de> {
    pub(crate) iss: Option<Cow<'de, str>>,
    pub(crate) sub: Option<Cow<'de, str>>,
    pub(crate) aud: Audiences<'de>,
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: Option<u64>,
    pub(crate) jti: Option<Cow<'de, str>>,
    pub(crate) client_id: Option<Cow<'de, str>>,
    /// From `scope` and `scp`, in token order, possibly repeated.
    pub(crate) scopes: Vec<Cow<'de, str>>,
    /// The members named in the capture list, in capture-list order (`None` when absent).
    pub(crate) captured: Vec<Option<Value>>,
    /// Whether the token carries a confirmation (`cnf`, RFC 7800): it is bound to a key.
    pub(crate) confirmation: bool,
    /// The confirmation's JWK SHA-256 thumbprint (`cnf.jkt`, RFC 9449 §6.1): the DPoP key.
    pub(crate) jkt: Option<String>,
}

/// `aud`'s values: the first kept apart, so the usual single audience allocates nothing.
#[derive(Default, Debug)]
pub(crate) struct Audiences<'de> {
    first: Option<Cow<'de, str>>,
    rest: Vec<Cow<'de, str>>,
}

impl<'de> Audiences<'de> {
    fn push(&mut self, audience: Cow<'de, str>) {
        match self.first {
            None => self.first = Some(audience),
            Some(_) => self.rest.push(audience),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.first.iter().chain(&self.rest).map(|a| &**a)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// Parses `json` as a claims set. `capture` names further top-level members whose values the
/// caller needs (required claims, role claims); registered claim names are never captured.
pub(crate) fn parse<'de>(
    json: &'de [u8],
    capture: &[Box<str>],
) -> Result<RawClaims<'de>, AuthError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let claims = ClaimsSeed { capture }
        .deserialize(&mut de)
        .and_then(|c| de.end().map(|()| c));
    claims.map_err(|e| AuthError::malformed(json::describe("claims", json, &e)))
}

struct ClaimsSeed<'c> {
    capture: &'c [Box<str>],
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = RawClaims<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = RawClaims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut c = RawClaims {
            captured: if self.capture.is_empty() {
                Vec::new()
            } else {
                vec![None; self.capture.len()]
            },
            ..RawClaims::default()
        };
        let mut seen = Seen::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            seen.insert(&name)?;
            match &*name {
                "iss" => c.iss = Some(string(&mut map, "iss")?),
                "sub" => c.sub = Some(string(&mut map, "sub")?),
                "jti" => c.jti = Some(string(&mut map, "jti")?),
                "client_id" => c.client_id = Some(string(&mut map, "client_id")?),
                "aud" => c.aud = map.next_value_seed(Audience)?,
                "exp" => c.exp = Some(map.next_value_seed(NumericDate("exp"))?),
                "nbf" => c.nbf = Some(map.next_value_seed(NumericDate("nbf"))?),
                "iat" => c.iat = Some(map.next_value_seed(NumericDate("iat"))?),
                "scope" => map.next_value_seed(ScopeClaim {
                    out: &mut c.scopes,
                    scp: false,
                })?,
                "scp" => map.next_value_seed(ScopeClaim {
                    out: &mut c.scopes,
                    scp: true,
                })?,
                "cnf" => {
                    let value = map.next_value_seed(StrictValue { depth: MAX_DEPTH })?;
                    if !value.is_object() {
                        return Err(de::Error::custom("cnf must be a JSON object (RFC 7800)"));
                    }
                    c.confirmation = true;
                    match value.get("jkt") {
                        None => {}
                        Some(Value::String(jkt)) => c.jkt = Some(jkt.clone()),
                        Some(_) => return Err(de::Error::custom("cnf.jkt must be a string")),
                    }
                    if let Some(i) = self.capture.iter().position(|n| **n == *"cnf") {
                        c.captured[i] = Some(value);
                    }
                }
                _ => match self.capture.iter().position(|n| **n == *name) {
                    Some(i) => {
                        c.captured[i] =
                            Some(map.next_value_seed(StrictValue { depth: MAX_DEPTH })?);
                    }
                    None => map.next_value_seed(Skip { depth: MAX_DEPTH })?,
                },
            }
        }
        Ok(c)
    }
}

/// `scope` is a space-delimited string (RFC 8693 §4.2, RFC 9068 §2.2.3); `scp` is that or an
/// array of strings (Entra ID, Okta). Read without an intermediate `Value`.
struct ScopeClaim<'o, 'de> {
    out: &'o mut Vec<Cow<'de, str>>,
    scp: bool,
}

impl<'de> ScopeClaim<'_, 'de> {
    fn push(&mut self, s: Cow<'de, str>) {
        match s {
            Cow::Borrowed(s) => self
                .out
                .extend(s.split(' ').filter(|t| !t.is_empty()).map(Cow::Borrowed)),
            Cow::Owned(s) => self.out.extend(
                s.split(' ')
                    .filter(|t| !t.is_empty())
                    .map(|t| Cow::Owned(t.to_owned())),
            ),
        }
    }

    fn wrong_type<E: de::Error>(&self) -> E {
        json::error(if self.scp {
            "`scp` must be a string or an array of strings"
        } else {
            "`scope` must be a space-delimited string"
        })
    }
}

impl<'de> DeserializeSeed<'de> for ScopeClaim<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScopeClaim<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scope claim")
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.push(Cow::Borrowed(v));
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.push(Cow::Owned(v.to_owned()));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if !self.scp {
            return Err(self.wrong_type());
        }
        loop {
            match seq.next_element::<Str<'de>>() {
                Ok(Some(Str(s))) => self.push(s),
                Ok(None) => return Ok(()),
                Err(_) => return Err(self.wrong_type()),
            }
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.wrong_type())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.wrong_type())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.wrong_type())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.wrong_type())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.wrong_type())
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.wrong_type())
    }
}

/// A string or an array of strings (RFC 7519 §4.1.3).
struct Audience;

impl<'de> DeserializeSeed<'de> for Audience {
    type Value = Audiences<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Audience {
    type Value = Audiences<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`aud` as a string or an array of strings")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        let mut out = Audiences::default();
        out.push(Cow::Borrowed(v));
        Ok(out)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut out = Audiences::default();
        out.push(Cow::Owned(v.to_owned()));
        Ok(out)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Audiences::default();
        while let Some(Str(s)) = seq
            .next_element::<Str<'de>>()
            .map_err(|_| json::error("`aud` must be a string or an array of strings"))?
        {
            out.push(s);
        }
        Ok(out)
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number of seconds, possibly fractional.
/// Fractions are rounded toward the stricter reading (down for `exp`, up for `nbf`/`iat`).
struct NumericDate(&'static str);

impl<'de> DeserializeSeed<'de> for NumericDate {
    type Value = u64;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumericDate {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` as a NumericDate", self.0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v as f64 > MAX_NUMERIC_DATE {
            return Err(json::error(format!("`{}` is out of range", self.0)));
        }
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v)
            .map_err(|_| json::error(format!("`{}` is negative", self.0)))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if !(0.0..=MAX_NUMERIC_DATE).contains(&v) {
            return Err(json::error(format!("`{}` is out of range", self.0)));
        }
        let rounded = if self.0 == "exp" { v.floor() } else { v.ceil() };
        // In range 0..=MAX_NUMERIC_DATE, so the cast is exact.
        Ok(rounded as u64)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<u64, E> {
        Err(json::error(format!(
            "`{}` must be a number, not a string",
            self.0
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(json: &str) -> Result<RawClaims<'_>, String> {
        parse(json.as_bytes(), &[]).map_err(|e| e.description().to_owned())
    }

    #[test]
    fn reads_registered_claims_and_scopes() {
        let c = kind_of(
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":1.5,"iat":2,
                "jti":"j","client_id":"c","scope":"x  y","scp":["z"],"other":{"deep":[1]}}"#,
        );
        let c = c.unwrap_or_default();
        assert_eq!(c.iss.as_deref(), Some("i"));
        assert_eq!(c.aud.iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!((c.exp, c.nbf, c.iat), (Some(10), Some(2), Some(2)));
        assert_eq!(
            c.scopes.iter().map(|s| &**s).collect::<Vec<_>>(),
            vec!["x", "y", "z"]
        );
    }

    #[test]
    fn refuses_wrong_types_and_duplicates() {
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(33), "]".repeat(33));
        let ok_depth = format!(r#"{{"x":{}{}}}"#, "[".repeat(32), "]".repeat(32));
        assert!(kind_of(&ok_depth).is_ok());
        for (json, needle) in [
            (r#"{"exp":"123"}"#, "`exp` must be a number"),
            (r#"{"exp":-1}"#, "`exp` is negative"),
            (r#"{"exp":1e300}"#, "`exp` is out of range"),
            (r#"{"exp":18446744073709551615}"#, "`exp` is out of range"),
            (r#"{"aud":5}"#, "aud"),
            (r#"{"aud":["a",5]}"#, "aud"),
            (r#"{"scope":["a"]}"#, "`scope` must be"),
            (r#"{"scp":{"a":1}}"#, "`scp` must be"),
            (r#"{"iss":["a"]}"#, "`iss` must be a string"),
            (r#"{"sub":"a","sub":"b"}"#, "duplicate member `sub`"),
            (r#"{"x":1,"x":1}"#, "duplicate member `x`"),
            (r#"[1,2]"#, "claims are not a JSON object"),
            (r#""str""#, "claims are not a JSON object"),
            (r#"{"a":1}{"#, "claims: not valid JSON"),
            (r#"{"a":"x"#, "claims: truncated JSON"),
            (r#"{"exp":true}"#, "expected `exp` as a NumericDate"),
            (deep.as_str(), "nesting deeper than 32 levels"),
        ] {
            let got = kind_of(json).err().unwrap_or_default();
            assert!(got.contains(needle), "{json}: {got}");
            assert!(!got.contains("line 1"), "{got}");
        }
    }

    #[test]
    fn captures_named_members() {
        let capture: Vec<Box<str>> = vec!["realm_access".into(), "tenant".into()];
        let c = parse(br#"{"realm_access":{"roles":["r"]},"x":1}"#, &capture);
        let c = c.unwrap_or_default();
        assert_eq!(c.captured[0], Some(serde_json::json!({"roles":["r"]})));
        assert_eq!(c.captured[1], None);
    }
}
