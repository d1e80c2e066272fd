//! Audit events of the authorization server, under the `tracing` target `tower_oauth2::audit`
//! like the resource server's: every token issued or refused, every revocation, every admin
//! action, every failed client authentication. Never a token or secret value.

use std::net::IpAddr;

use super::http::OAuthError;
use super::store::TokenRecord;

pub(crate) fn token_issued(grant: &str, access: &TokenRecord, refresh: Option<&TokenRecord>) {
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "token_issued",
        grant,
        client_id = %access.client_id,
        sub = %access.subject,
        jti = %access.id,
        scope = %access.scopes.join(" "),
        exp = access.expires_at,
        refresh_id = refresh.map(|r| r.id.as_str()),
        family = access.family_id.as_deref(),
        "access token issued"
    );
}

pub(crate) fn token_refused(grant: Option<&str>, client_id: Option<&str>, error: &OAuthError) {
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "token_refused",
        grant,
        client_id,
        error = error.code,
        reason = %error.description,
        "token request refused"
    );
}

pub(crate) fn client_auth_refused(client_id: &str, peer: Option<IpAddr>, reason: &str) {
    tracing::warn!(
        target: "tower_oauth2::audit",
        outcome = "client_auth_refused",
        client_id,
        peer = peer.map(tracing::field::display),
        reason,
        "client authentication refused"
    );
}

pub(crate) fn refresh_reuse(family: &str, client_id: &str, revoked: usize) {
    tracing::warn!(
        target: "tower_oauth2::audit",
        outcome = "refresh_token_reuse",
        family,
        client_id,
        revoked,
        "a rotated refresh token was presented again; its family is revoked"
    );
}

pub(crate) fn code_reuse(client_id: &str, revoked: usize) {
    tracing::warn!(
        target: "tower_oauth2::audit",
        outcome = "authorization_code_reuse",
        client_id,
        revoked,
        "an authorization code was presented again; the tokens issued from it are revoked"
    );
}

pub(crate) fn revoked(by: &str, cause: &str, tokens: &[TokenRecord]) {
    for token in tokens {
        tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "token_revoked",
            by,
            cause,
            kind = token.kind.as_str(),
            id = %token.id,
            client_id = %token.client_id,
            "token revoked"
        );
    }
}

pub(crate) fn admin(action: &str, client_id: &str, detail: Option<&str>) {
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "admin",
        action,
        client_id,
        detail,
        "admin action"
    );
}
