//! The authorization server's `POST /token` through its public router: form parsing, client
//! authentication (Basic header or form), and every grant.
//!
//! Input: the bytes up to the first `\n` are the `Authorization` header value (none when
//! empty; an input whose value is not a valid header value is skipped, as no HTTP request can
//! carry it), the rest is the form body. In the body, `@RT@` becomes a refresh token and
//! `@CODE@` an authorization code (for the PKCE verifier [`VERIFIER`]), each freshly issued to
//! the registered client `fuzz-client`, so the fuzzer reaches refresh rotation and code
//! redemption with real values.
//!
//! Oracle: nothing panics; no status is 5xx (a client's bad input is never a server error);
//! every 4xx is an RFC 6749 §5.2 JSON body with an `error` string.
#![no_main]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    AuthorizationRequest, AuthorizationServer, ClientRegistration, ClientSecret, ConsentDecision,
    ConsentHandler, HookFuture, PasswordVerifier,
};
use tower_oauth2_fuzz::b64;

const CLIENT_ID: &str = "fuzz-client";
const CLIENT_SECRET: &str = "fuzz-client-secret-0123456789abcdefghijklmnop";
const REDIRECT_URI: &str = "https://app.test/cb";
const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The PKCE verifier of every `@CODE@` code.
const VERIFIER: &str = "fuzz-verifier-0123456789abcdefghijklmnopqrstuvwxyz";
const FORM: &str = "application/x-www-form-urlencoded";

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

struct Approve;

impl ConsentHandler for Approve {
    fn decide<'a>(
        &'a self,
        _authorization: &'a AuthorizationRequest,
        _request: &'a http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        Box::pin(async {
            ConsentDecision::Approve {
                subject: "user-alice".to_owned(),
                scopes: None,
            }
        })
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
}

/// Inputs served by one server before it is replaced by a fresh one: every token issued stays
/// in the `MemoryStore` until it expires, so one server for a whole run would grow until
/// libFuzzer's RSS limit.
const INPUTS_PER_SERVER: u32 = 20_000;

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let app = runtime.block_on(async {
        let server = AuthorizationServer::builder()
            .issuer("https://auth.test")
            .store(MemoryStore::new())
            .password_verifier(Users)
            .consent_handler(Approve)
            // Failed authentications must not lock the fuzzer out of the deeper code.
            .client_auth_rate_limit(u32::MAX, Duration::from_secs(1))
            .build()
            .await
            .expect("server");
        let mut registration = ClientRegistration::new("fuzz app");
        registration.client_id = Some(CLIENT_ID.to_owned());
        registration.redirect_uris = vec![REDIRECT_URI.to_owned()];
        registration.grant_types = Some(
            [
                "client_credentials",
                "refresh_token",
                "password",
                "authorization_code",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        registration.scopes = vec!["read".into(), "write".into()];
        registration.secret =
            Some(ClientSecret::from_value(CLIENT_SECRET.to_owned()).expect("long secret"));
        server.register_client(registration).await.expect("client");
        // A second client, with client credentials only.
        let mut other = ClientRegistration::new("other app");
        other.client_id = Some("other-client".to_owned());
        other.scopes = vec!["read".into()];
        other.secret =
            Some(ClientSecret::from_value(format!("other-{CLIENT_SECRET}")).expect("long secret"));
        server.register_client(other).await.expect("client");
        Router::new().nest("/oauth2", server.router())
    });
    Fixture { runtime, app }
}

fn basic() -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    )
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("response body");
    (status, headers, body.to_vec())
}

/// A fresh refresh token of `fuzz-client`, from the password grant.
async fn refresh_token(app: &Router) -> String {
    let body = format!("grant_type=password&username={USER}&password=correct+horse+battery+staple");
    let request = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, FORM)
        .header(header::AUTHORIZATION, basic())
        .body(Body::from(body))
        .expect("request");
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "password grant");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    json["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// A fresh authorization code of `fuzz-client` for [`VERIFIER`].
async fn code(app: &Router) -> String {
    let challenge = b64(Sha256::digest(VERIFIER.as_bytes()));
    let uri = format!(
        "/oauth2/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri={}\
         &code_challenge={challenge}&code_challenge_method=S256&state=s",
        form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>()
    );
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let (status, headers, _) = send(app, request).await;
    assert_eq!(status, StatusCode::FOUND, "authorize");
    let location = headers[header::LOCATION].to_str().expect("location");
    let query = location.split_once('?').expect("query").1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .expect("code")
        .1
        .into_owned()
}

/// Replaces every `needle` in `body` with `value`.
fn replace(body: &[u8], needle: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(value);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let (authorization, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let authorization = match authorization {
        [] => None,
        value => match http::HeaderValue::from_bytes(value) {
            Ok(value) => Some(value),
            Err(_) => return,
        },
    };
    static FIXTURE: Mutex<Option<(Fixture, u32)>> = Mutex::new(None);
    let mut guard = FIXTURE.lock().unwrap_or_else(|e| e.into_inner());
    if guard
        .as_ref()
        .is_none_or(|(_, served)| *served >= INPUTS_PER_SERVER)
    {
        *guard = None; // the old server (and its runtime) goes first
        *guard = Some((fixture(), 0));
    }
    let Some((Fixture { runtime, app }, served)) = guard.as_mut() else {
        unreachable!("set above");
    };
    *served += 1;
    runtime.block_on(async {
        let mut body = body.to_vec();
        if body.windows(4).any(|w| w == b"@RT@") {
            body = replace(&body, b"@RT@", refresh_token(app).await.as_bytes());
        }
        if body.windows(6).any(|w| w == b"@CODE@") {
            body = replace(&body, b"@CODE@", code(app).await.as_bytes());
        }
        let mut request = Request::post("/oauth2/token").header(header::CONTENT_TYPE, FORM);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let mut request = request.body(Body::from(body)).expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40_000))));
        let (status, _, body) = send(app, request).await;
        assert!(
            !status.is_server_error(),
            "{status} for a client's request: {}",
            String::from_utf8_lossy(&body)
        );
        if status.is_client_error() {
            let json: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{status} without a JSON body ({e})"));
            assert!(
                json.get("error").is_some_and(serde_json::Value::is_string),
                "{status} without an `error`: {json}"
            );
        }
    });
});
