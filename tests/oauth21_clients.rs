//! OAuth 2.1 for every kind of client, over a real HTTP server on loopback: public clients
//! (`token_endpoint_auth_method: none`, PKCE, RFC 8252 loopback redirects with any port) and
//! their refusals.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    AuthorizationServer, AuthorizationServerBuilder, ClaimsContext, ClaimsError, ClaimsHook,
    HookFuture, PROTECTED_CLAIMS, ResourceServer,
};
use tower_oauth2::{ProtectedResource, VerifiedToken};

mod oauth_http;
use oauth_http::{Approve, Passwords, Reply, form, no_redirects, pkce, reply};

struct Harness {
    base: String,
    server: AuthorizationServer,
    http: reqwest::Client,
}

/// The server on `127.0.0.1:0`: its endpoints under `/oauth2`, metadata, the admin API under
/// `/admin` (unprotected: the test is its operator), `/api/me` behind its authenticator, and
/// `/mcp` as a protected resource with its metadata. `configure` gets the base URL.
async fn serve(
    configure: impl FnOnce(AuthorizationServerBuilder, &str) -> AuthorizationServerBuilder,
) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let builder = AuthorizationServer::builder()
        .issuer(base.clone())
        .store(MemoryStore::new())
        .consent_handler(Approve)
        .password_verifier(Passwords);
    let server = configure(builder, &base).build().await.unwrap();
    // The MCP-style resource `{base}/mcp`, when the server knows it: only tokens for it
    // (RFC 9728 / RFC 8707).
    let mut mcp = Router::new();
    if let Ok(mcp_auth) =
        server.resource_authenticator(ProtectedResource::new(format!("{base}/mcp")))
    {
        mcp = mcp
            .route(
                "/mcp",
                get(|token: VerifiedToken| async move {
                    axum::Json(json!({"sub": token.subject(),
                                      "scopes": token.scopes().iter().collect::<Vec<_>>()}))
                }),
            )
            .route_layer(mcp_auth.layer())
            .merge(mcp_auth.resource_metadata_router());
    }
    let api = Router::new()
        .route(
            "/api/me",
            get(|token: VerifiedToken| async move { axum::Json(json!({"sub": token.subject()})) }),
        )
        .route_layer(server.authenticator().layer());
    let app = Router::new()
        .nest("/oauth2", server.router())
        .merge(server.metadata_router())
        .nest("/admin", server.admin_router())
        .merge(api)
        .merge(mcp);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        base,
        server,
        http: no_redirects(),
    }
}

impl Harness {
    async fn admin_post(&self, path: &str, body: Value) -> Reply {
        let response = self
            .http
            .post(format!("{}/admin{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        reply(response).await
    }

    /// A form post to `/oauth2/{endpoint}`, with Basic credentials when `basic` is given.
    async fn post(
        &self,
        endpoint: &str,
        basic: Option<(&str, &str)>,
        pairs: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/oauth2/{endpoint}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        reply(request.send().await.unwrap()).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> Reply {
        self.post("token", None, form).await
    }

    /// Redeems `code` for the public client `client_id`.
    async fn redeem(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Reply {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
        ])
        .await
    }

    /// Refreshes `token` as the public client `client_id`.
    async fn refresh(&self, client_id: &str, token: &str) -> Reply {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ])
        .await
    }

    async fn authorize(&self, params: &[(&str, &str)]) -> Reply {
        let response = self
            .http
            .get(format!("{}/oauth2/authorize?{}", self.base, form(params)))
            .send()
            .await
            .unwrap();
        reply(response).await
    }

    /// Runs the authorization request for `client_id` to `redirect_uri`; the code.
    async fn code(&self, client_id: &str, redirect_uri: &str, challenge: &str) -> String {
        let reply = self
            .authorize(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("state", "s1"),
            ])
            .await;
        assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
        let (target, params) = reply.redirect();
        assert_eq!(target, redirect_uri);
        assert_eq!(params["state"], "s1");
        params["code"].clone()
    }

    async fn me(&self, token: &str) -> StatusCode {
        self.http
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// Registers the public client `id` with a loopback redirect URI registered without a port.
async fn register_public(h: &Harness, id: &str) -> Reply {
    let reply = h
        .admin_post(
            "/clients",
            json!({
                "name": format!("CLI {id}"),
                "client_id": id,
                "token_endpoint_auth_method": "none",
                "redirect_uris": ["http://127.0.0.1/callback", "com.example.cli:/done"],
                "grant_types": ["authorization_code", "refresh_token"],
                "scopes": ["read", "write"],
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply
}

#[tokio::test]
async fn a_public_client_runs_authorization_code_with_pkce_and_refreshes() {
    let h = serve(|b, _| b).await;
    let registered = register_public(&h, "cli").await;
    assert_eq!(registered.body["token_endpoint_auth_method"], "none");
    assert!(
        registered.body.get("client_secret").is_none(),
        "{}",
        registered.body
    );

    // RFC 8252 §7.3: the loopback redirect URI was registered without a port; any port works.
    let redirect = "http://127.0.0.1:51789/callback";
    let (verifier, challenge) = pkce("public");
    let code = h.code("cli", redirect, &challenge).await;
    let issued = h.redeem("cli", &code, &verifier, redirect).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["token_type"], "Bearer");
    let access = issued.str("access_token");
    assert_eq!(h.me(&access).await, StatusCode::OK);
    let refresh = issued.str("refresh_token");

    // The refresh token rotates, for its own client, without a secret.
    let refreshed = h.refresh("cli", &refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let second_access = refreshed.str("access_token");
    let second_refresh = refreshed.str("refresh_token");
    assert_ne!(second_refresh, refresh);

    // Reuse of the rotated-out token revokes the family, for a public client as for others.
    let reused = h.refresh("cli", &refresh).await;
    reused.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(h.me(&second_access).await, StatusCode::UNAUTHORIZED);
    let after_reuse = h.refresh("cli", &second_refresh).await;
    after_reuse.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_public_clients_tokens_are_bound_to_it_and_revocable_by_it() {
    let h = serve(|b, _| b).await;
    register_public(&h, "cli-a").await;
    register_public(&h, "cli-b").await;
    let (verifier, challenge) = pkce("bound");
    let redirect = "com.example.cli:/done";
    let code = h.code("cli-a", redirect, &challenge).await;

    // Another public client cannot redeem the code, and that does not burn it.
    let stolen = h.redeem("cli-b", &code, &verifier, redirect).await;
    stolen.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let issued = h.redeem("cli-a", &code, &verifier, redirect).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let refresh = issued.str("refresh_token");

    // Another client presenting the refresh token gets invalid_grant and changes nothing.
    let other = h.refresh("cli-b", &refresh).await;
    other.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // RFC 7009 §5: the public client revokes its own refresh token with its client_id.
    let revoked = h
        .post(
            "revoke",
            None,
            &[("client_id", "cli-a"), ("token", &refresh)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let after = h.refresh("cli-a", &refresh).await;
    after.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // Introspection is for confidential clients (resource servers) only.
    let introspect = h
        .post(
            "introspect",
            None,
            &[("client_id", "cli-a"), ("token", "x")],
        )
        .await;
    introspect.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn refusals_for_public_and_confidential_clients() {
    let h = serve(|b, _| b).await;
    register_public(&h, "cli").await;
    let confidential = h
        .admin_post(
            "/clients",
            json!({"name": "Service", "client_id": "svc",
                   "grant_types": ["client_credentials"], "scopes": ["read"]}),
        )
        .await;
    assert_eq!(confidential.status, StatusCode::CREATED);
    assert_eq!(
        confidential.body["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    let secret = confidential.str("client_secret");

    // A public client may not use client_credentials or password, even if asked by name.
    for (grant, extra) in [
        ("client_credentials", vec![]),
        (
            "password",
            vec![("username", "alice"), ("password", "wonderland")],
        ),
    ] {
        let mut form = vec![("grant_type", grant), ("client_id", "cli")];
        form.extend(extra);
        let reply = h.token(&form).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "unauthorized_client");
        assert!(
            reply.str("error_description").contains("public client"),
            "{}",
            reply.body
        );
    }

    // A public client that sends a secret fails authentication.
    let with_secret = h
        .post(
            "token",
            Some(("cli", "made-up-secret")),
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    with_secret.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // A confidential client that sends no secret (or an empty one) fails authentication.
    for form in [
        vec![("grant_type", "client_credentials"), ("client_id", "svc")],
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", ""),
        ],
    ] {
        h.token(&form)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let ok = h
        .post(
            "token",
            Some(("svc", &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    // An unknown client id alone is refused like a bad secret.
    h.refresh("nobody", "x")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Registration refuses a public client with a confidential grant, and an unknown method.
    for (body, field) in [
        (
            json!({"name": "x", "token_endpoint_auth_method": "none",
                   "redirect_uris": ["https://app.example/cb"],
                   "grant_types": ["authorization_code", "client_credentials"]}),
            "grant_types",
        ),
        (
            json!({"name": "x", "token_endpoint_auth_method": "private_key_jwt"}),
            "token_endpoint_auth_method",
        ),
        (
            json!({"name": "x", "token_endpoint_auth_method": "none"}),
            "redirect_uris",
        ),
    ] {
        let reply = h.admin_post("/clients", body).await;
        reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_metadata");
        assert_eq!(reply.body["field"], field, "{}", reply.body);
    }

    // A public client has no secret to rotate.
    let rotate = h.admin_post("/clients/cli/secret", json!({})).await;
    assert_eq!(rotate.status, StatusCode::CONFLICT, "{}", rotate.body);
    // And cannot be made confidential by a change.
    let patched = h
        .http
        .patch(format!("{}/admin/clients/cli", h.base))
        .header("content-type", "application/json")
        .body(json!({"name": "renamed"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let stored = h.server.store().client("cli").await.unwrap().unwrap();
    assert!(stored.is_public() && stored.name == "renamed");
}

#[tokio::test]
async fn loopback_redirects_vary_only_in_port_and_the_token_request_repeats_them() {
    let h = serve(|b, _| b).await;
    register_public(&h, "cli").await;
    let (_, challenge) = pkce("ports");
    for bad in [
        "http://127.0.0.1:5000/other",
        "http://localhost:5000/callback",
        "http://[::1]:5000/callback",
        "https://127.0.0.1:5000/callback",
    ] {
        let reply = h
            .authorize(&[
                ("response_type", "code"),
                ("client_id", "cli"),
                ("redirect_uri", bad),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .await;
        // Never a redirect to an unregistered URI.
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    let (verifier, challenge) = pkce("ports");
    let redirect = "http://127.0.0.1:40001/callback";
    let code = h.code("cli", redirect, &challenge).await;
    let base = [
        ("grant_type", "authorization_code"),
        ("client_id", "cli"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    // Omitted: it was not the registered URI as registered, so it must be repeated.
    h.token(&base)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Another port than the authorization request's.
    let mut other_port = base.to_vec();
    other_port.push(("redirect_uri", "http://127.0.0.1:40002/callback"));
    h.token(&other_port)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn metadata_advertises_public_clients() {
    let h = serve(|b, _| b).await;
    let response = h
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", h.base))
        .send()
        .await
        .unwrap();
    let metadata = reply(response).await.body;
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        metadata["revocation_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

// ---------------------------------------------------------------------------------------------
// Resource indicators (RFC 8707)
// ---------------------------------------------------------------------------------------------

const REPORTS: &str = "https://reports.example";

/// A server that knows `{base}/mcp` (scope `read` only, 10-minute tokens) and `REPORTS`.
async fn serve_resources() -> Harness {
    serve(|b, base| {
        b.resource_server(
            ResourceServer::new(format!("{base}/mcp"))
                .scopes(["read"])
                .access_token_lifetime("10min".parse().unwrap()),
        )
        .resource_server(ResourceServer::new(REPORTS))
    })
    .await
}

/// The claims of a JWT, unverified (the test checks what the server put in).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

impl Harness {
    /// Runs `/authorize` for the public client `cli` with extra parameters; the reply.
    async fn authorize_with(&self, challenge: &str, extra: &[(&str, &str)]) -> Reply {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "cli"),
            ("redirect_uri", "com.example.cli:/done"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        params.extend_from_slice(extra);
        self.authorize(&params).await
    }

    async fn mcp(&self, token: &str) -> Reply {
        let response = self
            .http
            .get(format!("{}/mcp", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        reply(response).await
    }
}

#[tokio::test]
async fn the_resource_parameter_picks_the_audience_scopes_and_lifetime() {
    let h = serve_resources().await;
    let mcp = format!("{}/mcp", h.base);
    register_public(&h, "cli").await;
    let (verifier, challenge) = pkce("resource");
    let reply = h.authorize_with(&challenge, &[("resource", &mcp)]).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    let code = reply.redirect().1["code"].clone();
    let issued = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cli"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", "com.example.cli:/done"),
            ("resource", &mcp),
        ])
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let access = issued.str("access_token");
    let token = claims(&access);
    assert_eq!(token["aud"], mcp.as_str());
    // The client may have read and write; the resource allows read only.
    assert_eq!(issued.body["scope"], "read");
    assert!(issued.body["expires_in"].as_u64().unwrap() <= 600);

    // The protected resource accepts it; the server's own API (another audience) does not.
    let called = h.mcp(&access).await;
    assert_eq!(called.status, StatusCode::OK, "{}", called.body);
    assert_eq!(called.body["scopes"], json!(["read"]));
    assert_eq!(h.me(&access).await, StatusCode::UNAUTHORIZED);

    // Introspection knows it as this server's token, with its audience.
    let svc = h
        .admin_post(
            "/clients",
            json!({"name": "RS", "client_id": "rs", "scopes": ["read"]}),
        )
        .await;
    let secret = svc.str("client_secret");
    let info = h
        .post("introspect", Some(("rs", &secret)), &[("token", &access)])
        .await;
    assert_eq!(info.body["active"], true, "{}", info.body);
    assert_eq!(info.body["aud"], json!([mcp]));

    // Without `resource`, the server's default audience, as before.
    let (verifier, challenge) = pkce("no-resource");
    let reply = h.authorize_with(&challenge, &[]).await;
    let code = reply.redirect().1["code"].clone();
    let plain = h
        .redeem("cli", &code, &verifier, "com.example.cli:/done")
        .await;
    let plain_access = plain.str("access_token");
    assert_eq!(claims(&plain_access)["aud"], h.base.as_str());
    assert_eq!(plain.body["scope"], "read write");
    assert_eq!(h.me(&plain_access).await, StatusCode::OK);
    // A token for the server's default audience is for another resource at /mcp.
    let other = h.mcp(&plain_access).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let challenge = other.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("token is for another resource")
            && challenge.contains(&format!(
                "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                h.base
            )),
        "{challenge}"
    );
}

#[tokio::test]
async fn unknown_resources_and_scopes_a_resource_forbids_are_refused() {
    let h = serve_resources().await;
    let mcp = format!("{}/mcp", h.base);
    register_public(&h, "cli").await;
    let (_, challenge) = pkce("refusals");
    // At /authorize, after the redirect URI is trusted: errors go back to the client.
    for (extra, code) in [
        (
            vec![("resource", "https://unknown.example")],
            "invalid_target",
        ),
        (vec![("resource", "/relative")], "invalid_target"),
        (
            vec![("resource", "https://reports.example#frag")],
            "invalid_target",
        ),
        (
            vec![("resource", mcp.as_str()), ("scope", "write")],
            "invalid_scope",
        ),
        (
            vec![
                ("resource", mcp.as_str()),
                ("resource", REPORTS),
                ("scope", "write"),
            ],
            "invalid_scope",
        ),
    ] {
        let reply = h.authorize_with(&challenge, &extra).await;
        assert_eq!(reply.status, StatusCode::FOUND, "{extra:?}");
        let (target, params) = reply.redirect();
        assert_eq!(target, "com.example.cli:/done");
        assert_eq!(params["error"], code, "{extra:?}: {params:?}");
        assert!(!params.contains_key("code"));
    }

    // At the token endpoint, for client credentials.
    let svc = h
        .admin_post(
            "/clients",
            json!({"name": "Svc", "client_id": "svc", "scopes": ["read", "write"]}),
        )
        .await;
    let secret = svc.str("client_secret");
    let cc = |resource: &'static str| {
        let secret = secret.clone();
        let h = &h;
        async move {
            h.post(
                "token",
                Some(("svc", &secret)),
                &[("grant_type", "client_credentials"), ("resource", resource)],
            )
            .await
        }
    };
    cc("https://unknown.example")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_target");
    let reports = cc(REPORTS).await;
    assert_eq!(reports.status, StatusCode::OK, "{}", reports.body);
    assert_eq!(claims(&reports.str("access_token"))["aud"], REPORTS);
    assert_eq!(reports.body["scope"], "read write");
}

#[tokio::test]
async fn a_refresh_may_narrow_the_resources_of_the_grant_but_not_widen_them() {
    let h = serve_resources().await;
    let mcp = format!("{}/mcp", h.base);
    register_public(&h, "cli").await;
    let (verifier, challenge) = pkce("narrow");
    let reply = h
        .authorize_with(
            &challenge,
            &[("resource", &mcp), ("resource", REPORTS), ("scope", "read")],
        )
        .await;
    let code = reply.redirect().1["code"].clone();
    // The redemption names one of the two: that one is the audience.
    let issued = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cli"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", "com.example.cli:/done"),
            ("resource", REPORTS),
        ])
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(claims(&issued.str("access_token"))["aud"], REPORTS);
    let mut refresh = issued.str("refresh_token");

    let refresh_with = |token: String, resources: Vec<String>| {
        let h = &h;
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("client_id", "cli".to_owned()),
                ("refresh_token", token),
            ];
            form.extend(resources.into_iter().map(|r| ("resource", r)));
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.token(&form).await
        }
    };
    // The other resource of the grant: allowed (the refresh token keeps the whole grant).
    let to_mcp = refresh_with(refresh.clone(), vec![mcp.clone()]).await;
    assert_eq!(to_mcp.status, StatusCode::OK, "{}", to_mcp.body);
    assert_eq!(claims(&to_mcp.str("access_token"))["aud"], mcp.as_str());
    assert!(to_mcp.body["expires_in"].as_u64().unwrap() <= 600);
    refresh = to_mcp.str("refresh_token");
    // No resource: the whole grant, both audiences.
    let both = refresh_with(refresh.clone(), vec![]).await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    assert_eq!(
        claims(&both.str("access_token"))["aud"],
        json!([mcp, REPORTS])
    );
    refresh = both.str("refresh_token");
    // Wider than the grant: the server's default audience, or a known resource not granted.
    for wider in [vec![h.base.clone()], vec![mcp.clone(), h.base.clone()]] {
        refresh_with(refresh.clone(), wider)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_target");
    }
    // The refusal changed nothing: the refresh token still works.
    let still = refresh_with(refresh.clone(), vec![REPORTS.to_owned()]).await;
    assert_eq!(still.status, StatusCode::OK, "{}", still.body);
}

#[tokio::test]
async fn resource_server_configuration_mistakes_are_errors() {
    for bad in [
        ResourceServer::new("not a uri"),
        ResourceServer::new("https://a.example/#x"),
        ResourceServer::new("https://a.example").scopes(["two words"]),
    ] {
        let built = AuthorizationServer::builder()
            .issuer("https://as.example")
            .store(MemoryStore::new())
            .resource_server(bad)
            .build()
            .await;
        assert!(built.is_err());
    }
    let twice = AuthorizationServer::builder()
        .issuer("https://as.example")
        .store(MemoryStore::new())
        .resource_server(ResourceServer::new("https://a.example"))
        .resource_server(ResourceServer::new("https://a.example"))
        .build()
        .await;
    assert!(twice.err().is_some_and(|e| e.to_string().contains("twice")));

    // An authenticator for a resource the server does not know would accept nothing it issues.
    let server = AuthorizationServer::builder()
        .issuer("https://as.example")
        .store(MemoryStore::new())
        .resource_server(ResourceServer::new("https://a.example/mcp"))
        .build()
        .await
        .unwrap();
    let unknown = server.resource_authenticator(ProtectedResource::new("https://b.example/mcp"));
    assert!(
        unknown
            .err()
            .is_some_and(|e| e.to_string().contains("resource_server"))
    );
    let known = server
        .resource_authenticator(ProtectedResource::new("https://a.example/mcp"))
        .unwrap();
    assert_eq!(
        known.resource_metadata_url(),
        Some("https://a.example/.well-known/oauth-protected-resource/mcp")
    );
    let (_, document) = known.resource_metadata().unwrap();
    let document: Value = serde_json::from_str(document).unwrap();
    assert_eq!(
        document["authorization_servers"],
        json!(["https://as.example"])
    );
}

// ---------------------------------------------------------------------------------------------
// Custom claims
// ---------------------------------------------------------------------------------------------

/// Adds roles and a tenant, tries to overwrite every registered claim, and fails for the client
/// `broken`. Records the contexts it saw.
#[derive(Clone, Default)]
struct Roles(Arc<Mutex<Vec<ClaimsContext>>>);

impl ClaimsHook for Roles {
    fn claims<'a>(
        &'a self,
        context: &'a ClaimsContext,
    ) -> HookFuture<'a, Result<serde_json::Map<String, Value>, ClaimsError>> {
        self.0.lock().unwrap().push(context.clone());
        Box::pin(async move {
            if context.client_id == "broken" {
                return Err(ClaimsError::new("the directory is down"));
            }
            let mut claims = serde_json::Map::new();
            for name in PROTECTED_CLAIMS {
                claims.insert(name.into(), json!("forged"));
            }
            claims.insert("roles".into(), json!(["admin", "auditor"]));
            claims.insert("tenant".into(), json!(context.subject.clone()));
            Ok(claims)
        })
    }
}

#[tokio::test]
async fn the_claims_hook_adds_claims_but_never_registered_ones() {
    let roles = Roles::default();
    let hook = roles.clone();
    let h = serve(move |b, _| b.custom_claims(hook)).await;
    register_public(&h, "cli").await;
    let (verifier, challenge) = pkce("claims");
    let code = h.code("cli", "com.example.cli:/done", &challenge).await;
    let issued = h
        .redeem("cli", &code, &verifier, "com.example.cli:/done")
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let access = issued.str("access_token");
    let token = claims(&access);
    assert_eq!(token["roles"], json!(["admin", "auditor"]));
    assert_eq!(token["tenant"], "alice");
    for name in PROTECTED_CLAIMS {
        assert_ne!(token[name], "forged", "{name} was overwritten: {token}");
    }
    assert_eq!(token["sub"], "alice");
    assert_eq!(token["client_id"], "cli");
    // The token still verifies with the server's authenticator (aud, exp, iss untouched).
    assert_eq!(h.me(&access).await, StatusCode::OK);
    {
        let seen = roles.0.lock().unwrap();
        let context = seen.last().unwrap();
        assert_eq!(context.grant_type.as_str(), "authorization_code");
        assert_eq!(context.subject, "alice");
        assert_eq!(context.scopes, ["read", "write"]);
    }

    // A refresh asks the hook again.
    let refreshed = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cli"),
            ("refresh_token", &issued.str("refresh_token")),
        ])
        .await;
    assert_eq!(
        claims(&refreshed.str("access_token"))["roles"],
        json!(["admin", "auditor"])
    );
    assert_eq!(
        roles.0.lock().unwrap().last().unwrap().grant_type.as_str(),
        "refresh_token"
    );

    // A failing hook: a JSON server_error (503, not a 500), and no token stored.
    let broken = h
        .admin_post(
            "/clients",
            json!({"name": "Broken", "client_id": "broken", "scopes": ["read"]}),
        )
        .await;
    let secret = broken.str("client_secret");
    let refused = h
        .post(
            "token",
            Some(("broken", &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "server_error");
    assert!(
        !refused.body.to_string().contains("directory"),
        "{}",
        refused.body
    );
    let tokens = h.server.store().client_tokens("broken", 0).await.unwrap();
    assert!(tokens.is_empty(), "{tokens:?}");
}
