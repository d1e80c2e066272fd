//! The authorization server and the API it protects, in one process:
//!
//! ```text
//! /oauth2/token, /revoke, /introspect, /authorize, /jwks.json   the authorization server
//! /.well-known/oauth-authorization-server                       its metadata (RFC 8414)
//! /admin/clients…                                               its admin API: scope admin
//! /public, /me, /events, /events/{id}                           the events API
//! ```
//!
//! At start it registers a demo client, turns on the password grant for one demo user, and prints
//! a curl walkthrough: get a token, call the API, introspect, revoke, use the admin API, refresh.
//!
//! ```sh
//! cargo run --example demo --features server
//! ```
//!
//! Configuration comes from the environment, all optional:
//!
//! | variable | meaning |
//! |---|---|
//! | `BIND` | address to listen on (default `127.0.0.1:3000`) |
//! | `DEMO_ISSUER` | the issuer (default `http://` + the address listened on; `https://…` when clients reach the server through another name) |
//! | `DEMO_CLIENT_ID` | the demo client's id (default `demo-client`) |
//! | `DEMO_CLIENT_SECRET` | its secret, at least 32 characters (default: generated and printed) |
//! | `DEMO_USER_PASSWORD` | the password of user `demo` for the password grant (default: generated and printed) |
//! | `RUST_LOG` | log filter (default `info`; the audit events have target `tower_oauth2::audit`) |
//!
//! A configuration mistake exits with code 2 before anything is served. Everything is kept in
//! memory: clients, tokens and the signing key are gone when the process stops.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_oauth2::RequireScope;
use tower_oauth2::server::{
    AuthorizationServer, ClientRegistration, ClientSecret, HookFuture, MemoryStore,
    PasswordVerifier, RegistrationError,
};

#[path = "shared/events.rs"]
mod events;

const DEFAULT_BIND: &str = "127.0.0.1:3000";
const DEFAULT_CLIENT_ID: &str = "demo-client";
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
    Ok(Config {
        bind: env("BIND")?.unwrap_or_else(|| DEFAULT_BIND.into()),
        issuer: env("DEMO_ISSUER")?,
        client_id: env("DEMO_CLIENT_ID")?.unwrap_or_else(|| DEFAULT_CLIENT_ID.into()),
        client_secret,
        user_password,
        user_password_generated,
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
    match run().await {
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

async fn run() -> Result<(), Failure> {
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

    let server = AuthorizationServer::builder()
        .issuer(issuer.as_str())
        .store(MemoryStore::new())
        .password_verifier(DemoUser {
            password_digest: digest(&SHA256, config.user_password.as_bytes())
                .as_ref()
                .to_vec(),
        })
        .build()
        .await
        .map_err(|e| {
            let hint = if config.issuer.is_some() {
                "check DEMO_ISSUER"
            } else {
                "on an address other than loopback, set DEMO_ISSUER to the https URL clients reach \
                 this server at"
            };
            Failure::Config(format!("{e} ({hint})"))
        })?;
    // As the server normalized it (no trailing slash).
    let issuer = server.issuer().to_owned();

    let mut registration = ClientRegistration::new("demo client");
    registration.client_id = Some(config.client_id.clone());
    registration.grant_types = Some(GRANT_TYPES.map(String::from).to_vec());
    registration.scopes = SCOPES.map(String::from).to_vec();
    registration.default_scopes = Some(DEFAULT_SCOPES.map(String::from).to_vec());
    let chosen_secret = config.client_secret.clone();
    registration.secret = config.client_secret;
    let (client, generated) = server
        .register_client(registration)
        .await
        .map_err(|e| match e {
            RegistrationError::Invalid {
                field: "client_id",
                message,
            } => Failure::Config(format!("DEMO_CLIENT_ID: {message}")),
            other => Failure::Runtime(format!("cannot register the demo client: {other}")),
        })?;
    let (secret, secret_generated) = match (generated, chosen_secret) {
        (Some(secret), _) => (secret, true),
        (None, Some(secret)) => (secret, false),
        (None, None) => {
            return Err(Failure::Runtime(
                "the server returned no secret for the demo client".into(),
            ));
        }
    };

    let auth = server.authenticator();
    let admin = server
        .admin_router()
        .layer(RequireScope::all(["admin"]))
        .layer(auth.layer());
    let app = Router::new()
        .nest("/oauth2", server.router())
        .merge(server.metadata_router())
        .nest("/admin", admin)
        .merge(events::router(&auth));

    println!(
        "{}",
        walkthrough(&Walkthrough {
            base: &base,
            issuer: &issuer,
            client_id: &client.client_id,
            secret: secret.expose(),
            secret_generated,
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
    issuer: &'a str,
    client_id: &'a str,
    secret: &'a str,
    secret_generated: bool,
    password: &'a str,
    password_generated: bool,
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
    let (secret, client) = if w.secret_generated {
        let client = format!("{}:{}", form_encode(client_id), form_encode(w.secret));
        (
            format!(
                "{}   (generated now: set DEMO_CLIENT_SECRET to choose one)",
                w.secret
            ),
            shell_quote(&client),
        )
    } else {
        (
            "from DEMO_CLIENT_SECRET (not shown)".to_owned(),
            format!(
                "\"{}:$DEMO_CLIENT_SECRET\"   # export DEMO_CLIENT_SECRET in this shell",
                form_encode(client_id)
            ),
        )
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
         \n  admin API    {base}/admin/clients  (a token with scope admin)\n\
         \nDemo client (client_secret_basic or client_secret_post):\
         \n  client_id      {client_id}\
         \n  client_secret  {secret}\
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
    )
}
