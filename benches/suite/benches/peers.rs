//! The same request through a full axum `Router`, with tower-oauth2 and with peer crates: a
//! `GET /me` with a valid bearer token, whose handler answers 200 with the token's `sub` as a
//! small body.
//!
//! Run with `cargo bench -p tower-oauth2-benches --bench peers`. One group per algorithm,
//! `peers/RS256` and `peers/ES256`, each with:
//!
//! - `no_auth`: the baseline, the same route without any layer (the handler answers a constant
//!   of the same length).
//! - `tower_oauth2/cache_off`: `Authenticator::layer` with `TokenCache::disabled()`, so every
//!   request verifies the signature.
//! - `tower_oauth2/cache_on`: the same with `TokenCache::new()`; the token is the same on every
//!   request (cached in the setup step), so requests are served from the verified-token cache.
//! - `axum-jwt-auth` (0.7, from crates.io): its `Claims<T>` extractor with a `LocalDecoder` on
//!   the public PEM key. It verifies in the extractor, not in a layer. It pins jsonwebtoken 10
//!   with the RustCrypto backend (`features = ["rust_crypto"]` in its manifest, not optional),
//!   so its figures include RustCrypto's RSA and P-256 rather than aws-lc-rs.
//! - `tower-oauth2-resource-server` (0.12, from crates.io): its layer with a static JWKS tenant
//!   (`TenantConfiguration::static_builder`, the same `jwks.json`), built with its
//!   `jwt-aws-lc-rs` feature, so it shares our jsonwebtoken 11 and our aws-lc-rs backend.
//!
//! `jwt-authorizer` (0.15, the newest release) depends on axum 0.7: its layer's rejection is
//! `From<AuthError> for axum 0.7's Response` and its `JwtClaims` extractor implements axum 0.7's
//! `FromRequestParts`, so it cannot sit on an axum 0.8 `Router`. It is measured by its own bench
//! crate, `benches/jwt-authorizer/` (a separate Cargo project with its own `Cargo.lock`, not a
//! workspace member), on axum 0.7 with an axum 0.7 `no_auth` baseline; run it there with
//! `cargo bench`.
//!
//! Every configuration checks `iss`, `aud` and `exp` (leeway 60 s) and verifies with the group's
//! algorithm only: tower-oauth2 reads `jwks.json`, whose keys `rsa-1` and `ec-1` name their
//! `alg`; tower-oauth2-resource-server reads the same JWKS, allowed the group's algorithm;
//! axum-jwt-auth has the one public key and `Validation::new(alg)`. (jwt-authorizer, in its own
//! crate, compares `iss` and `aud` too, but its `Validation` makes only `exp` a required claim:
//! jsonwebtoken 9 skips the `iss` and `aud` checks for a token without them. The valid token
//! carries all three, so the work timed is the same.)
//!
//! Before anything is timed, each configuration is sent the valid token (200 with the subject
//! as body expected) and a tampered one (the payload's `sub` changed, the signature kept; 401
//! expected); the bench panics otherwise. The router is cloned per iteration and driven with
//! `tower::ServiceExt::oneshot` on a current-thread tokio runtime; the request is built outside
//! the measurement.
//!
//! Before the timings, the bench also prints one measurement that is not a timing: the memory
//! a cached entry takes. It verifies 100,000 distinct HS256 tokens (distinct `jti`) with the
//! cache on (its byte limit raised so none is evicted) and prints `token_cache_stats()`
//! (entries, weighted bytes, bytes per entry) and the growth of the process's resident set
//! (`/proc/self/statm`) across those verifications, after a control run of the same
//! verifications with the cache off; the target is 100,000 entries in less than 100 MB. It runs
//! only under `cargo bench` (with `--bench`), not in criterion's test mode.

mod bench {
    use std::convert::Infallible;
    use std::hint::black_box;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use axum::body::Body;
    use axum::routing::get;
    use axum::{Extension, Router};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use criterion::{BatchSize, Criterion, criterion_group};
    use http::header::AUTHORIZATION;
    use http::{HeaderValue, Request, Response, StatusCode};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde::{Deserialize, Serialize};
    use tokio::runtime::Runtime;
    use tower::ServiceExt;
    use tower_oauth2::{Authenticator, Key, KeySet, TokenCache, VerifiedToken};
    use tower_oauth2_resource_server::server::OAuth2ResourceServer;
    use tower_oauth2_resource_server::tenant::TenantConfiguration;
    use tower_oauth2_resource_server::validation::ClaimsValidationSpec;

    const ISSUER: &str = "https://idp.example.com/realms/acme";
    const AUDIENCE: &str = "events-api";
    const SUBJECT: &str = "user-42";
    const HMAC_SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    /// The tokens verified for the memory measurement.
    const CACHED_TOKENS: usize = 100_000;

    const RSA_PRIVATE: &str = include_str!("../../../tests/data/keys/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../../../tests/data/keys/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("../../../tests/data/keys/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../../../tests/data/keys/ec_public.pem");
    const JWKS: &str = include_str!("../../../tests/data/keys/jwks.json");

    /// RFC 9068-style access-token claims, as an identity provider would issue them.
    #[derive(Serialize)]
    struct TokenClaims<'a> {
        sub: &'a str,
        iss: &'a str,
        aud: &'a str,
        exp: u64,
        iat: u64,
        jti: &'a str,
        client_id: &'a str,
        scope: &'a str,
    }

    /// What the peers deserialize for the handler (each verifies the standard claims itself).
    #[derive(Clone, Deserialize)]
    struct PeerClaims {
        sub: String,
        #[allow(dead_code)]
        client_id: String,
        #[allow(dead_code)]
        scope: String,
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sign(alg: Algorithm, kid: &str, encoding: &EncodingKey, jti: &str) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let iat = now();
        let claims = TokenClaims {
            sub: SUBJECT,
            iss: ISSUER,
            aud: AUDIENCE,
            exp: iat + 3600,
            iat,
            jti,
            client_id: "events-web",
            scope: "events:read events:write",
        };
        jsonwebtoken::encode(&header, &claims, encoding).expect("signing")
    }

    /// The same token with `sub` changed in the payload and the signature kept.
    fn tampered(token: &str) -> String {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            panic!("a JWS in compact form");
        };
        let json = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
        let json = String::from_utf8(json).expect("UTF-8 payload");
        let changed = json.replace(SUBJECT, "user-43");
        assert_ne!(json, changed, "the payload names the subject");
        format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(changed))
    }

    fn request(token: &str) -> Request<Body> {
        let authorization = HeaderValue::try_from(format!("Bearer {token}")).expect("header");
        Request::get("/me")
            .header(AUTHORIZATION, authorization)
            .body(Body::empty())
            .expect("request")
    }

    /// One algorithm: its token, the tampered copy, and the keys each configuration reads.
    struct Case {
        alg: Algorithm,
        token: String,
        tampered: String,
        /// The public key in PEM, for axum-jwt-auth.
        public_pem: &'static str,
    }

    fn case(alg: Algorithm) -> Case {
        let (encoding, kid, public_pem) = match alg {
            Algorithm::RS256 => (
                EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()),
                "rsa-1",
                RSA_PUBLIC,
            ),
            Algorithm::ES256 => (
                EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()),
                "ec-1",
                EC_PUBLIC,
            ),
            other => panic!("no bench key for {other:?}"),
        };
        let token = sign(
            alg,
            kid,
            &encoding.expect("test private key"),
            "5b0c6f0e-8d1a-4a4e-9c39-2f1d7d8e6a11",
        );
        Case {
            alg,
            tampered: tampered(&token),
            token,
            public_pem,
        }
    }

    fn no_auth() -> Router {
        // The same length as the subject the other handlers answer.
        Router::new().route("/me", get(|| async { "user-00" }))
    }

    fn tower_oauth2(cache: TokenCache) -> Router {
        let auth = Authenticator::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(JWKS).expect("jwks.json"))
            .token_cache(cache)
            .build()
            .expect("authenticator");
        Router::new()
            .route(
                "/me",
                get(|token: VerifiedToken| async move {
                    token.subject().unwrap_or_default().to_owned()
                }),
            )
            .layer(auth.layer())
    }

    fn axum_jwt_auth(case: &Case) -> Router {
        use jsonwebtoken_10 as jwt10;
        let key = match case.alg {
            Algorithm::RS256 => jwt10::DecodingKey::from_rsa_pem(case.public_pem.as_bytes()),
            Algorithm::ES256 => jwt10::DecodingKey::from_ec_pem(case.public_pem.as_bytes()),
            other => panic!("no bench key for {other:?}"),
        }
        .expect("public PEM");
        let alg = match case.alg {
            Algorithm::RS256 => jwt10::Algorithm::RS256,
            _ => jwt10::Algorithm::ES256,
        };
        let mut validation = jwt10::Validation::new(alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 60;
        let decoder: axum_jwt_auth::Decoder<PeerClaims> = Arc::new(
            axum_jwt_auth::LocalDecoder::builder()
                .keys(vec![key])
                .validation(validation)
                .build()
                .expect("axum-jwt-auth decoder"),
        );
        Router::new()
            .route(
                "/me",
                get(|claims: axum_jwt_auth::Claims<PeerClaims>| async move { claims.claims.sub }),
            )
            .with_state(decoder)
    }

    fn tower_oauth2_resource_server(runtime: &Runtime, alg: Algorithm) -> Router {
        let tenant = TenantConfiguration::static_builder(JWKS)
            .audiences(&[AUDIENCE])
            .claims_validation(
                ClaimsValidationSpec::new()
                    .iss(ISSUER)
                    .exp(true)
                    .aud(&vec![AUDIENCE.to_owned()]),
            )
            .allowed_algorithms(&[alg])
            .build()
            .expect("static tenant");
        let server = runtime
            .block_on(
                OAuth2ResourceServer::<PeerClaims>::builder()
                    .add_tenant(tenant)
                    .build(),
            )
            .expect("tower-oauth2-resource-server");
        Router::new()
            .route(
                "/me",
                get(|Extension(claims): Extension<PeerClaims>| async move { claims.sub }),
            )
            .layer(server.into_layer())
    }

    /// Sends `token` through `app` and returns the status and body.
    fn send(runtime: &Runtime, app: &Router, token: &str) -> (StatusCode, String) {
        runtime.block_on(async {
            let response: Response<Body> = app
                .clone()
                .oneshot(request(token))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .expect("response body");
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    /// Panics unless `app` answers 200 (with the subject as body, `expect_body`) to the valid
    /// token and 401 to the tampered one.
    fn check(runtime: &Runtime, name: &str, case: &Case, app: &Router, expect_body: &str) {
        let (status, body) = send(runtime, app, &case.token);
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, expect_body),
            "{name} ({:?}) must accept the valid token",
            case.alg
        );
        let (status, body) = send(runtime, app, &case.tampered);
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name} ({:?}) must refuse the tampered token; it answered {body:?}",
            case.alg
        );
    }

    fn peer_benches(c: &mut Criterion) {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");

        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let case = case(alg);
            let baseline = no_auth();
            let (status, _) = send(&runtime, &baseline, &case.token);
            assert_eq!(
                status,
                StatusCode::OK,
                "the route without a layer answers 200"
            );

            let configs = [
                (
                    "tower_oauth2/cache_off",
                    tower_oauth2(TokenCache::disabled()),
                ),
                // The setup check below caches the token; every timed request is a hit.
                ("tower_oauth2/cache_on", tower_oauth2(TokenCache::new())),
                ("axum-jwt-auth", axum_jwt_auth(&case)),
                (
                    "tower-oauth2-resource-server",
                    tower_oauth2_resource_server(&runtime, alg),
                ),
            ];
            for (name, app) in &configs {
                check(&runtime, name, &case, app, SUBJECT);
            }

            let mut group = c.benchmark_group(format!("peers/{alg:?}"));
            group.sample_size(50);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
            let token = case.token.as_str();
            group.bench_function("no_auth", |b| {
                b.to_async(&runtime).iter_batched(
                    || request(token),
                    |req| baseline.clone().oneshot(req),
                    BatchSize::SmallInput,
                );
            });
            for (name, app) in &configs {
                group.bench_function(*name, |b| {
                    b.to_async(&runtime).iter_batched(
                        || request(token),
                        |req| app.clone().oneshot(req),
                        BatchSize::SmallInput,
                    );
                });
            }
            group.finish();
        }
    }

    /// The resident set in bytes, from `/proc/self/statm` (its second field, in pages of 4 KiB,
    /// the page size on x86_64 Linux and the usual one on aarch64).
    fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    /// An authenticator for the HS256 tokens of the memory measurement.
    fn hmac_authenticator(cache: TokenCache) -> Authenticator {
        let key = Key::hmac(HMAC_SECRET, tower_oauth2::Algorithm::HS256)
            .expect("HMAC key")
            .with_kid("hmac-1");
        Authenticator::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .key(key)
            .token_cache(cache)
            .build()
            .expect("authenticator")
    }

    /// Verifies every token with `auth` and returns the resident-set growth in bytes across the
    /// verifications (the first token is verified before, so lazily allocated state is not
    /// counted).
    fn verify_all(auth: &Authenticator, tokens: &[String]) -> Option<u64> {
        assert!(auth.verify(&tokens[0]).is_ok(), "the HS256 token verifies");
        let before = resident_bytes()?;
        for token in &tokens[1..] {
            let verified = auth.verify(token).expect("every token verifies");
            black_box(verified);
        }
        // Applies moka's pending writes before the resident set is read.
        black_box(auth.token_cache_stats());
        Some(resident_bytes()?.saturating_sub(before))
    }

    /// Verifies 100,000 distinct HS256 tokens with the cache on and prints what the cache holds
    /// and how much the resident set grew. Not a timing. A control run with the cache off
    /// first shows what the verifications alone leave resident (their transient allocations,
    /// whose pages the cached run then reuses).
    pub(super) fn cache_memory() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let encoding = EncodingKey::from_secret(HMAC_SECRET);
        let tokens: Vec<String> = (0..CACHED_TOKENS)
            .map(|i| {
                sign(
                    Algorithm::HS256,
                    "hmac-1",
                    &encoding,
                    &format!("jti-{i:08}"),
                )
            })
            .collect();
        let start = resident_bytes();

        let control = verify_all(&hmac_authenticator(TokenCache::disabled()), &tokens);
        // Room for every entry, so none is evicted and the count is the whole 100,000.
        let auth = hmac_authenticator(TokenCache::new().max_bytes(1 << 30));
        let growth = verify_all(&auth, &tokens);
        let (entries, bytes) = auth.token_cache_stats().expect("the cache is on");
        let end = resident_bytes();

        println!("token cache memory ({CACHED_TOKENS} distinct HS256 tokens):");
        println!(
            "  token_cache_stats (cache on): {entries} entries, {bytes} bytes ({:.1} MiB), \
             {} bytes/entry",
            mib(bytes),
            bytes / entries.max(1)
        );
        match (start, control, growth, end) {
            (Some(start), Some(control), Some(growth), Some(end)) => {
                println!(
                    "  RSS growth (/proc/self/statm), cache off (control): {:.1} MiB",
                    mib(control)
                );
                println!(
                    "  RSS growth (/proc/self/statm), cache on: {:.1} MiB = {} bytes, \
                     {} bytes/entry (RSS {:.1} MiB -> {:.1} MiB)",
                    mib(growth),
                    growth,
                    growth / entries.max(1),
                    mib(start),
                    mib(end)
                );
                println!(
                    "  target, 100,000 entries in < 100 MB (100,000,000 bytes) of RSS: {}",
                    if entries >= 100_000 && growth < 100_000_000 {
                        "met"
                    } else {
                        "NOT met"
                    }
                );
            }
            _ => println!("  RSS: /proc/self/statm is not readable here"),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn mib(bytes: u64) -> f64 {
        bytes as f64 / (1024.0 * 1024.0)
    }

    criterion_group!(benches, peer_benches);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        bench::cache_memory();
    }
    bench::benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
