//! DPoP (RFC 9449) at the resource server: the hostile-proof corpus, each case with its exact
//! status, error code and reason, then replay under concurrency, the token cache, nonces,
//! modes, challenges and the protected-resource metadata.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use common::dpop::{ClientKey, alice, ath, client, mallory, sign};
use common::*;
use http::{Request, StatusCode};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower_oauth2::dpop::{Dpop, DpopMode};
use tower_oauth2::{Algorithm, Authenticator, Issuer, Key, ProtectedResource};

const BASE: &str = "https://api.test";

/// A proof's header and claims for `method url` with `token`, to edit before signing.
fn parts(key: &ClientKey, method: &str, url: &str, token: &str) -> (Value, Value) {
    common::dpop::parts(key, method, url, Some(token))
}

/// A valid proof for `GET /me` with `token`, edited by `edit`.
fn proof_with(key: &ClientKey, token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    let (mut header, mut claims) = parts(key, "GET", &format!("{BASE}/me"), token);
    edit(&mut header, &mut claims);
    sign(key, &header, &claims)
}

fn proof(key: &ClientKey, token: &str) -> String {
    proof_with(key, token, |_, _| {})
}

/// An access token of the test issuer bound to `jkt`.
fn bound_token(jkt: &str) -> String {
    let mut claims = claims("events:read");
    claims["cnf"] = json!({"jkt": jkt});
    token_with(Algorithm::ES256, &claims)
}

fn request(method: &str, path: &str, authorization: &str, proofs: &[&str]) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", authorization);
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    request.body(Body::empty()).unwrap()
}

fn dpop(token: &str, proofs: &[&str]) -> Request<Body> {
    request("GET", "/me", &format!("DPoP {token}"), proofs)
}

fn allowed() -> Authenticator {
    builder().dpop(Dpop::new(BASE)).build().unwrap()
}

fn required() -> Authenticator {
    builder()
        .dpop(Dpop::new(BASE))
        .dpop_mode(DpopMode::Required)
        .build()
        .unwrap()
}

const NONCE_SECRET: [u8; 32] = [9; 32];

fn nonced() -> Authenticator {
    builder()
        .dpop(Dpop::new(BASE).nonces(NONCE_SECRET))
        .build()
        .unwrap()
}

/// Two issuers: the test issuer takes bearer tokens only, `https://other.test` takes both.
fn mixed() -> Authenticator {
    let other = Issuer::new("https://other.test")
        .audience(AUDIENCE)
        .key(Key::hmac(HMAC_SECRET, Algorithm::HS256).unwrap());
    builder()
        .dpop(Dpop::new(BASE))
        .dpop_mode(DpopMode::BearerOnly)
        .trust(other)
        .build()
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Service {
    Allowed,
    Required,
    Nonced,
    Mixed,
}

struct Case {
    name: &'static str,
    service: Service,
    request: Request<Body>,
    status: StatusCode,
    code: &'static str,
    /// A fragment the `error_description` must contain.
    reason: &'static str,
}

fn case(
    name: &'static str,
    request: Request<Body>,
    status: u16,
    code: &'static str,
    reason: &'static str,
) -> Case {
    Case {
        name,
        service: Service::Allowed,
        request,
        status: StatusCode::from_u16(status).unwrap(),
        code,
        reason,
    }
}

fn on(service: Service, mut case: Case) -> Case {
    case.service = service;
    case
}

fn corpus() -> Vec<Case> {
    let a = alice();
    let m = mallory();
    let token = bound_token(&a.jkt);
    let t = token.as_str();
    let good = |edit: fn(&mut Value, &mut Value)| proof_with(&a, t, edit);
    let bad = "invalid_dpop_proof";
    let me = format!("{BASE}/me");
    let unbound = token_with(Algorithm::ES256, &claims("events:read"));
    let mut cert_claims = claims("events:read");
    cert_claims["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
    let cert_bound = token_with(Algorithm::ES256, &cert_claims);
    let mut expired_claims = claims("events:read");
    expired_claims["cnf"] = json!({"jkt": a.jkt});
    expired_claims["exp"] = json!(now() - 600);
    let expired = token_with(Algorithm::ES256, &expired_claims);
    let unsigned = |header: Value, claims: Value| {
        format!("{}.{}.", b64(header.to_string()), b64(claims.to_string()))
    };
    let (h, c) = parts(&a, "GET", &me, t);
    let mut h_none = h.clone();
    h_none["alg"] = json!("none");
    let mut h_hs = h.clone();
    h_hs["alg"] = json!("HS256");
    let hs_proof = sign_raw(
        &h_hs.to_string(),
        &c.to_string(),
        &EncodingKey::from_secret(HMAC_SECRET),
        Algorithm::HS256,
    );
    let rsa = client("rsa-1", Algorithm::RS256);
    let rs512 = {
        let (mut h, c) = parts(&rsa, "GET", &me, t);
        h["alg"] = json!("RS512");
        sign_raw(
            &h.to_string(),
            &c.to_string(),
            &signing_key(Algorithm::RS256).0,
            Algorithm::RS512,
        )
    };
    let by_mallory = sign(&m, &h, &c);
    let with_private = {
        let (mut h, c) = parts(&a, "GET", &me, t);
        h["jwk"]["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
        sign(&a, &h, &c)
    };
    let with_oct = {
        let (mut h, c) = parts(&a, "GET", &me, t);
        h["jwk"] = json!({"kty": "oct", "k": b64([7u8; 32])});
        sign(&a, &h, &c)
    };
    let bound_to_mallory = bound_token(&m.jkt);
    let nonce_proof = |nonce: Option<&str>| {
        proof_with(&a, t, |_, claims| {
            if let Some(n) = nonce {
                claims["nonce"] = json!(n);
            }
        })
    };
    let stale_nonce = b64([0u8; 24]);
    let huge = "a".repeat(9000);
    let no_signature = {
        let p = proof(&a, t);
        p[..p.rfind('.').unwrap() + 1].to_owned()
    };

    let mut cases = vec![
        // The DPoP header itself.
        case("no proof", dpop(t, &[]), 401, bad, "has no DPoP proof"),
        case(
            "two proofs",
            dpop(t, &[&proof(&a, t), &proof(&a, t)]),
            401,
            bad,
            "more than one DPoP proof",
        ),
        case(
            "not a JWS",
            dpop(t, &["abc"]),
            401,
            bad,
            "not a compact JWS",
        ),
        case(
            "too large",
            dpop(t, &[&huge]),
            401,
            bad,
            "longer than 8192 bytes",
        ),
        case(
            "not visible ASCII",
            {
                let mut r = dpop(t, &[]);
                r.headers_mut()
                    .insert("dpop", http::HeaderValue::from_bytes(b"a.b.\xe9").unwrap());
                r
            },
            401,
            bad,
            "not visible ASCII",
        ),
        // The header.
        case(
            "no typ",
            dpop(
                t,
                &[&good(|h, _| drop(h.as_object_mut().unwrap().remove("typ")))],
            ),
            401,
            bad,
            "typ is not dpop+jwt",
        ),
        case(
            "typ JWT",
            dpop(t, &[&good(|h, _| h["typ"] = json!("JWT"))]),
            401,
            bad,
            "typ is not dpop+jwt",
        ),
        case(
            "typ at+jwt",
            dpop(t, &[&good(|h, _| h["typ"] = json!("at+jwt"))]),
            401,
            bad,
            "typ is not dpop+jwt",
        ),
        case(
            "alg none",
            dpop(t, &[&unsigned(h_none, c.clone())]),
            401,
            bad,
            "alg is not one of ES256 ES384 EdDSA PS256 RS256",
        ),
        case(
            "alg HS256",
            dpop(t, &[&hs_proof]),
            401,
            bad,
            "alg is not one of",
        ),
        case(
            "alg RS512, not allowed",
            dpop(t, &[&rs512]),
            401,
            bad,
            "alg is not one of",
        ),
        case(
            "alg of another key type",
            dpop(t, &[&good(|h, _| h["alg"] = json!("ES256"))]),
            401,
            bad,
            "alg does not fit its jwk",
        ),
        case(
            "no jwk",
            dpop(
                t,
                &[&good(|h, _| drop(h.as_object_mut().unwrap().remove("jwk")))],
            ),
            401,
            bad,
            "has no jwk header",
        ),
        case(
            "private key in jwk",
            dpop(t, &[&with_private]),
            401,
            bad,
            "private or symmetric member `d`",
        ),
        case(
            "symmetric jwk",
            dpop(t, &[&with_oct]),
            401,
            bad,
            "private or symmetric member `k`",
        ),
        case(
            "jwk not an object",
            dpop(t, &[&good(|h, _| h["jwk"] = json!("key"))]),
            401,
            bad,
            "a JWK must be a JSON object",
        ),
        case(
            "jwk with a bad curve point",
            dpop(t, &[&good(|h, _| h["jwk"]["x"] = json!("AAAA"))]),
            401,
            bad,
            "the DPoP proof's jwk",
        ),
        case(
            "crit",
            dpop(t, &[&good(|h, _| h["crit"] = json!(["exp"]))]),
            401,
            bad,
            "crit header",
        ),
        case(
            "header with a duplicate member",
            dpop(
                t,
                &[&sign_raw(
                    &format!(
                        r#"{{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"EdDSA","jwk":{}}}"#,
                        a.jwk
                    ),
                    &c.to_string(),
                    &a.key,
                    a.alg,
                )],
            ),
            401,
            bad,
            "header is not a JSON object",
        ),
        // The signature.
        case(
            "signed by another key",
            dpop(t, &[&by_mallory]),
            401,
            bad,
            "signature does not verify",
        ),
        case(
            "no signature",
            dpop(t, &[&no_signature]),
            401,
            bad,
            "has no signature",
        ),
        // The claims.
        case(
            "claims not JSON",
            dpop(t, &[&sign_raw(&h.to_string(), "not json", &a.key, a.alg)]),
            401,
            bad,
            "claims is not a JSON object",
        ),
        case(
            "htm POST for GET",
            dpop(t, &[&good(|_, c| c["htm"] = json!("POST"))]),
            401,
            bad,
            "htm is not this request's method",
        ),
        case(
            "htm in lowercase",
            dpop(t, &[&good(|_, c| c["htm"] = json!("get"))]),
            401,
            bad,
            "htm is not this request's method",
        ),
        case(
            "htu with another host",
            dpop(t, &[&good(|_, c| c["htu"] = json!("https://evil.test/me"))]),
            401,
            bad,
            "htu is not this request's URI",
        ),
        case(
            "htu with another path",
            dpop(
                t,
                &[&good(|_, c| c["htu"] = json!("https://api.test/scopes"))],
            ),
            401,
            bad,
            "htu is not this request's URI",
        ),
        case(
            "htu with another port",
            dpop(
                t,
                &[&good(|_, c| c["htu"] = json!("https://api.test:8443/me"))],
            ),
            401,
            bad,
            "htu is not this request's URI",
        ),
        case(
            "htu with another scheme",
            dpop(t, &[&good(|_, c| c["htu"] = json!("http://api.test/me"))]),
            401,
            bad,
            "htu is not this request's URI",
        ),
        case(
            "htu with a query",
            dpop(
                t,
                &[&good(|_, c| c["htu"] = json!("https://api.test/me?x=1"))],
            ),
            401,
            bad,
            "htu has a query",
        ),
        case(
            "htu with a fragment",
            dpop(
                t,
                &[&good(|_, c| c["htu"] = json!("https://api.test/me#x"))],
            ),
            401,
            bad,
            "htu has a fragment",
        ),
        case(
            "htu relative",
            dpop(t, &[&good(|_, c| c["htu"] = json!("/me"))]),
            401,
            bad,
            "htu is not an absolute URL",
        ),
        case(
            "htu missing",
            dpop(
                t,
                &[&good(|_, c| drop(c.as_object_mut().unwrap().remove("htu")))],
            ),
            401,
            bad,
            "has no htu",
        ),
        case(
            "iat too old",
            dpop(t, &[&good(|_, c| c["iat"] = json!(now() - 120))]),
            401,
            bad,
            "too old (iat)",
        ),
        case(
            "iat in the future",
            dpop(t, &[&good(|_, c| c["iat"] = json!(now() + 120))]),
            401,
            bad,
            "issued in the future (iat)",
        ),
        case(
            "iat missing",
            dpop(
                t,
                &[&good(|_, c| drop(c.as_object_mut().unwrap().remove("iat")))],
            ),
            401,
            bad,
            "no integer iat",
        ),
        case(
            "iat a string",
            dpop(t, &[&good(|_, c| c["iat"] = json!(now().to_string()))]),
            401,
            bad,
            "no integer iat",
        ),
        case(
            "jti missing",
            dpop(
                t,
                &[&good(|_, c| drop(c.as_object_mut().unwrap().remove("jti")))],
            ),
            401,
            bad,
            "has no jti",
        ),
        case(
            "jti empty",
            dpop(t, &[&good(|_, c| c["jti"] = json!(""))]),
            401,
            bad,
            "jti must have 1 to 256 characters",
        ),
        case(
            "jti too long",
            dpop(t, &[&good(|_, c| c["jti"] = json!("j".repeat(257)))]),
            401,
            bad,
            "jti must have 1 to 256 characters",
        ),
        case(
            "ath missing",
            dpop(
                t,
                &[&good(|_, c| drop(c.as_object_mut().unwrap().remove("ath")))],
            ),
            401,
            bad,
            "has no ath",
        ),
        case(
            "ath of another token",
            dpop(t, &[&good(|_, c| c["ath"] = json!(ath("another.token.x")))]),
            401,
            bad,
            "ath is not the hash of this access token",
        ),
        // The binding.
        case(
            "proof key is not the token's (cnf.jkt)",
            dpop(&bound_to_mallory, &[&proof(&a, &bound_to_mallory)]),
            401,
            "invalid_token",
            "not the one the token is bound to",
        ),
        case(
            "DPoP-bound token as Bearer",
            request("GET", "/me", &format!("Bearer {t}"), &[&proof(&a, t)]),
            401,
            "invalid_token",
            "sender-constrained",
        ),
        case(
            "unbound token as DPoP",
            dpop(&unbound, &[&proof(&a, &unbound)]),
            401,
            "invalid_token",
            "not DPoP-bound (no cnf.jkt)",
        ),
        case(
            "certificate-bound token as DPoP",
            dpop(&cert_bound, &[&proof(&a, &cert_bound)]),
            401,
            "invalid_token",
            "not DPoP-bound (no cnf.jkt)",
        ),
        case(
            "expired token with a good proof",
            dpop(&expired, &[&proof(&a, &expired)]),
            401,
            "invalid_token",
            "expired",
        ),
        case(
            "DPoP without a token",
            dpop("", &[]),
            400,
            "invalid_request",
            "DPoP scheme without a token",
        ),
        on(
            Service::Required,
            case(
                "bearer token where DPoP is required",
                request("GET", "/me", &format!("Bearer {unbound}"), &[]),
                401,
                "invalid_token",
                "must be DPoP-bound",
            ),
        ),
        on(
            Service::Required,
            case(
                "unbound token as DPoP where DPoP is required",
                dpop(&unbound, &[&proof(&a, &unbound)]),
                401,
                "invalid_token",
                "not DPoP-bound (no cnf.jkt)",
            ),
        ),
        on(
            Service::Mixed,
            case(
                "DPoP for an issuer that takes bearer tokens only",
                dpop(t, &[&proof(&a, t)]),
                401,
                "invalid_token",
                "not accepted with the DPoP scheme",
            ),
        ),
        on(
            Service::Nonced,
            case(
                "nonce missing",
                dpop(t, &[&nonce_proof(None)]),
                401,
                "use_dpop_nonce",
                "a DPoP nonce is required",
            ),
        ),
        on(
            Service::Nonced,
            case(
                "nonce stale",
                dpop(t, &[&nonce_proof(Some(&stale_nonce))]),
                401,
                "use_dpop_nonce",
                "stale or unknown",
            ),
        ),
        on(
            Service::Nonced,
            case(
                "nonce not a string",
                dpop(t, &[&proof_with(&a, t, |_, c| c["nonce"] = json!(1))]),
                401,
                bad,
                "nonce is not a string",
            ),
        ),
    ];
    // A proof for another request method and path of the same API.
    let post = {
        let (h, c) = parts(&a, "GET", &format!("{BASE}/events"), t);
        sign(&a, &h, &c)
    };
    cases.push(case(
        "proof for GET replayed on POST",
        request("POST", "/events", &format!("DPoP {t}"), &[&post]),
        401,
        bad,
        "htm is not this request's method",
    ));
    cases
}

fn app_for(service: Service) -> Router {
    app(&match service {
        Service::Allowed => allowed(),
        Service::Required => required(),
        Service::Nonced => nonced(),
        Service::Mixed => mixed(),
    })
}

#[tokio::test]
async fn hostile_proofs_get_their_exact_status_and_error() {
    provider();
    let apps = [
        Service::Allowed,
        Service::Required,
        Service::Nonced,
        Service::Mixed,
    ]
    .map(|s| (format!("{s:?}"), app_for(s)));
    let cases = corpus();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let app = &apps
            .iter()
            .find(|(name, _)| *name == format!("{:?}", case.service))
            .unwrap()
            .1;
        let reply = send(app, case.request).await;
        let challenge = reply.challenge().to_owned();
        let ok = reply.status == case.status
            && reply.error() == Some(case.code)
            && reply.description().contains(case.reason)
            && challenge.contains(&format!("error=\"{}\"", case.code));
        // DPoP errors go in the DPoP challenge, whose parameters follow `DPoP algs`.
        let in_dpop_challenge = challenge
            .split_once("DPoP algs=")
            .is_some_and(|(_, dpop)| dpop.contains("error="));
        // Every request here used the DPoP scheme, or DPoP is the only scheme, except one.
        let expect_dpop_challenge = case.name != "DPoP-bound token as Bearer";
        if !ok || in_dpop_challenge != expect_dpop_challenge {
            failures.push(format!(
                "{}: got {} {:?} {:?}, challenge {challenge:?}",
                case.name,
                reply.status,
                reply.error(),
                reply.description()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn a_good_proof_passes_with_every_default_algorithm() {
    provider();
    let app = app(&allowed());
    for key in [
        client("ec-1", Algorithm::ES256),
        client("ec384-1", Algorithm::ES384),
        client("ed-1", Algorithm::EdDSA),
        client("rsa-1", Algorithm::RS256),
        client("rsa-1", Algorithm::PS256),
    ] {
        let token = bound_token(&key.jkt);
        let reply = send(&app, dpop(&token, &[&proof(&key, &token)])).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{:?}: {:?}",
            key.alg,
            reply.body
        );
        assert_eq!(reply.body["sub"], "user-42");
        assert!(reply.headers.get("dpop-nonce").is_none());
    }
}

#[tokio::test]
async fn htu_is_compared_after_normalisation_against_the_external_url() {
    provider();
    let auth = builder()
        .dpop(Dpop::new("HTTPS://API.test:443/prefix/"))
        .build()
        .unwrap();
    let app = app(&auth);
    let a = alice();
    let token = bound_token(&a.jkt);
    for htu in [
        "https://api.test/prefix/events/7",
        "HTTPS://Api.Test:443/prefix/events/7",
        "https://api.test/prefix/%65vents/7",
    ] {
        let (h, mut c) = parts(&a, "GET", htu, &token);
        c["htu"] = json!(htu);
        let reply = send(
            &app,
            request(
                "GET",
                "/events/7?x=1",
                &format!("DPoP {token}"),
                &[&sign(&a, &h, &c)],
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{htu}: {:?}", reply.body);
    }
    // The Host header is not trusted: only the configured URL counts.
    let (h, c) = parts(&a, "GET", "https://evil.test/events/7", &token);
    let mut req = request(
        "GET",
        "/events/7",
        &format!("DPoP {token}"),
        &[&sign(&a, &h, &c)],
    );
    req.headers_mut()
        .insert("host", http::HeaderValue::from_static("evil.test"));
    assert_eq!(send(&app, req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_proof_is_used_once_even_by_concurrent_requests() {
    provider();
    let app = app(&allowed());
    let a = alice();
    let token = bound_token(&a.jkt);
    let first = proof(&a, &token);
    assert_eq!(
        send(&app, dpop(&token, &[&first])).await.status,
        StatusCode::OK
    );
    let again = send(&app, dpop(&token, &[&first])).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.description().contains("used before (jti)"));

    let shared = proof(&a, &token);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (app, token, shared) = (app.clone(), token.clone(), shared.clone());
            tokio::spawn(async move { send(&app, dpop(&token, &[&shared])).await.status })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 1,
        "exactly one of 32 concurrent requests with one proof wins"
    );
}

#[tokio::test]
async fn the_token_cache_never_skips_the_proof() {
    provider();
    let auth = allowed();
    let app = app(&auth);
    let a = alice();
    let m = mallory();
    let token = bound_token(&a.jkt);
    assert_eq!(
        send(&app, dpop(&token, &[&proof(&a, &token)])).await.status,
        StatusCode::OK
    );
    // Cached now: a proof by another key, a missing proof and a bearer use still fail.
    let reply = send(&app, dpop(&token, &[&proof(&m, &token)])).await;
    assert_eq!(reply.error(), Some("invalid_token"));
    let reply = send(&app, dpop(&token, &[])).await;
    assert_eq!(reply.error(), Some("invalid_dpop_proof"));
    let reply = get_with(&app, "/me", &token).await;
    assert!(reply.description().contains("sender-constrained"));
    assert_eq!(
        send(&app, dpop(&token, &[&proof(&a, &token)])).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn nonces_are_issued_on_401_and_accepted_until_two_windows_old() {
    provider();
    let app = app(&nonced());
    let a = alice();
    let token = bound_token(&a.jkt);
    // No nonce: 401 use_dpop_nonce with a nonce to retry with.
    let reply = send(&app, dpop(&token, &[&proof(&a, &token)])).await;
    assert_eq!(reply.error(), Some("use_dpop_nonce"));
    let nonce = reply.headers["dpop-nonce"].to_str().unwrap().to_owned();
    assert!(reply.challenge().contains("error=\"use_dpop_nonce\""));
    let retry = proof_with(&a, &token, |_, c| c["nonce"] = json!(nonce));
    let reply = send(&app, dpop(&token, &[&retry])).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // A current nonce gets no new one.
    assert!(reply.headers.get("dpop-nonce").is_none());
    // A bearer request without a token gets a nonce too (any 401).
    let reply = send(&app, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert!(reply.headers.get("dpop-nonce").is_some());
    // Another service's nonce (another secret) is refused.
    let foreign = builder()
        .dpop(Dpop::new(BASE).nonces([1u8; 32]))
        .build()
        .unwrap();
    let foreign_nonce = send(&app_for_auth(&foreign), dpop(&token, &[&proof(&a, &token)]))
        .await
        .headers["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    let reply = send(
        &app,
        dpop(
            &token,
            &[&proof_with(&a, &token, |_, c| {
                c["nonce"] = json!(foreign_nonce)
            })],
        ),
    )
    .await;
    assert_eq!(reply.error(), Some("use_dpop_nonce"));
}

#[tokio::test]
async fn an_aging_nonce_is_refreshed_on_success() {
    provider();
    // One-second windows: a nonce from the previous window is still accepted, and the
    // response carries the current one.
    let app = app(&builder()
        .dpop(
            Dpop::new(BASE)
                .nonces(NONCE_SECRET)
                .nonce_rotation(Duration::from_secs(1)),
        )
        .build()
        .unwrap());
    let a = alice();
    let token = bound_token(&a.jkt);
    let nonce = send(&app, dpop(&token, &[&proof(&a, &token)]))
        .await
        .headers["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    // Wait for the next window (at most 1 s), then use the now-previous nonce.
    let start = now();
    while now() == start {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = send(
        &app,
        dpop(
            &token,
            &[&proof_with(&a, &token, |_, c| c["nonce"] = json!(nonce))],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let fresh = reply.headers["dpop-nonce"].to_str().unwrap();
    assert_ne!(fresh, nonce);
}

fn app_for_auth(auth: &Authenticator) -> Router {
    app(auth)
}

#[tokio::test]
async fn modes_are_per_issuer() {
    provider();
    let app = app(&mixed());
    let a = alice();
    // The other issuer takes DPoP-bound tokens with a proof.
    let mut claims = claims("events:read");
    claims["iss"] = json!("https://other.test");
    claims["cnf"] = json!({"jkt": a.jkt});
    let other = sign_raw(
        &json!({"alg": "HS256", "typ": "at+jwt"}).to_string(),
        &claims.to_string(),
        &EncodingKey::from_secret(HMAC_SECRET),
        Algorithm::HS256,
    );
    let reply = send(&app, dpop(&other, &[&proof(&a, &other)])).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // The first issuer's bearer tokens still pass.
    assert_eq!(
        get_with(&app, "/me", &token("events:read")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn challenges_name_both_schemes_or_only_dpop() {
    provider();
    let reply = send(
        &app(&allowed()),
        Request::get("/me").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        reply.challenge(),
        "Bearer realm=\"api\", DPoP algs=\"ES256 ES384 EdDSA PS256 RS256\""
    );
    let reply = send(
        &app(&required()),
        Request::get("/me").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        reply.challenge(),
        "DPoP algs=\"ES256 ES384 EdDSA PS256 RS256\""
    );
    // Without a Dpop configuration: Bearer only, and the DPoP scheme is no token at all.
    let plain = app(&authenticator());
    let reply = send(&plain, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.challenge(), "Bearer realm=\"api\"");
    let a = alice();
    let token = bound_token(&a.jkt);
    let reply = send(&plain, dpop(&token, &[&proof(&a, &token)])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), None);
    // Missing scope of a DPoP request: 403 in the DPoP challenge.
    let app = app(&allowed());
    let (h, c) = parts(&a, "POST", &format!("{BASE}/events"), &token);
    let reply = send(
        &app,
        request(
            "POST",
            "/events",
            &format!("DPoP {token}"),
            &[&sign(&a, &h, &c)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply
            .challenge()
            .ends_with("DPoP algs=\"ES256 ES384 EdDSA PS256 RS256\", error=\"insufficient_scope\", error_description=\"requires scope events:write\", scope=\"events:write\""),
        "{}",
        reply.challenge()
    );
}

#[tokio::test]
async fn bearer_tokens_still_work_where_dpop_is_allowed() {
    provider();
    let app = app(&allowed());
    let reply = get_with(&app, "/me", &token("events:read")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn handlers_see_the_thumbprint() {
    provider();
    let auth = allowed();
    let a = alice();
    let bound = bound_token(&a.jkt);
    let app = Router::new()
        .route(
            "/me",
            axum::routing::get(|t: tower_oauth2::VerifiedToken| async move {
                format!("{:?} {}", t.dpop_thumbprint(), t.is_sender_constrained())
            }),
        )
        .layer(auth.layer());
    let reply = send(&app, dpop(&bound, &[&proof(&a, &bound)])).await;
    assert_eq!(reply.body, json!(format!("Some({:?}) true", a.jkt)));
    // Authenticator::verify is the bearer path: a bound token is refused there.
    assert!(auth.verify(&bound).is_err());
    assert!(auth.verify(&token("events:read")).is_ok());
}

#[tokio::test]
async fn configuration_mistakes_are_errors() {
    provider();
    let err = |b: tower_oauth2::AuthenticatorBuilder| b.build().err().map(|e| e.to_string());
    assert!(
        err(builder().dpop_mode(DpopMode::Required))
            .unwrap()
            .contains("needs .dpop(")
    );
    assert!(
        err(builder().dpop(Dpop::new("api.test")))
            .unwrap()
            .contains("external URL")
    );
    assert!(
        err(builder().dpop(Dpop::new("https://a.test/?q")))
            .unwrap()
            .contains("query")
    );
    assert!(
        err(builder().dpop(Dpop::new(BASE).algorithms([Algorithm::HS256])))
            .unwrap()
            .contains("symmetric")
    );
    assert!(err(builder().dpop(Dpop::new(BASE).algorithms([]))).is_some());
    assert!(
        err(builder().dpop(Dpop::new(BASE).nonces([1u8; 16])))
            .unwrap()
            .contains("32 bytes")
    );
    assert!(
        err(builder().dpop(Dpop::new(BASE).iat_window(Duration::from_secs(0))))
            .unwrap()
            .contains("window")
    );
    // The secret never shows in Debug.
    let debug = format!("{:?}", Dpop::new(BASE).nonces([0x41u8; 32]));
    assert!(!debug.contains("AAAA") && !debug.contains("65"), "{debug}");
}

#[tokio::test]
async fn protected_resource_metadata_lists_dpop() {
    provider();
    let auth = builder()
        .dpop(Dpop::new(BASE).algorithms([Algorithm::ES256, Algorithm::EdDSA]))
        .dpop_mode(DpopMode::Required)
        .protected_resource(ProtectedResource::new(format!("{BASE}/")))
        .build()
        .unwrap();
    let (_, document) = auth.resource_metadata().unwrap();
    let document: Value = serde_json::from_str(document).unwrap();
    assert_eq!(
        document["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    assert_eq!(document["dpop_bound_access_tokens_required"], json!(true));
}

/// Under `Router::nest`, the layer sees the path without the prefix: the prefix goes in the
/// external URL, as `Dpop::new` says.
#[tokio::test]
async fn a_nested_router_puts_its_prefix_in_the_external_url() {
    provider();
    let auth = builder()
        .dpop(Dpop::new(format!("{BASE}/api")))
        .build()
        .unwrap();
    let nested = Router::new().nest("/api", app(&auth));
    let a = alice();
    let token = bound_token(&a.jkt);
    let (h, c) = parts(&a, "GET", &format!("{BASE}/api/me"), &token);
    let reply = send(
        &nested,
        request(
            "GET",
            "/api/me",
            &format!("DPoP {token}"),
            &[&sign(&a, &h, &c)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

/// `hide_credentials` takes the DPoP proof out with the `Authorization` header.
#[tokio::test]
async fn hide_credentials_removes_the_proof_too() {
    provider();
    let auth = allowed();
    let app = Router::new()
        .route(
            "/me",
            axum::routing::get(|headers: http::HeaderMap| async move {
                format!(
                    "{} {}",
                    headers.contains_key("authorization"),
                    headers.contains_key("dpop")
                )
            }),
        )
        .layer(auth.layer().hide_credentials());
    let a = alice();
    let token = bound_token(&a.jkt);
    let reply = send(&app, dpop(&token, &[&proof(&a, &token)])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!("false false"));
}
