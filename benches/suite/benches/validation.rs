//! Per-request cost of the whole bearer-token layer, side by side with a bare
//! `jsonwebtoken::decode` of the same token, for RS256, ES256, EdDSA and HS256.
//!
//! Run with `cargo bench -p tower-oauth2-benches --bench validation`. Each group
//! `validation/<ALG>` has three functions:
//!
//! - `layer`: an `http::Request` with `Authorization: Bearer <token>` driven through
//!   `BearerAuth` (from `Authenticator::layer`, verified-token cache off) around a trivial
//!   inner service, to completion.
//!   The request is built outside the measurement (`iter_batched`); the future is ready at once
//!   and is polled with a no-op waker, so no async runtime is measured.
//! - `bare_decode`: `jsonwebtoken::decode` with an equivalent `Validation` (algorithm fixed,
//!   `iss`, `aud`, `exp` required, leeway 60 s) and the same verification key, taken from the
//!   same JWKS entry as the layer's.
//! - `layer_cached`: `layer` with the verified-token cache on (the default) and the same token
//!   every time: the cost of a cache hit (hash, lookup, `exp`/`nbf`/revocation re-checks).
//!
//! `dpop/ES256` measures DPoP (RFC 9449): `bearer` and `bearer_cached` are the `layer` rows
//! above, and `dpop` and `dpop_cached` send a DPoP-bound ES256 token (`cnf.jkt`) with
//! `Authorization: DPoP` and a fresh ES256 proof (signed outside the measurement), through an
//! authenticator with `Dpop` on: the proof is verified in full on every request, cache or not.
//!
//! A second group, `cached_key/ES256`, compares a request whose key is cached with a remote JWKS
//! (feature `remote`, served from loopback) and with static keys.
//!
//! The last group, `metrics/ES256`, is what feature `metrics` costs a cache hit: `no_recorder`
//! is `layer_cached` with the feature compiled in and no recorder (its counters are no-ops),
//! then a `metrics-exporter-prometheus` recorder is installed and `prometheus` sends the same
//! request through a new authenticator whose counters record into it. It runs last: the
//! recorder is global, and the rows before it measure without one.

mod bench {
    use std::convert::Infallible;
    use std::future::Future;
    use std::hint::black_box;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use axum::body::Body;
    use criterion::{BatchSize, Criterion, criterion_group};
    use http::header::AUTHORIZATION;
    use http::{HeaderValue, Request, Response, StatusCode};
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use serde::{Deserialize, Serialize};
    use sha2::Digest;
    use tower::{Layer, Service, ServiceExt};
    use tower_oauth2::{Authenticator, Key, KeySet, TokenCache, VerifiedToken};

    const ISSUER: &str = "https://idp.example.com/realms/acme";
    const AUDIENCE: &str = "events-api";
    const HMAC_SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    const RSA_PRIVATE: &str = include_str!("../../../tests/data/keys/rsa_private.pem");
    const EC_PRIVATE: &str = include_str!("../../../tests/data/keys/ec_private.pem");
    const ED_PRIVATE: &str = include_str!("../../../tests/data/keys/ed_private.pem");
    const JWKS: &str = include_str!("../../../tests/data/keys/jwks.json");

    /// RFC 9068-style access-token claims, as an identity provider would issue them.
    #[derive(Serialize, Deserialize)]
    struct Claims {
        sub: String,
        iss: String,
        aud: String,
        exp: u64,
        iat: u64,
        jti: String,
        client_id: String,
        scope: String,
    }

    /// One algorithm's fixture: the signed token, and the key that verifies it for the bare
    /// decode (the same JWKS entry, or the same secret, the authenticator holds).
    struct Case {
        alg: Algorithm,
        token: String,
        decoding: DecodingKey,
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn case(alg: Algorithm, kid: &str, jwks: &JwkSet) -> Case {
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()),
            Algorithm::HS256 => Ok(EncodingKey::from_secret(HMAC_SECRET)),
            other => panic!("no bench key for {other:?}"),
        }
        .expect("test private key");
        let decoding = match alg {
            Algorithm::HS256 => DecodingKey::from_secret(HMAC_SECRET),
            _ => DecodingKey::from_jwk(jwks.find(kid).expect("kid in jwks.json"))
                .expect("usable JWK"),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let iat = now();
        let claims = Claims {
            sub: "user-42".to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: iat + 3600,
            iat,
            jti: "5b0c6f0e-8d1a-4a4e-9c39-2f1d7d8e6a11".to_owned(),
            client_id: "events-web".to_owned(),
            scope: "events:read events:write".to_owned(),
        };
        let token = jsonwebtoken::encode(&header, &claims, &encoding).expect("signing");
        Case {
            alg,
            token,
            decoding,
        }
    }

    /// The external URL the DPoP authenticator checks `htu` against.
    const DPOP_BASE: &str = "https://api.example.com";

    /// The client's proof key (the test EC key) as a public JWK, and its thumbprint.
    fn dpop_client() -> (serde_json::Value, String) {
        let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("jwks.json");
        let mut jwk = jwks["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == "ec-1"))
            .expect("ec-1")
            .clone();
        for member in ["kid", "alg", "use"] {
            jwk.as_object_mut().expect("object").remove(member);
        }
        let jkt = tower_oauth2::dpop::jwk_thumbprint(&jwk.to_string()).expect("thumbprint");
        (jwk, jkt)
    }

    /// A DPoP-bound ES256 access token (`cnf.jkt`) and a maker of fresh proofs for
    /// `GET /events/1` with it.
    struct DpopCase {
        token: String,
        jwk: serde_json::Value,
        encoding: EncodingKey,
        next: std::cell::Cell<u64>,
    }

    impl DpopCase {
        fn new() -> Self {
            let (jwk, jkt) = dpop_client();
            let encoding = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("EC key");
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("ec-1".to_owned());
            header.typ = Some("at+jwt".to_owned());
            let iat = now();
            let claims = serde_json::json!({
                "sub": "user-42", "iss": ISSUER, "aud": AUDIENCE, "exp": iat + 3600,
                "iat": iat, "jti": "5b0c6f0e-8d1a-4a4e-9c39-2f1d7d8e6a12",
                "client_id": "events-web", "scope": "events:read events:write",
                "cnf": {"jkt": jkt},
            });
            let token = jsonwebtoken::encode(&header, &claims, &encoding).expect("signing");
            Self {
                token,
                jwk,
                encoding,
                next: std::cell::Cell::new(0),
            }
        }

        /// A request with the token and a proof no request used before.
        fn request(&self) -> Request<Body> {
            use base64::Engine;
            let n = self.next.get();
            self.next.set(n + 1);
            let mut header = Header::new(Algorithm::ES256);
            header.typ = Some("dpop+jwt".to_owned());
            header.jwk = Some(serde_json::from_value(self.jwk.clone()).expect("jwk"));
            let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(self.token.as_bytes()));
            let claims = serde_json::json!({
                "jti": format!("bench-{n}"), "htm": "GET",
                "htu": format!("{DPOP_BASE}/events/1"), "iat": now(), "ath": ath,
            });
            let proof = jsonwebtoken::encode(&header, &claims, &self.encoding).expect("proof");
            Request::get("/events/1")
                .header(AUTHORIZATION, format!("DPoP {}", self.token))
                .header("dpop", proof)
                .body(Body::empty())
                .expect("request")
        }
    }

    /// The authenticator of `authenticator`, with DPoP proofs checked against `DPOP_BASE`.
    fn dpop_authenticator(cache: TokenCache) -> Authenticator {
        Authenticator::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(JWKS).expect("jwks.json"))
            .token_cache(cache)
            .dpop(tower_oauth2::dpop::Dpop::new(DPOP_BASE).replay_capacity(1_000_000))
            .build()
            .expect("authenticator")
    }

    fn dpop_service(
        cache: TokenCache,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Body>, Infallible>>,
    > + Clone {
        protected(dpop_authenticator(cache))
    }

    fn validation(alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        // The layer checks `nbf` whenever a token carries one.
        validation.validate_nbf = true;
        validation.leeway = 60;
        validation
    }

    fn authenticator(cache: TokenCache) -> Authenticator {
        let hmac = Key::hmac(HMAC_SECRET, tower_oauth2::Algorithm::HS256)
            .expect("HMAC key")
            .with_kid("hmac-1");
        Authenticator::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(JWKS).expect("jwks.json"))
            .key(hmac)
            .token_cache(cache)
            .build()
            .expect("authenticator")
    }

    /// The layer around an inner service that answers 200 only if the layer handed it a verified
    /// token, so the validation's result is used and cannot be optimized away.
    fn service(
        cache: TokenCache,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Body>, Infallible>>,
    > + Clone {
        protected(authenticator(cache))
    }

    /// `auth`'s layer around an inner service that answers 200 only if the layer handed it a
    /// verified token.
    fn protected(
        auth: Authenticator,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Body>, Infallible>>,
    > + Clone {
        auth.layer()
            .layer(tower::service_fn(|req: Request<Body>| async move {
                let status = match req.extensions().get::<VerifiedToken>() {
                    Some(token) if black_box(token.subject()).is_some() => StatusCode::OK,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let mut response = Response::new(Body::empty());
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }))
    }

    fn cases() -> [Case; 4] {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let jwks: JwkSet = serde_json::from_str(JWKS).expect("jwks.json");
        [
            case(Algorithm::RS256, "rsa-1", &jwks),
            case(Algorithm::ES256, "ec-1", &jwks),
            case(Algorithm::EdDSA, "ed-1", &jwks),
            case(Algorithm::HS256, "hmac-1", &jwks),
        ]
    }

    fn request(authorization: &HeaderValue) -> Request<Body> {
        Request::get("/events/1")
            .header(AUTHORIZATION, authorization.clone())
            .body(Body::empty())
            .expect("request")
    }

    /// `VALIDATION_COUNT=<ALG>:<layer|cached|request|bare|dpop|dpop_cached|dpop_request>:<N>`
    /// runs one path N times and exits (the `dpop*` modes use the ES256 DPoP case whatever ALG
    /// says; `dpop_request` only drops a pre-built request, the floor the others subtract),
    /// for counting instructions under callgrind (`scripts/bench_instructions.sh`): `layer`
    /// builds a request and sends it through the layer (cache off), `cached` the same with the
    /// cache on, `cached_metrics` that with a Prometheus recorder installed (feature `metrics`
    /// recording), `request` only builds and drops the request,
    /// `bare` runs the bare decode.
    pub(super) fn count(spec: &str) {
        let mut parts = spec.split(':');
        let (Some(alg), Some(mode), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("VALIDATION_COUNT must be ALG:MODE:N, not {spec:?}");
        };
        let n: usize = n.parse().expect("N is a number");
        let cases = cases();
        let case = cases
            .iter()
            .find(|c| format!("{:?}", c.alg) == alg)
            .expect("ALG is RS256, ES256, EdDSA or HS256");
        let authorization =
            HeaderValue::try_from(format!("Bearer {}", case.token)).expect("header");
        let svc = service(TokenCache::disabled());
        let cached = service(TokenCache::new());
        let validation = validation(case.alg);
        // DPoP: every request needs a proof of its own, signed before the counted loop.
        let dpop = DpopCase::new();
        let dpop_svc = dpop_service(TokenCache::disabled());
        let dpop_cached = dpop_service(TokenCache::new());
        // `cached_metrics`: a Prometheus recorder installed before the authenticator is built.
        let metrics_cached = (mode == "cached_metrics").then(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("the first recorder of this process");
            (handle, service(TokenCache::new()))
        });
        let mut proofs: Vec<Request<Body>> = match mode {
            "dpop" | "dpop_cached" | "dpop_request" => (0..n).map(|_| dpop.request()).collect(),
            _ => Vec::new(),
        };
        let mut one = || match mode {
            "dpop" => {
                let request = proofs.pop().expect("a request per iteration");
                let response = ready(dpop_svc.clone().oneshot(request));
                assert_eq!(response.map(|r| r.status()).ok(), Some(StatusCode::OK));
            }
            "dpop_cached" => {
                let request = proofs.pop().expect("a request per iteration");
                let response = ready(dpop_cached.clone().oneshot(request));
                assert_eq!(response.map(|r| r.status()).ok(), Some(StatusCode::OK));
            }
            "dpop_request" => drop(black_box(proofs.pop())),
            "layer" => {
                let response = ready(svc.clone().oneshot(request(&authorization)));
                assert_eq!(response.map(|r| r.status()).ok(), Some(StatusCode::OK));
            }
            "cached" => {
                let response = ready(cached.clone().oneshot(request(&authorization)));
                assert_eq!(response.map(|r| r.status()).ok(), Some(StatusCode::OK));
            }
            "cached_metrics" => {
                let (_, cached) = metrics_cached.as_ref().expect("built for this mode");
                let response = ready(cached.clone().oneshot(request(&authorization)));
                assert_eq!(response.map(|r| r.status()).ok(), Some(StatusCode::OK));
            }
            "request" => drop(black_box(request(&authorization))),
            "bare" => {
                let claims = jsonwebtoken::decode::<Claims>(
                    black_box(case.token.as_str()),
                    &case.decoding,
                    &validation,
                );
                assert!(black_box(claims).is_ok());
            }
            other => panic!(
                "MODE is layer, cached, cached_metrics, request, bare, dpop, dpop_cached or \
                 dpop_request, not {other:?}"
            ),
        };
        counted_loop(n, &mut one);
    }

    /// The loop `scripts/bench_instructions.sh` counts (`--toggle-collect`), so that set-up,
    /// whose RNG seeding in aws-lc varies from run to run, stays out of the counts.
    #[inline(never)]
    fn counted_loop(n: usize, one: &mut dyn FnMut()) {
        for _ in 0..n {
            one();
        }
    }

    /// Polls a future that must be ready at once (the layer's is: its inner service is
    /// synchronous), without an async runtime.
    fn ready<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the layer's response future should be ready at once"),
        }
    }

    /// A row: `svc` (a layer around a trivial inner service) driven with a request from `make`,
    /// built outside the measurement, until its response.
    fn layer_row<S>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
        make: impl Fn() -> Request<Body>,
        svc: &S,
    ) where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
    {
        group.bench_function(name, |b| {
            b.iter_batched(
                &make,
                |req| ready(svc.clone().oneshot(req)),
                BatchSize::SmallInput,
            );
        });
    }

    /// The ES256 case's token as an `Authorization: Bearer` value.
    fn es256_bearer(cases: &[Case]) -> HeaderValue {
        let es256 = cases
            .iter()
            .find(|c| c.alg == Algorithm::ES256)
            .expect("an ES256 case");
        HeaderValue::try_from(format!("Bearer {}", es256.token)).expect("a header value")
    }

    /// A group with this file's settings: 50 samples, 1 s warm-up, 3 s of measurement.
    fn group(
        c: &mut Criterion,
        name: String,
    ) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
        let mut group = c.benchmark_group(name);
        group.sample_size(50);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group
    }

    fn validation_benches(c: &mut Criterion) {
        let cases = cases();
        let svc = service(TokenCache::disabled());
        let cached = service(TokenCache::new());

        for case in &cases {
            let validation = validation(case.alg);
            let authorization = HeaderValue::try_from(format!("Bearer {}", case.token))
                .expect("token is a valid header value");
            let request = || request(&authorization);

            // Both paths must accept the token before anything is timed.
            let response = ready(svc.clone().oneshot(request())).expect("infallible");
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "layer rejected the {:?} token",
                case.alg
            );
            let decoded = jsonwebtoken::decode::<Claims>(&case.token, &case.decoding, &validation);
            assert!(
                decoded.is_ok(),
                "bare decode rejected the {:?} token",
                case.alg
            );

            let mut group = group(c, format!("validation/{:?}", case.alg));

            layer_row(&mut group, "layer", request, &svc);
            layer_row(&mut group, "layer_cached", request, &cached);
            // The cache key alone: the floor under `layer_cached`, which must hash the whole
            // token on every request.
            group.bench_function("sha256_of_token", |b| {
                b.iter(|| -> [u8; 32] {
                    sha2::Sha256::digest(black_box(case.token.as_bytes())).into()
                });
            });
            group.bench_function("bare_decode", |b| {
                b.iter(|| {
                    jsonwebtoken::decode::<Claims>(
                        black_box(case.token.as_str()),
                        &case.decoding,
                        &validation,
                    )
                });
            });
            group.finish();
        }
    }

    /// DPoP beside Bearer, ES256: what checking the proof adds, with the token cache off and on.
    fn dpop_benches(c: &mut Criterion) {
        let bearer = es256_bearer(&cases());
        let svc = service(TokenCache::disabled());
        let cached = service(TokenCache::new());
        let dpop = DpopCase::new();
        let dpop_svc = dpop_service(TokenCache::disabled());
        let dpop_cached = dpop_service(TokenCache::new());
        for (name, app) in [("dpop", &dpop_svc), ("dpop_cached", &dpop_cached)] {
            let response = ready(app.clone().oneshot(dpop.request())).expect("infallible");
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{name} refused the proof"
            );
        }

        let mut group = group(c, "dpop/ES256".into());
        layer_row(&mut group, "bearer", || request(&bearer), &svc);
        layer_row(&mut group, "bearer_cached", || request(&bearer), &cached);
        layer_row(&mut group, "dpop", || dpop.request(), &dpop_svc);
        layer_row(&mut group, "dpop_cached", || dpop.request(), &dpop_cached);
        group.finish();
    }

    /// A request whose key is cached costs the same with a remote JWKS as with static keys:
    /// both read one immutable key set; the remote one is an `ArcSwap` snapshot.
    fn cached_key_benches(c: &mut Criterion) {
        let cases = cases();
        let case = cases
            .iter()
            .find(|c| c.alg == Algorithm::ES256)
            .expect("ES256 case");
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let remote = runtime.block_on(async {
            let app = axum::Router::new().route("/jwks", axum::routing::get(|| async { JWKS }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, app).await });
            let auth = Authenticator::builder()
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .jwks_url(url)
                .token_cache(TokenCache::disabled())
                .build()
                .expect("remote authenticator");
            auth.refresh_keys().await.expect("JWKS fetched");
            auth
        });
        let static_svc = service(TokenCache::disabled());
        let remote_svc = remote
            .layer()
            .layer(tower::service_fn(|req: Request<Body>| async move {
                let status = match req.extensions().get::<VerifiedToken>() {
                    Some(_) => StatusCode::OK,
                    None => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let mut response = Response::new(Body::empty());
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }));
        let authorization =
            HeaderValue::try_from(format!("Bearer {}", case.token)).expect("header");
        for svc_ok in [
            ready(static_svc.clone().oneshot(request(&authorization))),
            ready(remote_svc.clone().oneshot(request(&authorization))),
        ] {
            assert_eq!(svc_ok.map(|r| r.status()).ok(), Some(StatusCode::OK));
        }
        let mut group = group(c, "cached_key/ES256".into());
        layer_row(
            &mut group,
            "static_keys",
            || request(&authorization),
            &static_svc,
        );
        layer_row(
            &mut group,
            "remote_jwks",
            || request(&authorization),
            &remote_svc,
        );
        group.finish();
        drop(remote);
        drop(runtime);
    }

    /// Feature `metrics` on a cache hit: no recorder, then a Prometheus recorder.
    fn metrics_benches(c: &mut Criterion) {
        let authorization = es256_bearer(&cases());
        let request = || request(&authorization);
        let mut group = group(c, "metrics/ES256".into());
        let quiet = service(TokenCache::new());
        let response = ready(quiet.clone().oneshot(request())).expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        layer_row(&mut group, "no_recorder", request, &quiet);
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the first recorder of this process");
        let recorded = service(TokenCache::new());
        let response = ready(recorded.clone().oneshot(request())).expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            handle.render().contains("tower_oauth2_auth_total"),
            "the counters record into the recorder"
        );
        layer_row(&mut group, "prometheus", request, &recorded);
        group.finish();
    }

    criterion_group!(
        benches,
        validation_benches,
        dpop_benches,
        cached_key_benches,
        metrics_benches
    );
}

fn main() {
    if let Ok(spec) = std::env::var("VALIDATION_COUNT") {
        bench::count(&spec);
        return;
    }
    bench::benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
