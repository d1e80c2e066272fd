//! Authorization server metadata (RFC 8414) and the JWKS of the signing keys.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::ServerState;
use super::http::json_response;
use super::store::GrantType;
use crate::time;

/// RFC 8414 §3: `/.well-known/oauth-authorization-server` followed by the issuer's path.
pub(crate) fn well_known_path(issuer: &str) -> String {
    let after_scheme = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    format!(
        "/.well-known/oauth-authorization-server{}",
        path.trim_end_matches('/')
    )
}

fn cacheable(mut response: Response, seconds: u32) -> Response {
    if let Ok(value) = HeaderValue::try_from(format!("public, max-age={seconds}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response.headers_mut().remove(header::PRAGMA);
    response
}

/// `GET /.well-known/oauth-authorization-server…`.
pub(crate) async fn document(State(state): State<Arc<ServerState>>) -> Response {
    let base = &state.endpoint_base;
    let mut grants: Vec<&str> = vec![
        GrantType::ClientCredentials.as_str(),
        GrantType::RefreshToken.as_str(),
    ];
    if state.consent.is_some() {
        grants.insert(0, GrantType::AuthorizationCode.as_str());
    }
    if state.password.is_some() {
        grants.push(GrantType::Password.as_str());
    }
    let auth_methods = json!(["client_secret_basic", "client_secret_post"]);
    // Public clients use the authorization-code grant only.
    let public_methods = if state.consent.is_some() {
        json!(["client_secret_basic", "client_secret_post", "none"])
    } else {
        auth_methods.clone()
    };
    let mut body = json!({
        "issuer": state.issuer,
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks.json"),
        "revocation_endpoint": format!("{base}/revoke"),
        "introspection_endpoint": format!("{base}/introspect"),
        "grant_types_supported": grants,
        "response_types_supported": if state.consent.is_some() { json!(["code"]) } else { json!([]) },
        "token_endpoint_auth_methods_supported": public_methods,
        "revocation_endpoint_auth_methods_supported": public_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "dpop_signing_alg_values_supported": state.dpop.algs().split(' ').collect::<Vec<_>>(),
    });
    if state.consent.is_some()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert(
            "authorization_endpoint".into(),
            format!("{base}/authorize").into(),
        );
        obj.insert("response_modes_supported".into(), json!(["query"]));
    }
    #[cfg(feature = "remote")]
    if state.client_metadata.is_some()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("client_id_metadata_document_supported".into(), true.into());
    }
    if state.registration.is_some()
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert(
            "registration_endpoint".into(),
            format!("{base}/register").into(),
        );
    }
    cacheable(json_response(StatusCode::OK, &body), 3600)
}

/// `GET /jwks.json`: the active key and the retired keys whose tokens may still be valid.
pub(crate) async fn jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.prune(time::now());
    let ring = state.ring.load();
    let keys: Vec<Value> = ring.published().map(|k| k.public_jwk()).collect();
    // Short enough that a rotation reaches remote validators quickly.
    cacheable(json_response(StatusCode::OK, &json!({"keys": keys})), 300)
}

#[cfg(test)]
mod tests {
    use super::well_known_path;

    #[test]
    fn well_known_path_inserts_before_the_issuer_path() {
        assert_eq!(
            well_known_path("https://a.example"),
            "/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known_path("https://a.example/tenant/x"),
            "/.well-known/oauth-authorization-server/tenant/x"
        );
    }
}
