//! Token revocation (RFC 7009).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::http::{OAuthError, Params, json_response};
use super::store::{ClientRecord, TokenHash, TokenKind, TokenRecord};
use super::{ServerState, audit, client_auth};

/// `POST /revoke`.
pub(crate) async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match revoke(&state, &parts, body).await {
        Ok(()) => json_response(StatusCode::OK, &json!({})),
        Err(error) => error.into_response(),
    }
}

async fn revoke(
    state: &ServerState,
    parts: &http::request::Parts,
    body: axum::body::Body,
) -> Result<(), OAuthError> {
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| OAuthError::invalid_request("request body too large or unreadable"))?;
    let mut params = Params::from_form(&parts.headers, &body)?;
    let client = client_auth::authenticate(
        state,
        Some(&state.clients),
        parts,
        &mut params,
        client_auth::Clients::All,
    )
    .await?;
    let token = params.require("token")?;
    // The hint only orders the search (RFC 7009 §2.1); an unknown hint is ignored.
    let order = match params.get("token_type_hint") {
        Some("access_token") => [TokenKind::Access, TokenKind::Refresh],
        _ => [TokenKind::Refresh, TokenKind::Access],
    };
    for kind in order {
        let found = match kind {
            TokenKind::Refresh => state.store.find_refresh(&TokenHash::of(token)).await?,
            TokenKind::Access => match access_token_id(state, token) {
                Some(jti) => state.store.token(&jti).await?,
                None => None,
            },
        };
        if let Some(record) = found {
            return revoke_record(state, &client, record).await;
        }
    }
    // Unknown, expired or foreign-issuer tokens: nothing to do, and nothing to tell.
    Ok(())
}

/// The `jti` of an access token this server signed, whether or not it is still valid.
fn access_token_id(state: &ServerState, token: &str) -> Option<String> {
    match state.any_resource.verify_token(token) {
        Ok(verified) => verified.jwt_id().map(str::to_owned),
        // Expired or already revoked: nothing left to revoke.
        Err(_) => None,
    }
}

async fn revoke_record(
    state: &ServerState,
    client: &ClientRecord,
    record: TokenRecord,
) -> Result<(), OAuthError> {
    if record.client_id != client.client_id {
        audit::client_auth_refused(
            &state.audit,
            &client.client_id,
            None,
            "revoking another client's token",
        );
        return Err(OAuthError::unauthorized_client(
            "the token was not issued to this client",
        ));
    }
    let revoked = match (record.kind, &record.family_id) {
        // A refresh token takes its family, and the access tokens issued from it, along.
        (TokenKind::Refresh, Some(family)) => state.store.revoke_family(family).await?,
        _ => state
            .store
            .revoke_token(&record.id)
            .await?
            .into_iter()
            .collect(),
    };
    state.denylist.extend(&revoked);
    audit::revoked(
        &state.audit,
        &client.client_id,
        "revocation request",
        &revoked,
    );
    Ok(())
}
