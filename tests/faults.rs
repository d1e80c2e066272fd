//! Store faults with real components: an authorization server served on loopback (axum, real
//! HTTP through reqwest), its store on a real filesystem or a real PostgreSQL server that the
//! test breaks and repairs.
//!
//! - **SQLite, disk full**: the database lives on a tmpfs of a few MiB (`mount -t tmpfs -o
//!   size=…`); a filler file takes every free byte. Token, revocation and admin writes answer 503
//!   `temporarily_unavailable` with `Retry-After`, and `/authorize` redirects to the client
//!   with `error=temporarily_unavailable`; validation goes on (tokens issued before
//!   are accepted, the revoked one refused) and so do reads (introspection); deleting the
//!   filler brings token issuance back without a restart — and keeps it: 40 requests in a row
//!   succeed, so no pooled connection was left broken (SQLite rolls a transaction back by
//!   itself on a full disk, which left sqlx's connection unusable until `SqliteStore` learned
//!   to close such connections) — and every token answered 200 is in the database file.
//! - **SQLite, read-only filesystem**: the same tmpfs remounted read-only
//!   (`mount -o remount,ro`). Linux refuses that remount while a file on it is open for writing
//!   ("mount point is busy"), so the store runs on a pool (`SqliteStore::from_pool`) that closes
//!   connections idle for 100 ms, and the test remounts in a moment when none is open — a real
//!   read-only filesystem under a database the process has open, but not one that turns
//!   read-only under an open connection (an ext4 `errors=remount-ro` does that, and only an
//!   unmount undoes it). Then the same checks as for a full disk, and `remount,rw` to recover.
//! - **PostgreSQL stopped mid-load and restarted**: a private cluster (initdb into a temporary
//!   directory, run as the `postgres` OS user on a free port, removed at the end), a load of
//!   token requests running; `pg_ctl stop -m immediate`, then after a restart `-m fast`.
//!   Requests during the outage (token, revocation, introspection, admin) get 503 with
//!   `Retry-After` — never a 500 — within the pool's
//!   acquire timeout (5 s, `PostgresStore::connect`'s) plus scheduling slack; the protected API
//!   keeps accepting tokens and refusing the revoked one; after `pg_ctl start` the server
//!   issues tokens again by itself, and every token answered 200 is in the database.
//!
//! These need root (mount, runuser) and, for PostgreSQL, the server binaries
//! (`/usr/lib/postgresql/15/bin`, or the directory in `TOWER_OAUTH2_TEST_PG_BIN`). Without
//! them each test prints `skipped: …` with the reason and passes.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_oauth2::VerifiedToken;
use tower_oauth2::server::store::{Store, TokenState};
use tower_oauth2::server::{
    AuthorizationRequest, AuthorizationServer, ClientRegistration, ClientSecret, ConsentDecision,
    ConsentHandler, HookFuture,
};

const ISSUER: &str = "https://auth.test";
/// How long the server may take to issue tokens again once the fault is repaired.
const RECOVERY: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// The server on loopback, and requests to it
// ---------------------------------------------------------------------------------------------

/// A server serving on a loopback port until dropped.
struct Running {
    base: String,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the server's endpoints, its admin API and an API behind its authenticator.
async fn serve(server: &AuthorizationServer) -> Running {
    let api =
        Router::new()
            .route(
                "/protected",
                get(|token: VerifiedToken| async move {
                    token.subject().unwrap_or_default().to_owned()
                }),
            )
            .layer(server.authenticator().layer());
    let app = Router::new()
        .nest("/oauth2", server.router())
        .nest("/admin", server.admin_router())
        .merge(api);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("the address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Running {
        base: format!("http://{addr}"),
        task,
    }
}

#[derive(Clone)]
struct Client {
    id: String,
    secret: String,
}

async fn register(server: &AuthorizationServer, id: &str) -> Client {
    let secret = format!("{id}-secret-0123456789abcdefghijklmnopqrstuvwxyz");
    let mut registration = ClientRegistration::new(format!("{id} app"));
    registration.client_id = Some(id.to_owned());
    registration.secret = Some(ClientSecret::from_value(secret.clone()).expect("long secret"));
    server
        .register_client(registration)
        .await
        .unwrap_or_else(|e| panic!("register {id}: {e}"));
    Client {
        id: id.to_owned(),
        secret,
    }
}

#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    location: Option<String>,
    retry_after: Option<u64>,
    cache_control: Option<String>,
    body: Value,
    took: Duration,
}

impl Reply {
    fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    fn access_token(&self) -> &str {
        self.body
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no access_token in {self:?}"))
    }
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let start = Instant::now();
    let response = request
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the server answers");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let location = header("location");
    let cache_control = header("cache-control");
    let bytes = response.bytes().await.expect("a body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        location,
        retry_after,
        cache_control,
        body,
        took: start.elapsed(),
    }
}

/// A form body.
fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

async fn token(http: &reqwest::Client, base: &str, client: &Client) -> Reply {
    reply(
        http.post(format!("{base}/oauth2/token"))
            .basic_auth(&client.id, Some(&client.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("grant_type", "client_credentials")])),
    )
    .await
}

async fn revoke(http: &reqwest::Client, base: &str, client: &Client, token: &str) -> Reply {
    reply(
        http.post(format!("{base}/oauth2/revoke"))
            .basic_auth(&client.id, Some(&client.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("token", token),
                ("token_type_hint", "access_token"),
            ])),
    )
    .await
}

async fn introspect(http: &reqwest::Client, base: &str, client: &Client, token: &str) -> Reply {
    reply(
        http.post(format!("{base}/oauth2/introspect"))
            .basic_auth(&client.id, Some(&client.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", token)])),
    )
    .await
}

async fn protected(http: &reqwest::Client, base: &str, token: &str) -> Reply {
    reply(http.get(format!("{base}/protected")).bearer_auth(token)).await
}

async fn admin_register(http: &reqwest::Client, base: &str) -> Reply {
    reply(
        http.post(format!("{base}/admin/clients"))
            .header("content-type", "application/json")
            .body(r#"{"name": "registered during the fault"}"#),
    )
    .await
}

/// Approves every authorization request, for "alice".
struct Approve;

impl ConsentHandler for Approve {
    fn decide<'a>(
        &'a self,
        _: &'a AuthorizationRequest,
        _: &'a http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        Box::pin(async {
            ConsentDecision::Approve {
                subject: "alice".into(),
                scopes: None,
            }
        })
    }
}

const REDIRECT: &str = "https://app.example/cb";

/// Registers a client of the authorization-code grant that redirects to [`REDIRECT`].
#[cfg(feature = "sqlite")]
async fn register_web(server: &AuthorizationServer, id: &str) {
    let mut registration = ClientRegistration::new(format!("{id} web app"));
    registration.client_id = Some(id.to_owned());
    registration.grant_types = Some(vec!["authorization_code".into()]);
    registration.redirect_uris = vec![REDIRECT.into()];
    server
        .register_client(registration)
        .await
        .unwrap_or_else(|e| panic!("register {id}: {e}"));
}

/// `GET /authorize` for `client_id` (consent approves); the reply is the redirect.
#[cfg(feature = "sqlite")]
async fn authorize(http: &reqwest::Client, base: &str, client_id: &str) -> Reply {
    let challenge = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("state", "xyz"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    reply(http.get(format!("{base}/oauth2/authorize?{query}"))).await
}

/// The query parameters of a redirect to [`REDIRECT`].
#[cfg(feature = "sqlite")]
fn redirected(reply: &Reply, what: &str) -> std::collections::HashMap<String, String> {
    assert_eq!(reply.status, StatusCode::FOUND, "{what}: {reply:?}");
    let location = reply.location.as_deref().unwrap_or_default();
    let query = location
        .strip_prefix(REDIRECT)
        .and_then(|rest| rest.strip_prefix('?'))
        .unwrap_or_else(|| panic!("{what}: a redirect to the client: {reply:?}"));
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A client that does not follow redirects.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The `jti` of an access token.
fn jti(token: &str) -> String {
    let claims = token.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url claims"))
            .expect("JSON claims");
    claims["jti"].as_str().expect("a jti").to_owned()
}

/// Asserts a 503 `temporarily_unavailable` with `Retry-After` (and, from the OAuth endpoints,
/// `Cache-Control: no-store`).
fn assert_unavailable(reply: &Reply, what: &str) {
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
    assert!(
        reply.retry_after.is_some_and(|s| s >= 1),
        "{what}: Retry-After in seconds: {reply:?}"
    );
    assert_eq!(
        reply.cache_control.as_deref(),
        Some("no-store"),
        "{what}: {reply:?}"
    );
}

/// The protected API accepts `kept` and refuses `revoked` (the denylist in memory).
async fn assert_validation_goes_on(http: &reqwest::Client, base: &str, kept: &str, revoked: &str) {
    let reply = protected(http, base, kept).await;
    assert_eq!(reply.status, StatusCode::OK, "a valid token: {reply:?}");
    let reply = protected(http, base, revoked).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "the revoked token: {reply:?}"
    );
}

/// Requests tokens until one is issued; the time it took, or a panic after [`RECOVERY`].
async fn until_issued(
    http: &reqwest::Client,
    base: &str,
    client: &Client,
    issued: &mut Vec<String>,
) -> Duration {
    let start = Instant::now();
    loop {
        let reply = token(http, base, client).await;
        match reply.status {
            StatusCode::OK => {
                issued.push(reply.access_token().to_owned());
                return start.elapsed();
            }
            StatusCode::SERVICE_UNAVAILABLE => assert_unavailable(&reply, "while recovering"),
            _ => panic!("while recovering: {reply:?}"),
        }
        assert!(
            start.elapsed() < RECOVERY,
            "no token issued {RECOVERY:?} after the repair: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the recovery, `n` token requests in a row are all answered 200: no pooled connection
/// was left broken by the fault.
async fn assert_steady(
    http: &reqwest::Client,
    base: &str,
    client: &Client,
    issued: &mut Vec<String>,
    n: usize,
) {
    for i in 0..n {
        let reply = token(http, base, client).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {i} of {n} after the recovery: {reply:?}"
        );
        issued.push(reply.access_token().to_owned());
    }
}

/// Asserts that `store` holds every token in `issued` (read back by `jti`).
async fn assert_all_stored(store: &dyn Store, issued: &[String], what: &str) {
    let mut missing = Vec::new();
    for token in issued {
        let id = jti(token);
        match store.token(&id).await {
            Ok(Some(record)) => assert_ne!(record.state, TokenState::Rotated, "{id}"),
            Ok(None) => missing.push(id),
            Err(error) => panic!("{what}: reading {id}: {error}"),
        }
    }
    assert!(
        missing.is_empty(),
        "{what}: {} of {} tokens answered 200 are not in the database: {missing:?}",
        missing.len(),
        issued.len()
    );
    println!(
        "{what}: all {} tokens answered 200 are in the database",
        issued.len()
    );
}

fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!(
        "tower-oauth2-faults-{tag}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Runs a command; its output, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite on a small tmpfs
// ---------------------------------------------------------------------------------------------

/// A tmpfs of its own, unmounted and removed on drop.
#[cfg(feature = "sqlite")]
struct Tmpfs {
    dir: PathBuf,
}

#[cfg(feature = "sqlite")]
impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount` syntax, e.g. `8m`), or prints why not and gives `None`.
    fn mount(tag: &str, size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir(&dir).expect("a mount point");
        let path = dir.to_str().expect("a UTF-8 path").to_owned();
        match run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &path],
        ) {
            Ok(_) => Some(Tmpfs { dir }),
            Err(error) => {
                let _ = std::fs::remove_dir(&dir);
                println!("skipped: cannot mount a tmpfs here (needs root): {error}");
                None
            }
        }
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 path")
    }

    /// Takes every free byte with a filler file; returns its path and size.
    fn fill(&self) -> (PathBuf, u64) {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler");
        let mut written = 0u64;
        for chunk in [1 << 20, 1 << 12, 1] {
            let bytes = vec![0xa5u8; chunk];
            while file.write_all(&bytes).is_ok() {
                written += chunk as u64;
            }
        }
        let _ = file.flush();
        (path, written)
    }

    /// `mount -o remount,{mode}`, retried for up to `limit` while the mount is busy.
    async fn remount(&self, mode: &str, limit: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            match run("mount", &["-o", &format!("remount,{mode}"), self.path()]) {
                Ok(_) => return Ok(start.elapsed()),
                Err(error) if start.elapsed() > limit => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

#[cfg(feature = "sqlite")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(error) = run("umount", &["-l", self.path()]) {
            eprintln!("could not unmount {}: {error}", self.dir.display());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// What the tests issue before a fault: some tokens, one of them revoked.
struct Before {
    issued: Vec<String>,
    kept: String,
    revoked: String,
}

async fn before_the_fault(http: &reqwest::Client, base: &str, client: &Client) -> Before {
    let mut issued = Vec::new();
    for _ in 0..20 {
        let reply = token(http, base, client).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        issued.push(reply.access_token().to_owned());
    }
    let revoked = issued[0].clone();
    let reply = revoke(http, base, client, &revoked).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let kept = issued[1].clone();
    assert_validation_goes_on(http, base, &kept, &revoked).await;
    Before {
        issued,
        kept,
        revoked,
    }
}

/// The checks every SQLite fault shares once the store refuses writes: the token endpoint (at
/// once: its first 503 ends `first_503`), revocation and admin registration answer 503 with
/// `Retry-After`, and validation goes on.
#[cfg(feature = "sqlite")]
async fn assert_degraded(
    http: &reqwest::Client,
    base: &str,
    client: &Client,
    before: &mut Before,
    fault: &str,
) {
    // A write or two may still fit (the WAL can have room left); then the endpoint refuses.
    let mut accepted = 0;
    let first = loop {
        let reply = token(http, base, client).await;
        match reply.status {
            StatusCode::OK => {
                accepted += 1;
                before.issued.push(reply.access_token().to_owned());
                assert!(
                    accepted < 50,
                    "{fault}: still issuing tokens after 50 requests"
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => break reply,
            _ => panic!("{fault}: token endpoint: {reply:?}"),
        }
    };
    println!(
        "{fault}: token endpoint 503 after {accepted} more tokens, in {:?}",
        first.took
    );
    assert_unavailable(&first, &format!("{fault}: token endpoint"));
    for i in 0..5 {
        let reply = token(http, base, client).await;
        assert_unavailable(&reply, &format!("{fault}: token endpoint, again ({i})"));
    }
    let reply = revoke(http, base, client, &before.kept).await;
    assert_unavailable(&reply, &format!("{fault}: revocation"));
    let reply = admin_register(http, base).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{fault}: admin registration: {reply:?}"
    );
    assert_eq!(reply.error(), Some("temporarily_unavailable"), "{reply:?}");
    assert!(reply.retry_after.is_some_and(|s| s >= 1), "{reply:?}");
    assert_validation_goes_on(http, base, &before.kept, &before.revoked).await;
}

/// A full disk under the SQLite file: 503s while it is full, validation goes on, recovery
/// when space is freed, nothing answered 200 lost.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_disk_full_answers_503_and_recovers() {
    use tower_oauth2::server::store::SqliteStore;

    let Some(fs) = Tmpfs::mount("full", "8m") else {
        return;
    };
    let db = fs.dir.join("oauth.db");
    let store = SqliteStore::open(&db).await.expect("open");
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(store)
        .consent_handler(Approve)
        .build()
        .await
        .expect("build");
    let running = serve(&server).await;
    let (http, base) = (http_client(), running.base.clone());
    let client = register(&server, "svc-full").await;
    register_web(&server, "web-full").await;
    let mut before = before_the_fault(&http, &base, &client).await;
    let code = redirected(
        &authorize(&http, &base, "web-full").await,
        "authorize before",
    );
    assert!(code.contains_key("code"), "{code:?}");

    let (filler, size) = fs.fill();
    println!("disk full: a filler of {size} bytes takes the rest of the tmpfs");
    assert_degraded(&http, &base, &client, &mut before, "disk full").await;
    // The authorization endpoint cannot store the code: it tells the client through the
    // redirect (RFC 6749 §4.1.2.1), with the state.
    let refused = redirected(&authorize(&http, &base, "web-full").await, "authorize");
    assert_eq!(
        refused.get("error").map(String::as_str),
        Some("temporarily_unavailable"),
        "{refused:?}"
    );
    assert_eq!(refused.get("state").map(String::as_str), Some("xyz"));
    assert!(!refused.contains_key("code"), "{refused:?}");
    // Reads need no space: introspection still answers.
    let reply = introspect(&http, &base, &client, &before.kept).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["active"], Value::Bool(true), "{reply:?}");

    std::fs::remove_file(&filler).expect("the filler is removed");
    let took = until_issued(&http, &base, &client, &mut before.issued).await;
    println!("disk full: tokens issued again {took:?} after the filler was removed");
    assert_steady(&http, &base, &client, &mut before.issued, 40).await;
    let reply = revoke(&http, &base, &client, &before.kept).await;
    assert_eq!(reply.status, StatusCode::OK, "revocation after: {reply:?}");
    let reply = admin_register(&http, &base).await;
    assert_eq!(reply.status, StatusCode::CREATED, "admin after: {reply:?}");
    let code = redirected(
        &authorize(&http, &base, "web-full").await,
        "authorize after",
    );
    assert!(code.contains_key("code"), "{code:?}");

    // As a restarted process would see the file.
    let reopened = SqliteStore::open(&db).await.expect("reopen");
    assert_all_stored(&reopened, &before.issued, "disk full").await;
    let revoked = reopened
        .token(&jti(&before.revoked))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(revoked.state, TokenState::Revoked);
    drop(reopened);
    drop(running);
    drop(server);
}

/// The filesystem under the SQLite file remounted read-only: 503s while it is, validation goes
/// on, recovery on `remount,rw`, nothing answered 200 lost.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_read_only_filesystem_answers_503_and_recovers() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    use tower_oauth2::server::store::SqliteStore;

    let Some(fs) = Tmpfs::mount("ro", "16m") else {
        return;
    };
    let db = fs.dir.join("oauth.db");
    // Connections idle for 100 ms are closed, so that the remount finds none open.
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .idle_timeout(Duration::from_millis(100))
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(2))
                .foreign_keys(true),
        )
        .await
        .expect("a pool");
    let store = SqliteStore::from_pool(pool).await.expect("open");
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(store)
        // A quiet pool between syncs, for the remount.
        .sync_interval(Duration::from_secs(3))
        .build()
        .await
        .expect("build");
    let running = serve(&server).await;
    let (http, base) = (http_client(), running.base.clone());
    let client = register(&server, "svc-ro").await;
    let mut before = before_the_fault(&http, &base, &client).await;

    let waited = fs
        .remount("ro", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("remount ro (no connection should be open): {e}"));
    println!("read-only: remounted after waiting {waited:?} for the pool to close its connections");
    assert!(
        std::fs::write(fs.dir.join("probe"), b"x").is_err(),
        "the filesystem refuses writes, even root's"
    );
    assert_degraded(&http, &base, &client, &mut before, "read-only").await;

    let took = fs
        .remount("rw", Duration::from_secs(10))
        .await
        .expect("remount rw");
    println!("read-only: remounted rw after {took:?}");
    let took = until_issued(&http, &base, &client, &mut before.issued).await;
    println!("read-only: tokens issued again {took:?} after remount,rw");
    assert_steady(&http, &base, &client, &mut before.issued, 40).await;
    let reply = revoke(&http, &base, &client, &before.kept).await;
    assert_eq!(reply.status, StatusCode::OK, "revocation after: {reply:?}");
    let reply = admin_register(&http, &base).await;
    assert_eq!(reply.status, StatusCode::CREATED, "admin after: {reply:?}");

    let reopened = SqliteStore::open(&db).await.expect("reopen");
    assert_all_stored(&reopened, &before.issued, "read-only").await;
    drop(reopened);
    drop(running);
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a private cluster stopped and restarted
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL cluster of this test's own: initdb'd into a temporary directory owned by the
/// `postgres` user, served on a free loopback port; stopped and removed on drop.
#[cfg(feature = "postgres")]
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

#[cfg(feature = "postgres")]
impl Cluster {
    /// Creates and starts a cluster, or prints why it cannot and gives `None`.
    fn start() -> Option<Cluster> {
        let bin = PathBuf::from(
            std::env::var("TOWER_OAUTH2_TEST_PG_BIN")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
        );
        if !bin.join("initdb").exists() {
            println!(
                "skipped: no PostgreSQL server binaries in {} (set TOWER_OAUTH2_TEST_PG_BIN)",
                bin.display()
            );
            return None;
        }
        if let Err(error) = run("runuser", &["-u", "postgres", "--", "true"]) {
            println!("skipped: cannot run as the postgres user (needs root): {error}");
            return None;
        }
        let dir = std::env::temp_dir().join(unique("pg"));
        std::fs::create_dir(&dir).expect("the cluster's directory");
        let cluster = Cluster {
            dir,
            bin,
            port: free_port(),
        };
        run("chown", &["postgres:", cluster.path()]).expect("chown to postgres");
        let data = cluster.data();
        cluster
            .as_postgres(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            )
            .expect("initdb");
        cluster.pg_ctl_start().expect("pg_ctl start");
        Some(cluster)
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 path")
    }

    fn data(&self) -> String {
        format!("{}/data", self.path())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let tool = self.bin.join(tool);
        let mut all = vec!["-u", "postgres", "--", tool.to_str().expect("UTF-8")];
        all.extend_from_slice(args);
        run("runuser", &all)
    }

    fn pg_ctl_start(&self) -> Result<String, String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.path()
        );
        let log = format!("{}/log", self.path());
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<String, String> {
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"],
        )
    }
}

#[cfg(feature = "postgres")]
impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {error}", self.dir.display());
        }
    }
}

#[cfg(feature = "postgres")]
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One request of the load: when it was sent, and its reply.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct Sample {
    sent: Instant,
    reply: Reply,
}

/// PostgreSQL stopped (`-m immediate`, then `-m fast`) under a load of token requests, and
/// restarted: 503 with `Retry-After` within the acquire timeout during each outage, never a
/// 500; validation goes on; the server recovers by itself; every token answered 200 is stored.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_mid_load_answers_503_and_recovers() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use tower_oauth2::server::store::PostgresStore;

    /// `PostgresStore::connect`'s pool acquire timeout: the longest a request waits for a
    /// connection while the database is down.
    const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Beyond it: the failing statement, the response, a loaded 2-core machine.
    const SLACK: Duration = Duration::from_secs(2);
    const WORKERS: usize = 4;

    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url();
    let store = PostgresStore::connect(&url).await.expect("connect");
    let server = AuthorizationServer::builder()
        .issuer(ISSUER)
        .store(store)
        .build()
        .await
        .expect("build");
    let running = serve(&server).await;
    let (http, base) = (http_client(), running.base.clone());
    let client = register(&server, "svc-pg").await;
    let before = before_the_fault(&http, &base, &client).await;

    // The load: each worker requests tokens back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (http, base, client, stop) = (
            http.clone(),
            base.clone(),
            client.clone(),
            Arc::clone(&stop),
        );
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let reply = token(&http, &base, &client).await;
                let pause = reply.status != StatusCode::OK;
                samples.push(Sample { sent, reply });
                if pause {
                    // What a client does with Retry-After, shortened.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            samples
        }));
    }

    let mut outages = Vec::new();
    let mut issued_after = Vec::new();
    for mode in ["immediate", "fast"] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster
            .pg_ctl_stop(mode)
            .unwrap_or_else(|e| panic!("pg_ctl stop -m {mode}: {e}"));
        let down = Instant::now();
        // While it is down: validation goes on, the write endpoints answer 503.
        assert_validation_goes_on(&http, &base, &before.kept, &before.revoked).await;
        let (revoked, introspected, admin) = tokio::join!(
            revoke(&http, &base, &client, &before.kept),
            introspect(&http, &base, &client, &before.kept),
            admin_register(&http, &base)
        );
        assert_unavailable(&revoked, &format!("-m {mode}: revocation"));
        assert_unavailable(&introspected, &format!("-m {mode}: introspection"));
        assert_eq!(
            admin.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "-m {mode}: admin: {admin:?}"
        );
        assert_eq!(admin.error(), Some("temporarily_unavailable"), "{admin:?}");
        assert!(admin.retry_after.is_some_and(|s| s >= 1), "{admin:?}");
        // Long enough for load requests sent after the stop to meet the acquire timeout.
        let down_for = ACQUIRE_TIMEOUT + Duration::from_secs(2);
        tokio::time::sleep(down_for.saturating_sub(down.elapsed())).await;
        assert_validation_goes_on(&http, &base, &before.kept, &before.revoked).await;
        // Before `pg_ctl start`, not after: the server accepts connections before
        // `pg_ctl start -w` returns, and a request waiting for a connection is then served.
        let up = Instant::now();
        cluster
            .pg_ctl_start()
            .unwrap_or_else(|e| panic!("pg_ctl start after -m {mode}: {e}"));
        outages.push((mode, down, up));
        // Recovered once a request sent after the restart got a token.
        let took = until_issued(&http, &base, &client, &mut issued_after).await;
        println!(
            "-m {mode}: down for {:?}; tokens issued again {took:?} after pg_ctl start",
            up - down
        );
        assert_steady(&http, &base, &client, &mut issued_after, 20).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.expect("a load worker"));
    }

    let mut issued = before.issued.clone();
    issued.extend(issued_after);
    let mut unavailable = 0;
    let mut slowest_503 = Duration::ZERO;
    for sample in &samples {
        match sample.reply.status {
            StatusCode::OK => issued.push(sample.reply.access_token().to_owned()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_unavailable(&sample.reply, "under load");
                unavailable += 1;
                slowest_503 = slowest_503.max(sample.reply.took);
            }
            _ => panic!("under load, neither 200 nor 503: {:?}", sample.reply),
        }
    }
    for (mode, down, up) in &outages {
        // Answered while the database was certainly down: after `pg_ctl stop -w` returned (and
        // a moment for a response computed before it to arrive), before `pg_ctl start`.
        let answered_while_down: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                let answered = s.sent + s.reply.took;
                answered > *down + Duration::from_millis(100) && answered < *up
            })
            .collect();
        let refused = answered_while_down
            .iter()
            .filter(|s| s.reply.status == StatusCode::SERVICE_UNAVAILABLE)
            .count();
        println!(
            "-m {mode}: {refused} of {} load requests answered during the outage got 503",
            answered_while_down.len()
        );
        assert!(refused > 0, "-m {mode}: no 503 during the outage");
        assert_eq!(
            refused,
            answered_while_down.len(),
            "-m {mode}: every request answered while the database was down is a 503"
        );
    }
    println!(
        "load: {} requests, {unavailable} answered 503 (slowest {slowest_503:?}); {} tokens issued in all during and after the outages",
        samples.len(),
        issued.len() - before.issued.len()
    );
    assert!(
        slowest_503 <= ACQUIRE_TIMEOUT + SLACK,
        "a 503 took {slowest_503:?}, beyond the pool's {ACQUIRE_TIMEOUT:?} acquire timeout"
    );

    // Nothing lost: a fresh pool, as another instance or a restarted process would read.
    let fresh = PostgresStore::connect(&url).await.expect("reconnect");
    assert_all_stored(&fresh, &issued, "PostgreSQL").await;
    fresh.pool().close().await;
    drop(running);
    drop(server);
    drop(cluster);
}
