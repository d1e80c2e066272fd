//! [`ClaimsHook`]: the app's own claims in the access tokens (roles, tenant, e-mail), next to the
//! registered claims it may not change.

use std::fmt;

use serde_json::{Map, Value};

use super::HookFuture;
use super::store::GrantType;

/// The claims this server sets and a [`ClaimsHook`] may not: RFC 7519's, RFC 9068's `client_id`
/// and `scope`, and RFC 7800's `cnf`.
pub const PROTECTED_CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "cnf",
];

/// What a token is being issued for, as a [`ClaimsHook`] sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimsContext {
    /// The grant: `authorization_code`, `refresh_token`, `client_credentials` or `password`.
    pub grant_type: GrantType,
    /// The client the token is for.
    pub client_id: String,
    /// The token's subject: the user, or the client itself for `client_credentials`.
    pub subject: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The resources (RFC 8707) the token is for; empty: the server's default audience.
    pub resources: Vec<String>,
}

/// The hook failed: the token request is answered `server_error` (HTTP 503, JSON) and nothing
/// is issued. The message is logged, not sent to the client.
#[derive(Debug, Clone)]
pub struct ClaimsError(String);

impl ClaimsError {
    /// A failure described by `message` (for the log).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for ClaimsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClaimsError {}

/// Adds the app's claims to every access token the server issues, for every grant (a refresh
/// asks again, so changed roles reach the next token). Install it with
/// [`custom_claims`](super::AuthorizationServerBuilder::custom_claims).
///
/// The claims in [`PROTECTED_CLAIMS`] are the server's: a hook that returns one of them is
/// ignored for that claim (and a warning is logged), so a hook cannot change who a token is
/// for, what it allows or how long it lives.
///
/// ```
/// use serde_json::{Map, Value, json};
/// use tower_oauth2::server::{ClaimsContext, ClaimsError, ClaimsHook, HookFuture};
///
/// struct Roles;
///
/// impl ClaimsHook for Roles {
///     fn claims<'a>(
///         &'a self,
///         context: &'a ClaimsContext,
///     ) -> HookFuture<'a, Result<Map<String, Value>, ClaimsError>> {
///         Box::pin(async move {
///             let mut claims = Map::new();
///             if context.subject == "alice" {
///                 claims.insert("roles".into(), json!(["admin"]));
///             }
///             claims.insert("tenant".into(), json!("acme"));
///             Ok(claims)
///         })
///     }
/// }
/// ```
pub trait ClaimsHook: Send + Sync + 'static {
    /// The extra claims of the access token issued in `context`.
    fn claims<'a>(
        &'a self,
        context: &'a ClaimsContext,
    ) -> HookFuture<'a, Result<Map<String, Value>, ClaimsError>>;
}

/// Adds `extra` to `claims`, except the protected ones (each logged).
pub(crate) fn merge(claims: &mut Map<String, Value>, extra: Map<String, Value>, client_id: &str) {
    for (name, value) in extra {
        if PROTECTED_CLAIMS.contains(&name.as_str()) {
            tracing::warn!(
                target: "tower_oauth2::server",
                claim = %name,
                client_id,
                "the claims hook returned a registered claim: ignored"
            );
            continue;
        }
        claims.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn protected_claims_are_kept_and_others_added() {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("alice"));
        claims.insert("scope".into(), json!("read"));
        let mut extra = Map::new();
        for name in PROTECTED_CLAIMS {
            extra.insert(name.into(), json!("forged"));
        }
        extra.insert("roles".into(), json!(["admin"]));
        merge(&mut claims, extra, "c");
        assert_eq!(
            Value::Object(claims),
            json!({"sub": "alice", "scope": "read", "roles": ["admin"]})
        );
    }
}
