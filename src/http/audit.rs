//! Audit events, under the `tracing` target `tower_oauth2::audit`: one per authentication
//! decision of the layer, and one more when a request the layer accepted is then refused by
//! [`RequireScope`](crate::RequireScope) or a claims extractor. Never the token itself.

use crate::error::AuthError;
use crate::telemetry::Telemetry;
use crate::token::VerifiedToken;

/// The layer accepted the token.
pub(crate) fn accepted(token: &VerifiedToken, telemetry: &Telemetry) {
    telemetry.accepted(token.verified_by().0);
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "accepted",
        sub = token.subject(),
        client_id = token.client_id(),
        iss = token.issuer(),
        kid = token.key_id(),
        "bearer token accepted"
    );
}

/// Optional mode let a request without a token through.
pub(crate) fn anonymous(telemetry: &Telemetry) {
    telemetry.anonymous();
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "anonymous",
        "no bearer token; optional authentication lets the request through"
    );
}

/// A request was refused. `token` is the verified token when authentication succeeded and
/// authorization failed; otherwise `kid` and `iss` are what the token claimed, unverified.
/// `telemetry`: the layer's metrics, when a layer is there.
pub(crate) fn rejected(
    error: &AuthError,
    token: Option<&VerifiedToken>,
    telemetry: Option<&Telemetry>,
) {
    if let Some(telemetry) = telemetry {
        let iss = token.map_or(error.claimed_issuer(), VerifiedToken::issuer);
        telemetry.rejected(iss, error.kind().as_str());
    }
    match token {
        Some(token) => tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "rejected",
            reason = error.description(),
            status = error.status().as_u16(),
            sub = token.subject(),
            client_id = token.client_id(),
            iss = token.issuer(),
            kid = token.key_id(),
            "request refused"
        ),
        None => tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "rejected",
            reason = error.description(),
            status = error.status().as_u16(),
            iss = error.claimed_issuer(),
            kid = error.claimed_key_id(),
            "bearer token rejected"
        ),
    }
}
