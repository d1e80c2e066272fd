//! The persistent audit log through the server, over real HTTP on an SQLite file: token
//! responses, refusals, failed client authentication, revocations and admin actions (with the
//! administrator's subject) are appended; the admin API lists them newest first with filters
//! and cursor pages, refuses bad parameters with 400, shows each client's activity, and no
//! secret or token value is ever stored.
#![cfg(feature = "sqlite")]

use std::net::SocketAddr;

use axum::Router;
use serde_json::Value;
use tower_oauth2::RequireScope;
use tower_oauth2::server::store::{AuditQuery, SqliteStore};
use tower_oauth2::server::{AuthorizationServer, ClientRegistration, ClientSecret};

const ADMIN: &str = "audit-admin";
const ADMIN_SECRET: &str = "audit-admin-secret-0123456789abcdefghijklmnopqrstuvwxyz";
const APP: &str = "audit-app";
const APP_SECRET: &str = "audit-app-secret-0123456789abcdefghijklmnopqrstuvwxyz";

struct Fixture {
    addr: SocketAddr,
    server: AuthorizationServer,
    http: reqwest::Client,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn register(server: &AuthorizationServer, id: &str, secret: &str, scopes: &[&str]) {
    let mut registration = ClientRegistration::new(format!("{id} app"));
    registration.client_id = Some(id.into());
    registration.scopes = scopes.iter().map(|s| s.to_string()).collect();
    registration.grant_types = Some(vec!["client_credentials".into()]);
    registration.secret = Some(ClientSecret::from_value(secret).expect("long secret"));
    server
        .register_client(registration)
        .await
        .expect("registered");
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "tower-oauth2-audit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = SqliteStore::open(dir.join("audit.db"))
        .await
        .expect("store");
    let server = AuthorizationServer::builder()
        .issuer("http://127.0.0.1")
        .store(store)
        .build()
        .await
        .expect("server");
    register(&server, ADMIN, ADMIN_SECRET, &["admin"]).await;
    register(&server, APP, APP_SECRET, &["read", "write"]).await;
    let admin = server
        .admin_router()
        .layer(RequireScope::all(["admin"]))
        .layer(server.authenticator().layer());
    let app = Router::new()
        .nest("/oauth2", server.router())
        .nest("/admin", admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture {
        addr,
        server,
        http: reqwest::Client::new(),
        _dir: TempDir(dir),
    }
}

impl Fixture {
    async fn token(&self, id: &str, secret: &str, scope: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("http://{}/oauth2/token", self.addr))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&scope={scope}"))
            .send()
            .await
            .expect("token endpoint");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).expect("JSON"))
    }

    async fn admin_token(&self) -> String {
        let (status, body) = self.token(ADMIN, ADMIN_SECRET, "admin").await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let token = self.admin_token().await;
        let response = self
            .http
            .request(method, format!("http://{}/admin{path}", self.addr))
            .bearer_auth(token)
            .send()
            .await
            .expect("admin API");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every event of the log through the admin API, following `next_cursor`.
    async fn all_events(&self, filter: &str, limit: usize) -> Vec<Value> {
        self.server.flush_audit().await;
        let mut events = Vec::new();
        let mut cursor: Option<u64> = None;
        loop {
            let mut path = format!("/audit?limit={limit}{filter}");
            if let Some(c) = cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.admin(reqwest::Method::GET, &path).await;
            assert_eq!(status, 200, "{page}");
            let batch = page["events"].as_array().expect("events").clone();
            assert!(batch.len() <= limit);
            events.extend(batch);
            match page["next_cursor"].as_u64() {
                Some(c) => cursor = Some(c),
                None => return events,
            }
        }
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect()
}

#[tokio::test]
async fn the_server_appends_its_audit_events_and_the_admin_api_lists_them() {
    let f = fixture().await;
    // A token response, a refusal (scope not allowed), a failed authentication.
    let (status, issued) = f.token(APP, APP_SECRET, "read").await;
    assert_eq!(status, 200, "{issued}");
    let access = issued["access_token"].as_str().expect("token").to_owned();
    let jti = f
        .server
        .authenticator()
        .verify(&access)
        .expect("valid")
        .jwt_id()
        .expect("jti")
        .to_owned();
    let (status, _) = f.token(APP, APP_SECRET, "delete").await;
    assert_eq!(status, 400);
    let (status, _) = f.token(APP, &"wrong-secret-".repeat(4), "read").await;
    assert_eq!(status, 401);
    // Admin actions: revoke the token by id, rotate the secret.
    let (status, body) = f
        .admin(
            reqwest::Method::DELETE,
            &format!("/clients/{APP}/tokens/{jti}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, rotated) = f
        .admin(reqwest::Method::POST, &format!("/clients/{APP}/secret"))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    // The app's events, newest first, across pages of 2.
    let app_events = f.all_events(&format!("&client_id={APP}"), 2).await;
    assert_eq!(
        kinds(&app_events),
        vec![
            "admin_action",
            "admin_action",
            "token_revoked",
            "client_auth_refused",
            "token_refused",
            "token_issued",
            "admin_action",
        ],
        "{app_events:#?}"
    );
    let seqs: Vec<u64> = app_events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let issued_event = &app_events[5];
    assert_eq!(issued_event["detail"]["jti"], jti.as_str());
    assert_eq!(issued_event["detail"]["grant"], "client_credentials");
    assert_eq!(issued_event["detail"]["scope"], "read");
    assert_eq!(issued_event["actor"], APP, "the token's subject");
    assert_eq!(app_events[3]["detail"]["reason"], "bad credentials");
    assert_eq!(app_events[4]["detail"]["error"], "invalid_scope");
    // Admin actions carry the administrator's subject (its token's `sub`).
    assert_eq!(app_events[0]["detail"]["action"], "rotate_secret");
    assert_eq!(app_events[0]["actor"], ADMIN);
    assert_eq!(app_events[1]["detail"]["action"], "revoke_token");
    assert_eq!(app_events[2]["actor"], ADMIN);
    assert_eq!(app_events[2]["detail"]["id"], jti.as_str());
    // Registration through the server's API: no administrator.
    assert_eq!(app_events[6]["detail"]["action"], "register");
    assert_eq!(app_events[6]["actor"], Value::Null);

    // The kind filter, and both filters.
    let issued_only = f.all_events("&kind=token_issued", 100).await;
    assert!(issued_only.iter().all(|e| e["kind"] == "token_issued"));
    let admin_tokens = issued_only
        .iter()
        .filter(|e| e["client_id"] == ADMIN)
        .count();
    assert!(admin_tokens >= 3, "the admin's own tokens are in the log");
    let app_issued = f
        .all_events(&format!("&kind=token_issued&client_id={APP}"), 100)
        .await;
    assert_eq!(app_issued.len(), 1);
    // A time range that ends before everything: nothing.
    assert!(f.all_events("&until=1000", 100).await.is_empty());

    // Per-client activity in the list.
    let (status, list) = f.admin(reqwest::Method::GET, "/clients").await;
    assert_eq!(status, 200);
    let app = list["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["client_id"] == APP)
        .expect("the app");
    assert_eq!(app["tokens_issued_24h"], 1);
    assert_eq!(
        app["last_token_issued_at"], issued_event["at"],
        "the time of its last token"
    );

    // No secret and no token value anywhere in the stored log.
    f.server.flush_audit().await;
    let stored = f
        .server
        .store()
        .audit_events(AuditQuery::new(10_000))
        .await
        .expect("read the log");
    let text = format!("{stored:?}");
    for secret in [
        APP_SECRET,
        ADMIN_SECRET,
        new_secret.as_str(),
        access.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret or token value was stored");
    }
    assert_eq!(f.server.audit_events_lost(), 0);
}

#[tokio::test]
async fn bad_audit_queries_are_400() {
    let f = fixture().await;
    for query in [
        "kind=bogus",
        "limit=0",
        "limit=501",
        "limit=ten",
        "since=yesterday",
        "until=-1",
        "cursor=abc",
        "kind=token_issued&kind=token_refused",
    ] {
        let (status, body) = f
            .admin(reqwest::Method::GET, &format!("/audit?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body.to_string().len() > 2,
            "{query}: the answer says what is wrong: {body}"
        );
    }
    let (status, body) = f.admin(reqwest::Method::GET, "/audit?kind=bogus").await;
    assert_eq!(status, 400);
    assert!(
        body.to_string().contains("token_issued"),
        "the error lists the kinds: {body}"
    );
}

#[tokio::test]
async fn a_retention_of_no_events_is_a_configuration_error() {
    let error = AuthorizationServer::builder()
        .issuer("http://127.0.0.1")
        .store(tower_oauth2::server::store::MemoryStore::new())
        .audit_retention(std::time::Duration::from_secs(60), 0)
        .build()
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("max_events"), "{error}");
}
