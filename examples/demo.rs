//! The authorization server and the API it protects, in one process:
//!
//! ```text
//! /oauth2/token, /revoke, /introspect, /jwks.json               the authorization server
//! /oauth2/authorize                                             with the demo's login page
//! /.well-known/oauth-authorization-server                       its metadata (RFC 8414)
//! /admin/clients…                                               its admin API: scope admin
//! /console                                                      its admin console (browser)
//! /login                                                        the demo user's login page
//! /public, /me, /events, /events/{id}                           the events API
//! /metrics                                                      the crate's metrics (Prometheus)
//! /openapi.json                                                 the events API's OpenAPI document (feature `utoipa`)
//! ```
//!
//! At start it registers a demo client (or finds it in the database), turns on the password grant
//! for one demo user, and prints a curl walkthrough: get a token, call the API, introspect,
//! revoke, use the admin API, refresh.
//!
//! ```sh
//! cargo run --example demo --features sqlite,console,metrics
//! ```
//!
//! (`metrics` fills `/metrics`; without it that route says how to get them.) With the
//! `postgres` feature too, `DEMO_DATABASE_URL` keeps the state in PostgreSQL instead:
//!
//! ```sh
//! DEMO_DATABASE_URL=postgres://postgres@127.0.0.1:5432/demo \
//!     cargo run --example demo --features sqlite,console,postgres
//! ```
//!
//! Configuration comes from the environment, all optional:
//!
//! | variable | meaning |
//! |---|---|
//! | `BIND` | address to listen on (default `127.0.0.1:3000`) |
//! | `DEMO_ISSUER` | the issuer (default `http://` + the address listened on; `https://…` when clients reach the server through another name) |
//! | `DEMO_CLIENT_ID` | the demo client's id (default `demo-client`) |
//! | `DEMO_CLIENT_SECRET` | its secret, at least 32 characters (default: generated and printed when the client is created) |
//! | `DEMO_USER_PASSWORD` | the password of user `demo` for the password grant (default: generated and printed) |
//! | `DEMO_DB` | the SQLite database the server keeps its state in (default `./tower-oauth2-demo.db`, created if missing) |
//! | `DEMO_DATABASE_URL` | a `postgres://` URL: keep the state in that PostgreSQL database (its `public` schema, tables `oauth2_*`) instead of `DEMO_DB`; needs a build with the `postgres` feature |
//! | `DEMO_KEY_SECRET` | at least 32 bytes: seals the signing keys stored in `DEMO_DB` or `DEMO_DATABASE_URL` (default: stored unsealed) |
//! | `DEMO_ACCESS_TOKEN_LIFETIME` | the access tokens' lifetime, e.g. `5min` (default `1h`) |
//! | `DEMO_DPOP_NONCE_SECRET` | at least 32 bytes: DPoP proofs (RFC 9449) at the token endpoint and the events API must carry a server nonce (default: no nonces) |
//! | `RUST_LOG` | log filter (default `info`; the audit events have target `tower_oauth2::audit`) |
//!
//! A configuration mistake, or a `DEMO_DB` (or `DEMO_DATABASE_URL`) that cannot be opened,
//! exits with code 2 before anything is served. What is said below of `DEMO_DB` holds for the
//! PostgreSQL database as well.
//!
//! The server's state is in `DEMO_DB`: a restart (even after a crash) keeps the clients, the
//! tokens, the revocations and the signing keys, so tokens issued before it still verify —
//! as long as the issuer stays the same (the same `BIND`, or `DEMO_ISSUER`). On a restart the
//! demo client is found in the database: with `DEMO_CLIENT_SECRET` set, its stored secret is
//! replaced by that one if it differs; without it, the stored secret is kept (it was printed
//! when the client was created; set `DEMO_CLIENT_SECRET` or delete `DEMO_DB` for a new one).
//! Sealed keys need the same `DEMO_KEY_SECRET` on every start. The events themselves are kept
//! in memory only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_oauth2::RequireScope;
#[cfg(feature = "postgres")]
use tower_oauth2::server::store::PostgresStore;
use tower_oauth2::server::store::StoreError;
use tower_oauth2::server::store::{ClientRecord, ClientStatus, SqliteStore};
use tower_oauth2::server::{
    AuthorizationServer, ClientRegistration, ClientSecret, ConsoleConfig, HookFuture,
    PasswordVerifier, RegistrationError, SecretHash, TokenLifetime,
};

#[path = "shared/events.rs"]
mod events;
#[path = "shared/login.rs"]
mod login;
#[path = "shared/metrics.rs"]
mod metrics;

const DEFAULT_BIND: &str = "127.0.0.1:3000";
const DEFAULT_CLIENT_ID: &str = "demo-client";
const DEFAULT_DB: &str = "./tower-oauth2-demo.db";
/// The least a key-encryption secret may have, in bytes.
const KEY_SECRET_MIN: usize = 32;
const DEMO_USER: &str = "demo";
const GRANT_TYPES: [&str; 3] = ["client_credentials", "password", "refresh_token"];
const SCOPES: [&str; 3] = ["events:read", "events:write", "admin"];
/// Granted when a request names no scope: `admin` must be asked for.
const DEFAULT_SCOPES: [&str; 2] = ["events:read", "events:write"];

/// What the environment says.
struct Config {
    bind: String,
    issuer: Option<String>,
    client_id: String,
    /// `None`: the server generates one.
    client_secret: Option<ClientSecret>,
    user_password: String,
    user_password_generated: bool,
    /// The SQLite database file.
    db: String,
    /// A `postgres://` URL: the state is there, not in `db`.
    database_url: Option<String>,
    /// Seals the stored signing keys.
    key_secret: Option<String>,
    /// The server's access-token lifetime, when not the default.
    access_lifetime: Option<TokenLifetime>,
    /// DPoP proofs must carry a nonce derived from this secret.
    dpop_nonce_secret: Option<String>,
}

/// A variable's value; unset and empty are the same; not UTF-8 is a mistake.
fn env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

fn config() -> Result<Config, String> {
    let client_secret = match env("DEMO_CLIENT_SECRET")? {
        None => None,
        Some(secret) => Some(
            ClientSecret::from_value(secret)
                .map_err(|e| format!("DEMO_CLIENT_SECRET: {e} (unset it to have one generated)"))?,
        ),
    };
    let (user_password, user_password_generated) = match env("DEMO_USER_PASSWORD")? {
        Some(password) => (password, false),
        None => (random_text(12)?, true),
    };
    let key_secret = env("DEMO_KEY_SECRET")?;
    let database_url = env("DEMO_DATABASE_URL")?;
    if let Some(url) = &database_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "DEMO_DATABASE_URL: only postgres:// URLs are supported (unset it to use the \
                 SQLite database DEMO_DB)"
                    .into(),
            );
        }
        if !cfg!(feature = "postgres") {
            return Err(
                "DEMO_DATABASE_URL needs the postgres feature: cargo run --example demo \
                 --features sqlite,console,postgres"
                    .into(),
            );
        }
    }
    if let Some(secret) = key_secret.as_ref().filter(|s| s.len() < KEY_SECRET_MIN) {
        return Err(format!(
            "DEMO_KEY_SECRET: needs at least {KEY_SECRET_MIN} bytes, it has {} (unset it to \
             store the signing keys unsealed)",
            secret.len()
        ));
    }
    Ok(Config {
        bind: env("BIND")?.unwrap_or_else(|| DEFAULT_BIND.into()),
        issuer: env("DEMO_ISSUER")?,
        client_id: env("DEMO_CLIENT_ID")?.unwrap_or_else(|| DEFAULT_CLIENT_ID.into()),
        client_secret,
        user_password,
        user_password_generated,
        db: env("DEMO_DB")?.unwrap_or_else(|| DEFAULT_DB.into()),
        database_url,
        key_secret,
        access_lifetime: env("DEMO_ACCESS_TOKEN_LIFETIME")?
            .map(|text| {
                text.parse::<TokenLifetime>()
                    .map_err(|e| format!("DEMO_ACCESS_TOKEN_LIFETIME: {e}"))
            })
            .transpose()?,
        dpop_nonce_secret: match env("DEMO_DPOP_NONCE_SECRET")? {
            Some(secret) if secret.len() < KEY_SECRET_MIN => {
                return Err(format!(
                    "DEMO_DPOP_NONCE_SECRET: needs at least {KEY_SECRET_MIN} bytes (unset it for \
                     no nonces)"
                ));
            }
            other => other,
        },
    })
}

/// `bytes` random bytes, base64url.
fn random_text(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| "the OS random source failed".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The one demo user of the password grant.
struct DemoUser {
    password_digest: Vec<u8>,
}

impl PasswordVerifier for DemoUser {
    fn verify<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> HookFuture<'a, Option<String>> {
        Box::pin(async move {
            // Digests have one length, so the comparison is constant-time whatever was typed.
            let presented = digest(&SHA256, password.as_bytes());
            let matches =
                verify_slices_are_equal(presented.as_ref(), &self.password_digest).is_ok();
            (matches && username == DEMO_USER).then(|| DEMO_USER.to_owned())
        })
    }
}

/// Why the demo did not start: exit code 2 for configuration, 1 for the rest.
enum Failure {
    Config(String),
    Runtime(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // First: every count lands in the recorder.
    let metrics = match metrics::install() {
        Ok(route) => route,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(metrics).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `metrics`: the `/metrics` route.
async fn run(metrics: Router) -> Result<(), Failure> {
    let config = config().map_err(Failure::Config)?;
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|e| Failure::Config(format!("BIND: cannot listen on {}: {e}", config.bind)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Runtime(format!("the listener has no address: {e}")))?;
    // Reachable here; an unspecified address (0.0.0.0, [::]) is reached on loopback.
    let base = format!("http://{}", reachable(local));
    let issuer = config.issuer.clone().unwrap_or_else(|| base.clone());

    let builder = AuthorizationServer::builder().issuer(issuer.as_str());
    let builder = match &config.database_url {
        #[cfg(feature = "postgres")]
        Some(url) => builder.store(PostgresStore::connect(url).await.map_err(|e| {
            Failure::Config(format!(
                "DEMO_DATABASE_URL: cannot use the PostgreSQL database {}: {e}",
                redact(url)
            ))
        })?),
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            return Err(Failure::Config(
                "DEMO_DATABASE_URL needs the postgres feature".into(),
            ));
        }
        None => builder.store(SqliteStore::open(&config.db).await.map_err(|e| {
            Failure::Config(format!(
                "DEMO_DB: cannot open the SQLite database {}: {e}",
                config.db
            ))
        })?),
    };
    let demo_login = login::DemoLogin::new(DEMO_USER, &config.user_password);
    let mut builder = builder
        .consent_handler(demo_login.clone())
        .password_verifier(DemoUser {
            password_digest: digest(&SHA256, config.user_password.as_bytes())
                .as_ref()
                .to_vec(),
        });
    if let Some(secret) = &config.key_secret {
        builder = builder.key_encryption_secret(secret.as_bytes());
    }
    if let Some(lifetime) = config.access_lifetime {
        builder = builder.access_token_lifetime(lifetime);
    }
    if let Some(secret) = &config.dpop_nonce_secret {
        builder = builder.dpop_nonces(secret.as_bytes());
    }
    let server = builder.build().await.map_err(|e| {
        let message = e.to_string();
        let hint = if message.contains("key_encryption_secret") || message.contains("sealed") {
            "the signing keys in DEMO_DB are sealed: set DEMO_KEY_SECRET to the secret they were \
             sealed with, or delete DEMO_DB to start over"
        } else if message.contains("store") {
            if config.database_url.is_some() {
                "check DEMO_DATABASE_URL"
            } else {
                "check DEMO_DB"
            }
        } else if config.issuer.is_some() {
            "check DEMO_ISSUER"
        } else {
            "on an address other than loopback, set DEMO_ISSUER to the https URL clients reach \
             this server at"
        };
        Failure::Config(format!("{message} ({hint})"))
    })?;
    // As the server normalized it (no trailing slash).
    let issuer = server.issuer().to_owned();

    let (client, secret, client_found) = demo_client(&server, &config).await?;
    // What the database holds, whatever this start was told: a key created unsealed stays so.
    let keys_sealed = server
        .store()
        .signing_keys()
        .await
        .map_err(|e| Failure::Runtime(format!("DEMO_DB: cannot read the signing keys: {e}")))?
        .iter()
        .any(|key| key.active && key.encrypted);

    // The admin console, at /console: people log in at /oauth2/authorize (the demo's login page).
    let console_url = format!("{issuer}/console");
    let console = server
        .console(ConsoleConfig::new(console_url.as_str()))
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;

    // The server's own tokens, bearer or DPoP-bound (RFC 9449, proofs for the issuer's origin,
    // with the server's nonces when DEMO_DPOP_NONCE_SECRET is set).
    let auth = server.authenticator();
    // The events API's document names this server's flows and endpoints.
    #[cfg(feature = "utoipa")]
    let security = tower_oauth2::openapi::ApiSecurity::oauth2(server.openapi_flows());
    #[cfg(not(feature = "utoipa"))]
    let security = ();
    let openapi = events::openapi_router(security).map_err(Failure::Runtime)?;
    let admin = server
        .admin_router()
        .layer(RequireScope::all(["admin"]))
        .layer(auth.layer());
    let app = Router::new()
        .nest("/oauth2", server.router())
        .merge(server.metadata_router())
        .nest("/admin", admin)
        .nest("/console", console)
        .merge(demo_login.router())
        .merge(events::router(&auth))
        .merge(metrics)
        .merge(openapi);

    println!(
        "{}",
        walkthrough(&Walkthrough {
            base: &base,
            console: &console_url,
            issuer: &issuer,
            state: &match &config.database_url {
                Some(url) => format!(
                    "{}   (DEMO_DATABASE_URL, PostgreSQL: a restart keeps clients, tokens, \
                     revocations and signing keys)",
                    redact(url)
                ),
                None => format!(
                    "{}   (DEMO_DB, SQLite: a restart keeps clients, tokens, revocations and \
                     signing keys)",
                    config.db
                ),
            },
            keys_sealed,
            client_id: &client.client_id,
            client_found,
            client_status: client.status,
            secret: match &secret {
                DemoSecret::Generated(secret) => Secret::Generated(secret.expose()),
                DemoSecret::FromEnv { replaced } => Secret::FromEnv {
                    replaced: *replaced,
                },
                DemoSecret::Stored => Secret::Stored,
            },
            password: &config.user_password,
            password_generated: config.user_password_generated,
        })
    );

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| Failure::Runtime(e.to_string()))
}

/// Where the demo client's secret comes from this time.
enum DemoSecret {
    /// The client was created now, with this generated secret.
    Generated(ClientSecret),
    /// `DEMO_CLIENT_SECRET`; `replaced`: the client was in the database with another secret.
    FromEnv { replaced: bool },
    /// The client was in the database and keeps the secret it has there.
    Stored,
}

/// Registers the demo client, or finds it in the store on a restart and makes its secret the
/// one `DEMO_CLIENT_SECRET` names (when set). The `bool`: found in the store.
async fn demo_client(
    server: &AuthorizationServer,
    config: &Config,
) -> Result<(ClientRecord, DemoSecret, bool), Failure> {
    let store = server.store();
    let unreadable =
        |e: StoreError| Failure::Runtime(format!("DEMO_DB: cannot read the demo client: {e}"));
    let existing = store.client(&config.client_id).await.map_err(unreadable)?;
    let existing = match existing {
        Some(client) => client,
        None => {
            let mut registration = ClientRegistration::new("demo client");
            registration.client_id = Some(config.client_id.clone());
            registration.grant_types = Some(GRANT_TYPES.map(String::from).to_vec());
            registration.scopes = SCOPES.map(String::from).to_vec();
            registration.default_scopes = Some(DEFAULT_SCOPES.map(String::from).to_vec());
            registration.secret = config.client_secret.clone();
            match server.register_client(registration).await {
                Ok((client, Some(generated))) => {
                    return Ok((client, DemoSecret::Generated(generated), false));
                }
                Ok((client, None)) if config.client_secret.is_some() => {
                    return Ok((client, DemoSecret::FromEnv { replaced: false }, false));
                }
                Ok((_, None)) => {
                    return Err(Failure::Runtime(
                        "the server returned no secret for the demo client".into(),
                    ));
                }
                Err(RegistrationError::Invalid {
                    field: "client_id",
                    message,
                }) => return Err(Failure::Config(format!("DEMO_CLIENT_ID: {message}"))),
                // Another process sharing DEMO_DB registered it just now: use that one.
                Err(RegistrationError::Store(StoreError::Conflict(_))) => store
                    .client(&config.client_id)
                    .await
                    .map_err(unreadable)?
                    .ok_or_else(|| {
                        Failure::Runtime("the demo client vanished while registering it".into())
                    })?,
                Err(other) => {
                    return Err(Failure::Runtime(format!(
                        "cannot register the demo client: {other}"
                    )));
                }
            }
        }
    };
    // A restart: the client is in the database.
    let Some(secret) = &config.client_secret else {
        return Ok((existing, DemoSecret::Stored, true));
    };
    if existing.verify_secret(secret.expose()) {
        return Ok((existing, DemoSecret::FromEnv { replaced: false }, true));
    }
    let mut client = existing;
    client.secret_hash = Some(SecretHash::of(secret.expose()));
    let updated = store.update_client(client.clone()).await.map_err(|e| {
        Failure::Runtime(format!(
            "DEMO_DB: cannot store DEMO_CLIENT_SECRET as the demo client's secret: {e}"
        ))
    })?;
    if !updated {
        return Err(Failure::Runtime(
            "the demo client vanished from DEMO_DB while its secret was being replaced".into(),
        ));
    }
    Ok((client, DemoSecret::FromEnv { replaced: true }, true))
}

/// `url` without the password of its user info, for messages.
fn redact(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &url[after_scheme..after_scheme + at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!(
                    "{}{user}:***{}",
                    &url[..after_scheme],
                    &url[after_scheme + at..]
                ),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// The address to reach `local` at: loopback in place of an unspecified address.
fn reachable(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port())
        }
        _ => local,
    }
}

struct Walkthrough<'a> {
    base: &'a str,
    /// The admin console's URL.
    console: &'a str,
    issuer: &'a str,
    /// Where the state is kept, for the `state` line.
    state: &'a str,
    keys_sealed: bool,
    client_id: &'a str,
    /// Found in the database rather than registered now.
    client_found: bool,
    client_status: ClientStatus,
    secret: Secret<'a>,
    password: &'a str,
    password_generated: bool,
}

/// The demo client's secret, as the walkthrough shows it.
enum Secret<'a> {
    /// Generated now: printed.
    Generated(&'a str),
    /// From `DEMO_CLIENT_SECRET`: not echoed. `replaced`: it replaced the stored one.
    FromEnv { replaced: bool },
    /// Kept from the database: unknown here.
    Stored,
}

/// A word for a POSIX shell, single-quoted.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// RFC 6749 §2.3.1: the client id and secret are form-urlencoded before Basic encoding.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The metadata URL of `issuer` (RFC 8414 §3: the well-known part goes before the issuer's path).
fn metadata_url(issuer: &str) -> String {
    const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
    let after_scheme = issuer.find("://").map_or(0, |i| i + 3);
    match issuer[after_scheme..].find('/') {
        Some(i) => {
            let (origin, path) = issuer.split_at(after_scheme + i);
            format!("{origin}{WELL_KNOWN}{path}")
        }
        None => format!("{issuer}{WELL_KNOWN}"),
    }
}

fn walkthrough(w: &Walkthrough<'_>) -> String {
    let base = w.base;
    let metadata = metadata_url(w.issuer);
    // Where this process serves it, whatever origin the issuer names.
    let metadata_path = metadata.find("/.well-known").map_or("", |i| &metadata[i..]);
    let client_id = w.client_id;
    let grants = GRANT_TYPES.join(" ");
    let scopes = SCOPES.join(" ");
    let default_scopes = DEFAULT_SCOPES.join(" ");
    // Values chosen in the environment are not echoed: the lines below read the variables.
    let from_variable = |note: &str| {
        format!(
            "\"{}:$DEMO_CLIENT_SECRET\"   # {note}",
            form_encode(client_id)
        )
    };
    let (secret, client) = match w.secret {
        Secret::Generated(secret) => (
            format!(
                "{secret}   (generated now and stored hashed in DEMO_DB: note it, it is not \
                 shown again; set DEMO_CLIENT_SECRET to choose one)"
            ),
            shell_quote(&format!(
                "{}:{}",
                form_encode(client_id),
                form_encode(secret)
            )),
        ),
        Secret::FromEnv { replaced } => (
            if replaced {
                "from DEMO_CLIENT_SECRET (not shown; it replaced the secret stored in DEMO_DB)"
                    .to_owned()
            } else {
                "from DEMO_CLIENT_SECRET (not shown)".to_owned()
            },
            from_variable("export DEMO_CLIENT_SECRET in this shell"),
        ),
        Secret::Stored => (
            "the one stored in DEMO_DB, shown when the client was created (not known now: set \
             DEMO_CLIENT_SECRET to replace it, or delete DEMO_DB to start over with a new one)"
                .to_owned(),
            from_variable(
                "export DEMO_CLIENT_SECRET=<the secret shown when the client was created>",
            ),
        ),
    };
    let status = match w.client_status {
        ClientStatus::Approved => String::new(),
        other => format!(
            "\n  status         {}   (it cannot get tokens: delete DEMO_DB to start over)",
            other.as_str()
        ),
    };
    let keys = if w.keys_sealed {
        "sealed with DEMO_KEY_SECRET (which every start needs)"
    } else {
        "stored unsealed (DEMO_KEY_SECRET set on a new DEMO_DB seals them)"
    };
    let state = w.state;
    let found = if w.client_found {
        "found in DEMO_DB: registered by an earlier run"
    } else {
        "registered now"
    };
    let (user_password, password) = if w.password_generated {
        (
            format!(
                "{}   (generated now: set DEMO_USER_PASSWORD to choose one)",
                w.password
            ),
            shell_quote(&format!("password={}", w.password)),
        )
    } else {
        (
            "from DEMO_USER_PASSWORD (not shown)".to_owned(),
            "\"password=$DEMO_USER_PASSWORD\"".to_owned(),
        )
    };
    let extract = |field: &str| format!(r#"sed -E 's/.*"{field}":"([^"]+)".*/\1/'"#);
    let access = extract("access_token");
    let refresh = extract("refresh_token");
    format!(
        "\ntower-oauth2 demo: an authorization server and the events API it protects\n\
         \n  listening    {base}\
         \n  issuer       {issuer}\
         \n  metadata     {metadata}\
         \n  endpoints    {base}/oauth2/token  /oauth2/revoke  /oauth2/introspect  /oauth2/jwks.json\
         \n  events API   {base}/public  /me  /events (POST, events:write)  /events/{{id}} (events:read)\
         \n  admin API    {base}/admin/clients  (a token with scope admin)\
         \n  console      {console}  (admin console in the browser: log in as {DEMO_USER} with the password below)\
         \n  state        {state}\
         \n  signing keys {keys}\n\
         \nDemo client (client_secret_basic or client_secret_post):\
         \n  client_id      {client_id}   ({found})\
         \n  client_secret  {secret}{status}\
         \n  grant types    {grants}\
         \n  scopes         {scopes}  (without a scope parameter: {default_scopes})\
         \nDemo user for the password grant: {DEMO_USER} / {user_password}\n\
         \nWalkthrough (paste into a POSIX shell):\n\
         \n  AS={base}\
         \n  CLIENT={client}\n\
         \n  # 1. a token for the demo client (client_credentials)\
         \n  TOKEN=$(curl -s -u \"$CLIENT\" -d grant_type=client_credentials \"$AS/oauth2/token\" | {access})\n\
         \n  # 2. call the API with it: 200, 201, 200\
         \n  curl -s \"$AS/me\" -H \"Authorization: Bearer $TOKEN\"\
         \n  curl -s -X POST \"$AS/events\" -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"title\":\"launch\"}}'\
         \n  curl -s \"$AS/events/1\" -H \"Authorization: Bearer $TOKEN\"\n\
         \n  # 3. introspect it: \"active\":true\
         \n  curl -s -u \"$CLIENT\" -d \"token=$TOKEN\" \"$AS/oauth2/introspect\"\n\
         \n  # 4. revoke it: the API now answers 401 invalid_token, introspection \"active\":false\
         \n  curl -s -u \"$CLIENT\" -d \"token=$TOKEN\" \"$AS/oauth2/revoke\"\
         \n  curl -si \"$AS/me\" -H \"Authorization: Bearer $TOKEN\"\
         \n  curl -s -u \"$CLIENT\" -d \"token=$TOKEN\" \"$AS/oauth2/introspect\"\n\
         \n  # 5. the admin API: a token must ask for scope admin (without it: 403 insufficient_scope)\
         \n  ADMIN=$(curl -s -u \"$CLIENT\" -d grant_type=client_credentials -d scope=admin \"$AS/oauth2/token\" | {access})\
         \n  curl -s \"$AS/admin/clients\" -H \"Authorization: Bearer $ADMIN\"\
         \n  curl -s -X POST \"$AS/admin/clients\" -H \"Authorization: Bearer $ADMIN\" -H 'content-type: application/json' -d '{{\"name\":\"reporting\",\"scopes\":[\"events:read\"]}}'\n\
         \n  # 6. the password grant gives a refresh token; each refresh rotates it, and presenting\
         \n  #    a rotated-out one again revokes the whole family (invalid_grant, then the new one fails too)\
         \n  REFRESH=$(curl -s -u \"$CLIENT\" -d grant_type=password -d username={DEMO_USER} --data-urlencode {password} \"$AS/oauth2/token\" | {refresh})\
         \n  NEW=$(curl -s -u \"$CLIENT\" -d grant_type=refresh_token -d \"refresh_token=$REFRESH\" \"$AS/oauth2/token\" | {refresh})\
         \n  curl -s -u \"$CLIENT\" -d grant_type=refresh_token -d \"refresh_token=$REFRESH\" \"$AS/oauth2/token\"\
         \n  curl -s -u \"$CLIENT\" -d grant_type=refresh_token -d \"refresh_token=$NEW\" \"$AS/oauth2/token\"\n\
         \n  # the metadata and the signing keys\
         \n  curl -s \"$AS{metadata_path}\"\
         \n  curl -s \"$AS/oauth2/jwks.json\"\n",
        issuer = w.issuer,
        console = w.console,
    )
}
