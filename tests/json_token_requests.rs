//! JSON token requests (`accept_json_token_requests(true)`), over real HTTP: the request bodies
//! clients written for Kong's OAuth 2.0 plugin (and InterSystems IAM, which is Kong) send to
//! `/oauth2/token` work as their form equivalents, and every malformed JSON body is
//! `invalid_request` — the same answer the form path gives for the same mistake.
#![cfg(feature = "server")]

use std::net::SocketAddr;

use axum::Router;
use serde_json::{Value, json};
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    AuthorizationServer, ClientRegistration, ClientSecret, HookFuture, PasswordVerifier,
};

const ISSUER: &str = "https://auth.test";
const CLIENT_ID: &str = "kong-app";
const SECRET: &str = "kong-app-secret-0123456789abcdefghijklmnopqrstuvwxyz";
const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// Knows one user: alice, whose subject is `user-alice`.
struct Users;

impl PasswordVerifier for Users {
    fn verify<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> HookFuture<'a, Option<String>> {
        let ok = username == USER && password == PASSWORD;
        Box::pin(async move { ok.then(|| "user-alice".to_owned()) })
    }
}

/// A server on 127.0.0.1:0 with the token endpoint under `/oauth2`, JSON accepted or not, and a
/// client allowed every grant but the code grant.
async fn serve(accept_json: bool) -> (SocketAddr, AuthorizationServer) {
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(MemoryStore::new())
        .password_verifier(Users)
        .accept_json_token_requests(accept_json)
        .build()
        .await
        .expect("server");
    let mut registration = ClientRegistration::new("Kong app");
    registration.client_id = Some(CLIENT_ID.into());
    registration.scopes = vec!["read".into(), "write".into()];
    registration.grant_types = Some(vec![
        "client_credentials".into(),
        "password".into(),
        "refresh_token".into(),
    ]);
    registration.secret = Some(ClientSecret::from_value(SECRET).expect("long secret"));
    server
        .register_client(registration)
        .await
        .expect("registered");
    let app = Router::new().nest("/oauth2", server.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, server)
}

/// POSTs `body` with `content_type` to the token endpoint; the status and the JSON answer.
async fn post(addr: SocketAddr, content_type: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/oauth2/token"))
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a JSON answer ({e}), got {status}: {text}"));
    (status, json)
}

async fn post_json(addr: SocketAddr, body: &str) -> (u16, Value) {
    post(addr, "application/json", body.as_bytes().to_vec()).await
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn assert_invalid_request(answer: &(u16, Value), case: &str) {
    assert_eq!(answer.0, 400, "{case}: {}", answer.1);
    assert_eq!(answer.1["error"], "invalid_request", "{case}: {}", answer.1);
    assert!(
        answer.1["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{case}: a description says what is wrong: {}",
        answer.1
    );
}

#[tokio::test]
async fn kong_client_credentials_body_gets_a_token() {
    let (addr, server) = serve(true).await;
    // Kong's documented body, with its plugin-specific `provision_key`, which is ignored like
    // any unknown parameter (RFC 6749 §3.2).
    let body = json!({
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        "scope": "read",
        "provision_key": "function-provision-key",
    });
    let (status, answer) = post(
        addr,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "read");
    let token = answer["access_token"].as_str().expect("an access token");
    let verified = server
        .authenticator()
        .verify(token)
        .expect("the server's own authenticator accepts it");
    assert_eq!(verified.client_id(), Some(CLIENT_ID));
}

#[tokio::test]
async fn kong_password_and_refresh_bodies_work_and_rotate() {
    let (addr, server) = serve(true).await;
    let body = json!({
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": "function-provision-key",
        "authenticated_userid": "ignored-by-this-server",
        "username": USER,
        "password": PASSWORD,
        "scope": "read write",
    });
    let (status, answer) = post_json(addr, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let access = answer["access_token"].as_str().expect("access token");
    let verified = server.authenticator().verify(access).expect("valid");
    // The subject comes from the app's verifier, never from a member the client sent.
    assert_eq!(verified.subject(), Some("user-alice"));
    let refresh = answer["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    let body = json!({
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "refresh_token",
        "refresh_token": refresh,
    });
    let (status, rotated) = post_json(addr, &body.to_string()).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refresh_token"].as_str(), Some(refresh.as_str()));

    // The rotated-out token again: reuse, refused exactly as in a form request.
    let (status, reused) = post_json(addr, &body.to_string()).await;
    assert_eq!(status, 400, "{reused}");
    assert_eq!(reused["error"], "invalid_grant");

    // A wrong password: the same error the form path gives.
    let wrong = json!({
        "client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "password",
        "username": USER, "password": "wrong",
    });
    let (status, json_error) = post_json(addr, &wrong.to_string()).await;
    let form_error = post(
        addr,
        "application/x-www-form-urlencoded",
        form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "password"),
            ("username", USER),
            ("password", "wrong"),
        ]),
    )
    .await;
    assert_eq!((status, &json_error), (form_error.0, &form_error.1));
    assert_eq!(json_error["error"], "invalid_grant");
}

#[tokio::test]
async fn client_authentication_is_the_same_as_for_forms() {
    let (addr, _server) = serve(true).await;
    // A wrong secret: 401 invalid_client with a challenge-free JSON body, as for a form.
    let (status, json_error) = post_json(
        addr,
        &json!({"client_id": CLIENT_ID, "client_secret": "x".repeat(40),
                "grant_type": "client_credentials"})
        .to_string(),
    )
    .await;
    let form_error = post(
        addr,
        "application/x-www-form-urlencoded",
        form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", &"x".repeat(40)),
            ("grant_type", "client_credentials"),
        ]),
    )
    .await;
    assert_eq!(status, 401, "{json_error}");
    assert_eq!(json_error["error"], "invalid_client");
    assert_eq!((status, json_error), form_error);

    // An unknown grant type and a missing one: the form path's errors.
    for (json_body, form_body) in [
        (
            json!({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "magic"}),
            form(&[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", "magic"),
            ]),
        ),
        (
            json!({"client_id": CLIENT_ID, "client_secret": SECRET}),
            form(&[("client_id", CLIENT_ID), ("client_secret", SECRET)]),
        ),
        // An empty string counts as absent, as an empty form value does.
        (
            json!({"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": ""}),
            form(&[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("grant_type", ""),
            ]),
        ),
    ] {
        let from_json = post_json(addr, &json_body.to_string()).await;
        let from_form = post(addr, "application/x-www-form-urlencoded", form_body).await;
        assert!(from_json.0 >= 400, "{}", from_json.1);
        assert_eq!(from_json, from_form, "{json_body}");
    }
}

#[tokio::test]
async fn every_malformed_json_body_is_invalid_request() {
    let (addr, _server) = serve(true).await;
    let head = format!(r#""client_id":"{CLIENT_ID}","client_secret":"{SECRET}""#);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a number",
            format!(r#"{{{head},"grant_type":"client_credentials","ttl":3600}}"#),
            "`ttl` is a number",
        ),
        (
            "a boolean",
            format!(r#"{{{head},"grant_type":"client_credentials","x":true}}"#),
            "`x` is a boolean",
        ),
        (
            "null",
            format!(r#"{{{head},"grant_type":"client_credentials","scope":null}}"#),
            "`scope` is null",
        ),
        (
            "an array",
            format!(r#"{{{head},"grant_type":"client_credentials","scope":["read"]}}"#),
            "`scope` is an array",
        ),
        (
            "a nested object",
            format!(r#"{{{head},"grant_type":{{"name":"client_credentials"}}}}"#),
            "`grant_type` is an object",
        ),
        (
            "a duplicate member",
            format!(r#"{{{head},"grant_type":"password","grant_type":"client_credentials"}}"#),
            "`grant_type` is repeated",
        ),
        (
            "a duplicate member whose first value is empty",
            format!(r#"{{{head},"scope":"","scope":"write","grant_type":"client_credentials"}}"#),
            "`scope` is repeated",
        ),
        (
            "a top-level array",
            format!(r#"[{{{head},"grant_type":"client_credentials"}}]"#),
            "expected one object, found an array",
        ),
        (
            "a top-level string",
            r#""grant_type""#.to_owned(),
            "one object",
        ),
        (
            "invalid JSON",
            format!(r#"{{{head},"grant_type":"client_credentials""#),
            "not accepted",
        ),
        (
            "trailing data",
            format!(r#"{{{head},"grant_type":"client_credentials"}} {{}}"#),
            "trailing",
        ),
        ("an empty body", String::new(), "not accepted"),
        (
            "a body over the size limit",
            format!(
                r#"{{{head},"grant_type":"client_credentials","pad":"{}"}}"#,
                "a".repeat(70 * 1024)
            ),
            "too large",
        ),
    ];
    for (case, body, description) in cases {
        let answer = post(addr, "application/json", body.into_bytes()).await;
        assert_invalid_request(&answer, case);
        let text = answer.1["error_description"].as_str().unwrap_or_default();
        assert!(
            !text.contains(SECRET),
            "{case}: the description never echoes a value: {text}"
        );
        assert!(
            text.contains(description),
            "{case}: the description says `{description}`: {text}"
        );
    }
    // Invalid UTF-8 inside a string.
    let mut body = format!(r#"{{{head},"grant_type":"client_credentials","x":""#).into_bytes();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    assert_invalid_request(&post(addr, "application/json", body).await, "invalid UTF-8");
}

#[tokio::test]
async fn json_is_refused_unless_turned_on() {
    let (addr, _server) = serve(false).await;
    let body = json!({"client_id": CLIENT_ID, "client_secret": SECRET,
                      "grant_type": "client_credentials"});
    let answer = post_json(addr, &body.to_string()).await;
    assert_invalid_request(&answer, "JSON while off");
    assert_eq!(
        answer.1["error_description"],
        "the body must be application/x-www-form-urlencoded"
    );
    // Turned on, another media type is still refused, naming both accepted ones.
    let (addr, _server) = serve(true).await;
    let answer = post(addr, "text/plain", body.to_string().into_bytes()).await;
    assert_invalid_request(&answer, "text/plain");
    assert!(
        answer.1["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("application/json"))
    );
    // And the form body keeps working beside JSON.
    let (status, answer) = post(
        addr,
        "application/x-www-form-urlencoded",
        form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}
