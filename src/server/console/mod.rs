//! The admin console (feature `console`): server-rendered pages for the people who register and
//! approve API clients, mounted by the app like the other routers.
//!
//! The console is an OAuth client of this server (`tower-oauth2-console`, confidential,
//! registered and kept approved by [`AuthorizationServer::console`]). A visit without a session
//! goes through this server's `/authorize` with PKCE S256; the app's
//! [`ConsentHandler`](super::ConsentHandler) authenticates the person and grants the console's
//! scope (`admin` unless configured) only to console users. The console redeems the code at the
//! token endpoint's own code path (client authentication, PKCE, audit: nothing skipped, no
//! network hop), verifies the access token with the server's authenticator, and opens a session
//! only if the token carries the scope.
//!
//! Sessions are server-side (in this process's memory, bounded, with an idle and an absolute
//! timeout); the browser holds a random id in an `HttpOnly`, `SameSite=Strict` cookie, `Secure`
//! unless the console is served over http on a loopback host. Every form that changes state
//! carries the session's CSRF token, and a request whose `Origin` or `Sec-Fetch-Site` says it
//! came from another site is refused before anything changes. Every response carries a strict
//! `Content-Security-Policy` (scripts and styles only from the console itself, no inline code),
//! `X-Frame-Options: DENY` and `Cache-Control: no-store`. Pages are rendered with maud, which
//! escapes every value it interpolates.
//!
//! [`AuthorizationServer::console`]: super::AuthorizationServer::console

mod dates;
mod pages;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use maud::Markup;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::admin::{self, Actor, AdminError, ClientChange, ClientRegistration, RegistrationError};
use super::http::{Params, has_media_type, random_token};
use super::store::{ClientRecord, ClientStatus, Decision, GrantType, StoreError};
use super::{AuthorizationServer, ClientSecret, ServerState, audit};
use crate::token::VerifiedToken;

use pages::{Field, Notice, Page};

/// The `client_id` the console registers itself under.
pub const CONSOLE_CLIENT_ID: &str = "tower-oauth2-console";

const SESSION_COOKIE: &str = "tower_oauth2_console";
const LOGIN_COOKIE: &str = "tower_oauth2_console_login";
/// How long a login may take, from the redirect to `/authorize` to the callback.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sessions and logins held at most; the oldest go first.
const MAX_SESSIONS: u64 = 10_000;
const MAX_BODY: usize = 64 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How [`AuthorizationServer::console`](super::AuthorizationServer::console) sets up the
/// console.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth2::server::ConsoleConfig;
///
/// let config = ConsoleConfig::new("https://api.example.com/console")
///     .admin_scope("admin")
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 3600));
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    base_url: String,
    scope: String,
    idle: Duration,
    absolute: Duration,
    secret: Option<ClientSecret>,
}

impl ConsoleConfig {
    /// The console at `base_url`, the absolute URL the browser reaches it at (`https://…`, or
    /// `http://` on a loopback host); the app mounts the router at that URL's path. The
    /// console's redirect URI is `base_url` + `/callback`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            scope: "admin".into(),
            idle: Duration::from_secs(15 * 60),
            absolute: Duration::from_secs(8 * 3600),
            secret: None,
        }
    }

    /// The scope a person's login must be granted to get in (default `admin`). The app's
    /// consent handler grants it only to console users (by narrowing the approved scopes).
    pub fn admin_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// A session unused this long ends (default 15 minutes).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }

    /// A session ends this long after the login, used or not (default 8 hours).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute = timeout;
        self
    }

    /// The console client's secret. By default each call of
    /// [`console`](super::AuthorizationServer::console) generates one and stores its hash,
    /// which suits one instance; instances sharing a store must all be given the same secret,
    /// or a login that starts on one and ends on another fails.
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.secret = Some(secret);
        self
    }
}

/// Why the console could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleError(String);

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "console: {}", self.0)
    }
}

impl std::error::Error for ConsoleError {}

/// A logged-in console user.
struct Session {
    subject: String,
    /// The access token of the login, verified: the actor of the user's actions, and the claims
    /// approver groups may be read from.
    token: VerifiedToken,
    csrf: String,
}

/// A login under way: what the callback needs.
struct Login {
    verifier: String,
    /// Where to go after the login: a path inside the console.
    return_to: String,
}

pub(crate) struct Console {
    state: Arc<ServerState>,
    /// The path the console is mounted at, without a trailing slash (`/console`).
    prefix: String,
    /// The console's origin (`https://api.example.com`), which form posts must come from.
    origin: String,
    redirect_uri: String,
    secure: bool,
    scope: String,
    secret: ClientSecret,
    sessions: moka::sync::Cache<[u8; 32], Arc<Session>>,
    logins: moka::sync::Cache<String, Arc<Login>>,
}

/// Splits an absolute URL into its origin and path; checks the scheme (https, or http on
/// loopback). Answers whether it is https.
fn origin_and_path(url: &str) -> Result<(String, String, bool), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.is_empty() || url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "{url:?}: an absolute URL with a host and no query or fragment"
        ));
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    let secure = match scheme {
        "https" => true,
        "http" if matches!(host, "127.0.0.1" | "localhost" | "[::1]") => false,
        "http" => return Err(format!("{url:?}: http only on a loopback host; use https")),
        _ => return Err(format!("{url:?}: the scheme must be https")),
    };
    let path = path.trim_end_matches('/');
    if !path.is_empty()
        && !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
    {
        return Err(format!(
            "{url:?}: the path may hold only A-Z a-z 0-9 / - _ . ~"
        ));
    }
    Ok((format!("{scheme}://{authority}"), path.to_owned(), secure))
}

impl AuthorizationServer {
    /// The admin console (feature `console`): an axum [`Router`] of server-rendered pages, to
    /// mount at the path of `config`'s base URL, e.g. `app.nest("/console", router)`. See the
    /// [module documentation](super#admin-console).
    ///
    /// It registers (or updates) the console's own client, `tower-oauth2-console`, approved,
    /// with the authorization-code grant, the redirect URI `{base_url}/callback` and the admin
    /// scope, and stores its secret's hash. It needs a
    /// [`consent_handler`](super::AuthorizationServerBuilder::consent_handler): people log in
    /// through `/authorize`.
    pub async fn console(&self, config: ConsoleConfig) -> Result<Router, ConsoleError> {
        let state = &self.state;
        if state.consent.is_none() {
            return Err(ConsoleError(
                "people log in through /authorize: the server needs a consent handler \
                 (AuthorizationServerBuilder::consent_handler)"
                    .into(),
            ));
        }
        let (origin, prefix, secure) = origin_and_path(&config.base_url).map_err(ConsoleError)?;
        if config.idle.is_zero() || config.absolute.is_zero() || config.idle > config.absolute {
            return Err(ConsoleError(
                "the timeouts must be positive, the idle one no longer than the absolute one"
                    .into(),
            ));
        }
        let secret = match config.secret {
            Some(secret) => secret,
            None => {
                ClientSecret::generate()
                    .map_err(|e| ConsoleError(e.to_string()))?
                    .0
            }
        };
        let redirect_uri = format!("{origin}{prefix}/callback");
        let mut registration = ClientRegistration::new("Admin console");
        registration.client_id = Some(CONSOLE_CLIENT_ID.into());
        registration.redirect_uris = vec![redirect_uri.clone()];
        registration.grant_types = Some(vec![GrantType::AuthorizationCode.as_str().into()]);
        registration.scopes = vec![config.scope.clone()];
        let mut record = admin::checked_record(
            state,
            registration,
            Some(super::SecretHash::of(secret.expose())),
        )
        .map_err(|e| ConsoleError(format!("the console's client: {e}")))?;
        record.status = ClientStatus::Approved;
        let store_error = |e: StoreError| ConsoleError(format!("the store failed: {e}"));
        match state
            .store
            .client(CONSOLE_CLIENT_ID)
            .await
            .map_err(store_error)?
        {
            Some(existing) => {
                record.created_at = existing.created_at;
                state
                    .store
                    .update_client(record)
                    .await
                    .map_err(store_error)?;
            }
            None => state
                .store
                .insert_client(record)
                .await
                .map_err(store_error)?,
        }
        state.clients.invalidate(CONSOLE_CLIENT_ID);
        let console = Console {
            state: Arc::clone(state),
            prefix,
            origin,
            redirect_uri,
            secure,
            scope: config.scope,
            secret,
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(config.absolute)
                .time_to_idle(config.idle)
                .build(),
            logins: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(LOGIN_TTL)
                .build(),
        };
        Ok(router(Arc::new(console)))
    }
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(clients_page))
        .route("/clients/new", get(new_client_page))
        .route("/clients", post(create_client))
        .route("/clients/{id}", get(client_page))
        .route("/clients/{id}/edit", get(edit_page).post(edit_client))
        .route("/clients/{id}/confirm/{action}", get(confirm_page))
        .route("/clients/{id}/do/{action}", post(client_action))
        .route("/clients/{id}/tokens/{token_id}/revoke", post(revoke_token))
        .route("/audit", get(audit_page))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/console.js", get(script))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// The headers every console response carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it, browsers send `Origin: null` on the console's own posts.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The value of cookie `name` in the request.
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

fn session_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Console {
    fn set_cookie(&self, name: &str, value: &str, extra: &str) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        let path = if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        };
        HeaderValue::try_from(format!(
            "{name}={value}; Path={path}; HttpOnly{secure}{extra}"
        ))
        .ok()
    }

    fn session(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
        let id = cookie(headers, SESSION_COOKIE)?;
        self.sessions.get(&session_key(id))
    }

    /// The page around `body`, for `session`'s user.
    fn page(&self, session: Option<&Session>, title: &str, body: Markup) -> Markup {
        pages::layout(
            &Page {
                prefix: &self.prefix,
                user: session.map(|s| s.subject.as_str()),
                csrf: session.map(|s| s.csrf.as_str()),
            },
            title,
            body,
        )
    }

    /// `body` in the page around it, for `session`'s user.
    fn render(&self, status: StatusCode, session: &Session, title: &str, body: Markup) -> Response {
        html(status, self.page(Some(session), title, body))
    }

    /// A page that only says something.
    fn message(
        &self,
        status: StatusCode,
        session: Option<&Session>,
        title: &str,
        text: &str,
    ) -> Response {
        html(
            status,
            self.page(session, title, pages::message(&self.prefix, title, text)),
        )
    }

    /// Starts a login: a PKCE verifier and `state` kept here, the browser sent to `/authorize`.
    fn login(&self, return_to: &str) -> Response {
        let (Ok(state), Ok(verifier)) = (random_token(32), random_token(32)) else {
            return self.message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Unavailable",
                "The random source failed; try again.",
            );
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        self.logins.insert(
            state.clone(),
            Arc::new(Login {
                verifier,
                return_to: return_to.to_owned(),
            }),
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", CONSOLE_CLIENT_ID)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let mut response = see_other(&format!("{}/authorize?{query}", self.state.endpoint_base));
        // Binds the login to this browser: the callback must come with it (login CSRF).
        // `Lax`, since the callback is a redirect from wherever the app's login page is.
        let max_age = format!("; SameSite=Lax; Max-Age={}", LOGIN_TTL.as_secs());
        if let Some(value) = self.set_cookie(LOGIN_COOKIE, &state, &max_age) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }

    /// Whether a form post came from the console's own pages (`Origin`, `Sec-Fetch-Site`)
    /// and carries the session's CSRF token.
    fn sent_by_console(&self, session: &Session, headers: &HeaderMap, form: &Form) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let cross_site = header("sec-fetch-site")
            .is_some_and(|site| !matches!(site, "same-origin" | "none"))
            || header("origin").is_some_and(|origin| origin != self.origin);
        let token_ok = form
            .get("csrf")
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(session.csrf.as_bytes())));
        !cross_site && token_ok
    }

    fn actor(session: &Session) -> Actor {
        Actor::new(Some(session.token.clone()))
    }

    /// The page for an admin operation's error.
    fn admin_error(&self, session: &Session, error: AdminError) -> Response {
        let (status, title, text) = match error {
            AdminError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such client or token (it may have just been deleted).".to_owned(),
            ),
            AdminError::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                "Not an approver",
                format!("You cannot decide on this registration: {why}."),
            ),
            AdminError::Conflict(why) => (StatusCode::CONFLICT, "Not done", format!("{why}.")),
            AdminError::BadRequest(why) | AdminError::Invalid(_, why) => {
                (StatusCode::BAD_REQUEST, "Not done", why)
            }
            AdminError::ConfirmationRequired(count) => (
                StatusCode::CONFLICT,
                "Confirmation needed",
                format!("This change revokes {count} token(s); confirm it first."),
            ),
            AdminError::Store(error) => {
                tracing::error!(target: "tower_oauth2::server", %error, "console: store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The store is unavailable; nothing was changed. Try again shortly.".to_owned(),
                )
            }
        };
        self.message(status, Some(session), title, &text)
    }
}

/// A logged-in request; without a session, the answer is the start of a login.
struct Authed(Arc<Session>);

impl FromRequestParts<Arc<Console>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(session) = console.session(&parts.headers) {
            return Ok(Authed(session));
        }
        // Back to the page asked for; after a form post, to the start page.
        // (`//host` would leave the site when the console is mounted at the root.)
        let return_to = match (&parts.method, parts.uri.path_and_query()) {
            (&Method::GET, Some(pq))
                if pq.as_str().starts_with('/') && !pq.as_str().starts_with("//") =>
            {
                pq.as_str()
            }
            _ => "/",
        };
        Err(console.login(return_to))
    }
}

/// A form body: `application/x-www-form-urlencoded`; names may repeat (check boxes).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Option<Form> {
        let form = has_media_type(headers, "application/x-www-form-urlencoded");
        (form && body.len() <= MAX_BODY).then(|| {
            Form(
                form_urlencoded::parse(body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            )
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed value, `None` when empty.
    fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// One item per line (or comma), trimmed, empty ones dropped.
    fn lines(&self, name: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or_default()
            .split(['\n', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Reads a form post and checks it (origin, CSRF); the refusal page otherwise (boxed: it is
/// the rare path).
fn read_form(
    console: &Console,
    session: &Session,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Form, Box<Response>> {
    let Some(form) = Form::parse(headers, body) else {
        return Err(Box::new(console.message(
            StatusCode::BAD_REQUEST,
            Some(session),
            "Refused",
            "The console takes form posts only. Nothing was changed.",
        )));
    };
    if !console.sent_by_console(session, headers, &form) {
        return Err(Box::new(console.message(
            StatusCode::FORBIDDEN,
            Some(session),
            "Refused",
            "This form was not sent from a page of the console (a cross-site request, or a \
             form from an earlier session). Nothing was changed. Reload the page and try again.",
        )));
    }
    Ok(form)
}

async fn not_found(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = console.session(&headers);
    console.message(
        StatusCode::NOT_FOUND,
        session.as_deref(),
        "Not found",
        "There is no such page in the console.",
    )
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
        .into_response()
}

/// `GET /callback`: the end of a login.
async fn callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Response {
    let refuse =
        |status: StatusCode, text: &str| console.message(status, None, "Login failed", text);
    let Ok(params) = Params::parse(uri.query().unwrap_or_default().as_bytes()) else {
        return refuse(StatusCode::BAD_REQUEST, "The login answer is malformed.");
    };
    let Some(state) = params.get("state") else {
        return refuse(StatusCode::BAD_REQUEST, "The login answer has no state.");
    };
    let bound = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    // Single use: removed whatever follows.
    let login = if bound {
        console.logins.remove(state)
    } else {
        None
    };
    let Some(login) = login else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "This login was not started in this browser, has expired, or was already used. \
             Open the console again to log in.",
        );
    };
    if params
        .get("iss")
        .is_some_and(|iss| iss != console.state.issuer)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The login answer names another issuer.",
        );
    }
    if let Some(error) = params.get("error") {
        let text = format!(
            "The authorization server refused the login: {error}{}",
            params
                .get("error_description")
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
        return refuse(StatusCode::FORBIDDEN, &text);
    }
    let Some(code) = params.get("code") else {
        return refuse(StatusCode::BAD_REQUEST, "The login answer has no code.");
    };
    let token = match redeem(&console, code, &login.verifier).await {
        Ok(token) => token,
        Err(why) => {
            tracing::warn!(target: "tower_oauth2::server", why, "console: login failed");
            return refuse(StatusCode::FORBIDDEN, &format!("The login failed: {why}."));
        }
    };
    let Some(subject) = token.subject().filter(|s| !s.is_empty()).map(str::to_owned) else {
        return refuse(StatusCode::FORBIDDEN, "The login's token names no subject.");
    };
    if !token.scopes().contains(&console.scope) {
        audit::admin(
            &console.state.audit,
            Some(&subject),
            "console_login_refused",
            CONSOLE_CLIENT_ID,
            Some("not a console user"),
        );
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "You logged in as {subject}, who is not a console user (the login was not \
                 granted the scope {}).",
                console.scope
            ),
        );
    }
    let (Ok(id), Ok(csrf)) = (random_token(32), random_token(32)) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "The random source failed; try again.",
        );
    };
    console.sessions.insert(
        session_key(&id),
        Arc::new(Session {
            subject: subject.clone(),
            token,
            csrf,
        }),
    );
    audit::admin(
        &console.state.audit,
        Some(&subject),
        "console_login",
        CONSOLE_CLIENT_ID,
        None,
    );
    // The root is the prefix itself (a nested router does not answer `/console/`).
    let target = match login.return_to.strip_prefix('/') {
        Some(rest) if rest.is_empty() || rest.starts_with('?') => {
            format!("{}{rest}", pages::home(&console.prefix))
        }
        _ => format!("{}{}", console.prefix, login.return_to),
    };
    let mut response = see_other(&target);
    if let Some(value) = console.set_cookie(SESSION_COOKIE, &id, "; SameSite=Strict") {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    if let Some(value) = console.set_cookie(LOGIN_COOKIE, "", "; SameSite=Lax; Max-Age=0") {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Redeems a login's code at the token endpoint's own code path, as the console's client, and
/// verifies the access token.
async fn redeem(console: &Console, code: &str, verifier: &str) -> Result<VerifiedToken, String> {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &console.redirect_uri)
        .append_pair("code_verifier", verifier)
        .finish();
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = STANDARD.encode(format!(
        "{}:{}",
        encode(CONSOLE_CLIENT_ID),
        encode(console.secret.expose())
    ));
    let request = http::Request::builder()
        .method(Method::POST)
        .uri("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::from(body))
        .map_err(|e| e.to_string())?;
    let response = super::token::handle(State(Arc::clone(&console.state)), request).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), MAX_BODY)
        .await
        .map_err(|_| "the token answer is unreadable".to_owned())?;
    let answer: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "the token answer is not JSON".to_owned())?;
    if !status.is_success() {
        return Err(format!(
            "the token endpoint answered {}",
            answer["error"].as_str().unwrap_or("an error")
        ));
    }
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| "the token answer has no access token".to_owned())?;
    console
        .state
        .authenticator
        .verify(token)
        .map_err(|e| format!("the access token does not verify: {e}"))
}

/// `POST /logout`.
async fn logout(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = read_form(&console, &session, &headers, &body) {
        return *response;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        console.sessions.invalidate(&session_key(id));
    }
    audit::admin(
        &console.state.audit,
        Some(&session.subject),
        "console_logout",
        CONSOLE_CLIENT_ID,
        None,
    );
    let mut response = console.message(
        StatusCode::OK,
        None,
        "Logged out",
        "You are logged out of the console.",
    );
    if let Some(value) = console.set_cookie(SESSION_COOKIE, "", "; SameSite=Strict; Max-Age=0") {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /?status=`: the clients.
async fn clients_page(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    uri: http::Uri,
) -> Response {
    let params = Params::parse(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let filter = params.get("status").and_then(ClientStatus::parse);
    let clients = match admin::client_list(&console.state).await {
        Ok(clients) => clients,
        Err(error) => return console.admin_error(&session, error.into()),
    };
    let body = pages::clients(&console.prefix, &clients, filter, CONSOLE_CLIENT_ID);
    console.render(StatusCode::OK, &session, "Clients", body)
}

/// A client id as one path segment: percent-encoded, so that an id with `/` or `:` in it (a
/// Client ID Metadata Document URL) stays one segment.
pub(super) fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the register and edit forms hold, as typed.
#[derive(Default)]
pub(crate) struct ClientForm {
    pub(crate) name: String,
    pub(crate) client_id: String,
    pub(crate) contacts: Vec<String>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) grant_types: Vec<String>,
    pub(crate) scopes: String,
    pub(crate) default_scopes: String,
    pub(crate) access_token_lifetime: String,
    pub(crate) refresh_token_lifetime: String,
    /// Register as a public client (no secret).
    pub(crate) public: bool,
}

impl ClientForm {
    fn read(form: &Form) -> Self {
        let text = |name| form.get(name).unwrap_or_default().trim().to_owned();
        ClientForm {
            name: text("name"),
            client_id: text("client_id"),
            contacts: form.lines("contacts"),
            redirect_uris: form.lines("redirect_uris"),
            grant_types: form.all("grant_types"),
            scopes: text("scopes"),
            default_scopes: text("default_scopes"),
            access_token_lifetime: text("access_token_lifetime"),
            refresh_token_lifetime: text("refresh_token_lifetime"),
            public: form.get("public").is_some(),
        }
    }

    fn of(client: &ClientRecord) -> Self {
        let lifetime =
            |l: Option<super::TokenLifetime>| l.map(|l| l.to_string()).unwrap_or_default();
        ClientForm {
            name: client.name.clone(),
            client_id: client.client_id.clone(),
            contacts: client.contacts.clone(),
            redirect_uris: client.redirect_uris.clone(),
            grant_types: client
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scopes: client.scopes.join(" "),
            default_scopes: client.default_scopes.join(" "),
            access_token_lifetime: lifetime(client.access_token_lifetime),
            refresh_token_lifetime: lifetime(client.refresh_token_lifetime),
            public: client.is_public(),
        }
    }

    /// The lifetimes' parse errors, each for its field (checked before anything else, so both
    /// show at once).
    fn lifetime_errors(&self) -> Vec<Field> {
        let mut errors = Vec::new();
        for (field, text) in [
            ("access_token_lifetime", &self.access_token_lifetime),
            ("refresh_token_lifetime", &self.refresh_token_lifetime),
        ] {
            if !text.is_empty()
                && let Err(error) = text.parse::<super::TokenLifetime>()
            {
                errors.push(Field {
                    name: field,
                    message: error.to_string(),
                });
            }
        }
        errors
    }

    fn optional(text: &str) -> Option<String> {
        (!text.is_empty()).then(|| text.to_owned())
    }

    fn registration(&self) -> ClientRegistration {
        let mut registration = ClientRegistration::new(self.name.clone());
        registration.client_id = Self::optional(&self.client_id);
        registration.contacts = self.contacts.clone();
        registration.redirect_uris = self.redirect_uris.clone();
        registration.grant_types = Some(self.grant_types.clone());
        registration.scopes = self.scopes.split_whitespace().map(str::to_owned).collect();
        registration.default_scopes = (!self.default_scopes.is_empty()).then(|| {
            self.default_scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        });
        registration.access_token_lifetime = Self::optional(&self.access_token_lifetime);
        registration.refresh_token_lifetime = Self::optional(&self.refresh_token_lifetime);
        registration.token_endpoint_auth_method = self.public.then(|| "none".to_owned());
        registration
    }

    fn change(&self, confirm: bool) -> ClientChange {
        let registration = self.registration();
        let default_scopes = registration
            .default_scopes
            .unwrap_or_else(|| registration.scopes.clone());
        ClientChange {
            name: Some(registration.name),
            contacts: Some(registration.contacts),
            redirect_uris: Some(registration.redirect_uris),
            grant_types: registration.grant_types,
            scopes: Some(registration.scopes),
            // Empty: all the scopes, as when registering (the form's hint says so).
            default_scopes: Some(default_scopes),
            // Empty: back to the server's default, which the change cannot say; keep the
            // client's.
            access_token_lifetime: registration.access_token_lifetime,
            refresh_token_lifetime: registration.refresh_token_lifetime,
            confirm,
        }
    }
}

fn field_error(error: RegistrationError) -> Result<Field, AdminError> {
    match error {
        RegistrationError::Invalid { field, message } => Ok(Field {
            name: field,
            message,
        }),
        RegistrationError::Store(StoreError::Conflict(what)) => Ok(Field {
            name: "client_id",
            message: what,
        }),
        RegistrationError::Store(error) => Err(AdminError::Store(error)),
    }
}

/// `GET /clients/new`.
async fn new_client_page(State(console): State<Arc<Console>>, Authed(session): Authed) -> Response {
    let form = ClientForm {
        grant_types: vec![GrantType::ClientCredentials.as_str().into()],
        ..ClientForm::default()
    };
    let body = pages::client_form(&console.prefix, &session.csrf, None, &form, &[], None);
    console.render(StatusCode::OK, &session, "Register a client", body)
}

/// `POST /clients`: registers a client; shows its secret once.
async fn create_client(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_form(&console, &session, &headers, &body) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    let typed = ClientForm::read(&form);
    let redisplay = |errors: Vec<Field>| {
        let body = pages::client_form(&console.prefix, &session.csrf, None, &typed, &errors, None);
        console.render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &session,
            "Register a client",
            body,
        )
    };
    let errors = typed.lifetime_errors();
    if !errors.is_empty() {
        return redisplay(errors);
    }
    match admin::register(&console.state, Some(&session.subject), typed.registration()).await {
        Ok((client, Some(secret))) => {
            let body = pages::secret_shown(&console.prefix, &client, secret.expose(), true);
            console.render(StatusCode::CREATED, &session, "Client registered", body)
        }
        Ok((client, None)) => see_other(&format!(
            "{}/clients/{}",
            console.prefix,
            segment(&client.client_id)
        )),
        Err(error) => match field_error(error) {
            Ok(field) => redisplay(vec![field]),
            Err(error) => console.admin_error(&session, error),
        },
    }
}

/// `GET /clients/{id}?done=`.
async fn client_page(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    uri: http::Uri,
) -> Response {
    let params = Params::parse(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let notice = params.get("done").and_then(Notice::parse);
    show_client(&console, &session, &id, notice).await
}

async fn show_client(
    console: &Console,
    session: &Session,
    id: &str,
    notice: Option<Notice>,
) -> Response {
    let state = &console.state;
    let loaded = async {
        let client = admin::load(state, id).await?;
        let decisions = state.store.decisions(id).await?;
        let tokens = state.store.client_tokens(id, crate::time::now()).await?;
        Ok::<_, AdminError>((client, decisions, tokens))
    };
    match loaded.await {
        Ok((client, decisions, tokens)) => {
            let view = pages::ClientView {
                client: &client,
                decisions: &decisions,
                tokens: &tokens,
                own: client.client_id == CONSOLE_CLIENT_ID,
            };
            let body = pages::client(&console.prefix, &session.csrf, &view, notice);
            console.render(StatusCode::OK, session, &client.name, body)
        }
        Err(error) => console.admin_error(session, error),
    }
}

/// `GET /clients/{id}/edit`.
async fn edit_page(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Response {
    match admin::load(&console.state, &id).await {
        Ok(client) => {
            let body = pages::client_form(
                &console.prefix,
                &session.csrf,
                Some(&id),
                &ClientForm::of(&client),
                &[],
                None,
            );
            console.render(StatusCode::OK, &session, "Change a client", body)
        }
        Err(error) => console.admin_error(&session, error),
    }
}

/// `POST /clients/{id}/edit`: a change; one that revokes tokens asks for confirmation first.
async fn edit_client(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_form(&console, &session, &headers, &body) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    if id == CONSOLE_CLIENT_ID {
        return own_client_refused(&console, &session);
    }
    let mut typed = ClientForm::read(&form);
    typed.client_id = id.clone();
    let redisplay = |status, errors: Vec<Field>, confirm: Option<usize>| {
        let body = pages::client_form(
            &console.prefix,
            &session.csrf,
            Some(&id),
            &typed,
            &errors,
            confirm,
        );
        console.render(status, &session, "Change a client", body)
    };
    let errors = typed.lifetime_errors();
    if !errors.is_empty() {
        return redisplay(StatusCode::UNPROCESSABLE_ENTITY, errors, None);
    }
    let confirm = form.get("confirm") == Some("1");
    let actor = Console::actor(&session);
    match admin::update(&console.state, &actor, &id, typed.change(confirm)).await {
        Ok(_) => see_other(&format!(
            "{}/clients/{}?done=changed",
            console.prefix,
            segment(&id)
        )),
        Err(AdminError::ConfirmationRequired(count)) => {
            redisplay(StatusCode::CONFLICT, Vec::new(), Some(count))
        }
        Err(AdminError::Invalid(field, message)) => redisplay(
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![Field {
                name: field,
                message,
            }],
            None,
        ),
        Err(error) => console.admin_error(&session, error),
    }
}

fn own_client_refused(console: &Console, session: &Session) -> Response {
    console.message(
        StatusCode::CONFLICT,
        Some(session),
        "Not done",
        "This is the console's own client: the console keeps it as it needs it to log people \
         in. Nothing was changed.",
    )
}

/// The actions that ask for confirmation first, and what their buttons say.
const CONFIRMED: [&str; 4] = ["disable", "enable", "delete", "secret"];

/// `GET /clients/{id}/confirm/{action}`.
async fn confirm_page(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if !CONFIRMED.contains(&action.as_str()) {
        return console.message(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such page in the console.",
        );
    }
    let state = &console.state;
    let loaded = async {
        let client = admin::load(state, &id).await?;
        let tokens = state.store.client_tokens(&id, crate::time::now()).await?;
        Ok::<_, AdminError>((client, tokens.len()))
    };
    match loaded.await {
        Ok((client, tokens)) => {
            let body = pages::confirm(&console.prefix, &session.csrf, &client, &action, tokens);
            console.render(StatusCode::OK, &session, "Confirm", body)
        }
        Err(error) => console.admin_error(&session, error),
    }
}

/// `POST /clients/{id}/do/{action}`: approve, reject, disable, enable, delete, secret.
async fn client_action(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_form(&console, &session, &headers, &body) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    if id == CONSOLE_CLIENT_ID {
        return own_client_refused(&console, &session);
    }
    let state = &console.state;
    let actor = Console::actor(&session);
    let claims = actor.claims();
    let done = |notice: &str| {
        see_other(&format!(
            "{}/clients/{}?done={notice}",
            console.prefix,
            segment(&id)
        ))
    };
    let decide = |decision: Decision| {
        let comment = form.text("comment");
        let claims = claims.clone();
        let actor_name = session.subject.clone();
        let id = id.clone();
        async move {
            admin::decide(
                state,
                Some(&actor_name),
                claims.as_ref(),
                &id,
                decision,
                comment,
            )
            .await
            .map(|_| ())
        }
    };
    let result = match action.as_str() {
        "approve" => decide(Decision::Approve).await.map(|()| done("approved")),
        "reject" => decide(Decision::Reject).await.map(|()| done("rejected")),
        "enable" => decide(Decision::Approve).await.map(|()| done("enabled")),
        "disable" => admin::disable_client(state, &actor, &id)
            .await
            .map(|_| done("disabled")),
        "delete" => admin::delete_client(state, &actor, &id)
            .await
            .map(|revoked| {
                let text =
                    format!("Client {id} was deleted and its {revoked} active token(s) revoked.");
                console.message(StatusCode::OK, Some(&session), "Client deleted", &text)
            }),
        "secret" => admin::new_secret(state, &actor, &id)
            .await
            .map(|(client, secret)| {
                let body = pages::secret_shown(&console.prefix, &client, secret.expose(), false);
                console.render(StatusCode::OK, &session, "New secret", body)
            }),
        _ => Err(AdminError::NotFound),
    };
    result.unwrap_or_else(|error| console.admin_error(&session, error))
}

/// `POST /clients/{id}/tokens/{token_id}/revoke`.
async fn revoke_token(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    Path((id, token_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = read_form(&console, &session, &headers, &body) {
        return *response;
    }
    let actor = Console::actor(&session);
    match admin::revoke_one(&console.state, &actor, &id, &token_id).await {
        Ok(_) => see_other(&format!(
            "{}/clients/{}?done=revoked",
            console.prefix,
            segment(&id)
        )),
        Err(error) => console.admin_error(&session, error),
    }
}

/// The admin API's audit query for a filter typed in the console; the fields that do not
/// parse.
fn admin_query(typed: &pages::AuditFilter, cursor: Option<&str>) -> (String, Vec<Field>) {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut errors = Vec::new();
    for (name, value) in [("client_id", &typed.client_id), ("kind", &typed.kind)] {
        if !value.is_empty() {
            query.append_pair(name, value);
        }
    }
    for (name, value) in [("since", &typed.since), ("until", &typed.until)] {
        if value.is_empty() {
            continue;
        }
        match dates::parse(value) {
            Some(seconds) => {
                query.append_pair(name, &seconds.to_string());
            }
            None => errors.push(Field {
                name,
                message: "a date (2026-12-03), a UTC date and time (2026-12-03T14:30) or \
                          seconds since 1970"
                    .into(),
            }),
        }
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    (query.finish(), errors)
}

/// `GET /audit?client_id=&kind=&since=&until=&cursor=`: `since` and `until` as typed in the
/// form (a date, a date and time in UTC, or seconds since the epoch).
async fn audit_page(
    State(console): State<Arc<Console>>,
    Authed(session): Authed,
    uri: http::Uri,
) -> Response {
    let params = Params::parse(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let typed = pages::AuditFilter {
        client_id: params.get("client_id").unwrap_or_default().to_owned(),
        kind: params.get("kind").unwrap_or_default().to_owned(),
        since: params.get("since").unwrap_or_default().to_owned(),
        until: params.get("until").unwrap_or_default().to_owned(),
    };
    let (query, mut errors) = admin_query(&typed, params.get("cursor"));
    let page = if errors.is_empty() {
        match admin::audit_query(Some(&query)) {
            Ok(parsed) => match admin::audit_page(&console.state, parsed).await {
                Ok(page) => Some(page),
                Err(error) => return console.admin_error(&session, error.into()),
            },
            Err(message) => {
                errors.push(Field {
                    name: "kind",
                    message,
                });
                None
            }
        }
    } else {
        None
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = pages::audit(&console.prefix, &typed, &errors, page.as_ref());
    console.render(status, &session, "Audit log", body)
}

#[cfg(test)]
mod tests {
    use super::{Form, cookie, origin_and_path};
    use http::HeaderMap;

    #[test]
    fn base_urls() {
        assert_eq!(
            origin_and_path("https://api.example.com/console/"),
            Ok(("https://api.example.com".into(), "/console".into(), true))
        );
        assert_eq!(
            origin_and_path("http://127.0.0.1:3000/console"),
            Ok(("http://127.0.0.1:3000".into(), "/console".into(), false))
        );
        for bad in [
            "http://api.example.com/console",
            "ftp://x/console",
            "/console",
            "https:///console",
            "https://x/console?a=b",
            "https://x/con sole",
            "https://x/con\"sole",
        ] {
            assert!(origin_and_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookies_and_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; tower_oauth2_console=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, "tower_oauth2_console"), Some("xyz"));
        assert_eq!(cookie(&headers, "tower_oauth2"), None);
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let form = Form::parse(&headers, b"g=a&g=b&l=x%0Ay,%20z");
        assert_eq!(
            form.as_ref().map(|f| f.all("g")),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            form.as_ref().map(|f| f.lines("l")),
            Some(vec!["x".into(), "y".into(), "z".into()])
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        assert!(Form::parse(&headers, b"{}").is_none());
    }
}
