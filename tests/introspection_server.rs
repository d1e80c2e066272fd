//! Interop: the crate's own authorization server's `/introspect` (RFC 7662) as the endpoint of
//! an authenticator that has no keys for it, so that the server's JWTs are sent as if they were
//! opaque. Over real HTTP on loopback; the endpoint is discovered from the server's metadata.
#![cfg(all(feature = "introspection", feature = "server"))]
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
mod oauth_http;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use oauth_http::{form, reply};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_oauth2::introspection::Introspection;
use tower_oauth2::server::{ClientRegistration, ClientSecret};
use tower_oauth2::{Authenticator, RequireScope, VerifiedToken};

const API_SECRET: &str = "api-secret-0123456789-0123456789-abcdef";
const APP_SECRET: &str = "app-secret-0123456789-0123456789-abcdef";

/// Registers a confidential client with the client-credentials grant.
async fn register(h: &oauth_http::Harness, id: &str, secret: &str, scopes: &[&str]) {
    register_with(h, id, secret, &["client_credentials"], scopes).await;
}

/// Registers a confidential client with the grants `grants`.
async fn register_with(
    h: &oauth_http::Harness,
    id: &str,
    secret: &str,
    grants: &[&str],
    scopes: &[&str],
) {
    let mut client = ClientRegistration::new(id);
    client.client_id = Some(id.into());
    client.grant_types = Some(grants.iter().map(|g| (*g).to_owned()).collect());
    client.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    client.secret = Some(ClientSecret::from_value(secret).unwrap());
    h.server.register_client(client).await.unwrap();
}

/// A server with the client `app` (scopes `scopes`) and the API's client `events-api`.
async fn server(scopes: &[&str]) -> oauth_http::Harness {
    common::provider();
    let h = oauth_http::serve(|b| b).await;
    register(&h, "app", APP_SECRET, scopes).await;
    register(&h, "events-api", API_SECRET, &[]).await;
    h
}

/// The token endpoint's successful answer to `app`'s request `params`.
async fn tokens(h: &oauth_http::Harness, params: &[(&str, &str)]) -> oauth_http::Reply {
    let response = h
        .http
        .post(format!("{}/oauth2/token", h.base))
        .basic_auth("app", Some(APP_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(params))
        .send()
        .await
        .unwrap();
    let tokens = reply(response).await;
    assert_eq!(tokens.status, StatusCode::OK, "{:?}", tokens.body);
    tokens
}

async fn access_token(h: &oauth_http::Harness, scope: &str) -> String {
    tokens(h, &[("grant_type", "client_credentials"), ("scope", scope)])
        .await
        .str("access_token")
}

/// An API on loopback behind an authenticator that introspects every token of the server.
async fn api(issuer: &str, config: Introspection) -> String {
    let auth = Authenticator::builder()
        .issuer(issuer)
        .audience(issuer)
        .introspection(config)
        .build()
        .unwrap();
    let me = get(|token: VerifiedToken| async move {
        axum::Json(json!({
            "sub": token.subject(),
            "client_id": token.client_id(),
            "introspected": token.is_introspected(),
            "scopes": token.scopes().iter().collect::<Vec<_>>(),
        }))
    });
    let app = Router::new()
        .route("/me", me)
        .route(
            "/write",
            get(|| async { "written" }).route_layer(RequireScope::all(["write"])),
        )
        .layer(auth.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn call(api: &str, path: &str, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{api}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A 401 `invalid_token` whose description says `reason`.
fn assert_invalid_token((status, body): (StatusCode, Value), reason: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(reason), "{body}");
}

#[tokio::test]
async fn the_servers_tokens_pass_through_its_introspection_endpoint() {
    let h = server(&["read", "write"]).await;
    // The endpoint comes from the server's metadata; a short cache so revocation shows.
    let config = Introspection::new("events-api", API_SECRET).max_cache(Duration::from_millis(300));
    let api = api(&h.base, config).await;

    let token = access_token(&h, "read").await;
    let (status, body) = call(&api, "/me", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], "app");
    assert_eq!(body["introspected"], true);
    assert_eq!(body["scopes"], json!(["read"]));
    // RequireScope enforces the introspected scopes.
    assert_eq!(call(&api, "/write", &token).await.0, StatusCode::FORBIDDEN);

    // Revoked at the server: refused once the cached answer ends.
    let revoked = h
        .http
        .post(format!("{}/oauth2/revoke", h.base))
        .basic_auth("app", Some(APP_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", &token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_invalid_token(call(&api, "/me", &token).await, "not active");

    // A made-up token is inactive; a token of another server never verifies.
    assert_eq!(
        call(&api, "/me", "not-a-token").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_client_credentials_at_the_endpoint_are_a_503_not_a_401() {
    let h = server(&["read"]).await;
    let config = Introspection::new("events-api", "a-wrong-secret-0123456789-0123456789")
        .endpoint(format!("{}/oauth2/introspect", h.base))
        .client_secret_post();
    let api = api(&h.base, config).await;
    let token = access_token(&h, "read").await;
    // The endpoint refuses the API's own credentials: the token may be fine, so 503.
    let (status, body) = call(&api, "/me", &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn client_secret_post_works_with_the_server() {
    let h = server(&["read"]).await;
    let config = Introspection::new("events-api", API_SECRET)
        .endpoint(format!("{}/oauth2/introspect", h.base))
        .client_secret_post()
        .token_type_hint("access_token");
    let api = api(&h.base, config).await;
    let token = access_token(&h, "read").await;
    assert_eq!(call(&api, "/me", &token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_token_does_not_pass_for_an_access_token() {
    common::provider();
    let h = oauth_http::serve(|b| b.password_verifier(oauth_http::Passwords)).await;
    let grants = ["password", "refresh_token"];
    register_with(&h, "app", APP_SECRET, &grants, &["read"]).await;
    let tokens = tokens(
        &h,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wonderland"),
            ("scope", "read"),
        ],
    )
    .await;
    // The API introspects as the very client the refresh token belongs to, so the server
    // answers `active: true` for it, with `token_type` `refresh_token`.
    let config = Introspection::new("app", APP_SECRET).token_type_hint("refresh_token");
    let api = api(&h.base, config).await;

    assert_invalid_token(
        call(&api, "/me", &tokens.str("refresh_token")).await,
        "refresh token",
    );
    assert_eq!(
        call(&api, "/me", &tokens.str("access_token")).await.0,
        StatusCode::OK
    );
}
