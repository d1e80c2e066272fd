//! Dynamic client registration (RFC 7591) and its management (RFC 7592), over a real HTTP server
//! on loopback: registration as an MCP client does it, then the authorization-code flow with the
//! registered client; every refusal; the registration access token; approval; rate limits.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower_oauth2::server::store::{ClientStatus, MemoryStore};
use tower_oauth2::server::{ApprovalPolicy, AuthorizationServer, DynamicRegistration};

mod oauth_http;
use oauth_http::{Approve, Harness, Reply, form, reply, serve};

fn open_registration() -> DynamicRegistration {
    DynamicRegistration::new().scopes(["mcp:tools", "offline_access"])
}

/// What the MCP TypeScript SDK sends, plus members this server does not keep.
fn mcp_client_metadata() -> Value {
    json!({
        "client_name": "MCP CLI",
        "redirect_uris": ["http://127.0.0.1:33418/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp:tools",
        "logo_uri": "https://cli.example/logo.png",
        "software_id": "4NRB1-0XZABZI9E6-5SM3R",
        "an_extension": {"nested": [1, 2]},
    })
}

impl Harness {
    async fn register(&self, body: &Value, bearer: Option<&str>) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/oauth2/register", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.unwrap()).await
    }

    async fn manage(
        &self,
        method: reqwest::Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.http.request(method, uri);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        reply(request.send().await.unwrap()).await
    }

    async fn metadata(&self) -> Value {
        let response = self
            .http
            .get(format!(
                "{}/.well-known/oauth-authorization-server",
                self.base
            ))
            .send()
            .await
            .unwrap();
        reply(response).await.body
    }

    async fn token(&self, form: &[(&str, &str)]) -> Reply {
        let body = oauth_http::form(form);
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        reply(response).await
    }
}

#[tokio::test]
async fn registration_is_off_by_default() {
    let h = serve(|b| b).await;
    let reply = h.register(&mcp_client_metadata(), None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(h.metadata().await.get("registration_endpoint").is_none());
    assert!(h.server.store().clients().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_mcp_client_registers_then_runs_the_authorization_code_flow() {
    let h = serve(|b| b.dynamic_registration(open_registration())).await;
    let metadata = h.metadata().await;
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{}/oauth2/register", h.base)
    );

    let registered = h.register(&mcp_client_metadata(), None).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_eq!(registered.headers["cache-control"], "no-store");
    let id = registered.str("client_id");
    let token = registered.str("registration_access_token");
    assert!(token.len() >= 43);
    assert!(registered.body.get("client_secret").is_none());
    let issued_at = registered.body["client_id_issued_at"].as_u64().unwrap();
    assert_eq!(
        registered.body,
        json!({
            "client_id": id,
            "client_id_issued_at": issued_at,
            "client_name": "MCP CLI",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp:tools",
            "contacts": [],
            "registration_access_token": token,
            "registration_client_uri": format!("{}/oauth2/register/{id}", h.base),
        })
    );
    // The registration access token is kept as a digest only.
    let stored = h.server.store().client(&id).await.unwrap().unwrap();
    assert!(stored.is_public() && stored.status == ClientStatus::Approved);
    assert!(stored.registration_token.as_ref().unwrap().verify(&token));
    assert!(!format!("{stored:?}").contains(&token));

    // The registered client runs authorization code + PKCE (any loopback port).
    let verifier = "v".repeat(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1:40123/callback";
    let query = form(&[
        ("response_type", "code"),
        ("client_id", id.as_str()),
        ("redirect_uri", redirect),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("scope", "mcp:tools"),
    ]);
    let response = h
        .http
        .get(format!("{}/oauth2/authorize?{query}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let issued = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ])
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["scope"], "mcp:tools");
    assert!(issued.body["refresh_token"].is_string());
}

#[tokio::test]
async fn bad_metadata_is_refused_with_the_rfc_7591_error_and_nothing_is_stored() {
    // Refused attempts count against the rate limit too: room for all of them here.
    let h = serve(|b| {
        b.dynamic_registration(open_registration().rate_limit(100, Duration::from_secs(60)))
    })
    .await;
    let with = |changes: Value| {
        let mut body = mcp_client_metadata();
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            with(json!({"redirect_uris": ["javascript:alert(1)"]})),
            "invalid_redirect_uri",
        ),
        (
            with(json!({"redirect_uris": ["https://app.example/cb#frag"]})),
            "invalid_redirect_uri",
        ),
        (
            with(json!({"redirect_uris": ["http://app.example/cb"]})),
            "invalid_redirect_uri",
        ),
        (with(json!({"redirect_uris": []})), "invalid_redirect_uri"),
        (
            with(json!({"redirect_uris": "https://app.example/cb"})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"response_types": ["token"]})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"response_types": []})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"grant_types": ["refresh_token"], "response_types": ["code"]})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"grant_types": ["client_credentials"]})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"grant_types": ["implicit"]})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"scope": "mcp:tools admin"})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"token_endpoint_auth_method": "private_key_jwt"})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"client_id": "chosen"})),
            "invalid_client_metadata",
        ),
        (
            with(json!({"contacts": ["not an address"]})),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (body, code) in cases {
        let reply = h.register(&body, None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"], code, "{body}: {}", reply.body);
    }
    // Not JSON at all.
    let form = h
        .http
        .post(format!("{}/oauth2/register", h.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("client_name=x")
        .send()
        .await
        .unwrap();
    reply(form)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_client_metadata");
    assert!(h.server.store().clients().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_confidential_registration_gets_a_secret_that_works() {
    let h = serve(|b| {
        b.dynamic_registration(open_registration().grant_types([
            tower_oauth2::server::store::GrantType::AuthorizationCode,
            tower_oauth2::server::store::GrantType::ClientCredentials,
        ]))
    })
    .await;
    let registered = h
        .register(
            &json!({"client_name": "Service", "grant_types": ["client_credentials"],
                    "scope": "mcp:tools"}),
            None,
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_eq!(
        registered.body["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    assert_eq!(registered.body["response_types"], json!([]));
    assert_eq!(registered.body["client_secret_expires_at"], 0);
    let id = registered.str("client_id");
    let secret = registered.str("client_secret");
    let issued = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["scope"], "mcp:tools");
}

#[tokio::test]
async fn the_registration_access_token_reads_changes_and_deletes_only_its_client() {
    let h = serve(|b| b.dynamic_registration(open_registration())).await;
    let first = h.register(&mcp_client_metadata(), None).await;
    let second = h.register(&mcp_client_metadata(), None).await;
    let (id, token) = (
        first.str("client_id"),
        first.str("registration_access_token"),
    );
    let other_token = second.str("registration_access_token");
    let uri = first.str("registration_client_uri");
    let get = reqwest::Method::GET;

    let read = h.manage(get.clone(), &uri, Some(&token), None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let mut expected = first.body.clone();
    expected
        .as_object_mut()
        .unwrap()
        .remove("registration_access_token");
    assert_eq!(read.body, expected);

    // Another client's token, no token, a made-up token, an unknown client: the same 401.
    for (target, bearer) in [
        (uri.clone(), Some(other_token.as_str())),
        (uri.clone(), None),
        (uri.clone(), Some("made-up")),
        (
            format!("{}/oauth2/register/nobody", h.base),
            Some(token.as_str()),
        ),
    ] {
        let refused = h.manage(get.clone(), &target, bearer, None).await;
        refused.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(
            refused.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }

    // PUT replaces the metadata; it must repeat the client_id and keep the client public.
    let mut change = mcp_client_metadata();
    change["client_id"] = id.clone().into();
    change["client_name"] = "Renamed CLI".into();
    change["redirect_uris"] = json!(["http://127.0.0.1/other"]);
    let put = reqwest::Method::PUT;
    let changed = h
        .manage(put.clone(), &uri, Some(&token), Some(&change))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["client_name"], "Renamed CLI");
    assert_eq!(
        changed.body["redirect_uris"],
        json!(["http://127.0.0.1/other"])
    );
    let mut no_id = change.clone();
    no_id.as_object_mut().unwrap().remove("client_id");
    h.manage(put.clone(), &uri, Some(&token), Some(&no_id))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_client_metadata");
    let mut confidential = change.clone();
    confidential["token_endpoint_auth_method"] = "client_secret_basic".into();
    h.manage(put.clone(), &uri, Some(&token), Some(&confidential))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_client_metadata");
    let mut bad_uri = change.clone();
    bad_uri["redirect_uris"] = json!(["javascript:alert(1)"]);
    h.manage(put.clone(), &uri, Some(&token), Some(&bad_uri))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri");
    h.manage(put, &uri, Some(&other_token), Some(&change))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let stored = h.server.store().client(&id).await.unwrap().unwrap();
    assert_eq!(stored.name, "Renamed CLI");
    assert!(stored.registration_token.as_ref().unwrap().verify(&token));

    // DELETE removes it; its token then manages nothing.
    let delete = reqwest::Method::DELETE;
    h.manage(delete.clone(), &uri, Some(&other_token), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let deleted = h.manage(delete, &uri, Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(h.server.store().client(&id).await.unwrap().is_none());
    h.manage(get, &uri, Some(&token), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn an_initial_access_token_can_be_required() {
    let initial = "initial-access-token-0123456789-abcdef";
    let h =
        serve(|b| b.dynamic_registration(open_registration().initial_access_token(initial))).await;
    for bearer in [None, Some("wrong")] {
        h.register(&mcp_client_metadata(), bearer)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let ok = h.register(&mcp_client_metadata(), Some(initial)).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(h.server.store().clients().await.unwrap().len(), 1);

    let short = AuthorizationServer::builder()
        .issuer("https://as.example")
        .store(MemoryStore::new())
        .consent_handler(Approve)
        .dynamic_registration(DynamicRegistration::new().initial_access_token("short"))
        .build()
        .await;
    assert!(short.is_err());
    let no_consent = AuthorizationServer::builder()
        .issuer("https://as.example")
        .store(MemoryStore::new())
        .dynamic_registration(DynamicRegistration::new())
        .build()
        .await;
    assert!(
        no_consent
            .err()
            .is_some_and(|e| e.to_string().contains("consent handler"))
    );
}

#[tokio::test]
async fn registrations_follow_the_approval_policy_and_are_rate_limited_per_peer() {
    let h = serve(|b| {
        b.approval_policy(ApprovalPolicy::Manual)
            .dynamic_registration(open_registration().rate_limit(3, Duration::from_secs(3600)))
    })
    .await;
    let pending = h.register(&mcp_client_metadata(), None).await;
    assert_eq!(pending.status, StatusCode::CREATED);
    let id = pending.str("client_id");
    let stored = h.server.store().client(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, ClientStatus::Pending);
    // A pending client cannot start the flow.
    let response = h
        .http
        .get(format!(
            "{}/oauth2/authorize?response_type=code&client_id={id}",
            h.base
        ))
        .send()
        .await
        .unwrap();
    reply(response)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");

    for _ in 0..2 {
        assert_eq!(
            h.register(&mcp_client_metadata(), None).await.status,
            StatusCode::CREATED
        );
    }
    let limited = h.register(&mcp_client_metadata(), None).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait));
    assert_eq!(h.server.store().clients().await.unwrap().len(), 3);
}
