//! Opaque tokens through RFC 7662 introspection (feature `introspection`), against a real
//! introspection endpoint on loopback whose answers each test sets: what is checked, what is
//! cached and for how long, one call per token, the 503 when the endpoint cannot answer, client
//! authentication, discovery, and the routing between local JWT verification and introspection.
#![cfg(all(feature = "introspection", feature = "axum"))]
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{AUDIENCE, ISSUER, Reply, app, builder, claims, get_with, now, send, token};
use http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tower_oauth2::introspection::Introspection;
use tower_oauth2::{AuthErrorKind, Authenticator, Issuer};

/// How the endpoint answers.
#[derive(Clone)]
enum Mode {
    /// The answer set for the token, else `{"active": false}`.
    Normal,
    Status(u16),
    /// 400 with an OAuth error code.
    BadRequest(&'static str),
    Garbage,
    NoActive,
    /// Waits this long, then answers normally.
    Slow(Duration),
    /// A body larger than any bound.
    Huge,
    /// Active, with `exp` a string.
    BadClaims,
}

struct Endpoint {
    base: String,
    answers: Mutex<HashMap<String, Value>>,
    mode: Mutex<Mode>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// The last call's `Authorization` header and form.
    last: Mutex<(Option<String>, HashMap<String, String>)>,
}

impl Endpoint {
    fn answer(&self, token: &str, answer: Value) {
        self.answers.lock().unwrap().insert(token.into(), answer);
    }

    fn mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("{}/introspect", self.base)
    }
}

async fn introspect(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    endpoint.calls.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    *endpoint.last.lock().unwrap() = (authorization, form.clone());
    let mode = endpoint.mode.lock().unwrap().clone();
    let answer = || {
        let token = form.get("token").cloned().unwrap_or_default();
        let answers = endpoint.answers.lock().unwrap();
        Json(
            answers
                .get(&token)
                .cloned()
                .unwrap_or(json!({"active": false})),
        )
        .into_response()
    };
    match mode {
        Mode::Normal => answer(),
        Mode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Mode::BadRequest(error) => {
            (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
        }
        Mode::Garbage => "<html>oops</html>".into_response(),
        Mode::NoActive => Json(json!({"sub": "x"})).into_response(),
        Mode::Slow(delay) => {
            let now = endpoint.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            endpoint.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            endpoint.in_flight.fetch_sub(1, Ordering::SeqCst);
            answer()
        }
        Mode::Huge => Json(json!({"active": true, "pad": "x".repeat(200_000)})).into_response(),
        Mode::BadClaims => {
            Json(json!({"active": true, "aud": AUDIENCE, "exp": "soon"})).into_response()
        }
    }
}

async fn metadata(State(endpoint): State<Arc<Endpoint>>) -> Json<Value> {
    Json(json!({
        "issuer": endpoint.base,
        "introspection_endpoint": endpoint.url(),
    }))
}

async fn endpoint() -> Arc<Endpoint> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let endpoint = Arc::new(Endpoint {
        base,
        answers: Mutex::default(),
        mode: Mutex::new(Mode::Normal),
        calls: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        most_in_flight: AtomicUsize::new(0),
        last: Mutex::default(),
    });
    let app = Router::new()
        .route("/introspect", post(introspect))
        .route("/.well-known/openid-configuration", get(metadata))
        .with_state(endpoint.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    endpoint
}

/// An active answer for the standard issuer and audience, with `scope`.
fn active(scope: &str) -> Value {
    json!({
        "active": true,
        "iss": ISSUER,
        "sub": "user-42",
        "client_id": "client-7",
        "aud": AUDIENCE,
        "scope": scope,
        "exp": now() + 300,
        "iat": now(),
        "token_type": "Bearer",
    })
}

fn config(endpoint: &Endpoint) -> Introspection {
    Introspection::new("events-api", "rs-secret")
        .endpoint(endpoint.url())
        .timeout(Duration::from_secs(2))
}

/// The standard issuer with its JWKS (JWTs verified locally) and introspection for the rest.
fn auth_with(config: Introspection) -> Authenticator {
    builder().introspection(config).build().unwrap()
}

const OPAQUE: &str = "2YotnFZFEjr1zCsicMWpAA";

#[tokio::test]
async fn an_active_opaque_token_reaches_the_handler_with_its_claims_and_scopes() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read profile"));
    let app = app(&auth_with(config(&idp)));

    let reply = get_with(&app, "/me", OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["sub"], "user-42");
    assert_eq!(reply.body["client_id"], "client-7");
    assert_eq!(reply.body["scopes"], json!(["events:read", "profile"]));
    // RequireScope sees the introspected scopes: one it has, one it lacks.
    assert_eq!(
        get_with(&app, "/events/1", OPAQUE).await.status,
        StatusCode::OK
    );
    let write = send(
        &app,
        Request::post("/events")
            .header("authorization", format!("Bearer {OPAQUE}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(write.error(), Some("insufficient_scope"));
    // Three requests, one call: the answer is cached.
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn the_verified_token_says_it_was_introspected() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let auth = auth_with(config(&idp));
    let verified = auth.verify_async(OPAQUE).await.unwrap();
    assert!(verified.is_introspected());
    assert_eq!(verified.algorithm(), None);
    assert_eq!(verified.issuer(), Some(ISSUER));
    assert_eq!(verified.audience().collect::<Vec<_>>(), [AUDIENCE]);
    // Once cached, the synchronous path answers too.
    assert_eq!(auth.verify(OPAQUE).unwrap().subject(), Some("user-42"));
    assert_eq!(auth.introspection_cache_len(), Some(1));
}

#[tokio::test]
async fn the_synchronous_verify_cannot_introspect_and_says_so() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let auth = auth_with(config(&idp));
    let error = auth.verify(OPAQUE).unwrap_err();
    assert_eq!(error.kind(), AuthErrorKind::IntrospectionUnavailable);
    assert!(error.description().contains("verify_async"), "{error}");
    assert_eq!(idp.calls(), 0);
}

#[tokio::test]
async fn a_local_issuers_jwt_is_verified_locally_and_never_sent_out() {
    let idp = endpoint().await;
    let app = app(&auth_with(config(&idp)));
    let reply = get_with(&app, "/events/1", &token("events:read")).await;
    assert_eq!(reply.status, StatusCode::OK);
    // A JWT of the local issuer with a bad signature is refused locally, not introspected.
    let good = token("events:read");
    // One signature character changed (not the last, whose low bits must stay zero).
    let at = good.len() - 10;
    let swapped = if &good[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &good[..at], &good[at + 1..]);
    let reply = get_with(&app, "/events/1", &forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        idp.calls(),
        0,
        "no token of the JWT issuer went to the endpoint"
    );
}

#[tokio::test]
async fn a_jwt_of_an_issuer_without_keys_is_introspected() {
    // The introspecting issuer is a second one without keys: its JWTs are opaque to us.
    let idp = endpoint().await;
    let other = "https://opaque.test";
    let mut claims = claims("events:read");
    claims["iss"] = other.into();
    let jwt = common::token_with(tower_oauth2::Algorithm::ES256, &claims);
    let mut answer = active("events:read");
    answer["iss"] = other.into();
    idp.answer(&jwt, answer);
    let auth = builder()
        .trust(
            Issuer::new(other)
                .audience(AUDIENCE)
                .introspection(config(&idp)),
        )
        .build()
        .unwrap();
    let app = app(&auth);
    let reply = get_with(&app, "/events/1", &jwt).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(idp.calls(), 1);
    // The local issuer's JWTs still never go out.
    assert_eq!(
        get_with(&app, "/events/1", &token("events:read"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(idp.calls(), 1);
}

/// One refused answer: status 401 `invalid_token` and the description.
async fn refused(answer: Value) -> Reply {
    let idp = endpoint().await;
    idp.answer(OPAQUE, answer);
    let app = app(&auth_with(config(&idp)));
    let reply = get_with(&app, "/events/1", OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(reply.error(), Some("invalid_token"));
    assert!(reply.challenge().contains("error=\"invalid_token\""));
    reply
}

#[tokio::test]
async fn the_answer_gets_a_jwts_claims_checks() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("inactive", json!({"active": false}), "not active"),
        ("other audience", json!({"aud": "other-api"}), "audience"),
        ("no audience", json!({"aud": null}), "no audience"),
        ("expired", json!({"exp": now() - 120}), "expired"),
        ("no exp", json!({"exp": null}), "expiry"),
        (
            "not yet valid",
            json!({"nbf": now() + 600}),
            "not yet valid",
        ),
        (
            "issued in the future",
            json!({"iat": now() + 600}),
            "future",
        ),
        (
            "another issuer",
            json!({"iss": "https://evil.test"}),
            "another issuer",
        ),
    ];
    for (name, change, reason) in cases {
        let mut answer = active("events:read");
        for (k, v) in change.as_object().unwrap() {
            answer[k] = v.clone();
        }
        let reply = refused(answer).await;
        assert!(
            reply.description().contains(reason),
            "{name}: {}",
            reply.description()
        );
    }
}

#[tokio::test]
async fn an_answer_about_a_refresh_token_is_refused() {
    // This crate's server, RFC 8693's URN, any case, and Keycloak's `typ`.
    for (member, value) in [
        ("token_type", "refresh_token"),
        (
            "token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
        ("token_type", "Refresh_Token"),
        ("typ", "Refresh"),
        ("typ", "Offline"),
    ] {
        let mut answer = active("events:read");
        answer[member] = json!(value);
        let reply = refused(answer).await;
        assert!(
            reply.description().contains("refresh token"),
            "{member}={value}: {}",
            reply.description()
        );
    }
    // An access token's types, and none at all, are accepted.
    for token_type in [json!("Bearer"), json!("N_A"), Value::Null] {
        let idp = endpoint().await;
        let mut answer = active("events:read");
        answer["token_type"] = token_type.clone();
        answer["typ"] = json!("Bearer");
        idp.answer(OPAQUE, answer);
        let app = app(&auth_with(config(&idp)));
        let reply = get_with(&app, "/events/1", OPAQUE).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{token_type}: {:?}",
            reply.body
        );
    }
}

#[tokio::test]
async fn an_answer_without_iss_is_the_issuers() {
    let idp = endpoint().await;
    let mut answer = active("events:read");
    answer.as_object_mut().unwrap().remove("iss");
    idp.answer(OPAQUE, answer);
    let auth = auth_with(config(&idp));
    let verified = auth.verify_async(OPAQUE).await.unwrap();
    assert_eq!(verified.issuer(), Some(ISSUER));
}

#[tokio::test]
async fn a_refusal_is_cached_for_the_negative_time_only() {
    let idp = endpoint().await;
    let auth = auth_with(config(&idp).negative_cache(Duration::from_millis(300)));
    let app = app(&auth);
    for _ in 0..3 {
        assert_eq!(
            get_with(&app, "/me", OPAQUE).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(idp.calls(), 1);
    // The token becomes active at the issuer; after the negative time it is asked again.
    idp.answer(OPAQUE, active("events:read"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_with(&app, "/me", OPAQUE).await.status, StatusCode::OK);
    assert_eq!(idp.calls(), 2);
}

#[tokio::test]
async fn an_active_answer_is_kept_at_most_max_cache_and_never_past_exp() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let app = app(&auth_with(
        config(&idp).max_cache(Duration::from_millis(300)),
    ));
    assert_eq!(get_with(&app, "/me", OPAQUE).await.status, StatusCode::OK);
    assert_eq!(get_with(&app, "/me", OPAQUE).await.status, StatusCode::OK);
    assert_eq!(idp.calls(), 1);
    // Revoked at the issuer: it takes effect when the entry ends.
    idp.answer(OPAQUE, json!({"active": false}));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        get_with(&app, "/me", OPAQUE).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(idp.calls(), 2);

    // An answer whose token expires in 2 s is kept no longer than that, whatever max_cache
    // says: after it, the endpoint is asked again (and now says the token lives on).
    let idp = endpoint().await;
    let mut answer = active("events:read");
    answer["exp"] = (now() + 2).into();
    idp.answer(OPAQUE, answer);
    let auth = builder()
        .leeway(Duration::ZERO)
        .introspection(config(&idp))
        .build()
        .unwrap();
    let short = common::app(&auth);
    assert_eq!(get_with(&short, "/me", OPAQUE).await.status, StatusCode::OK);
    idp.answer(OPAQUE, active("events:read"));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let reply = get_with(&short, "/me", OPAQUE).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(idp.calls(), 2, "the entry ended at exp");
}

#[tokio::test]
async fn max_cache_zero_asks_on_every_request() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let app = app(&auth_with(config(&idp).max_cache(Duration::ZERO)));
    for _ in 0..3 {
        assert_eq!(get_with(&app, "/me", OPAQUE).await.status, StatusCode::OK);
    }
    assert_eq!(idp.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_token_share_one_call() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    idp.mode(Mode::Slow(Duration::from_millis(300)));
    let app = app(&auth_with(config(&idp)));
    let requests = (0..32).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { get_with(&app, "/me", OPAQUE).await.status })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(idp.calls(), 1);
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

/// Checks a 503 answer: `Retry-After`, no challenge, `temporarily_unavailable`.
fn assert_unavailable(reply: &Reply, retry_after: &str) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.headers[header::RETRY_AFTER], retry_after);
    assert!(reply.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(reply.error(), Some("temporarily_unavailable"));
}

#[tokio::test]
async fn an_endpoint_that_cannot_answer_is_a_503_and_is_asked_again() {
    let modes = [
        ("500", Mode::Status(500)),
        ("401: our credentials", Mode::Status(401)),
        ("400 invalid_client", Mode::BadRequest("invalid_client")),
        ("400 invalid_request", Mode::BadRequest("invalid_request")),
        ("not JSON", Mode::Garbage),
        ("no active member", Mode::NoActive),
        ("claims of the wrong type", Mode::BadClaims),
        ("too large", Mode::Huge),
        ("too slow", Mode::Slow(Duration::from_secs(5))),
    ];
    for (name, mode) in modes {
        let idp = endpoint().await;
        idp.answer(OPAQUE, active("events:read"));
        idp.mode(mode);
        let config = config(&idp)
            .timeout(Duration::from_millis(400))
            .retry_after(Duration::from_millis(2500));
        let app = app(&auth_with(config));
        let reply = get_with(&app, "/me", OPAQUE).await;
        assert_unavailable(&reply, "3");
        // Failures are not cached: once the endpoint is back, the next request passes.
        idp.mode(Mode::Normal);
        let reply = get_with(&app, "/me", OPAQUE).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {:?}", reply.body);
        assert_eq!(idp.calls(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_400_unsupported_token_type_refuses_the_token_and_is_cached() {
    // oidc-provider answers so for a JWT, which it will not introspect.
    let idp = endpoint().await;
    idp.mode(Mode::BadRequest("unsupported_token_type"));
    let app = app(&auth_with(config(&idp)));
    for _ in 0..2 {
        let reply = get_with(&app, "/me", OPAQUE).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.error(), Some("invalid_token"));
        assert!(reply.description().contains("refused this token"));
    }
    assert_eq!(idp.calls(), 1);
}

#[tokio::test]
async fn a_cached_token_keeps_working_while_the_endpoint_is_down() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    idp.answer("another-token", active("events:read"));
    let app = app(&auth_with(config(&idp)));
    assert_eq!(get_with(&app, "/me", OPAQUE).await.status, StatusCode::OK);
    idp.mode(Mode::Status(503));
    assert_eq!(get_with(&app, "/me", OPAQUE).await.status, StatusCode::OK);
    assert_unavailable(&get_with(&app, "/me", "another-token").await, "5");
}

#[tokio::test]
async fn a_grpc_request_gets_unavailable_when_the_endpoint_is_down() {
    let idp = endpoint().await;
    idp.mode(Mode::Status(500));
    let app = app(&auth_with(config(&idp)));
    let request = Request::get("/me")
        .header("authorization", format!("Bearer {OPAQUE}"))
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["grpc-status"], "14");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_concurrency_calls_are_in_flight() {
    let idp = endpoint().await;
    let tokens: Vec<String> = (0..6).map(|i| format!("token-{i}")).collect();
    for token in &tokens {
        idp.answer(token, active("events:read"));
    }
    idp.mode(Mode::Slow(Duration::from_millis(300)));
    let app = app(&auth_with(config(&idp).max_concurrency(2)));
    let requests = tokens.into_iter().map(|token| {
        let app = app.clone();
        tokio::spawn(async move { get_with(&app, "/me", &token).await.status })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(idp.calls(), 6);
    assert_eq!(idp.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_call_that_waits_for_a_slot_past_the_timeout_is_a_503() {
    let idp = endpoint().await;
    idp.answer("slow-1", active("events:read"));
    idp.answer("slow-2", active("events:read"));
    idp.mode(Mode::Slow(Duration::from_millis(1000)));
    let config = config(&idp)
        .max_concurrency(1)
        .timeout(Duration::from_millis(1500));
    let app = app(&auth_with(config));
    let first = {
        let app = app.clone();
        tokio::spawn(async move { get_with(&app, "/me", "slow-1").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The one slot is taken for 1 s; what is left of the second call's 1.5 s is too short.
    let second = get_with(&app, "/me", "slow-2").await;
    assert_unavailable(&second, "5");
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn client_secret_basic_is_the_default_and_post_sends_the_form() {
    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let auth = auth_with(config(&idp).token_type_hint("access_token"));
    auth.verify_async(OPAQUE).await.unwrap();
    let (authorization, form) = idp.last.lock().unwrap().clone();
    // base64("events-api:rs-secret")
    assert_eq!(
        authorization.as_deref(),
        Some("Basic ZXZlbnRzLWFwaTpycy1zZWNyZXQ=")
    );
    assert_eq!(form.get("token").map(String::as_str), Some(OPAQUE));
    assert_eq!(
        form.get("token_type_hint").map(String::as_str),
        Some("access_token")
    );
    assert!(!form.contains_key("client_secret"));

    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let auth = auth_with(config(&idp).client_secret_post());
    auth.verify_async(OPAQUE).await.unwrap();
    let (authorization, form) = idp.last.lock().unwrap().clone();
    assert_eq!(authorization, None);
    assert_eq!(
        form.get("client_id").map(String::as_str),
        Some("events-api")
    );
    assert_eq!(
        form.get("client_secret").map(String::as_str),
        Some("rs-secret")
    );
    assert!(!form.contains_key("token_type_hint"));
}

#[tokio::test]
async fn the_endpoint_is_discovered_from_the_issuers_metadata() {
    let idp = endpoint().await;
    idp.answer(
        OPAQUE,
        json!({
            "active": true, "aud": AUDIENCE, "exp": now() + 300, "sub": "from-discovery"
        }),
    );
    // An issuer without keys: no JWKS is discovered, only the introspection endpoint.
    let auth = Authenticator::builder()
        .issuer(idp.base.clone())
        .audience(AUDIENCE)
        .introspection(Introspection::new("events-api", "rs-secret"))
        .build()
        .unwrap();
    let verified = auth.verify_async(OPAQUE).await.unwrap();
    assert_eq!(verified.subject(), Some("from-discovery"));
    assert_eq!(verified.issuer(), Some(idp.base.as_str()));
    assert!(
        auth.key_source_state().is_none(),
        "no JWKS source was started"
    );
}

#[tokio::test]
async fn a_metadata_document_that_never_comes_is_a_503_within_the_timeout() {
    // An issuer whose metadata endpoint accepts and never answers: discovery is part of the
    // call and its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let auth = Authenticator::builder()
        .issuer(issuer)
        .audience(AUDIENCE)
        .introspection(Introspection::new("rs", "secret").timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    let app = app(&auth);
    let started = std::time::Instant::now();
    assert_unavailable(&get_with(&app, "/me", OPAQUE).await, "5");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dpop_bound_introspected_token_is_not_a_bearer_token() {
    let idp = endpoint().await;
    let mut answer = active("events:read");
    answer["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    answer["token_type"] = "DPoP".into();
    idp.answer(OPAQUE, answer);
    let app = app(&auth_with(config(&idp)));
    let reply = get_with(&app, "/me", OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.description().contains("sender-constrained"),
        "{}",
        reply.description()
    );
}

#[tokio::test]
async fn role_claims_and_required_claims_apply_to_the_answer() {
    let idp = endpoint().await;
    let mut answer = active("");
    answer["roles"] = json!(["events:read"]);
    answer["tenant"] = "acme".into();
    idp.answer(OPAQUE, answer);
    let auth = builder()
        .scopes_from_claim(["roles"])
        .required_claim_value("tenant", "acme")
        .introspection(config(&idp))
        .build()
        .unwrap();
    assert_eq!(
        get_with(&app(&auth), "/events/1", OPAQUE).await.status,
        StatusCode::OK
    );

    let idp = endpoint().await;
    idp.answer(OPAQUE, active("events:read"));
    let auth = builder()
        .required_claim_value("tenant", "acme")
        .introspection(config(&idp))
        .build()
        .unwrap();
    let reply = get_with(&app(&auth), "/events/1", OPAQUE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.description().contains("tenant"));
}

#[test]
fn configuration_mistakes_are_errors() {
    let base = || Introspection::new("rs", "secret").endpoint("http://127.0.0.1:1/introspect");
    let cases: Vec<(&str, tower_oauth2::AuthenticatorBuilder)> = vec![
        (
            "empty secret",
            builder().introspection(Introspection::new("rs", "").endpoint("https://x.test/i")),
        ),
        (
            "plain http endpoint",
            builder().introspection(base().endpoint("http://idp.test/introspect")),
        ),
        (
            "zero timeout",
            builder().introspection(base().timeout(Duration::ZERO)),
        ),
        (
            "zero concurrency",
            builder().introspection(base().max_concurrency(0)),
        ),
        (
            "two introspecting issuers",
            builder().introspection(base()).trust(
                Issuer::new("https://b.test")
                    .audience("x")
                    .introspection(base()),
            ),
        ),
        (
            "discovery from a plain-http issuer",
            Authenticator::builder()
                .issuer("http://idp.test")
                .audience("x")
                .introspection(Introspection::new("rs", "secret")),
        ),
    ];
    for (name, builder) in cases {
        let error = builder
            .build()
            .err()
            .unwrap_or_else(|| panic!("{name}: built"));
        assert!(!error.to_string().contains("secret\""), "{name}: {error}");
    }
}

#[tokio::test]
async fn debug_and_errors_never_show_the_secret_or_the_token() {
    let idp = endpoint().await;
    idp.mode(Mode::Status(500));
    let config = Introspection::new("events-api", "do-not-print-me").endpoint(idp.url());
    assert!(!format!("{config:?}").contains("do-not-print-me"));
    let auth = auth_with(config);
    assert!(!format!("{auth:?}").contains("do-not-print-me"));
    let error = auth.verify_async(OPAQUE).await.unwrap_err();
    assert!(!format!("{error:?} {error}").contains("do-not-print-me"));
    assert!(!format!("{error:?} {error}").contains(OPAQUE));
}
