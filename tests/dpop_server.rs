//! DPoP (RFC 9449) at the authorization server, over real HTTP on loopback: proofs at the token
//! endpoint for every grant bind the access token (`cnf.jkt`, `token_type` `DPoP`); a public
//! client's refresh token and a code requested with `dpop_jkt` are bound to the key; nonces;
//! introspection and metadata; and the in-process authenticator checks the server's bound
//! tokens on the same path as an external issuer's.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod oauth_http;

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::dpop::{ClientKey, alice, mallory, parts, proof_for, sign};
use oauth_http::{Passwords, Reply, form, pkce, reply};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_oauth2::dpop::Dpop;
use tower_oauth2::server::{AuthorizationServerBuilder, ClientRegistration, ClientSecret};
use tower_oauth2::{AuthenticatorBuilder, VerifiedToken};

const SECRET: &str = "app-secret-0123456789-0123456789-abcdef";

struct Harness {
    base: String,
    http: reqwest::Client,
}

/// The server under `/oauth2`, and `/api/me` behind an authenticator built from the server's
/// trusted issuer with DPoP on (the same path as an external issuer's tokens).
async fn serve(nonces: bool) -> Harness {
    common::provider();
    let configure = |builder: AuthorizationServerBuilder| {
        let builder = builder.password_verifier(Passwords);
        if nonces {
            builder.dpop_nonces([5u8; 32])
        } else {
            builder
        }
    };
    let h = oauth_http::serve_with(configure, |server, base| {
        let api_auth = AuthenticatorBuilder::from(server.trusted_issuer())
            .dpop(Dpop::new(base))
            .build()
            .unwrap();
        let me = get(|token: VerifiedToken| async move {
            axum::Json(json!({"sub": token.subject(), "jkt": token.dpop_thumbprint()}))
        });
        Router::new()
            .route("/api/me", me.clone())
            .layer(api_auth.layer())
            // The server's in-process authenticator: proofs for the issuer's origin.
            .merge(
                Router::new()
                    .route("/inproc/me", me)
                    .layer(server.authenticator().layer()),
            )
    })
    .await;
    let server = &h.server;
    let mut app_client = ClientRegistration::new("app");
    app_client.client_id = Some("app".into());
    app_client.grant_types = Some(vec![
        "client_credentials".into(),
        "password".into(),
        "refresh_token".into(),
    ]);
    app_client.scopes = vec!["read".into()];
    app_client.secret = Some(ClientSecret::from_value(SECRET).unwrap());
    server.register_client(app_client).await.unwrap();
    let mut spa = ClientRegistration::new("spa");
    spa.client_id = Some("spa".into());
    spa.grant_types = Some(vec!["authorization_code".into(), "refresh_token".into()]);
    spa.redirect_uris = vec!["http://127.0.0.1/cb".into()];
    spa.scopes = vec!["read".into()];
    spa.token_endpoint_auth_method = Some("none".into());
    server.register_client(spa).await.unwrap();

    Harness {
        base: h.base,
        http: h.http,
    }
}

impl Harness {
    fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.base)
    }

    /// `POST /token` with `pairs`, as `app` when `confidential`, with these DPoP proofs.
    async fn token(&self, confidential: bool, pairs: &[(&str, &str)], proofs: &[&str]) -> Reply {
        let mut request = self
            .http
            .post(self.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if confidential {
            request = request.basic_auth("app", Some(SECRET));
        }
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        reply(request.send().await.unwrap()).await
    }

    fn token_proof(&self, key: &ClientKey) -> String {
        proof_for(key, "POST", &self.token_url(), None)
    }

    async fn api(&self, scheme: &str, token: &str, proof: Option<&str>) -> Reply {
        self.get("/api/me", scheme, token, proof).await
    }

    async fn get(&self, path: &str, scheme: &str, token: &str, proof: Option<&str>) -> Reply {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        reply(request.send().await.unwrap()).await
    }

    fn api_proof(&self, key: &ClientKey, token: &str) -> String {
        proof_for(key, "GET", &format!("{}/api/me", self.base), Some(token))
    }

    /// A code for `spa`, with `dpop_jkt` when given, and its PKCE verifier.
    async fn code(&self, dpop_jkt: Option<&str>) -> (String, String) {
        let (verifier, challenge) = pkce("spa");
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", "http://127.0.0.1/cb"),
            ("scope", "read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if let Some(jkt) = dpop_jkt {
            params.push(("dpop_jkt", jkt));
        }
        let response = self
            .http
            .get(format!("{}/oauth2/authorize?{}", self.base, form(&params)))
            .send()
            .await
            .unwrap();
        let (_, query) = reply(response).await.redirect();
        (query["code"].clone(), verifier)
    }
}

/// The claims of a JWT, unverified (the test reads what the server put in).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn every_grant_binds_the_access_token_to_the_proof_key() {
    let h = serve(false).await;
    let a = alice();
    let m = mallory();

    // client_credentials, with and without a proof.
    let bound = h
        .token(
            true,
            &[("grant_type", "client_credentials")],
            &[&h.token_proof(&a)],
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK, "{}", bound.body);
    assert_eq!(bound.str("token_type"), "DPoP");
    let access = bound.str("access_token");
    assert_eq!(claims_of(&access)["cnf"], json!({"jkt": a.jkt}));
    let plain = h
        .token(true, &[("grant_type", "client_credentials")], &[])
        .await;
    assert_eq!(plain.str("token_type"), "Bearer");
    assert!(claims_of(&plain.str("access_token")).get("cnf").is_none());

    // The API: the bound token with a proof by its key only.
    let ok = h
        .api("DPoP", &access, Some(&h.api_proof(&a, &access)))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["jkt"], json!(a.jkt));
    let other_key = h
        .api("DPoP", &access, Some(&h.api_proof(&m, &access)))
        .await;
    assert_eq!(other_key.status, StatusCode::UNAUTHORIZED);
    let as_bearer = h.api("Bearer", &access, None).await;
    assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED);
    assert!(
        as_bearer.body["error_description"]
            .as_str()
            .unwrap()
            .contains("sender-constrained")
    );
    assert_eq!(
        h.api("Bearer", &plain.str("access_token"), None)
            .await
            .status,
        StatusCode::OK
    );

    // password, and its (confidential) refresh token: not bound to the key, the new access
    // token bound to whatever key proves the refresh.
    let pw = h
        .token(
            true,
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
            &[&h.token_proof(&a)],
        )
        .await;
    assert_eq!(pw.str("token_type"), "DPoP");
    assert_eq!(
        claims_of(&pw.str("access_token"))["cnf"]["jkt"],
        json!(a.jkt)
    );
    let refreshed = h
        .token(
            true,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &pw.str("refresh_token")),
            ],
            &[&h.token_proof(&m)],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(
        claims_of(&refreshed.str("access_token"))["cnf"]["jkt"],
        json!(m.jkt)
    );

    // Introspection tells the binding.
    let introspected = reply(
        h.http
            .post(format!("{}/oauth2/introspect", h.base))
            .basic_auth("app", Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", &access)]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        introspected.body["active"],
        json!(true),
        "{}",
        introspected.body
    );
    assert_eq!(introspected.body["token_type"], "DPoP");
    assert_eq!(introspected.body["cnf"], json!({"jkt": a.jkt}));
}

#[tokio::test]
async fn a_public_clients_code_and_refresh_token_are_bound_to_its_key() {
    let h = serve(false).await;
    let a = alice();
    let m = mallory();

    // Without dpop_jkt: the proof at redemption binds the tokens.
    let (code, verifier) = h.code(None).await;
    let redeem = |code: String, verifier: String| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "spa".to_owned()),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", "http://127.0.0.1/cb".to_owned()),
        ]
    };
    let pairs = redeem(code, verifier);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = h.token(false, &pairs, &[&h.token_proof(&a)]).await;
    assert_eq!(first.str("token_type"), "DPoP", "{}", first.body);
    let refresh = first.str("refresh_token");

    // The refresh token is bound to the key: another key, or none, is refused.
    let refresh_pairs = [
        ("grant_type", "refresh_token"),
        ("client_id", "spa"),
        ("refresh_token", refresh.as_str()),
    ];
    let other = h.token(false, &refresh_pairs, &[&h.token_proof(&m)]).await;
    other.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        other
            .str("error_description")
            .contains("bound to another DPoP key")
    );
    let none = h.token(false, &refresh_pairs, &[]).await;
    none.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let same = h.token(false, &refresh_pairs, &[&h.token_proof(&a)]).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);
    // The rotated refresh token stays bound.
    let next = [
        ("grant_type", "refresh_token"),
        ("client_id", "spa"),
        ("refresh_token", &same.str("refresh_token")),
    ];
    h.token(false, &next, &[&h.token_proof(&m)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // With dpop_jkt (RFC 9449 §10): only a proof by that key redeems the code.
    for (proof_key, expect_ok) in [(None, false), (Some(&m), false), (Some(&a), true)] {
        let (code, verifier) = h.code(Some(&a.jkt)).await;
        let pairs = redeem(code, verifier);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let proofs: Vec<String> = proof_key.map(|k| h.token_proof(k)).into_iter().collect();
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let answer = h.token(false, &pairs, &proofs).await;
        if expect_ok {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        } else {
            answer.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
            assert!(answer.str("error_description").contains("dpop_jkt"));
        }
    }
    // A malformed dpop_jkt is refused at /authorize.
    let (_, challenge) = pkce("spa");
    let response = h
        .http
        .get(format!(
            "{}/oauth2/authorize?{}",
            h.base,
            form(&[
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", "http://127.0.0.1/cb"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("dpop_jkt", "short"),
            ])
        ))
        .send()
        .await
        .unwrap();
    let (_, query) = reply(response).await.redirect();
    assert_eq!(query["error"], "invalid_request");
}

#[tokio::test]
async fn bad_proofs_at_the_token_endpoint_are_invalid_dpop_proof() {
    let h = serve(false).await;
    let a = alice();
    let cc = [("grant_type", "client_credentials")];
    let api_url = format!("{}/api/me", h.base);
    let replayed = h.token_proof(&a);
    assert_eq!(
        h.token(true, &cc, &[&replayed]).await.status,
        StatusCode::OK
    );
    let (header, mut wrong_typ) = parts(&a, "POST", &h.token_url(), None);
    wrong_typ["htm"] = json!("POST");
    let mut jwt_header = header.clone();
    jwt_header["typ"] = json!("JWT");
    for (name, proofs, reason) in [
        ("replayed", vec![replayed.clone()], "used before"),
        (
            "wrong htu",
            vec![proof_for(&a, "POST", &api_url, None)],
            "htu",
        ),
        (
            "wrong htm",
            vec![proof_for(&a, "GET", &h.token_url(), None)],
            "htm",
        ),
        (
            "two proofs",
            vec![h.token_proof(&a), h.token_proof(&a)],
            "more than one",
        ),
        ("wrong typ", vec![sign(&a, &jwt_header, &wrong_typ)], "typ"),
    ] {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let answer = h.token(true, &cc, &proofs).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
        assert!(
            answer.str("error_description").contains(reason),
            "{name}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn nonces_at_the_token_endpoint() {
    let h = serve(true).await;
    let a = alice();
    let cc = [("grant_type", "client_credentials")];
    let first = h.token(true, &cc, &[&h.token_proof(&a)]).await;
    first.assert_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let (header, mut claims) = parts(&a, "POST", &h.token_url(), None);
    claims["nonce"] = json!(nonce);
    let second = h.token(true, &cc, &[&sign(&a, &header, &claims)]).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    // A token request without a proof needs no nonce.
    assert_eq!(h.token(true, &cc, &[]).await.status, StatusCode::OK);
    // The server's authenticator takes its nonces (same secret): the token endpoint's nonce
    // works at the API, and a proof without one gets 401 use_dpop_nonce with a fresh one.
    let access = second.str("access_token");
    let inproc = format!("{}/inproc/me", h.base);
    let (header, claims) = parts(&a, "GET", &inproc, Some(&access));
    let without = h
        .get(
            "/inproc/me",
            "DPoP",
            &access,
            Some(&sign(&a, &header, &claims)),
        )
        .await;
    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    assert_eq!(without.body["error"], "use_dpop_nonce");
    assert!(without.headers.contains_key("dpop-nonce"));
    let (header, mut claims) = parts(&a, "GET", &inproc, Some(&access));
    claims["nonce"] = json!(nonce);
    let with = h
        .get(
            "/inproc/me",
            "DPoP",
            &access,
            Some(&sign(&a, &header, &claims)),
        )
        .await;
    assert_eq!(with.status, StatusCode::OK, "{}", with.body);
}

#[tokio::test]
async fn metadata_lists_the_proof_algorithms() {
    let h = serve(false).await;
    let metadata = reply(
        h.http
            .get(format!("{}/.well-known/oauth-authorization-server", h.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        metadata.body["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "EdDSA", "PS256", "RS256"])
    );
}
