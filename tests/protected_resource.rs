//! RFC 9728 protected-resource metadata and the resource as audience (RFC 8707), over a real
//! HTTP server on loopback: a client that gets a 401 follows `resource_metadata` to the document.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::Router;
use axum::routing::post;
use common::{ISSUER, builder, claims, token, token_with};
use http::StatusCode;
use serde_json::{Value, json};
use tower_oauth2::{Algorithm, ProtectedResource, RequireScope, token_source::QueryToken};

/// Serves `/mcp` (scope `mcp:tools`) behind an authenticator for the resource
/// `http://127.0.0.1:{port}/mcp`, plus its metadata; returns the base URL.
async fn serve(configure: impl FnOnce(ProtectedResource) -> ProtectedResource) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let auth = builder()
        .token_source(QueryToken::named("access_token"))
        .protected_resource(configure(ProtectedResource::new(format!("{base}/mcp"))))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/mcp",
            post(|| async { "tool result" }).route_layer(RequireScope::all(["mcp:tools"])),
        )
        .layer(auth.layer())
        .merge(auth.resource_metadata_router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The value of `name` in a challenge (quoted-string parameters only).
fn param<'c>(challenge: &'c str, name: &str) -> Option<&'c str> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let len = challenge[start..].find('"')?;
    Some(&challenge[start..start + len])
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A token for the resource (`aud` its URI) with `scope`.
fn token_for(resource: &str, scope: &str) -> String {
    let mut claims = claims(scope);
    claims["aud"] = resource.into();
    token_with(Algorithm::ES256, &claims)
}

#[tokio::test]
async fn a_401_leads_the_client_to_the_metadata_document() {
    let base = serve(|r| {
        r.scopes_supported(["mcp:tools"])
            .resource_name("Test MCP")
            .documentation("https://docs.example.com/mcp")
    })
    .await;
    let client = reqwest::Client::new();
    let response = client.post(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = challenge(&response);
    let url = param(&challenge, "resource_metadata").unwrap();
    assert_eq!(
        url,
        format!("{base}/.well-known/oauth-protected-resource/mcp")
    );

    let document = client.get(url).send().await.unwrap();
    assert_eq!(document.status(), StatusCode::OK);
    assert_eq!(document.headers()["content-type"], "application/json");
    assert_eq!(document.headers()["cache-control"], "public, max-age=3600");
    assert_eq!(document.headers()["access-control-allow-origin"], "*");
    let document: Value = serde_json::from_str(&document.text().await.unwrap()).unwrap();
    assert_eq!(
        document,
        json!({
            "resource": format!("{base}/mcp"),
            "authorization_servers": [ISSUER],
            "bearer_methods_supported": ["header", "query"],
            "scopes_supported": ["mcp:tools"],
            "resource_name": "Test MCP",
            "resource_documentation": "https://docs.example.com/mcp",
        })
    );
    // The document names the resource the client called (RFC 9728 §3.3).
    assert_eq!(document["resource"], format!("{base}/mcp"));

    // No document at the bare well-known path: the resource has a path.
    let bare = client
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_resource_is_the_audience_and_a_token_for_another_is_refused() {
    let base = serve(|r| r).await;
    let resource = format!("{base}/mcp");
    let client = reqwest::Client::new();
    let call = |token: String| client.post(format!("{base}/mcp")).bearer_auth(token).send();

    let ok = call(token_for(&resource, "mcp:tools")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "tool result");

    // The builder's own audience is still accepted.
    let events_api = call(token("mcp:tools")).await.unwrap();
    assert_eq!(events_api.status(), StatusCode::OK);

    // Another resource on the same host, and the resource with a trailing slash: exact match.
    for other in [format!("{base}/other"), format!("{resource}/")] {
        let refused = call(token_for(&other, "mcp:tools")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{other}");
        let challenge = challenge(&refused);
        assert_eq!(param(&challenge, "error"), Some("invalid_token"));
        assert_eq!(
            param(&challenge, "error_description").unwrap(),
            format!("token is for another resource: aud does not name {resource}")
        );
        assert!(param(&challenge, "resource_metadata").is_some());
    }

    // 403 names the scopes the route needs, and the metadata.
    let forbidden = call(token_for(&resource, "mcp:read")).await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let challenge = challenge(&forbidden);
    assert_eq!(param(&challenge, "error"), Some("insufficient_scope"));
    assert_eq!(param(&challenge, "scope"), Some("mcp:tools"));
    assert_eq!(
        param(&challenge, "resource_metadata").unwrap(),
        format!("{base}/.well-known/oauth-protected-resource/mcp")
    );
}

#[tokio::test]
async fn a_resource_alone_is_enough_audience_configuration() {
    common::provider();
    let auth = tower_oauth2::Authenticator::builder()
        .issuer(ISSUER)
        .keys(tower_oauth2::KeySet::from_jwks_json(common::JWKS).unwrap())
        .protected_resource(
            ProtectedResource::new("https://api.example.com")
                .authorization_server("https://as.example.com"),
        )
        .build()
        .unwrap();
    assert!(
        auth.verify(&token_for("https://api.example.com", ""))
            .is_ok()
    );
    let other = auth.verify(&token("")).unwrap_err();
    assert_eq!(
        other.description(),
        "token is for another resource: aud does not name https://api.example.com"
    );
    let (path, document) = auth.resource_metadata().unwrap();
    assert_eq!(path, "/.well-known/oauth-protected-resource");
    let document: Value = serde_json::from_str(document).unwrap();
    assert_eq!(
        document["authorization_servers"],
        json!(["https://as.example.com"])
    );
    assert_eq!(document["bearer_methods_supported"], json!(["header"]));

    let bad = tower_oauth2::Authenticator::builder()
        .issuer(ISSUER)
        .keys(tower_oauth2::KeySet::from_jwks_json(common::JWKS).unwrap())
        .protected_resource(ProtectedResource::new("http://api.example.com/mcp"))
        .build()
        .unwrap_err();
    assert!(bad.to_string().contains("must be https"), "{bad}");
}
