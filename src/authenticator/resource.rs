//! [`ProtectedResource`]: the description of the protected resource (RFC 9728) that an
//! authenticator publishes, and the audience (RFC 8707) it implies.

use std::fmt;

use crate::error::ConfigError;

/// The path prefix of protected-resource metadata (RFC 9728 §3).
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Describes this API as an OAuth 2.0 protected resource (RFC 9728), for
/// [`AuthenticatorBuilder::protected_resource`](crate::AuthenticatorBuilder::protected_resource).
///
/// Configuring it does three things:
/// - the resource identifier becomes the audience tokens must carry (RFC 8707: an authorization
///   server puts the requested `resource` in `aud`), compared exactly;
/// - every challenge of the default rejection names the metadata document in
///   `resource_metadata="…"` (RFC 9728 §5.1), so a client that gets a 401 can find out where to
///   get a token;
/// - [`Authenticator::resource_metadata_router`](crate::Authenticator::resource_metadata_router)
///   serves that document at `/.well-known/oauth-protected-resource` followed by the resource's
///   path (RFC 9728 §3.1: `https://api.example.com/mcp` is described at
///   `https://api.example.com/.well-known/oauth-protected-resource/mcp`).
///
/// ```
/// use tower_oauth2::{Algorithm, Authenticator, Key, ProtectedResource};
///
/// # fn main() -> Result<(), tower_oauth2::ConfigError> {
/// let auth = Authenticator::builder()
///     .issuer("https://as.example.com")
///     .key(Key::hmac([42u8; 32], Algorithm::HS256)?)
///     .protected_resource(
///         ProtectedResource::new("https://api.example.com/mcp")
///             .scopes_supported(["mcp:tools"])
///             .resource_name("Example MCP server"),
///     )
///     .build()?;
/// assert_eq!(
///     auth.resource_metadata_url(),
///     Some("https://api.example.com/.well-known/oauth-protected-resource/mcp")
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ProtectedResource {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Option<Vec<String>>,
    resource_name: Option<String>,
    documentation: Option<String>,
}

impl ProtectedResource {
    /// The resource identifier: the `https` URL clients use for this API (RFC 9728 §1.2), with
    /// no query or fragment. `http` is accepted only on a loopback host, for development.
    /// Checked by [`build`](crate::AuthenticatorBuilder::build).
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: None,
            resource_name: None,
            documentation: None,
        }
    }

    /// An authorization server (its issuer identifier) that issues tokens for this resource.
    /// Call again for several. Defaults to the authenticator's trusted issuers.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes clients may request for this resource (`scopes_supported`). Without it the
    /// document lists none, which RFC 9728 allows.
    pub fn scopes_supported<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.scopes_supported = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// A name for people (`resource_name`).
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// A page with documentation for developers (`resource_documentation`).
    pub fn documentation(mut self, url: impl Into<String>) -> Self {
        self.documentation = Some(url.into());
        self
    }

    /// The resource identifier as configured.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Checks the configuration and renders the document. `issuers` are the authenticator's
    /// trusted issuers (the default `authorization_servers`), `bearer_methods` where it reads
    /// tokens.
    pub(crate) fn build(
        self,
        issuers: &[&str],
        bearer_methods: &[&'static str],
    ) -> Result<ResourceMetadata, ConfigError> {
        let (origin, path) = split_resource(&self.resource)
            .map_err(|e| ConfigError::new(format!("protected resource: {e}")))?;
        let servers = if self.authorization_servers.is_empty() {
            issuers.iter().map(|s| (*s).to_owned()).collect()
        } else {
            self.authorization_servers
        };
        if servers.is_empty() {
            return Err(ConfigError::new(
                "protected resource: no authorization server: call .authorization_server(..)",
            ));
        }
        for server in &servers {
            split_resource(server).map_err(|e| {
                ConfigError::new(format!("protected resource: authorization server {e}"))
            })?;
        }
        if let Some(url) = &self.documentation {
            split_resource(url)
                .map_err(|e| ConfigError::new(format!("protected resource: documentation {e}")))?;
        }
        if let Some(scopes) = &self.scopes_supported
            && let Some(bad) = scopes
                .iter()
                .find(|s| s.is_empty() || !s.bytes().all(is_scope_byte))
        {
            return Err(ConfigError::new(format!(
                "protected resource: {bad:?} is not a scope (RFC 6749 §3.3)"
            )));
        }
        let mut document = serde_json::Map::new();
        document.insert("resource".into(), self.resource.clone().into());
        document.insert("authorization_servers".into(), servers.into());
        document.insert("bearer_methods_supported".into(), bearer_methods.into());
        if let Some(scopes) = self.scopes_supported {
            document.insert("scopes_supported".into(), scopes.into());
        }
        if let Some(name) = self.resource_name {
            document.insert("resource_name".into(), name.into());
        }
        if let Some(url) = self.documentation {
            document.insert("resource_documentation".into(), url.into());
        }
        let path_suffix = path.trim_end_matches('/');
        let well_known_path = format!("{WELL_KNOWN}{path_suffix}");
        Ok(ResourceMetadata {
            url: format!("{origin}{well_known_path}"),
            well_known_path,
            document: serde_json::Value::Object(document).to_string(),
            resource: self.resource,
        })
    }
}

impl fmt::Debug for ProtectedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResource")
            .field("resource", &self.resource)
            .field("authorization_servers", &self.authorization_servers)
            .finish_non_exhaustive()
    }
}

/// RFC 6749 §3.3 `scope-token` characters: %x21 / %x23-5B / %x5D-7E.
fn is_scope_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Splits an absolute `https` URL (or `http` on a loopback host) without query or fragment into
/// its origin (`https://host:port`) and path.
fn split_resource(url: &str) -> Result<(&str, &str), String> {
    if url.contains(['#', '?']) {
        return Err(format!("{url:?} must have no query or fragment"));
    }
    if url.bytes().any(|b| !(0x21..0x7F).contains(&b)) {
        return Err(format!("{url:?} is not a valid URL"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} has no valid host"));
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{url:?} has an invalid port"));
            }
            host
        }
        _ => authority,
    };
    match scheme {
        "https" => {}
        "http" if matches!(host, "localhost" | "127.0.0.1" | "[::1]") => {}
        _ => {
            return Err(format!(
                "{url:?} must be https (http only on a loopback host)"
            ));
        }
    }
    let origin_len = scheme.len() + 3 + authority_end;
    Ok((&url[..origin_len], &url[origin_len..]))
}

/// A checked [`ProtectedResource`]: the document as served and where.
#[derive(Debug)]
pub(crate) struct ResourceMetadata {
    /// The resource identifier, also the audience.
    pub(crate) resource: String,
    /// The absolute URL of the document, named in challenges.
    pub(crate) url: String,
    /// The path the document is served at.
    pub(crate) well_known_path: String,
    /// The JSON document.
    pub(crate) document: String,
}

impl ResourceMetadata {
    /// Adds the DPoP members of RFC 9728 §2: the proof algorithms, and whether every token
    /// must be DPoP-bound.
    pub(crate) fn add_dpop(&mut self, algs: &str, required: bool) {
        if let Ok(serde_json::Value::Object(mut document)) =
            serde_json::from_str::<serde_json::Value>(&self.document)
        {
            let algs: Vec<&str> = algs.split(' ').collect();
            document.insert("dpop_signing_alg_values_supported".into(), algs.into());
            document.insert("dpop_bound_access_tokens_required".into(), required.into());
            self.document = serde_json::Value::Object(document).to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(resource: &str) -> Result<ResourceMetadata, ConfigError> {
        ProtectedResource::new(resource).build(&["https://as.example"], &["header"])
    }

    #[test]
    fn metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        let cases = [
            (
                "https://api.example.com",
                "https://api.example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example.com/",
                "https://api.example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example.com/mcp",
                "https://api.example.com/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "https://api.example.com:8443/a/b/",
                "https://api.example.com:8443/.well-known/oauth-protected-resource/a/b",
            ),
            (
                "http://127.0.0.1:3000/mcp",
                "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "http://[::1]:3000",
                "http://[::1]:3000/.well-known/oauth-protected-resource",
            ),
        ];
        for (resource, url) in cases {
            let metadata = built(resource).map_err(|e| e.to_string());
            assert_eq!(metadata.map(|m| m.url).as_deref(), Ok(url), "{resource}");
        }
    }

    #[test]
    fn bad_resource_identifiers_are_configuration_errors() {
        for bad in [
            "",
            "api.example.com/mcp",
            "ftp://api.example.com",
            "http://api.example.com/mcp",
            "https://api.example.com/mcp#x",
            "https://api.example.com/mcp?x=1",
            "https:///mcp",
            "https://user@api.example.com",
            "https://api.example.com:port",
            "https://api.example.com/a b",
        ] {
            assert!(built(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn document_lists_the_configured_members() -> Result<(), Box<dyn std::error::Error>> {
        let metadata = ProtectedResource::new("https://api.example.com/mcp")
            .scopes_supported(["mcp:tools", "mcp:admin"])
            .resource_name("MCP")
            .documentation("https://docs.example.com")
            .build(&["https://as.example"], &["header", "query"])?;
        let document: serde_json::Value = serde_json::from_str(&metadata.document)?;
        assert_eq!(
            document,
            serde_json::json!({
                "resource": "https://api.example.com/mcp",
                "authorization_servers": ["https://as.example"],
                "bearer_methods_supported": ["header", "query"],
                "scopes_supported": ["mcp:tools", "mcp:admin"],
                "resource_name": "MCP",
                "resource_documentation": "https://docs.example.com",
            })
        );
        assert!(
            ProtectedResource::new("https://api.example.com")
                .scopes_supported(["a b"])
                .build(&["https://as.example"], &["header"])
                .is_err()
        );
        assert!(
            ProtectedResource::new("https://api.example.com")
                .build(&[], &["header"])
                .is_err()
        );
        Ok(())
    }
}
