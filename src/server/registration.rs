//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592): `POST
//! /register`, and `GET`, `PUT`, `DELETE /register/{client_id}` with the registration access
//! token.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::{self, Actor, AdminError, ClientChange, ClientRegistration, RegistrationError};
use super::client_auth::{self, RateLimiter};
use super::http::{has_media_type, json_response, random_token};
use super::store::{ClientRecord, GrantType, StoreError};
use super::{SecretHash, ServerState, audit};
use crate::error::ConfigError;

/// Turns on dynamic client registration (RFC 7591) with its management protocol (RFC 7592),
/// for [`AuthorizationServerBuilder::dynamic_registration`](super::AuthorizationServerBuilder::dynamic_registration).
/// Off unless configured.
///
/// Registered clients go through the server's [`ApprovalPolicy`](super::ApprovalPolicy) like
/// any other (approved at once, or pending until an operator decides). By default anyone may
/// register (as MCP clients expect), at most 10 times an hour per peer address, for the
/// `authorization_code` and `refresh_token` grants and the scopes listed here.
///
/// ```
/// use tower_oauth2::server::DynamicRegistration;
///
/// let registration = DynamicRegistration::new()
///     .scopes(["mcp:tools", "offline_access"]) // what a registered client may ask for
///     .initial_access_token("an initial access token of at least 32 characters");
/// # let _ = registration;
/// ```
#[derive(Clone)]
#[must_use]
pub struct DynamicRegistration {
    initial_access_token: Option<String>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    rate_limit: (u32, Duration),
}

impl Default for DynamicRegistration {
    fn default() -> Self {
        Self::new()
    }
}

impl DynamicRegistration {
    /// Open registration for the `authorization_code` and `refresh_token` grants, no scopes,
    /// 10 registrations an hour per peer.
    pub fn new() -> Self {
        Self {
            initial_access_token: None,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: Vec::new(),
            rate_limit: (10, Duration::from_secs(3600)),
        }
    }

    /// Only requests with `Authorization: Bearer <token>` may register (RFC 7591 §3: an
    /// initial access token handed out by the operator). At least 32 characters; kept as a
    /// digest and compared in constant time.
    pub fn initial_access_token(mut self, token: impl Into<String>) -> Self {
        self.initial_access_token = Some(token.into());
        self
    }

    /// The grant types a registered client may have (default `authorization_code` and
    /// `refresh_token`).
    pub fn grant_types(mut self, grants: impl IntoIterator<Item = GrantType>) -> Self {
        self.grant_types = grants.into_iter().collect();
        self
    }

    /// The scopes a registered client may have; a registration that names none gets them all.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// At most `max` registrations per peer address in each `window` (default 10 an hour);
    /// beyond, 429 with `Retry-After`. Serve with `into_make_service_with_connect_info` so that
    /// the peer is known; otherwise every peer shares one budget.
    pub fn rate_limit(mut self, max: u32, window: Duration) -> Self {
        self.rate_limit = (max, window);
        self
    }

    /// Checks the configuration against the server's grants.
    pub(crate) fn check(self, consent: bool, password: bool) -> Result<Registration, ConfigError> {
        let error = |m: String| ConfigError::new(format!("dynamic_registration: {m}"));
        let initial = match self.initial_access_token {
            Some(token) if token.chars().count() < 32 => {
                return Err(error(
                    "an initial access token needs at least 32 characters".into(),
                ));
            }
            Some(token) => Some(SecretHash::of(&token)),
            None => None,
        };
        if self.grant_types.is_empty() {
            return Err(error("at least one grant type".into()));
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && !consent {
            return Err(error(
                "authorization_code needs a consent handler on the server".into(),
            ));
        }
        if self.grant_types.contains(&GrantType::Password) && !password {
            return Err(error(
                "password needs a password verifier on the server".into(),
            ));
        }
        if let Some(bad) = self.scopes.iter().find(|s| !super::http::is_scope_token(s)) {
            return Err(error(format!("{bad:?} is not a scope")));
        }
        if self.rate_limit.0 == 0 || self.rate_limit.1.is_zero() {
            return Err(error(
                "rate_limit needs at least one registration and a positive window".into(),
            ));
        }
        Ok(Registration {
            initial,
            grant_types: self.grant_types,
            scopes: self.scopes,
            limiter: RateLimiter::new(self.rate_limit.0, self.rate_limit.1),
        })
    }
}

impl fmt::Debug for DynamicRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicRegistration")
            .field("initial_access_token", &self.initial_access_token.is_some())
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// A checked [`DynamicRegistration`].
#[derive(Debug)]
pub(crate) struct Registration {
    initial: Option<SecretHash>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    limiter: RateLimiter,
}

/// Who the audit log names for registrations made through this endpoint.
const ACTOR: &str = "dynamic-registration";

/// The largest registration body read.
const MAX_BODY: usize = 64 * 1024;

/// The client metadata of RFC 7591 §2 that this server keeps; other members are ignored, as
/// §2 says.
#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    contacts: Vec<String>,
    /// RFC 7592 §2.2: a `PUT` repeats the client's id.
    #[serde(default)]
    client_id: Option<String>,
}

/// An RFC 7591 §3.2.2 error, or the RFC 6750 answer to a missing or wrong token.
enum Refusal {
    Metadata(&'static str, String),
    Token(&'static str),
    RateLimited(Duration),
    Admin(AdminError),
}

impl From<AdminError> for Refusal {
    fn from(error: AdminError) -> Self {
        Refusal::Admin(error)
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        Refusal::Admin(AdminError::Store(error))
    }
}

impl From<RegistrationError> for Refusal {
    fn from(error: RegistrationError) -> Self {
        match error {
            RegistrationError::Invalid { field, message } => {
                let code = if field == "redirect_uris" {
                    "invalid_redirect_uri"
                } else {
                    "invalid_client_metadata"
                };
                Refusal::Metadata(code, format!("{field}: {message}"))
            }
            RegistrationError::Store(error) => error.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Metadata(code, description) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": code, "error_description": description}),
            ),
            Refusal::Token(description) => {
                let mut response = json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_token", "error_description": description}),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                response
            }
            Refusal::RateLimited(wait) => {
                let mut response = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"error": "invalid_request",
                            "error_description": "too many registrations from this address; retry later"}),
                );
                if let Ok(value) = HeaderValue::try_from(wait.as_secs().max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Refusal::Admin(AdminError::Invalid(field, message)) => {
                Refusal::from(RegistrationError::Invalid { field, message }).into_response()
            }
            Refusal::Admin(error) => error.into_response(),
        }
    }
}

fn metadata_error(message: impl Into<String>) -> Refusal {
    Refusal::Metadata("invalid_client_metadata", message.into())
}

/// The bearer token of a request, if it has exactly one `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads the JSON metadata of a registration request.
fn read_metadata(headers: &HeaderMap, body: &[u8]) -> Result<Metadata, Refusal> {
    if !has_media_type(headers, "application/json") {
        return Err(metadata_error("the body must be application/json"));
    }
    if body.len() > MAX_BODY {
        return Err(metadata_error("the body is too large"));
    }
    serde_json::from_slice(body).map_err(|e| metadata_error(format!("not valid metadata: {e}")))
}

impl Registration {
    /// The client registration that `metadata` asks for, checked against this configuration:
    /// grant and response types (RFC 7591 §2.1) and scopes.
    fn registration(&self, metadata: Metadata) -> Result<ClientRegistration, Refusal> {
        let grant_names = metadata
            .grant_types
            .unwrap_or_else(|| vec![GrantType::AuthorizationCode.as_str().into()]);
        let mut grants = Vec::new();
        for name in &grant_names {
            let grant = GrantType::parse(name)
                .ok_or_else(|| metadata_error(format!("unknown grant type {name:?}")))?;
            if !self.grant_types.contains(&grant) {
                return Err(metadata_error(format!(
                    "grant type {name} is not available to dynamically registered clients"
                )));
            }
            grants.push(grant);
        }
        let code = grants.contains(&GrantType::AuthorizationCode);
        let response_types = metadata.response_types.unwrap_or_else(|| {
            if code {
                vec!["code".into()]
            } else {
                Vec::new()
            }
        });
        if let Some(bad) = response_types.iter().find(|r| *r != "code") {
            return Err(metadata_error(format!(
                "response type {bad:?} is not supported (only code)"
            )));
        }
        if code != response_types.iter().any(|r| r == "code") {
            return Err(metadata_error(
                "grant type authorization_code goes with response type code, and only it",
            ));
        }
        let scopes =
            super::http::scopes_within(metadata.scope.as_deref(), &self.scopes).map_err(|bad| {
                metadata_error(format!(
                    "scope {bad} is not available to dynamically registered clients"
                ))
            })?;
        let mut registration = ClientRegistration::new(
            metadata
                .client_name
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "Dynamically registered client".into()),
        );
        registration.redirect_uris = metadata.redirect_uris;
        registration.grant_types = Some(grant_names);
        registration.scopes = scopes;
        registration.contacts = metadata.contacts;
        registration.token_endpoint_auth_method = Some(
            metadata
                .token_endpoint_auth_method
                .unwrap_or_else(|| "client_secret_basic".into()),
        );
        Ok(registration)
    }

    /// Counts a registration attempt from `peer`; refused when over the limit.
    fn admit(&self, peer: Option<IpAddr>) -> Result<(), Refusal> {
        let key = peer.map_or_else(
            || "register:unknown".to_owned(),
            |ip| format!("register:{ip}"),
        );
        let now = Instant::now();
        if let Some(wait) = self.limiter.blocked(&key, now) {
            return Err(Refusal::RateLimited(wait));
        }
        self.limiter.failed(&key, now);
        Ok(())
    }
}

/// The registration's configuration, or a 404 when it is off (the routes exist only then).
fn config(state: &ServerState) -> Result<&Registration, Refusal> {
    state
        .registration
        .as_ref()
        .ok_or(Refusal::Admin(AdminError::NotFound))
}

/// The client's metadata as RFC 7591 §3.2.1 returns it.
fn view(state: &ServerState, client: &ClientRecord) -> Value {
    let code = client.grant_types.contains(&GrantType::AuthorizationCode);
    json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types": if code { vec!["code"] } else { Vec::new() },
        "token_endpoint_auth_method": client.token_endpoint_auth_method(),
        "scope": client.scopes.join(" "),
        "contacts": client.contacts,
        "registration_client_uri": format!("{}/register/{}", state.endpoint_base, client.client_id),
    })
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /register`.
pub(crate) async fn register(
    State(state): State<Arc<ServerState>>,
    request: http::Request<axum::body::Body>,
) -> Response {
    match register_client(&state, request).await {
        Ok(response) => response,
        Err(refusal) => no_store(refusal.into_response()),
    }
}

async fn register_client(
    state: &ServerState,
    request: http::Request<axum::body::Body>,
) -> Result<Response, Refusal> {
    let config = config(state)?;
    let (parts, body) = request.into_parts();
    if let Some(initial) = &config.initial {
        let presented = bearer(&parts.headers).unwrap_or_default();
        if !initial.verify(presented) {
            return Err(Refusal::Token(
                "an initial access token is required to register",
            ));
        }
    }
    config.admit(client_auth::peer(&parts.extensions))?;
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| metadata_error("the body is too large or unreadable"))?;
    let metadata = read_metadata(&parts.headers, &body)?;
    if metadata.client_id.is_some() {
        return Err(metadata_error("client_id is assigned by the server"));
    }
    let registration = config.registration(metadata)?;
    let public = registration.token_endpoint_auth_method.as_deref() == Some("none");
    let secret = if public {
        None
    } else {
        Some(
            super::ClientSecret::generate()
                .map_err(|e| {
                    Refusal::Admin(AdminError::Store(StoreError::Unavailable(e.to_string())))
                })?
                .0,
        )
    };
    let hash = secret.as_ref().map(|s| SecretHash::of(s.expose()));
    let mut record = admin::checked_record(state, registration, hash)?;
    let token = random_token(32)
        .map_err(|e| Refusal::Admin(AdminError::Store(StoreError::Unavailable(e.description))))?;
    record.registration_token = Some(SecretHash::of(&token));
    admin::insert(state, Some(ACTOR), record.clone()).await?;
    let mut body = view(state, &record);
    body["registration_access_token"] = token.into();
    if let Some(secret) = secret {
        body["client_secret"] = secret.expose().into();
        body["client_secret_expires_at"] = 0.into();
    }
    Ok(no_store(json_response(StatusCode::CREATED, &body)))
}

/// The client the registration access token of a request manages (RFC 7592 §2): `id`, if the
/// token is its own. Any mismatch is the same 401, so ids cannot be probed.
async fn managed(
    state: &ServerState,
    headers: &HeaderMap,
    id: &str,
) -> Result<ClientRecord, Refusal> {
    config(state)?;
    let refused = Refusal::Token("the registration access token is not valid for this client");
    let Some(token) = bearer(headers) else {
        return Err(refused);
    };
    if !client_auth::valid_client_id(id) {
        return Err(refused);
    }
    let client = state.store.client(id).await?;
    match client {
        Some(client)
            if client
                .registration_token
                .as_ref()
                .is_some_and(|hash| hash.verify(token)) =>
        {
            Ok(client)
        }
        _ => {
            // As long as a match would take.
            SecretHash::of("").verify(token);
            Err(refused)
        }
    }
}

/// `GET /register/{client_id}`.
pub(crate) async fn read(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match managed(&state, &headers, &id).await {
        Ok(client) => no_store(json_response(StatusCode::OK, &view(&state, &client))),
        Err(refusal) => no_store(refusal.into_response()),
    }
}

/// `PUT /register/{client_id}`: replaces the client's metadata (RFC 7592 §2.2). A change that
/// narrows it revokes the tokens that no longer fit, as in the admin API.
pub(crate) async fn replace(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match replace_client(&state, &id, &headers, &body).await {
        Ok(response) => response,
        Err(refusal) => no_store(refusal.into_response()),
    }
}

async fn replace_client(
    state: &ServerState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let current = managed(state, headers, id).await?;
    let config = config(state)?;
    let metadata = read_metadata(headers, body)?;
    if metadata.client_id.as_deref() != Some(id) {
        return Err(metadata_error(
            "client_id must be repeated and equal the client's",
        ));
    }
    let method = metadata
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| current.token_endpoint_auth_method().to_owned());
    let public = method == "none";
    if public != current.is_public() {
        return Err(metadata_error(
            "token_endpoint_auth_method cannot turn a public client confidential or back",
        ));
    }
    let registration = config.registration(metadata)?;
    let change = ClientChange {
        name: Some(registration.name),
        contacts: Some(registration.contacts),
        redirect_uris: Some(registration.redirect_uris),
        grant_types: registration.grant_types,
        scopes: Some(registration.scopes.clone()),
        default_scopes: Some(registration.scopes),
        access_token_lifetime: None,
        refresh_token_lifetime: None,
        confirm: true,
    };
    let updated = admin::update(state, &Actor::new(None), id, change)
        .await
        .map_err(|e| match e {
            AdminError::Invalid(field, message) => {
                RegistrationError::Invalid { field, message }.into()
            }
            other => Refusal::Admin(other),
        })?;
    audit::admin(&state.audit, Some(ACTOR), "registration_update", id, None);
    Ok(no_store(json_response(
        StatusCode::OK,
        &view(state, &updated.client),
    )))
}

/// `DELETE /register/{client_id}`: deletes the client and revokes its tokens (RFC 7592 §2.3).
pub(crate) async fn delete(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        managed(&state, &headers, &id).await?;
        admin::delete_client(&state, &Actor::new(None), &id).await?;
        Ok::<_, Refusal>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    match result {
        Ok(response) => no_store(response),
        Err(refusal) => no_store(refusal.into_response()),
    }
}
