//! The refresh-token grace window on every store (MemoryStore, SqliteStore on a file,
//! PostgresStore when `TOWER_OAUTH2_TEST_POSTGRES_URL` is set), over a real HTTP server: a
//! retry within the window gets the very same answer; after the window, after the new token was
//! used, or from another client, reuse detection applies; fifty concurrent redemptions all get
//! one answer and one token pair exists.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use tower_oauth2::VerifiedToken;
use tower_oauth2::server::store::{MemoryStore, Store, TokenKind, TokenState};
use tower_oauth2::server::{AuthorizationServer, ClientRegistration, ClientSecret};

mod oauth_http;
use oauth_http::{Passwords, Reply, form, reply};

const SECRET: &str = "app-secret-0123456789-0123456789-abcdef";
const OTHER_SECRET: &str = "other-secret-0123456789-0123456789-abcd";

struct Harness {
    base: String,
    server: AuthorizationServer,
    http: reqwest::Client,
}

async fn serve(store: Arc<dyn Store>, grace: Option<Duration>) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut builder = AuthorizationServer::builder()
        .issuer(base.clone())
        .shared_store(store)
        .password_verifier(Passwords);
    if let Some(grace) = grace {
        builder = builder.refresh_token_grace(grace);
    }
    let server = builder.build().await.unwrap();
    for (id, secret) in [("app", SECRET), ("other", OTHER_SECRET)] {
        // Registered by the first server on this store.
        if server.store().client(id).await.unwrap().is_some() {
            continue;
        }
        let mut registration = ClientRegistration::new(id);
        registration.client_id = Some(id.into());
        registration.grant_types = Some(vec!["password".into(), "refresh_token".into()]);
        registration.scopes = vec!["read".into()];
        registration.secret = Some(ClientSecret::from_value(secret).unwrap());
        server.register_client(registration).await.unwrap();
    }
    let api = Router::new()
        .route("/me", get(|_: VerifiedToken| async { "ok" }))
        .route_layer(server.authenticator().layer());
    let app = Router::new().nest("/oauth2", server.router()).merge(api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        base,
        server,
        http: reqwest::Client::new(),
    }
}

impl Harness {
    async fn token(&self, client: (&str, &str), pairs: &[(&str, &str)]) -> Reply {
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .basic_auth(client.0, Some(client.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        reply(response).await
    }

    async fn login(&self) -> Reply {
        let reply = self
            .token(
                ("app", SECRET),
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", "wonderland"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply
    }

    async fn refresh(&self, client: (&str, &str), token: &str) -> Reply {
        self.token(
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await
    }

    async fn me(&self, token: &str) -> StatusCode {
        self.http
            .get(format!("{}/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Active refresh tokens of `app`.
    async fn active_refresh_tokens(&self) -> usize {
        self.server
            .store()
            .client_tokens("app", 0)
            .await
            .unwrap()
            .iter()
            .filter(|t| t.kind == TokenKind::Refresh && t.state == TokenState::Active)
            .count()
    }
}

/// Every scenario, on one store.
async fn scenarios(store: Arc<dyn Store>, label: &str) {
    let h = serve(Arc::clone(&store), Some(Duration::from_secs(30))).await;

    // A retry within the window: the very same answer, nothing revoked.
    let login = h.login().await;
    let old = login.str("refresh_token");
    let first = h.refresh(("app", SECRET), &old).await;
    assert_eq!(first.status, StatusCode::OK, "{label}: {}", first.body);
    let retry = h.refresh(("app", SECRET), &old).await;
    assert_eq!(retry.status, StatusCode::OK, "{label}: {}", retry.body);
    assert_eq!(
        retry.str("access_token"),
        first.str("access_token"),
        "{label}"
    );
    assert_eq!(
        retry.str("refresh_token"),
        first.str("refresh_token"),
        "{label}"
    );
    assert!(retry.body["expires_in"].as_u64() <= first.body["expires_in"].as_u64());
    assert_eq!(
        h.me(&first.str("access_token")).await,
        StatusCode::OK,
        "{label}"
    );
    assert_eq!(
        h.active_refresh_tokens().await,
        1,
        "{label}: one pair exists"
    );

    // From another client: refused, and nothing revoked (as without the window).
    let stolen = h.refresh(("other", OTHER_SECRET), &old).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST, "{label}");
    assert_eq!(stolen.body["error"], "invalid_grant");
    assert_eq!(
        h.me(&first.str("access_token")).await,
        StatusCode::OK,
        "{label}"
    );

    // Once the new refresh token is used, the old one coming back is a replay: the family goes.
    let second = h
        .refresh(("app", SECRET), &first.str("refresh_token"))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{label}: {}", second.body);
    let replay = h.refresh(("app", SECRET), &old).await;
    assert_eq!(
        replay.status,
        StatusCode::BAD_REQUEST,
        "{label}: {}",
        replay.body
    );
    assert_eq!(replay.body["error"], "invalid_grant");
    assert_eq!(
        h.me(&second.str("access_token")).await,
        StatusCode::UNAUTHORIZED,
        "{label}"
    );
    assert_eq!(h.active_refresh_tokens().await, 0, "{label}");

    // Fifty concurrent redemptions: every one gets the winner's answer; one pair exists.
    let login = h.login().await;
    let presented = login.str("refresh_token");
    let h = Arc::new(h);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (h, presented) = (Arc::clone(&h), presented.clone());
            tokio::spawn(async move { h.refresh(("app", SECRET), &presented).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{label}: {}", reply.body);
        answers.push((reply.str("access_token"), reply.str("refresh_token")));
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "{label}: fifty redemptions, one answer");
    assert_eq!(
        h.active_refresh_tokens().await,
        1,
        "{label}: one pair exists"
    );
    assert_eq!(h.me(&answers[0].0).await, StatusCode::OK, "{label}");
    drop(h);

    // Outside the window: reuse detection, as without it.
    let short = serve(Arc::clone(&store), Some(Duration::from_secs(1))).await;
    let login = short.login().await;
    let old = login.str("refresh_token");
    let first = short.refresh(("app", SECRET), &old).await;
    assert_eq!(first.status, StatusCode::OK, "{label}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = short.refresh(("app", SECRET), &old).await;
    assert_eq!(
        late.status,
        StatusCode::BAD_REQUEST,
        "{label}: {}",
        late.body
    );
    assert_eq!(
        short.me(&first.str("access_token")).await,
        StatusCode::UNAUTHORIZED,
        "{label}"
    );

    // Without the window (the default): a retry is reuse.
    let off = serve(store, None).await;
    let login = off.login().await;
    let old = login.str("refresh_token");
    let first = off.refresh(("app", SECRET), &old).await;
    assert_eq!(first.status, StatusCode::OK, "{label}");
    let retry = off.refresh(("app", SECRET), &old).await;
    assert_eq!(
        retry.status,
        StatusCode::BAD_REQUEST,
        "{label}: {}",
        retry.body
    );
    assert_eq!(
        off.me(&first.str("access_token")).await,
        StatusCode::UNAUTHORIZED,
        "{label}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grace_window_on_the_memory_store() {
    scenarios(Arc::new(MemoryStore::new()), "memory").await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grace_window_on_an_sqlite_file() {
    use tower_oauth2::server::store::SqliteStore;
    let dir = std::env::temp_dir().join(format!(
        "tower-oauth2-grace-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("grace.db")).await.unwrap();
    scenarios(Arc::new(store), "sqlite").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grace_window_on_postgres() {
    use sqlx::Connection;
    use tower_oauth2::server::store::PostgresStore;
    let url = match std::env::var("TOWER_OAUTH2_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            println!("skipped: TOWER_OAUTH2_TEST_POSTGRES_URL is not set");
            return;
        }
    };
    let schema = format!(
        "grace_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let store = PostgresStore::connect_with_schema(&url, &schema)
        .await
        .unwrap();
    let outcome = tokio::spawn(scenarios(Arc::new(store), "postgres")).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
