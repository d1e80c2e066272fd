//! jwt-authorizer's side of tower-oauth2's `benches/suite/benches/peers.rs`: the same `GET /me`
//! with a valid bearer token through a full axum `Router`, the handler answering 200 with the
//! token's `sub`.
//!
//! jwt-authorizer 0.15 (the newest release) is built on axum 0.7, so this is a separate Cargo
//! project on axum 0.7 with its own `no_auth` baseline (the same route without any layer, on
//! axum 0.7); compare each figure with that baseline and with `peers.rs`'s, run on the same
//! machine. Run with `cargo bench` from `benches/jwt-authorizer/`.
//!
//! One group per algorithm, `peers/RS256` and `peers/ES256`, the same names as in `peers.rs`:
//! `no_auth` and `jwt-authorizer` (its layer, `JwtAuthorizer::from_rsa_pem_text` /
//! `from_ec_pem_text` on the public PEM from `tests/data/keys`, `Validation` with `iss`, `aud`,
//! `exp` (leeway 60 s) and the group's algorithm only, `IntoLayer::into_layer`; its `JwtClaims`
//! extractor in the handler). jwt-authorizer verifies with jsonwebtoken 9 (ring). Its
//! `Validation` makes only `exp` a required claim: `iss` and `aud` are compared when present, and
//! jsonwebtoken 9 skips both checks for a token without them. The valid token carries all three,
//! so the work timed matches `peers.rs`. Before anything is timed, the valid token must get 200
//! and a tampered one (the payload's `sub` changed, the signature kept) 401, or the bench panics.
//! The router is cloned per iteration and driven with `tower::ServiceExt::oneshot` on a
//! current-thread tokio runtime; the request is built outside the measurement.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_authorizer::{IntoLayer, JwtAuthorizer, JwtClaims, Validation};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const ISSUER: &str = "https://idp.example.com/realms/acme";
const AUDIENCE: &str = "events-api";
const SUBJECT: &str = "user-42";

const RSA_PRIVATE: &str = include_str!("../../../tests/data/keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/data/keys/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../../../tests/data/keys/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../../../tests/data/keys/ec_public.pem");

/// RFC 9068-style access-token claims, the same as `peers.rs` signs.
#[derive(Serialize)]
struct TokenClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: &'a str,
    client_id: &'a str,
    scope: &'a str,
}

/// What the handler reads, as in `peers.rs`.
#[derive(Clone, Deserialize)]
struct PeerClaims {
    sub: String,
    #[allow(dead_code)]
    client_id: String,
    #[allow(dead_code)]
    scope: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Case {
    alg: Algorithm,
    token: String,
    tampered: String,
    public_pem: &'static str,
}

fn case(alg: Algorithm) -> Case {
    let (encoding, kid, public_pem) = match alg {
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()),
            "rsa-1",
            RSA_PUBLIC,
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()),
            "ec-1",
            EC_PUBLIC,
        ),
        other => panic!("no bench key for {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".to_owned());
    let iat = now();
    let claims = TokenClaims {
        sub: SUBJECT,
        iss: ISSUER,
        aud: AUDIENCE,
        exp: iat + 3600,
        iat,
        jti: "5b0c6f0e-8d1a-4a4e-9c39-2f1d7d8e6a11",
        client_id: "events-web",
        scope: "events:read events:write",
    };
    let token = jsonwebtoken::encode(&header, &claims, &encoding.expect("test private key"))
        .expect("signing");
    Case {
        alg,
        tampered: tampered(&token),
        token,
        public_pem,
    }
}

/// The same token with `sub` changed in the payload and the signature kept.
fn tampered(token: &str) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("a JWS in compact form");
    };
    let json = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    let json = String::from_utf8(json).expect("UTF-8 payload");
    let changed = json.replace(SUBJECT, "user-43");
    assert_ne!(json, changed, "the payload names the subject");
    format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(changed))
}

fn request(token: &str) -> Request<Body> {
    let authorization = HeaderValue::try_from(format!("Bearer {token}")).expect("header");
    Request::get("/me")
        .header(AUTHORIZATION, authorization)
        .body(Body::empty())
        .expect("request")
}

fn no_auth() -> Router {
    Router::new().route("/me", get(|| async { "user-00" }))
}

fn jwt_authorizer(runtime: &Runtime, case: &Case) -> Router {
    let builder = match case.alg {
        Algorithm::RS256 => JwtAuthorizer::<PeerClaims>::from_rsa_pem_text(case.public_pem),
        Algorithm::ES256 => JwtAuthorizer::<PeerClaims>::from_ec_pem_text(case.public_pem),
        other => panic!("no bench key for {other:?}"),
    };
    let validation = Validation::new()
        .iss(&[ISSUER])
        .aud(&[AUDIENCE])
        .exp(true)
        .leeway(60)
        .algs(vec![case.alg]);
    let authorizer = runtime
        .block_on(builder.validation(validation).build())
        .expect("jwt-authorizer");
    Router::new()
        .route(
            "/me",
            get(|JwtClaims(claims): JwtClaims<PeerClaims>| async move { claims.sub }),
        )
        .layer(authorizer.into_layer())
}

fn send(runtime: &Runtime, app: &Router, token: &str) -> (StatusCode, String) {
    runtime.block_on(async {
        let response: Response<Body> = app
            .clone()
            .oneshot(request(token))
            .await
            .unwrap_or_else(|e: Infallible| match e {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("response body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    })
}

fn peer_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let case = case(alg);
        let baseline = no_auth();
        let (status, _) = send(&runtime, &baseline, &case.token);
        assert_eq!(
            status,
            StatusCode::OK,
            "the route without a layer answers 200"
        );

        let app = jwt_authorizer(&runtime, &case);
        let (status, body) = send(&runtime, &app, &case.token);
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, SUBJECT),
            "jwt-authorizer ({alg:?}) must accept the valid token"
        );
        let (status, body) = send(&runtime, &app, &case.tampered);
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "jwt-authorizer ({alg:?}) must refuse the tampered token; it answered {body:?}"
        );

        let mut group = c.benchmark_group(format!("peers/{alg:?}"));
        group.sample_size(50);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        let token = case.token.as_str();
        group.bench_function("no_auth", |b| {
            b.to_async(&runtime).iter_batched(
                || request(token),
                |req| baseline.clone().oneshot(req),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("jwt-authorizer", |b| {
            b.to_async(&runtime).iter_batched(
                || request(token),
                |req| app.clone().oneshot(req),
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

criterion_group!(benches, peer_benches);
criterion_main!(benches);
