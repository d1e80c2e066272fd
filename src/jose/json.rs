//! Strict JSON reading shared by the header and claims passes: no duplicate member names at any
//! depth, bounded nesting, and error texts that never repeat the token's content.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// How deeply arrays and objects may nest inside a header or claims object. Real tokens stay
/// within a handful of levels; the limit keeps every later consumer of the claims (including
/// `serde_json::Value`, which stops at 128) away from pathological input.
pub(crate) const MAX_DEPTH: usize = 32;

/// Prefix of the error texts this module and its users raise on purpose; any other serde_json
/// error is described by category only, since its text may quote the input.
const OURS: char = '\u{1}';

/// A custom error raised by this crate's visitors, recognisable by [`describe`].
pub(crate) fn error<E: de::Error>(message: impl fmt::Display) -> E {
    E::custom(format_args!("{OURS}{message}"))
}

/// A human-readable reason for a failed parse of `what` ("header", "claims") that quotes
/// nothing from the input.
pub(crate) fn describe(what: &str, json: &[u8], e: &serde_json::Error) -> String {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let verb = if what == "header" { "is" } else { "are" };
        return format!("{what} {verb} not a JSON object");
    }
    let text = e.to_string();
    if let Some(ours) = text.strip_prefix(OURS) {
        let ours = ours.find(" at line ").map_or(ours, |i| &ours[..i]);
        return format!("{what}: {ours}");
    }
    // serde's "invalid type: <the input, perhaps quoted>, expected <our visitor's words>":
    // keep only our words.
    if e.classify() == serde_json::error::Category::Data
        && let Some(i) = text.rfind(", expected ")
    {
        let expected = &text[i + 2..];
        let expected = expected
            .find(" at line ")
            .map_or(expected, |j| &expected[..j]);
        return format!("{what}: {expected}");
    }
    let reason = match e.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            "a member has the wrong type"
        }
    };
    format!("{what}: {reason}")
}

/// Reads the next map value as a string, naming the member if it is something else.
pub(crate) fn string<'de, A: MapAccess<'de>>(
    map: &mut A,
    name: &str,
) -> Result<Cow<'de, str>, A::Error> {
    map.next_value::<Str<'de>>()
        .map(|s| s.0)
        .map_err(|_| error(format_args!("`{name}` must be a string")))
}

/// A string that borrows from the input when it has no escapes.
pub(crate) struct Str<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The member names of one JSON object seen so far. Duplicate names are refused (RFC 7515 §5.2
/// and RFC 7519 §7.2 allow it): two parsers that keep different duplicates would see different
/// claims, so the only safe answer is to accept neither. A short list is scanned; a long one
/// moves into a hash set, so an 8 KiB token of tiny members costs linear, not quadratic, time.
/// The short list lives on the stack, so the usual header or claims set allocates nothing here.
pub(crate) struct Seen<'de> {
    len: usize,
    names: [Cow<'de, str>; SEEN_SCAN],
    set: HashSet<Cow<'de, str>>,
}

impl Default for Seen<'_> {
    fn default() -> Self {
        Self {
            len: 0,
            names: std::array::from_fn(|_| Cow::Borrowed("")),
            set: HashSet::new(),
        }
    }
}

/// Names a [`Seen`] scans before it switches to a hash set.
const SEEN_SCAN: usize = 16;

impl<'de> Seen<'de> {
    #[allow(
        clippy::ptr_arg,
        reason = "the name is kept, still borrowed from the input"
    )]
    pub(crate) fn insert<E: de::Error>(&mut self, name: &Cow<'de, str>) -> Result<(), E> {
        let fresh = if self.len < SEEN_SCAN {
            let fresh = !self.names[..self.len].contains(name);
            self.names[self.len] = name.clone();
            self.len += 1;
            fresh
        } else {
            if self.set.is_empty() {
                self.set.extend(self.names.iter().cloned());
            }
            self.set.insert(name.clone())
        };
        if fresh {
            Ok(())
        } else {
            Err(error(format_args!("duplicate member {}", Printable(name))))
        }
    }
}

/// A member name as it may appear in an error: quoted when it is short and plain, else left out.
struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = self.0.len() <= 40
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(&b));
        if plain {
            write!(f, "`{}`", self.0)
        } else {
            f.write_str("(name not shown)")
        }
    }
}

/// Skips one JSON value, refusing duplicate member names and nesting deeper than `depth`.
pub(crate) struct Skip {
    pub(crate) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = nested::<A::Error>(self.depth)?;
        while seq.next_element_seed(Skip { depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = nested::<A::Error>(self.depth)?;
        let mut seen = Seen::default();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            seen.insert(&name)?;
            map.next_value_seed(Skip { depth })?;
        }
        Ok(())
    }
}

/// Reads one JSON value into a `serde_json::Value`, with the same rules as [`Skip`].
pub(crate) struct StrictValue {
    pub(crate) depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = nested::<A::Error>(self.depth)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue { depth })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = nested::<A::Error>(self.depth)?;
        let mut object = Map::new();
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            if object.contains_key(&*name) {
                return Err(error(format_args!("duplicate member {}", Printable(&name))));
            }
            let value = map.next_value_seed(StrictValue { depth })?;
            object.insert(name.into_owned(), value);
        }
        Ok(Value::Object(object))
    }
}

fn nested<E: de::Error>(depth: usize) -> Result<usize, E> {
    depth
        .checked_sub(1)
        .ok_or_else(|| error(format_args!("nesting deeper than {MAX_DEPTH} levels")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(json: &str) -> Result<Value, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        StrictValue { depth: MAX_DEPTH }
            .deserialize(&mut de)
            .map_err(|e| describe("claims", json.as_bytes(), &e))
    }

    #[test]
    fn strict_value_refuses_nested_duplicates_and_depth() {
        assert_eq!(
            strict(r#"{"a":{"b":[1,{"c":2}]}}"#),
            Ok(serde_json::json!({"a":{"b":[1,{"c":2}]}}))
        );
        assert_eq!(
            strict(r#"{"a":{"r":1,"r":2}}"#),
            Err("claims: duplicate member `r`".into())
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            strict(&deep),
            Err("claims: nesting deeper than 32 levels".into())
        );
    }

    #[test]
    fn descriptions_never_quote_the_input() {
        for json in [
            r#""secret-ish text""#,
            r#"{"a":"x\u0001"#,
            r#"{"a" "b"}"#,
            "[1]",
            "",
        ] {
            let mut de = serde_json::Deserializer::from_str(json);
            let err = StrictValue { depth: MAX_DEPTH }
                .deserialize(&mut de)
                .and_then(|v| de.end().map(|()| v))
                .map(|_| String::new())
                .unwrap_or_else(|e| describe("claims", json.as_bytes(), &e));
            assert!(
                !err.contains("secret") && !err.contains('"') && !err.contains("line"),
                "{err}"
            );
        }
        let odd_name = format!("{{\"{0}\":1,\"{0}\":2}}", "x\\\"y");
        assert_eq!(
            strict(&odd_name),
            Err("claims: duplicate member (name not shown)".into())
        );
    }

    #[test]
    fn seen_switches_to_a_set_and_keeps_refusing_duplicates() {
        let mut seen = Seen::default();
        let names: Vec<Cow<'_, str>> = (0..100).map(|i| Cow::Owned(format!("m{i}"))).collect();
        for name in &names {
            assert!(seen.insert::<serde_json::Error>(name).is_ok());
        }
        assert!(seen.insert::<serde_json::Error>(&names[3]).is_err());
        assert!(seen.insert::<serde_json::Error>(&names[90]).is_err());
    }
}
