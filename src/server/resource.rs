//! Resource indicators (RFC 8707): the resource servers this server issues tokens for, and how
//! a request's `resource` parameters pick the access token's audience, bound its scopes and its
//! lifetime.

use std::fmt;

use super::TokenLifetime;
use super::http::OAuthError;
use super::store::ClientRecord;
use crate::error::ConfigError;

/// A resource server (an API) that this authorization server issues access tokens for, named by
/// its URI (RFC 8707). A request with `resource=<uri>` at `/authorize` or `/token` gets an
/// access token whose `aud` is that URI; a request naming a resource the server does not know is
/// refused with `invalid_target`.
///
/// ```
/// use tower_oauth2::server::ResourceServer;
///
/// # fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let mcp = ResourceServer::new("https://api.example.com/mcp")
///     .scopes(["mcp:tools"])                   // only these scopes for this resource
///     .access_token_lifetime("15min".parse()?); // shorter tokens for it
/// # let _ = mcp; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ResourceServer {
    uri: String,
    scopes: Option<Vec<String>>,
    access_token_lifetime: Option<TokenLifetime>,
}

impl ResourceServer {
    /// The resource server named by `uri`: absolute, without fragment (RFC 8707 §2), and what
    /// its protected-resource metadata says in `resource` (RFC 9728), compared exactly.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            scopes: None,
            access_token_lifetime: None,
        }
    }

    /// The scopes a token for this resource may carry. Without it, any scope the client may
    /// have.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The longest access-token lifetime for this resource: a token for it lives at most this
    /// long, whatever the server's or the client's lifetime. Without it, theirs.
    pub fn access_token_lifetime(mut self, lifetime: TokenLifetime) -> Self {
        self.access_token_lifetime = Some(lifetime);
        self
    }
}

impl fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServer")
            .field("uri", &self.uri)
            .field("scopes", &self.scopes)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .finish()
    }
}

/// The resources a server knows: those configured, and its own audiences (any scope, its
/// lifetimes).
#[derive(Debug)]
pub(crate) struct Resources {
    known: Vec<ResourceServer>,
}

impl Resources {
    /// Checks the configured resource servers; the server's `audiences` are known resources too.
    pub(crate) fn new(
        configured: Vec<ResourceServer>,
        audiences: &[String],
    ) -> Result<Self, ConfigError> {
        let mut known: Vec<ResourceServer> = Vec::new();
        for resource in configured {
            check_uri(&resource.uri)
                .map_err(|e| ConfigError::new(format!("resource_server: {e}")))?;
            if known.iter().any(|k| k.uri == resource.uri) {
                return Err(ConfigError::new(format!(
                    "resource_server {} is configured twice",
                    resource.uri
                )));
            }
            if let Some(scopes) = &resource.scopes
                && let Some(bad) = scopes.iter().find(|s| !super::http::is_scope_token(s))
            {
                return Err(ConfigError::new(format!(
                    "resource_server {}: {bad:?} is not a scope",
                    resource.uri
                )));
            }
            if let Some(lifetime) = resource.access_token_lifetime {
                super::builder::check_lifetime(lifetime).map_err(ConfigError::new)?;
            }
            known.push(resource);
        }
        for audience in audiences {
            if !known.iter().any(|k| k.uri == *audience) {
                known.push(ResourceServer::new(audience.clone()));
            }
        }
        Ok(Self { known })
    }

    /// Every known resource's URI: the audiences a token of this server may carry.
    pub(crate) fn uris(&self) -> Vec<String> {
        self.known.iter().map(|k| k.uri.clone()).collect()
    }

    /// Whether `uri` is a known resource.
    pub(crate) fn knows(&self, uri: &str) -> bool {
        self.get(uri).is_some()
    }

    /// The resource server named `uri`, if known.
    fn get(&self, uri: &str) -> Option<&ResourceServer> {
        self.known.iter().find(|k| k.uri == uri)
    }

    /// Checks a request's `resource` values: each a known resource (`invalid_target`
    /// otherwise, RFC 8707 §2).
    pub(crate) fn requested(&self, values: &[String]) -> Result<Vec<String>, OAuthError> {
        for value in values {
            check_uri(value).map_err(OAuthError::invalid_target)?;
            if self.get(value).is_none() {
                return Err(OAuthError::invalid_target(format!(
                    "{} is not a resource this server issues tokens for",
                    printable(value)
                )));
            }
        }
        Ok(values.to_vec())
    }

    /// The resources a token request asks for within its grant's: `requested` must be among
    /// `granted` (a refresh or a code redemption may narrow, never widen, RFC 8707 §2.2); none
    /// requested means all granted.
    pub(crate) fn within(
        &self,
        requested: &[String],
        granted: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let requested = self.requested(requested)?;
        if requested.is_empty() {
            return Ok(granted.to_vec());
        }
        if let Some(wider) = requested.iter().find(|r| !granted.contains(r)) {
            return Err(OAuthError::invalid_target(format!(
                "{} was not part of the grant",
                printable(wider)
            )));
        }
        Ok(requested)
    }

    /// Whether a token for `resources` may carry `scope`: every resource allows it (none
    /// named: the default audience, which allows any).
    fn allows(&self, resources: &[String], scope: &str) -> bool {
        resources.iter().all(|uri| {
            self.get(uri)
                .and_then(|r| r.scopes.as_ref())
                .is_none_or(|scopes| scopes.iter().any(|s| s == scope))
        })
    }

    /// The scopes of a request for `resources`: those asked for, which the client and every
    /// resource must allow (`invalid_scope` otherwise), or the client's defaults that every
    /// resource allows.
    pub(crate) fn scopes(
        &self,
        client: &ClientRecord,
        requested: Option<&str>,
        resources: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let scopes = super::token::requested_scopes(client, requested)?;
        if requested.is_none() {
            return Ok(scopes
                .into_iter()
                .filter(|s| self.allows(resources, s))
                .collect());
        }
        if let Some(bad) = scopes.iter().find(|s| !self.allows(resources, s)) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {bad} is not allowed for the requested resource"
            )));
        }
        Ok(scopes)
    }

    /// Narrows `scopes` to what every one of `resources` allows (a refresh or redemption for
    /// fewer resources than the grant's).
    pub(crate) fn narrow(&self, scopes: Vec<String>, resources: &[String]) -> Vec<String> {
        scopes
            .into_iter()
            .filter(|s| self.allows(resources, s))
            .collect()
    }

    /// The access-token lifetime for `resources`: `lifetime`, shortened by any resource's own.
    pub(crate) fn lifetime(&self, resources: &[String], lifetime: TokenLifetime) -> TokenLifetime {
        resources
            .iter()
            .filter_map(|uri| self.get(uri).and_then(|r| r.access_token_lifetime))
            .fold(lifetime, |shortest, l| {
                match (shortest.duration(), l.duration()) {
                    (None, _) => l,
                    (Some(a), Some(b)) if b < a => l,
                    _ => shortest,
                }
            })
    }
}

/// RFC 8707 §2: an absolute URI without a fragment.
fn check_uri(uri: &str) -> Result<(), String> {
    let valid_scheme = uri.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    if !valid_scheme || uri.len() > 2000 || uri.bytes().any(|b| !(0x21..0x7F).contains(&b)) {
        return Err(format!("{} is not an absolute URI", printable(uri)));
    }
    if uri.contains('#') {
        return Err(format!("{} has a fragment", printable(uri)));
    }
    Ok(())
}

/// At most 200 characters of `value`, for an error description.
fn printable(value: &str) -> String {
    let mut out: String = value.chars().take(200).collect();
    if out.len() < value.len() {
        out.push('…');
    }
    format!("{out:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resources() -> Resources {
        let mcp = ResourceServer::new("https://api.example/mcp")
            .scopes(["mcp:tools", "mcp:read"])
            .access_token_lifetime(TokenLifetime::Limited(Duration::from_secs(600)));
        let billing = ResourceServer::new("https://billing.example").scopes(["mcp:read", "pay"]);
        Resources::new(vec![mcp, billing], &["https://as.example".into()])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unknown_relative_or_fragment_resources_are_invalid_target() {
        let r = resources();
        for bad in [
            "https://other.example",
            "mcp",
            "/mcp",
            "https://api.example/mcp#x",
            "",
        ] {
            let error = r.requested(&strings(&[bad])).err();
            assert_eq!(error.map(|e| e.code), Some("invalid_target"), "{bad:?}");
        }
        let known = strings(&["https://api.example/mcp", "https://as.example"]);
        assert_eq!(r.requested(&known).ok(), Some(known));
    }

    #[test]
    fn a_token_request_narrows_but_never_widens_the_grant() {
        let r = resources();
        let grant = strings(&["https://api.example/mcp", "https://billing.example"]);
        assert_eq!(r.within(&[], &grant).ok(), Some(grant.clone()));
        let one = strings(&["https://billing.example"]);
        assert_eq!(r.within(&one, &grant).ok(), Some(one.clone()));
        let wider = strings(&["https://as.example"]);
        assert_eq!(
            r.within(&wider, &grant).err().map(|e| e.code),
            Some("invalid_target")
        );
        assert_eq!(
            r.within(&one, &[]).err().map(|e| e.code),
            Some("invalid_target")
        );
    }

    #[test]
    fn scopes_must_suit_every_resource_and_lifetimes_take_the_shortest() {
        let r = resources();
        let both = strings(&["https://api.example/mcp", "https://billing.example"]);
        assert!(r.allows(&both, "mcp:read"));
        assert!(!r.allows(&both, "mcp:tools"));
        assert!(r.allows(&[], "anything"));
        assert!(r.allows(&strings(&["https://as.example"]), "anything"));
        let hour = TokenLifetime::Limited(Duration::from_secs(3600));
        assert_eq!(
            r.lifetime(&both, hour),
            TokenLifetime::Limited(Duration::from_secs(600))
        );
        assert_eq!(
            r.lifetime(&both, TokenLifetime::Unlimited),
            TokenLifetime::Limited(Duration::from_secs(600))
        );
        assert_eq!(
            r.lifetime(&strings(&["https://billing.example"]), hour),
            hour
        );
        assert!(Resources::new(vec![ResourceServer::new("https://a.example#f")], &[]).is_err());
        assert!(
            Resources::new(
                vec![ResourceServer::new("https://a.example").scopes(["a b"])],
                &[]
            )
            .is_err()
        );
    }
}
