//! Token introspection (RFC 7662) for authenticated clients.
//!
//! Any approved client may introspect this server's access tokens (resource servers are
//! registered as clients for this); a refresh token is reported active only to the client it
//! was issued to, so a client cannot probe another's grants.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::http::{OAuthError, Params, json_response};
use super::store::{TokenHash, TokenState};
use super::{ServerState, client_auth};
use crate::time;

/// `POST /introspect`.
pub(crate) async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match introspect(&state, &parts, body).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(error) => error.into_response(),
    }
}

async fn introspect(
    state: &ServerState,
    parts: &http::request::Parts,
    body: axum::body::Body,
) -> Result<Value, OAuthError> {
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| OAuthError::invalid_request("request body too large or unreadable"))?;
    let mut params = Params::from_form(&parts.headers, &body)?;
    let client = client_auth::authenticate(
        state,
        Some(&state.clients),
        parts,
        &mut params,
        client_auth::Clients::Confidential,
    )
    .await?;
    let token = params.require("token")?;
    let refresh_first = params.get("token_type_hint") == Some("refresh_token");
    if !refresh_first && let Some(active) = access(state, token).await? {
        return Ok(active);
    }
    if let Some(record) = state.store.find_refresh(&TokenHash::of(token)).await?
        && record.client_id == client.client_id
        && record.state == TokenState::Active
        && !record.is_expired(time::now())
    {
        let mut body = json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": record.client_id,
            "sub": record.subject,
            "iss": state.issuer,
            "iat": record.issued_at,
        });
        if let Some(exp) = record.expires_at {
            body["exp"] = exp.into();
        }
        if !record.scopes.is_empty() {
            body["scope"] = record.scopes.join(" ").into();
        }
        if let Some(jkt) = &record.dpop_jkt {
            body["cnf"] = json!({ "jkt": jkt });
        }
        return Ok(body);
    }
    if refresh_first && let Some(active) = access(state, token).await? {
        return Ok(active);
    }
    Ok(json!({"active": false}))
}

/// The introspection response for an access token this server signed and has not revoked.
/// Stricter than the authenticator: no leeway past `exp`, and the store's record must still be
/// active (a revocation made elsewhere counts even before the denylist learns of it).
async fn access(state: &ServerState, token: &str) -> Result<Option<Value>, OAuthError> {
    let Ok(verified) = state.any_resource.verify_token(token) else {
        return Ok(None);
    };
    if verified.expires_at().is_some_and(|exp| exp <= time::now()) {
        return Ok(None);
    }
    let Some(jti) = verified.jwt_id() else {
        return Ok(None);
    };
    let active = state
        .store
        .token(jti)
        .await?
        .is_some_and(|t| t.state == TokenState::Active);
    if !active {
        return Ok(None);
    }
    Ok(access_body(&verified))
}

fn access_body(verified: &crate::token::VerifiedToken) -> Option<Value> {
    // RFC 9449 §6.2: a DPoP-bound token's type and confirmation.
    let token_type = match verified.dpop_thumbprint() {
        Some(_) => "DPoP",
        None => "Bearer",
    };
    let mut body = json!({
        "active": true,
        "token_type": token_type,
        "scope": verified.scopes().iter().collect::<Vec<_>>().join(" "),
        "client_id": verified.client_id(),
        "sub": verified.subject(),
        "aud": verified.audience().collect::<Vec<_>>(),
        "iss": verified.issuer(),
        "jti": verified.jwt_id(),
        "iat": verified.issued_at(),
    });
    if let Some(exp) = verified.expires_at() {
        body["exp"] = exp.into();
    }
    if let Some(jkt) = verified.dpop_thumbprint() {
        body["cnf"] = json!({ "jkt": jkt });
    }
    if body["scope"] == "" {
        body.as_object_mut()?.remove("scope");
    }
    Some(body)
}
