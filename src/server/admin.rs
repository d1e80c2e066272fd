//! The admin API: JSON endpoints to manage clients and their tokens.
//!
//! | Method and path | Does |
//! |---|---|
//! | `POST /clients` | register a client ([`ClientRegistration`]); answers 201 with its `client_secret`, shown once |
//! | `GET /clients` | list clients |
//! | `GET /clients/{id}` | show a client |
//! | `POST /clients/{id}/approve` | approve a pending (or rejected, or disabled) client |
//! | `POST /clients/{id}/reject` | reject a pending client |
//! | `GET /clients/{id}/decisions` | the approval decisions on a client: who, when, approve or reject, as which groups, comment |
//! | `POST /clients/{id}/disable` | disable a client and revoke all its tokens |
//! | `POST /clients/{id}/secret` | rotate the secret; answers with the new one, shown once |
//! | `PATCH /clients/{id}` | change a client (name, contacts, redirect URIs, grant types, scopes, default scopes, lifetimes); a change that narrows it revokes the tokens that no longer fit, and needs `"confirm": true` (otherwise 409 `confirmation_required` with `tokens_to_revoke`) |
//! | `DELETE /clients/{id}` | revoke all the client's tokens and delete it |
//! | `GET /clients/{id}/tokens` | the client's active tokens: ids, kinds, scopes, times; never values |
//! | `DELETE /clients/{id}/tokens/{token_id}` | revoke one token (a refresh token with its family) |
//! | `GET /audit` | the audit log, newest first: `?client_id=&kind=&since=&until=&cursor=&limit=`; answers `events` and `next_cursor` |
//!
//! `GET /clients` also gives each client's `last_token_issued_at` and `tokens_issued_24h`, from
//! the audit log. Actions are recorded in the audit log with the administrator's subject when
//! the app's authentication layer put a [`VerifiedToken`](crate::VerifiedToken) in the request.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Params, has_media_type, json_response, parse_scope, random_token};
use super::store::{
    ApprovalDecision, AuditQuery, AuditRecord, ClientActivity, ClientRecord, ClientStatus,
    Decision, DecisionOutcome, GrantType, StoreError, TokenKind, TokenRecord,
};
use super::{ApprovalPolicy, ClientSecret, ServerState, TokenLifetime, audit};
use crate::time;

/// A client registration, as the admin API's `POST /clients` takes it (unknown members are
/// refused) or as [`AuthorizationServer::register_client`](super::AuthorizationServer::register_client)
/// takes it.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientRegistration {
    /// A human-readable name (required).
    pub name: String,
    /// The `client_id`; generated when absent. 1–128 characters of `[A-Za-z0-9-._~]`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Redirect URIs for the authorization-code grant: absolute, no fragment; `https`, `http`
    /// on a loopback host, or a private-use scheme containing a dot (RFC 8252).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Grant types (default `["client_credentials"]`).
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// The scopes the client may request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Granted when a request names no scope (default: all of `scopes`).
    #[serde(default)]
    pub default_scopes: Option<Vec<String>>,
    /// Access-token lifetime, e.g. `"15min"` or `"unlimited"` (default: the server's).
    #[serde(default)]
    pub access_token_lifetime: Option<String>,
    /// Refresh-token lifetime (default: the server's).
    #[serde(default)]
    pub refresh_token_lifetime: Option<String>,
    /// E-mail addresses of the people responsible for the client, told when the registration
    /// is approved or rejected (at most 10).
    #[serde(default)]
    pub contacts: Vec<String>,
    /// How the client authenticates at the token endpoint (RFC 7591 §2):
    /// `client_secret_basic` (the default; `client_secret_post` works too) or
    /// `client_secret_post` for a confidential client, which gets a secret; `none` for a public
    /// client (a native or browser app, a CLI), which gets none and may use only
    /// `authorization_code` (default) and `refresh_token`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// A secret chosen by the application instead of a generated one (not accepted from JSON).
    #[serde(skip)]
    pub secret: Option<ClientSecret>,
}

impl ClientRegistration {
    /// A registration with this name and the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for ClientRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("contacts", &self.contacts)
            .finish_non_exhaustive()
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationError {
    /// A member is missing or wrong.
    Invalid {
        /// The member at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The store failed or already has a client with that id.
    Store(StoreError),
}

impl std::fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistrationError::Invalid { field, message } => write!(f, "{field}: {message}"),
            RegistrationError::Store(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for RegistrationError {}

fn invalid(field: &'static str, message: impl Into<String>) -> RegistrationError {
    RegistrationError::Invalid {
        field,
        message: message.into(),
    }
}

/// An admin API error.
pub(crate) enum AdminError {
    BadRequest(String),
    Invalid(&'static str, String),
    NotFound,
    Conflict(String),
    Forbidden(String),
    /// The change would revoke this many tokens and was not confirmed.
    ConfirmationRequired(usize),
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        AdminError::Store(error)
    }
}

impl From<RegistrationError> for AdminError {
    fn from(error: RegistrationError) -> Self {
        match error {
            RegistrationError::Invalid { field, message } => AdminError::Invalid(field, message),
            RegistrationError::Store(StoreError::Conflict(what)) => AdminError::Conflict(what),
            RegistrationError::Store(error) => AdminError::Store(error),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AdminError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": message}),
            ),
            AdminError::Invalid(field, message) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid_client_metadata", "field": field,
                       "error_description": format!("{field}: {message}")}),
            ),
            AdminError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                json!({"error": "not_an_approver", "error_description": message}),
            ),
            AdminError::ConfirmationRequired(count) => (
                StatusCode::CONFLICT,
                json!({
                    "error": "confirmation_required",
                    "error_description": format!(
                        "this change narrows the client and revokes {count} active token(s)                          that no longer fit it; send it again with \"confirm\": true"
                    ),
                    "tokens_to_revoke": count,
                }),
            ),
            AdminError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "error_description": "no such client or token"}),
            ),
            AdminError::Conflict(what) => (
                StatusCode::CONFLICT,
                json!({"error": "conflict", "error_description": what}),
            ),
            AdminError::Store(error) => {
                tracing::error!(target: "tower_oauth2::server", %error, "admin: store failed");
                let mut response = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "temporarily_unavailable",
                            "error_description": "the store is unavailable; retry later"}),
                );
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
                return response;
            }
        };
        json_response(status, &body)
    }
}

pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/clients", get(list).post(create))
        .route("/clients/{id}", get(show).patch(patch).delete(remove))
        .route("/clients/{id}/approve", post(approve))
        .route("/clients/{id}/reject", post(reject))
        .route("/clients/{id}/disable", post(disable))
        .route("/clients/{id}/secret", post(rotate_secret))
        .route("/clients/{id}/tokens", get(tokens))
        .route("/clients/{id}/tokens/{token_id}", delete(revoke_token))
        .route("/clients/{id}/decisions", get(decisions))
        .route("/audit", get(audit_log))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Who made an admin request: the subject of the token the app's authentication layer
/// verified for it, when there is one (the admin router performs no authentication itself).
pub(crate) struct Actor(Option<crate::token::VerifiedToken>);

impl Actor {
    /// The administrator whose verified token this is (the console's session holds one).
    #[cfg_attr(not(feature = "console"), allow(dead_code))]
    pub(crate) fn new(token: Option<crate::token::VerifiedToken>) -> Self {
        Actor(token)
    }

    /// The administrator's subject, if known.
    pub(crate) fn name(&self) -> Option<&str> {
        self.0.as_ref().and_then(|t| t.subject())
    }

    /// The claims of the administrator's token, if any.
    pub(crate) fn claims(&self) -> Option<Value> {
        self.0.as_ref().and_then(|t| t.claims::<Value>().ok())
    }

    /// Who revoked, for the audit event: the subject, or `admin`.
    fn by(&self) -> &str {
        self.name().unwrap_or("admin")
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Actor(
            parts
                .extensions
                .get::<crate::token::VerifiedToken>()
                .cloned(),
        ))
    }
}

fn lifetime_text(lifetime: Option<TokenLifetime>) -> Value {
    lifetime.map_or(Value::Null, |l| l.to_string().into())
}

fn client_view(client: &ClientRecord) -> Value {
    json!({
        "client_id": client.client_id,
        "name": client.name,
        "status": client.status.as_str(),
        "token_endpoint_auth_method": client.token_endpoint_auth_method(),
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": client.scopes,
        "default_scopes": client.default_scopes,
        "access_token_lifetime": lifetime_text(client.access_token_lifetime),
        "refresh_token_lifetime": lifetime_text(client.refresh_token_lifetime),
        "created_at": client.created_at,
        "contacts": client.contacts,
    })
}

fn token_view(token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "kind": token.kind.as_str(),
        "subject": token.subject,
        "scopes": token.scopes,
        "issued_at": token.issued_at,
        "expires_at": token.expires_at,
        "family_id": token.family_id,
    })
}

/// Checks a registration and stores the client.
pub(crate) async fn register(
    state: &ServerState,
    actor: Option<&str>,
    mut registration: ClientRegistration,
) -> Result<(ClientRecord, Option<ClientSecret>), RegistrationError> {
    let public = registration.token_endpoint_auth_method.as_deref() == Some("none");
    let (secret, shown) = match (registration.secret.take(), public) {
        (Some(_), true) => {
            return Err(invalid(
                "token_endpoint_auth_method",
                "a public client (none) has no secret",
            ));
        }
        (None, true) => (None, false),
        (Some(secret), false) => (Some(secret), false),
        (None, false) => {
            let (secret, _) =
                ClientSecret::generate().map_err(|e| invalid("client_secret", e.to_string()))?;
            (Some(secret), true)
        }
    };
    let hash = secret.as_ref().map(|s| super::SecretHash::of(s.expose()));
    let record = checked_record(state, registration, hash)?;
    insert(state, actor, record.clone()).await?;
    Ok((record, secret.filter(|_| shown)))
}

/// Stores a checked new client, audits it and tells the approvers.
pub(crate) async fn insert(
    state: &ServerState,
    actor: Option<&str>,
    record: ClientRecord,
) -> Result<(), RegistrationError> {
    let (client_id, status) = (record.client_id.clone(), record.status);
    let notify = matches!(state.approval, ApprovalPolicy::Groups(_)).then(|| record.clone());
    state
        .store
        .insert_client(record)
        .await
        .map_err(RegistrationError::Store)?;
    audit::admin(
        &state.audit,
        actor,
        "register",
        &client_id,
        Some(status.as_str()),
    );
    if let (ApprovalPolicy::Groups(groups), Some(record)) = (&state.approval, notify) {
        state.notifications.submitted(&record, groups);
    }
    Ok(())
}

/// Checks a registration's members and builds the client record it describes, new: status
/// by the approval policy, created now.
pub(crate) fn checked_record(
    state: &ServerState,
    registration: ClientRegistration,
    secret_hash: Option<super::SecretHash>,
) -> Result<ClientRecord, RegistrationError> {
    let name = registration.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name", "required, at most 200 characters"));
    }
    let client_id = match registration.client_id {
        Some(id) => {
            let ok = (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !ok {
                return Err(invalid(
                    "client_id",
                    "1 to 128 characters of A-Z a-z 0-9 - . _ ~",
                ));
            }
            id
        }
        None => random_token(16).map_err(|e| invalid("client_id", e.description))?,
    };
    let public = secret_hash.is_none();
    match (registration.token_endpoint_auth_method.as_deref(), public) {
        (None | Some("client_secret_basic" | "client_secret_post"), false)
        | (Some("none"), true) => {}
        (Some(method @ ("client_secret_basic" | "client_secret_post" | "none")), _) => {
            return Err(invalid(
                "token_endpoint_auth_method",
                format!("{method} does not fit this client: public and confidential do not change"),
            ));
        }
        (None, true) => {
            return Err(invalid(
                "token_endpoint_auth_method",
                "a client without a secret is public: say none",
            ));
        }
        (Some(other), _) => {
            return Err(invalid(
                "token_endpoint_auth_method",
                format!(
                    "{other:?} is not supported: client_secret_basic, client_secret_post or none"
                ),
            ));
        }
    }
    let default_grant = if public {
        "authorization_code"
    } else {
        "client_credentials"
    };
    let mut grant_types = Vec::new();
    for name in registration
        .grant_types
        .unwrap_or_else(|| vec![default_grant.into()])
    {
        let grant = GrantType::parse(&name)
            .ok_or_else(|| invalid("grant_types", format!("unknown grant type {name:?}")))?;
        if !grant_types.contains(&grant) {
            grant_types.push(grant);
        }
    }
    if grant_types.is_empty() {
        return Err(invalid("grant_types", "at least one grant type"));
    }
    let has = |g: GrantType| grant_types.contains(&g);
    if public
        && let Some(grant) = grant_types
            .iter()
            .find(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
    {
        return Err(invalid(
            "grant_types",
            format!(
                "a public client may use only authorization_code and refresh_token, not {}",
                grant.as_str()
            ),
        ));
    }
    if has(GrantType::AuthorizationCode) && state.consent.is_none() {
        return Err(invalid(
            "grant_types",
            "authorization_code needs a consent handler on the server",
        ));
    }
    if has(GrantType::Password) && state.password.is_none() {
        return Err(invalid(
            "grant_types",
            "password needs a password verifier on the server",
        ));
    }
    if has(GrantType::RefreshToken)
        && !has(GrantType::AuthorizationCode)
        && !has(GrantType::Password)
    {
        return Err(invalid(
            "grant_types",
            "refresh_token is only issued with authorization_code or password",
        ));
    }
    for uri in &registration.redirect_uris {
        check_redirect_uri(uri).map_err(|m| invalid("redirect_uris", m))?;
    }
    if has(GrantType::AuthorizationCode) && registration.redirect_uris.is_empty() {
        return Err(invalid(
            "redirect_uris",
            "authorization_code needs at least one redirect URI",
        ));
    }
    let scopes = scope_list(&registration.scopes).map_err(|m| invalid("scopes", m))?;
    let default_scopes = match registration.default_scopes {
        None => scopes.clone(),
        Some(list) => {
            let list = scope_list(&list).map_err(|m| invalid("default_scopes", m))?;
            if let Some(bad) = list.iter().find(|s| !scopes.contains(s)) {
                return Err(invalid(
                    "default_scopes",
                    format!("{bad} is not among the client's scopes"),
                ));
            }
            list
        }
    };
    let lifetime = |field: &'static str, text: Option<String>| match text {
        None => Ok(None),
        Some(text) => match text.parse::<TokenLifetime>() {
            Ok(l) => match super::builder::check_lifetime(l) {
                Ok(()) => Ok(Some(l)),
                Err(e) => Err(invalid(field, e)),
            },
            Err(e) => Err(invalid(field, e.to_string())),
        },
    };
    let access_token_lifetime =
        lifetime("access_token_lifetime", registration.access_token_lifetime)?;
    let refresh_token_lifetime = lifetime(
        "refresh_token_lifetime",
        registration.refresh_token_lifetime,
    )?;
    if access_token_lifetime == Some(TokenLifetime::Unlimited) && !state.allow_unlimited {
        return Err(invalid(
            "access_token_lifetime",
            "unlimited access tokens are not allowed on this server",
        ));
    }
    if registration.contacts.len() > 10 {
        return Err(invalid("contacts", "at most 10 addresses"));
    }
    for contact in &registration.contacts {
        super::approval::check_email(contact).map_err(|e| invalid("contacts", e))?;
    }
    Ok(ClientRecord {
        client_id,
        name: name.to_owned(),
        secret_hash,
        redirect_uris: registration.redirect_uris,
        grant_types,
        scopes,
        default_scopes,
        access_token_lifetime,
        refresh_token_lifetime,
        status: match state.approval {
            ApprovalPolicy::Automatic => ClientStatus::Approved,
            ApprovalPolicy::Manual | ApprovalPolicy::Groups(_) => ClientStatus::Pending,
        },
        created_at: time::now(),
        contacts: registration.contacts,
        registration_token: None,
    })
}

fn scope_list(list: &[String]) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    if list.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err("each scope is one non-empty token without spaces".into());
    }
    parse_scope(&list.join(" ")).map_err(|e| e.description)
}

/// RFC 6749 §3.1.2 and RFC 8252: absolute, no fragment; https, http on loopback, or a
/// private-use scheme.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.contains('#') {
        return Err(format!("{uri:?} has a fragment"));
    }
    if uri.len() > 2000 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{uri:?} is not a valid URI"));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("{uri:?} is not absolute"));
    };
    let authority = rest
        .strip_prefix("//")
        .map(|r| r.split(['/', '?']).next().unwrap_or(""));
    match scheme.to_ascii_lowercase().as_str() {
        "https" if authority.is_some_and(|a| !a.is_empty()) => Ok(()),
        "http" => {
            let host = authority.unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            });
            if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
                Ok(())
            } else {
                Err(format!("{uri:?}: http is only allowed on a loopback host"))
            }
        }
        "javascript" | "data" | "file" | "vbscript" => Err(format!("{uri:?}: scheme not allowed")),
        s if s.contains('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-')) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{uri:?}: use https, http on a loopback host, or a private-use scheme"
        )),
    }
}

async fn create(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let registration: ClientRegistration =
        match json_object(&headers, &body, "a valid registration") {
            Ok(registration) => registration,
            Err(error) => return error.into_response(),
        };
    match register(&state, actor.name(), registration).await {
        Ok((client, secret)) => {
            let mut body = client_view(&client);
            if let Some(secret) = secret {
                body["client_secret"] = secret.expose().into();
            }
            json_response(StatusCode::CREATED, &body)
        }
        Err(error) => AdminError::from(error).into_response(),
    }
}

/// Every client, with its token activity of the last 24 hours.
pub(crate) async fn client_list(
    state: &ServerState,
) -> Result<Vec<(ClientRecord, Option<ClientActivity>)>, StoreError> {
    let clients = state.store.clients().await?;
    let mut activity: std::collections::HashMap<String, ClientActivity> = state
        .store
        .client_activity(time::now().saturating_sub(ACTIVITY_WINDOW))
        .await?
        .into_iter()
        .map(|a| (a.client_id.clone(), a))
        .collect();
    Ok(clients
        .into_iter()
        .map(|client| {
            let activity = activity.remove(&client.client_id);
            (client, activity)
        })
        .collect())
}

async fn list(State(state): State<Arc<ServerState>>) -> Result<Response, AdminError> {
    let views: Vec<Value> = client_list(&state)
        .await?
        .iter()
        .map(|(client, activity)| {
            let mut view = client_view(client);
            view["last_token_issued_at"] = activity.as_ref().map(|a| a.last_issued_at).into();
            view["tokens_issued_24h"] = activity.as_ref().map_or(0, |a| a.issued_since).into();
            view
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"clients": views})))
}

/// The window of a client's `tokens_issued_24h`.
const ACTIVITY_WINDOW: u64 = 86_400;

/// Events a page of the audit log holds by default, and at most.
const AUDIT_PAGE: (usize, usize) = (100, 500);

/// Reads an audit-log query from URL query parameters: `client_id`, `kind` (an
/// [`AuditKind`](super::AuditKind) name), `since` and `until` (seconds since the Unix epoch;
/// `since` inclusive, `until` exclusive), `cursor` (the `next_cursor` of the previous page) and
/// `limit` (1–500, default 100).
pub(crate) fn audit_query(query: Option<&str>) -> Result<AuditQuery, String> {
    let params = Params::parse(query.unwrap_or_default().as_bytes()).map_err(|e| e.description)?;
    let number = |name: &str| -> Result<Option<u64>, String> {
        params
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("`{name}` must be a whole number of seconds or a cursor"))
            })
            .transpose()
    };
    let mut parsed = AuditQuery::new(AUDIT_PAGE.0);
    parsed.client_id = params.get("client_id").map(str::to_owned);
    if let Some(kind) = params.get("kind") {
        let known = super::AuditKind::from_name(kind).ok_or_else(|| {
            let names: Vec<&str> = super::AuditKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("`kind` must be one of {}", names.join(", "))
        })?;
        parsed.kind = Some(known.as_str().to_owned());
    }
    parsed.since = number("since")?;
    parsed.until = number("until")?;
    parsed.before = number("cursor")?;
    if let Some(limit) = number("limit")? {
        parsed.limit = usize::try_from(limit)
            .ok()
            .filter(|l| (1..=AUDIT_PAGE.1).contains(l))
            .ok_or_else(|| format!("`limit` must be between 1 and {}", AUDIT_PAGE.1))?;
    }
    Ok(parsed)
}

/// A page of the audit log, newest first, and the cursor of the next page (`None` on the last).
pub(crate) async fn audit_page(
    state: &ServerState,
    query: AuditQuery,
) -> Result<(Vec<AuditRecord>, Option<u64>), StoreError> {
    let limit = query.limit;
    let events = state.store.audit_events(query).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok((events, next))
}

async fn audit_log(
    State(state): State<Arc<ServerState>>,
    uri: http::Uri,
) -> Result<Response, AdminError> {
    let query = audit_query(uri.query()).map_err(AdminError::BadRequest)?;
    let (events, next) = audit_page(&state, query).await?;
    let views: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "at": e.at,
                "kind": e.kind,
                "client_id": e.client_id,
                "actor": e.actor,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"events": views, "next_cursor": next}),
    ))
}

pub(crate) async fn load(state: &ServerState, id: &str) -> Result<ClientRecord, AdminError> {
    state.store.client(id).await?.ok_or(AdminError::NotFound)
}

async fn show(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let client = load(&state, &id).await?;
    Ok(json_response(StatusCode::OK, &client_view(&client)))
}

/// Replaces a client's record, and forgets the cached one.
async fn update_client(state: &ServerState, client: ClientRecord) -> Result<bool, AdminError> {
    let id = client.client_id.clone();
    let updated = state.store.update_client(client).await;
    // Even on an error: the update may have been committed.
    state.clients.invalidate(&id);
    Ok(updated?)
}

async fn set_status(
    state: &ServerState,
    actor: &Actor,
    id: &str,
    to: ClientStatus,
    allowed_from: &[ClientStatus],
) -> Result<ClientRecord, AdminError> {
    let mut client = load(state, id).await?;
    if !allowed_from.contains(&client.status) {
        return Err(AdminError::Conflict(format!(
            "client is {}; cannot change it to {}",
            client.status.as_str(),
            to.as_str()
        )));
    }
    client.status = to;
    if !update_client(state, client.clone()).await? {
        return Err(AdminError::NotFound);
    }
    audit::admin(&state.audit, actor.name(), to.as_str(), id, None);
    Ok(client)
}

/// The optional body of an approval decision: `{"comment": "…"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    comment: Option<String>,
}

/// The comment of a decision request: an empty body, or a JSON object with at most a
/// `comment` ([`decide`] checks it).
fn decision_comment(headers: &http::HeaderMap, body: &[u8]) -> Result<Option<String>, AdminError> {
    if body.is_empty() {
        return Ok(None);
    }
    let parsed: DecisionBody = json_object(headers, body, "a decision (`comment` only)")?;
    Ok(parsed.comment)
}

/// A decision taken: the client after it, and every decision on it.
pub(crate) struct Decided {
    pub(crate) client: ClientRecord,
    pub(crate) decisions: Vec<ApprovalDecision>,
}

/// An approver's decision on a registration, under the server's approval policy. Under
/// [`ApprovalPolicy::Groups`], `approver` must be in one of the groups (by the listed members,
/// the app's directory, or `claims`); under the other policies, any administrator decides
/// (the first decision settles). Deciding the same way twice is a no-op. Approving a disabled
/// client re-enables it (as an administrator's action), and so does approving a rejected one,
/// except under approver groups, where a rejection is final.
pub(crate) async fn decide(
    state: &ServerState,
    approver: Option<&str>,
    claims: Option<&Value>,
    client_id: &str,
    decision: Decision,
    comment: Option<String>,
) -> Result<Decided, AdminError> {
    // Trimmed; empty is none; at most 1,000 characters.
    let comment = comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if comment.as_ref().is_some_and(|c| c.chars().count() > 1000) {
        return Err(AdminError::BadRequest(
            "`comment`: at most 1,000 characters".into(),
        ));
    }
    let (groups, name) = match &state.approval {
        ApprovalPolicy::Groups(groups) => {
            let Some(subject) = approver else {
                return Err(AdminError::Forbidden(
                    "the approver is unknown: under approver groups the admin API must sit \
                     behind an authentication layer"
                        .into(),
                ));
            };
            let listed = match &state.approver_directory {
                Some(directory) => directory.groups_of(subject).await,
                None => Vec::new(),
            };
            let mine = groups.groups_of(subject, claims, &listed);
            if mine.is_empty() {
                let names: Vec<&str> = groups.groups().iter().map(|g| g.name()).collect();
                return Err(AdminError::Forbidden(format!(
                    "{subject} is in none of the approver groups ({}), so cannot decide on \
                     registrations",
                    names.join(", ")
                )));
            }
            (mine, subject.to_owned())
        }
        _ => (Vec::new(), approver.unwrap_or("admin").to_owned()),
    };
    let record = ApprovalDecision {
        client_id: client_id.to_owned(),
        approver: name.clone(),
        decision,
        groups,
        comment,
        decided_at: time::now(),
    };
    let policy = &state.approval;
    let settle = move |decisions: &[ApprovalDecision]| match policy {
        ApprovalPolicy::Groups(groups) => groups.settle(decisions),
        // The first decision settles.
        _ => decisions.last().map(|d| match d.decision {
            Decision::Approve => ClientStatus::Approved,
            Decision::Reject => ClientStatus::Rejected,
        }),
    };
    match state.store.decide(record, &settle).await? {
        DecisionOutcome::NotFound => Err(AdminError::NotFound),
        // The approver approved this client once, and it has been disabled since: approving
        // again re-enables it, as below.
        DecisionOutcome::AlreadyDecided { earlier, client }
            if decision == Decision::Approve
                && earlier.decision == Decision::Approve
                && client.status == ClientStatus::Disabled =>
        {
            reenable(state, &name, client).await
        }
        DecisionOutcome::AlreadyDecided { earlier, client } => {
            if earlier.decision != decision {
                return Err(AdminError::Conflict(format!(
                    "{name} already decided to {} this registration",
                    earlier.decision.as_str()
                )));
            }
            let decisions = state.store.decisions(client_id).await?;
            Ok(Decided { client, decisions })
        }
        DecisionOutcome::NotPending(client) => match (decision, client.status) {
            // Re-enabling a disabled client; and, where no group rule binds, a rejected one
            // (under approver groups a rejection is final: register again).
            (Decision::Approve, ClientStatus::Disabled)
            | (Decision::Approve, ClientStatus::Rejected)
                if client.status == ClientStatus::Disabled
                    || !matches!(state.approval, ApprovalPolicy::Groups(_)) =>
            {
                reenable(state, &name, client).await
            }
            (_, status) => Err(AdminError::Conflict(format!(
                "client is {}; only a pending registration can be {}",
                status.as_str(),
                match decision {
                    Decision::Approve => "approved",
                    Decision::Reject => "rejected",
                }
            ))),
        },
        DecisionOutcome::Recorded {
            client,
            decisions,
            settled,
        } => {
            if let Some(last) = decisions.last() {
                audit::approval_decision(&state.audit, last, settled.then_some(client.status));
                if settled {
                    state.clients.invalidate(client_id);
                    state.notifications.decided(&client, last);
                }
            }
            Ok(Decided { client, decisions })
        }
    }
}

/// Approves a disabled (or rejected) client again: an administrator's action, not a decision.
async fn reenable(
    state: &ServerState,
    name: &str,
    mut client: ClientRecord,
) -> Result<Decided, AdminError> {
    client.status = ClientStatus::Approved;
    if !update_client(state, client.clone()).await? {
        return Err(AdminError::NotFound);
    }
    audit::admin(
        &state.audit,
        Some(name),
        "approved",
        &client.client_id,
        None,
    );
    let decisions = state.store.decisions(&client.client_id).await?;
    Ok(Decided { client, decisions })
}

fn decision_view(decision: &ApprovalDecision) -> Value {
    json!({
        "approver": decision.approver,
        "decision": decision.decision.as_str(),
        "groups": decision.groups,
        "comment": decision.comment,
        "decided_at": decision.decided_at,
    })
}

async fn decide_request(
    state: &ServerState,
    actor: &Actor,
    id: &str,
    decision: Decision,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, AdminError> {
    let comment = decision_comment(headers, body)?;
    let claims = actor.claims();
    let decided = decide(state, actor.name(), claims.as_ref(), id, decision, comment).await?;
    let mut view = client_view(&decided.client);
    view["decisions"] = decided.decisions.iter().map(decision_view).collect();
    Ok(json_response(StatusCode::OK, &view))
}

async fn approve(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    decide_request(&state, &actor, &id, Decision::Approve, &headers, &body).await
}

async fn reject(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    decide_request(&state, &actor, &id, Decision::Reject, &headers, &body).await
}

async fn decisions(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    load(&state, &id).await?;
    let decisions = state.store.decisions(&id).await?;
    let views: Vec<Value> = decisions.iter().map(decision_view).collect();
    Ok(json_response(StatusCode::OK, &json!({"decisions": views})))
}

/// A change to a client (`PATCH /clients/{id}`): each member given replaces the client's;
/// `confirm` must be `true` when the change revokes tokens.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientChange {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) contacts: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) default_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) access_token_lifetime: Option<String>,
    #[serde(default)]
    pub(crate) refresh_token_lifetime: Option<String>,
    #[serde(default)]
    pub(crate) confirm: bool,
}

/// Whether `token` still fits `client` after a change that removed the grant types
/// `removed`: its scopes are among the client's, a refresh token needs the refresh grant, a
/// client-credentials token (no family, the client as subject) that grant, and a user's token
/// both user grants the client had. The server does not record which user grant issued a
/// token, so removing `authorization_code` or `password` revokes every user token.
fn fits(token: &TokenRecord, client: &ClientRecord, removed: &[GrantType]) -> bool {
    let scopes = token.scopes.iter().all(|s| client.scopes.contains(s));
    let by_client = token.family_id.is_none() && token.subject == client.client_id;
    let grant = if token.kind == TokenKind::Refresh {
        client.grant_types.contains(&GrantType::RefreshToken)
    } else if by_client {
        !removed.contains(&GrantType::ClientCredentials)
    } else {
        !removed.contains(&GrantType::AuthorizationCode) && !removed.contains(&GrantType::Password)
    };
    scopes && grant
}

/// What [`update`] did, or would do.
pub(crate) struct Updated {
    /// The client after the change.
    pub(crate) client: ClientRecord,
    /// The tokens the change revoked (or, unconfirmed, would revoke).
    pub(crate) revoked: usize,
}

/// Applies a change to a client, checked as a registration is. A change that narrows the
/// client (fewer scopes or grant types) revokes the tokens that no longer fit it; unless
/// `confirm`, such a change is refused with [`AdminError::ConfirmationRequired`] and the count,
/// and nothing changes.
pub(crate) async fn update(
    state: &ServerState,
    actor: &Actor,
    id: &str,
    change: ClientChange,
) -> Result<Updated, AdminError> {
    let current = load(state, id).await?;
    let registration = ClientRegistration {
        name: change.name.unwrap_or_else(|| current.name.clone()),
        client_id: Some(current.client_id.clone()),
        redirect_uris: change
            .redirect_uris
            .unwrap_or_else(|| current.redirect_uris.clone()),
        grant_types: Some(change.grant_types.unwrap_or_else(|| {
            current
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect()
        })),
        default_scopes: Some(change.default_scopes.unwrap_or_else(|| {
            if change.scopes.is_some() {
                // New scopes without new defaults: the defaults that remain allowed.
                let scopes = change.scopes.as_deref().unwrap_or_default();
                current
                    .default_scopes
                    .iter()
                    .filter(|s| scopes.contains(s))
                    .cloned()
                    .collect()
            } else {
                current.default_scopes.clone()
            }
        })),
        scopes: change.scopes.unwrap_or_else(|| current.scopes.clone()),
        access_token_lifetime: change
            .access_token_lifetime
            .or_else(|| current.access_token_lifetime.map(|l| l.to_string())),
        refresh_token_lifetime: change
            .refresh_token_lifetime
            .or_else(|| current.refresh_token_lifetime.map(|l| l.to_string())),
        contacts: change.contacts.unwrap_or_else(|| current.contacts.clone()),
        token_endpoint_auth_method: Some(current.token_endpoint_auth_method().into()),
        secret: None,
    };
    let mut client = checked_record(state, registration, current.secret_hash.clone())?;
    client.status = current.status;
    client.created_at = current.created_at;
    client.registration_token = current.registration_token.clone();
    let removed: Vec<GrantType> = current
        .grant_types
        .iter()
        .copied()
        .filter(|g| !client.grant_types.contains(g))
        .collect();
    let unfit: Vec<TokenRecord> = state
        .store
        .client_tokens(id, time::now())
        .await?
        .into_iter()
        .filter(|t| !fits(t, &client, &removed))
        .collect();
    if !unfit.is_empty() && !change.confirm {
        return Err(AdminError::ConfirmationRequired(unfit.len()));
    }
    // The record first: a token request racing the change is refused, not issued under the
    // old rules.
    if !update_client(state, client.clone()).await? {
        return Err(AdminError::NotFound);
    }
    let mut revoked = Vec::new();
    for token in &unfit {
        revoked.extend(state.store.revoke_token(&token.id).await?);
    }
    state.denylist.extend(&revoked);
    audit::revoked(&state.audit, actor.by(), "client narrowed", &revoked);
    audit::admin(
        &state.audit,
        actor.name(),
        "update",
        id,
        Some(&format!("{} tokens revoked", revoked.len())),
    );
    Ok(Updated {
        client,
        revoked: revoked.len(),
    })
}

async fn patch(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let change: ClientChange = json_object(&headers, &body, "a client change")?;
    let updated = update(&state, &actor, &id, change).await?;
    let mut view = client_view(&updated.client);
    view["revoked_tokens"] = updated.revoked.into();
    Ok(json_response(StatusCode::OK, &view))
}

/// Reads a JSON body that must be one object into `T`: declared `application/json` (which a
/// browser cannot send cross-site without a CORS preflight, so an administrator's cookie cannot
/// be used to post it), and an object (serde's derive would also take a positional array as a
/// struct). `what` names it in the 400 answer.
fn json_object<T: serde::de::DeserializeOwned>(
    headers: &http::HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, AdminError> {
    if !has_media_type(headers, "application/json") {
        return Err(AdminError::BadRequest(
            "the body must be application/json".into(),
        ));
    }
    let refused =
        |e: &dyn std::fmt::Display| AdminError::BadRequest(format!("the body is not {what}: {e}"));
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => serde_json::from_value(value).map_err(|e| refused(&e)),
        Ok(_) => Err(refused(&"expected an object")),
        Err(e) => Err(refused(&e)),
    }
}

async fn revoke_all(
    state: &ServerState,
    actor: &Actor,
    id: &str,
    cause: &str,
) -> Result<usize, AdminError> {
    let revoked = state.store.revoke_client_tokens(id).await?;
    state.denylist.extend(&revoked);
    audit::revoked(&state.audit, actor.by(), cause, &revoked);
    Ok(revoked.len())
}

/// Disables a client and revokes all its tokens; answers the client and how many were revoked.
pub(crate) async fn disable_client(
    state: &ServerState,
    actor: &Actor,
    id: &str,
) -> Result<(ClientRecord, usize), AdminError> {
    use ClientStatus::*;
    // Status first, so no new token is issued while the old ones are being revoked.
    let client = set_status(state, actor, id, Disabled, &[Pending, Approved, Rejected]).await?;
    let revoked = revoke_all(state, actor, id, "client disabled").await?;
    Ok((client, revoked))
}

async fn disable(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let (client, _) = disable_client(&state, &actor, &id).await?;
    Ok(json_response(StatusCode::OK, &client_view(&client)))
}

/// Revokes all of a client's tokens and deletes it; answers how many tokens were revoked.
pub(crate) async fn delete_client(
    state: &ServerState,
    actor: &Actor,
    id: &str,
) -> Result<usize, AdminError> {
    let mut client = load(state, id).await?;
    client.status = ClientStatus::Disabled;
    update_client(state, client).await?;
    let revoked = revoke_all(state, actor, id, "client deleted").await?;
    let deleted = state.store.delete_client(id).await?;
    state.clients.invalidate(id);
    if !deleted {
        return Err(AdminError::NotFound);
    }
    audit::admin(&state.audit, actor.name(), "delete", id, None);
    Ok(revoked)
}

async fn remove(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let revoked = delete_client(&state, &actor, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"deleted": id, "revoked_tokens": revoked}),
    ))
}

/// Gives a client a new secret; the old one stops working at once.
pub(crate) async fn new_secret(
    state: &ServerState,
    actor: &Actor,
    id: &str,
) -> Result<(ClientRecord, ClientSecret), AdminError> {
    let mut client = load(state, id).await?;
    if client.is_public() {
        return Err(AdminError::Conflict(
            "a public client has no secret to rotate".into(),
        ));
    }
    let (secret, hash) = ClientSecret::generate()
        .map_err(|e| AdminError::Store(StoreError::Unavailable(e.to_string())))?;
    client.secret_hash = Some(hash);
    if !update_client(state, client.clone()).await? {
        return Err(AdminError::NotFound);
    }
    audit::admin(&state.audit, actor.name(), "rotate_secret", id, None);
    Ok((client, secret))
}

async fn rotate_secret(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let (client, secret) = new_secret(&state, &actor, &id).await?;
    let mut body = client_view(&client);
    body["client_secret"] = secret.expose().into();
    Ok(json_response(StatusCode::OK, &body))
}

async fn tokens(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    load(&state, &id).await?;
    let tokens = state.store.client_tokens(&id, time::now()).await?;
    let views: Vec<Value> = tokens.iter().map(token_view).collect();
    Ok(json_response(StatusCode::OK, &json!({"tokens": views})))
}

/// Revokes one of a client's tokens (a refresh token with its family); answers the ids
/// revoked.
pub(crate) async fn revoke_one(
    state: &ServerState,
    actor: &Actor,
    id: &str,
    token_id: &str,
) -> Result<Vec<String>, AdminError> {
    let token = state
        .store
        .token(token_id)
        .await?
        .filter(|t| t.client_id == id)
        .ok_or(AdminError::NotFound)?;
    let revoked = match (token.kind, &token.family_id) {
        (TokenKind::Refresh, Some(family)) => state.store.revoke_family(family).await?,
        _ => state
            .store
            .revoke_token(&token.id)
            .await?
            .into_iter()
            .collect(),
    };
    state.denylist.extend(&revoked);
    audit::revoked(&state.audit, actor.by(), "revoked by id", &revoked);
    audit::admin(
        &state.audit,
        actor.name(),
        "revoke_token",
        id,
        Some(token_id),
    );
    Ok(revoked.into_iter().map(|t| t.id).collect())
}

async fn revoke_token(
    State(state): State<Arc<ServerState>>,
    actor: Actor,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let ids = revoke_one(&state, &actor, &id, &token_id).await?;
    Ok(json_response(StatusCode::OK, &json!({"revoked": ids})))
}

#[cfg(test)]
mod tests {
    use super::check_redirect_uri;

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://app.example/cb#frag",
            "http://app.example/cb",
            "/relative",
            "javascript:alert(1)",
            "https:///nohost",
            "custom:/x",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
