//! Metrics (feature `metrics`): a real Prometheus recorder (`metrics-exporter-prometheus`)
//! installed in this test process, scraped over HTTP from a `/metrics` route on loopback, while
//! requests go through the layer, a remote JWKS, an introspection endpoint and the
//! authorization server. Each check reads a counter, makes requests, and reads it again.
#![cfg(all(feature = "metrics", feature = "server", feature = "introspection"))]
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod oauth_http;

use std::sync::OnceLock;

use axum::Router;
use axum::routing::{get, post};
use common::{AUDIENCE, ISSUER, app, builder, get_with, now, token};
use http::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tower_oauth2::Authenticator;
use tower_oauth2::introspection::Introspection;
use tower_oauth2::server::{ClientRegistration, ClientSecret};
use tower_oauth2::telemetry;

/// The process's recorder and a `/metrics` endpoint on loopback that renders it.
async fn scrape_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(url) = URL.get() {
        return url;
    }
    let handle = HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let app = Router::new().route("/metrics", get(move || async move { handle.render() }));
    // Each test has a runtime of its own: the scrape server runs on a thread with its own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    URL.get_or_init(|| url)
}

/// One scrape: the Prometheus text.
async fn scrape() -> String {
    let response = reqwest::get(scrape_url().await).await.unwrap();
    response.text().await.unwrap()
}

/// The value of the series `name{labels}` (labels in any order), 0 when absent.
async fn value(name: &str, labels: &[(&str, &str)]) -> f64 {
    series(&scrape().await, name, labels)
}

fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            continue;
        }
        let rest = rest.trim_end_matches('}');
        if labels
            .iter()
            .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")))
        {
            return value.parse().unwrap();
        }
    }
    0.0
}

#[tokio::test]
async fn the_layer_counts_outcomes_by_issuer_and_reason_and_the_cache() {
    scrape_url().await;
    // An issuer of its own: no other test moves its series.
    let issuer = "https://metrics-layer.test";
    let mut claims = common::claims("events:read");
    claims["iss"] = issuer.into();
    let good = common::token_with(tower_oauth2::Algorithm::ES256, &claims);
    claims["exp"] = (now() - 600).into();
    let expired = common::token_with(tower_oauth2::Algorithm::ES256, &claims);
    let auth = Authenticator::builder()
        .issuer(issuer)
        .audience(AUDIENCE)
        .keys(tower_oauth2::KeySet::from_jwks_json(common::JWKS).unwrap())
        .build()
        .unwrap();
    let app = app(&auth);

    let accepted = [
        ("issuer", issuer),
        ("outcome", "accepted"),
        ("reason", "ok"),
    ];
    let expired_series = [
        ("issuer", issuer),
        ("outcome", "rejected"),
        ("reason", "expired"),
    ];
    let scope_series = [
        ("issuer", issuer),
        ("outcome", "rejected"),
        ("reason", "insufficient_scope"),
    ];
    let before = (
        value(telemetry::AUTH, &accepted).await,
        value(telemetry::AUTH, &expired_series).await,
        value(telemetry::AUTH, &scope_series).await,
        value(telemetry::TOKEN_CACHE, &[("result", "hit")]).await,
        value(&format!("{}_count", telemetry::VALIDATION_SECONDS), &[]).await,
    );
    for _ in 0..3 {
        assert_eq!(get_with(&app, "/me", &good).await.status, StatusCode::OK);
    }
    assert_eq!(
        get_with(&app, "/me", &expired).await.status,
        StatusCode::UNAUTHORIZED
    );
    let post = http::Request::post("/events")
        .header("authorization", format!("Bearer {good}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(common::send(&app, post).await.status, StatusCode::FORBIDDEN);

    // 3 GETs and the POST passed the layer; the POST was refused by RequireScope.
    assert_eq!(value(telemetry::AUTH, &accepted).await - before.0, 4.0);
    assert_eq!(
        value(telemetry::AUTH, &expired_series).await - before.1,
        1.0
    );
    assert_eq!(value(telemetry::AUTH, &scope_series).await - before.2, 1.0);
    // The first request verified the token; the other three found it in the cache.
    assert!(value(telemetry::TOKEN_CACHE, &[("result", "hit")]).await - before.3 >= 3.0);
    assert!(value(&format!("{}_count", telemetry::VALIDATION_SECONDS), &[]).await > before.4);
    assert!(value(telemetry::CACHED_TOKENS, &[("cache", "token")]).await >= 1.0);
}

#[tokio::test]
async fn a_claimed_issuer_that_is_not_configured_is_labelled_other() {
    scrape_url().await;
    let auth = builder().build().unwrap();
    let app = app(&auth);
    let mut claims = common::claims("events:read");
    let attacker_issuer = format!("https://attacker-{}.test", now());
    claims["iss"] = attacker_issuer.clone().into();
    let foreign = common::token_with(tower_oauth2::Algorithm::ES256, &claims);
    let other = [
        ("issuer", "other"),
        ("outcome", "rejected"),
        ("reason", "wrong_issuer"),
    ];
    let before = value(telemetry::AUTH, &other).await;
    assert_eq!(
        get_with(&app, "/me", &foreign).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(value(telemetry::AUTH, &other).await - before, 1.0);
    // No token: no issuer to name.
    let none = [
        ("issuer", "none"),
        ("outcome", "rejected"),
        ("reason", "missing_token"),
    ];
    let before = value(telemetry::AUTH, &none).await;
    let anonymous = http::Request::get("/me")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        common::send(&app, anonymous).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(value(telemetry::AUTH, &none).await - before, 1.0);
    let text = scrape().await;
    assert!(
        !text.contains(&attacker_issuer),
        "a client-supplied iss became a label"
    );
    // The configured issuer's series exist; no subject or client id is ever a label.
    let _ = get_with(&app, "/me", &token("events:read")).await;
    let text = scrape().await;
    assert!(text.contains(ISSUER));
    assert!(!text.contains("user-42") && !text.contains("client-7"));
}

#[tokio::test]
async fn jwks_fetches_and_keys_are_counted_per_issuer() {
    scrape_url().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Router::new().route("/jwks.json", get(|| async { common::JWKS }));
    tokio::spawn(async move { axum::serve(listener, jwks).await.unwrap() });
    let remote = |issuer: &str, url: String| {
        Authenticator::builder()
            .issuer(issuer)
            .audience(AUDIENCE)
            .jwks_url(url)
            .build()
            .unwrap()
    };
    let issuer = "https://metrics-jwks.test";
    let auth = remote(issuer, format!("{base}/jwks.json"));
    auth.refresh_keys().await.unwrap();
    let ok = [("issuer", issuer), ("outcome", "ok")];
    assert!(value(telemetry::JWKS_FETCHES, &ok).await >= 1.0);
    let held = auth.key_source_state().unwrap().key_ids.len() as f64;
    assert_eq!(value(telemetry::KEYS, &[("issuer", issuer)]).await, held);

    let down = "https://metrics-jwks-down.test";
    let failing = remote(down, format!("{base}/missing.json"));
    assert!(failing.refresh_keys().await.is_err());
    assert!(
        value(
            telemetry::JWKS_FETCHES,
            &[("issuer", down), ("outcome", "error")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn introspection_calls_are_counted_by_outcome() {
    scrape_url().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = "https://metrics-introspection.test";
    let endpoint = Router::new().route(
        "/introspect",
        post(move |body: String| async move {
            if body.contains("token=good") {
                axum::Json(json!({
                    "active": true, "iss": issuer, "aud": AUDIENCE, "exp": now() + 300
                }))
            } else {
                axum::Json(json!({"active": false}))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });
    let auth = Authenticator::builder()
        .issuer(issuer)
        .audience(AUDIENCE)
        .introspection(Introspection::new("rs", "secret").endpoint(format!("{base}/introspect")))
        .build()
        .unwrap();
    assert!(auth.verify_async("good").await.is_ok());
    assert!(auth.verify_async("good").await.is_ok()); // cached: no second call
    assert!(auth.verify_async("bad").await.is_err());
    let active = [("issuer", issuer), ("outcome", "active")];
    let inactive = [("issuer", issuer), ("outcome", "inactive")];
    assert_eq!(value(telemetry::INTROSPECTION_CALLS, &active).await, 1.0);
    assert_eq!(value(telemetry::INTROSPECTION_CALLS, &inactive).await, 1.0);
    assert!(value(telemetry::CACHED_TOKENS, &[("cache", "introspection")]).await >= 1.0);
}

#[tokio::test]
async fn the_server_counts_issued_and_refused_tokens_client_auth_failures_and_revocations() {
    scrape_url().await;
    common::provider();
    let h = oauth_http::serve(|b| b).await;
    let secret = "metrics-secret-0123456789-0123456789-abc";
    let mut client = ClientRegistration::new("metrics");
    client.client_id = Some("metrics-client".into());
    client.grant_types = Some(vec!["client_credentials".into()]);
    client.scopes = vec!["read".into()];
    client.secret = Some(ClientSecret::from_value(secret).unwrap());
    h.server.register_client(client).await.unwrap();
    let token_url = format!("{}/oauth2/token", h.base);
    let request = |secret: &str, grant: &str| {
        h.http
            .post(&token_url)
            .basic_auth("metrics-client", Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(oauth_http::form(&[("grant_type", grant)]))
    };
    let issued = [("grant", "client_credentials")];
    let bad_grant = [("grant", "other"), ("error", "unsupported_grant_type")];
    let before = (
        value(telemetry::SERVER_TOKENS_ISSUED, &issued).await,
        value(
            telemetry::SERVER_CLIENT_AUTH_FAILURES,
            &[("reason", "bad credentials")],
        )
        .await,
        value(telemetry::SERVER_TOKENS_REFUSED, &bad_grant).await,
        value(telemetry::SERVER_REVOCATIONS, &[("kind", "access_token")]).await,
    );
    let answer =
        oauth_http::reply(request(secret, "client_credentials").send().await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let access = answer.str("access_token");
    let wrong = request("a-wrong-secret", "client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // A grant type no server knows: a bounded label, not the client's string.
    let odd = request(secret, "urn:example:made-up-grant")
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), StatusCode::BAD_REQUEST);
    let revoked = h
        .http
        .post(format!("{}/oauth2/revoke", h.base))
        .basic_auth("metrics-client", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(oauth_http::form(&[("token", &access)]))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);

    assert_eq!(
        value(telemetry::SERVER_TOKENS_ISSUED, &issued).await - before.0,
        1.0
    );
    let failures = value(
        telemetry::SERVER_CLIENT_AUTH_FAILURES,
        &[("reason", "bad credentials")],
    )
    .await;
    assert_eq!(failures - before.1, 1.0);
    assert_eq!(
        value(telemetry::SERVER_TOKENS_REFUSED, &bad_grant).await - before.2,
        1.0
    );
    assert_eq!(
        value(telemetry::SERVER_REVOCATIONS, &[("kind", "access_token")]).await - before.3,
        1.0
    );
    let text = scrape().await;
    assert!(!text.contains("made-up-grant") && !text.contains("metrics-client"));
}
