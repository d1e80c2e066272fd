//! A protected events API validating an external issuer's tokens: the crate's main job. The
//! routes (in `shared/events.rs`, which the `demo` example serves too):
//!
//! ```text
//! GET  /public       open to everyone
//! GET  /me           any valid token; answers sub, client_id and scopes
//! GET  /events/{id}  scope events:read
//! POST /events       scope events:write
//! GET  /metrics      the crate's metrics, Prometheus text (built with --features metrics)
//! GET  /openapi.json the OpenAPI document, bearer JWT and each route's scopes (--features utoipa)
//! ```
//!
//! Configuration comes from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `BIND` | address to listen on (default `127.0.0.1:3000`) |
//! | `OAUTH2_ISSUER` | the `iss` tokens must carry (required) |
//! | `OAUTH2_AUDIENCE` | the `aud` tokens must contain (required) |
//! | `OAUTH2_JWKS_FILE` | a JWKS JSON file with the issuer's public keys |
//! | `OAUTH2_JWKS_URL` | the issuer's JWKS URL, fetched, cached and refreshed |
//! | `OAUTH2_DPOP_URL` | accept DPoP-bound tokens (RFC 9449) with proofs for this external URL of the service (default: bearer tokens only) |
//! | `OAUTH2_DPOP_REQUIRED` | `1`: DPoP-bound tokens only (needs `OAUTH2_DPOP_URL`) |
//! | `OAUTH2_INTROSPECTION_CLIENT_ID` | with the secret below: validate opaque tokens through the issuer's introspection endpoint (RFC 7662; needs `--features introspection`) |
//! | `OAUTH2_INTROSPECTION_CLIENT_SECRET` | this API's client secret at the issuer, for introspection |
//! | `OAUTH2_INTROSPECTION_URL` | the introspection endpoint (default: discovered from the issuer's metadata) |
//! | `OAUTH2_OPENAPI_TOKEN_URL` | `/openapi.json` names an OAuth 2.0 client-credentials flow at this token URL instead of an HTTP bearer JWT scheme (needs `--features utoipa`) |
//! | `OAUTH2_OPENAPI_DISCOVER` | `1`: `/openapi.json` names the OAuth 2.0 flows `OAUTH2_ISSUER`'s metadata announces, at its endpoints (needs `--features utoipa`) |
//!
//! With introspection and neither `OAUTH2_JWKS_FILE` nor `OAUTH2_JWKS_URL`, every token is
//! introspected; with a JWKS too, the issuer's JWTs are verified locally and other tokens
//! introspected.
//!
//! With neither `OAUTH2_JWKS_FILE` nor `OAUTH2_JWKS_URL`, the JWKS URL is discovered from
//! `OAUTH2_ISSUER` (`/.well-known/openid-configuration`). The keys are loaded at start; if that
//! fails, the service exits with code 2.
//!
//! `cargo run --example protected_service -- --demo` needs none of them: it generates an
//! Ed25519 key, mints tokens with it and prints ready-to-paste curl lines.
//!
//! `--demo-tokens N FILE` (implies `--demo`) also writes N distinct valid tokens (scope
//! `events:read`, distinct `jti`, valid 1 hour), one per line, to FILE before serving, and prints
//! `demo tokens: wrote N to FILE`; `scripts/load.sh` drives its load test with them.

use std::process::ExitCode;

use tower_oauth2::Authenticator;

#[path = "shared/events.rs"]
mod events;
#[path = "shared/metrics.rs"]
mod metrics;

/// Reads a required variable, or explains what is missing.
fn required(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("{name} is not set: {what}")),
    }
}

async fn authenticator_from_env() -> Result<Authenticator, String> {
    let issuer = required("OAUTH2_ISSUER", "the `iss` your tokens carry")?;
    let audience = required(
        "OAUTH2_AUDIENCE",
        "this API's identifier, as in the tokens' `aud`",
    )?;
    let builder = Authenticator::builder().issuer(issuer).audience(audience);
    let optional = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    let builder = match (optional("OAUTH2_JWKS_FILE"), optional("OAUTH2_JWKS_URL")) {
        (Some(_), Some(_)) => {
            return Err("set OAUTH2_JWKS_FILE or OAUTH2_JWKS_URL, not both".into());
        }
        (Some(file), None) => builder.jwks_file(file),
        (None, Some(url)) => builder.jwks_url(url),
        // Neither: discover the JWKS URL from the issuer's metadata.
        (None, None) => builder,
    };
    let builder = introspection_from_env(builder, &optional)?;
    let builder = match optional("OAUTH2_DPOP_URL") {
        Some(url) => builder.dpop(tower_oauth2::dpop::Dpop::new(url)),
        None => builder,
    };
    let builder = match optional("OAUTH2_DPOP_REQUIRED").as_deref() {
        Some("1") => builder.dpop_mode(tower_oauth2::dpop::DpopMode::Required),
        Some("0") | None => builder,
        Some(_) => return Err("OAUTH2_DPOP_REQUIRED must be 1 or 0".into()),
    };
    let auth = builder.build().map_err(|e| e.to_string())?;
    // Fail fast: a service that cannot get its issuer's keys at start says so. (Without this
    // call it would start anyway and answer 401 until the keys arrive.)
    auth.refresh_keys()
        .await
        .map_err(|e| format!("cannot load the signing keys: {e}"))?;
    Ok(auth)
}

/// `OAUTH2_INTROSPECTION_*`: opaque tokens through the issuer's introspection endpoint.
#[cfg(feature = "introspection")]
fn introspection_from_env(
    builder: tower_oauth2::AuthenticatorBuilder,
    optional: &dyn Fn(&'static str) -> Option<String>,
) -> Result<tower_oauth2::AuthenticatorBuilder, String> {
    use tower_oauth2::introspection::Introspection;
    let id = optional("OAUTH2_INTROSPECTION_CLIENT_ID");
    let secret = optional("OAUTH2_INTROSPECTION_CLIENT_SECRET");
    let config = match (id, secret) {
        (None, None) => return Ok(builder),
        (Some(id), Some(secret)) => Introspection::new(id, secret),
        _ => {
            return Err(
                "set both OAUTH2_INTROSPECTION_CLIENT_ID and OAUTH2_INTROSPECTION_CLIENT_SECRET"
                    .into(),
            );
        }
    };
    let config = match optional("OAUTH2_INTROSPECTION_URL") {
        Some(url) => config.endpoint(url),
        None => config,
    };
    Ok(builder.introspection(config))
}

/// Without the feature, the introspection variables are an error rather than ignored.
#[cfg(not(feature = "introspection"))]
fn introspection_from_env(
    builder: tower_oauth2::AuthenticatorBuilder,
    optional: &dyn Fn(&'static str) -> Option<String>,
) -> Result<tower_oauth2::AuthenticatorBuilder, String> {
    match optional("OAUTH2_INTROSPECTION_CLIENT_ID") {
        Some(_) => Err("OAUTH2_INTROSPECTION_* needs the example built with \
                        --features introspection"
            .into()),
        None => Ok(builder),
    }
}

/// The OpenAPI document's security scheme: the issuer's OAuth 2.0 flows from its metadata
/// (`OAUTH2_OPENAPI_DISCOVER=1`), a client-credentials flow at `OAUTH2_OPENAPI_TOKEN_URL`, or
/// an HTTP bearer JWT scheme.
#[cfg(feature = "utoipa")]
async fn openapi_security() -> Result<tower_oauth2::openapi::ApiSecurity, String> {
    use tower_oauth2::openapi::{ApiSecurity, OAuth2Flows};
    let set = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    if let Some(url) = set("OAUTH2_OPENAPI_TOKEN_URL") {
        return Ok(ApiSecurity::oauth2(
            OAuth2Flows::new().client_credentials(url),
        ));
    }
    match set("OAUTH2_OPENAPI_DISCOVER").as_deref() {
        Some("1") => {
            let issuer = required("OAUTH2_ISSUER", "the issuer whose flows to describe")?;
            let flows = OAuth2Flows::discover(&issuer)
                .await
                .map_err(|e| e.to_string())?;
            Ok(ApiSecurity::oauth2(flows))
        }
        Some("0") | None => {
            Ok(ApiSecurity::bearer_jwt()
                .description("a JWT access token from the configured issuer"))
        }
        Some(_) => Err("OAUTH2_OPENAPI_DISCOVER must be 1 or 0".into()),
    }
}

/// `--demo-tokens N FILE`: how many load-test tokens to mint, and where to write them.
fn demo_tokens_arg() -> Result<Option<(usize, std::path::PathBuf)>, String> {
    let args: Vec<String> = std::env::args().collect();
    let Some(at) = args.iter().position(|a| a == "--demo-tokens") else {
        return Ok(None);
    };
    let usage = "--demo-tokens takes a count and a file: --demo-tokens N FILE";
    let (Some(n), Some(file)) = (args.get(at + 1), args.get(at + 2)) else {
        return Err(usage.into());
    };
    match n.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some((n, file.into()))),
        _ => Err(format!("{usage} (N a positive number, not {n:?})")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // First: every count, the first JWKS fetch's included, lands in the recorder.
    let metrics = match metrics::install() {
        Ok(route) => route,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let demo_tokens = match demo_tokens_arg() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let demo = demo_tokens.is_some() || std::env::args().any(|a| a == "--demo");
    // Configuration mistakes are reported before anything listens.
    let configured = if demo {
        None
    } else {
        match authenticator_from_env().await {
            Ok(auth) => Some(auth),
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("(or run with --demo to try it with a generated key)");
                return ExitCode::from(2);
            }
        }
    };

    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {bind}: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().map_or(bind, |a| a.to_string());
    println!("protected_service listening on http://{addr}");
    let auth = match configured {
        Some(auth) => auth,
        None => match demo::setup(&addr, demo_tokens.as_ref()) {
            Ok((auth, walkthrough)) => {
                println!("{walkthrough}");
                auth
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(feature = "utoipa")]
    let security = match openapi_security().await {
        Ok(security) => security,
        Err(e) => {
            eprintln!("error: the OpenAPI document: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(not(feature = "utoipa"))]
    let security = ();
    let openapi = match events::openapi_router(security) {
        Ok(route) => route,
        Err(e) => {
            eprintln!("error: the OpenAPI document: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = events::router(&auth).merge(metrics).merge(openapi);
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--demo`: a generated Ed25519 key stands in for an identity provider.
mod demo {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use tower_oauth2::{Authenticator, KeySet};

    const ISSUER: &str = "https://demo-issuer.local";
    const AUDIENCE: &str = "events-api";

    pub(super) fn setup(
        addr: &str,
        load_tokens: Option<&(usize, std::path::PathBuf)>,
    ) -> Result<(Authenticator, String), String> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| "cannot generate a key")?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "bad generated key")?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","use":"sig","alg":"EdDSA","kid":"demo","x":"{x}"}}]}}"#
        );
        let auth = Authenticator::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(&jwks).map_err(|e| e.to_string())?)
            .build()
            .map_err(|e| e.to_string())?;

        let key = EncodingKey::from_ed_der(pkcs8.as_ref());
        let mint = |scope: &str, jti: &str| -> Result<String, String> {
            let now = jsonwebtoken::get_current_timestamp();
            let claims = serde_json::json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "demo-user", "client_id": "demo-client",
                "scope": scope, "iat": now, "exp": now + 3600, "jti": jti,
            });
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some("demo".into());
            header.typ = Some("at+jwt".into());
            sign(&header, &claims, &key)
        };
        let reader = mint("events:read", "demo-events:read")?;
        let writer = mint("events:read events:write", "demo-events:read events:write")?;
        if let Some((n, file)) = load_tokens {
            write_tokens(*n, file, |i| mint("events:read", &format!("demo-load-{i}")))?;
            println!("demo tokens: wrote {n} to {}", file.display());
        }
        let base = format!("http://{addr}");
        let text = format!(
            "\nDemo mode: tokens below are signed with a key generated just now (valid 1 hour).\n\
             \n  # open route\n  curl -i {base}/public\n\
             \n  # no token: 401 with WWW-Authenticate: Bearer realm=\"api\"\n  curl -i {base}/me\n\
             \n  # who am I\n  curl -s {base}/me -H 'Authorization: Bearer {reader}'\n\
             \n  # create an event: the reader gets 403 insufficient_scope, the writer 201\n  \
             curl -i -X POST {base}/events -H 'Authorization: Bearer {reader}' \
             -H 'content-type: application/json' -d '{{\"title\":\"launch\"}}'\n  \
             curl -i -X POST {base}/events -H 'Authorization: Bearer {writer}' \
             -H 'content-type: application/json' -d '{{\"title\":\"launch\"}}'\n\
             \n  # read it back\n  curl -s {base}/events/1 -H 'Authorization: Bearer {reader}'\n\
             \n  # a tampered token: 401 invalid_token\n  \
             curl -i {base}/me -H 'Authorization: Bearer {reader}x'\n"
        );
        Ok((auth, text))
    }

    /// Writes `n` tokens from `mint`, one per line, to a temporary file renamed to `file` once
    /// complete, so a reader never sees a partial list.
    fn write_tokens(
        n: usize,
        file: &std::path::Path,
        mint: impl Fn(usize) -> Result<String, String>,
    ) -> Result<(), String> {
        use std::io::Write;
        let cannot = |e: std::io::Error| format!("cannot write {}: {e}", file.display());
        let mut partial = file.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(cannot)?);
        for i in 0..n {
            writeln!(out, "{}", mint(i)?).map_err(cannot)?;
        }
        out.into_inner()
            .map_err(|e| cannot(e.into_error()))?
            .sync_all()
            .map_err(cannot)?;
        std::fs::rename(&partial, file).map_err(cannot)
    }

    fn sign(
        header: &Header,
        claims: &serde_json::Value,
        key: &EncodingKey,
    ) -> Result<String, String> {
        // Through the provider explicitly, so the example also runs with several backends on.
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).map_err(|e| e.to_string())?),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signer =
            (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.signer_factory)(&Algorithm::EdDSA, key)
                .map_err(|e| e.to_string())?;
        let signature = jsonwebtoken::signature::Signer::try_sign(&*signer, input.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}
