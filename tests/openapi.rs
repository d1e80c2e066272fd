//! The events API's OpenAPI document (feature `utoipa`) with this crate's own server: the OAuth
//! 2.0 flows name the endpoints the server's metadata names, and each route's requirement is
//! what its `RequireScope` enforces. `scripts/openapi_check.sh` validates the example's document
//! with PyPI openapi-spec-validator against the running service.
#![cfg(all(feature = "utoipa", feature = "server"))]
#![allow(missing_docs, clippy::unwrap_used, dead_code)]

mod common;
#[path = "../examples/shared/events.rs"]
mod events;
mod oauth_http;

use tower_oauth2::openapi::ApiSecurity;

#[tokio::test]
async fn the_flows_are_the_servers_endpoints_and_the_scopes_the_routes() {
    common::provider();
    let h = oauth_http::serve(|b| b).await;
    let url = format!("{}/.well-known/oauth-authorization-server", h.base);
    let metadata = oauth_http::reply(h.http.get(url).send().await.unwrap())
        .await
        .body;
    let doc = events::openapi(ApiSecurity::oauth2(h.server.openapi_flows())).unwrap();
    let doc = serde_json::to_value(&doc).unwrap();
    let flows = &doc["components"]["securitySchemes"]["oauth2"]["flows"];
    let code = &flows["authorizationCode"];
    assert_eq!(code["authorizationUrl"], metadata["authorization_endpoint"]);
    assert_eq!(code["tokenUrl"], metadata["token_endpoint"]);
    assert_eq!(code["refreshUrl"], metadata["token_endpoint"]);
    assert_eq!(
        flows["clientCredentials"]["tokenUrl"],
        metadata["token_endpoint"]
    );
    for flow in [code, &flows["clientCredentials"]] {
        let declared: Vec<&str> = flow["scopes"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(declared, ["events:read", "events:write"]);
    }
    // Each route lists what its RequireScope enforces: the same values the router uses.
    let scopes =
        |path: &str, method: &str| doc["paths"][path][method]["security"][0]["oauth2"].clone();
    let (read, write) = (events::read_scope(), events::write_scope());
    let read: Vec<&str> = read.scopes().collect();
    let write: Vec<&str> = write.scopes().collect();
    assert_eq!(scopes("/events/{id}", "get"), serde_json::json!(read));
    assert_eq!(scopes("/events", "post"), serde_json::json!(write));
    assert_eq!(scopes("/me", "get"), serde_json::json!([]));
    assert!(doc["paths"]["/public"]["get"].get("security").is_none());
}
