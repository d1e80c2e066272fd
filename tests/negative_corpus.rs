//! The negative corpus: bad tokens and bad `Authorization` headers, each with the exact status,
//! RFC 6750 error code and reason it must get from the layer. A few edge cases that the RFCs
//! allow (lowercase scheme, several spaces, fractional NumericDate) are here too, asserting
//! acceptance, so the line between the two is pinned down.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower_oauth2::Algorithm;

struct Case {
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    /// `None`: no `error` in the challenge or body.
    code: Option<&'static str>,
    /// A fragment the `error_description` must contain.
    reason: &'static str,
}

fn bearer(token: &str) -> Request<Body> {
    Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn with_header(value: &[u8]) -> Request<Body> {
    Request::get("/me")
        .header(
            "authorization",
            http::HeaderValue::from_bytes(value).unwrap(),
        )
        .body(Body::empty())
        .unwrap()
}

fn ec_key() -> EncodingKey {
    signing_key(Algorithm::ES256).0
}

/// A valid ES256 token with `claims` given as raw JSON text.
fn es256_raw_claims(claims_json: &str) -> String {
    sign_raw(
        r#"{"alg":"ES256","kid":"ec-1"}"#,
        claims_json,
        &ec_key(),
        Algorithm::ES256,
    )
}

/// A valid ES256 token whose standard claims are changed by `edit`.
fn es256_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = claims("events:read");
    edit(claims.as_object_mut().unwrap());
    es256_raw_claims(&claims.to_string())
}

/// A valid ES256 token with a header given as raw JSON text.
fn es256_raw_header(header_json: &str) -> String {
    sign_raw(
        header_json,
        &claims("events:read").to_string(),
        &ec_key(),
        Algorithm::ES256,
    )
}

/// An unsigned token with `alg` spelled as given.
fn unsigned(alg: &str) -> String {
    format!(
        "{}.{}.",
        b64(format!(r#"{{"alg":"{alg}","kid":"ec-1"}}"#)),
        b64(claims("").to_string())
    )
}

fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

/// Changes the last base64url character so that its unused low bits are not zero.
fn non_canonical(sig: &str) -> String {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = sig.chars().last().unwrap();
    let index = alphabet.find(last).unwrap();
    let flipped = alphabet.chars().nth(index ^ 1).unwrap();
    format!("{}{flipped}", &sig[..sig.len() - 1])
}

fn cases(jku_url: &str) -> Vec<Case> {
    let good = token("events:read");
    let (h, p, s) = parts(&good);
    let rsa_public_pem = RSA_PUBLIC.as_bytes();
    let attacker = EncodingKey::from_rsa_pem(ATTACKER_RSA_PRIVATE.as_bytes()).unwrap();
    let claims_json = claims("events:read").to_string();
    let invalid_token = Some("invalid_token");
    let unauthorized = StatusCode::UNAUTHORIZED;

    let mut v = Vec::new();
    let mut case = |name, request, status, code, reason| {
        v.push(Case {
            name,
            request,
            status,
            code,
            reason,
        });
    };

    // --- alg none, in all casings, with and without a signature
    for (name, alg) in [
        ("alg none", "none"),
        ("alg None", "None"),
        ("alg NONE", "NONE"),
        ("alg nOnE", "nOnE"),
    ] {
        case(
            name,
            bearer(&unsigned(alg)),
            unauthorized,
            invalid_token,
            "alg none",
        );
    }
    case(
        "alg none with a copied signature",
        bearer(&format!(
            "{}.{p}.{s}",
            b64(r#"{"alg":"none","kid":"ec-1"}"#)
        )),
        unauthorized,
        invalid_token,
        "alg none",
    );

    // --- key confusion and forged signatures
    let confused = sign_raw(
        r#"{"alg":"HS256","kid":"rsa-1"}"#,
        &claims_json,
        &EncodingKey::from_secret(rsa_public_pem),
        Algorithm::HS256,
    );
    case(
        "RS256 key used as HS256 secret",
        bearer(&confused),
        unauthorized,
        invalid_token,
        "does not allow",
    );
    let confused_no_kid = sign_raw(
        r#"{"alg":"HS256"}"#,
        &claims_json,
        &EncodingKey::from_secret(rsa_public_pem),
        Algorithm::HS256,
    );
    case(
        "RS256 key as HS256 secret, no kid",
        bearer(&confused_no_kid),
        unauthorized,
        invalid_token,
        "no key for this algorithm",
    );
    case(
        "ECDSA psychic signature r=s=0",
        bearer(&format!("{h}.{p}.{}", b64([0u8; 64]))),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );
    case(
        "ECDSA signature of ones",
        bearer(&format!("{h}.{p}.{}", b64([0xffu8; 64]))),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );
    let forged = sign_raw(
        r#"{"alg":"RS256","kid":"rsa-1"}"#,
        &claims_json,
        &attacker,
        Algorithm::RS256,
    );
    case(
        "signed by an unknown RSA key, claiming kid rsa-1",
        bearer(&forged),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );
    case(
        "RS256 header on the EC key",
        bearer(&sign_raw(
            r#"{"alg":"RS256","kid":"ec-1"}"#,
            &claims_json,
            &attacker,
            Algorithm::RS256,
        )),
        unauthorized,
        invalid_token,
        "does not allow",
    );
    case(
        "unsupported algorithm ES512",
        bearer(&format!(
            "{}.{p}.{s}",
            b64(r#"{"alg":"ES512","kid":"ec-1"}"#)
        )),
        unauthorized,
        invalid_token,
        "unsupported signature algorithm",
    );
    case(
        "payload swapped under a valid signature",
        bearer(&format!(
            "{h}.{}.{s}",
            b64(claims("events:write").to_string())
        )),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );

    // --- base64url and structure
    case(
        "signature with one extra character",
        bearer(&format!("{good}A")),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );
    case(
        "signature with one character missing",
        bearer(&good[..good.len() - 1]),
        unauthorized,
        invalid_token,
        "signature is not canonical",
    );
    case(
        "padded signature",
        bearer(&format!("{good}==")),
        StatusCode::UNAUTHORIZED,
        invalid_token,
        "signature is not canonical",
    );
    // `=` may only end a b64token (RFC 6750 §2.1), so this one fails at the header.
    case(
        "padded payload",
        bearer(&format!("{h}.{p}==.{s}")),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "exactly one b64token",
    );
    case(
        "payload with a b64token character outside base64url",
        bearer(&format!("{h}.{p}~.{s}")),
        unauthorized,
        invalid_token,
        "payload is not canonical",
    );
    case(
        "non-canonical base64url signature",
        bearer(&format!("{h}.{p}.{}", non_canonical(&s))),
        unauthorized,
        invalid_token,
        "signature is not canonical",
    );
    case(
        "standard base64 alphabet in the signature",
        bearer(&format!(
            "{h}.{p}.{}",
            s.replace('-', "+").replace('_', "/") + "+/"
        )),
        unauthorized,
        invalid_token,
        "signature is not canonical",
    );
    case(
        "two parts",
        bearer(&format!("{h}.{p}")),
        unauthorized,
        invalid_token,
        "exactly three",
    );
    case(
        "one part",
        bearer(&h),
        unauthorized,
        invalid_token,
        "exactly three",
    );
    case(
        "four parts",
        bearer(&format!("{good}.{s}")),
        unauthorized,
        invalid_token,
        "exactly three",
    );
    case(
        "empty header part",
        bearer(&format!(".{p}.{s}")),
        unauthorized,
        invalid_token,
        "empty header or payload",
    );
    case(
        "empty payload part",
        bearer(&format!("{h}..{s}")),
        unauthorized,
        invalid_token,
        "empty header or payload",
    );
    case(
        "empty signature part",
        bearer(&format!("{h}.{p}.")),
        unauthorized,
        invalid_token,
        "empty signature",
    );
    case(
        "header is not base64url JSON",
        bearer(&format!("{}.{p}.{s}", b64("not json"))),
        unauthorized,
        invalid_token,
        "header",
    );
    case(
        "header is a JSON array",
        bearer(&es256_raw_header(r#"["ES256"]"#)),
        unauthorized,
        invalid_token,
        "header is not a JSON object",
    );

    // --- claims JSON
    case(
        "claims are a JSON array",
        bearer(&es256_raw_claims("[1,2,3]")),
        unauthorized,
        invalid_token,
        "claims are not a JSON object",
    );
    case(
        "claims are a JSON string",
        bearer(&es256_raw_claims(r#""sub""#)),
        unauthorized,
        invalid_token,
        "claims are not a JSON object",
    );
    case(
        "claims are not JSON",
        bearer(&es256_raw_claims("\u{1}\u{2}garbage")),
        unauthorized,
        invalid_token,
        "claims",
    );
    case(
        "claims with trailing bytes",
        bearer(&es256_raw_claims(&format!("{claims_json} {{}}"))),
        unauthorized,
        invalid_token,
        "claims: not valid JSON",
    );
    case(
        "claims with a byte-order mark",
        bearer(&es256_raw_claims(&format!("\u{feff}{claims_json}"))),
        unauthorized,
        invalid_token,
        "claims",
    );
    let dup_sub = claims_json.replacen('{', r#"{"sub":"admin","#, 1);
    case(
        "duplicate sub claim",
        bearer(&es256_raw_claims(&dup_sub)),
        unauthorized,
        invalid_token,
        "duplicate member `sub`",
    );
    let dup_exp = claims_json.replacen('{', &format!(r#"{{"exp":{},"#, now() + 99_999), 1);
    case(
        "duplicate exp claim",
        bearer(&es256_raw_claims(&dup_exp)),
        unauthorized,
        invalid_token,
        "duplicate member `exp`",
    );
    case(
        "duplicate alg in the header",
        bearer(&es256_raw_header(
            r#"{"alg":"ES256","alg":"HS256","kid":"ec-1"}"#,
        )),
        unauthorized,
        invalid_token,
        "duplicate member `alg`",
    );
    let deep = claims_json.replacen(
        '{',
        &format!(r#"{{"x":{}{},"#, "[".repeat(2000), "]".repeat(2000)),
        1,
    );
    case(
        "deeply nested claim",
        bearer(&es256_raw_claims(&deep)),
        unauthorized,
        invalid_token,
        "deeper than 32",
    );
    case(
        "exp as a string",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!((now() + 300).to_string()));
        })),
        unauthorized,
        invalid_token,
        "`exp` must be a number",
    );
    case(
        "exp as a negative float",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(-1.5));
        })),
        unauthorized,
        invalid_token,
        "`exp` is out of range",
    );
    case(
        "exp as a huge float",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(1e300));
        })),
        unauthorized,
        invalid_token,
        "`exp` is out of range",
    );
    case(
        "exp as a huge integer",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(u64::MAX));
        })),
        unauthorized,
        invalid_token,
        "`exp` is out of range",
    );
    case(
        "exp beyond year 9999",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(253_402_300_800u64));
        })),
        unauthorized,
        invalid_token,
        "`exp` is out of range",
    );
    case(
        "exp as a fractional float in the past",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(now() as f64 - 120.5));
        })),
        unauthorized,
        invalid_token,
        "expired",
    );
    case(
        "exp missing",
        bearer(&es256_with(|c| {
            c.remove("exp");
        })),
        unauthorized,
        invalid_token,
        "no expiry",
    );
    case(
        "exp in the past",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(now() - 61));
        })),
        unauthorized,
        invalid_token,
        "expired",
    );
    case(
        "nbf in the future",
        bearer(&es256_with(|c| {
            c.insert("nbf".into(), json!(now() + 120));
        })),
        unauthorized,
        invalid_token,
        "not yet valid",
    );
    case(
        "iat in the future",
        bearer(&es256_with(|c| {
            c.insert("iat".into(), json!(now() + 3600));
        })),
        unauthorized,
        invalid_token,
        "issued in the future",
    );
    case(
        "aud as a number",
        bearer(&es256_with(|c| {
            c.insert("aud".into(), json!(42));
        })),
        unauthorized,
        invalid_token,
        "aud",
    );
    case(
        "aud as an object",
        bearer(&es256_with(|c| {
            c.insert("aud".into(), json!({"aud": AUDIENCE}));
        })),
        unauthorized,
        invalid_token,
        "aud",
    );
    case(
        "aud array with a non-string",
        bearer(&es256_with(|c| {
            c.insert("aud".into(), json!([AUDIENCE, 1]));
        })),
        unauthorized,
        invalid_token,
        "aud",
    );
    case(
        "aud for another API",
        bearer(&es256_with(|c| {
            c.insert("aud".into(), json!(["billing-api"]));
        })),
        unauthorized,
        invalid_token,
        "wrong audience",
    );
    // --- sender-constrained tokens (RFC 7800 cnf) presented as bearer tokens: no downgrade
    case(
        "DPoP-bound token as Bearer",
        bearer(&es256_with(|c| {
            c.insert(
                "cnf".into(),
                json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
            );
        })),
        unauthorized,
        invalid_token,
        "sender-constrained",
    );
    case(
        "certificate-bound token as Bearer",
        bearer(&es256_with(|c| {
            c.insert(
                "cnf".into(),
                json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            );
        })),
        unauthorized,
        invalid_token,
        "sender-constrained",
    );
    case(
        "cnf that is not an object",
        bearer(&es256_with(|c| {
            c.insert(
                "cnf".into(),
                json!("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"),
            );
        })),
        unauthorized,
        invalid_token,
        "a member has the wrong type",
    );
    case(
        "aud missing",
        bearer(&es256_with(|c| {
            c.remove("aud");
        })),
        unauthorized,
        invalid_token,
        "no audience",
    );
    case(
        "scope as an array",
        bearer(&es256_with(|c| {
            c.insert("scope".into(), json!(["events:read"]));
        })),
        unauthorized,
        invalid_token,
        "`scope` must be",
    );
    case(
        "scope as a number",
        bearer(&es256_with(|c| {
            c.insert("scope".into(), json!(7));
        })),
        unauthorized,
        invalid_token,
        "`scope` must be",
    );
    case(
        "scp as an object",
        bearer(&es256_with(|c| {
            c.insert("scp".into(), json!({"a": 1}));
        })),
        unauthorized,
        invalid_token,
        "`scp` must be",
    );
    case(
        "iss as an array",
        bearer(&es256_with(|c| {
            c.insert("iss".into(), json!([ISSUER]));
        })),
        unauthorized,
        invalid_token,
        "`iss` must be a string",
    );
    case(
        "iss of another issuer",
        bearer(&es256_with(|c| {
            c.insert("iss".into(), json!("https://evil.test"));
        })),
        unauthorized,
        invalid_token,
        "wrong issuer",
    );
    case(
        "iss with a trailing slash",
        bearer(&es256_with(|c| {
            c.insert("iss".into(), json!(format!("{ISSUER}/")));
        })),
        unauthorized,
        invalid_token,
        "wrong issuer",
    );
    case(
        "iss missing",
        bearer(&es256_with(|c| {
            c.remove("iss");
        })),
        unauthorized,
        invalid_token,
        "no issuer",
    );
    case(
        "sub as a number",
        bearer(&es256_with(|c| {
            c.insert("sub".into(), json!(42));
        })),
        unauthorized,
        invalid_token,
        "`sub` must be a string",
    );

    // --- header parameters that must never find keys
    case(
        "kid with path characters",
        bearer(&es256_raw_header(
            r#"{"alg":"ES256","kid":"../../../etc/passwd"}"#,
        )),
        unauthorized,
        invalid_token,
        "no key with this kid",
    );
    case(
        "kid with a URL",
        bearer(&es256_raw_header(&format!(
            r#"{{"alg":"ES256","kid":"{jku_url}"}}"#
        ))),
        unauthorized,
        invalid_token,
        "no key with this kid",
    );
    let attacker_jwk = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
    let embedded = sign_raw(
        &json!({"alg": "RS256", "jwk": attacker_jwk}).to_string(),
        &claims_json,
        &attacker,
        Algorithm::RS256,
    );
    case(
        "embedded jwk header, no kid",
        bearer(&embedded),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );
    let embedded_kid = sign_raw(
        &json!({"alg": "RS256", "kid": "attacker", "jwk": attacker_jwk}).to_string(),
        &claims_json,
        &attacker,
        Algorithm::RS256,
    );
    case(
        "embedded jwk header with its own kid",
        bearer(&embedded_kid),
        unauthorized,
        invalid_token,
        "no key with this kid",
    );
    let jku = sign_raw(
        &json!({"alg": "RS256", "kid": "attacker", "jku": jku_url}).to_string(),
        &claims_json,
        &attacker,
        Algorithm::RS256,
    );
    case(
        "jku header",
        bearer(&jku),
        unauthorized,
        invalid_token,
        "no key with this kid",
    );
    let x5u = sign_raw(
        &json!({"alg": "RS256", "x5u": jku_url}).to_string(),
        &claims_json,
        &attacker,
        Algorithm::RS256,
    );
    case(
        "x5u header",
        bearer(&x5u),
        unauthorized,
        invalid_token,
        "signature does not verify",
    );
    case(
        "unknown crit header",
        bearer(&es256_raw_header(
            r#"{"alg":"ES256","kid":"ec-1","crit":["x-ext"],"x-ext":1}"#,
        )),
        unauthorized,
        invalid_token,
        "crit",
    );
    case(
        "empty crit header",
        bearer(&es256_raw_header(
            r#"{"alg":"ES256","kid":"ec-1","crit":[]}"#,
        )),
        unauthorized,
        invalid_token,
        "crit",
    );
    case(
        "unencoded payload b64:false",
        bearer(&es256_raw_header(
            r#"{"alg":"ES256","kid":"ec-1","b64":false,"crit":["b64"]}"#,
        )),
        unauthorized,
        invalid_token,
        "crit",
    );

    let nested_dup = claims_json.replacen(
        '{',
        r#"{"realm_access":{"roles":["user"],"roles":["admin"]},"#,
        1,
    );
    case(
        "duplicate member inside a nested claim",
        bearer(&es256_raw_claims(&nested_dup)),
        unauthorized,
        invalid_token,
        "duplicate member `roles`",
    );
    case(
        "claims that are a long string are not echoed",
        bearer(&es256_raw_claims(
            r#""you should never see this text in a response""#,
        )),
        unauthorized,
        invalid_token,
        "claims are not a JSON object",
    );
    let odd_dup = claims_json.replacen('{', r#"{"a b":1,"a b":2,"#, 1);
    case(
        "duplicate member with a space in its name",
        bearer(&es256_raw_claims(&odd_dup)),
        unauthorized,
        invalid_token,
        "duplicate member (name not shown)",
    );

    // --- size
    let big = es256_with(|c| {
        c.insert("padding".into(), json!("x".repeat(100 * 1024)));
    });
    case(
        "100 KB token",
        bearer(&big),
        unauthorized,
        invalid_token,
        "longer than 8192 bytes",
    );

    // --- the Authorization header itself
    let two_headers = Request::get("/me")
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .body(Body::empty())
        .unwrap();
    case(
        "two Authorization headers",
        two_headers,
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "several Authorization headers",
    );
    case(
        "two tokens in one header",
        with_header(format!("Bearer {good} {good}").as_bytes()),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "exactly one b64token",
    );
    case(
        "comma-separated credentials",
        with_header(format!("Bearer {good}, Bearer {good}").as_bytes()),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "exactly one b64token",
    );
    case(
        "Bearer without a token",
        with_header(b"Bearer"),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "without a token",
    );
    case(
        "Bearer and spaces only",
        with_header(b"Bearer    "),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "without a token",
    );
    case(
        "tab after Bearer",
        with_header(format!("Bearer\t{good}").as_bytes()),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "tab",
    );
    case(
        "token with a character outside b64token",
        with_header(format!("Bearer {good}@").as_bytes()),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "exactly one b64token",
    );
    case(
        "non-ASCII Authorization header",
        with_header("Bearer t\u{f6}ken".as_bytes()),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "not visible ASCII",
    );
    case(
        "empty Authorization header",
        with_header(b""),
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        "empty Authorization header",
    );
    case(
        "Basic credentials are not a bearer token",
        with_header(b"Basic dXNlcjpwYXNz"),
        unauthorized,
        None,
        "a bearer token is required",
    );
    case(
        "no Authorization header",
        Request::get("/me").body(Body::empty()).unwrap(),
        unauthorized,
        None,
        "a bearer token is required",
    );
    case(
        "token in a query parameter that is not configured",
        Request::get(format!("/me?access_token={good}"))
            .body(Body::empty())
            .unwrap(),
        unauthorized,
        None,
        "a bearer token is required",
    );

    // --- allowed edge cases, pinned as accepted
    case(
        "lowercase bearer scheme",
        with_header(format!("bearer {good}").as_bytes()),
        StatusCode::OK,
        None,
        "",
    );
    case(
        "BEARER in capitals",
        with_header(format!("BEARER {good}").as_bytes()),
        StatusCode::OK,
        None,
        "",
    );
    case(
        "several spaces after Bearer (1*SP)",
        with_header(format!("Bearer    {good}").as_bytes()),
        StatusCode::OK,
        None,
        "",
    );
    case(
        "surrounding whitespace",
        with_header(format!("  Bearer {good}  ").as_bytes()),
        StatusCode::OK,
        None,
        "",
    );
    case(
        "exp as a fractional NumericDate in the future",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(now() as f64 + 300.25));
        })),
        StatusCode::OK,
        None,
        "",
    );
    case(
        "exp just inside the leeway",
        bearer(&es256_with(|c| {
            c.insert("exp".into(), json!(now() - 30));
        })),
        StatusCode::OK,
        None,
        "",
    );
    case(
        "aud array containing this API",
        bearer(&es256_with(|c| {
            c.insert("aud".into(), json!(["billing-api", AUDIENCE]));
        })),
        StatusCode::OK,
        None,
        "",
    );
    v
}

#[tokio::test]
async fn every_bad_token_and_header_gets_its_exact_rejection() {
    // A loopback listener that the jku/x5u/kid URLs point at: nothing may ever connect to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let jku_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());

    let app = app(&authenticator());
    let cases = cases(&jku_url);
    let rejections = cases.iter().filter(|c| c.status != StatusCode::OK).count();
    assert!(
        rejections >= 40,
        "the corpus must hold at least 40 bad inputs, has {rejections}"
    );

    let mut failures = Vec::new();
    for case in cases {
        let reply = send(&app, case.request).await;
        let challenge = reply.challenge().to_owned();
        let mut problems = Vec::new();
        if reply.status != case.status {
            problems.push(format!("status {} (want {})", reply.status, case.status));
        }
        if case.status != StatusCode::OK {
            if reply.error() != case.code {
                problems.push(format!("error {:?} (want {:?})", reply.error(), case.code));
            }
            match case.code {
                Some(code) if !challenge.contains(&format!("error=\"{code}\"")) => {
                    problems.push(format!("challenge {challenge:?} lacks error=\"{code}\""));
                }
                None if challenge != "Bearer realm=\"api\"" => {
                    problems.push(format!("challenge {challenge:?} should carry no error"));
                }
                _ => {}
            }
            if !reply.description().contains(case.reason) {
                problems.push(format!(
                    "reason {:?} lacks {:?}",
                    reply.description(),
                    case.reason
                ));
            }
            if reply.description().contains("eyJ") || challenge.contains("eyJ") {
                problems.push("the rejection echoes the token".into());
            }
            if reply.description().contains("never see") {
                problems.push("the rejection echoes the claims".into());
            }
            // RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
            if !reply
                .description()
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
            {
                problems.push(format!(
                    "error_description {:?} leaves the RFC 6750 set",
                    reply.description()
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    std::thread::sleep(Duration::from_millis(50));
    assert!(listener.accept().is_err(), "a header URL was fetched");
}
