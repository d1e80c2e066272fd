//! Behaviour of the layer, the scope layers and the extractors, driven through real axum routers.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_oauth2::Algorithm;
use tower_oauth2::dangerous::DangerousBuilderExt;
use tower_oauth2::token_source::{AuthorizationHeader, CookieToken, QueryToken};
use tower_oauth2::{
    AuthError, AuthErrorKind, Authenticator, Claims, Key, KeySet, RequireScope, Scopes,
    StandardClaims, VerifiedToken,
};

#[tokio::test]
async fn accepts_every_supported_algorithm_and_hands_claims_to_the_handler() {
    let app = app(&authenticator_with_hmac());
    for alg in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        let reply = get_with(
            &app,
            "/me",
            &token_with(alg, &claims("events:read profile")),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{alg:?}: {:?}", reply.body);
        assert_eq!(
            reply.body,
            json!({"sub": "user-42", "client_id": "client-7", "scopes": ["events:read", "profile"]}),
            "{alg:?}"
        );
    }
}

#[tokio::test]
async fn the_jwk_alg_pins_the_algorithm_while_a_pem_rsa_key_allows_the_rsa_family() {
    let (key, _) = signing_key(Algorithm::PS256);
    let claims = claims("").to_string();
    let pss_jwks_kid = sign_raw(
        r#"{"alg":"PS256","kid":"rsa-1"}"#,
        &claims,
        &key,
        Algorithm::PS256,
    );
    let reply = get_with(&app(&authenticator()), "/me", &pss_jwks_kid).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "rsa-1 is pinned to RS256 by its JWK"
    );
    assert_eq!(
        reply.description(),
        "the key named by kid does not allow this algorithm"
    );

    let pem = Key::from_pem(RSA_PUBLIC).unwrap().with_kid("rsa-pem");
    let auth = builder().key(pem).build().unwrap();
    for alg in [Algorithm::PS256, Algorithm::RS256] {
        let header = json!({"alg": alg, "kid": "rsa-pem"}).to_string();
        let token = sign_raw(&header, &claims, &key, alg);
        assert_eq!(
            get_with(&app(&auth), "/me", &token).await.status,
            StatusCode::OK,
            "{alg:?}"
        );
    }
    let narrowed = Key::from_pem(RSA_PUBLIC).unwrap().with_kid("rsa-pem");
    let narrowed = narrowed.with_algorithms([Algorithm::PS256]).unwrap();
    let auth = builder().key(narrowed).build().unwrap();
    let header = json!({"alg": "RS256", "kid": "rsa-pem"}).to_string();
    let token = sign_raw(&header, &claims, &key, Algorithm::RS256);
    assert_eq!(
        get_with(&app(&auth), "/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn hmac_is_refused_unless_a_secret_is_configured() {
    let token = token_with(Algorithm::HS256, &claims(""));
    let reply = get_with(&app(&authenticator()), "/me", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.description(), "no key with this kid");
    let reply = get_with(&app(&authenticator_with_hmac()), "/me", &token).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn token_without_kid_is_tried_against_keys_of_its_algorithm() {
    let (key, _) = signing_key(Algorithm::EdDSA);
    let token = sign_raw(
        r#"{"alg":"EdDSA"}"#,
        &claims("").to_string(),
        &key,
        Algorithm::EdDSA,
    );
    assert_eq!(
        get_with(&app(&authenticator()), "/me", &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn missing_token_gets_a_bare_challenge() {
    let app = app(&authenticator());
    let reply = send(&app, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge(), "Bearer realm=\"api\"");
    assert_eq!(
        reply.body,
        json!({"error_description": "a bearer token is required"})
    );
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["content-type"], "application/json");

    let public = send(&app, Request::get("/public").body(Body::empty()).unwrap()).await;
    assert_eq!(public.status, StatusCode::OK);
}

#[tokio::test]
async fn invalid_token_challenge_names_the_failed_check() {
    let mut expired = claims("");
    expired["exp"] = json!(now() - 3600);
    let reply = get_with(
        &app(&authenticator()),
        "/me",
        &token_with(Algorithm::ES256, &expired),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.challenge(),
        "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token has expired (exp)\""
    );
    assert_eq!(
        reply.body,
        json!({"error": "invalid_token", "error_description": "token has expired (exp)"})
    );
}

#[tokio::test]
async fn scope_layers_answer_403_with_the_required_scope() {
    let app = app(&authenticator());
    let reader = token("events:read");
    let writer = token("events:read events:write");

    assert_eq!(
        get_with(&app, "/events/7", &reader).await.body,
        json!({"id": 7})
    );
    let reply = get_with(&app, "/events/7", &token("profile")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.challenge(),
        "Bearer realm=\"api\", error=\"insufficient_scope\", \
         error_description=\"requires scope events:read\", scope=\"events:read\""
    );

    let post = |token: &str| {
        Request::post("/events")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let reply = send(&app, post(&reader)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error(), Some("insufficient_scope"));
    assert_eq!(reply.body["scope"], "events:write");
    assert_eq!(send(&app, post(&writer)).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn require_scope_any_and_all() {
    let auth = authenticator();
    let app = Router::new()
        .route(
            "/any",
            get(|| async { "ok" }).route_layer(RequireScope::any(["a", "b"])),
        )
        .route(
            "/all",
            get(|| async { "ok" }).route_layer(RequireScope::all(["a", "b"])),
        )
        .layer(auth.layer());
    for (path, scope, status) in [
        ("/any", "b", StatusCode::OK),
        ("/any", "c", StatusCode::FORBIDDEN),
        ("/all", "a b", StatusCode::OK),
        ("/all", "b", StatusCode::FORBIDDEN),
    ] {
        assert_eq!(
            get_with(&app, path, &token(scope)).await.status,
            status,
            "{path} {scope}"
        );
    }
    let reply = get_with(&app, "/any", &token("c")).await;
    assert_eq!(reply.description(), "requires one of the scopes a b");
    assert_eq!(reply.body["scope"], "a b");
}

#[tokio::test]
async fn scp_arrays_and_role_claims_become_scopes() {
    let auth = builder()
        .scopes_from_claim(["realm_access", "roles"])
        .scopes_from_claim(["https://example.com/permissions"])
        .build()
        .unwrap();
    let app = app(&auth);
    let mut c = claims("profile");
    c["scp"] = json!(["events:write"]);
    c["realm_access"] = json!({"roles": ["events:read", "admin"]});
    c["https://example.com/permissions"] = json!("billing:read");
    let token = token_with(Algorithm::ES256, &c);

    let reply = get_with(&app, "/scopes", &token).await;
    assert_eq!(
        reply.body,
        json!("admin billing:read events:read events:write profile")
    );
    assert_eq!(
        get_with(&app, "/events/1", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&app, "/me", &token).await.body["scopes"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let without_roles = get_with(&app, "/events/1", &crate::token("profile")).await;
    assert_eq!(without_roles.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn leeway_type_and_required_claims() {
    let mut c = claims("");
    c["exp"] = json!(now() - 30);
    let token30 = token_with(Algorithm::ES256, &c);
    assert_eq!(
        get_with(&app(&authenticator()), "/me", &token30)
            .await
            .status,
        StatusCode::OK
    );
    let strict = builder().leeway(Duration::from_secs(5)).build().unwrap();
    let reply = get_with(&app(&strict), "/me", &token30).await;
    assert_eq!(reply.description(), "token has expired (exp)");

    let typed = builder().require_type("at+jwt").build().unwrap();
    assert_eq!(
        get_with(&app(&typed), "/me", &token("")).await.status,
        StatusCode::OK
    );
    let (key, kid) = signing_key(Algorithm::ES256);
    let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string();
    let jwt_typ = sign_raw(&header, &claims("").to_string(), &key, Algorithm::ES256);
    let reply = get_with(&app(&typed), "/me", &jwt_typ).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.description(), "token type (typ) must be at+jwt");

    let tenant = builder()
        .required_claim("sub")
        .required_claim_value("tenant", "acme")
        .build();
    let tenant = app(&tenant.unwrap());
    let mut c = claims("");
    assert_eq!(
        get_with(&tenant, "/me", &token_with(Algorithm::ES256, &c))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    c["tenant"] = json!("other");
    let reply = get_with(&tenant, "/me", &token_with(Algorithm::ES256, &c)).await;
    assert_eq!(
        reply.description(),
        "required claim `tenant` is missing or has the wrong value"
    );
    c["tenant"] = json!("acme");
    assert_eq!(
        get_with(&tenant, "/me", &token_with(Algorithm::ES256, &c))
            .await
            .status,
        StatusCode::OK
    );
    c.as_object_mut().unwrap().remove("sub");
    let reply = get_with(&tenant, "/me", &token_with(Algorithm::ES256, &c)).await;
    assert_eq!(
        reply.description(),
        "required claim `sub` is missing or has the wrong value"
    );
}

#[tokio::test]
async fn dangerous_opt_outs_do_what_they_say() {
    let mut c = claims("");
    c.as_object_mut().unwrap().remove("exp");
    c["aud"] = json!("someone-else");
    c["iss"] = json!("https://other.test");
    let token = token_with(Algorithm::ES256, &c);
    let auth = Authenticator::builder()
        .keys(KeySet::from_jwks_json(JWKS).unwrap())
        .accept_any_issuer()
        .accept_any_audience()
        .allow_missing_exp()
        .build()
        .unwrap();
    assert_eq!(
        get_with(&app(&auth), "/me", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&app(&authenticator()), "/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[derive(Deserialize)]
struct TenantClaims {
    sub: String,
    tenant: String,
}

#[tokio::test]
async fn claims_extractor_with_custom_type_and_mismatch() {
    let auth = authenticator();
    let app = Router::new()
        .route(
            "/tenant",
            get(|Claims(c): Claims<TenantClaims>| async move { format!("{}@{}", c.sub, c.tenant) }),
        )
        .layer(auth.layer());
    let mut c = claims("");
    c["tenant"] = json!("acme");
    let reply = get_with(&app, "/tenant", &token_with(Algorithm::ES256, &c)).await;
    assert_eq!(reply.body, json!("user-42@acme"));

    let reply = get_with(&app, "/tenant", &token("")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), Some("invalid_token"));
    assert_eq!(
        reply.description(),
        "the token's claims do not have the shape this resource needs"
    );
}

#[tokio::test]
async fn standard_claims_carry_registered_and_extra_claims() {
    let auth = authenticator();
    let app = Router::new()
        .route("/c", get(|Claims(c): Claims| async move { Json(c) }))
        .layer(auth.layer());
    let mut c = claims("b a");
    c["exp"] = json!(4_000_000_000.75_f64);
    c["aud"] = json!([AUDIENCE, "other"]);
    c["email"] = json!("u@example.com");
    let reply = get_with(&app, "/c", &token_with(Algorithm::ES256, &c)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let body = reply.body;
    assert_eq!(body["sub"], "user-42");
    assert_eq!(body["iss"], ISSUER);
    assert_eq!(body["aud"], json!([AUDIENCE, "other"]));
    assert_eq!(body["exp"], 4_000_000_000u64);
    assert_eq!(body["jti"], "jti-1");
    assert_eq!(body["client_id"], "client-7");
    assert_eq!(body["scope"], "a b");
    assert_eq!(body["email"], "u@example.com");
    // It serializes back to claims and reads them again unchanged.
    let again: StandardClaims = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), body);
    assert_eq!(
        again.extra,
        json!({"email": "u@example.com"})
            .as_object()
            .unwrap()
            .clone()
    );
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_but_not_bad_tokens() {
    let auth = authenticator();
    let app = Router::new()
        .route(
            "/maybe",
            get(|c: Option<Claims>| async move {
                c.map_or("anonymous".to_owned(), |Claims(c)| {
                    c.sub.unwrap_or_default()
                })
            }),
        )
        .route(
            "/scoped",
            get(|| async { "ok" }).route_layer(RequireScope::all(["x"])),
        )
        .route(
            "/strict",
            get(|Claims(c): Claims| async move { c.sub.unwrap_or_default() }),
        )
        .route(
            "/maybe-scopes",
            get(|s: Option<Scopes>| async move { format!("{s:?}") }),
        )
        .layer(auth.layer().optional());

    let anonymous = send(&app, Request::get("/maybe").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (anonymous.status, anonymous.body),
        (StatusCode::OK, json!("anonymous"))
    );
    assert_eq!(
        get_with(&app, "/maybe", &token("")).await.body,
        json!("user-42")
    );
    let bad = get_with(&app, "/maybe", &format!("{}x", token(""))).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    let none = send(
        &app,
        Request::get("/maybe-scopes").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(none.body, json!("None"));
    let some = get_with(&app, "/maybe-scopes", &token("x")).await;
    assert_eq!(some.body, json!("Some({\"x\"})"));

    let scoped = send(&app, Request::get("/scoped").body(Body::empty()).unwrap()).await;
    assert_eq!(scoped.status, StatusCode::UNAUTHORIZED);
    assert_eq!(scoped.challenge(), "Bearer realm=\"api\"");
    let strict = send(&app, Request::get("/strict").body(Body::empty()).unwrap()).await;
    assert_eq!(strict.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_layer_is_a_500_that_says_so() {
    let app = Router::new()
        .route(
            "/claims",
            get(|Claims(c): Claims| async move { c.sub.unwrap_or_default() }),
        )
        .route(
            "/optional",
            get(|c: Option<VerifiedToken>| async move { format!("{}", c.is_some()) }),
        )
        .route("/scopes", get(|s: Scopes| async move { s.to_string() }))
        .route(
            "/scoped",
            get(|| async { "ok" }).route_layer(RequireScope::all(["x"])),
        );
    for path in ["/claims", "/optional", "/scopes", "/scoped"] {
        let reply = get_with(&app, path, &token("x")).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(
            reply
                .description()
                .contains("is `Authenticator::layer()` installed"),
            "{path}"
        );
        assert!(reply.challenge().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn custom_rejection_replaces_the_response_and_keeps_the_error() {
    let auth = builder()
        .realm("events")
        .rejection(|e: &AuthError| {
            let mut r = Response::new(Bytes::from(format!("nope: {}", e.description())));
            *r.status_mut() = e.status();
            r
        })
        .build()
        .unwrap();
    let app = app(&auth);
    let response = app
        .clone()
        .oneshot(Request::get("/events/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.extensions().get::<AuthError>().unwrap().kind(),
        AuthErrorKind::MissingToken
    );
    let reply = get_with(&app, "/events/1", &token("profile")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body, json!("nope: requires scope events:read"));

    let default_realm = builder().realm("events").build().unwrap();
    let reply = send(
        &app_with(&default_realm),
        Request::get("/me").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.challenge(), "Bearer realm=\"events\"");
}

fn app_with(auth: &Authenticator) -> Router {
    app(auth)
}

#[tokio::test]
async fn cookie_and_query_sources_only_when_configured_and_never_two_tokens() {
    let auth = builder()
        .token_source(CookieToken::named("at"))
        .token_source(QueryToken::named("access_token"))
        .token_source(AuthorizationHeader) // always read; adding it changes nothing
        .build()
        .unwrap();
    let app = app(&auth);
    let t = token("");
    let cookie = Request::get("/me")
        .header("cookie", format!("theme=dark; at={t}"))
        .body(Body::empty());
    let reply = send(&app, cookie.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get("cache-control").is_none());

    let query = Request::get(format!("/me?access_token={t}"))
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, query).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["cache-control"], "private", "RFC 6750 §2.3");

    assert_eq!(get_with(&app, "/me", &t).await.status, StatusCode::OK);
    let both = Request::get(format!("/me?access_token={t}"))
        .header("authorization", format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, both).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.description(),
        "the request carries more than one token"
    );
}

#[test]
fn verify_outside_tower() {
    let auth = authenticator();
    let verified = auth.verify(&token("a b")).unwrap();
    assert_eq!(verified.subject(), Some("user-42"));
    assert_eq!(verified.issuer(), Some(ISSUER));
    assert_eq!(verified.audience().collect::<Vec<_>>(), [AUDIENCE]);
    assert_eq!(verified.client_id(), Some("client-7"));
    assert_eq!(verified.jwt_id(), Some("jti-1"));
    assert_eq!(verified.key_id(), Some("ec-1"));
    assert_eq!(verified.algorithm(), Some(Algorithm::ES256));
    assert!(verified.scopes().contains_all(["a", "b"]));
    assert!(verified.expires_at().unwrap() > now());
    let claims: Value = verified.claims().unwrap();
    assert_eq!(claims["scope"], "a b");
    let debug = format!("{verified:?}");
    assert!(
        debug.contains("user-42") && !debug.contains("eyJ"),
        "{debug}"
    );

    let err = auth.verify("nope").unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Malformed);
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.error_code(), Some("invalid_token"));
}

#[test]
fn configuration_mistakes_are_errors_not_panics() {
    provider();
    let keys = || KeySet::from_jwks_json(JWKS).unwrap();
    let cases: Vec<(tower_oauth2::AuthenticatorBuilder, &str)> = vec![
        (
            Authenticator::builder().audience("a").keys(keys()),
            "no issuer configured",
        ),
        (
            Authenticator::builder().issuer("i").keys(keys()),
            "no audience configured",
        ),
        (
            Authenticator::builder().issuer("i").audience("a"),
            if cfg!(feature = "remote") {
                "discovery from the issuer needs an https URL"
            } else {
                "no verification key configured"
            },
        ),
        (
            Authenticator::builder()
                .issuer("")
                .audience("a")
                .keys(keys()),
            "issuer must not be empty",
        ),
        (
            builder().leeway(Duration::from_secs(3600)),
            "leeway above 10 minutes",
        ),
        (builder().max_token_size(10), "max_token_size below 64"),
        (
            builder().max_token_size(2 << 20),
            "max_token_size above 1048576",
        ),
        (
            builder().required_claim_value("iss", "x"),
            "is a registered claim",
        ),
        (
            builder().scopes_from_claim(Vec::<String>::new()),
            "non-empty path",
        ),
        (
            builder().jwks_file("/nonexistent/jwks.json"),
            "reading /nonexistent/jwks.json",
        ),
    ];
    for (builder, needle) in cases {
        let err = builder.build().unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
}

#[test]
fn jwks_file_with_no_usable_key_is_an_error() {
    let dir = std::env::temp_dir().join(format!("tower-oauth2-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enc-only.json");
    let mut f = std::fs::File::create(&path).unwrap();
    let x = "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";
    write!(
        f,
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","use":"enc","x":"{x}"}}]}}"#
    )
    .unwrap();
    let err = builder().jwks_file(&path).build().unwrap_err().to_string();
    assert!(err.contains("no usable signature key"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn debug_output_never_shows_secrets() {
    let secret = [0xabu8; 32];
    let key = Key::hmac(secret, Algorithm::HS256).unwrap().with_kid("h");
    let auth = builder().key(key.clone()).build().unwrap();
    for text in [format!("{key:?}"), format!("{auth:?}")] {
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("abab"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn plain_tower_service_without_axum() {
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, service_fn};

    let inner = service_fn(|req: Request<()>| async move {
        let sub = req
            .extensions()
            .get::<VerifiedToken>()
            .and_then(|t| t.subject().map(str::to_owned));
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
            sub.unwrap_or_default(),
        ))))
    });
    let svc = authenticator().layer().layer(inner);

    let request = |auth: Option<String>| {
        let mut builder = Request::get("/");
        if let Some(auth) = auth {
            builder = builder.header("authorization", auth);
        }
        builder.body(()).unwrap()
    };
    let ok = svc
        .clone()
        .oneshot(request(Some(format!("Bearer {}", token("")))))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.into_body().collect().await.unwrap().to_bytes(),
        "user-42"
    );

    let denied = svc.oneshot(request(None)).await.unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        denied.extensions().get::<AuthError>().unwrap().kind(),
        AuthErrorKind::MissingToken
    );
    let body = denied.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        r#"{"error_description":"a bearer token is required"}"#
    );
}

#[tokio::test]
async fn pem_keys_of_every_type_verify_their_tokens() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys");
    for (file, alg) in [
        ("rsa_public.pem", Algorithm::RS256),
        ("ec_public.pem", Algorithm::ES256),
        ("ec384_public.pem", Algorithm::ES384),
        ("ed_public.pem", Algorithm::EdDSA),
    ] {
        let key = Key::from_pem_file(format!("{dir}/{file}")).unwrap();
        let auth = Authenticator::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .key(key)
            .build()
            .unwrap();
        // The token names the kid of the JWKS; the PEM key has none and serves it.
        let token = token_with(alg, &claims("events:read"));
        let reply = get_with(&app(&auth), "/me", &token).await;
        assert_eq!(reply.status, StatusCode::OK, "{file}: {:?}", reply.body);
        let other = if alg == Algorithm::EdDSA {
            Algorithm::ES256
        } else {
            Algorithm::EdDSA
        };
        let reply = get_with(&app(&auth), "/me", &token_with(other, &claims(""))).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{file} must not verify {other:?}"
        );
    }
    for private in [RSA_PRIVATE, EC_PRIVATE, ED_PRIVATE] {
        let err = Key::from_pem(private).unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
    }
}

/// A sender-constrained token (`cnf`) presented as a bearer token is refused — on every
/// request, also when the token itself is in the cache (how a token is presented is checked
/// after the cache) — unless the dangerous opt-out says the binding is checked elsewhere,
/// for all issuers or one.
#[tokio::test]
async fn sender_constrained_tokens_are_refused_as_bearer_tokens() {
    use tower_oauth2::dangerous::DangerousIssuerExt;
    let mut bound = claims("events:read");
    bound["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let bound = token_with(Algorithm::ES256, &bound);

    let auth = authenticator();
    let strict = app(&auth);
    for _ in 0..2 {
        let reply = get_with(&strict, "/me", &bound).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(
            reply.challenge().contains("sender-constrained"),
            "{}",
            reply.challenge()
        );
        assert_eq!(
            auth.verify(&bound).unwrap_err().kind(),
            tower_oauth2::AuthErrorKind::SenderConstrained
        );
    }
    assert_eq!(
        auth.token_cache_stats().unwrap().0,
        1,
        "the token is verified once and cached; the presentation rule still refused it twice"
    );
    // A token without cnf is unaffected.
    assert_eq!(
        get_with(&strict, "/me", &token("events:read")).await.status,
        StatusCode::OK
    );

    let lenient = builder().accept_unverified_confirmation().build().unwrap();
    assert_eq!(
        get_with(&app(&lenient), "/me", &bound).await.status,
        StatusCode::OK
    );

    // Per issuer: the opt-out on one trusted issuer only.
    let issuer = tower_oauth2::Issuer::new(ISSUER)
        .audience(AUDIENCE)
        .keys(tower_oauth2::KeySet::from_jwks_json(JWKS).unwrap())
        .accept_unverified_confirmation();
    let per_issuer = tower_oauth2::AuthenticatorBuilder::from(issuer)
        .build()
        .unwrap();
    assert!(per_issuer.verify(&bound).is_ok());
}

/// `hide_credentials`: the inner service never sees the token — not the `Authorization`
/// header, not the cookie (other cookies stay), not the query parameter (other parameters
/// stay) — while it still gets the verified token; without it, the request is untouched.
#[tokio::test]
async fn hide_credentials_takes_the_token_out_before_the_inner_service() {
    let auth = builder()
        .token_source(CookieToken::named("at"))
        .token_source(QueryToken::named("access_token"))
        .build()
        .unwrap();
    let echo = |layer: tower_oauth2::layer::BearerAuthLayer| {
        axum::Router::new()
            .route(
                "/echo",
                axum::routing::get(
                    |token: VerifiedToken, uri: http::Uri, headers: http::HeaderMap| async move {
                        json!({
                            "sub": token.subject(),
                            "uri": uri.to_string(),
                            "authorization": headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()),
                            "cookies": headers.get_all("cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>(),
                        })
                        .to_string()
                    },
                ),
            )
            .layer(layer)
    };
    let hiding = echo(auth.layer().hide_credentials());
    let keeping = echo(auth.layer());
    let token = token("events:read");
    // `send` reads a JSON body as JSON.
    let body = |reply: &Reply| -> Value { reply.body.clone() };

    let header = || {
        Request::get("/echo?x=1")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let hidden = body(&send(&hiding, header()).await);
    assert_eq!(hidden["sub"], "user-42");
    assert_eq!(hidden["authorization"], Value::Null);
    assert_eq!(hidden["uri"], "/echo?x=1");
    let kept = body(&send(&keeping, header()).await);
    assert_eq!(kept["authorization"], format!("Bearer {token}"));

    let cookie = || {
        Request::get("/echo")
            .header("cookie", format!("theme=dark; at={token}; lang=en"))
            .body(Body::empty())
            .unwrap()
    };
    let hidden = body(&send(&hiding, cookie()).await);
    assert_eq!(hidden["sub"], "user-42");
    assert_eq!(hidden["cookies"], json!(["theme=dark; lang=en"]));
    let kept = body(&send(&keeping, cookie()).await);
    assert_eq!(
        kept["cookies"],
        json!([format!("theme=dark; at={token}; lang=en")])
    );

    let only_cookie = Request::get("/echo")
        .header("cookie", format!("at={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        body(&send(&hiding, only_cookie).await)["cookies"],
        json!([])
    );

    let query = || {
        Request::get(format!("/echo?a=1&access_token={token}&b=2"))
            .body(Body::empty())
            .unwrap()
    };
    let hidden = body(&send(&hiding, query()).await);
    assert_eq!(hidden["sub"], "user-42");
    assert_eq!(hidden["uri"], "/echo?a=1&b=2");
    let alone = Request::get(format!("/echo?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(body(&send(&hiding, alone).await)["uri"], "/echo");
    let kept = body(&send(&keeping, query()).await);
    assert_eq!(kept["uri"], format!("/echo?a=1&access_token={token}&b=2"));
}

/// A gRPC call (`content-type: application/grpc…`) is refused the gRPC way: HTTP 200,
/// trailers-only (empty body), `grpc-status` 16 for a missing or bad token and 7 for a missing
/// scope, `grpc-message` with the HTTP answer's description, `www-authenticate` kept.
#[tokio::test]
async fn grpc_calls_are_refused_with_grpc_status() {
    let auth = authenticator();
    let app = axum::Router::new()
        .route(
            "/events.Events/Get",
            axum::routing::post(|| async { "called" })
                .route_layer(tower_oauth2::RequireScope::all(["events:read"])),
        )
        .route(
            "/events.Events/Create",
            axum::routing::post(|| async { "called" })
                .route_layer(tower_oauth2::RequireScope::all(["events:write"])),
        )
        .layer(auth.layer());
    let call = |method: &str, token: Option<&str>| {
        let mut request = Request::post(format!("/events.Events/{method}"))
            .header("content-type", "application/grpc+proto")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let check = |reply: &Reply, status: &str, message: &str| {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body,
            Value::String(String::new()),
            "trailers-only: no body"
        );
        assert_eq!(reply.headers["content-type"], "application/grpc");
        assert_eq!(reply.headers["grpc-status"], status);
        let got = reply.headers["grpc-message"].to_str().unwrap();
        assert!(got.contains(message), "{got}");
        assert!(reply.headers.contains_key("www-authenticate"));
    };
    check(
        &send(&app, call("Get", None)).await,
        "16",
        "a bearer token is required",
    );
    let mut expired = claims("events:read");
    expired["exp"] = json!(now() - 600);
    let expired = token_with(Algorithm::ES256, &expired);
    check(
        &send(&app, call("Get", Some(&expired))).await,
        "16",
        "expired",
    );
    let read = token("events:read");
    check(
        &send(&app, call("Create", Some(&read))).await,
        "7",
        "requires scope events:write",
    );
    let ok = send(&app, call("Get", Some(&read))).await;
    assert_eq!(
        (ok.status, ok.body.clone()),
        (StatusCode::OK, json!("called"))
    );
    assert!(!ok.headers.contains_key("grpc-status"));
    // Plain HTTP is answered as before.
    let plain = send(
        &app,
        Request::post("/events.Events/Get")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
}

/// RFC 6750 §2.2: `FormBodyToken` with its layer in front takes `access_token` from a form
/// body and hands the body on intact; bodies of GET, other content types and oversized ones are
/// not read; a token in the body and the header is refused; without the layer it says so.
#[tokio::test]
async fn form_body_tokens_with_their_layer() {
    use tower_oauth2::token_source::FormBodyToken;
    let source = FormBodyToken::new().max_bytes(2048);
    let auth = builder().token_source(source.clone()).build().unwrap();
    let echo = || {
        axum::Router::new().route(
            "/form",
            axum::routing::post(|token: VerifiedToken, body: String| async move {
                json!({"sub": token.subject(), "body": body}).to_string()
            })
            .get(|token: VerifiedToken| async move { token.subject().unwrap_or("").to_owned() }),
        )
    };
    let app = echo().layer(auth.layer()).layer(source.layer());
    let token = token("events:read");
    let form = |method: &str, body: String, content_type: &str| {
        Request::builder()
            .method(method)
            .uri("/form")
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap()
    };
    let body = format!("x=1&access_token={token}&y=2");
    let reply = send(
        &app,
        form("POST", body.clone(), "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["sub"], "user-42");
    assert_eq!(reply.body["body"], body, "the body is handed on intact");
    let charset = "application/x-www-form-urlencoded; charset=utf-8";
    assert_eq!(
        send(&app, form("PUT", body.clone(), charset)).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        send(&app, form("POST", body.clone(), charset)).await.status,
        StatusCode::OK
    );

    // Not read: GET, another content type, more than max_bytes.
    let get = send(
        &app,
        form("GET", body.clone(), "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!((get.status, get.error()), (StatusCode::UNAUTHORIZED, None));
    let json = send(&app, form("POST", body.clone(), "application/json")).await;
    assert_eq!(
        (json.status, json.error()),
        (StatusCode::UNAUTHORIZED, None)
    );
    let big = format!("{body}&pad={}", "p".repeat(2048));
    let big = send(&app, form("POST", big, "application/x-www-form-urlencoded")).await;
    assert_eq!((big.status, big.error()), (StatusCode::UNAUTHORIZED, None));

    // A malformed parameter, and a token in two places.
    let bad = send(
        &app,
        form(
            "POST",
            "access_token=a+b".into(),
            "application/x-www-form-urlencoded",
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.description().contains("access_token is not a token"));
    let mut twice = form("POST", body.clone(), "application/x-www-form-urlencoded");
    twice
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let twice = send(&app, twice).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert!(twice.description().contains("more than one token"));

    // Without its layer: a 500 that says so.
    let missing = echo().layer(auth.layer());
    let reply = send(
        &missing,
        form("POST", body, "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply
            .description()
            .contains("FormBodyToken found nothing its layer read")
    );

    // The protected-resource metadata names the method.
    let described = builder()
        .token_source(FormBodyToken::new())
        .protected_resource(tower_oauth2::ProtectedResource::new("https://api.test/"))
        .build()
        .unwrap();
    let (_, document) = described.resource_metadata().unwrap();
    let document: Value = serde_json::from_str(document).unwrap();
    assert_eq!(
        document["bearer_methods_supported"],
        json!(["header", "body"])
    );
}
