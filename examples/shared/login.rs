//! The demo's login page, for the authorization-code flow of its own authorization server (the
//! admin console logs in through it). One user, `demo`, with the password grant's password; the
//! demo user is a console user, so its logins are granted every scope asked for, `admin`
//! included. A real app puts its own user store and login (and a consent screen for third-party
//! clients) here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use maud::{DOCTYPE, Markup, html};
use tower_oauth2::server::{AuthorizationRequest, ConsentDecision, ConsentHandler, HookFuture};

const COOKIE: &str = "demo_login";
/// How long a login at the demo's authorization server lasts.
const LOGIN_LIFETIME: Duration = Duration::from_secs(3600);
/// Where the demo mounts the authorization server's `/authorize`.
const AUTHORIZE: &str = "/oauth2/authorize";

/// The demo's users (one) and their logins at the authorization server. Clones share the
/// logins.
#[derive(Clone)]
pub(crate) struct DemoLogin {
    user: &'static str,
    password_digest: Arc<[u8]>,
    /// Login id → when it ends.
    logins: Arc<Mutex<HashMap<String, Instant>>>,
}

impl DemoLogin {
    pub(crate) fn new(user: &'static str, password: &str) -> Self {
        Self {
            user,
            password_digest: digest(&SHA256, password.as_bytes()).as_ref().into(),
            logins: Arc::default(),
        }
    }

    fn logged_in(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, COOKIE) else {
            return false;
        };
        let Ok(mut logins) = self.logins.lock() else {
            return false;
        };
        let now = Instant::now();
        logins.retain(|_, until| *until > now);
        logins.contains_key(id)
    }

    /// `POST /login`.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/login", post(login))
            .with_state(self.clone())
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn page(user: &str, return_to: &str, error: Option<&str>, client: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Log in · tower-oauth2 demo" } }
            body {
                h1 { "Log in" }
                p { (client) " asks you to log in to the demo's authorization server." }
                @if let Some(error) = error { p role="alert" { strong { (error) } } }
                form method="post" action="/login" {
                    input type="hidden" name="return_to" value=(return_to);
                    p { label { "User " input type="text" name="username" value=(user) autocomplete="username"; } }
                    p { label { "Password " input type="password" name="password" autocomplete="current-password" autofocus; } }
                    p { button type="submit" { "Log in" } }
                }
            }
        }
    }
}

impl ConsentHandler for DemoLogin {
    fn decide<'a>(
        &'a self,
        authorization: &'a AuthorizationRequest,
        request: &'a axum::http::request::Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        Box::pin(async move {
            if self.logged_in(&request.headers) {
                // The demo user is a console user: every scope asked for is granted.
                return ConsentDecision::Approve {
                    subject: self.user.to_owned(),
                    scopes: None,
                };
            }
            let return_to = format!("{AUTHORIZE}?{}", request.uri.query().unwrap_or_default());
            let markup = page(self.user, &return_to, None, &authorization.client_name);
            ConsentDecision::Respond(Html(markup.into_string()).into_response())
        })
    }
}

/// `POST /login`: checks the password, then back to `/authorize`.
async fn login(State(demo): State<DemoLogin>, headers: HeaderMap, body: Bytes) -> Response {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"))
    {
        return (StatusCode::FORBIDDEN, "cross-site login refused").into_response();
    }
    let field = |name: &str| {
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (username, password, return_to) =
        (field("username"), field("password"), field("return_to"));
    if !return_to.starts_with(&format!("{AUTHORIZE}?")) {
        return (
            StatusCode::BAD_REQUEST,
            "return_to must be the authorization request",
        )
            .into_response();
    }
    // Digests have one length, so the comparison is constant-time whatever was typed.
    let presented = digest(&SHA256, password.as_bytes());
    let matches = verify_slices_are_equal(presented.as_ref(), &demo.password_digest).is_ok();
    if !(matches && username == demo.user) {
        let markup = page(
            &username,
            &return_to,
            Some("Wrong user or password."),
            "A client",
        );
        return (StatusCode::UNAUTHORIZED, Html(markup.into_string())).into_response();
    }
    let mut id = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut id).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the random source failed").into_response();
    }
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(mut logins) = demo.logins.lock() {
        logins.insert(id.clone(), Instant::now() + LOGIN_LIFETIME);
    }
    let Ok(location) = HeaderValue::try_from(return_to) else {
        return (StatusCode::BAD_REQUEST, "return_to is not a valid URL").into_response();
    };
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    if let Ok(value) = HeaderValue::try_from(format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        LOGIN_LIFETIME.as_secs()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
