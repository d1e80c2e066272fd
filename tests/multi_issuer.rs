//! Several issuers at once: the token's `iss` picks the audience, keys and claim mapping, and
//! an unknown issuer is refused before any key lookup or fetch.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use tower_oauth2::Algorithm;
use tower_oauth2::dangerous::DangerousBuilderExt;
use tower_oauth2::{Authenticator, Issuer, Key};

const TENANT_B: &str = "https://idp.tenant-b.test/realms/b";

/// A JWKS server with the test `ed-1` key that counts its requests.
async fn jwks_server() -> (Arc<AtomicUsize>, String) {
    let all: Value = serde_json::from_str(JWKS).unwrap();
    let ed: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] == "ed-1")
        .cloned()
        .collect();
    let body = json!({ "keys": ed }).to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/jwks",
            get(
                |State((count, body)): State<(Arc<AtomicUsize>, String)>| async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    body
                },
            ),
        )
        .with_state((count.clone(), body));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (count, url)
}

/// Tenant A: the common issuer, static EC key. Tenant B: a remote JWKS, audience `account`,
/// Keycloak-style realm roles as scopes.
async fn two_tenants() -> (tower_oauth2::Authenticator, Arc<AtomicUsize>) {
    let (count, url) = jwks_server().await;
    let ec = Key::from_pem(include_str!("data/keys/ec_public.pem"))
        .unwrap()
        .with_kid("ec-1");
    let auth = builder_with_key(ec)
        .trust(
            Issuer::new(TENANT_B)
                .audience("account")
                .jwks_url(url)
                .scopes_from_claim(["realm_access", "roles"]),
        )
        .build()
        .unwrap();
    auth.refresh_keys().await.unwrap();
    (auth, count)
}

fn builder_with_key(key: Key) -> tower_oauth2::AuthenticatorBuilder {
    provider();
    Authenticator::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key(key)
}

fn tenant_b_claims(aud: &str) -> Value {
    let mut c = claims("profile");
    c["iss"] = json!(TENANT_B);
    c["aud"] = json!(aud);
    c["realm_access"] = json!({"roles": ["events:read"]});
    c
}

#[tokio::test]
async fn the_token_issuer_picks_audience_keys_and_claim_mapping() {
    let (auth, fetches) = two_tenants().await;
    let app = app(&auth);
    let a = token_with(Algorithm::ES256, &claims("events:read"));
    assert_eq!(get_with(&app, "/events/1", &a).await.status, StatusCode::OK);

    let b = token_with(Algorithm::EdDSA, &tenant_b_claims("account"));
    let reply = get_with(&app, "/events/1", &b).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "tenant B's roles grant events:read: {:?}",
        reply.body
    );

    // A's audience is not B's, and A's role mapping does not apply to A's tokens.
    let b_for_a = token_with(Algorithm::EdDSA, &tenant_b_claims(AUDIENCE));
    let reply = get_with(&app, "/me", &b_for_a).await;
    assert_eq!(reply.description(), "wrong audience (aud)");
    let mut a_with_roles = claims("profile");
    a_with_roles["realm_access"] = json!({"roles": ["events:read"]});
    let reply = get_with(
        &app,
        "/events/1",
        &token_with(Algorithm::ES256, &a_with_roles),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // Keys do not cross tenants: B's key does not verify a token that claims to be A's.
    let mut forged = claims("events:read");
    forged["iss"] = json!(ISSUER);
    let reply = get_with(&app, "/me", &token_with(Algorithm::EdDSA, &forged)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "tenant A's failures never fetch B's keys"
    );
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_before_any_key_lookup_or_fetch() {
    let (auth, fetches) = two_tenants().await;
    let app = app(&auth);
    let before = fetches.load(Ordering::SeqCst);
    let mut c = tenant_b_claims("account");
    c["iss"] = json!("https://idp.tenant-c.test");
    let (key, _) = signing_key(Algorithm::EdDSA);
    let header = r#"{"alg":"EdDSA","kid":"never-seen"}"#;
    let token = sign_raw(header, &c.to_string(), &key, Algorithm::EdDSA);
    let reply = get_with(&app, "/me", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.description(), "unknown issuer (iss)");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before,
        "no fetch for an unknown issuer"
    );

    // The same unknown kid from tenant B does cause one refetch, at B.
    c["iss"] = json!(TENANT_B);
    let token = sign_raw(header, &c.to_string(), &key, Algorithm::EdDSA);
    assert_eq!(
        get_with(&app, "/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(fetches.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn multi_issuer_configuration_mistakes() {
    let ec = || Key::from_pem(include_str!("data/keys/ec_public.pem")).unwrap();
    let twice = builder_with_key(ec()).trust(Issuer::new(ISSUER).audience("x").key(ec()));
    assert!(
        twice
            .build()
            .unwrap_err()
            .to_string()
            .contains("configured twice")
    );
    let any = Authenticator::builder()
        .accept_any_issuer()
        .audience("x")
        .key(ec())
        .trust(Issuer::new(TENANT_B).audience("y").key(ec()));
    assert!(
        any.build()
            .unwrap_err()
            .to_string()
            .contains("accept_any_issuer")
    );
    let no_audience = builder_with_key(ec()).trust(Issuer::new(TENANT_B).key(ec()));
    let err = no_audience.build().unwrap_err().to_string();
    assert!(
        err.contains(TENANT_B) && err.contains("no audience"),
        "{err}"
    );
}
