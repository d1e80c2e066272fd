//! The authorization server end to end through its axum routers: the admin API, revocation
//! (RFC 7009), introspection (RFC 7662), the authorization-code grant with PKCE, metadata
//! (RFC 8414), the JWKS with key rotation (in process and over real HTTP), and loading signing
//! keys from PEM and JWK.
#![cfg(feature = "server")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    ApprovalPolicy, AuthorizationRequest, AuthorizationServer, AuthorizationServerBuilder,
    ClientRegistration, ConsentDecision, ConsentHandler, HookFuture, PasswordVerifier, SecretHash,
    SigningKey,
};
use tower_oauth2::{Algorithm, AuthErrorKind, Authenticator, Key, KeySet, VerifiedToken};

const ISSUER: &str = "https://auth.test";
const REDIRECT: &str = "https://app.example/cb";
const OTHER_REDIRECT: &str = "http://127.0.0.1:9000/cb";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Decides by the `x-consent` request header: `deny`, `login` (answers a login page), `narrow`
/// (approves `read` only), anything else approves everything for "alice". Records every request.
#[derive(Clone, Default)]
struct TestConsent {
    seen: Arc<Mutex<Vec<AuthorizationRequest>>>,
}

impl ConsentHandler for TestConsent {
    fn decide<'a>(
        &'a self,
        authorization: &'a AuthorizationRequest,
        request: &'a http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        let choice = request
            .headers
            .get("x-consent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("approve")
            .to_owned();
        self.seen
            .lock()
            .expect("consent log")
            .push(authorization.clone());
        Box::pin(async move {
            match choice.as_str() {
                "deny" => ConsentDecision::Deny,
                "login" => ConsentDecision::Respond((StatusCode::OK, "login page").into_response()),
                "narrow" => ConsentDecision::Approve {
                    subject: "alice".into(),
                    scopes: Some(vec!["read".into()]),
                },
                _ => ConsentDecision::Approve {
                    subject: "alice".into(),
                    scopes: None,
                },
            }
        })
    }
}

/// alice / wonderland.
struct TestPasswords;

impl PasswordVerifier for TestPasswords {
    fn verify<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> HookFuture<'a, Option<String>> {
        let ok = username == "alice" && password == "wonderland";
        Box::pin(async move { ok.then(|| "alice".to_owned()) })
    }
}

struct Harness {
    server: AuthorizationServer,
    app: Router,
    consent: TestConsent,
}

/// A server with a consent handler and a password verifier, configured further by `configure`.
async fn harness_with(
    configure: impl FnOnce(AuthorizationServerBuilder) -> AuthorizationServerBuilder,
) -> Harness {
    let consent = TestConsent::default();
    let builder = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(MemoryStore::new())
        .consent_handler(consent.clone())
        .password_verifier(TestPasswords);
    let server = configure(builder).build().await.expect("server builds");
    let app = app(&server);
    Harness {
        server,
        app,
        consent,
    }
}

async fn harness() -> Harness {
    harness_with(|b| b).await
}

/// The server's endpoints plus `/api/me`, protected by the server's own authenticator.
fn app(server: &AuthorizationServer) -> Router {
    let api = Router::new()
        .route(
            "/api/me",
            get(|token: VerifiedToken| async move {
                axum::Json(json!({"sub": token.subject(), "client_id": token.client_id()}))
            }),
        )
        .route_layer(server.authenticator().layer());
    Router::new()
        .nest("/oauth2", server.router())
        .merge(server.metadata_router())
        .nest("/admin", server.admin_router())
        .merge(api)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    body: Value,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or("")
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    fn str(&self, member: &str) -> &str {
        self.body[member]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{member}` in {}", self.text))
    }

    /// The redirect's target without query, and its query parameters.
    fn redirect(&self) -> (String, HashMap<String, String>) {
        let location = self.header(header::LOCATION);
        assert!(
            !location.is_empty(),
            "no Location: {} {}",
            self.status,
            self.text
        );
        let url = reqwest::Url::parse(location).expect("absolute Location");
        let params = url.query_pairs().into_owned().collect();
        let base = location.split('?').next().unwrap_or_default().to_owned();
        (base, params)
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        body,
    }
}

/// `application/x-www-form-urlencoded`.
fn encode_form(params: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Clone, Debug)]
struct Client {
    id: String,
    secret: String,
}

impl Client {
    fn basic(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.id, self.secret))
        )
    }
}

fn form_request(path: &str, params: &[(&str, &str)], client: Option<&Client>) -> Request<Body> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(client) = client {
        request = request.header(header::AUTHORIZATION, client.basic());
    }
    request
        .body(Body::from(encode_form(params)))
        .expect("request")
}

async fn post_form(
    app: &Router,
    path: &str,
    params: &[(&str, &str)],
    client: Option<&Client>,
) -> Reply {
    send(app, form_request(path, params, client)).await
}

async fn admin(app: &Router, method: Method, path: &str, body: Option<Value>) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(format!("/admin{path}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    send(app, request.body(body).expect("request")).await
}

/// Registers through the admin API; asserts 201.
async fn register(app: &Router, registration: Value) -> Client {
    let reply = admin(app, Method::POST, "/clients", Some(registration)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    Client {
        id: reply.str("client_id").to_owned(),
        secret: reply.str("client_secret").to_owned(),
    }
}

/// A client for the password grant with refresh tokens.
async fn password_client(app: &Router, id: &str) -> Client {
    register(
        app,
        json!({"name": id, "client_id": id, "grant_types": ["password", "refresh_token"],
               "scopes": ["read", "write"]}),
    )
    .await
}

/// A client for the authorization-code grant with refresh tokens.
async fn web_client(app: &Router, id: &str) -> Client {
    register(
        app,
        json!({"name": "Web app", "client_id": id,
               "grant_types": ["authorization_code", "refresh_token"],
               "redirect_uris": [REDIRECT, OTHER_REDIRECT],
               "scopes": ["read", "write"], "default_scopes": ["read"]}),
    )
    .await
}

async fn token(app: &Router, client: &Client, params: &[(&str, &str)]) -> Reply {
    post_form(app, "/oauth2/token", params, Some(client)).await
}

/// A client-credentials access token; asserts 200.
async fn client_credentials(app: &Router, client: &Client) -> String {
    let reply = token(app, client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.str("access_token").to_owned()
}

/// Access and refresh token from the password grant for alice; asserts 200.
async fn password_grant(app: &Router, client: &Client) -> (String, String) {
    let reply = token(
        app,
        client,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wonderland"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    (
        reply.str("access_token").to_owned(),
        reply.str("refresh_token").to_owned(),
    )
}

async fn refresh(app: &Router, client: &Client, refresh_token: &str) -> Reply {
    token(
        app,
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn revoke(app: &Router, client: Option<&Client>, params: &[(&str, &str)]) -> Reply {
    post_form(app, "/oauth2/revoke", params, client).await
}

async fn introspect(app: &Router, client: Option<&Client>, params: &[(&str, &str)]) -> Reply {
    post_form(app, "/oauth2/introspect", params, client).await
}

/// `Ok` if the server's own authenticator accepts `token`, else why not.
fn check(server: &AuthorizationServer, token: &str) -> Result<(), AuthErrorKind> {
    server
        .authenticator()
        .verify(token)
        .map(|_| ())
        .map_err(|e| e.kind())
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

async fn get_me(app: &Router, token: &str) -> Reply {
    let request = Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    send(app, request).await
}

/// A PKCE verifier and its S256 challenge.
fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("{seed}-{}", "v".repeat(50));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

async fn authorize(app: &Router, params: &[(&str, &str)], consent: &str) -> Reply {
    let request = Request::get(format!("/oauth2/authorize?{}", encode_form(params)))
        .header("x-consent", consent)
        .body(Body::empty())
        .expect("request");
    send(app, request).await
}

/// The standard authorization request's parameters.
fn auth_params<'a>(client_id: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "read write"),
        ("state", "xyz"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Runs the authorization request for `client_id` with `challenge`; returns the code.
async fn get_code(app: &Router, client_id: &str, challenge: &str) -> String {
    let reply = authorize(app, &auth_params(client_id, challenge), "approve").await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.text);
    let (base, params) = reply.redirect();
    assert_eq!(base, REDIRECT);
    params.get("code").expect("code").clone()
}

async fn redeem(
    app: &Router,
    client: &Client,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Reply {
    token(
        app,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
        ],
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. Admin API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_registers_shows_and_lists_without_ever_showing_the_secret_again() {
    let h = harness().await;
    let reply = admin(
        &h.app,
        Method::POST,
        "/clients",
        Some(
            json!({"name": "Billing", "client_id": "billing", "scopes": ["read", "write"],
                    "default_scopes": ["read"], "access_token_lifetime": "15min"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");
    let secret = reply.str("client_secret").to_owned();
    assert_eq!(secret.len(), 43, "256 random bits, base64url");
    let created_at = reply.body["created_at"].as_u64().expect("created_at");
    assert_eq!(
        reply.body,
        json!({
            "client_id": "billing",
            "name": "Billing",
            "status": "approved",
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scopes": ["read", "write"],
            "default_scopes": ["read"],
            "access_token_lifetime": "15min",
            "refresh_token_lifetime": null,
            "created_at": created_at,
            "contacts": [],
            "client_secret": secret,
        })
    );

    // Shown once: never again, neither the secret nor its stored digest.
    let digest = SecretHash::of(&secret).to_stored();
    let digest_b64 = digest.trim_start_matches("sha256:").to_owned();
    let shown = admin(&h.app, Method::GET, "/clients/billing", None).await;
    assert_eq!(shown.status, StatusCode::OK);
    let mut expected = reply.body.clone();
    expected
        .as_object_mut()
        .expect("object")
        .remove("client_secret");
    assert_eq!(shown.body, expected);
    assert!(!shown.text.contains(&secret) && !shown.text.contains(&digest_b64));
    assert!(
        !shown.text.contains("\"client_secret\"") && !shown.text.contains("secret_hash"),
        "{}",
        shown.text
    );

    // The secret works, and the defaults and lifetime apply.
    let billing = Client {
        id: "billing".into(),
        secret: secret.clone(),
    };
    let reply = token(&h.app, &billing, &[("grant_type", "client_credentials")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["scope"], "read");
    assert_eq!(reply.body["expires_in"], 900);

    // A second client, with a generated id.
    let generated = register(&h.app, json!({"name": "Reports"})).await;
    assert_eq!(generated.id.len(), 22, "128 random bits, base64url");
    assert_ne!(generated.secret, secret);

    let list = admin(&h.app, Method::GET, "/clients", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let clients = list.body["clients"].as_array().expect("clients");
    let ids: Vec<&str> = clients
        .iter()
        .map(|c| c["client_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["billing", generated.id.as_str()]);
    // The list adds each client's activity from the audit log: none yet.
    let mut listed = expected.clone();
    listed["last_token_issued_at"] = Value::Null;
    listed["tokens_issued_24h"] = 0.into();
    assert_eq!(clients[0], listed);
    assert_eq!(clients[1]["status"], "approved");
    assert!(!list.text.contains("\"client_secret\"") && !list.text.contains(&generated.secret));
    assert!(!list.text.contains(&secret));

    // Unknown ids are 404 everywhere.
    for (method, path) in [
        (Method::GET, "/clients/nope"),
        (Method::DELETE, "/clients/nope"),
        (Method::POST, "/clients/nope/approve"),
        (Method::POST, "/clients/nope/reject"),
        (Method::POST, "/clients/nope/disable"),
        (Method::POST, "/clients/nope/secret"),
        (Method::GET, "/clients/nope/tokens"),
        (Method::DELETE, "/clients/nope/tokens/abc"),
    ] {
        let reply = admin(&h.app, method.clone(), path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.error(), "not_found", "{method} {path}");
    }
}

#[tokio::test]
async fn admin_refuses_invalid_registrations_and_stores_none_of_them() {
    let h = harness().await;
    // (registration, status, error, field, text the description must contain)
    let cases: Vec<(Value, StatusCode, &str, Option<&str>, &str)> = vec![
        (
            json!({"scopes": ["read"]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            "missing field `name`",
        ),
        (
            json!({"name": "  "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("name"),
            "name: required",
        ),
        (
            json!({"name": "x", "grant_types": ["implicit"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("grant_types"),
            "unknown grant type \"implicit\"",
        ),
        (
            json!({"name": "x", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            "unknown field `colour`",
        ),
        (
            // The secret is never taken from JSON.
            json!({"name": "x", "secret": "0123456789abcdef0123456789abcdef"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            "unknown field `secret`",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "default_scopes": ["read", "write"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("default_scopes"),
            "write is not among the client's scopes",
        ),
        (
            json!({"name": "x", "access_token_lifetime": "1h 30x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("access_token_lifetime"),
            "invalid lifetime \"1h 30x\": unknown unit `x` (at byte 5)",
        ),
        (
            json!({"name": "x", "access_token_lifetime": "unlimited"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("access_token_lifetime"),
            "not allowed on this server",
        ),
        (
            json!({"name": "x", "grant_types": ["authorization_code"],
                   "redirect_uris": ["http://app.example/cb"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("redirect_uris"),
            "http is only allowed on a loopback host",
        ),
        (
            json!({"name": "x", "grant_types": ["authorization_code"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("redirect_uris"),
            "authorization_code needs at least one redirect URI",
        ),
        (
            json!({"name": "x", "grant_types": ["refresh_token"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("grant_types"),
            "refresh_token is only issued with authorization_code or password",
        ),
        (
            json!({"name": "x", "client_id": "has space"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            Some("client_id"),
            "1 to 128 characters",
        ),
    ];
    for (registration, status, error, field, text) in cases {
        let reply = admin(&h.app, Method::POST, "/clients", Some(registration.clone())).await;
        assert_eq!(reply.status, status, "{registration}: {}", reply.text);
        assert_eq!(reply.error(), error, "{registration}");
        assert_eq!(reply.body["field"].as_str(), field, "{registration}");
        let description = reply.str("error_description");
        assert!(
            description.contains(text),
            "{registration}: {description:?} lacks {text:?}"
        );
    }
    let reply = send(
        &h.app,
        Request::post("/admin/clients")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{not json"))
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_request");

    let list = admin(&h.app, Method::GET, "/clients", None).await;
    assert_eq!(list.body, json!({"clients": []}), "nothing was stored");

    // A duplicate id conflicts, and the first client is untouched.
    let first = register(&h.app, json!({"name": "One", "client_id": "dup"})).await;
    let reply = admin(
        &h.app,
        Method::POST,
        "/clients",
        Some(json!({"name": "Two", "client_id": "dup"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.error(), "conflict");
    assert!(reply.body.get("client_secret").is_none());
    let shown = admin(&h.app, Method::GET, "/clients/dup", None).await;
    assert_eq!(shown.body["name"], "One");
    client_credentials(&h.app, &first).await;

    // The same rules through the Rust API.
    let mut registration = ClientRegistration::new("x");
    registration.access_token_lifetime = Some("1h 30x".into());
    let error = h
        .server
        .register_client(registration)
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "access_token_lifetime: invalid lifetime \"1h 30x\": unknown unit `x` (at byte 5)"
    );
}

#[tokio::test]
async fn manual_approval_pending_clients_cannot_authenticate_until_approved() {
    let h = harness_with(|b| b.approval_policy(ApprovalPolicy::Manual)).await;
    let reply = admin(
        &h.app,
        Method::POST,
        "/clients",
        Some(json!({"name": "Partner", "client_id": "partner"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["status"], "pending");
    let partner = Client {
        id: "partner".into(),
        secret: reply.str("client_secret").to_owned(),
    };

    let refused = token(&h.app, &partner, &[("grant_type", "client_credentials")]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error(), "invalid_client");
    assert!(
        refused
            .header(header::WWW_AUTHENTICATE)
            .starts_with("Basic")
    );

    let approved = admin(&h.app, Method::POST, "/clients/partner/approve", None).await;
    assert_eq!(approved.status, StatusCode::OK);
    assert_eq!(approved.body["status"], "approved");
    assert!(approved.body.get("client_secret").is_none());
    client_credentials(&h.app, &partner).await;

    // Reject is only for pending clients.
    let reply = admin(&h.app, Method::POST, "/clients/partner/reject", None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.error(), "conflict");
    // Approving twice is a no-op: the first decision stands, recorded once.
    let reply = admin(&h.app, Method::POST, "/clients/partner/approve", None).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "already approved: {}",
        reply.text
    );
    assert_eq!(reply.body["status"], "approved");
    assert_eq!(reply.body["decisions"].as_array().map(Vec::len), Some(1));

    let other = register(&h.app, json!({"name": "Other", "client_id": "other"})).await;
    let rejected = admin(&h.app, Method::POST, "/clients/other/reject", None).await;
    assert_eq!(rejected.status, StatusCode::OK);
    assert_eq!(rejected.body["status"], "rejected");
    let refused = token(&h.app, &other, &[("grant_type", "client_credentials")]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error(), "invalid_client");
    // Rejecting twice is a no-op too.
    let reply = admin(&h.app, Method::POST, "/clients/other/reject", None).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "already rejected: {}",
        reply.text
    );
    assert_eq!(reply.body["status"], "rejected");

    let disabled = admin(&h.app, Method::POST, "/clients/partner/disable", None).await;
    assert_eq!(disabled.body["status"], "disabled");
    let reply = admin(&h.app, Method::POST, "/clients/partner/reject", None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "disabled");

    let shown = admin(&h.app, Method::GET, "/clients/other", None).await;
    assert_eq!(shown.body["status"], "rejected");
}

#[tokio::test]
async fn rotating_a_secret_retires_the_old_one() {
    let h = harness().await;
    let old = register(&h.app, json!({"name": "Svc", "client_id": "svc"})).await;
    client_credentials(&h.app, &old).await;

    let reply = admin(&h.app, Method::POST, "/clients/svc/secret", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["client_id"], "svc");
    let new = Client {
        id: "svc".into(),
        secret: reply.str("client_secret").to_owned(),
    };
    assert_eq!(new.secret.len(), 43);
    assert_ne!(new.secret, old.secret);

    let refused = token(&h.app, &old, &[("grant_type", "client_credentials")]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error(), "invalid_client");
    client_credentials(&h.app, &new).await;
    let shown = admin(&h.app, Method::GET, "/clients/svc", None).await;
    assert!(!shown.text.contains(&new.secret) && shown.body.get("client_secret").is_none());
}

#[tokio::test]
async fn disabling_a_client_revokes_its_tokens_and_stops_new_ones() {
    let h = harness().await;
    let svc = register(&h.app, json!({"name": "Svc", "client_id": "svc"})).await;
    let bystander = register(&h.app, json!({"name": "By", "client_id": "by"})).await;
    let first = client_credentials(&h.app, &svc).await;
    let second = client_credentials(&h.app, &svc).await;
    let theirs = client_credentials(&h.app, &bystander).await;
    assert_eq!(check(&h.server, &first), Ok(()));
    assert_eq!(get_me(&h.app, &second).await.status, StatusCode::OK);

    let reply = admin(&h.app, Method::POST, "/clients/svc/disable", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["status"], "disabled");

    assert_eq!(check(&h.server, &first), Err(AuthErrorKind::Revoked));
    assert_eq!(check(&h.server, &second), Err(AuthErrorKind::Revoked));
    assert_eq!(
        check(&h.server, &theirs),
        Ok(()),
        "other clients keep theirs"
    );
    let me = get_me(&h.app, &second).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let refused = token(&h.app, &svc, &[("grant_type", "client_credentials")]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error(), "invalid_client");
    let tokens = admin(&h.app, Method::GET, "/clients/svc/tokens", None).await;
    assert_eq!(tokens.body, json!({"tokens": []}));

    // Approving it again lets it get new tokens; the old ones stay revoked.
    let reply = admin(&h.app, Method::POST, "/clients/svc/approve", None).await;
    assert_eq!(reply.body["status"], "approved");
    let fresh = client_credentials(&h.app, &svc).await;
    assert_eq!(check(&h.server, &fresh), Ok(()));
    assert_eq!(check(&h.server, &first), Err(AuthErrorKind::Revoked));
}

#[tokio::test]
async fn deleting_a_client_revokes_its_tokens_and_forgets_it() {
    let h = harness().await;
    let svc = password_client(&h.app, "svc").await;
    let (access, refresh_token) = password_grant(&h.app, &svc).await;
    let cc_client = register(&h.app, json!({"name": "CC", "client_id": "cc"})).await;
    let other = client_credentials(&h.app, &cc_client).await;

    let reply = admin(&h.app, Method::DELETE, "/clients/svc", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({"deleted": "svc", "revoked_tokens": 2}));

    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
    assert_eq!(check(&h.server, &other), Ok(()));
    let refused = refresh(&h.app, &svc, &refresh_token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.error(), "invalid_client");
    let refused = token(
        &h.app,
        &svc,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wonderland"),
        ],
    )
    .await;
    assert_eq!(refused.error(), "invalid_client");

    for (method, path) in [
        (Method::GET, "/clients/svc"),
        (Method::DELETE, "/clients/svc"),
        (Method::GET, "/clients/svc/tokens"),
    ] {
        let reply = admin(&h.app, method, path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let list = admin(&h.app, Method::GET, "/clients", None).await;
    assert_eq!(list.body["clients"].as_array().map(Vec::len), Some(1));

    // The id can be registered afresh; the old tokens stay revoked.
    register(&h.app, json!({"name": "Svc again", "client_id": "svc"})).await;
    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
}

#[tokio::test]
async fn admin_lists_a_clients_tokens_without_values_and_revokes_one_by_id() {
    let h = harness().await;
    let svc = password_client(&h.app, "svc").await;
    let (access1, refresh1) = password_grant(&h.app, &svc).await;
    let (access2, refresh2) = password_grant(&h.app, &svc).await;
    let cc = register(
        &h.app,
        json!({"name": "CC", "client_id": "cc", "scopes": ["read"]}),
    )
    .await;
    let cc_token = client_credentials(&h.app, &cc).await;

    let reply = admin(&h.app, Method::GET, "/clients/svc/tokens", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    for value in [&access1, &access2, &refresh1, &refresh2, &cc_token] {
        assert!(!reply.text.contains(value.as_str()), "a token value leaked");
    }
    let tokens = reply.body["tokens"].as_array().expect("tokens").clone();
    assert_eq!(tokens.len(), 4, "two access and two refresh tokens");
    let jti1 = jwt_claims(&access1)["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let jti2 = jwt_claims(&access2)["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let claims1 = jwt_claims(&access1);
    let by_id = |id: &str| {
        tokens
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("token {id} listed"))
            .clone()
    };
    let listed = by_id(&jti1);
    let family = listed["family_id"].as_str().expect("family").to_owned();
    assert_eq!(
        listed,
        json!({"id": jti1, "kind": "access_token", "subject": "alice",
               "scopes": ["read", "write"], "issued_at": claims1["iat"],
               "expires_at": claims1["exp"], "family_id": family})
    );
    by_id(&jti2);
    let refresh_rows: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["kind"] == "refresh_token")
        .collect();
    assert_eq!(refresh_rows.len(), 2);
    for row in &refresh_rows {
        let mut keys: Vec<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "expires_at",
                "family_id",
                "id",
                "issued_at",
                "kind",
                "scopes",
                "subject"
            ]
        );
        let lifetime =
            row["expires_at"].as_u64().expect("exp") - row["issued_at"].as_u64().expect("iat");
        assert_eq!(lifetime, 30 * 86_400);
    }

    // Revoke access token 1 by id: only it.
    let reply = admin(
        &h.app,
        Method::DELETE,
        &format!("/clients/svc/tokens/{jti1}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({"revoked": [jti1]}));
    assert_eq!(check(&h.server, &access1), Err(AuthErrorKind::Revoked));
    assert_eq!(check(&h.server, &access2), Ok(()));
    assert_eq!(check(&h.server, &cc_token), Ok(()));
    assert_eq!(
        refresh(&h.app, &svc, &refresh1).await.status,
        StatusCode::OK,
        "revoking the access token leaves its refresh token"
    );
    let again = admin(
        &h.app,
        Method::DELETE,
        &format!("/clients/svc/tokens/{jti1}"),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, json!({"revoked": []}), "already revoked");

    // Another client's token through the wrong client path: 404, and it keeps working.
    let cc_jti = jwt_claims(&cc_token)["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let reply = admin(
        &h.app,
        Method::DELETE,
        &format!("/clients/svc/tokens/{cc_jti}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(check(&h.server, &cc_token), Ok(()));
    let reply = admin(&h.app, Method::DELETE, "/clients/svc/tokens/unknown", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Revoking a refresh token by id takes its family along.
    let listed = admin(&h.app, Method::GET, "/clients/svc/tokens", None).await;
    let refresh2_row = listed.body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["kind"] == "refresh_token" && t["family_id"] == jwt_family(&listed, &jti2))
        .expect("refresh token of family 2")
        .clone();
    let reply = admin(
        &h.app,
        Method::DELETE,
        &format!(
            "/clients/svc/tokens/{}",
            refresh2_row["id"].as_str().expect("id")
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut revoked: Vec<String> = reply.body["revoked"]
        .as_array()
        .expect("revoked")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    revoked.sort_unstable();
    let mut expected = vec![
        jti2.clone(),
        refresh2_row["id"].as_str().expect("id").to_owned(),
    ];
    expected.sort_unstable();
    assert_eq!(revoked, expected);
    assert_eq!(check(&h.server, &access2), Err(AuthErrorKind::Revoked));
    assert_eq!(
        refresh(&h.app, &svc, &refresh2).await.error(),
        "invalid_grant"
    );
}

/// The family of the access token `jti` in a token listing.
fn jwt_family(listing: &Reply, jti: &str) -> Value {
    listing.body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == jti)
        .map(|t| t["family_id"].clone())
        .expect("listed")
}

// ---------------------------------------------------------------------------------------------
// 2. Revocation (RFC 7009)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_revoked_access_token_is_refused_by_the_api_in_the_same_process() {
    let h = harness().await;
    let svc = register(&h.app, json!({"name": "Svc", "client_id": "svc"})).await;
    let access = client_credentials(&h.app, &svc).await;
    let other = client_credentials(&h.app, &svc).await;
    let me = get_me(&h.app, &access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, json!({"sub": "svc", "client_id": "svc"}));

    let reply = revoke(&h.app, Some(&svc), &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({}));
    assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");

    let me = get_me(&h.app, &access).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let challenge = me.header(header::WWW_AUTHENTICATE);
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains("revoked"), "{challenge}");
    assert_eq!(get_me(&h.app, &other).await.status, StatusCode::OK);

    // Revoking it again is still 200.
    let reply = revoke(&h.app, Some(&svc), &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family_and_its_access_tokens() {
    let h = harness().await;
    let app_client = password_client(&h.app, "app").await;
    let (access1, refresh1) = password_grant(&h.app, &app_client).await;
    let rotated = refresh(&h.app, &app_client, &refresh1).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let access2 = rotated.str("access_token").to_owned();
    let refresh2 = rotated.str("refresh_token").to_owned();
    let (other_access, other_refresh) = password_grant(&h.app, &app_client).await;
    for t in [&access1, &access2, &other_access] {
        assert_eq!(check(&h.server, t), Ok(()));
    }

    let reply = revoke(
        &h.app,
        Some(&app_client),
        &[("token", &refresh2), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(check(&h.server, &access1), Err(AuthErrorKind::Revoked));
    assert_eq!(check(&h.server, &access2), Err(AuthErrorKind::Revoked));
    assert_eq!(
        get_me(&h.app, &access2).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refused = refresh(&h.app, &app_client, &refresh2).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error(), "invalid_grant");

    // Another grant of the same client and user is untouched.
    assert_eq!(check(&h.server, &other_access), Ok(()));
    assert_eq!(
        refresh(&h.app, &app_client, &other_refresh).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_type_hint_only_orders_the_search() {
    let h = harness().await;
    let app_client = password_client(&h.app, "app").await;

    // An access token named a refresh token: still found and revoked.
    let (access, _) = password_grant(&h.app, &app_client).await;
    let reply = revoke(
        &h.app,
        Some(&app_client),
        &[("token", &access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));

    // A refresh token named an access token: its family is revoked.
    let (access, refresh_token) = password_grant(&h.app, &app_client).await;
    let reply = revoke(
        &h.app,
        Some(&app_client),
        &[
            ("token", &refresh_token),
            ("token_type_hint", "access_token"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
    assert_eq!(
        refresh(&h.app, &app_client, &refresh_token).await.error(),
        "invalid_grant"
    );

    // An unknown hint is ignored; the right hint works too.
    let (access, _) = password_grant(&h.app, &app_client).await;
    let reply = revoke(
        &h.app,
        Some(&app_client),
        &[("token", &access), ("token_type_hint", "id_token")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
    let (access, _) = password_grant(&h.app, &app_client).await;
    let reply = revoke(
        &h.app,
        Some(&app_client),
        &[("token", &access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
}

#[tokio::test]
async fn revoking_unknown_tokens_succeeds_and_foreign_or_unauthenticated_requests_fail() {
    let h = harness().await;
    let owner = password_client(&h.app, "owner").await;
    let intruder = register(&h.app, json!({"name": "Intruder", "client_id": "intruder"})).await;
    let (access, refresh_token) = password_grant(&h.app, &owner).await;

    // Unknown tokens: 200, nothing to tell (RFC 7009 §2.2).
    let foreign_issuer = {
        let other = AuthorizationServer::builder()
            .issuer("https://elsewhere.test")
            .store(MemoryStore::new())
            .build()
            .await
            .expect("server");
        let other_app = app(&other);
        let c = register(&other_app, json!({"name": "x"})).await;
        client_credentials(&other_app, &c).await
    };
    for unknown in ["not-a-token", "a.b.c", foreign_issuer.as_str()] {
        let reply = revoke(&h.app, Some(&intruder), &[("token", unknown)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{unknown}: {}", reply.text);
        assert_eq!(reply.body, json!({}));
    }

    // Another client's tokens: unauthorized_client, and they keep working.
    for (t, hint) in [(&access, "access_token"), (&refresh_token, "refresh_token")] {
        let reply = revoke(
            &h.app,
            Some(&intruder),
            &[("token", t), ("token_type_hint", hint)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{hint}");
        assert_eq!(reply.error(), "unauthorized_client", "{hint}");
    }
    assert_eq!(check(&h.server, &access), Ok(()));
    assert_eq!(get_me(&h.app, &access).await.status, StatusCode::OK);

    // Unauthenticated, or with a wrong secret: invalid_client.
    let reply = revoke(&h.app, None, &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_client");
    assert!(reply.header(header::WWW_AUTHENTICATE).starts_with("Basic"));
    let wrong = Client {
        id: owner.id.clone(),
        secret: "wrong".into(),
    };
    let reply = revoke(&h.app, Some(&wrong), &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_client");
    let reply = revoke(&h.app, None, &[("token", &access), ("client_id", "owner")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "a client_id alone");
    assert_eq!(check(&h.server, &access), Ok(()));
    let rotated = refresh(&h.app, &owner, &refresh_token).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);

    // client_secret_post works as well as Basic.
    let reply = revoke(
        &h.app,
        None,
        &[
            ("token", &access),
            ("client_id", &owner.id),
            ("client_secret", &owner.secret),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
}

// ---------------------------------------------------------------------------------------------
// 3. Introspection (RFC 7662)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn introspecting_an_active_access_token() {
    let h = harness().await;
    let svc = register(
        &h.app,
        json!({"name": "Svc", "client_id": "svc", "scopes": ["read", "write"]}),
    )
    .await;
    let resource = register(&h.app, json!({"name": "API", "client_id": "api"})).await;
    let access = client_credentials(&h.app, &svc).await;
    let claims = jwt_claims(&access);
    let expected = json!({
        "active": true,
        "token_type": "Bearer",
        "scope": "read write",
        "client_id": "svc",
        "sub": "svc",
        "aud": [ISSUER],
        "iss": ISSUER,
        "jti": claims["jti"],
        "iat": claims["iat"],
        "exp": claims["exp"],
    });
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        3600
    );
    // The client itself, and a resource server registered as a client.
    for (who, hint) in [
        (&svc, None),
        (&resource, Some("access_token")),
        (&resource, Some("refresh_token")),
    ] {
        let mut params = vec![("token", access.as_str())];
        params.extend(hint.map(|h| ("token_type_hint", h)));
        let reply = introspect(&h.app, Some(who), &params).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");
        assert_eq!(reply.body, expected, "{} {hint:?}", who.id);
    }

    // A password-grant token names the user.
    let app_client = password_client(&h.app, "app").await;
    let (user_access, _) = password_grant(&h.app, &app_client).await;
    let reply = introspect(&h.app, Some(&resource), &[("token", &user_access)]).await;
    assert_eq!(reply.body["active"], true);
    assert_eq!(reply.body["sub"], "alice");
    assert_eq!(reply.body["client_id"], "app");
}

#[tokio::test]
async fn revoked_expired_and_garbage_tokens_are_inactive() {
    let h = harness_with(|b| {
        b.access_token_lifetime("1s".parse().expect("lifetime"))
            .leeway(Duration::ZERO)
    })
    .await;
    let svc = register(&h.app, json!({"name": "Svc", "client_id": "svc"})).await;
    let revoked = client_credentials(&h.app, &svc).await;
    let expiring = client_credentials(&h.app, &svc).await;
    let reply = revoke(&h.app, Some(&svc), &[("token", &revoked)]).await;
    assert_eq!(reply.status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(check(&h.server, &expiring), Err(AuthErrorKind::Expired));
    let tampered = format!("{}x", &expiring[..expiring.len() - 1]);
    for t in [
        revoked.as_str(),
        expiring.as_str(),
        "garbage",
        "a.b.c",
        tampered.as_str(),
    ] {
        let reply = introspect(&h.app, Some(&svc), &[("token", t)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{t}");
        assert_eq!(reply.body, json!({"active": false}), "{t}");
    }
}

#[tokio::test]
async fn refresh_tokens_are_active_only_for_their_own_client() {
    let h = harness().await;
    let app_client = password_client(&h.app, "app").await;
    let other = password_client(&h.app, "other").await;
    let (_, refresh_token) = password_grant(&h.app, &app_client).await;

    for hint in [None, Some("refresh_token"), Some("access_token")] {
        let mut params = vec![("token", refresh_token.as_str())];
        params.extend(hint.map(|h| ("token_type_hint", h)));
        let reply = introspect(&h.app, Some(&app_client), &params).await;
        assert_eq!(reply.status, StatusCode::OK);
        let iat = reply.body["iat"].as_u64().expect("iat");
        assert_eq!(
            reply.body,
            json!({"active": true, "token_type": "refresh_token", "client_id": "app",
                   "sub": "alice", "iss": ISSUER, "iat": iat, "exp": iat + 30 * 86_400,
                   "scope": "read write"}),
            "{hint:?}"
        );
        let reply = introspect(&h.app, Some(&other), &params).await;
        assert_eq!(reply.body, json!({"active": false}), "{hint:?}");
    }

    // Rotated out: inactive.
    let rotated = refresh(&h.app, &app_client, &refresh_token).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let reply = introspect(&h.app, Some(&app_client), &[("token", &refresh_token)]).await;
    assert_eq!(reply.body, json!({"active": false}));
}

#[tokio::test]
async fn introspection_needs_client_authentication() {
    let h = harness().await;
    let svc = register(&h.app, json!({"name": "Svc", "client_id": "svc"})).await;
    let access = client_credentials(&h.app, &svc).await;
    let reply = introspect(&h.app, None, &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_client");
    assert!(reply.header(header::WWW_AUTHENTICATE).starts_with("Basic"));
    assert!(!reply.text.contains("active"));
    let wrong = Client {
        id: "svc".into(),
        secret: "x".repeat(43),
    };
    let reply = introspect(&h.app, Some(&wrong), &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = introspect(&h.app, Some(&svc), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_request");
}

// ---------------------------------------------------------------------------------------------
// 4. Authorization code with PKCE
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn authorization_code_flow_with_pkce() {
    let h = harness().await;
    let web = web_client(&h.app, "web").await;
    let (verifier, challenge) = pkce("flow");

    // Not decided yet: the app's login page.
    let page = authorize(&h.app, &auth_params("web", &challenge), "login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.text, "login page");

    let reply = authorize(&h.app, &auth_params("web", &challenge), "approve").await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.text);
    assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");
    let (base, params) = reply.redirect();
    assert_eq!(base, REDIRECT);
    let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["code", "iss", "state"]);
    assert_eq!(params["state"], "xyz");
    assert_eq!(params["iss"], ISSUER);
    let code = params["code"].clone();
    assert_eq!(code.len(), 43);

    let seen = h.consent.seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].client_id, "web");
    assert_eq!(seen[1].client_name, "Web app");
    assert_eq!(seen[1].redirect_uri, REDIRECT);
    assert_eq!(seen[1].scopes, ["read", "write"]);
    assert_eq!(seen[1].state.as_deref(), Some("xyz"));

    let reply = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "read write");
    let access = reply.str("access_token").to_owned();
    let refresh_token = reply.str("refresh_token").to_owned();
    let verified = h.server.authenticator().verify(&access).expect("valid");
    assert_eq!(verified.subject(), Some("alice"));
    assert_eq!(verified.client_id(), Some("web"));
    assert_eq!(jwt_header(&access)["typ"], "at+jwt");
    let me = get_me(&h.app, &access).await;
    assert_eq!(me.body, json!({"sub": "alice", "client_id": "web"}));

    let rotated = refresh(&h.app, &web, &refresh_token).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_eq!(
        jwt_claims(rotated.str("access_token"))["sub"],
        "alice",
        "the refreshed token keeps the user"
    );

    // The consent hook may narrow the scopes; POST /authorize answers 303 See Other.
    let (verifier, challenge) = pkce("narrow");
    let params = auth_params("web", &challenge);
    let request = Request::post("/oauth2/authorize")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-consent", "narrow")
        .body(Body::from(encode_form(&params)))
        .expect("request");
    let reply = send(&h.app, request).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let (_, query) = reply.redirect();
    let reply = redeem(&h.app, &web, &query["code"], &verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["scope"], "read");
}

#[tokio::test]
async fn authorization_errors_before_the_redirect_uri_is_trusted_are_not_redirected() {
    let h = harness().await;
    web_client(&h.app, "web").await;
    let (_, challenge) = pkce("direct");
    let mut cases: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
    cases.push(("unknown client", auth_params("nobody", &challenge)));
    let mut unregistered = auth_params("web", &challenge);
    unregistered[2] = ("redirect_uri", "https://evil.example/cb");
    cases.push(("unregistered redirect_uri", unregistered));
    let mut prefix = auth_params("web", &challenge);
    prefix[2] = ("redirect_uri", "https://app.example/cb/extra");
    cases.push(("redirect_uri only a prefix match", prefix));
    let mut missing_uri = auth_params("web", &challenge);
    missing_uri.remove(2);
    cases.push(("redirect_uri omitted with two registered", missing_uri));
    let mut missing_client = auth_params("web", &challenge);
    missing_client.remove(1);
    cases.push(("client_id missing", missing_client));
    for (what, params) in cases {
        let reply = authorize(&h.app, &params, "approve").await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.text
        );
        assert_eq!(reply.error(), "invalid_request", "{what}");
        assert!(reply.headers.get(header::LOCATION).is_none(), "{what}");
        assert_eq!(reply.header(header::CONTENT_TYPE), "application/json");
    }
    assert!(
        h.consent.seen.lock().expect("log").is_empty(),
        "the app was never asked"
    );
}

#[tokio::test]
async fn authorization_errors_after_the_redirect_uri_is_trusted_are_redirected() {
    let h = harness().await;
    web_client(&h.app, "web").await;
    register(
        &h.app,
        json!({"name": "Machine", "client_id": "machine", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let (_, challenge) = pkce("redirected");
    let with = |changes: &[(&'static str, Option<&'static str>)]| {
        let mut params: Vec<(&str, String)> = auth_params("web", &challenge)
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        for (name, value) in changes {
            params.retain(|(k, _)| k != name);
            if let Some(value) = value {
                params.push((name, (*value).to_owned()));
            }
        }
        params
    };
    let cases = [
        (
            "no code_challenge",
            with(&[("code_challenge", None)]),
            "approve",
            "invalid_request",
        ),
        (
            "plain PKCE",
            with(&[("code_challenge_method", Some("plain"))]),
            "approve",
            "invalid_request",
        ),
        (
            "no code_challenge_method",
            with(&[("code_challenge_method", None)]),
            "approve",
            "invalid_request",
        ),
        (
            "short code_challenge",
            with(&[("code_challenge", Some("abc"))]),
            "approve",
            "invalid_request",
        ),
        (
            "implicit",
            with(&[("response_type", Some("token"))]),
            "approve",
            "unsupported_response_type",
        ),
        (
            "no response_type",
            with(&[("response_type", None)]),
            "approve",
            "invalid_request",
        ),
        (
            "scope not allowed",
            with(&[("scope", Some("read admin"))]),
            "approve",
            "invalid_scope",
        ),
        (
            "client without the grant",
            with(&[("client_id", Some("machine"))]),
            "approve",
            "unauthorized_client",
        ),
        ("user denied", with(&[]), "deny", "access_denied"),
    ];
    for (what, params, consent, error) in cases {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = authorize(&h.app, &params, consent).await;
        assert_eq!(reply.status, StatusCode::FOUND, "{what}: {}", reply.text);
        let (base, query) = reply.redirect();
        assert_eq!(base, REDIRECT, "{what}");
        assert_eq!(
            query.get("error").map(String::as_str),
            Some(error),
            "{what}"
        );
        assert_eq!(
            query.get("state").map(String::as_str),
            Some("xyz"),
            "{what}"
        );
        assert_eq!(query.get("iss").map(String::as_str), Some(ISSUER), "{what}");
        assert!(query.contains_key("error_description"), "{what}");
        assert!(!query.contains_key("code"), "{what}");
    }
    // Only the denial reached the app.
    assert_eq!(h.consent.seen.lock().expect("log").len(), 1);
}

#[tokio::test]
async fn bad_code_redemptions_are_invalid_grant() {
    let h = harness().await;
    let web = web_client(&h.app, "web").await;
    let other = web_client(&h.app, "other").await;
    let (verifier, challenge) = pkce("bad");

    let code = get_code(&h.app, "web", &challenge).await;
    let (wrong_verifier, _) = pkce("wrong");
    let reply = redeem(&h.app, &web, &code, &wrong_verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_grant", "wrong verifier");

    let code = get_code(&h.app, "web", &challenge).await;
    let reply = redeem(&h.app, &web, &code, &verifier, OTHER_REDIRECT).await;
    assert_eq!(
        reply.error(),
        "invalid_grant",
        "other registered redirect_uri"
    );

    let code = get_code(&h.app, "web", &challenge).await;
    let reply = redeem(&h.app, &other, &code, &verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_grant", "another client's code");

    let reply = redeem(&h.app, &web, "no-such-code", &verifier, REDIRECT).await;
    assert_eq!(reply.error(), "invalid_grant", "unknown code");

    let code = get_code(&h.app, "web", &challenge).await;
    let reply = token(
        &h.app,
        &web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(reply.error(), "invalid_request", "no code_verifier");
    let reply = redeem(&h.app, &web, &code, "short", REDIRECT).await;
    assert_eq!(reply.error(), "invalid_request", "malformed code_verifier");
    // Neither malformed request consumed the code.
    let reply = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn expired_codes_are_invalid_grant() {
    let h = harness_with(|b| b.authorization_code_lifetime(Duration::from_secs(1))).await;
    let web = web_client(&h.app, "web").await;
    let (verifier, challenge) = pkce("expired");
    let code = get_code(&h.app, "web", &challenge).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_grant");
    assert!(reply.str("error_description").contains("expired"));
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let h = harness().await;
    let web = web_client(&h.app, "web").await;
    let (verifier, challenge) = pkce("reuse");
    let code = get_code(&h.app, "web", &challenge).await;
    let first = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let access = first.str("access_token").to_owned();
    let refresh_token = first.str("refresh_token").to_owned();
    assert_eq!(check(&h.server, &access), Ok(()));

    let second = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST, "{}", second.text);
    assert_eq!(second.error(), "invalid_grant");
    assert!(second.body.get("access_token").is_none());

    assert_eq!(check(&h.server, &access), Err(AuthErrorKind::Revoked));
    assert_eq!(
        get_me(&h.app, &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refused = refresh(&h.app, &web, &refresh_token).await;
    assert_eq!(refused.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_redemptions_of_one_code_yield_one_token() {
    let h = harness().await;
    let web = web_client(&h.app, "web").await;
    let (verifier, challenge) = pkce("race");
    let code = get_code(&h.app, "web", &challenge).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (app, web, code, verifier) =
            (h.app.clone(), web.clone(), code.clone(), verifier.clone());
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let request = form_request(
                "/oauth2/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", &verifier),
                    ("redirect_uri", REDIRECT),
                ],
                Some(&web),
            );
            barrier.wait().await;
            let reply = send(&app, request).await;
            let access = reply.body["access_token"].as_str().map(str::to_owned);
            (reply.status, reply.error().to_owned(), access)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, error, access) = task.await.expect("task");
        if status == StatusCode::OK {
            winners.push(access.expect("access token"));
        } else {
            assert_eq!(
                (status, error.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_grant")
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins");

    // A replay after the winner has its tokens revokes them.
    let replay = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(replay.error(), "invalid_grant");
    assert_eq!(check(&h.server, &winners[0]), Err(AuthErrorKind::Revoked));
}

// ---------------------------------------------------------------------------------------------
// 5. Metadata (RFC 8414)
// ---------------------------------------------------------------------------------------------

async fn metadata(app: &Router, path: &str) -> Reply {
    send(
        app,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

#[tokio::test]
async fn metadata_document_describes_the_endpoints() {
    let h = harness().await;
    let reply = metadata(&h.app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=3600");
    let methods = json!(["client_secret_basic", "client_secret_post"]);
    let with_public = json!(["client_secret_basic", "client_secret_post", "none"]);
    assert_eq!(
        reply.body,
        json!({
            "issuer": ISSUER,
            "authorization_endpoint": format!("{ISSUER}/oauth2/authorize"),
            "token_endpoint": format!("{ISSUER}/oauth2/token"),
            "jwks_uri": format!("{ISSUER}/oauth2/jwks.json"),
            "revocation_endpoint": format!("{ISSUER}/oauth2/revoke"),
            "introspection_endpoint": format!("{ISSUER}/oauth2/introspect"),
            "grant_types_supported":
                ["authorization_code", "client_credentials", "refresh_token", "password"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "token_endpoint_auth_methods_supported": with_public,
            "revocation_endpoint_auth_methods_supported": with_public,
            "introspection_endpoint_auth_methods_supported": methods,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "PS256", "RS256"],
        })
    );

    // Without a consent handler (nor a password verifier), and with another endpoint base.
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .endpoint_base("https://api.test/auth/")
        .store(MemoryStore::new())
        .build()
        .await
        .expect("server");
    let reply = metadata(&app(&server), "/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.get("authorization_endpoint").is_none());
    assert!(reply.body.get("response_modes_supported").is_none());
    assert_eq!(reply.body["issuer"], ISSUER);
    assert_eq!(reply.body["token_endpoint"], "https://api.test/auth/token");
    assert_eq!(reply.body["jwks_uri"], "https://api.test/auth/jwks.json");
    assert_eq!(
        reply.body["revocation_endpoint"],
        "https://api.test/auth/revoke"
    );
    assert_eq!(
        reply.body["introspection_endpoint"],
        "https://api.test/auth/introspect"
    );
    assert_eq!(
        reply.body["grant_types_supported"],
        json!(["client_credentials", "refresh_token"])
    );
    assert_eq!(reply.body["response_types_supported"], json!([]));
    assert_eq!(
        reply.body["code_challenge_methods_supported"],
        json!(["S256"])
    );
}

#[tokio::test]
async fn metadata_of_an_issuer_with_a_path_is_served_under_that_path() {
    let server = AuthorizationServer::builder()
        .issuer("https://x.example/tenant/")
        .store(MemoryStore::new())
        .build()
        .await
        .expect("server");
    assert_eq!(server.issuer(), "https://x.example/tenant");
    let app = app(&server);
    let reply = metadata(&app, "/.well-known/oauth-authorization-server/tenant").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["issuer"], "https://x.example/tenant");
    assert_eq!(
        reply.body["token_endpoint"],
        "https://x.example/tenant/oauth2/token"
    );
    assert_eq!(
        reply.body["jwks_uri"],
        "https://x.example/tenant/oauth2/jwks.json"
    );
    let root = metadata(&app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(root.status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// 6. JWKS and key rotation
// ---------------------------------------------------------------------------------------------

async fn jwks(app: &Router) -> Reply {
    let reply = metadata(app, "/oauth2/jwks.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply
}

#[tokio::test]
async fn jwks_publishes_the_public_keys_across_a_rotation() {
    let h = harness().await;
    let svc = register(&h.app, json!({"name": "Svc", "client_id": "svc"})).await;
    let old_kid = h.server.signing_key_id();
    let reply = jwks(&h.app).await;
    assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=300");
    let keys = reply.body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let mut members: Vec<&str> = keys[0]
        .as_object()
        .expect("jwk")
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(keys[0]["kid"], old_kid.as_str());
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0].get("d").is_none());

    let before = client_credentials(&h.app, &svc).await;
    assert_eq!(jwt_header(&before)["kid"], old_kid.as_str());
    assert_eq!(jwt_header(&before)["alg"], "ES256");

    let new_key = SigningKey::generate(Algorithm::EdDSA).expect("key");
    let new_kid = new_key.kid().to_owned();
    h.server
        .rotate_signing_key(new_key.clone())
        .await
        .expect("rotate");
    assert_eq!(h.server.signing_key_id(), new_kid);
    assert!(
        h.server.rotate_signing_key(new_key).await.is_err(),
        "a key in use cannot come again"
    );

    let after = client_credentials(&h.app, &svc).await;
    assert_eq!(
        jwt_header(&after),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": new_kid})
    );
    let reply = jwks(&h.app).await;
    let keys = reply.body["keys"].as_array().expect("keys");
    let kids: Vec<&str> = keys
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()], "active first");
    assert!(keys.iter().all(|k| k.get("d").is_none()));
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");

    // Both validate in process, and with a plain authenticator given the published JWKS.
    assert_eq!(check(&h.server, &before), Ok(()));
    assert_eq!(check(&h.server, &after), Ok(()));
    let plain = Authenticator::builder()
        .issuer(ISSUER)
        .audience(ISSUER)
        .require_type("at+jwt")
        .keys(KeySet::from_jwks_json(&reply.text).expect("jwks"))
        .build()
        .expect("authenticator");
    for t in [&before, &after] {
        let verified = plain.verify(t).expect("valid");
        assert_eq!(verified.subject(), Some("svc"));
    }
}

#[tokio::test]
async fn a_retired_key_is_dropped_once_its_tokens_can_have_expired() {
    // Access tokens live 1 s and no leeway is allowed: a key retired now is needed ~2 s.
    let h = harness_with(|b| {
        b.access_token_lifetime("1s".parse().expect("lifetime"))
            .leeway(Duration::ZERO)
    })
    .await;
    let old_kid = h.server.signing_key_id();
    h.server
        .rotate_signing_key(SigningKey::generate(Algorithm::ES256).expect("key"))
        .await
        .expect("rotate");
    let kids = |reply: &Reply| -> Vec<String> {
        reply.body["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    };
    let new_kid = h.server.signing_key_id();
    assert_eq!(
        kids(&jwks(&h.app).await),
        [new_kid.clone(), old_kid.clone()]
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(kids(&jwks(&h.app).await), [new_kid]);
    // A client with a longer lifetime keeps the next retired key around for longer.
    register(
        &h.app,
        json!({"name": "long", "access_token_lifetime": "1h"}),
    )
    .await;
    let before = h.server.signing_key_id();
    h.server
        .rotate_signing_key(SigningKey::generate(Algorithm::ES256).expect("key"))
        .await
        .expect("rotate");
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(kids(&jwks(&h.app).await).contains(&before));
}

#[cfg(feature = "remote")]
#[tokio::test]
async fn a_remote_authenticator_discovers_the_servers_keys_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let server = AuthorizationServer::builder()
        .issuer(&issuer)
        .store(MemoryStore::new())
        .build()
        .await
        .expect("server");
    let secret = "s".repeat(40);
    let mut registration = ClientRegistration::new("Remote");
    registration.client_id = Some("remote".into());
    registration.secret =
        Some(tower_oauth2::server::ClientSecret::from_value(secret.clone()).expect("secret"));
    let (record, shown) = server
        .register_client(registration)
        .await
        .expect("registered");
    assert_eq!(record.client_id, "remote");
    assert!(shown.is_none(), "a supplied secret is not handed back");
    let served = app(&server);
    let serving = tokio::spawn(async move {
        axum::serve(listener, served).await.expect("serve");
    });

    let http = reqwest::Client::new();
    let fetch_token = async || {
        let response = http
            .post(format!("{issuer}/oauth2/token"))
            .basic_auth("remote", Some(&secret))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
        body["access_token"].as_str().expect("token").to_owned()
    };
    let first = fetch_token().await;

    let remote = Authenticator::builder()
        .issuer(&issuer)
        .audience(&issuer)
        .require_type("at+jwt")
        .build()
        .expect("authenticator");
    remote
        .refresh_keys()
        .await
        .expect("discovery and JWKS fetch");
    let state = remote.key_source_state().expect("remote keys");
    assert_eq!(state.discovered_from.as_deref(), Some(issuer.as_str()));
    let verified = remote.verify(&first).expect("valid");
    assert_eq!(verified.subject(), Some("remote"));
    assert_eq!(verified.issuer(), Some(issuer.as_str()));

    // After a rotation, a refetch brings the new key; the old token stays valid.
    server
        .rotate_signing_key(SigningKey::generate(Algorithm::RS256).expect("key"))
        .await
        .expect("rotate");
    let second = fetch_token().await;
    assert_eq!(
        remote.verify(&second).map_err(|e| e.kind()).err(),
        Some(AuthErrorKind::UnknownKey),
        "verify never refetches on its own"
    );
    remote.refresh_keys().await.expect("refetch");
    assert_eq!(
        remote.verify(&second).expect("valid").subject(),
        Some("remote")
    );
    assert!(remote.verify(&first).is_ok());
    serving.abort();
}

// ---------------------------------------------------------------------------------------------
// 7. Loading signing keys
// ---------------------------------------------------------------------------------------------

fn key_file(name: &str) -> String {
    let path = format!("{}/tests/data/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Issues a client-credentials token from a server signing with `key`.
async fn token_signed_with(key: SigningKey) -> (AuthorizationServer, String) {
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(MemoryStore::new())
        .signing_key(key)
        .build()
        .await
        .expect("server");
    let app = app(&server);
    let client = register(&app, json!({"name": "Svc", "client_id": "svc"})).await;
    let token = client_credentials(&app, &client).await;
    (server, token)
}

fn plain_authenticator(key: Key) -> Authenticator {
    Authenticator::builder()
        .issuer(ISSUER)
        .audience(ISSUER)
        .require_type("at+jwt")
        .key(key)
        .build()
        .expect("authenticator")
}

#[tokio::test]
async fn pkcs8_pem_keys_sign_tokens_their_public_pem_verifies() {
    for (private, public, alg) in [
        ("ec_private.pem", "ec_public.pem", Algorithm::ES256),
        ("ed_private.pem", "ed_public.pem", Algorithm::EdDSA),
        ("rsa_private.pem", "rsa_public.pem", Algorithm::RS256),
    ] {
        let pem = key_file(private);
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{private} is PKCS#8"
        );
        let key = SigningKey::from_pem(&pem).expect(private);
        assert_eq!(key.algorithm(), alg, "{private}");
        let from_file = SigningKey::from_pem_file(format!(
            "{}/tests/data/keys/{private}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect(private);
        assert_eq!(from_file.kid(), key.kid());
        assert!(key.public_jwk().get("d").is_none());

        let kid = key.kid().to_owned();
        let (server, token) = token_signed_with(key).await;
        assert_eq!(server.signing_key_id(), kid);
        assert_eq!(jwt_header(&token)["kid"], kid.as_str(), "{private}");
        assert_eq!(
            jwt_header(&token)["alg"],
            serde_json::to_value(alg).expect("alg"),
            "{private}"
        );

        let public_key = Key::from_pem(key_file(public))
            .expect(public)
            .with_kid(&kid);
        let verified = plain_authenticator(public_key)
            .verify(&token)
            .unwrap_or_else(|e| panic!("{private}: {e}"));
        assert_eq!(verified.subject(), Some("svc"));
        assert_eq!(verified.algorithm(), Some(alg));

        // A different key of the same type does not verify it.
        let stranger = SigningKey::generate(alg).expect("key");
        let jwk = stranger.public_jwk().to_string();
        let wrong = Key::from_jwk_json(&jwk).expect("jwk").with_kid(&kid);
        assert_eq!(
            plain_authenticator(wrong)
                .verify(&token)
                .map_err(|e| e.kind())
                .err(),
            Some(AuthErrorKind::BadSignature),
            "{private}"
        );
    }
}

#[test]
fn the_kid_is_the_rfc7638_thumbprint() {
    let key = SigningKey::from_pem(key_file("ec_private.pem")).expect("key");
    let jwks: Value = serde_json::from_str(&key_file("jwks.json")).expect("jwks");
    let ec = &jwks["keys"][1];
    assert_eq!(ec["kid"], "ec-1");
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        ec["x"].as_str().expect("x"),
        ec["y"].as_str().expect("y")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    assert_eq!(key.kid(), URL_SAFE_NO_PAD.encode(digest.as_ref()));
    assert_eq!(
        key.public_jwk(),
        json!({"crv": "P-256", "kty": "EC", "x": ec["x"], "y": ec["y"],
               "kid": key.kid(), "alg": "ES256", "use": "sig"})
    );
}

#[tokio::test]
async fn sec1_pkcs1_and_private_jwk_encodings_load_the_same_keys() {
    let pkcs8 = |name| SigningKey::from_pem(key_file(name)).expect(name);
    let ec = pkcs8("ec_private.pem");
    let ed = pkcs8("ed_private.pem");
    let rsa = pkcs8("rsa_private.pem");

    let sec1_pem = key_file("ec_sec1_private.pem");
    assert!(sec1_pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let sec1 = SigningKey::from_pem(&sec1_pem).expect("SEC 1");
    assert_eq!(sec1.algorithm(), Algorithm::ES256);
    assert_eq!(sec1.kid(), ec.kid(), "the same key");

    let pkcs1_pem = key_file("rsa_pkcs1_private.pem");
    assert!(pkcs1_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let pkcs1 = SigningKey::from_pem(&pkcs1_pem).expect("PKCS#1");
    assert_eq!(pkcs1.algorithm(), Algorithm::RS256);
    assert_eq!(pkcs1.kid(), rsa.kid());

    for (file, same, alg) in [
        ("ec_private.jwk.json", &ec, Algorithm::ES256),
        ("ed_private.jwk.json", &ed, Algorithm::EdDSA),
        ("rsa_private.jwk.json", &rsa, Algorithm::RS256),
    ] {
        let key = SigningKey::from_jwk_json(&key_file(file)).expect(file);
        assert_eq!(key.algorithm(), alg, "{file}");
        assert_eq!(key.kid(), same.kid(), "{file}");
        assert_eq!(key.public_jwk(), same.public_jwk(), "{file}");
        assert!(key.public_jwk().get("d").is_none());
    }
    // A kid in the JWK is kept.
    let mut jwk: Value = serde_json::from_str(&key_file("ed_private.jwk.json")).expect("jwk");
    jwk["kid"] = "ed-1".into();
    let ed_1 = SigningKey::from_jwk_json(&jwk.to_string()).expect("jwk");
    assert_eq!(ed_1.kid(), "ed-1");

    // Tokens signed with the SEC 1 key verify with the PKCS#8 key's public PEM, and those of
    // the JWK with kid ed-1 with the test JWKS.
    let (_, token) = token_signed_with(sec1).await;
    let public = Key::from_pem(key_file("ec_public.pem"))
        .expect("pem")
        .with_kid(ec.kid());
    assert!(plain_authenticator(public).verify(&token).is_ok());
    let (_, token) = token_signed_with(ed_1).await;
    let test_jwks = Authenticator::builder()
        .issuer(ISSUER)
        .audience(ISSUER)
        .require_type("at+jwt")
        .keys(KeySet::from_jwks_json(&key_file("jwks.json")).expect("jwks"))
        .build()
        .expect("authenticator");
    assert_eq!(
        test_jwks.verify(&token).expect("valid").key_id(),
        Some("ed-1")
    );
}

#[test]
fn mismatched_public_only_and_malformed_keys_are_errors_not_panics() {
    let stranger = |alg| SigningKey::generate(alg).expect("key").public_jwk();

    // A private JWK whose public half is another key's.
    for (file, alg) in [
        ("ec_private.jwk.json", Algorithm::ES256),
        ("ed_private.jwk.json", Algorithm::EdDSA),
    ] {
        let mut jwk: Value = serde_json::from_str(&key_file(file)).expect("jwk");
        jwk["x"] = stranger(alg)["x"].clone();
        let error = SigningKey::from_jwk_json(&jwk.to_string()).expect_err(file);
        assert!(
            error.to_string().starts_with("signing key"),
            "{file}: {error}"
        );
    }
    let mut jwk: Value = serde_json::from_str(&key_file("ed_private.jwk.json")).expect("jwk");
    jwk["x"] = stranger(Algorithm::EdDSA)["x"].clone();
    let error = SigningKey::from_jwk_json(&jwk.to_string()).expect_err("mismatch");
    assert_eq!(
        error.to_string(),
        "signing key JWK: `x` does not match the private key"
    );
    let mut jwk: Value = serde_json::from_str(&key_file("rsa_private.jwk.json")).expect("jwk");
    jwk["e"] = "AQAD".into();
    assert!(
        SigningKey::from_jwk_json(&jwk.to_string()).is_err(),
        "RSA e"
    );

    // Public-only JWKs.
    let jwks: Value = serde_json::from_str(&key_file("jwks.json")).expect("jwks");
    for public in jwks["keys"].as_array().expect("keys") {
        let error = SigningKey::from_jwk_json(&public.to_string()).expect_err("public only");
        assert!(
            error.to_string().contains("missing `d`")
                || error.to_string().contains("expected an EC P-256"),
            "{public}: {error}"
        );
    }

    // Malformed JWKs.
    let mut short_d: Value = serde_json::from_str(&key_file("ec_private.jwk.json")).expect("jwk");
    short_d["d"] = "AAAA".into();
    for bad in [
        String::new(),
        "not json".into(),
        "[]".into(),
        r#"{"kty":"oct","k":"AAAA"}"#.into(),
        r#"{"kty":"OKP","crv":"Ed25519","d":"!!"}"#.into(),
        r#"{"kty":"OKP","crv":"X25519","d":"AAAA"}"#.into(),
        short_d.to_string(),
    ] {
        assert!(SigningKey::from_jwk_json(&bad).is_err(), "{bad}");
    }

    // Malformed PEM.
    let armor = |label: &str, der: &[u8]| {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(der)
        )
    };
    let der_of = |pem: &str| {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).expect("base64")
    };
    let ec_der = der_of(&key_file("ec_private.pem"));
    for bad in [
        String::new(),
        "garbage".into(),
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".into(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        "-----BEGIN PRIVATE KEY-----\n".into(),
        armor("EC PRIVATE KEY", b"\x30\x03\x02\x01\x01"),
        armor("RSA PRIVATE KEY", &ec_der),
        armor("EC PRIVATE KEY", &ec_der),
        armor("CERTIFICATE", &ec_der),
        key_file("ec_public.pem"),
        key_file("rsa_public.pem"),
        key_file("ec384_private.pem"),
    ] {
        assert!(SigningKey::from_pem(&bad).is_err(), "{bad}");
    }
    assert!(SigningKey::from_pem(b"\xff\xfe\x00garbage").is_err());
    assert!(SigningKey::from_pem_file("/nonexistent/key.pem").is_err());

    // Every truncation of each key is an error; every single-byte corruption is at worst an
    // error (never a panic).
    for file in ["ec_private.pem", "ed_private.pem", "ec_sec1_private.pem"] {
        let pem = key_file(file);
        let label = pem
            .lines()
            .next()
            .expect("armor")
            .trim_start_matches("-----BEGIN ")
            .trim_end_matches("-----")
            .to_owned();
        let der = der_of(&pem);
        for len in 0..der.len() {
            assert!(
                SigningKey::from_pem(armor(&label, &der[..len])).is_err(),
                "{file} truncated to {len}"
            );
        }
        for i in 0..der.len() {
            let mut corrupt = der.clone();
            corrupt[i] ^= 0x41;
            let _ = SigningKey::from_pem(armor(&label, &corrupt));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Hardening: what a review of the server found
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "remote")]
#[tokio::test]
async fn the_servers_own_authenticator_fetches_nothing() {
    // Its authenticator uses the server's keys directly: no discovery of an issuer that
    // does not resolve, no remote key source.
    let server = AuthorizationServer::builder()
        .issuer("https://nowhere.invalid")
        .store(MemoryStore::new())
        .build()
        .await
        .expect("builds");
    let app = app(&server);
    let client = register(&app, json!({"name": "svc"})).await;
    let access = client_credentials(&app, &client).await;
    assert_eq!(check(&server, &access), Ok(()));
    assert!(server.authenticator().key_source_state().is_none());
}

#[tokio::test]
async fn another_clients_attempt_does_not_spoil_a_code() {
    let h = harness().await;
    let web = web_client(&h.app, "web").await;
    let thief = web_client(&h.app, "thief").await;
    let (verifier, challenge) = pkce("spoil");
    let code = get_code(&h.app, "web", &challenge).await;
    let stolen = redeem(&h.app, &thief, &code, &verifier, REDIRECT).await;
    assert_eq!(stolen.error(), "invalid_grant");
    let reply = redeem(&h.app, &web, &code, &verifier, REDIRECT).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(check(&h.server, reply.str("access_token")), Ok(()));
}

#[tokio::test]
async fn introspection_allows_no_leeway_past_exp() {
    let h = harness().await;
    let client = register(
        &h.app,
        json!({"name": "short", "access_token_lifetime": "1s"}),
    )
    .await;
    let access = client_credentials(&h.app, &client).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The authenticator's 60 s leeway still accepts it; introspection reports the truth.
    assert_eq!(check(&h.server, &access), Ok(()));
    let reply = introspect(&h.app, Some(&client), &[("token", &access)]).await;
    assert_eq!(reply.body, json!({"active": false}));
}

#[tokio::test]
async fn revocations_reach_a_second_server_on_the_same_store() {
    // Two instances (or one restarted) sharing a store and a signing key.
    let store: Arc<dyn tower_oauth2::server::store::Store> = Arc::new(MemoryStore::new());
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let build = || async {
        AuthorizationServer::builder()
            .issuer(ISSUER)
            .shared_store(Arc::clone(&store))
            .signing_key(key.clone())
            .build()
            .await
            .expect("server")
    };
    let (a, b) = (build().await, build().await);
    let app_a = app(&a);
    let client = register(&app_a, json!({"name": "svc"})).await;
    let access = client_credentials(&app_a, &client).await;
    assert_eq!(check(&b, &access), Ok(()), "B validates A's token");
    let reply = revoke(&app_a, Some(&client), &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(check(&a, &access), Err(AuthErrorKind::Revoked));
    // B's introspection reads the store at once; its denylist learns on load.
    let reply = introspect(&app(&b), Some(&client), &[("token", &access)]).await;
    assert_eq!(reply.body, json!({"active": false}));
    assert_eq!(b.load_revocations().await, Ok(1));
    assert_eq!(check(&b, &access), Err(AuthErrorKind::Revoked));
    // A third instance started afterwards loads the denylist in the background at start.
    let c = build().await;
    let mut waited = 0;
    while check(&c, &access) == Ok(()) && waited < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(check(&c, &access), Err(AuthErrorKind::Revoked));
}

#[tokio::test]
async fn overlong_client_ids_are_refused_without_a_lookup() {
    let h = harness_with(|b| b.client_auth_rate_limit(1, Duration::from_secs(60))).await;
    let client = register(&h.app, json!({"name": "svc", "client_id": "svc"})).await;
    let long = Client {
        id: "x".repeat(129),
        secret: "whatever".into(),
    };
    for _ in 0..3 {
        let reply = token(&h.app, &long, &[("grant_type", "client_credentials")]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        assert_eq!(reply.error(), "invalid_client");
    }
    // Not counted: with a limit of one failure, a counted attempt would have locked the id.
    let again = Client {
        id: "x".repeat(129),
        secret: "whatever".into(),
    };
    let reply = token(&h.app, &again, &[("grant_type", "client_credentials")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    client_credentials(&h.app, &client).await;
}

#[tokio::test]
async fn registration_needs_a_json_content_type() {
    let h = harness().await;
    let request = Request::post("/admin/clients")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(json!({"name": "csrf"}).to_string()))
        .expect("request");
    let reply = send(&h.app, request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
    let listed = admin(&h.app, Method::GET, "/clients", None).await;
    assert_eq!(listed.body["clients"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// 9. Instances sharing a store: signing keys and revocations kept in step
// ---------------------------------------------------------------------------------------------

fn shared_instance(
    store: &Arc<dyn tower_oauth2::server::store::Store>,
) -> AuthorizationServerBuilder {
    AuthorizationServer::builder()
        .issuer(ISSUER)
        .shared_store(Arc::clone(store))
        .sync_interval(Duration::from_millis(100))
}

/// Polls `f` for up to 3 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..60 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test]
async fn instances_on_one_store_share_keys_rotations_and_revocations() {
    let store: Arc<dyn tower_oauth2::server::store::Store> = Arc::new(MemoryStore::new());
    let a = shared_instance(&store).build().await.expect("a");
    let b = shared_instance(&store).build().await.expect("b");
    assert_eq!(
        a.signing_key_id(),
        b.signing_key_id(),
        "one key in the store"
    );
    let (app_a, app_b) = (app(&a), app(&b));
    let client = register(&app_a, json!({"name": "svc"})).await;
    let access = client_credentials(&app_a, &client).await;
    assert_eq!(check(&b, &access), Ok(()));

    // Revoked on A: B's authenticator refuses it within the sync interval, unprompted.
    let reply = revoke(&app_a, Some(&client), &[("token", &access)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(eventually(|| check(&b, &access) == Err(AuthErrorKind::Revoked)).await);

    // Rotated on B: A signs with the new key and publishes both.
    let fresh = client_credentials(&app_a, &client).await;
    b.rotate_signing_key(SigningKey::generate(Algorithm::EdDSA).expect("key"))
        .await
        .expect("rotate");
    let new_kid = b.signing_key_id();
    assert!(eventually(|| a.signing_key_id() == new_kid).await);
    let after = client_credentials(&app_a, &client).await;
    assert_eq!(jwt_header(&after)["kid"], new_kid.as_str());
    assert_eq!(check(&b, &after), Ok(()));
    assert_eq!(
        check(&b, &fresh),
        Ok(()),
        "tokens of the retired key still verify"
    );
    let reply = jwks(&app_b).await;
    assert_eq!(reply.body["keys"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn stored_signing_keys_are_sealed_with_the_key_encryption_secret() {
    let store: Arc<dyn tower_oauth2::server::store::Store> = Arc::new(MemoryStore::new());
    let secret = [42u8; 32];
    let a = shared_instance(&store)
        .key_encryption_secret(secret)
        .build()
        .await
        .expect("a");
    let records = store.signing_keys().await.expect("keys");
    assert_eq!(records.len(), 1);
    assert!(records[0].encrypted);
    assert_eq!(records[0].kid, a.signing_key_id());
    assert!(!format!("{:?}", records[0]).contains("private_key"));
    // The same secret opens it (a restart); another secret, or none, is a clear build error.
    let again = shared_instance(&store)
        .key_encryption_secret(secret)
        .build()
        .await
        .expect("restart");
    assert_eq!(again.signing_key_id(), a.signing_key_id());
    let wrong = shared_instance(&store)
        .key_encryption_secret([7u8; 32])
        .build()
        .await
        .expect_err("wrong secret");
    assert!(
        wrong.to_string().contains("key_encryption_secret"),
        "{wrong}"
    );
    let none = shared_instance(&store)
        .build()
        .await
        .expect_err("no secret");
    assert!(none.to_string().contains("key_encryption_secret"), "{none}");
    let short = shared_instance(&store)
        .key_encryption_secret([1u8; 16])
        .build()
        .await
        .expect_err("short secret");
    assert!(short.to_string().contains("32 bytes"), "{short}");
}
