//! Client ID Metadata Documents over real HTTPS on loopback (a test CA in tests/data/tls): a
//! client whose `client_id` is the URL of its document runs the authorization-code flow; the
//! refusals (mismatched `client_id`, too large, a secret inside, a redirect to another host, a
//! redirect URI the document does not list, a private address without the dangerous option);
//! caching by `Cache-Control`.
#![cfg(all(feature = "server", feature = "remote"))]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower_oauth2::server::store::ClientStatus;
use tower_oauth2::server::{ApprovalPolicy, ClientIdMetadata};

mod oauth_http;
use oauth_http::{Harness, form, serve};

const CA: &str = include_str!("data/tls/ca.pem");
const CERT: &str = include_str!("data/tls/localhost.pem");
const KEY: &str = include_str!("data/tls/localhost.key");
const REDIRECT: &str = "http://127.0.0.1/callback";

/// Serves `app` over HTTPS on `127.0.0.1:0` with the test certificate; its base URL.
async fn serve_https(app: impl FnOnce(&str) -> Router) -> String {
    use hyper::server::conn::http1::Builder;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs = vec![CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let app = app(&base);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                }
            });
        }
    });
    base
}

/// A metadata document for the client at `url`.
fn document(url: &str) -> Value {
    json!({
        "client_id": url,
        "client_name": "CIMD test client",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "read",
    })
}

fn json_with(body: Value, cache_control: &'static str) -> axum::response::Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

/// The document server: a good document (counting fetches), and bad ones.
async fn documents(fetches: Arc<AtomicUsize>) -> String {
    serve_https(move |base| {
        let base = base.to_owned();
        let b = base.clone();
        let (b2, b3, b4, b5) = (base.clone(), base.clone(), base.clone(), base.clone());
        Router::new()
            .route(
                "/client.json",
                get(move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let url = format!("{b}/client.json");
                    async move { json_with(document(&url), "max-age=60") }
                }),
            )
            .route(
                "/no-store.json",
                get(move || {
                    let url = format!("{b2}/no-store.json");
                    async move { json_with(document(&url), "no-store") }
                }),
            )
            .route(
                "/mismatch.json",
                get(move || {
                    let other = format!("{b3}/client.json");
                    async move { json_with(document(&other), "no-store") }
                }),
            )
            .route(
                "/big.json",
                get(move || {
                    let mut body = document(&format!("{b4}/big.json"));
                    body["padding"] = "x".repeat(8 * 1024).into();
                    async move { json_with(body, "no-store") }
                }),
            )
            .route(
                "/secret.json",
                get(move || {
                    let mut body = document(&format!("{b5}/secret.json"));
                    body["client_secret"] = "s3cret".into();
                    async move { json_with(body, "no-store") }
                }),
            )
            .route(
                "/elsewhere.json",
                get(move || {
                    // Same server, another host name: another host all the same.
                    let port = base.rsplit(':').next().unwrap_or_default().to_owned();
                    async move {
                        (
                            StatusCode::FOUND,
                            [(
                                header::LOCATION,
                                format!("https://localhost:{port}/client.json"),
                            )],
                        )
                            .into_response()
                    }
                }),
            )
    })
    .await
}

fn accepting() -> ClientIdMetadata {
    ClientIdMetadata::new()
        .scopes(["read"])
        .root_certificate_pem(CA)
        .dangerous_allow_private_addresses()
}

fn pkce() -> (String, String) {
    let verifier = "cimd-verifier-".repeat(4);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl Harness {
    async fn authorize(
        &self,
        client_id: &str,
        redirect: &str,
        challenge: &str,
    ) -> (StatusCode, String, Value) {
        let query = form(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "s"),
        ]);
        let response = self
            .http
            .get(format!("{}/oauth2/authorize?{query}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
        (status, location, body)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let body = oauth_http::form(form);
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    }
}

#[tokio::test]
async fn a_client_named_by_its_metadata_document_runs_the_flow() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let docs = documents(Arc::clone(&fetches)).await;
    let h = serve(|b| b.client_id_metadata_documents(accepting())).await;
    let metadata: Value = serde_json::from_str(
        &h.http
            .get(format!("{}/.well-known/oauth-authorization-server", h.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["client_id_metadata_document_supported"], true);

    let client_id = format!("{docs}/client.json");
    let (verifier, challenge) = pkce();
    // A loopback redirect URI from the document, with any port (RFC 8252).
    let redirect = "http://127.0.0.1:45123/callback";
    let (status, location, body) = h.authorize(&client_id, redirect, &challenge).await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let url = reqwest::Url::parse(&location).unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let (status, issued) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["scope"], "read");
    let payload = issued["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["client_id"], client_id.as_str());
    let (status, refreshed) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", issued["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");

    // Kept in the store as a public client; fetched once (max-age=60).
    let stored = h.server.store().client(&client_id).await.unwrap().unwrap();
    assert!(stored.is_public() && stored.status == ClientStatus::Approved);
    assert_eq!(stored.name, "CIMD test client");
    let (status, _, _) = h.authorize(&client_id, redirect, &challenge).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "cached per Cache-Control"
    );

    // A redirect URI the document does not list: refused without a redirect.
    let (status, location, body) = h
        .authorize(&client_id, "https://evil.example/cb", &challenge)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(location.is_empty());

    // no-store: fetched each time, still works.
    let (status, _, body) = h
        .authorize(&format!("{docs}/no-store.json"), REDIRECT, &challenge)
        .await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
}

#[tokio::test]
async fn bad_documents_and_private_addresses_are_refused() {
    let docs = documents(Arc::new(AtomicUsize::new(0))).await;
    let h = serve(|b| b.client_id_metadata_documents(accepting())).await;
    let (_, challenge) = pkce();
    for (path, why) in [
        ("mismatch.json", "differs from the URL"),
        ("big.json", "larger than"),
        ("secret.json", "client secret"),
        ("elsewhere.json", "could not be fetched"),
        ("missing.json", "404"),
    ] {
        let client_id = format!("{docs}/{path}");
        let (status, location, body) = h.authorize(&client_id, REDIRECT, &challenge).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(location.is_empty(), "{path}: never a redirect");
        assert_eq!(body["error"], "invalid_request", "{path}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(why), "{path}: {description}");
        assert!(h.server.store().client(&client_id).await.unwrap().is_none());
    }

    // Without the dangerous option, a loopback (or private) address is not fetched.
    let strict =
        serve(|b| b.client_id_metadata_documents(ClientIdMetadata::new().root_certificate_pem(CA)))
            .await;
    for client_id in [format!("{docs}/client.json"), {
        let port = docs.rsplit(':').next().unwrap();
        format!("https://localhost:{port}/client.json")
    }] {
        let (status, _, body) = strict.authorize(&client_id, REDIRECT, &challenge).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id}: {body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains("public address"),
            "{client_id}: {description}"
        );
    }

    // Not accepted at all: a URL client_id is an unknown client.
    let off = serve(|b| b).await;
    let (status, _, body) = off
        .authorize(&format!("{docs}/client.json"), REDIRECT, &challenge)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_description"], "unknown or inactive client_id");
}

#[tokio::test]
async fn such_clients_follow_the_approval_policy() {
    let docs = documents(Arc::new(AtomicUsize::new(0))).await;
    let h = serve(|b| {
        b.approval_policy(ApprovalPolicy::Manual)
            .client_id_metadata_documents(accepting())
    })
    .await;
    let client_id = format!("{docs}/client.json");
    let (_, challenge) = pkce();
    let (status, _, body) = h.authorize(&client_id, REDIRECT, &challenge).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let stored = h.server.store().client(&client_id).await.unwrap().unwrap();
    assert_eq!(stored.status, ClientStatus::Pending);
}

#[tokio::test]
async fn new_clients_are_rate_limited_known_ones_are_not() {
    let docs = documents(Arc::new(AtomicUsize::new(0))).await;
    let h = serve(|b| {
        b.client_id_metadata_documents(
            accepting().rate_limit(2, std::time::Duration::from_secs(3600)),
        )
    })
    .await;
    let (_, challenge) = pkce();
    let known = format!("{docs}/client.json");
    for client_id in [known.clone(), format!("{docs}/no-store.json")] {
        let (status, _, body) = h.authorize(&client_id, REDIRECT, &challenge).await;
        assert_eq!(status, StatusCode::FOUND, "{client_id}: {body}");
    }
    // A third new client: refused before anything is fetched or stored.
    let third = format!("{docs}/third.json");
    let response = h
        .http
        .get(format!(
            "{}/oauth2/authorize?response_type=code&client_id={}",
            h.base,
            form_urlencoded::byte_serialize(third.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert!(h.server.store().client(&third).await.unwrap().is_none());
    // A known client is not counted.
    let (status, _, body) = h.authorize(&known, REDIRECT, &challenge).await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
}
