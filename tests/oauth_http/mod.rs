//! Shared by the authorization-server tests that run over real HTTP on loopback
//! (`oauth21_clients`, `dynamic_registration`, `client_metadata`, `refresh_grace`): an
//! approving consent handler, a password verifier, a client that does not follow redirects,
//! and the reply with its checks.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    AuthorizationRequest, AuthorizationServer, AuthorizationServerBuilder, ConsentDecision,
    ConsentHandler, HookFuture, PasswordVerifier,
};

/// Approves every authorization request for "alice".
pub struct Approve;

impl ConsentHandler for Approve {
    fn decide<'a>(
        &'a self,
        _authorization: &'a AuthorizationRequest,
        _request: &'a http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        Box::pin(async {
            ConsentDecision::Approve {
                subject: "alice".into(),
                scopes: None,
            }
        })
    }
}

/// alice / wonderland.
pub struct Passwords;

impl PasswordVerifier for Passwords {
    fn verify<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> HookFuture<'a, Option<String>> {
        let ok = username == "alice" && password == "wonderland";
        Box::pin(async move { ok.then(|| "alice".to_owned()) })
    }
}

/// A running authorization server, and a client for it.
pub struct Harness {
    pub base: String,
    pub server: AuthorizationServer,
    pub http: reqwest::Client,
}

/// An authorization server on `127.0.0.1:0` (in memory, approving every authorization request,
/// configured further by `configure`) serving its endpoints under `/oauth2` and its metadata,
/// with the peer address known (for per-peer limits).
pub async fn serve(
    configure: impl FnOnce(AuthorizationServerBuilder) -> AuthorizationServerBuilder,
) -> Harness {
    serve_with(configure, |_, _| Router::new()).await
}

/// [`serve`], with the routes `routes` makes from the built server and its base URL (an API
/// behind the server's tokens) merged at the root.
pub async fn serve_with(
    configure: impl FnOnce(AuthorizationServerBuilder) -> AuthorizationServerBuilder,
    routes: impl FnOnce(&AuthorizationServer, &str) -> Router,
) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let builder = AuthorizationServer::builder()
        .issuer(base.clone())
        .store(MemoryStore::new())
        .consent_handler(Approve);
    let server = configure(builder).build().await.unwrap();
    let app = Router::new()
        .nest("/oauth2", server.router())
        .merge(server.metadata_router())
        .merge(routes(&server, &base));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Harness {
        base,
        server,
        http: no_redirects(),
    }
}

/// An HTTP client that leaves redirects to the test.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `pairs` as an `application/x-www-form-urlencoded` body or query.
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("{seed}-{}", "v".repeat(50));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A response read whole: status, headers, and the body as JSON (a JSON string when it is not).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

impl Reply {
    /// Asserts the status and the OAuth `error` code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.body["error"].as_str()),
            (status, Some(code)),
            "{}",
            self.body
        );
    }

    /// The string member `member` of the body.
    pub fn str(&self, member: &str) -> String {
        self.body[member]
            .as_str()
            .unwrap_or_else(|| panic!("no `{member}` in {}", self.body))
            .to_owned()
    }

    /// The redirect's target without query, and its query parameters.
    pub fn redirect(&self) -> (String, HashMap<String, String>) {
        let location = self.headers["location"].to_str().unwrap();
        let url = reqwest::Url::parse(location).unwrap();
        let params = url.query_pairs().into_owned().collect();
        (location.split('?').next().unwrap().to_owned(), params)
    }
}
