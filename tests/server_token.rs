//! The authorization server's token endpoint end to end, in process through the axum router:
//! client authentication, the client-credentials, password and refresh grants, scopes,
//! lifetimes, error responses, rate limiting, rotation with reuse detection, concurrent
//! redemption and audit events.
#![cfg(feature = "server")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower_oauth2::server::store::{ClientRecord, ClientStatus, MemoryStore};
use tower_oauth2::server::{
    ApprovalPolicy, AuthorizationServer, AuthorizationServerBuilder, ClientRegistration,
    ClientSecret, HookFuture, PasswordVerifier, RegistrationError, SecretHash, TokenLifetime,
};
use tower_oauth2::{Algorithm, AuthErrorKind, VerifiedToken};

use common::{Reply, send};

const ISSUER: &str = "https://auth.test";
const TOKEN_PATH: &str = "/oauth2/token";
const FORM: &str = "application/x-www-form-urlencoded";

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const SUBJECT: &str = "user-alice";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A `MakeWriter` that collects formatted events.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().expect("log lock").clone();
        String::from_utf8(bytes).expect("utf-8 log")
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The audit log of this test binary. A *global* subscriber, installed before any test builds
/// a server (every test goes through [`builder`]): tracing caches per-callsite interest, so a
/// scoped subscriber would miss events while other tests run beside it. Tests running in
/// parallel all write here; the audit test picks its own lines by client id.
fn audit_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_env_filter("tower_oauth2::audit=info")
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        captured
    })
}

fn builder() -> AuthorizationServerBuilder {
    audit_log();
    AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(MemoryStore::new())
}

/// Knows one user: alice.
struct Users;

impl PasswordVerifier for Users {
    fn verify<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> HookFuture<'a, Option<String>> {
        let ok = username == USER && password == PASSWORD;
        Box::pin(async move { ok.then(|| SUBJECT.to_owned()) })
    }
}

/// The server's endpoints, its admin API, and an API protected by its authenticator that
/// answers with the token's subject.
fn app(server: &AuthorizationServer) -> Router {
    let api =
        Router::new()
            .route(
                "/protected",
                get(|token: VerifiedToken| async move {
                    token.subject().unwrap_or_default().to_owned()
                }),
            )
            .layer(server.authenticator().layer());
    Router::new()
        .nest("/oauth2", server.router())
        .nest("/admin", server.admin_router())
        .merge(api)
}

#[derive(Clone, Debug)]
struct Client {
    id: String,
    secret: String,
}

impl Client {
    /// The same client id with a wrong secret.
    fn with_secret(&self, secret: &str) -> Client {
        Client {
            id: self.id.clone(),
            secret: secret.to_owned(),
        }
    }
}

fn secret_for(id: &str) -> String {
    format!("{id}-secret-0123456789abcdefghijklmnopqrstuvwxyz")
}

/// Registers `id` with scopes `read write`, a fixed secret, and whatever `configure` sets.
async fn register(
    server: &AuthorizationServer,
    id: &str,
    configure: impl FnOnce(&mut ClientRegistration),
) -> Client {
    let secret = secret_for(id);
    let mut registration = ClientRegistration::new(format!("{id} app"));
    registration.client_id = Some(id.to_owned());
    registration.scopes = vec!["read".into(), "write".into()];
    registration.secret = Some(ClientSecret::from_value(secret.clone()).expect("long secret"));
    configure(&mut registration);
    let (record, generated) = server
        .register_client(registration)
        .await
        .expect("registration accepted");
    assert!(generated.is_none(), "a chosen secret is not handed back");
    Client {
        id: record.client_id,
        secret,
    }
}

fn grants(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|&n| n.to_owned()).collect())
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// `client_secret_basic` (RFC 6749 §2.3.1: both parts form-urlencoded, then base64).
fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// How a token request authenticates its client.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a Client),
    Post(&'a Client),
    None,
}

/// POSTs a form to the token endpoint.
async fn token_request(app: &Router, auth: Auth<'_>, params: &[(&str, &str)]) -> Reply {
    let mut params = params.to_vec();
    let mut request = Request::post(TOKEN_PATH).header(header::CONTENT_TYPE, FORM);
    match auth {
        Auth::Basic(client) => {
            request = request.header(header::AUTHORIZATION, basic(&client.id, &client.secret));
        }
        Auth::Post(client) => {
            params.push(("client_id", &client.id));
            params.push(("client_secret", &client.secret));
        }
        Auth::None => {}
    }
    let request = request
        .body(Body::from(form(&params)))
        .expect("token request");
    send(app, request).await
}

/// POSTs a raw body with the given headers to the token endpoint.
async fn raw_token_request(app: &Router, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
    let mut request = Request::post(TOKEN_PATH);
    for &(name, value) in headers {
        request = request.header(name, value);
    }
    send(app, request.body(body.into()).expect("raw request")).await
}

async fn client_credentials(app: &Router, client: &Client, scope: Option<&str>) -> Reply {
    let mut params = vec![("grant_type", "client_credentials")];
    params.extend(scope.map(|s| ("scope", s)));
    token_request(app, Auth::Basic(client), &params).await
}

async fn password_login(app: &Router, client: &Client, scope: Option<&str>) -> Reply {
    let mut params = vec![
        ("grant_type", "password"),
        ("username", USER),
        ("password", PASSWORD),
    ];
    params.extend(scope.map(|s| ("scope", s)));
    token_request(app, Auth::Basic(client), &params).await
}

async fn refresh(app: &Router, client: &Client, refresh_token: &str, scope: Option<&str>) -> Reply {
    let mut params = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    params.extend(scope.map(|s| ("scope", s)));
    token_request(app, Auth::Basic(client), &params).await
}

async fn get_protected(app: &Router, token: &str) -> Reply {
    let request = Request::get("/protected")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("api request");
    send(app, request).await
}

async fn admin_post(app: &Router, path: &str, body: Value) -> Reply {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("admin request");
    send(app, request).await
}

fn header(reply: &Reply, name: header::HeaderName) -> Option<&str> {
    reply
        .headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

/// A successful token response: 200, JSON, not cacheable.
#[track_caller]
fn assert_issued(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        header(reply, header::CONTENT_TYPE),
        Some("application/json")
    );
    assert_eq!(header(reply, header::CACHE_CONTROL), Some("no-store"));
    assert_eq!(reply.body["token_type"], "Bearer", "{}", reply.body);
    assert!(reply.body["access_token"].is_string(), "{}", reply.body);
}

/// An RFC 6749 §5.2 error: the status, the code, not cacheable, and `WWW-Authenticate: Basic`
/// exactly on a 401.
#[track_caller]
fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(
        (reply.status, reply.error()),
        (status, Some(code)),
        "{}",
        reply.body
    );
    assert!(
        reply.body["error_description"].is_string(),
        "{}",
        reply.body
    );
    assert_eq!(header(reply, header::CACHE_CONTROL), Some("no-store"));
    assert!(reply.body.get("access_token").is_none());
    let challenge = header(reply, header::WWW_AUTHENTICATE);
    if status == StatusCode::UNAUTHORIZED {
        let challenge = challenge.expect("401 carries WWW-Authenticate");
        assert!(challenge.starts_with("Basic "), "{challenge}");
    } else {
        assert_eq!(challenge, None, "only a 401 challenges");
    }
}

fn access_token(reply: &Reply) -> String {
    reply.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn refresh_token(reply: &Reply) -> String {
    reply.body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// The decoded header and claims of a compact JWS (the signature is checked elsewhere).
fn jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS: {token}");
    let decode = |part: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// `exp - iat` of an access token.
fn lifetime_of(token: &str) -> u64 {
    let (_, claims) = jwt(token);
    let exp = claims["exp"].as_u64().expect("exp");
    let iat = claims["iat"].as_u64().expect("iat");
    exp - iat
}

#[track_caller]
fn assert_revoked(server: &AuthorizationServer, token: &str) {
    let error = server
        .authenticator()
        .verify(token)
        .expect_err("a revoked token is refused");
    assert_eq!(error.kind(), AuthErrorKind::Revoked, "{error}");
}

// ---------------------------------------------------------------------------------------------
// 1. client_credentials and the access token
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_credentials_with_basic_auth_issues_an_rfc9068_access_token() {
    let server = builder().build().await.expect("server");
    let client = register(&server, "svc-basic", |_| {}).await;
    let app = app(&server);

    let reply = client_credentials(&app, &client, Some("read")).await;
    assert_issued(&reply);
    assert_eq!(header(&reply, header::PRAGMA), Some("no-cache"));
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "read");
    assert!(
        reply.body.get("refresh_token").is_none(),
        "client_credentials never gets a refresh token: {}",
        reply.body
    );
    let mut members: Vec<&str> = reply
        .body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        ["access_token", "expires_in", "scope", "token_type"]
    );

    let token = access_token(&reply);
    let (head, claims) = jwt(&token);
    assert_eq!(
        head,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": server.signing_key_id()})
    );
    let issued_at = claims["iat"].as_u64().expect("iat");
    assert!(issued_at.abs_diff(now()) <= 5, "iat is now: {claims}");
    assert_eq!(claims["exp"].as_u64(), Some(issued_at + 3600));
    let jti = claims["jti"].as_str().expect("jti").to_owned();
    assert!(jti.len() >= 16, "jti is random: {jti}");
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER,
            "sub": "svc-basic",
            "aud": ISSUER,
            "exp": issued_at + 3600,
            "iat": issued_at,
            "jti": jti,
            "client_id": "svc-basic",
            "scope": "read",
        })
    );

    // The server's own authenticator accepts it, directly and as a layer.
    let verified = server.authenticator().verify(&token).expect("verifies");
    assert_eq!(verified.subject(), Some("svc-basic"));
    assert_eq!(verified.client_id(), Some("svc-basic"));
    assert_eq!(verified.issuer(), Some(ISSUER));
    assert_eq!(verified.jwt_id(), Some(jti.as_str()));
    assert_eq!(verified.algorithm(), Some(Algorithm::ES256));
    assert_eq!(verified.key_id(), Some(server.signing_key_id().as_str()));
    assert!(verified.scopes().contains("read") && !verified.scopes().contains("write"));

    let api = get_protected(&app, &token).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert_eq!(api.body, "svc-basic");
    let unauthenticated = send(
        &app,
        Request::get("/protected")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let mut tampered = token.clone();
    tampered.truncate(tampered.len() - 4);
    tampered.push_str("AAAA");
    assert_eq!(
        get_protected(&app, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Every token has its own jti.
    let again = access_token(&client_credentials(&app, &client, Some("read")).await);
    assert_ne!(jwt(&again).1["jti"], jti);
}

#[tokio::test]
async fn client_credentials_with_client_secret_post() {
    let server = builder().build().await.expect("server");
    let client = register(&server, "svc-post", |_| {}).await;
    let app = app(&server);

    let reply = token_request(
        &app,
        Auth::Post(&client),
        &[("grant_type", "client_credentials"), ("scope", "write")],
    )
    .await;
    assert_issued(&reply);
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "write");
    assert!(reply.body.get("refresh_token").is_none());
    let token = access_token(&reply);
    let (head, claims) = jwt(&token);
    assert_eq!(head["typ"], "at+jwt");
    assert_eq!(head["alg"], "ES256");
    assert_eq!(head["kid"], server.signing_key_id());
    assert_eq!(claims["sub"], "svc-post");
    assert_eq!(claims["client_id"], "svc-post");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], ISSUER);
    assert_eq!(claims["scope"], "write");
    assert_eq!(lifetime_of(&token), 3600);
    let verified = server.authenticator().verify(&token).expect("verifies");
    assert_eq!(verified.subject(), Some("svc-post"));
    let api = get_protected(&app, &token).await;
    assert_eq!((api.status, api.body), (StatusCode::OK, json!("svc-post")));

    // Basic with a client_id in the form that names the same client is fine too.
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc-post"),
        ],
    )
    .await;
    assert_issued(&reply);
}

#[tokio::test]
async fn secrets_with_reserved_characters_work_with_both_methods() {
    let server = builder().build().await.expect("server");
    // RFC 6749 §2.3.1: Basic carries the form-urlencoded id and secret, so `:`, `+`, `%` and
    // spaces survive; the form carries them urlencoded as any parameter.
    let secret = "p@ss:word+with%25 spaces/and=signs&more-0123456789";
    let client = register(&server, "svc.reserved~id_1", |r| {
        r.secret = Some(ClientSecret::from_value(secret).expect("long secret"));
    })
    .await;
    let client = client.with_secret(secret);
    let app = app(&server);
    for auth in [Auth::Basic(&client), Auth::Post(&client)] {
        let reply = token_request(&app, auth, &[("grant_type", "client_credentials")]).await;
        assert_issued(&reply);
        assert_eq!(jwt(&access_token(&reply)).1["sub"], "svc.reserved~id_1");
    }
    // Sent raw in Basic (not urlencoded, as authlib and requests do), it still authenticates;
    // a raw secret that is wrong either way does not.
    for (presented, status) in [
        (secret, StatusCode::OK),
        (
            "p@ss:word+with%25 spaces/and=signs&more-012345678X",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let raw = format!(
            "Basic {}",
            STANDARD.encode(format!("svc.reserved~id_1:{presented}"))
        );
        let reply = raw_token_request(
            &app,
            &[("content-type", FORM), ("authorization", raw.as_str())],
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(reply.status, status, "{presented}");
    }
}

#[tokio::test]
async fn the_first_configured_audience_is_the_aud_claim() {
    let server = builder()
        .audience("orders-api")
        .audience("billing-api")
        .build()
        .await
        .expect("server");
    let client = register(&server, "svc-aud", |_| {}).await;
    let app = app(&server);
    let token = access_token(&client_credentials(&app, &client, None).await);
    assert_eq!(jwt(&token).1["aud"], "orders-api");
    let verified = server.authenticator().verify(&token).expect("verifies");
    assert_eq!(verified.audience().collect::<Vec<_>>(), ["orders-api"]);
    assert_eq!(get_protected(&app, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn eddsa_and_rs256_signing_keys() {
    for (alg, name) in [(Algorithm::EdDSA, "EdDSA"), (Algorithm::RS256, "RS256")] {
        let server = builder()
            .signing_algorithm(alg)
            .build()
            .await
            .expect("server");
        let client = register(&server, "svc-alg", |_| {}).await;
        let app = app(&server);
        let reply = client_credentials(&app, &client, Some("read")).await;
        assert_issued(&reply);
        let token = access_token(&reply);
        let (head, claims) = jwt(&token);
        assert_eq!(
            head,
            json!({"alg": name, "typ": "at+jwt", "kid": server.signing_key_id()})
        );
        assert_eq!(claims["sub"], "svc-alg");
        let verified = server.authenticator().verify(&token).expect("verifies");
        assert_eq!(verified.algorithm(), Some(alg));
        assert_eq!(verified.key_id(), Some(server.signing_key_id().as_str()));
        let api = get_protected(&app, &token).await;
        assert_eq!(api.status, StatusCode::OK, "{name}: {}", api.body);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Scopes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn scopes_requested_allowed_disallowed_and_default() {
    let server = builder().build().await.expect("server");
    let client = register(&server, "svc-scopes", |r| {
        r.scopes = vec!["read".into(), "write".into(), "admin".into()];
        r.default_scopes = Some(vec!["read".into()]);
    })
    .await;
    let unscoped = register(&server, "svc-unscoped", |r| r.scopes = Vec::new()).await;
    let app = app(&server);

    // A subset of the allowed scopes is granted as asked (repeats collapse).
    let reply = client_credentials(&app, &client, Some("write read write")).await;
    assert_issued(&reply);
    assert_eq!(reply.body["scope"], "write read");
    let token = access_token(&reply);
    assert_eq!(jwt(&token).1["scope"], "write read");
    let verified = server.authenticator().verify(&token).expect("verifies");
    assert!(verified.scopes().contains_all(["read", "write"]));
    assert!(!verified.scopes().contains("admin"));

    let reply = client_credentials(&app, &client, Some("read write admin")).await;
    assert_issued(&reply);
    assert_eq!(reply.body["scope"], "read write admin");

    // Anything outside them is refused, even next to allowed ones.
    for scope in ["delete", "read delete", "READ", "read\"x"] {
        let reply = client_credentials(&app, &client, Some(scope)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
    }

    // No scope: the client's default scopes.
    let reply = client_credentials(&app, &client, None).await;
    assert_issued(&reply);
    assert_eq!(reply.body["scope"], "read");
    assert_eq!(jwt(&access_token(&reply)).1["scope"], "read");
    // An empty `scope` counts as absent (RFC 6749 §3.1).
    let reply = client_credentials(&app, &client, Some("")).await;
    assert_issued(&reply);
    assert_eq!(reply.body["scope"], "read");

    // A client without scopes gets a token without any.
    let reply = client_credentials(&app, &unscoped, None).await;
    assert_issued(&reply);
    assert!(reply.body.get("scope").is_none(), "{}", reply.body);
    assert!(jwt(&access_token(&reply)).1.get("scope").is_none());
    let reply = client_credentials(&app, &unscoped, Some("read")).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
}

// ---------------------------------------------------------------------------------------------
// 3. Errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn grant_type_errors() {
    let server = builder()
        .password_verifier(Users)
        .build()
        .await
        .expect("server");
    let client = register(&server, "svc-grants", |_| {}).await;
    let app = app(&server);

    let reply = token_request(&app, Auth::Basic(&client), &[("scope", "read")]).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(reply.description().contains("grant_type"), "{}", reply.body);
    let reply = token_request(&app, Auth::Basic(&client), &[("grant_type", "")]).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");

    for grant in [
        "implicit",
        "token",
        "CLIENT_CREDENTIALS",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        let reply = token_request(&app, Auth::Basic(&client), &[("grant_type", grant)]).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    // No consent handler: the authorization-code grant is off for everyone.
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[("grant_type", "authorization_code"), ("code", "x")],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unsupported_grant_type");

    // Grants the server supports but this client is not registered for.
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[
            ("grant_type", "password"),
            ("username", USER),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    let reply = refresh(&app, &client, "some-refresh-token", None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");

    // A password-only client may not use client credentials.
    let password_only = register(&server, "svc-password-only", |r| {
        r.grant_types = grants(&["password"]);
    })
    .await;
    let reply = client_credentials(&app, &password_only, None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn client_authentication_errors() {
    let server = builder().build().await.expect("server");
    let client = register(&server, "svc-auth", |_| {}).await;
    let app = app(&server);
    let cc = [("grant_type", "client_credentials")];

    // Wrong secret, either method.
    let wrong = client.with_secret("wrong-secret-0123456789abcdefghijklmnop");
    let reply = token_request(&app, Auth::Basic(&wrong), &cc).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        header(&reply, header::WWW_AUTHENTICATE),
        Some("Basic realm=\"oauth2\", charset=\"UTF-8\"")
    );
    let reply = token_request(&app, Auth::Post(&wrong), &cc).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");

    // Unknown client, with another client's secret or its own made-up one.
    let unknown = Client {
        id: "nobody".into(),
        secret: client.secret.clone(),
    };
    let reply = token_request(&app, Auth::Basic(&unknown), &cc).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = token_request(&app, Auth::Post(&unknown), &cc).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");

    // No credentials at all; a confidential client_id alone (it must send its secret); a
    // secret alone.
    let reply = token_request(&app, Auth::None, &cc).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = token_request(
        &app,
        Auth::None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc-auth"),
        ],
    )
    .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = token_request(
        &app,
        Auth::None,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &client.secret),
        ],
    )
    .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");

    // Malformed or non-Basic Authorization headers.
    for authorization in [
        "Bearer abc".to_owned(),
        "Basic !!!not-base64!!!".to_owned(),
        format!("Basic {}", STANDARD.encode("no-colon-here")),
        "Basic".to_owned(),
    ] {
        let reply = raw_token_request(
            &app,
            &[
                ("content-type", FORM),
                ("authorization", authorization.as_str()),
            ],
            form(&cc),
        )
        .await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    }

    // Both methods at once, even when both are right.
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &client.secret),
        ],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc-auth"),
            ("client_secret", &client.secret),
        ],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // Basic for one client, client_id naming another.
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[("grant_type", "client_credentials"), ("client_id", "other")],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");

    // The right credentials still work (fewer failures than the default limit of 10).
    assert_issued(&client_credentials(&app, &client, None).await);
}

#[tokio::test]
async fn repeated_parameters_and_non_form_bodies_are_invalid_requests() {
    let server = builder().build().await.expect("server");
    let client = register(&server, "svc-form", |_| {}).await;
    let app = app(&server);
    let auth = basic(&client.id, &client.secret);
    let with_form = [("content-type", FORM), ("authorization", auth.as_str())];

    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&grant_type=password",
        "grant_type=client_credentials&scope=read&scope=write",
        "grant_type=client_credentials&scope=read&scope=read",
    ] {
        let reply = raw_token_request(&app, &with_form, body).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
        assert!(reply.description().contains("repeated"), "{}", reply.body);
    }
    // Repeated credentials in the form, too.
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &client.id),
        ("client_secret", &client.secret),
        ("client_secret", &client.secret),
    ]);
    let reply = raw_token_request(&app, &[("content-type", FORM)], body).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &client.id),
        ("client_id", &client.id),
        ("client_secret", &client.secret),
    ]);
    let reply = raw_token_request(&app, &[("content-type", FORM)], body).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");

    // Not a form: JSON, plain text, multipart, or no content type.
    let json_body = json!({"grant_type": "client_credentials"}).to_string();
    for content_type in [
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("application/x-www-form-urlencodedx"),
        None,
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(content_type.map(|c| ("content-type", c)));
        for body in [
            json_body.clone(),
            "grant_type=client_credentials".to_owned(),
        ] {
            let reply = raw_token_request(&app, &headers, body).await;
            assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }

    // A body over the 64 KiB limit.
    let huge = format!("grant_type=client_credentials&pad={}", "a".repeat(70_000));
    let reply = raw_token_request(&app, &with_form, huge).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");

    // A charset parameter and another case are fine.
    let reply = raw_token_request(
        &app,
        &[
            (
                "content-type",
                "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
            ),
            ("authorization", auth.as_str()),
        ],
        "grant_type=client_credentials",
    )
    .await;
    assert_issued(&reply);

    // Only POST.
    let reply = send(
        &app,
        Request::get("/oauth2/token?grant_type=client_credentials")
            .header(header::AUTHORIZATION, auth.as_str())
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_pending_client_cannot_authenticate_until_approved() {
    let server = builder()
        .approval_policy(ApprovalPolicy::Manual)
        .build()
        .await
        .expect("server");
    let client = register(&server, "svc-pending", |_| {}).await;
    let app = app(&server);

    let reply = client_credentials(&app, &client, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = token_request(
        &app,
        Auth::Post(&client),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");

    let approved = admin_post(&app, "/admin/clients/svc-pending/approve", json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_issued(&client_credentials(&app, &client, None).await);

    // A rejected client is refused the same way.
    let other = register(&server, "svc-rejected", |_| {}).await;
    let rejected = admin_post(&app, "/admin/clients/svc-rejected/reject", json!({})).await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.body);
    let reply = client_credentials(&app, &other, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
}

// ---------------------------------------------------------------------------------------------
// 4. Rate limiting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn failed_client_authentications_are_rate_limited_per_client_id() {
    let server = builder()
        .client_auth_rate_limit(3, Duration::from_secs(60))
        .build()
        .await
        .expect("server");
    let client = register(&server, "svc-limited", |_| {}).await;
    let bystander = register(&server, "svc-bystander", |_| {}).await;
    let app = app(&server);
    let wrong = client.with_secret("wrong-secret-0123456789abcdefghijklmnop");

    for _ in 0..3 {
        let reply = client_credentials(&app, &wrong, None).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // The fourth attempt is refused before the secret is looked at: right secret, either method.
    for auth in [Auth::Basic(&client), Auth::Post(&client)] {
        let reply = token_request(&app, auth, &[("grant_type", "client_credentials")]).await;
        assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "invalid_client");
        let retry_after: u64 = header(&reply, header::RETRY_AFTER)
            .expect("Retry-After")
            .parse()
            .expect("delay-seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let reply = client_credentials(&app, &wrong, None).await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS, "invalid_client");

    // Another client id is unaffected.
    assert_issued(&client_credentials(&app, &bystander, None).await);
    let reply = client_credentials(
        &app,
        &bystander.with_secret("wrong-secret-0123456789abcdefghijklmnop"),
        None,
    )
    .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_issued(&client_credentials(&app, &bystander, None).await);
}

// ---------------------------------------------------------------------------------------------
// 5. Lifetimes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn access_token_lifetimes_per_server_and_per_client() {
    let server = builder()
        .access_token_lifetime("90s".parse().expect("lifetime"))
        .build()
        .await
        .expect("server");
    let plain = register(&server, "svc-server-lifetime", |_| {}).await;
    let short = register(&server, "svc-client-lifetime", |r| {
        r.access_token_lifetime = Some("15min".into());
    })
    .await;
    let app = app(&server);

    let reply = client_credentials(&app, &plain, None).await;
    assert_issued(&reply);
    assert_eq!(reply.body["expires_in"], 90);
    assert_eq!(lifetime_of(&access_token(&reply)), 90);

    let reply = client_credentials(&app, &short, None).await;
    assert_issued(&reply);
    assert_eq!(reply.body["expires_in"], 900);
    let token = access_token(&reply);
    assert_eq!(lifetime_of(&token), 900);
    let verified = server.authenticator().verify(&token).expect("verifies");
    assert_eq!(
        verified.expires_at(),
        verified.issued_at().map(|iat| iat + 900)
    );

    // Through the admin API as well.
    let created = admin_post(
        &app,
        "/admin/clients",
        json!({"name": "via admin", "client_id": "svc-admin-lifetime", "access_token_lifetime": "2h"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["access_token_lifetime"], "2h");
    let admin_client = Client {
        id: "svc-admin-lifetime".into(),
        secret: created.body["client_secret"]
            .as_str()
            .expect("secret shown once")
            .to_owned(),
    };
    let reply = client_credentials(&app, &admin_client, None).await;
    assert_issued(&reply);
    assert_eq!(reply.body["expires_in"], 7200);
    assert_eq!(lifetime_of(&access_token(&reply)), 7200);
}

#[tokio::test]
async fn unlimited_access_tokens_need_the_server_to_allow_them() {
    let unlimited = |r: &mut ClientRegistration| r.access_token_lifetime = Some("unlimited".into());

    // Refused at registration when the server does not allow them, directly and over HTTP.
    let strict = builder().build().await.expect("server");
    let mut registration = ClientRegistration::new("forever");
    unlimited(&mut registration);
    match strict.register_client(registration).await {
        Err(RegistrationError::Invalid { field, .. }) => {
            assert_eq!(field, "access_token_lifetime");
        }
        other => panic!("unlimited accepted: {other:?}"),
    }
    let reply = admin_post(
        &app(&strict),
        "/admin/clients",
        json!({"name": "forever", "access_token_lifetime": "unlimited"}),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.error(), Some("invalid_client_metadata"));
    assert_eq!(reply.body["field"], "access_token_lifetime");

    // Allowed: no exp, no expires_in, and the server's authenticator accepts the token.
    let lenient = builder()
        .allow_unlimited_access_tokens(true)
        .build()
        .await
        .expect("server");
    let forever = register(&lenient, "svc-forever", unlimited).await;
    let bounded = register(&lenient, "svc-bounded", |_| {}).await;
    let app = app(&lenient);
    let reply = client_credentials(&app, &forever, None).await;
    assert_issued(&reply);
    assert!(reply.body.get("expires_in").is_none(), "{}", reply.body);
    let token = access_token(&reply);
    let (_, claims) = jwt(&token);
    assert!(claims.get("exp").is_none(), "{claims}");
    assert!(claims["iat"].is_u64());
    let verified = lenient.authenticator().verify(&token).expect("verifies");
    assert_eq!(verified.expires_at(), None);
    let api = get_protected(&app, &token).await;
    assert_eq!(
        (api.status, api.body),
        (StatusCode::OK, json!("svc-forever"))
    );
    // Other clients keep the server's lifetime.
    let reply = client_credentials(&app, &bounded, None).await;
    assert_eq!(reply.body["expires_in"], 3600);

    // A server-wide unlimited lifetime is a build error unless allowed.
    let error = builder()
        .access_token_lifetime(TokenLifetime::Unlimited)
        .build()
        .await
        .expect_err("unlimited without allow_unlimited_access_tokens");
    assert!(
        error.to_string().contains("allow_unlimited_access_tokens"),
        "{error}"
    );
    let server = builder()
        .access_token_lifetime("unlimited".parse().expect("lifetime"))
        .allow_unlimited_access_tokens(true)
        .build()
        .await
        .expect("server");
    let client = register(&server, "svc-all-forever", |_| {}).await;
    let reply = client_credentials(&self::app(&server), &client, None).await;
    assert_issued(&reply);
    assert!(reply.body.get("expires_in").is_none());
    let token = access_token(&reply);
    assert!(jwt(&token).1.get("exp").is_none());
    server.authenticator().verify(&token).expect("verifies");
}

// ---------------------------------------------------------------------------------------------
// 6. Refresh tokens
// ---------------------------------------------------------------------------------------------

async fn refresh_server() -> (AuthorizationServer, Router) {
    let server = builder()
        .password_verifier(Users)
        .build()
        .await
        .expect("server");
    let app = app(&server);
    (server, app)
}

async fn refresh_client(server: &AuthorizationServer, id: &str) -> Client {
    register(server, id, |r| {
        r.grant_types = grants(&["password", "refresh_token"]);
        r.scopes = vec!["read".into(), "write".into(), "admin".into()];
        r.default_scopes = Some(vec!["read".into(), "write".into()]);
    })
    .await
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_its_family() {
    let (server, app) = refresh_server().await;
    let client = refresh_client(&server, "app-rotate").await;

    let first = password_login(&app, &client, None).await;
    assert_issued(&first);
    assert_eq!(first.body["scope"], "read write");
    assert_eq!(first.body["expires_in"], 3600);
    let (access1, refresh1) = (access_token(&first), refresh_token(&first));
    let (_, claims) = jwt(&access1);
    assert_eq!(claims["sub"], SUBJECT);
    assert_eq!(claims["client_id"], "app-rotate");

    // Each refresh returns a new refresh token and a new access token.
    let second = refresh(&app, &client, &refresh1, None).await;
    assert_issued(&second);
    assert_eq!(second.body["scope"], "read write");
    assert_eq!(second.body["expires_in"], 3600);
    let (access2, refresh2) = (access_token(&second), refresh_token(&second));
    assert_ne!(refresh2, refresh1);
    assert_ne!(access2, access1);
    let (_, claims2) = jwt(&access2);
    assert_eq!(claims2["sub"], SUBJECT);
    assert_eq!(claims2["client_id"], "app-rotate");
    assert_ne!(claims2["jti"], claims["jti"]);
    let third = refresh(&app, &client, &refresh2, None).await;
    assert_issued(&third);
    let (access3, refresh3) = (access_token(&third), refresh_token(&third));
    for token in [&access1, &access2, &access3] {
        server.authenticator().verify(token).expect("still valid");
    }

    // An unrelated grant of the same user and client: its own family.
    let other_family = password_login(&app, &client, None).await;
    assert_issued(&other_family);

    // The rotated-out first refresh token comes back: refused, and the family is revoked.
    let reuse = refresh(&app, &client, &refresh1, None).await;
    assert_error(&reuse, StatusCode::BAD_REQUEST, "invalid_grant");
    let latest = refresh(&app, &client, &refresh3, None).await;
    assert_error(&latest, StatusCode::BAD_REQUEST, "invalid_grant");
    let again = refresh(&app, &client, &refresh2, None).await;
    assert_error(&again, StatusCode::BAD_REQUEST, "invalid_grant");
    for token in [&access1, &access2, &access3] {
        assert_revoked(&server, token);
        let api = get_protected(&app, token).await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);
        let challenge = header(&api, header::WWW_AUTHENTICATE).expect("challenge");
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    // The other family is untouched.
    server
        .authenticator()
        .verify(&access_token(&other_family))
        .expect("other family valid");
    assert_issued(&refresh(&app, &client, &refresh_token(&other_family), None).await);

    // Nonsense refresh tokens are invalid_grant; a missing one is invalid_request.
    let reply = refresh(&app, &client, "not-a-refresh-token", None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    let reply = token_request(
        &app,
        Auth::Basic(&client),
        &[("grant_type", "refresh_token")],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // An access token is not a refresh token.
    let reply = refresh(&app, &client, &access1, None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let (server, app) = refresh_server().await;
    let client = refresh_client(&server, "app-scope").await;

    let login = password_login(&app, &client, Some("read write")).await;
    assert_issued(&login);
    let refresh1 = refresh_token(&login);

    // Narrower: the access token carries only what was asked for.
    let narrow = refresh(&app, &client, &refresh1, Some("read")).await;
    assert_issued(&narrow);
    assert_eq!(narrow.body["scope"], "read");
    let access = access_token(&narrow);
    assert_eq!(jwt(&access).1["scope"], "read");
    let verified = server.authenticator().verify(&access).expect("verifies");
    assert!(verified.scopes().contains("read") && !verified.scopes().contains("write"));
    let refresh2 = refresh_token(&narrow);

    // Wider than the original grant (even with a scope the client may have): invalid_scope,
    // and the refresh token is not used up by the refusal.
    for scope in ["read write admin", "admin", "delete"] {
        let reply = refresh(&app, &client, &refresh2, Some(scope)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
    }

    // RFC 6749 §6: the new refresh token keeps the original scope, so omitting `scope` (or
    // asking for all of it) gets the original grant back.
    let full = refresh(&app, &client, &refresh2, None).await;
    assert_issued(&full);
    assert_eq!(full.body["scope"], "read write");
    assert_eq!(jwt(&access_token(&full)).1["scope"], "read write");
    let again = refresh(&app, &client, &refresh_token(&full), Some("write read")).await;
    assert_issued(&again);
    assert_eq!(again.body["scope"], "write read");
}

#[tokio::test]
async fn another_client_presenting_a_refresh_token_gets_invalid_grant_and_revokes_nothing() {
    let (server, app) = refresh_server().await;
    let owner = refresh_client(&server, "app-owner").await;
    let thief = refresh_client(&server, "app-thief").await;

    let login = password_login(&app, &owner, None).await;
    assert_issued(&login);
    let (access1, refresh1) = (access_token(&login), refresh_token(&login));

    let stolen = refresh(&app, &thief, &refresh1, None).await;
    assert_error(&stolen, StatusCode::BAD_REQUEST, "invalid_grant");
    let stolen = refresh(&app, &thief, &refresh1, Some("read")).await;
    assert_error(&stolen, StatusCode::BAD_REQUEST, "invalid_grant");

    // The owner's family is intact: its access token verifies and its refresh token rotates.
    server
        .authenticator()
        .verify(&access1)
        .expect("not revoked");
    let rotated = refresh(&app, &owner, &refresh1, None).await;
    assert_issued(&rotated);
    server
        .authenticator()
        .verify(&access_token(&rotated))
        .expect("valid");
    server
        .authenticator()
        .verify(&access1)
        .expect("rotation alone revokes nothing");

    // A client without the refresh_token grant is refused before the token is looked at.
    let cc_only = register(&server, "app-cc-only", |_| {}).await;
    let reply = refresh(&app, &cc_only, &refresh_token(&rotated), None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    assert_issued(&refresh(&app, &owner, &refresh_token(&rotated), None).await);
}

#[tokio::test]
async fn refresh_tokens_expire_after_their_lifetime() {
    let server = builder()
        .password_verifier(Users)
        .refresh_token_lifetime("1h".parse().expect("lifetime"))
        .build()
        .await
        .expect("server");
    let app = app(&server);
    let brief = register(&server, "app-brief", |r| {
        r.grant_types = grants(&["password", "refresh_token"]);
        r.refresh_token_lifetime = Some("1s".into());
    })
    .await;
    let lasting = refresh_client(&server, "app-lasting").await;
    let brief_login = password_login(&app, &brief, None).await;
    assert_issued(&brief_login);
    let lasting_login = password_login(&app, &lasting, None).await;
    assert_issued(&lasting_login);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = refresh(&app, &brief, &refresh_token(&brief_login), None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(reply.description().contains("expired"), "{}", reply.body);
    assert_issued(&refresh(&app, &lasting, &refresh_token(&lasting_login), None).await);
}

// ---------------------------------------------------------------------------------------------
// 7. The password grant
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_password_grant_is_off_without_a_verifier() {
    let server = builder().build().await.expect("server");
    let client = register(&server, "svc-no-password", |_| {}).await;
    let app = app(&server);

    let reply = password_login(&app, &client, None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "unsupported_grant_type");

    // Registering a client for it is refused, over HTTP and directly.
    let reply = admin_post(
        &app,
        "/admin/clients",
        json!({"name": "legacy", "grant_types": ["password", "refresh_token"]}),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.error(), Some("invalid_client_metadata"));
    assert_eq!(reply.body["field"], "grant_types");
    let mut registration = ClientRegistration::new("legacy");
    registration.grant_types = grants(&["password"]);
    match server.register_client(registration).await {
        Err(RegistrationError::Invalid { field, .. }) => assert_eq!(field, "grant_types"),
        other => panic!("password client registered without a verifier: {other:?}"),
    }
}

#[tokio::test]
async fn the_password_grant_with_a_verifier() {
    let (server, app) = refresh_server().await;
    let with_refresh = refresh_client(&server, "app-password").await;
    let without_refresh = register(&server, "app-password-only", |r| {
        r.grant_types = grants(&["password", "client_credentials"]);
    })
    .await;
    let mixed = register(&server, "app-mixed", |r| {
        r.grant_types = grants(&["client_credentials", "password", "refresh_token"]);
    })
    .await;

    let reply = password_login(&app, &with_refresh, Some("read")).await;
    assert_issued(&reply);
    assert_eq!(reply.body["scope"], "read");
    assert!(reply.body["refresh_token"].is_string());
    let token = access_token(&reply);
    let (_, claims) = jwt(&token);
    assert_eq!(claims["sub"], SUBJECT);
    assert_eq!(claims["client_id"], "app-password");
    assert_eq!(
        server
            .authenticator()
            .verify(&token)
            .expect("verifies")
            .subject(),
        Some(SUBJECT)
    );

    // Wrong password, unknown user: invalid_grant, not invalid_client.
    for (username, password) in [(USER, "wrong"), ("mallory", PASSWORD), ("", PASSWORD)] {
        let mut params = vec![("grant_type", "password"), ("password", password)];
        if !username.is_empty() {
            params.push(("username", username));
        }
        let reply = token_request(&app, Auth::Basic(&with_refresh), &params).await;
        let expected = if username.is_empty() {
            "invalid_request"
        } else {
            "invalid_grant"
        };
        assert_error(&reply, StatusCode::BAD_REQUEST, expected);
    }
    let reply = token_request(
        &app,
        Auth::Basic(&with_refresh),
        &[("grant_type", "password"), ("username", USER)],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // A scope outside the client's.
    let reply = password_login(&app, &with_refresh, Some("delete")).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");

    // No refresh_token grant, no refresh token.
    let reply = password_login(&app, &without_refresh, None).await;
    assert_issued(&reply);
    assert!(reply.body.get("refresh_token").is_none(), "{}", reply.body);
    // client_credentials never gets one, even for a client with the refresh_token grant.
    let reply = client_credentials(&app, &mixed, None).await;
    assert_issued(&reply);
    assert!(reply.body.get("refresh_token").is_none(), "{}", reply.body);
    assert_eq!(jwt(&access_token(&reply)).1["sub"], "app-mixed");
    let reply = password_login(&app, &mixed, None).await;
    assert_issued(&reply);
    assert!(reply.body["refresh_token"].is_string());
}

// ---------------------------------------------------------------------------------------------
// 8. Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_fifty_concurrent_redemptions_of_a_refresh_token_exactly_one_succeeds() {
    let (server, app) = refresh_server().await;
    let client = refresh_client(&server, "app-race").await;
    let login = password_login(&app, &client, None).await;
    assert_issued(&login);
    let presented = refresh_token(&login);

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, client, presented) = (app.clone(), client.clone(), presented.clone());
            tokio::spawn(async move { refresh(&app, &client, &presented, None).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let reply = task.await.expect("task");
        if reply.status == StatusCode::OK {
            winners.push(reply);
        } else {
            assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    let winner = &winners[0];
    assert_issued(winner);

    // The losers were replays of a rotated-out token: the family, the winner's tokens
    // included, is revoked (RFC 9700 §4.14.2).
    assert_revoked(&server, &access_token(winner));
    assert_revoked(&server, &access_token(&login));
    let reply = refresh(&app, &client, &refresh_token(winner), None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// 9. Audit
// ---------------------------------------------------------------------------------------------

/// Whether `line` has the field `name` with `value`, quoted (`&str` fields) or not (`%` fields).
fn has_field(line: &str, name: &str, value: &str) -> bool {
    line.contains(&format!(" {name}=\"{value}\""))
        || line.contains(&format!(" {name}={value} "))
        || line.ends_with(&format!(" {name}={value}"))
}

#[tokio::test]
async fn audit_events_record_issued_and_refused_tokens_without_secrets_or_token_values() {
    const ID: &str = "audit-client-7q";
    let log = audit_log();
    let (server, app) = refresh_server().await;
    let client = register(&server, ID, |r| {
        r.grant_types = grants(&["client_credentials", "password", "refresh_token"]);
    })
    .await;
    let wrong_secret = "audit-wrong-secret-0123456789abcdefghijklmnop";

    let cc = client_credentials(&app, &client, Some("read")).await;
    assert_issued(&cc);
    let login = password_login(&app, &client, None).await;
    assert_issued(&login);
    let rotated = refresh(&app, &client, &refresh_token(&login), None).await;
    assert_issued(&rotated);
    let reuse = refresh(&app, &client, &refresh_token(&login), None).await;
    assert_error(&reuse, StatusCode::BAD_REQUEST, "invalid_grant");
    let bad_scope = client_credentials(&app, &client, Some("delete")).await;
    assert_error(&bad_scope, StatusCode::BAD_REQUEST, "invalid_scope");
    let bad_password = token_request(
        &app,
        Auth::Basic(&client),
        &[
            ("grant_type", "password"),
            ("username", USER),
            ("password", "hunter2-wrong-password"),
        ],
    )
    .await;
    assert_error(&bad_password, StatusCode::BAD_REQUEST, "invalid_grant");
    let bad_secret = client_credentials(&app, &client.with_secret(wrong_secret), None).await;
    assert_error(&bad_secret, StatusCode::UNAUTHORIZED, "invalid_client");

    let text = log.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(ID)).collect();
    let all = lines.join("\n");
    let count = |fields: &[(&str, &str)]| {
        lines
            .iter()
            .filter(|l| fields.iter().all(|(n, v)| has_field(l, n, v)))
            .count()
    };

    let issued = |grant| {
        count(&[
            ("outcome", "token_issued"),
            ("grant", grant),
            ("client_id", ID),
        ])
    };
    assert_eq!(issued("client_credentials"), 1, "{all}");
    assert_eq!(issued("password"), 1, "{all}");
    assert_eq!(issued("refresh_token"), 1, "{all}");
    assert_eq!(count(&[("outcome", "token_issued")]), 3, "{all}");
    let cc_jti = jwt(&access_token(&cc)).1["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    assert!(
        lines
            .iter()
            .any(|l| has_field(l, "outcome", "token_issued") && has_field(l, "jti", &cc_jti)),
        "the token_issued event names the jti: {all}"
    );

    let refused = |grant, error| {
        count(&[
            ("outcome", "token_refused"),
            ("grant", grant),
            ("client_id", ID),
            ("error", error),
        ])
    };
    assert_eq!(refused("refresh_token", "invalid_grant"), 1, "{all}");
    assert_eq!(refused("client_credentials", "invalid_scope"), 1, "{all}");
    assert_eq!(refused("password", "invalid_grant"), 1, "{all}");
    assert_eq!(
        count(&[
            ("outcome", "client_auth_refused"),
            ("client_id", ID),
            ("reason", "bad credentials")
        ]),
        1,
        "{all}"
    );
    assert_eq!(
        count(&[("outcome", "refresh_token_reuse"), ("client_id", ID)]),
        1,
        "{all}"
    );
    // The password family: two access tokens and two refresh tokens.
    assert_eq!(
        count(&[("outcome", "token_revoked"), ("client_id", ID)]),
        4,
        "{all}"
    );

    // Never a secret, a password or a token value — anywhere in the log.
    let mut values = vec![
        client.secret.clone(),
        wrong_secret.to_owned(),
        PASSWORD.to_owned(),
        "hunter2-wrong-password".to_owned(),
        refresh_token(&login),
        refresh_token(&rotated),
    ];
    for reply in [&cc, &login, &rotated] {
        let token = access_token(reply);
        values.extend(token.split('.').map(str::to_owned));
        values.push(token);
    }
    for value in values {
        assert!(!text.contains(&value), "{value:?} reached the audit log");
    }
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_per_username() {
    let server = builder()
        .password_verifier(Users)
        .client_auth_rate_limit(3, Duration::from_secs(60))
        .build()
        .await
        .expect("server");
    let app = app(&server);
    let client = refresh_client(&server, "app-guessing").await;
    for _ in 0..3 {
        let reply = token_request(
            &app,
            Auth::Basic(&client),
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", "guess"),
            ],
        )
        .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // The fourth attempt is refused before the password is looked at, right or wrong.
    let reply = password_login(&app, &client, None).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"], "invalid_grant");
    assert!(reply.headers.contains_key("retry-after"));
    // The client itself is not locked out: its other grants still work.
    let other = register(&server, "app-cc", |_| {}).await;
    assert_issued(&client_credentials(&app, &other, None).await);
}

#[tokio::test]
async fn client_ids_no_client_could_have_are_refused_before_any_lookup() {
    let server = builder().build().await.expect("server");
    let app = app(&server);
    for id in ["a%00b", "caf%C3%A9", "has%20space"] {
        let reply = raw_token_request(
            &app,
            &[("content-type", FORM)],
            format!("grant_type=client_credentials&client_id={id}&client_secret=x"),
        )
        .await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    }
}

/// The client cache may be stale (another instance, or the store changed behind the server's
/// back): a token is still issued only for the client as stored. Changed here in the store
/// directly, so this server's cache keeps the old record.
#[tokio::test]
async fn a_stale_client_cache_issues_nothing_the_store_would_refuse() {
    let server = builder()
        .password_verifier(Users)
        .build()
        .await
        .expect("server");
    let app = app(&server);
    let client = register(&server, "cached", |r| {
        r.grant_types = grants(&["client_credentials", "password", "refresh_token"]);
    })
    .await;
    // The cache now holds the client.
    assert_issued(&client_credentials(&app, &client, None).await);
    let login = password_login(&app, &client, Some("read")).await;
    assert_issued(&login);

    // A new secret, written to the store only.
    let store = server.store();
    let stored = store
        .client("cached")
        .await
        .expect("read")
        .expect("registered");
    let new_secret = "a-new-secret-0123456789abcdefghijklmnopqrstuvwxyz";
    store
        .update_client(ClientRecord {
            secret_hash: Some(SecretHash::of(new_secret)),
            ..stored.clone()
        })
        .await
        .expect("update");
    let reply = client_credentials(&app, &client, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = refresh(&app, &client, &refresh_token(&login), None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let renewed = client.with_secret(new_secret);
    assert_issued(&client_credentials(&app, &renewed, None).await);
    // The refresh token was not rotated by the refused attempt: it still works.
    assert_issued(&refresh(&app, &renewed, &refresh_token(&login), None).await);

    // Narrowed to `read` in the store: a cached `write` is not granted.
    store
        .update_client(ClientRecord {
            secret_hash: Some(SecretHash::of(new_secret)),
            scopes: vec!["read".into()],
            default_scopes: vec!["read".into()],
            ..stored.clone()
        })
        .await
        .expect("update");
    let reply = client_credentials(&app, &renewed, Some("write")).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");

    // Disabled in the store: nothing more.
    store
        .update_client(ClientRecord {
            secret_hash: Some(SecretHash::of(new_secret)),
            status: ClientStatus::Disabled,
            ..stored
        })
        .await
        .expect("update");
    let reply = client_credentials(&app, &renewed, None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
}
