//! The token oracle as a property test (the fuzz target `fuzz/fuzz_targets/token_verify.rs`
//! checks the same on libFuzzer's inputs): tokens are minted for ES256, RS256, EdDSA and HS256,
//! then mutated — bytes and base64url characters flipped, inserted, deleted; segments swapped,
//! borrowed from another token or repeated; header fields (`alg`, `kid`, `typ`, `crit`, …) and
//! claims changed and re-encoded; padding, the standard alphabet, non-canonical trailing bits;
//! truncation and concatenation — and `Authenticator::verify` must accept nothing but a minted
//! token, and never panic.
//!
//! ECDSA signatures are not unique (`s` and `n - s` both verify, and signing again gives another
//! signature), so an ES256 string that verifies need only have a minted token's signing input
//! (`header.payload`). For the deterministic schemes (RS256 PKCS#1 v1.5, EdDSA, HMAC) the whole
//! string must be one that was minted.
//!
//! `PROPTEST_CASES` sets the number of cases (default 4,000: a few seconds in debug).

mod common;

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{AUDIENCE, ISSUER, b64, claims, sign_raw, signing_key};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower_oauth2::{Algorithm, Authenticator, Key, TokenCache};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::EdDSA,
    Algorithm::HS256,
];

struct Minted {
    alg: Algorithm,
    token: String,
    /// `header.payload`: what the signature covers.
    signing_input: String,
}

/// Two tokens per algorithm: an RFC 9068 header with `kid` and the standard claims, and a bare
/// `{"alg": …}` header (tried against every key allowing its algorithm) with other claims.
fn minted() -> &'static [Minted] {
    static MINTED: OnceLock<Vec<Minted>> = OnceLock::new();
    MINTED.get_or_init(|| {
        let full = claims("events:read").to_string();
        let mut short = claims("");
        short["aud"] = json!([AUDIENCE, "other-api"]);
        let short = short.to_string();
        let mut minted = Vec::new();
        for alg in ALGORITHMS {
            let (key, kid) = signing_key(alg);
            let with_kid = json!({"alg": alg.name(), "typ": "at+jwt", "kid": kid}).to_string();
            let bare = json!({"alg": alg.name()}).to_string();
            for (header, claims) in [(&with_kid, &full), (&bare, &short)] {
                let token = sign_raw(header, claims, &key, alg);
                let signing_input = format!("{}.{}", b64(header), b64(claims));
                assert!(token.starts_with(&signing_input));
                minted.push(Minted {
                    alg,
                    token,
                    signing_input,
                });
            }
        }
        minted
    })
}

/// The test JWKS plus the HMAC secret, default policy, no token cache (every call runs the
/// whole pipeline).
fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let hmac = Key::hmac(common::HMAC_SECRET, Algorithm::HS256)
            .expect("HMAC key")
            .with_kid("hmac-1");
        common::builder()
            .key(hmac)
            .token_cache(TokenCache::disabled())
            .build()
            .expect("authenticator")
    })
}

/// The oracle: whether `token` may verify.
fn may_verify(token: &str) -> bool {
    let signing_input = token.rsplit_once('.').map(|(input, _)| input);
    minted().iter().any(|m| {
        m.token == token
            || (m.alg == Algorithm::ES256 && signing_input == Some(m.signing_input.as_str()))
    })
}

#[test]
fn every_minted_token_verifies() {
    for m in minted() {
        if let Err(e) = authenticator().verify(&m.token) {
            panic!("minted {:?} token refused: {e}", m.alg);
        }
        assert!(may_verify(&m.token));
    }
}

/// A JSON value for a header field or claim: right and wrong types, edge numbers.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(1e308)),
        Just(json!(u64::MAX)),
        Just(json!(common::now() + 300)),
        Just(json!(253_402_300_800u64)), // year 10000
        Just(json!("")),
        Just(json!(ISSUER)),
        Just(json!(AUDIENCE)),
        Just(json!([AUDIENCE])),
        Just(json!([])),
        Just(json!({})),
        Just(json!(["exp"])),
        "[a-zA-Z0-9 :/._-]{0,12}".prop_map(Value::String),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
    },
    /// Put a base64url character (or `.`) at a position.
    Base64Char {
        at: usize,
        index: usize,
    },
    /// Makes the unused low bits of a segment's last character non-zero.
    NonCanonicalTail {
        segment: usize,
    },
    Padding {
        segment: usize,
    },
    StandardAlphabet,
    Truncate {
        at: usize,
    },
    SwapSegments {
        a: usize,
        b: usize,
    },
    /// Another minted token's segment in place of this one's.
    SegmentFrom {
        segment: usize,
        other: usize,
    },
    RepeatSegment {
        segment: usize,
    },
    /// This token, a separator, another minted token.
    Concat {
        other: usize,
        separator: char,
    },
    /// Sets (or with `None` removes) a header member, re-encoding the header.
    Header {
        name: &'static str,
        value: Option<Value>,
    },
    /// Sets (or removes) a claim, re-encoding the payload.
    Claim {
        name: &'static str,
        value: Option<Value>,
    },
    /// Replaces the header or payload with raw JSON text.
    RawJson {
        segment: usize,
        json: &'static str,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let header_name = prop_oneof![
        Just("alg"),
        Just("kid"),
        Just("typ"),
        Just("crit"),
        Just("jku"),
        Just("jwk"),
        Just("x5c"),
        Just("b64"),
        Just("cty"),
    ];
    let alg_value = prop_oneof![
        Just("none"),
        Just("None"),
        Just("NONE"),
        Just("HS256"),
        Just("HS384"),
        Just("RS256"),
        Just("PS256"),
        Just("ES256"),
        Just("ES384"),
        Just("EdDSA"),
        Just("es256"),
        Just("ES256 "),
        Just(""),
    ];
    let kid_value = prop_oneof![
        Just("ec-1"),
        Just("rsa-1"),
        Just("ed-1"),
        Just("hmac-1"),
        Just("ec384-1"),
        Just("unknown"),
        Just(""),
    ];
    let claim_name = prop_oneof![
        Just("iss"),
        Just("sub"),
        Just("aud"),
        Just("exp"),
        Just("nbf"),
        Just("iat"),
        Just("jti"),
        Just("scope"),
        Just("client_id"),
    ];
    let raw_json = prop_oneof![
        Just(r#"{"alg":"ES256","alg":"ES256","kid":"ec-1"}"#),
        Just(r#"{"alg":"none"}"#),
        Just(r#"{"iss":"https://issuer.test","iss":"https://issuer.test"}"#),
        Just("[]"),
        Just("null"),
        Just(""),
        Just("{"),
        Just(r#"{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#),
        Just("{\"alg\":\"ES256\u{0}\"}"),
        Just("\u{feff}{\"alg\":\"ES256\"}"),
    ];
    let at = 0..2048usize;
    prop_oneof![
        (at.clone(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        at.clone().prop_map(|at| Mutation::Delete { at }),
        (at.clone(), 0..65usize).prop_map(|(at, index)| Mutation::Base64Char { at, index }),
        (0..3usize).prop_map(|segment| Mutation::NonCanonicalTail { segment }),
        (0..3usize).prop_map(|segment| Mutation::Padding { segment }),
        Just(Mutation::StandardAlphabet),
        at.prop_map(|at| Mutation::Truncate { at }),
        (0..4usize, 0..4usize).prop_map(|(a, b)| Mutation::SwapSegments { a, b }),
        (0..3usize, 0..8usize)
            .prop_map(|(segment, other)| Mutation::SegmentFrom { segment, other }),
        (0..3usize).prop_map(|segment| Mutation::RepeatSegment { segment }),
        (
            0..8usize,
            prop_oneof![Just('.'), Just(' '), Just(','), Just('\n')]
        )
            .prop_map(|(other, separator)| Mutation::Concat { other, separator }),
        (header_name, proptest::option::of(json_value()))
            .prop_map(|(name, value)| Mutation::Header { name, value }),
        alg_value.prop_map(|alg| Mutation::Header {
            name: "alg",
            value: Some(json!(alg)),
        }),
        kid_value.prop_map(|kid| Mutation::Header {
            name: "kid",
            value: Some(json!(kid)),
        }),
        (claim_name, proptest::option::of(json_value()))
            .prop_map(|(name, value)| Mutation::Claim { name, value }),
        (0..2usize, raw_json).prop_map(|(segment, json)| Mutation::RawJson { segment, json }),
    ]
}

const ALPHABET: &[u8; 65] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn segments(token: &[u8]) -> Vec<Vec<u8>> {
    token.split(|b| *b == b'.').map(<[u8]>::to_vec).collect()
}

/// Decodes segment `i` as a JSON object, lets `edit` change it, and encodes it again.
fn edit_json(token: &mut Vec<u8>, i: usize, edit: impl FnOnce(&mut Map<String, Value>)) {
    let mut parts = segments(token);
    let Some(part) = parts.get_mut(i) else {
        return;
    };
    let Ok(Value::Object(mut object)) = URL_SAFE_NO_PAD
        .decode(&*part)
        .map_err(|_| ())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|_| ()))
    else {
        return;
    };
    edit(&mut object);
    *part = b64(Value::Object(object).to_string()).into_bytes();
    *token = parts.join(&b'.');
}

fn apply(token: &mut Vec<u8>, mutation: &Mutation) {
    let len = token.len();
    match mutation {
        Mutation::FlipBit { at, bit } if len > 0 => token[at % len] ^= 1 << bit,
        Mutation::SetByte { at, byte } if len > 0 => token[at % len] = *byte,
        Mutation::Insert { at, byte } => token.insert(at % (len + 1), *byte),
        Mutation::Delete { at } if len > 0 => {
            token.remove(at % len);
        }
        Mutation::Base64Char { at, index } if len > 0 => token[at % len] = ALPHABET[*index],
        Mutation::NonCanonicalTail { segment } => {
            let mut parts = segments(token);
            if let Some(last) = parts.get_mut(*segment).and_then(|p| p.last_mut())
                && let Some(index) = ALPHABET[..64].iter().position(|c| c == last)
            {
                // Two trailing characters carry 4 unused bits, three carry 2: flipping the
                // lowest bit makes them non-zero (or, if already so, zero).
                *last = ALPHABET[index ^ 1];
            }
            *token = parts.join(&b'.');
        }
        Mutation::Padding { segment } => {
            let mut parts = segments(token);
            if let Some(part) = parts.get_mut(*segment) {
                part.push(b'=');
            }
            *token = parts.join(&b'.');
        }
        Mutation::StandardAlphabet => {
            for b in token.iter_mut() {
                *b = match *b {
                    b'-' => b'+',
                    b'_' => b'/',
                    other => other,
                };
            }
        }
        Mutation::Truncate { at } => token.truncate(at % (len + 1)),
        Mutation::SwapSegments { a, b } => {
            let mut parts = segments(token);
            let n = parts.len();
            parts.swap(a % n, b % n);
            *token = parts.join(&b'.');
        }
        Mutation::SegmentFrom { segment, other } => {
            let others = minted();
            let theirs = segments(others[other % others.len()].token.as_bytes());
            let mut parts = segments(token);
            if let (Some(part), Some(theirs)) = (parts.get_mut(*segment), theirs.get(*segment)) {
                part.clone_from(theirs);
            }
            *token = parts.join(&b'.');
        }
        Mutation::RepeatSegment { segment } => {
            let parts = segments(token);
            if let Some(part) = parts.get(*segment) {
                token.push(b'.');
                token.extend_from_slice(part);
            }
        }
        Mutation::Concat { other, separator } => {
            let others = minted();
            token.extend(separator.to_string().bytes());
            token.extend(others[other % others.len()].token.bytes());
        }
        Mutation::Header { name, value } => edit_json(token, 0, |header| match value {
            Some(value) => {
                header.insert((*name).to_owned(), value.clone());
            }
            None => {
                header.remove(*name);
            }
        }),
        Mutation::Claim { name, value } => edit_json(token, 1, |claims| match value {
            Some(value) => {
                claims.insert((*name).to_owned(), value.clone());
            }
            None => {
                claims.remove(*name);
            }
        }),
        Mutation::RawJson { segment, json } => {
            let mut parts = segments(token);
            if let Some(part) = parts.get_mut(*segment) {
                *part = b64(json).into_bytes();
            }
            *token = parts.join(&b'.');
        }
        _ => {}
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Nothing but a minted token (for ES256: a minted signing input) verifies, whatever is
    /// done to it; `verify` never panics (proptest reports a panic as a failure).
    #[test]
    fn only_minted_tokens_verify(
        which in 0..8usize,
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut token = minted()[which].token.clone().into_bytes();
        for m in &mutations {
            apply(&mut token, m);
        }
        let token = String::from_utf8_lossy(&token).into_owned();
        let result = authenticator().verify(&token);
        prop_assert!(
            result.is_err() || may_verify(&token),
            "a token that was never minted verifies: {:?} (from {:?} by {:?})",
            token,
            minted()[which].alg,
            mutations,
        );
    }

    /// Arbitrary strings: `verify` never panics and accepts none of them.
    #[test]
    fn arbitrary_strings_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let token = String::from_utf8_lossy(&bytes).into_owned();
        let result = authenticator().verify(&token);
        prop_assert!(result.is_err() || may_verify(&token), "{:?} verifies", token);
    }
}
