//! Remote JWKS against a real HTTP server on 127.0.0.1:0 whose answers the tests control:
//! rotation, outages of every kind, an unknown-kid flood, max-age and ETag, lazy start,
//! shutdown.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use serde_json::{Value, json};
use tower_oauth2::Algorithm;
use tower_oauth2::{AuthErrorKind, Authenticator};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Normal,
    Status500,
    Html,
    Truncated,
    Hang,
    /// Answers normally after 300 ms.
    Slow,
}

struct Idp {
    /// `http://127.0.0.1:PORT`, the issuer its metadata names.
    base: String,
    jwks: Mutex<Value>,
    /// Which metadata document it serves: "oidc", "oauth" (RFC 8414) or "none".
    metadata_at: Mutex<&'static str>,
    /// The `issuer` its metadata names (defaults to `base`).
    metadata_issuer: Mutex<Option<String>>,
    /// The path its metadata names as `jwks_uri`.
    jwks_path: Mutex<&'static str>,
    metadata_requests: AtomicUsize,
    custom_client_seen: AtomicUsize,
    mode: Mutex<Mode>,
    max_age: Mutex<Option<u64>>,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
}

impl Idp {
    fn keys(&self, kids: &[&str]) {
        let all: Value = serde_json::from_str(JWKS).unwrap();
        let keys: Vec<Value> = all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
            .cloned()
            .collect();
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn metadata(
    State(idp): State<Arc<Idp>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
) -> Response {
    idp.metadata_requests.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key("x-custom-client") {
        idp.custom_client_seen.fetch_add(1, Ordering::SeqCst);
    }
    let serves = *idp.metadata_at.lock().unwrap();
    let oidc = uri.path().ends_with("openid-configuration");
    if serves == "none" || oidc != (serves == "oidc") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let issuer = idp
        .metadata_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| idp.base.clone());
    let jwks_uri = format!("{}{}", idp.base, *idp.jwks_path.lock().unwrap());
    axum::Json(json!({ "issuer": issuer, "jwks_uri": jwks_uri })).into_response()
}

async fn jwks(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    idp.requests.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key("x-custom-client") {
        idp.custom_client_seen.fetch_add(1, Ordering::SeqCst);
    }
    let mode = *idp.mode.lock().unwrap();
    let body = idp.jwks.lock().unwrap().to_string();
    let etag = format!(
        "\"{:x}\"",
        body.len() * 31 + body.bytes().map(usize::from).sum::<usize>()
    );
    match mode {
        Mode::Status500 => return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        Mode::Html => {
            return (
                [(header::CONTENT_TYPE, "text/html")],
                "<html>maintenance</html>",
            )
                .into_response();
        }
        Mode::Truncated => return body[..body.len() / 2].to_owned().into_response(),
        Mode::Hang => tokio::time::sleep(Duration::from_secs(5)).await,
        Mode::Slow => tokio::time::sleep(Duration::from_millis(300)).await,
        Mode::Normal => {}
    }
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        idp.not_modified.fetch_add(1, Ordering::SeqCst);
        (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
    } else {
        ([(header::ETAG, etag)], body).into_response()
    };
    if let Some(max_age) = *idp.max_age.lock().unwrap() {
        let value = format!("public, max-age={max_age}").parse().unwrap();
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Starts an identity provider serving the given kids of the test JWKS.
async fn idp(kids: &[&str]) -> (Arc<Idp>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = Arc::new(Idp {
        base: base.clone(),
        jwks: Mutex::new(Value::Null),
        metadata_at: Mutex::new("oidc"),
        metadata_issuer: Mutex::new(None),
        jwks_path: Mutex::new("/jwks.json"),
        metadata_requests: AtomicUsize::new(0),
        custom_client_seen: AtomicUsize::new(0),
        mode: Mutex::new(Mode::Normal),
        max_age: Mutex::new(None),
        requests: AtomicUsize::new(0),
        not_modified: AtomicUsize::new(0),
    });
    idp.keys(kids);
    let app = Router::new()
        .route("/jwks.json", get(jwks))
        .route("/keys/v2", get(jwks))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (idp, format!("{base}/jwks.json"))
}

fn remote(url: &str) -> tower_oauth2::AuthenticatorBuilder {
    provider();
    Authenticator::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(url)
        .jwks_timeout(Duration::from_millis(500))
}

fn token_for(alg: Algorithm) -> String {
    token_with(alg, &claims("events:read"))
}

#[tokio::test]
async fn rotation_new_key_after_one_refetch_removed_key_after_next_refresh() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url).build().unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    assert_eq!(
        get_with(&app, "/me", &token_for(Algorithm::ES256))
            .await
            .status,
        StatusCode::OK
    );

    // The provider adds a key and signs with it.
    idp.keys(&["ec-1", "ed-1"]);
    let before = idp.requests();
    let reply = get_with(&app, "/me", &token_for(Algorithm::EdDSA)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        idp.requests(),
        before + 1,
        "exactly one refetch for the new kid"
    );
    assert_eq!(
        get_with(&app, "/me", &token_for(Algorithm::EdDSA))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(idp.requests(), before + 1, "the new key is cached");

    // The provider retires the old key; the next refresh drops it.
    idp.keys(&["ed-1"]);
    auth.refresh_keys().await.unwrap();
    let reply = get_with(&app, "/me", &token_for(Algorithm::ES256)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.description(), "no key with this kid");
    let state = auth.key_source_state().unwrap();
    assert_eq!(state.key_ids, vec!["ed-1"]);
    assert!(state.last_error.is_none() && state.last_success.is_some());
    assert_eq!(
        state.fetch_count,
        idp.requests() as u64,
        "every fetch is counted"
    );
}

#[tokio::test]
async fn outages_keep_the_cached_keys_and_recovery_picks_up_new_ones() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url).build().unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    for mode in [Mode::Status500, Mode::Html, Mode::Truncated, Mode::Hang] {
        idp.set_mode(mode);
        let error = auth.refresh_keys().await.unwrap_err().to_string();
        let reply = get_with(&app, "/me", &token_for(Algorithm::ES256)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{mode:?}: cached keys must keep working"
        );
        let state = auth.key_source_state().unwrap();
        assert_eq!(
            state.last_error.as_deref(),
            Some(error.as_str()),
            "{mode:?}"
        );
        assert_eq!(state.key_ids, vec!["ec-1"], "{mode:?}");
    }
    idp.set_mode(Mode::Normal);
    idp.keys(&["ec-1", "rsa-1"]);
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        get_with(&app, "/me", &token_for(Algorithm::RS256))
            .await
            .status,
        StatusCode::OK
    );
    assert!(auth.key_source_state().unwrap().last_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_costs_one_fetch_per_cooldown() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    let before = idp.requests();
    let (key, _) = signing_key(Algorithm::ES256);
    let claims = claims("").to_string();
    // Header-only variations of one signed token: the signature is never reached for an
    // unknown kid, so one signature serves them all.
    let good = sign_raw(
        r#"{"alg":"ES256","kid":"ec-1"}"#,
        &claims,
        &key,
        Algorithm::ES256,
    );
    let rest = good.split_once('.').unwrap().1.to_owned();
    let forged: Vec<String> = (0..10_000)
        .map(|i| {
            format!(
                "{}.{rest}",
                b64(format!(r#"{{"alg":"ES256","kid":"forged-{i}"}}"#))
            )
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for token in forged {
        let app = app.clone();
        tasks.spawn(async move { get_with(&app, "/me", &token).await.status });
    }
    let valid = token_for(Algorithm::ES256);
    for _ in 0..20 {
        let app = app.clone();
        let valid = valid.clone();
        tasks.spawn(async move {
            let status = get_with(&app, "/me", &valid).await.status;
            assert_eq!(
                status,
                StatusCode::OK,
                "a valid request failed during the flood"
            );
            StatusCode::IM_A_TEAPOT
        });
    }
    let mut unauthorized = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::IM_A_TEAPOT => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(unauthorized, 10_000);
    assert!(
        idp.requests() - before == 1,
        "{} fetches for one cooldown",
        idp.requests() - before
    );
}

#[tokio::test]
async fn max_age_sets_the_refresh_interval_within_bounds_and_etag_revalidates() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_refresh_bounds(Duration::from_secs(300), Duration::from_secs(3600))
        .build()
        .unwrap();
    for (max_age, expected) in [
        (Some(600), 600),
        (Some(10), 300),
        (Some(999_999), 3600),
        (None, 3600),
    ] {
        *idp.max_age.lock().unwrap() = max_age;
        idp.keys(&["ec-1", if max_age.is_some() { "ed-1" } else { "rsa-1" }]);
        auth.refresh_keys().await.unwrap();
        let interval = auth.key_source_state().unwrap().refresh_interval;
        assert_eq!(
            interval,
            Some(Duration::from_secs(expected)),
            "max-age {max_age:?}"
        );
    }
    let not_modified = idp.not_modified.load(Ordering::SeqCst);
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        idp.not_modified.load(Ordering::SeqCst),
        not_modified + 1,
        "If-None-Match sent"
    );
    let state = auth.key_source_state().unwrap();
    assert_eq!(state.key_ids.len(), 2, "a 304 keeps the keys");
}

#[tokio::test]
async fn lazy_start_answers_401_until_the_first_fetch_succeeds() {
    let (idp, url) = idp(&["ec-1"]).await;
    idp.set_mode(Mode::Status500);
    let auth = remote(&url)
        .jwks_cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    assert!(
        auth.refresh_keys().await.is_err(),
        "fail fast is the caller's choice"
    );
    let app = app(&auth);
    let reply = get_with(&app, "/me", &token_for(Algorithm::ES256)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), Some("invalid_token"));
    assert_eq!(
        reply.description(),
        "the issuer's signing keys are not available"
    );
    idp.set_mode(Mode::Normal);
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        get_with(&app, "/me", &token_for(Algorithm::ES256))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn background_refresh_runs_and_stops_when_the_authenticator_is_dropped() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_refresh_bounds(Duration::from_millis(50), Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let running = idp.requests();
    assert!(
        running >= 2,
        "the background task refreshes ({running} fetches)"
    );
    drop(auth);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = idp.requests();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        idp.requests(),
        after_drop,
        "no fetch after the last authenticator is gone"
    );
}

#[tokio::test]
async fn remote_configuration_mistakes() {
    for (url, needle) in [
        ("http://idp.example.com/jwks", "must be https"),
        ("ftp://127.0.0.1/jwks", "must be https"),
        ("not a url", "relative URL without a base"),
    ] {
        let err = remote(url).build().unwrap_err().to_string();
        assert!(err.contains(needle), "{url}: {err}");
    }
    let both = remote("https://idp.example.com/jwks")
        .keys(tower_oauth2::KeySet::from_jwks_json(JWKS).unwrap());
    assert!(both.build().unwrap_err().to_string().contains("not both"));
    assert!(
        remote("https://idp.example.com/jwks")
            .jwks_refresh_bounds(Duration::from_secs(10), Duration::from_secs(5))
            .build()
            .is_err()
    );
}

#[test]
fn a_remote_source_outside_a_runtime_is_a_config_error() {
    let err = remote("https://idp.example.com/jwks")
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn unknown_kids_within_the_cooldown_get_an_instant_401_and_after_it_a_new_fetch() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_cooldown(Duration::from_millis(300))
        .build()
        .unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    let (key, _) = signing_key(Algorithm::ES256);
    let forged = |kid: &str| {
        let header = format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#);
        sign_raw(&header, &claims("").to_string(), &key, Algorithm::ES256)
    };
    let before = idp.requests();
    assert_eq!(
        get_with(&app, "/me", &forged("a")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(idp.requests(), before + 1, "the first unknown kid fetches");
    assert_eq!(
        get_with(&app, "/me", &forged("b")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(idp.requests(), before + 1, "within the cooldown: no fetch");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        get_with(&app, "/me", &forged("c")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        idp.requests(),
        before + 2,
        "after the cooldown: one more fetch"
    );
    let err = auth.verify(&forged("d")).unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::UnknownKey);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_rotated_kid_during_the_fetch_share_it() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    idp.keys(&["ec-1", "ed-1"]);
    idp.set_mode(Mode::Slow);
    let before = idp.requests();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.spawn(async move {
            get_with(&app, "/me", &token_for(Algorithm::EdDSA))
                .await
                .status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(
            status.unwrap(),
            StatusCode::OK,
            "a request waited for the shared fetch"
        );
    }
    assert_eq!(idp.requests(), before + 1, "one fetch for all of them");
}

#[tokio::test]
async fn a_cancelled_request_does_not_cancel_its_refetch() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    idp.keys(&["ec-1", "ed-1"]);
    idp.set_mode(Mode::Slow);
    let rotated = token_for(Algorithm::EdDSA);
    let cancelled =
        tokio::time::timeout(Duration::from_millis(50), get_with(&app, "/me", &rotated));
    assert!(
        cancelled.await.is_err(),
        "the request was dropped while the fetch ran"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = idp.requests();
    assert_eq!(get_with(&app, "/me", &rotated).await.status, StatusCode::OK);
    assert_eq!(
        idp.requests(),
        before,
        "the fetch finished on its own; the new key is cached"
    );
}

#[tokio::test]
async fn cached_keys_validate_while_a_fetch_hangs() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url)
        .jwks_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    auth.refresh_keys().await.unwrap();
    let app = app(&auth);
    idp.set_mode(Mode::Hang);
    let hanging = {
        let auth = auth.clone();
        tokio::spawn(async move { auth.refresh_keys().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    assert_eq!(
        get_with(&app, "/me", &token_for(Algorithm::ES256))
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the request did not wait for the fetch"
    );
    assert!(!hanging.is_finished(), "the fetch was still hanging");
    hanging.abort();
}

#[tokio::test]
async fn the_background_refresh_retries_after_failures_and_recovers_on_its_own() {
    let (idp, url) = idp(&["ec-1"]).await;
    idp.set_mode(Mode::Status500);
    let auth = remote(&url)
        .jwks_refresh_bounds(Duration::from_millis(50), Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let state = auth.key_source_state().unwrap();
    assert!(state.last_error.is_some() && state.key_ids.is_empty());
    let failures = idp.requests();
    assert!(failures >= 2, "retried ({failures} attempts)");
    idp.set_mode(Mode::Normal);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let state = auth.key_source_state().unwrap();
    assert_eq!(
        state.key_ids,
        vec!["ec-1"],
        "recovered without help: {state:?}"
    );
    assert_eq!(
        get_with(&app(&auth), "/me", &token_for(Algorithm::ES256))
            .await
            .status,
        StatusCode::OK
    );
}

/// A token from `idp`: its base URL is the issuer.
fn token_from(idp: &Idp, alg: Algorithm) -> String {
    let mut c = claims("events:read");
    c["iss"] = json!(idp.base);
    token_with(alg, &c)
}

fn discovering(idp: &Idp) -> tower_oauth2::AuthenticatorBuilder {
    provider();
    Authenticator::builder()
        .issuer(&idp.base)
        .audience(AUDIENCE)
        .jwks_timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn discovery_from_the_issuer_alone() {
    let (idp, _) = idp(&["ec-1"]).await;
    let auth = discovering(&idp).build().unwrap();
    auth.refresh_keys().await.unwrap();
    let reply = get_with(&app(&auth), "/me", &token_from(&idp, Algorithm::ES256)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let state = auth.key_source_state().unwrap();
    assert_eq!(state.url, format!("{}/jwks.json", idp.base));
    assert_eq!(state.discovered_from.as_deref(), Some(idp.base.as_str()));
}

#[tokio::test]
async fn discovery_falls_back_to_rfc8414_metadata() {
    let (idp, _) = idp(&["ec-1"]).await;
    *idp.metadata_at.lock().unwrap() = "oauth";
    let auth = discovering(&idp).build().unwrap();
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        idp.metadata_requests.load(Ordering::SeqCst),
        2,
        "OIDC first, then RFC 8414"
    );
    let reply = get_with(&app(&auth), "/me", &token_from(&idp, Algorithm::ES256)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn discovery_mismatch_is_a_clear_configuration_error() {
    let (idp, _) = idp(&["ec-1"]).await;
    *idp.metadata_issuer.lock().unwrap() = Some("https://someone-else.example".into());
    let auth = discovering(&idp).build().unwrap();
    let err = auth.refresh_keys().await.unwrap_err().to_string();
    assert!(err.contains("discovery mismatch"), "{err}");
    assert!(err.contains("https://someone-else.example"), "{err}");
    assert_eq!(
        idp.requests(),
        0,
        "no JWKS is fetched from a mismatched document"
    );
    let reply = get_with(&app(&auth), "/me", &token_from(&idp, Algorithm::ES256)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failing_discovered_jwks_url_is_rediscovered() {
    let (idp, _) = idp(&["ec-1"]).await;
    let auth = discovering(&idp).build().unwrap();
    auth.refresh_keys().await.unwrap();
    let before = idp.metadata_requests.load(Ordering::SeqCst);
    // The provider moves its keys; the old URL answers 500 from now on.
    idp.set_mode(Mode::Status500);
    assert!(auth.refresh_keys().await.is_err());
    idp.set_mode(Mode::Normal);
    *idp.jwks_path.lock().unwrap() = "/keys/v2";
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        idp.metadata_requests.load(Ordering::SeqCst),
        before + 1,
        "rediscovered once"
    );
    let state = auth.key_source_state().unwrap();
    assert_eq!(state.url, format!("{}/keys/v2", idp.base));
}

#[tokio::test]
async fn a_custom_http_client_is_used_for_every_fetch() {
    let (idp, url) = idp(&["ec-1"]).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-custom-client", "yes".parse().unwrap());
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let auth = remote(&url).http_client(client).build().unwrap();
    auth.refresh_keys().await.unwrap();
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        idp.custom_client_seen.load(Ordering::SeqCst),
        idp.requests()
    );
    assert!(idp.requests() >= 2);
}

#[tokio::test]
async fn oversized_or_overfull_key_sets_are_refused_and_the_old_keys_kept() {
    let (idp, url) = idp(&["ec-1"]).await;
    let auth = remote(&url).build().unwrap();
    auth.refresh_keys().await.unwrap();
    let big_key = |i: usize| {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": format!("k{i}"),
               "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE", "pad": "x".repeat(6000)})
    };
    *idp.jwks.lock().unwrap() = json!({ "keys": (0..100).map(big_key).collect::<Vec<_>>() });
    let err = auth.refresh_keys().await.unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    let many = (0..101)
        .map(|i| {
            json!({"kty": "OKP", "crv": "Ed25519", "kid": format!("k{i}"),
                        "x": "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"})
        })
        .collect::<Vec<_>>();
    *idp.jwks.lock().unwrap() = json!({ "keys": many });
    let err = auth.refresh_keys().await.unwrap_err().to_string();
    assert!(err.contains("at most 100"), "{err}");
    assert_eq!(auth.key_source_state().unwrap().key_ids, vec!["ec-1"]);
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_invalidates_the_tokens_it_verified() {
    let (idp, url) = idp(&["ec-1", "rsa-1"]).await;
    let auth = remote(&url).build().unwrap();
    auth.refresh_keys().await.unwrap();
    let ec = token_for(Algorithm::ES256);
    let rsa = token_for(Algorithm::RS256);
    auth.verify(&ec).unwrap();
    auth.verify(&rsa).unwrap();
    assert_eq!(auth.token_cache_stats().unwrap().0, 2, "both cached");
    idp.keys(&["rsa-1"]);
    auth.refresh_keys().await.unwrap();
    assert_eq!(
        auth.verify(&ec).unwrap_err().kind(),
        tower_oauth2::AuthErrorKind::UnknownKey
    );
    // A token whose key is still there verifies (again) after the set changed.
    auth.verify(&rsa).unwrap();
}
