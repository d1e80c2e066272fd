//! The admin console over real HTTP, as a browser drives it (cookies kept by hand, redirects
//! followed one by one so each can be checked): the login through the server's own
//! `/authorize` with PKCE, who gets in, the session cookie and its timeouts, CSRF and cross-site
//! refusals, the security headers, escaping, and every page's action with its effect on the
//! store. The app's "login" is a header the consent handler reads (`x-test-user`): alice and
//! carol are console users (granted `admin`); alice is an approver, carol is not; bob is not a
//! console user.
#![cfg(feature = "console")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tower_oauth2::server::store::{ClientStatus, MemoryStore};
use tower_oauth2::server::{
    ApprovalPolicy, ApprovalRule, ApproverGroup, ApproverGroups, AuthorizationRequest,
    AuthorizationServer, ConsentDecision, ConsentHandler, ConsoleConfig, HookFuture,
};

/// Authenticates by the `x-test-user` header; console users get every scope asked for, others
/// none.
struct TestLogin;

impl ConsentHandler for TestLogin {
    fn decide<'a>(
        &'a self,
        _: &'a AuthorizationRequest,
        request: &'a http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        let user = request
            .headers
            .get("x-test-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            match user.as_deref() {
                None => ConsentDecision::Respond(axum::response::Html("log in").into_response()),
                Some(user @ ("alice" | "carol")) => ConsentDecision::Approve {
                    subject: user.to_owned(),
                    scopes: None,
                },
                Some(user) => ConsentDecision::Approve {
                    subject: user.to_owned(),
                    scopes: Some(Vec::new()),
                },
            }
        })
    }
}

use axum::response::IntoResponse;

struct Fixture {
    addr: SocketAddr,
    server: AuthorizationServer,
}

async fn fixture(config: impl FnOnce(ConsoleConfig) -> ConsoleConfig) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let groups =
        ApproverGroups::new([ApproverGroup::new("security", ApprovalRule::Any).members(["alice"])])
            .expect("groups");
    let server = AuthorizationServer::builder()
        .issuer(format!("http://{addr}"))
        .store(MemoryStore::new())
        .approval_policy(ApprovalPolicy::Groups(groups))
        .consent_handler(TestLogin)
        .build()
        .await
        .expect("server");
    let console = server
        .console(config(ConsoleConfig::new(format!("http://{addr}/console"))))
        .await
        .expect("console");
    let app = Router::new()
        .nest("/oauth2", server.router())
        .nest("/console", console);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { addr, server }
}

/// One answer, with the headers the tests look at.
struct Answer {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    headers: http::HeaderMap,
    body: String,
}

/// A browser: cookies by name, no automatic redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    user: Option<&'static str>,
}

impl Browser {
    fn new(fixture: &Fixture) -> Self {
        Browser {
            base: format!("http://{}", fixture.addr),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
            user: None,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let mut request = request;
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header("cookie", cookie.join("; "));
        }
        if let Some(user) = self.user {
            request = request.header("x-test-user", user);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        for set in &set_cookies {
            let pair = set.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status,
            location: headers
                .get("location")
                .map(|v| v.to_str().expect("ascii").to_owned()),
            set_cookies,
            headers,
            body: response.text().await.expect("body"),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(self.url(path));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)], extra: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Follows redirects from `answer` to the first non-redirect.
    async fn follow(&mut self, mut answer: Answer) -> Answer {
        for _ in 0..10 {
            match (answer.status, answer.location.clone()) {
                (301..=303 | 307 | 308, Some(location)) => answer = self.get(&location).await,
                _ => return answer,
            }
        }
        panic!("too many redirects");
    }

    /// Logs in as `user` through the console's login redirect.
    async fn login(&mut self, user: &'static str) -> Answer {
        self.user = Some(user);
        let start = self.get("/console").await;
        let answer = self.follow(start).await;
        self.user = None;
        answer
    }

    /// The CSRF token of the last page.
    fn csrf(page: &Answer) -> String {
        let at = page
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF token")
            + r#"name="csrf" value=""#.len();
        page.body[at..].split('"').next().expect("token").to_owned()
    }
}

#[tokio::test]
async fn login_through_authorize_with_pkce_and_who_gets_in() {
    let fixture = fixture(|c| c).await;
    let mut browser = Browser::new(&fixture);

    // No session: to /authorize, PKCE S256, bound to this browser by a login cookie.
    let start = browser.get("/console/clients/new").await;
    assert_eq!(start.status, 303);
    let location = start.location.clone().expect("location");
    assert!(
        location.starts_with(&format!("http://{}/oauth2/authorize?", fixture.addr)),
        "{location}"
    );
    for part in [
        "response_type=code",
        "client_id=tower-oauth2-console",
        "code_challenge_method=S256",
        "scope=admin",
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }
    assert!(start.set_cookies[0].starts_with("tower_oauth2_console_login="));

    // The app's login page answers until the person is known.
    let page = browser.get(&location).await;
    assert_eq!((page.status, page.body.as_str()), (200, "log in"));

    // Alice logs in: back to the page she asked for, with a session cookie.
    browser.user = Some("alice");
    let callback = browser.get(&location).await;
    browser.user = None;
    assert_eq!(callback.status, 302);
    let callback_url = callback.location.clone().expect("to the callback");
    assert!(callback_url.contains("/console/callback?code="));
    let landed = browser.get(&callback_url).await;
    assert_eq!(landed.status, 303);
    assert_eq!(landed.location.as_deref(), Some("/console/clients/new"));
    let session = landed
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tower_oauth2_console="))
        .expect("a session cookie");
    for attribute in ["Path=/console", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    // Loopback http: no `Secure`, or the browser would drop it.
    assert!(!session.contains("Secure"), "{session}");
    let page = browser.get("/console/clients/new").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Register a client"));
    assert!(page.body.contains(">alice<"));
    for (name, expected) in [
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(page.headers[name], expected, "{name}");
    }
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("style="), "no inline style");

    // The callback is single use.
    let replay = browser.get(&callback_url).await;
    assert_eq!(replay.status, 400);

    // A callback this browser did not start (no login cookie): refused.
    let mut other = Browser::new(&fixture);
    let start = other.get("/console").await;
    other.user = Some("alice");
    let callback = other
        .get(start.location.as_deref().expect("to authorize"))
        .await;
    other.cookies.remove("tower_oauth2_console_login");
    let refused = other
        .get(callback.location.as_deref().expect("to callback"))
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("not started in this browser"));
    assert!(!other.cookies.contains_key("tower_oauth2_console"));

    // Bob logs in but is not a console user: an explanation, no session.
    let mut bob = Browser::new(&fixture);
    let answer = bob.login("bob").await;
    assert_eq!(answer.status, 403);
    assert!(
        answer.body.contains("not a console user"),
        "{}",
        answer.body
    );
    assert!(!bob.cookies.contains_key("tower_oauth2_console"));
    let again = bob.get("/console").await;
    assert_eq!(again.status, 303, "still no session");

    // Both logins are in the audit log.
    fixture.server.flush_audit().await;
    let page = browser.get("/console/audit?kind=admin_action").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("console_login_refused"));
    assert!(
        page.body.contains("&quot;console_login&quot;"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn register_validates_beside_the_field_escapes_and_shows_the_secret_once() {
    let fixture = fixture(|c| c).await;
    let mut browser = Browser::new(&fixture);
    let form = browser.login("alice").await;
    assert_eq!(form.status, 200);
    let csrf = Browser::csrf(&form);
    let before = fixture
        .server
        .store()
        .clients()
        .await
        .expect("clients")
        .len();

    // Both lifetimes wrong: both errors, each beside its field; nothing stored.
    let answer = browser
        .post(
            "/console/clients",
            &[
                ("csrf", &csrf),
                ("name", "reports"),
                ("grant_types", "client_credentials"),
                ("scopes", "events:read"),
                ("access_token_lifetime", "1h 30x"),
                ("refresh_token_lifetime", "forever"),
            ],
            &[],
        )
        .await;
    assert_eq!(answer.status, 422);
    let access_error = answer
        .body
        .split(r#"id="access_token_lifetime-error""#)
        .nth(1)
        .expect("an error beside the access lifetime");
    assert!(access_error.starts_with(">invalid lifetime &quot;1h 30x&quot;: unknown unit `x`"));
    assert!(answer.body.contains(r#"id="refresh_token_lifetime-error""#));
    assert!(
        answer.body.contains(r#"value="1h 30x""#),
        "what was typed stays"
    );
    assert_eq!(
        fixture
            .server
            .store()
            .clients()
            .await
            .expect("clients")
            .len(),
        before
    );

    // Another mistake: the registration's own check, beside its field.
    let answer = browser
        .post(
            "/console/clients",
            &[
                ("csrf", &csrf),
                ("name", "reports"),
                ("grant_types", "authorization_code"),
            ],
            &[],
        )
        .await;
    assert_eq!(answer.status, 422);
    assert!(answer.body.contains(r#"id="redirect_uris-error""#));

    // A good one, with a hostile name: escaped everywhere, secret shown once.
    let name = r#"<script>alert("x")</script> Reports"#;
    let answer = browser
        .post(
            "/console/clients",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("client_id", "reports"),
                ("contacts", "ops@example.com\nlead@example.com"),
                ("grant_types", "client_credentials"),
                ("scopes", "events:read events:write"),
                ("default_scopes", "events:read"),
                ("access_token_lifetime", "1y 2m 3w 7d 5h 30min 15s"),
            ],
            &[],
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(answer.body.contains("you will not see it again"));
    assert!(!answer.body.contains("<script>alert"));
    assert!(
        answer
            .body
            .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Reports")
    );
    let secret = answer
        .body
        .split(r#"<code id="secret">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the secret")
        .to_owned();
    assert!(secret.len() >= 43);
    let stored = fixture
        .server
        .store()
        .client("reports")
        .await
        .expect("store")
        .expect("registered");
    assert_eq!(stored.status, ClientStatus::Pending);
    assert!(stored.verify_secret(&secret));
    assert_eq!(stored.contacts, ["ops@example.com", "lead@example.com"]);
    assert_eq!(
        stored.access_token_lifetime,
        Some("1y 2m 3w 7d 5h 30min 15s".parse().expect("lifetime"))
    );

    // Never again: not on the client's page, not in the list.
    for path in ["/console/clients/reports", "/console"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(&secret), "{path} shows the secret");
        assert!(!page.body.contains("<script>alert"), "{path} is escaped");
    }
    let list = browser.get("/console?status=pending").await;
    assert!(list.body.contains("/console/clients/reports"));
    let approved = browser.get("/console?status=approved").await;
    assert!(!approved.body.contains("/console/clients/reports"));

    // A public client: no secret to show, so its page; no secret to rotate there.
    let public = [
        ("csrf", csrf.as_str()),
        ("name", "CLI"),
        ("client_id", "cli"),
        ("public", "1"),
        ("redirect_uris", "http://127.0.0.1/callback"),
        ("grant_types", "authorization_code"),
        ("grant_types", "refresh_token"),
    ];
    let mut with_cc = public.to_vec();
    with_cc.push(("grant_types", "client_credentials"));
    let refused = browser.post("/console/clients", &with_cc, &[]).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains(r#"id="grant_types-error""#));
    assert!(refused.body.contains("a public client may use only"));
    let answer = browser.post("/console/clients", &public, &[]).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let page = browser.follow(answer).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("public: no secret"));
    assert!(!page.body.contains("/confirm/secret"));
    let stored = fixture.server.store().client("cli").await.expect("store");
    assert!(stored.is_some_and(|c| c.is_public()));
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_the_console_origin() {
    let fixture = fixture(|c| c).await;
    let mut browser = Browser::new(&fixture);
    let page = browser.login("alice").await;
    let csrf = Browser::csrf(&page);
    let registered = browser
        .post(
            "/console/clients",
            &[
                ("csrf", &csrf),
                ("name", "target"),
                ("client_id", "target"),
                ("grant_types", "client_credentials"),
            ],
            &[],
        )
        .await;
    assert_eq!(registered.status, 201);
    let origin = format!("http://{}", fixture.addr);
    for (form, headers) in [
        (vec![], vec![]),
        (vec![("csrf", "forged")], vec![]),
        (
            vec![("csrf", csrf.as_str())],
            vec![("origin", "https://evil.example")],
        ),
        (
            vec![("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "cross-site")],
        ),
        (
            vec![("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "same-site")],
        ),
    ] {
        let answer = browser
            .post("/console/clients/target/do/approve", &form, &headers)
            .await;
        assert_eq!(answer.status, 403, "{form:?} {headers:?}");
        assert!(answer.body.contains("Nothing was changed"));
        let client = fixture
            .server
            .store()
            .client("target")
            .await
            .expect("store");
        assert_eq!(client.expect("client").status, ClientStatus::Pending);
    }
    // JSON is not a form.
    let json = browser
        .send(
            browser
                .http
                .post(browser.url("/console/clients/target/do/approve"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"csrf":"{csrf}"}}"#)),
        )
        .await;
    assert_eq!(json.status, 400);
    // The console's own origin, the token: done.
    let answer = browser
        .post(
            "/console/clients/target/do/approve",
            &[("csrf", &csrf)],
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(answer.status, 303);
    let client = fixture
        .server
        .store()
        .client("target")
        .await
        .expect("store");
    assert_eq!(client.expect("client").status, ClientStatus::Approved);
}

async fn client_token(fixture: &Fixture, id: &str, secret: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/oauth2/token", fixture.addr))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token endpoint");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).expect("json"))
}

fn secret_on(page: &Answer) -> String {
    page.body
        .split(r#"<code id="secret">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("a secret on the page")
        .to_owned()
}

#[tokio::test]
async fn approvers_tokens_narrowing_secrets_and_the_client_lifecycle() {
    let fixture = fixture(|c| c).await;
    let mut alice = Browser::new(&fixture);
    let page = alice.login("alice").await;
    let csrf = Browser::csrf(&page);
    let created = alice
        .post(
            "/console/clients",
            &[
                ("csrf", &csrf),
                ("name", "billing"),
                ("client_id", "billing"),
                ("grant_types", "client_credentials"),
                ("scopes", "read write"),
            ],
            &[],
        )
        .await;
    let secret = secret_on(&created);

    // Carol is a console user but no approver: told why, nothing recorded.
    let mut carol = Browser::new(&fixture);
    let page = carol.login("carol").await;
    let carol_csrf = Browser::csrf(&page);
    let refused = carol
        .post(
            "/console/clients/billing/do/approve",
            &[("csrf", &carol_csrf)],
            &[],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("Not an approver"));
    assert!(
        refused
            .body
            .contains("carol is in none of the approver groups (security)")
    );
    let (status, _) = client_token(&fixture, "billing", &secret).await;
    assert_eq!(status, 401, "pending: no token");

    // Alice approves with a comment (typed with markup): recorded and shown, escaped.
    let approved = alice
        .post(
            "/console/clients/billing/do/approve",
            &[("csrf", &csrf), ("comment", "ok <b>for</b> Q1")],
            &[],
        )
        .await;
    assert_eq!(
        approved.location.as_deref(),
        Some("/console/clients/billing?done=approved")
    );
    let page = alice.get("/console/clients/billing?done=approved").await;
    assert!(page.body.contains("Your approval was recorded."));
    assert!(page.body.contains("ok &lt;b&gt;for&lt;/b&gt; Q1"));
    assert!(page.body.contains(">security<"));
    // Twice: a no-op.
    let twice = alice
        .post(
            "/console/clients/billing/do/approve",
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(twice.status, 303);
    let decisions = fixture
        .server
        .store()
        .decisions("billing")
        .await
        .expect("store");
    assert_eq!(decisions.len(), 1);

    // Tokens: listed by id, never by value; one revoked from the page.
    let (_, first) = client_token(&fixture, "billing", &secret).await;
    let (_, second) = client_token(&fixture, "billing", &secret).await;
    let page = alice.get("/console/clients/billing").await;
    assert!(page.body.contains("Active tokens (2)"));
    for token in [&first, &second] {
        let value = token["access_token"].as_str().expect("token");
        assert!(!page.body.contains(value), "a token value on the page");
    }
    let tokens = fixture
        .server
        .store()
        .client_tokens("billing", 0)
        .await
        .expect("store");
    let revoke = format!("/console/clients/billing/tokens/{}/revoke", tokens[0].id);
    assert!(page.body.contains(&revoke));
    let answer = alice.post(&revoke, &[("csrf", &csrf)], &[]).await;
    assert_eq!(
        answer.location.as_deref(),
        Some("/console/clients/billing?done=revoked")
    );
    let page = alice.get("/console/clients/billing").await;
    assert!(page.body.contains("Active tokens (1)"));

    // Narrowing: the count first, nothing changed; then confirmed.
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "billing"),
        ("grant_types", "client_credentials"),
        ("scopes", "read"),
    ];
    let ask = alice
        .post("/console/clients/billing/edit", &form, &[])
        .await;
    assert_eq!(ask.status, 409);
    assert!(
        ask.body.contains("revokes 1 active token(s)"),
        "{}",
        ask.body
    );
    assert!(ask.body.contains(r#"name="confirm" value="1""#));
    let client = fixture
        .server
        .store()
        .client("billing")
        .await
        .expect("store")
        .expect("client");
    assert_eq!(
        client.scopes,
        ["read", "write"],
        "unchanged until confirmed"
    );
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "1"));
    let done = alice
        .post("/console/clients/billing/edit", &confirmed, &[])
        .await;
    assert_eq!(
        done.location.as_deref(),
        Some("/console/clients/billing?done=changed")
    );
    let client = fixture
        .server
        .store()
        .client("billing")
        .await
        .expect("store")
        .expect("client");
    assert_eq!(client.scopes, ["read"]);
    let live = fixture
        .server
        .store()
        .client_tokens("billing", 0)
        .await
        .expect("store");
    assert!(live.is_empty(), "the unfit token is revoked");

    // Rotating the secret: a confirmation step, the new one shown once, the old one dead.
    let confirm = alice.get("/console/clients/billing/confirm/secret").await;
    assert!(confirm.body.contains("stops working at once"));
    let rotated = alice
        .post(
            "/console/clients/billing/do/secret",
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(rotated.status, 200);
    assert!(rotated.body.contains("you will not see it again"));
    let new_secret = secret_on(&rotated);
    assert_eq!(client_token(&fixture, "billing", &secret).await.0, 401);
    assert_eq!(client_token(&fixture, "billing", &new_secret).await.0, 200);

    // Disable (its count on the confirmation page), enable, delete.
    let confirm = alice.get("/console/clients/billing/confirm/disable").await;
    assert!(
        confirm
            .body
            .contains("its 1 active token(s) are revoked now")
    );
    let disabled = alice
        .post(
            "/console/clients/billing/do/disable",
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(
        disabled.location.as_deref(),
        Some("/console/clients/billing?done=disabled")
    );
    assert_eq!(client_token(&fixture, "billing", &new_secret).await.0, 401);
    let enabled = alice
        .post(
            "/console/clients/billing/do/enable",
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(
        enabled.location.as_deref(),
        Some("/console/clients/billing?done=enabled")
    );
    assert_eq!(client_token(&fixture, "billing", &new_secret).await.0, 200);
    let confirm = alice.get("/console/clients/billing/confirm/delete").await;
    assert!(confirm.body.contains("cannot be undone"));
    let deleted = alice
        .post(
            "/console/clients/billing/do/delete",
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert!(deleted.body.contains("was deleted"));
    assert!(
        fixture
            .server
            .store()
            .client("billing")
            .await
            .expect("store")
            .is_none()
    );
    assert_eq!(alice.get("/console/clients/billing").await.status, 404);

    // The console's own client is not for the console to change.
    let own = alice
        .post(
            "/console/clients/tower-oauth2-console/do/disable",
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(own.status, 409);
    let console_client = fixture
        .server
        .store()
        .client("tower-oauth2-console")
        .await
        .expect("store")
        .expect("the console's client");
    assert_eq!(console_client.status, ClientStatus::Approved);

    // Every action above is in the audit log, as alice's, newest first.
    fixture.server.flush_audit().await;
    let audit = alice
        .get("/console/audit?client_id=billing&kind=admin_action")
        .await;
    for action in [
        "register",
        "update",
        "rotate_secret",
        "disabled",
        "approved",
        "delete",
        "revoke_token",
    ] {
        assert!(
            audit.body.contains(&format!("&quot;{action}&quot;")),
            "{action}"
        );
    }
    let decisions = alice.get("/console/audit?kind=approval_decision").await;
    assert!(decisions.body.contains("ok &lt;b&gt;for&lt;/b&gt; Q1"));
}

#[tokio::test]
async fn the_audit_page_filters_pages_and_explains_bad_dates() {
    let fixture = fixture(|c| c).await;
    let mut alice = Browser::new(&fixture);
    let page = alice.login("alice").await;
    let csrf = Browser::csrf(&page);
    alice
        .post(
            "/console/clients",
            &[
                ("csrf", &csrf),
                ("name", "busy"),
                ("client_id", "busy"),
                ("grant_types", "client_credentials"),
            ],
            &[],
        )
        .await;
    let created = fixture
        .server
        .store()
        .client("busy")
        .await
        .expect("store")
        .expect("busy");
    let mut approved = created;
    approved.status = ClientStatus::Approved;
    approved.secret_hash = Some(tower_oauth2::server::SecretHash::of(
        "busy-secret-0123456789abcdefghijklmnopq",
    ));
    fixture
        .server
        .store()
        .update_client(approved)
        .await
        .expect("store");
    for _ in 0..105 {
        let (status, _) =
            client_token(&fixture, "busy", "busy-secret-0123456789abcdefghijklmnopq").await;
        assert_eq!(status, 200);
    }
    fixture.server.flush_audit().await;

    // The list shows the client's activity.
    let list = alice.get("/console").await;
    assert!(
        list.body.contains(r#"<td class="number">105</td>"#),
        "tokens in 24 h"
    );

    // A page of 100, newest first, and a link to the rest that keeps the filter.
    let first = alice
        .get("/console/audit?kind=token_issued&client_id=busy")
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.matches(">token_issued</span>").count(), 100);
    let next = first
        .body
        .split(r#"<a class="button" href=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an older-events link")
        .replace("&amp;", "&");
    assert!(next.contains("kind=token_issued") && next.contains("client_id=busy"));
    let second = alice.get(&next).await;
    assert_eq!(second.body.matches(">token_issued</span>").count(), 5);
    assert!(!second.body.contains("Older events"));

    // Dates: since tomorrow there is nothing; a bad date is explained beside its field.
    let today = tower_oauth2_today();
    let empty = alice
        .get(&format!("/console/audit?since={}", today + 86_400))
        .await;
    assert!(empty.body.contains("No events."));
    let bad = alice.get("/console/audit?since=2026-02-30").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains(r#"id="since-error""#));
}

/// Seconds since the epoch, now.
fn tower_oauth2_today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn sessions_end_when_idle_after_the_absolute_timeout_and_at_logout() {
    let fixture = fixture(|c| {
        c.idle_timeout(Duration::from_millis(800))
            .absolute_timeout(Duration::from_millis(2500))
    })
    .await;
    let mut browser = Browser::new(&fixture);
    let page = browser.login("alice").await;
    assert_eq!(page.status, 200);
    // Used every 300 ms: the idle timeout never ends it...
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(browser.get("/console").await.status, 200);
    }
    // ...the absolute one does.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(browser.get("/console").await.status, 303);

    // Idle.
    browser.login("alice").await;
    assert_eq!(browser.get("/console").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(browser.get("/console").await.status, 303);

    // Logout: the cookie is cleared and the session gone on the server.
    let page = browser.login("alice").await;
    let csrf = Browser::csrf(&page);
    let session = browser.cookies["tower_oauth2_console"].clone();
    let out = browser
        .post("/console/logout", &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(out.status, 200);
    assert!(
        out.set_cookies
            .iter()
            .any(|c| c.starts_with("tower_oauth2_console=;") && c.contains("Max-Age=0"))
    );
    browser
        .cookies
        .insert("tower_oauth2_console".into(), session);
    assert_eq!(
        browser.get("/console").await.status,
        303,
        "the old cookie is dead"
    );
}

#[tokio::test]
async fn configuration_mistakes_are_errors() {
    let no_consent = AuthorizationServer::builder()
        .issuer("https://as.example")
        .store(MemoryStore::new())
        .build()
        .await
        .expect("server");
    let error = no_consent
        .console(ConsoleConfig::new("https://as.example/console"))
        .await
        .expect_err("no consent handler");
    assert!(error.to_string().contains("consent handler"), "{error}");

    let server = AuthorizationServer::builder()
        .issuer("https://as.example")
        .store(MemoryStore::new())
        .approval_policy(ApprovalPolicy::Manual)
        .consent_handler(TestLogin)
        .build()
        .await
        .expect("server");
    for (config, expected) in [
        (
            ConsoleConfig::new("http://as.example/console"),
            "http only on a loopback host",
        ),
        (
            ConsoleConfig::new("as.example/console"),
            "not an absolute URL",
        ),
        (
            ConsoleConfig::new("https://as.example/console")
                .idle_timeout(Duration::from_secs(60))
                .absolute_timeout(Duration::from_secs(30)),
            "idle one no longer",
        ),
        (
            ConsoleConfig::new("https://as.example/console").admin_scope("two words"),
            "scopes",
        ),
    ] {
        let error = server.console(config).await.expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
    // Served over https: the cookies are `Secure`.
    let router = server
        .console(ConsoleConfig::new("https://as.example/console"))
        .await
        .expect("console");
    let start = tower::ServiceExt::oneshot(
        Router::new().nest("/console", router),
        http::Request::get("/console/audit")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("answer");
    assert_eq!(start.status(), 303);
    let cookie = start.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let location = start.headers()["location"].to_str().expect("ascii");
    assert!(
        location.starts_with("https://as.example/oauth2/authorize?"),
        "{location}"
    );

    // Under manual approval too, the console's own client is approved, and set up again on
    // every call (a new secret each time).
    let _router = server
        .console(ConsoleConfig::new("https://as.example/console"))
        .await
        .expect("console");
    let first = server
        .store()
        .client("tower-oauth2-console")
        .await
        .expect("store")
        .expect("client");
    assert_eq!(first.status, ClientStatus::Approved);
    assert_eq!(first.redirect_uris, ["https://as.example/console/callback"]);
    let _router = server
        .console(ConsoleConfig::new("https://as.example/admin-console"))
        .await
        .expect("console");
    let second = server
        .store()
        .client("tower-oauth2-console")
        .await
        .expect("store")
        .expect("client");
    assert_eq!(
        second.redirect_uris,
        ["https://as.example/admin-console/callback"]
    );
    assert_ne!(first.secret_hash, second.secret_hash);
}

/// A client whose id is a URL (a Client ID Metadata Document's) has working links: the id is
/// one percent-encoded path segment, and the operator can approve it.
#[tokio::test]
async fn clients_named_by_a_url_have_working_pages() {
    use tower_oauth2::server::store::{ClientRecord, GrantType};
    let fixture = fixture(|c| c).await;
    let id = "https://app.example/oauth/client.json";
    let record = ClientRecord {
        client_id: id.into(),
        name: "Metadata document client".into(),
        secret_hash: None,
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        grant_types: vec![GrantType::AuthorizationCode],
        scopes: Vec::new(),
        default_scopes: Vec::new(),
        access_token_lifetime: None,
        refresh_token_lifetime: None,
        status: ClientStatus::Pending,
        created_at: 1_700_000_000,
        contacts: Vec::new(),
        registration_token: None,
    };
    fixture
        .server
        .store()
        .insert_client(record)
        .await
        .expect("insert");
    let mut browser = Browser::new(&fixture);
    let list = browser.login("alice").await;
    assert_eq!(list.status, 200);
    let list = browser.get("/console?status=pending").await;
    let encoded = "https%3A%2F%2Fapp.example%2Foauth%2Fclient.json";
    assert!(
        list.body.contains(&format!("/console/clients/{encoded}")),
        "{}",
        list.body
    );
    let page = browser.get(&format!("/console/clients/{encoded}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Metadata document client"));
    let csrf = Browser::csrf(&page);
    let approved = browser
        .post(
            &format!("/console/clients/{encoded}/do/approve"),
            &[("csrf", &csrf), ("comment", "")],
            &[],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert!(
        approved
            .location
            .as_deref()
            .is_some_and(|l| l.contains(&format!("/console/clients/{encoded}?done="))),
        "{:?}",
        approved.location
    );
    let stored = fixture.server.store().client(id).await.expect("store");
    assert_eq!(stored.map(|c| c.status), Some(ClientStatus::Approved));
}
