//! How many heap allocations validation makes, counted per thread by the global allocator
//! `allocation-counter` installs in this test binary. A cache hit must make none; a full verification only those the verified token keeps
//! plus a few short-lived ones, each named below. Allocations inside aws-lc (its own C
//! allocator) are not counted: they belong to the signature check, not to this crate.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tower_oauth2::Algorithm;

/// The allocations (and reallocations) `f` makes on this thread (`allocation-counter` installs
/// the counting global allocator in this test binary).
fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (info.count_total, out.expect("the closure ran"))
}

#[test]
fn the_counter_counts() {
    let (count, boxed) = allocations(|| Box::new(7u64));
    assert_eq!(
        (count, *boxed),
        (1, 7),
        "the counting allocator is not installed"
    );
}

#[test]
fn a_cache_hit_allocates_nothing() {
    let auth = builder().build().unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = token_with(alg, &claims("events:read events:write"));
        auth.verify(&token).unwrap();
        let (count, verified) = allocations(|| auth.verify(&token));
        assert!(verified.is_ok(), "{alg:?}");
        assert_eq!(count, 0, "{alg:?}: a cache hit allocated {count} times");
    }
}

/// On aws-lc-rs, whose allocations (in C) are not counted. On RustCrypto the signature check
/// itself allocates on the Rust heap, which would be counted against this crate.
#[cfg(feature = "aws-lc-rs")]
#[test]
fn a_full_verification_allocates_what_the_token_keeps_and_little_else() {
    let auth = builder()
        .token_cache(tower_oauth2::TokenCache::disabled())
        .build()
        .unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = token_with(alg, &claims("events:read events:write"));
        auth.verify(&token).unwrap();
        let (count, verified) = allocations(|| auth.verify(&token));
        let verified = verified.unwrap();
        assert_eq!(verified.subject(), Some("user-42"));
        // Kept by the token: the token itself, its text (the decoded claims JSON; decoding
        // allocates it, and fitting it to size is a reallocation), its scopes' text and their
        // end offsets. Short-lived: the list of scopes before sorting. The header and the
        // signature are decoded on the stack and the claims' strings borrow from the payload.
        const BUDGET: u64 = 1 + 2 + 2 + 1;
        assert!(
            (3..=BUDGET).contains(&count),
            "{alg:?}: a full verification allocated {count} times (budget {BUDGET}; the token \
             alone takes 3)"
        );
    }
}
