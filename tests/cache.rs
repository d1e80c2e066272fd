//! The verified-token cache: what it must re-check on every hit, and what it must not serve.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::json;
use tower_oauth2::Algorithm;
use tower_oauth2::{AuthErrorKind, TokenCache, VerifiedToken};

#[test]
fn a_cached_token_is_served_and_counted_once() {
    let auth = builder().build().unwrap();
    let token = token("events:read");
    let first = auth.verify(&token).unwrap();
    let second = auth.verify(&token).unwrap();
    assert_eq!(first.jwt_id(), second.jwt_id());
    assert_eq!(second.scopes().iter().collect::<Vec<_>>(), ["events:read"]);
    let (entries, bytes) = auth.token_cache_stats().expect("on by default");
    assert_eq!(entries, 1);
    assert!(bytes > 256, "{bytes}");
    let off = builder()
        .token_cache(TokenCache::disabled())
        .build()
        .unwrap();
    assert!(off.token_cache_stats().is_none());
}

#[test]
fn only_the_exact_bytes_verified_hit() {
    let auth = builder().build().unwrap();
    let token = token("events:read");
    auth.verify(&token).unwrap();
    // The same claims with a broken signature are a different key: verified, and refused.
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    assert_eq!(
        auth.verify(&tampered).unwrap_err().kind(),
        AuthErrorKind::BadSignature
    );
    // Failures are not cached: the good token still hits, the bad one still fails.
    auth.verify(&token).unwrap();
    assert_eq!(auth.token_cache_stats().unwrap().0, 1);
}

#[test]
fn expiry_is_checked_again_on_every_hit() {
    let auth = builder()
        .leeway(Duration::ZERO)
        .token_cache(TokenCache::new().max_ttl(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let mut claims = claims("events:read");
    // Three seconds of validity: both checks below fall inside it even on a loaded machine
    // (with one second, a second boundary crossed between minting and checking failed CI).
    claims["exp"] = json!(now() + 3);
    let token = token_with(Algorithm::ES256, &claims);
    auth.verify(&token).unwrap();
    auth.verify(&token).unwrap();
    std::thread::sleep(Duration::from_millis(4100));
    assert_eq!(
        auth.verify(&token).unwrap_err().kind(),
        AuthErrorKind::Expired
    );
}

#[test]
fn revocation_is_checked_again_on_every_hit() {
    let revoked = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&revoked);
    let auth = builder()
        .revocation_check(move |_: &VerifiedToken| flag.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let token = token("events:read");
    auth.verify(&token).unwrap();
    auth.verify(&token).unwrap();
    revoked.store(true, Ordering::SeqCst);
    let error = auth.verify(&token).unwrap_err();
    assert_eq!(error.kind(), AuthErrorKind::Revoked);
    assert_eq!(error.claimed_key_id(), Some("ec-1"));
}

#[test]
fn entries_never_outlive_max_ttl_or_the_memory_bound() {
    // A bound too small for even one entry: nothing is kept, everything still verifies.
    let auth = builder()
        .token_cache(TokenCache::new().max_bytes(64))
        .build()
        .unwrap();
    let token = token("events:read");
    for _ in 0..3 {
        auth.verify(&token).unwrap();
    }
    assert_eq!(auth.token_cache_stats().unwrap().0, 0);
    let auth = builder()
        .token_cache(TokenCache::new().max_ttl(Duration::from_millis(200)))
        .build()
        .unwrap();
    auth.verify(&token).unwrap();
    assert_eq!(auth.token_cache_stats().unwrap().0, 1);
    // Expired entries go at the cache's next maintenance (its timer wheel ticks about once a
    // second).
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(auth.token_cache_stats().unwrap().0, 0);
    auth.verify(&token).unwrap();
}

/// String claims are kept as ranges of the claims JSON; a claim whose JSON escapes the parser
/// had to undo is kept unescaped after it. Either way the accessors give the decoded value, on
/// a miss and on a hit, and `claims_json` stays the payload exactly as sent.
#[test]
fn escaped_and_plain_string_claims_read_back_decoded() {
    let (key, kid) = signing_key(Algorithm::ES256);
    let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#);
    let exp = now() + 600;
    // `iss` with escaped slashes, `sub` with a \u escape and a non-ASCII character, `aud` as an
    // array mixing both forms, `scope` with an escape in the middle of a scope.
    let payload = format!(
        r#"{{"iss":"https:\/\/issuer.test","sub":"us\u0065r-\u00e9","aud":["other","events\u002dapi"],"exp":{exp},"jti":"plain-jti","client_id":"web","scope":"a\u003ab events:read"}}"#
    );
    let token = sign_raw(&header, &payload, &key, Algorithm::ES256);
    let auth = builder().build().unwrap();
    for round in ["miss", "hit"] {
        let verified = auth.verify(&token).unwrap();
        assert_eq!(verified.issuer(), Some(ISSUER), "{round}");
        assert_eq!(verified.subject(), Some("user-é"), "{round}");
        assert_eq!(
            verified.audience().collect::<Vec<_>>(),
            ["other", AUDIENCE],
            "{round}"
        );
        assert_eq!(verified.jwt_id(), Some("plain-jti"), "{round}");
        assert_eq!(verified.client_id(), Some("web"), "{round}");
        assert_eq!(verified.expires_at(), Some(exp), "{round}");
        assert_eq!(verified.key_id(), Some(kid), "{round}");
        assert_eq!(
            verified.scopes().iter().collect::<Vec<_>>(),
            ["a:b", "events:read"],
            "{round}"
        );
        assert_eq!(verified.claims_json(), payload.as_bytes(), "{round}");
        let value: serde_json::Value = verified.claims().unwrap();
        assert_eq!(value["sub"], "user-é", "{round}");
    }
    assert_eq!(auth.token_cache_stats().unwrap().0, 1);
}
