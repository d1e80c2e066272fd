//! Several authorization-server instances on one PostgreSQL database, as several processes of
//! one deployment would run: two servers, A and B, each with its own `PostgresStore` pool on
//! the same schema, each mounted in its own axum router and driven in process.
//!
//! - tokens issued by one instance validate on the other (the signing key lives in the store);
//! - a revocation on one instance reaches the other's authenticator within the sync interval;
//! - concurrent redemptions of one refresh token across both instances: exactly one wins;
//! - a signing-key rotation on one instance reaches the other, and old tokens keep validating;
//! - failed client authentications are counted across instances: spread over A and B they
//!   block the client after the configured maximum in total (plus the documented slack of
//!   one per other instance), the block reaches an instance that saw no failure within the
//!   sync interval, and the window resets;
//! - a database outage (the connection runs through a TCP proxy the test switches off): the
//!   endpoints answer 503 `temporarily_unavailable`, the resource side keeps validating with
//!   the last synced keys and denylist, and the servers recover when the database is back.
//!
//! The database is the one `TOWER_OAUTH2_TEST_POSTGRES_URL` names (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); without it every test prints
//! `skipped: TOWER_OAUTH2_TEST_POSTGRES_URL is not set` and passes. Each test works in a fresh
//! schema of its own, dropped when the test ends (even when it fails).
#![cfg(feature = "postgres")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Barrier;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;
use tower_oauth2::server::store::PostgresStore;
use tower_oauth2::server::{
    AuthorizationServer, ClientRegistration, ClientSecret, HookFuture, PasswordVerifier, SigningKey,
};
use tower_oauth2::{Algorithm, AuthErrorKind, VerifiedToken};

const URL_VAR: &str = "TOWER_OAUTH2_TEST_POSTGRES_URL";
const ISSUER: &str = "https://auth.test";
const FORM: &str = "application/x-www-form-urlencoded";

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const SUBJECT: &str = "user-alice";

/// The default sync interval: the longest another instance's revocation or rotation may go
/// unnoticed.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// What the bound allows beyond the sync interval: the sync query itself and the scheduling of
/// a loaded test machine. Not a performance margin.
const SLACK: Duration = Duration::from_millis(300);
/// How often the tests look for a change another instance made.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// Database fixtures
// ---------------------------------------------------------------------------------------------

/// The test database, or `None` (and the skip notice) when none is configured.
fn database_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped: {URL_VAR} is not set");
            None
        }
    }
}

/// A schema of this test's own; dropped (with everything in it) when the guard is dropped,
/// whether the test passed or panicked. Declare it before the servers so that it is dropped
/// after them.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, tag: &str) -> Schema {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos();
        let name = format!(
            "tower_oauth2_inst_{tag}_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000_000
        );
        assert!(
            name.len() <= 63,
            "PostgreSQL identifiers are at most 63 bytes: {name}"
        );
        Schema {
            url: url.to_owned(),
            name,
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // An async drop is not possible: drop the schema from a thread with a runtime of its own
        // (the test's runtime may be shutting down or blocked in this very drop).
        let url = self.url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let statement = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                let result = tokio::time::timeout(
                    Duration::from_secs(30),
                    sqlx::query(&statement).execute(&mut connection),
                )
                .await;
                let _ = connection.close().await;
                match result {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!(
                "could not drop test schema {} (drop it by hand): {error}",
                self.name
            ),
            Err(_) => eprintln!("could not drop test schema {}", self.name),
        }
    }
}

/// Where a `postgres://` URL points: its `host:port`, and the URL rewritten to go through
/// `proxy` instead.
fn split_url(url: &str, proxy: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (format!("{user}@"), hostport),
        None => (String::new(), authority),
    };
    let upstream = if hostport.starts_with('[') {
        // [v6]:port or [v6]
        match hostport.rsplit_once("]:") {
            Some(_) => hostport.to_owned(),
            None => format!("{hostport}:5432"),
        }
    } else if hostport.contains(':') {
        hostport.to_owned()
    } else {
        let host = if hostport.is_empty() {
            "localhost"
        } else {
            hostport
        };
        format!("{host}:5432")
    };
    (upstream, format!("{scheme}://{userinfo}{proxy}{tail}"))
}

/// A TCP proxy in front of the database that can be switched off — its listening socket closed
/// and every live connection cut, as when the database host goes away — and on again at the
/// same address.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = Proxy::listen("127.0.0.1:0".parse().expect("an address"));
        let addr = listener.local_addr().expect("the proxy's address");
        let mut proxy = Proxy {
            addr,
            upstream,
            accept: None,
            connections: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn listen(addr: SocketAddr) -> TcpListener {
        let socket = TcpSocket::new_v4().expect("a socket");
        // Rebinding the same port right after closing it.
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(addr).expect("the proxy's port is free");
        socket.listen(128).expect("listen")
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let connections = Arc::clone(&self.connections);
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let upstream = upstream.clone();
                connections
                    .lock()
                    .expect("connections lock")
                    .spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                            let _ = inbound.set_nodelay(true);
                            let _ = outbound.set_nodelay(true);
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
            }
        }));
    }

    /// Closes the listening socket (new connections are refused) and cuts every connection.
    async fn down(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // Once the task is gone, so is the listener it owned.
            let _ = accept.await;
        }
        let mut live = std::mem::take(&mut *self.connections.lock().expect("connections lock"));
        live.abort_all();
        while live.join_next().await.is_some() {}
    }

    /// Listens again at the same address.
    fn up(&mut self) {
        assert!(self.accept.is_none(), "the proxy is already up");
        let listener = Proxy::listen(self.addr);
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        if let Ok(mut live) = self.connections.lock() {
            live.abort_all();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server fixtures
// ---------------------------------------------------------------------------------------------

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

/// One instance of the deployment: a server on its own pool, and the app it is mounted in.
struct Instance {
    server: AuthorizationServer,
    app: Router,
}

/// Connects a pool of its own to `schema` (as a separate process would) and builds a server
/// with the default sync interval on it.
async fn instance(url: &str, schema: &str) -> Instance {
    let store = PostgresStore::connect_with_schema(url, schema)
        .await
        .unwrap_or_else(|e| panic!("PostgresStore::connect_with_schema: {e}"));
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(store)
        .password_verifier(Users)
        .build()
        .await
        .unwrap_or_else(|e| panic!("AuthorizationServer::build: {e}"));
    let app = app(&server);
    Instance { server, app }
}

/// Like [`instance`], with `max` failed client authentications allowed per `window`.
async fn limited_instance(url: &str, schema: &str, max: u32, window: Duration) -> Instance {
    let store = PostgresStore::connect_with_schema(url, schema)
        .await
        .unwrap_or_else(|e| panic!("PostgresStore::connect_with_schema: {e}"));
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(store)
        .client_auth_rate_limit(max, window)
        .build()
        .await
        .unwrap_or_else(|e| panic!("AuthorizationServer::build: {e}"));
    let app = app(&server);
    Instance { server, app }
}

/// The server's endpoints, its admin API, and an API behind its authenticator that answers
/// with the token's subject.
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

/// Registers `id` (scopes `read write`, a fixed secret) with the given grant types.
async fn register(server: &AuthorizationServer, id: &str, grant_types: &[&str]) -> Client {
    let secret = format!("{id}-secret-0123456789abcdefghijklmnopqrstuvwxyz");
    let mut registration = ClientRegistration::new(format!("{id} app"));
    registration.client_id = Some(id.to_owned());
    registration.scopes = vec!["read".into(), "write".into()];
    registration.grant_types = Some(grant_types.iter().map(|&g| g.to_owned()).collect());
    registration.secret = Some(ClientSecret::from_value(secret.clone()).expect("long secret"));
    let (record, _) = server
        .register_client(registration)
        .await
        .unwrap_or_else(|e| panic!("register {id}: {e}"));
    Client {
        id: record.client_id,
        secret,
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    fn field(&self, name: &str) -> &str {
        self.body
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a readable body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// `client_secret_basic` (RFC 6749 §2.3.1).
fn basic(client: &Client) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(&client.id), encode(&client.secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// POSTs a client-authenticated form to one of the OAuth endpoints (`/oauth2/{endpoint}`).
async fn post_form(
    app: &Router,
    endpoint: &str,
    client: &Client,
    params: &[(&str, &str)],
) -> Reply {
    let request = Request::post(format!("/oauth2/{endpoint}"))
        .header(header::CONTENT_TYPE, FORM)
        .header(header::AUTHORIZATION, basic(client))
        .body(Body::from(form(params)))
        .expect("a request");
    send(app, request).await
}

async fn client_credentials(app: &Router, client: &Client) -> Reply {
    post_form(
        app,
        "token",
        client,
        &[("grant_type", "client_credentials")],
    )
    .await
}

async fn password_login(app: &Router, client: &Client) -> Reply {
    post_form(
        app,
        "token",
        client,
        &[
            ("grant_type", "password"),
            ("username", USER),
            ("password", PASSWORD),
        ],
    )
    .await
}

async fn refresh(app: &Router, client: &Client, refresh_token: &str) -> Reply {
    post_form(
        app,
        "token",
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn revoke(app: &Router, client: &Client, token: &str, hint: &str) -> Reply {
    post_form(
        app,
        "revoke",
        client,
        &[("token", token), ("token_type_hint", hint)],
    )
    .await
}

/// A fresh access token for `client` (client credentials).
async fn access_token(app: &Router, client: &Client) -> String {
    let reply = client_credentials(app, client).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.field("access_token").to_owned()
}

async fn get_protected(app: &Router, token: &str) -> Reply {
    let request = Request::get("/protected")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("an API request");
    send(app, request).await
}

async fn get_path(app: &Router, path: &str) -> Reply {
    send(
        app,
        Request::get(path).body(Body::empty()).expect("a request"),
    )
    .await
}

/// A reply and how long it took.
async fn timed(request: impl Future<Output = Reply>) -> (Reply, Duration) {
    let start = Instant::now();
    let reply = request.await;
    (reply, start.elapsed())
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().expect("a JWT");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url header"))
            .expect("a JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}

/// Asserts that `server`'s authenticator and its app's layer accept `token`.
async fn assert_accepted(instance: &Instance, name: &str, token: &str) {
    let verified = instance
        .server
        .authenticator()
        .verify(token)
        .unwrap_or_else(|e| panic!("{name}'s authenticator refused the token: {e}"));
    assert!(verified.subject().is_some(), "{name}: a subject");
    let reply = get_protected(&instance.app, token).await;
    assert_eq!(reply.status, StatusCode::OK, "{name}'s layer: {reply:?}");
}

/// Asserts that `server`'s authenticator and its app's layer refuse `token` as revoked.
async fn assert_revoked(instance: &Instance, name: &str, token: &str) {
    match instance.server.authenticator().verify(token) {
        Ok(_) => panic!("{name}'s authenticator accepted a revoked token"),
        Err(error) => assert_eq!(error.kind(), AuthErrorKind::Revoked, "{name}: {error}"),
    }
    let reply = get_protected(&instance.app, token).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{name}'s layer: {reply:?}"
    );
    let challenge = reply
        .headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(challenge.contains("invalid_token"), "{name}: {challenge}");
}

/// Polls `done` every [`POLL`] until it holds or `limit` has passed since `since`; returns how
/// long after `since` it was seen to hold, or `None`.
async fn time_until(
    since: Instant,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    loop {
        if done() {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Two instances started at once on an empty schema agree on one signing key, and a token
/// either one issues validates on the other — through its authenticator and its layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_issued_by_one_instance_validate_on_the_other() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "share");
    // Started concurrently, like two processes of a fresh deployment: the first creates the
    // signing key, the other must adopt it.
    let (a, b) = tokio::join!(instance(&url, &schema.name), instance(&url, &schema.name));
    assert_eq!(
        a.server.signing_key_id(),
        b.server.signing_key_id(),
        "both instances sign with the key kept in the store"
    );

    let client = register(&a.server, "svc-share", &["client_credentials"]).await;

    let from_a = access_token(&a.app, &client).await;
    assert_eq!(kid_of(&from_a), a.server.signing_key_id());
    let verified = b
        .server
        .authenticator()
        .verify(&from_a)
        .expect("B validates A's token");
    assert_eq!(verified.subject(), Some("svc-share"));
    assert_eq!(verified.client_id(), Some("svc-share"));
    assert_eq!(verified.issuer(), Some(ISSUER));
    let reply = get_protected(&b.app, &from_a).await;
    assert_eq!(reply.status, StatusCode::OK, "B's layer: {reply:?}");
    assert_eq!(reply.body, json!("svc-share"));

    // And the other way round, with the client B sees in the shared store.
    let from_b = access_token(&b.app, &client).await;
    assert_accepted(&a, "A", &from_b).await;
    assert_accepted(&b, "B", &from_b).await;

    // Both publish the same JWKS.
    let jwks_a = get_path(&a.app, "/oauth2/jwks.json").await;
    let jwks_b = get_path(&b.app, "/oauth2/jwks.json").await;
    assert_eq!(jwks_a.status, StatusCode::OK);
    assert_eq!(jwks_a.body, jwks_b.body);
}

/// An access token revoked on B (RFC 7009) is refused by A's authenticator within the sync
/// interval (1 s by default), and by B's own at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_instance_reaches_the_other_within_the_sync_interval() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "revoke");
    let a = instance(&url, &schema.name).await;
    let b = instance(&url, &schema.name).await;
    let client = register(&a.server, "svc-revoke", &["client_credentials"]).await;

    let token = access_token(&a.app, &client).await;
    let bystander = access_token(&a.app, &client).await;
    assert_accepted(&a, "A", &token).await;
    assert_accepted(&b, "B", &token).await;

    let reply = revoke(&b.app, &client, &token, "access_token").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let revoked_at = Instant::now();
    // B revoked it itself: its denylist has it at once.
    assert_revoked(&b, "B", &token).await;

    let authenticator = a.server.authenticator();
    let delay = time_until(
        revoked_at,
        SYNC_INTERVAL + Duration::from_millis(500),
        || {
            matches!(
                authenticator.verify(&token),
                Err(ref e) if e.kind() == AuthErrorKind::Revoked
            )
        },
    )
    .await;
    let delay = delay.unwrap_or_else(|| {
        panic!(
            "A still accepts the token {:?} after B revoked it",
            revoked_at.elapsed()
        )
    });
    println!("A refused the token revoked on B after {delay:?}");
    assert!(
        delay <= SYNC_INTERVAL + SLACK,
        "A saw the revocation after {delay:?}, beyond the {SYNC_INTERVAL:?} sync interval"
    );
    assert_revoked(&a, "A", &token).await;

    // Only that token.
    assert_accepted(&a, "A", &bystander).await;
    assert_accepted(&b, "B", &bystander).await;
}

/// One refresh token redeemed 50 times at once, 25 times on each instance: exactly one
/// redemption gets new tokens, every other one `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refresh_across_instances_has_exactly_one_winner() {
    const CONTENDERS: usize = 50;
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "race");
    let a = instance(&url, &schema.name).await;
    let b = instance(&url, &schema.name).await;
    let client = register(&a.server, "app-race", &["password", "refresh_token"]).await;

    let login = password_login(&a.app, &client).await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    let refresh_token = login.field("refresh_token").to_owned();

    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let mut contenders = JoinSet::new();
    for i in 0..CONTENDERS {
        let app = if i % 2 == 0 {
            a.app.clone()
        } else {
            b.app.clone()
        };
        let (barrier, client, refresh_token) =
            (Arc::clone(&barrier), client.clone(), refresh_token.clone());
        contenders.spawn(async move {
            barrier.wait().await;
            (i % 2, refresh(&app, &client, &refresh_token).await)
        });
    }
    let mut winners = Vec::new();
    let mut losers = [0usize; 2];
    while let Some(joined) = contenders.join_next().await {
        let (side, reply) = joined.expect("a contender panicked");
        match reply.status {
            StatusCode::OK => winners.push((side, reply)),
            StatusCode::BAD_REQUEST => {
                assert_eq!(reply.error(), Some("invalid_grant"), "{reply:?}");
                losers[side] += 1;
            }
            _ => panic!("a redemption answered neither 200 nor 400: {reply:?}"),
        }
    }
    let sides: Vec<_> = winners.iter().map(|(side, _)| ["A", "B"][*side]).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one redemption wins; winners on {sides:?}"
    );
    println!(
        "winner on {}; invalid_grant: {} on A, {} on B",
        sides[0], losers[0], losers[1]
    );
    let (_, winner) = &winners[0];
    assert!(winner.body.get("access_token").is_some(), "{winner:?}");
    assert!(winner.body.get("refresh_token").is_some(), "{winner:?}");
    assert_ne!(winner.field("refresh_token"), refresh_token);
}

/// A rotation on A reaches B within the sync interval: B signs with the new key, and tokens
/// signed with the old key keep validating on both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_on_one_instance_reaches_the_other() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "rotate");
    let a = instance(&url, &schema.name).await;
    let b = instance(&url, &schema.name).await;
    let client = register(&a.server, "svc-rotate", &["client_credentials"]).await;

    let old_kid = a.server.signing_key_id();
    assert_eq!(b.server.signing_key_id(), old_kid);
    let before_from_a = access_token(&a.app, &client).await;
    let before_from_b = access_token(&b.app, &client).await;
    assert_eq!(kid_of(&before_from_b), old_kid);

    let key = SigningKey::generate(Algorithm::ES256).expect("a new key");
    let new_kid = key.kid().to_owned();
    assert_ne!(new_kid, old_kid);
    a.server
        .rotate_signing_key(key)
        .await
        .expect("rotation on A");
    let rotated_at = Instant::now();
    assert_eq!(
        a.server.signing_key_id(),
        new_kid,
        "A signs with the new key at once"
    );
    let from_a = access_token(&a.app, &client).await;
    assert_eq!(kid_of(&from_a), new_kid);

    let observed = time_until(
        rotated_at,
        SYNC_INTERVAL + Duration::from_millis(500),
        || b.server.signing_key_id() == new_kid,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "B still signs with {} {:?} after the rotation on A",
            b.server.signing_key_id(),
            rotated_at.elapsed()
        )
    });
    println!("B switched to the new key after {observed:?}");
    assert!(
        observed <= SYNC_INTERVAL + SLACK,
        "B picked up the rotation after {observed:?}, beyond the {SYNC_INTERVAL:?} sync interval"
    );
    let from_b = access_token(&b.app, &client).await;
    assert_eq!(
        kid_of(&from_b),
        new_kid,
        "B signs new tokens with the new key"
    );

    // Old and new tokens, from either instance, validate on both.
    for (what, token) in [
        ("A's token before the rotation", &before_from_a),
        ("B's token before the rotation", &before_from_b),
        ("A's token after the rotation", &from_a),
        ("B's token after the rotation", &from_b),
    ] {
        for (name, instance) in [("A", &a), ("B", &b)] {
            let verified = instance
                .server
                .authenticator()
                .verify(token)
                .unwrap_or_else(|e| panic!("{name} refused {what}: {e}"));
            assert_eq!(verified.key_id(), Some(kid_of(token).as_str()));
            let reply = get_protected(&instance.app, token).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{name}'s layer, {what}: {reply:?}"
            );
        }
    }

    // Both JWKS publish the retired key beside the new one.
    for (name, instance) in [("A", &a), ("B", &b)] {
        let jwks = get_path(&instance.app, "/oauth2/jwks.json").await;
        assert_eq!(jwks.status, StatusCode::OK);
        let kids: Vec<&str> = jwks.body["keys"]
            .as_array()
            .expect("a keys array")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert!(
            kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
            "{name}'s JWKS: {kids:?}"
        );
    }
}

/// The database goes away mid-run (its TCP connection runs through a proxy the test switches
/// off): the token, revocation and admin endpoints answer 503 `temporarily_unavailable` with
/// `Retry-After` — never a 500, never a panic — while the resource side keeps validating with
/// the keys and the denylist it last synced. When the database is back, tokens are issued
/// again within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_degrades_to_503_and_recovers() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "outage");
    let (upstream, _) = split_url(&url, "127.0.0.1:1".parse().expect("an address"));
    let mut proxy = Proxy::start(upstream).await;
    let (_, proxied_url) = split_url(&url, proxy.addr);
    let a = instance(&proxied_url, &schema.name).await;
    let b = instance(&proxied_url, &schema.name).await;
    let client = register(&a.server, "svc-outage", &["client_credentials"]).await;

    let kept = access_token(&a.app, &client).await;
    let from_b = access_token(&b.app, &client).await;
    let revoked = access_token(&a.app, &client).await;
    let reply = revoke(&b.app, &client, &revoked, "access_token").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // Wait for A to have synced the revocation before the database goes away.
    let authenticator = a.server.authenticator();
    time_until(Instant::now(), Duration::from_secs(5), || {
        authenticator.verify(&revoked).is_err()
    })
    .await
    .expect("A syncs the revocation");

    proxy.down().await;
    let down_at = Instant::now();

    // Every endpoint that needs the store, on both instances, at once (each may wait for the
    // pool's acquire timeout).
    let registration = json!({"name": "during the outage", "grant_types": ["client_credentials"]});
    let admin_register = Request::post("/admin/clients")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(registration.to_string()))
        .expect("an admin request");
    let (token_a, token_b, revoke_b, admin_list, admin_create) = tokio::join!(
        timed(client_credentials(&a.app, &client)),
        timed(client_credentials(&b.app, &client)),
        timed(revoke(&b.app, &client, &kept, "access_token")),
        timed(get_path(&a.app, "/admin/clients")),
        timed(send(&b.app, admin_register)),
    );
    for (what, (reply, took)) in [
        ("token on A", &token_a),
        ("token on B", &token_b),
        ("revoke on B", &revoke_b),
    ] {
        println!(
            "{what} with the database down: {} after {took:?}",
            reply.status
        );
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {reply:?}"
        );
        assert_eq!(
            reply.error(),
            Some("temporarily_unavailable"),
            "{what}: {reply:?}"
        );
        let retry_after = reply
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            retry_after.is_some_and(|s| s >= 1),
            "{what}: Retry-After in seconds: {:?}",
            reply.headers
        );
        assert_eq!(
            reply
                .headers
                .get(header::CACHE_CONTROL)
                .map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "{what}"
        );
    }
    for (what, (reply, took)) in [
        ("admin list on A", &admin_list),
        ("admin register on B", &admin_create),
    ] {
        println!(
            "{what} with the database down: {} after {took:?}",
            reply.status
        );
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {reply:?}"
        );
        assert_eq!(
            reply
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(
            reply.error(),
            Some("temporarily_unavailable"),
            "{what}: {reply:?}"
        );
        assert!(
            !reply.field("error_description").is_empty(),
            "{what}: a description"
        );
    }

    // The resource side does not need the database: signatures verify with the keys in
    // memory, and the denylist synced before the outage stays in force — also after the sync
    // loop has failed (the requests above took at least one sync interval).
    if down_at.elapsed() < SYNC_INTERVAL * 2 {
        tokio::time::sleep(SYNC_INTERVAL * 2 - down_at.elapsed()).await;
    }
    for (name, instance) in [("A", &a), ("B", &b)] {
        assert_accepted(instance, name, &kept).await;
        assert_accepted(instance, name, &from_b).await;
        assert_revoked(instance, name, &revoked).await;
    }
    let outage = down_at.elapsed();

    proxy.up();
    let up_at = Instant::now();
    let mut recovered = [None, None];
    let mut attempts = 0;
    while recovered.iter().any(Option::is_none) && up_at.elapsed() < Duration::from_secs(15) {
        for (i, instance) in [&a, &b].into_iter().enumerate() {
            if recovered[i].is_none() {
                attempts += 1;
                let reply = client_credentials(&instance.app, &client).await;
                match reply.status {
                    StatusCode::OK => recovered[i] = Some(up_at.elapsed()),
                    StatusCode::SERVICE_UNAVAILABLE => {}
                    _ => panic!("after the outage: {reply:?}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "database down for {outage:?}; tokens issued again after {:?} on A, {:?} on B \
         ({attempts} attempts)",
        recovered[0], recovered[1]
    );
    for (name, at) in ["A", "B"].into_iter().zip(recovered) {
        let at = at.unwrap_or_else(|| panic!("{name} still fails 15 s after the database is back"));
        assert!(
            at <= Duration::from_secs(10),
            "{name} recovered after {at:?}"
        );
    }

    // Everything works again: the admin API, revocation, and its sync to the other instance.
    let list = get_path(&a.app, "/admin/clients").await;
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    let reply = revoke(&b.app, &client, &kept, "access_token").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let authenticator = a.server.authenticator();
    time_until(Instant::now(), Duration::from_secs(5), || {
        authenticator.verify(&kept).is_err()
    })
    .await
    .expect("A syncs revocations again after the outage");
    assert_revoked(&a, "A", &kept).await;
}

/// The `Retry-After` of a 429, in seconds.
fn retry_after(reply: &Reply) -> u64 {
    reply
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After in seconds: {reply:?}"))
}

/// Asserts a 429 for too many failed client authentications, due within `window`.
fn assert_rate_limited(reply: &Reply, what: &str, window: Duration) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {reply:?}"
    );
    assert_eq!(reply.error(), Some("invalid_client"), "{what}: {reply:?}");
    let after = retry_after(reply);
    assert!(
        (1..=window.as_secs()).contains(&after),
        "{what}: Retry-After {after} s, the window is {window:?}"
    );
}

/// Failed client authentications are counted across instances (PostgreSQL shares the count):
/// wrong secrets sent alternately to A and B block the client after `MAX` failures in total,
/// with at most N − 1 = 1 more (the documented slack: the other instance learns of the block
/// at its next failure for the key or its next sync), where two instances counting apart
/// would allow 2 × `MAX`. Once blocked, the correct secret is refused on both; a block made
/// by failures on A alone reaches B within the sync interval (NOTIFY, usually at once); and
/// when the window ends the client authenticates again on both, and its count starts over.
/// Ended windows are purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_client_authentications_are_limited_across_instances() {
    const MAX: usize = 4;
    const INSTANCES: usize = 2;
    const WINDOW: Duration = Duration::from_secs(4);
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "limit");
    let a = limited_instance(&url, &schema.name, MAX as u32, WINDOW).await;
    let b = limited_instance(&url, &schema.name, MAX as u32, WINDOW).await;
    let instances = [("A", &a), ("B", &b)];

    // Spread over both instances.
    let spread = register(&a.server, "svc-spread", &["client_credentials"]).await;
    let wrong = Client {
        id: spread.id.clone(),
        secret: "not-the-secret".into(),
    };
    let started = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..2 * MAX + 2 {
        let (name, instance) = instances[i % INSTANCES];
        let reply = client_credentials(&instance.app, &wrong).await;
        match reply.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_rate_limited(&reply, &format!("attempt {i} on {name}"), WINDOW)
            }
            _ => panic!("attempt {i} on {name}: {reply:?}"),
        }
        statuses.push((name, reply.status.as_u16()));
    }
    assert!(
        started.elapsed() < WINDOW,
        "the attempts took longer than the window ({:?}); the test needs a faster machine",
        started.elapsed()
    );
    println!("wrong secrets alternately on A and B: {statuses:?}");
    let failed = statuses.iter().filter(|(_, s)| *s == 401).count();
    assert!(
        statuses[..MAX].iter().all(|(_, s)| *s == 401),
        "the first {MAX} failures are answered 401: {statuses:?}"
    );
    // The documented slack: one more failure per other instance.
    let slack = INSTANCES - 1;
    assert!(
        failed <= MAX + slack,
        "{failed} failed attempts got through across {INSTANCES} instances; at most \
         {MAX} + {slack} allowed: {statuses:?}"
    );
    assert!(
        statuses[MAX + INSTANCES - 1..]
            .iter()
            .all(|(_, s)| *s == 429),
        "once blocked, every attempt is refused: {statuses:?}"
    );
    // The correct secret too, on both.
    for (name, instance) in instances {
        let reply = client_credentials(&instance.app, &spread).await;
        assert_rate_limited(&reply, &format!("the correct secret on {name}"), WINDOW);
    }

    // Failures on A only: B learns of the block through the store, not from a failure.
    let lone = register(&a.server, "svc-lone", &["client_credentials"]).await;
    let wrong = Client {
        id: lone.id.clone(),
        secret: "not-the-secret".into(),
    };
    // B has authenticated the client before (and would keep doing so if counts were apart).
    let reply = client_credentials(&b.app, &lone).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    for i in 0..MAX {
        let reply = client_credentials(&a.app, &wrong).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}: {reply:?}"
        );
    }
    let blocked_at = Instant::now();
    let reply = client_credentials(&a.app, &lone).await;
    assert_rate_limited(&reply, "the correct secret on A", WINDOW);
    let mut issued_on_b = 0;
    let delay = loop {
        let reply = client_credentials(&b.app, &lone).await;
        match reply.status {
            StatusCode::OK => issued_on_b += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_rate_limited(&reply, "the correct secret on B", WINDOW);
                break blocked_at.elapsed();
            }
            _ => panic!("the correct secret on B: {reply:?}"),
        }
        assert!(
            blocked_at.elapsed() <= SYNC_INTERVAL + Duration::from_millis(500),
            "B still authenticates the client {:?} after A blocked it",
            blocked_at.elapsed()
        );
        tokio::time::sleep(POLL).await;
    };
    println!(
        "B refused the client blocked on A after {delay:?} ({issued_on_b} tokens issued in between)"
    );
    assert!(
        delay <= SYNC_INTERVAL + SLACK,
        "B learned of the block after {delay:?}, beyond the {SYNC_INTERVAL:?} sync interval"
    );

    // The window ends (it started at each client's first failure): both authenticate again,
    // and a wrong secret counts from 1.
    let ends = started + WINDOW + Duration::from_millis(500);
    tokio::time::sleep_until(ends.into()).await;
    for (name, instance) in instances {
        let reply = client_credentials(&instance.app, &spread).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name} after the window: {reply:?}"
        );
    }
    let wrong = Client {
        id: spread.id.clone(),
        secret: "not-the-secret".into(),
    };
    let reply = client_credentials(&b.app, &wrong).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    let reply = client_credentials(&a.app, &spread).await;
    assert_eq!(reply.status, StatusCode::OK, "a new window: {reply:?}");

    // Ended windows are purged; the live one stays.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("a pool");
    let rows = |pool: sqlx::PgPool| {
        let statement = format!(
            "SELECT key FROM \"{}\".oauth2_auth_failures ORDER BY key",
            schema.name
        );
        async move {
            sqlx::query_scalar::<_, String>(&statement)
                .fetch_all(&pool)
                .await
                .expect("the failure rows")
        }
    };
    tokio::time::sleep_until((blocked_at + WINDOW + Duration::from_millis(500)).into()).await;
    assert_eq!(
        rows(pool.clone()).await,
        ["client:svc-lone", "client:svc-spread"],
        "one row per key"
    );
    a.server
        .store()
        .purge_expired(tower_oauth2_now())
        .await
        .expect("purge");
    assert_eq!(rows(pool.clone()).await, ["client:svc-spread"]);
    pool.close().await;
}

/// Seconds since the Unix epoch.
fn tower_oauth2_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[test]
fn split_url_reroutes_through_the_proxy() {
    let proxy: SocketAddr = "127.0.0.1:6000".parse().expect("an address");
    assert_eq!(
        split_url("postgres://postgres@127.0.0.1:5432/test", proxy),
        (
            "127.0.0.1:5432".to_owned(),
            "postgres://postgres@127.0.0.1:6000/test".to_owned()
        )
    );
    assert_eq!(
        split_url("postgresql://u:p@db.example/app?sslmode=disable", proxy),
        (
            "db.example:5432".to_owned(),
            "postgresql://u:p@127.0.0.1:6000/app?sslmode=disable".to_owned()
        )
    );
    assert_eq!(
        split_url("postgres://[::1]:5433/x", proxy),
        (
            "[::1]:5433".to_owned(),
            "postgres://127.0.0.1:6000/x".to_owned()
        )
    );
}

/// A client's secret rotated on A: B, whose client cache holds the old record, issues no
/// token for the old secret — at once, since the store checks the record inside the write —
/// and refuses it at introspection within the sync interval (the client change feed); the new
/// secret works on B at once. A client disabled on A gets no token from B at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_changes_on_one_instance_reach_the_others_cache() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "clientcache");
    let a = instance(&url, &schema.name).await;
    let b = instance(&url, &schema.name).await;
    let old = register(&a.server, "svc-cache", &["client_credentials"]).await;
    let token = access_token(&a.app, &old).await;

    // B caches the client.
    assert_eq!(
        client_credentials(&b.app, &old).await.status,
        StatusCode::OK
    );
    let introspect = |client: &Client| {
        let client = client.clone();
        let token = token.clone();
        let app = b.app.clone();
        async move { post_form(&app, "introspect", &client, &[("token", &token)]).await }
    };
    assert_eq!(introspect(&old).await.status, StatusCode::OK);

    // A rotates the secret.
    let request = Request::post("/admin/clients/svc-cache/secret")
        .body(Body::empty())
        .expect("a request");
    let rotated = send(&a.app, request).await;
    assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
    let changed_at = Instant::now();
    let new = Client {
        id: old.id.clone(),
        secret: rotated.field("client_secret").to_owned(),
    };

    let reply = client_credentials(&b.app, &old).await;
    assert_eq!(
        (reply.status, reply.error()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "B issues nothing for the old secret, whatever its cache holds: {reply:?}"
    );
    let reply = client_credentials(&b.app, &new).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the new secret works on B: {reply:?}"
    );

    let mut refused_after = None;
    while changed_at.elapsed() <= SYNC_INTERVAL + SLACK {
        if introspect(&old).await.status == StatusCode::UNAUTHORIZED {
            refused_after = Some(changed_at.elapsed());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let delay = refused_after.unwrap_or_else(|| {
        panic!(
            "B still accepts the old secret at introspection {:?} after the rotation",
            changed_at.elapsed()
        )
    });
    println!("B refused the rotated-out secret at introspection after {delay:?}");

    // Disabled on A: B refuses at once.
    let b_cache_warm = client_credentials(&b.app, &new).await;
    assert_eq!(b_cache_warm.status, StatusCode::OK);
    let request = Request::post("/admin/clients/svc-cache/disable")
        .body(Body::empty())
        .expect("a request");
    assert_eq!(send(&a.app, request).await.status, StatusCode::OK);
    let reply = client_credentials(&b.app, &new).await;
    assert_eq!(
        (reply.status, reply.error()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "a disabled client gets no token from B: {reply:?}"
    );
}
