//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, the MCP
//! 2025-11-25 default): a `client_id` that is an `https` URL names a JSON document, fetched
//! from it, that describes a public client. Fetching a URL a stranger chose is a server-side
//! request forgery risk: private, loopback and link-local addresses are refused (checked on the
//! resolved addresses, redirects included), and the fetch is bounded in size and time.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;

use super::http::OAuthError;
use super::store::{ClientRecord, ClientStatus, GrantType};
use super::{ApprovalPolicy, ServerState};
use crate::error::ConfigError;

/// Accepts Client ID Metadata Documents, for
/// [`AuthorizationServerBuilder::client_id_metadata_documents`](super::AuthorizationServerBuilder::client_id_metadata_documents)
/// (feature `remote`). Off unless configured.
///
/// A `client_id` that is an `https` URL with a path is fetched (at most 5 KiB, within 5 s, no
/// redirect to another host; cached per its `Cache-Control`, 5 minutes without one, at most a
/// day). The document's `client_id` must equal the URL, its `redirect_uris` bind the
/// authorization request, and the client is public (`token_endpoint_auth_method` `none`). The
/// client is kept in the store under its URL, and follows the approval policy like any other.
#[derive(Clone)]
#[must_use]
pub struct ClientIdMetadata {
    max_bytes: usize,
    timeout: Duration,
    scopes: Vec<String>,
    roots: Vec<Vec<u8>>,
    allow_private: bool,
    rate_limit: (u32, Duration),
}

impl Default for ClientIdMetadata {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIdMetadata {
    /// Documents of at most 5 KiB, fetched within 5 s, for clients with no scopes.
    pub fn new() -> Self {
        Self {
            max_bytes: 5 * 1024,
            timeout: Duration::from_secs(5),
            scopes: Vec::new(),
            roots: Vec::new(),
            allow_private: false,
            rate_limit: (30, Duration::from_secs(3600)),
        }
    }

    /// At most `max` new clients (documents not seen before) per peer address in each
    /// `window` (default 30 an hour), so that nobody fills the store with clients; beyond, 429
    /// with `Retry-After`. Known clients are not limited. Serve with
    /// `into_make_service_with_connect_info` so that the peer is known; otherwise every peer
    /// shares one budget.
    pub fn rate_limit(mut self, max: u32, window: Duration) -> Self {
        self.rate_limit = (max, window);
        self
    }

    /// The scopes such a client may have; a document that names none gets them all.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The largest document accepted (default 5 KiB, at most 64 KiB).
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long one fetch may take, body included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trusts this PEM certificate authority when fetching (a private CA, a test CA).
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

    /// **Dangerous**: also fetches documents from private, loopback and link-local addresses,
    /// which lets a client make this server request its internal network. For tests and
    /// closed networks only.
    pub fn dangerous_allow_private_addresses(mut self) -> Self {
        self.allow_private = true;
        self
    }

    pub(crate) fn check(self) -> Result<ClientMetadataFetcher, ConfigError> {
        let error = |m: String| ConfigError::new(format!("client_id_metadata_documents: {m}"));
        if self.max_bytes == 0 || self.max_bytes > 64 * 1024 {
            return Err(error("max_document_size must be 1 byte to 64 KiB".into()));
        }
        if self.timeout.is_zero() {
            return Err(error("the timeout must be positive".into()));
        }
        if self.rate_limit.0 == 0 || self.rate_limit.1.is_zero() {
            return Err(error(
                "rate_limit needs at least one client and a positive window".into(),
            ));
        }
        if let Some(bad) = self.scopes.iter().find(|s| !super::http::is_scope_token(s)) {
            return Err(error(format!("{bad:?} is not a scope")));
        }
        let mut roots = Vec::new();
        for pem in &self.roots {
            roots.push(
                reqwest::Certificate::from_pem(pem)
                    .map_err(|e| error(format!("root certificate: {e}")))?,
            );
        }
        let allow_private = self.allow_private;
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .https_only(true)
            .tls_certs_merge(roots)
            .dns_resolver(Arc::new(Guard { allow_private }))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_host = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.host_str() == attempt.url().host_str());
                if attempt.previous().len() >= 3 {
                    attempt.error("too many redirects")
                } else if !same_host {
                    attempt.error("a client metadata document may not redirect to another host")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| error(format!("building the HTTP client: {e}")))?;
        Ok(ClientMetadataFetcher {
            client,
            limiter: super::client_auth::RateLimiter::new(self.rate_limit.0, self.rate_limit.1),
            max_bytes: self.max_bytes,
            scopes: self.scopes,
            allow_private,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .expire_after(Expiry)
                .build(),
        })
    }
}

impl fmt::Debug for ClientIdMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdMetadata")
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .field("scopes", &self.scopes)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

/// Resolves names to public addresses only (unless allowed): a name that resolves to a
/// private address fails, so neither the first request nor a redirect can reach one.
struct Guard {
    allow_private: bool,
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{} resolves to no public address (private, loopback and link-local \
                     addresses are refused)",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// unique-local, shared (CGN), unspecified, multicast, broadcast or documentation.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Whether `client_id` has the shape of a Client ID Metadata Document URL (RFC 3986 `https`,
/// a host, a path other than `/`, no fragment, no credentials, no dot segments).
pub(crate) fn is_document_url(client_id: &str) -> bool {
    parse_document_url(client_id).is_ok()
}

fn parse_document_url(client_id: &str) -> Result<reqwest::Url, String> {
    if client_id.len() > 2000 {
        return Err("the client_id URL is too long".into());
    }
    let url = reqwest::Url::parse(client_id).map_err(|e| format!("not a URL: {e}"))?;
    let raw_path = client_id
        .strip_prefix("https://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("");
    let dot_segment = raw_path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split('/')
        .any(|s| s == "." || s == "..");
    if url.scheme() != "https"
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
        || client_id.contains('#')
        || url.path() == "/"
        || dot_segment
        || url.as_str() != client_id
    {
        return Err(
            "a client_id URL must be https with a host and a path, without fragment, \
             credentials or dot segments, in normal form"
                .into(),
        );
    }
    Ok(url)
}

/// The members of a client metadata document this server uses; others are ignored.
#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
    #[serde(default)]
    client_secret_expires_at: Option<serde_json::Value>,
}

/// A checked document: what the client record gets from it.
#[derive(Debug, Clone)]
struct Described {
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
}

/// How long a fetched document is trusted.
struct Expiry;

impl moka::Expiry<String, (Arc<Described>, Duration)> for Expiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &(Arc<Described>, Duration),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

/// Fetches, checks and caches client metadata documents.
pub(crate) struct ClientMetadataFetcher {
    client: reqwest::Client,
    /// New clients per peer.
    limiter: super::client_auth::RateLimiter,
    max_bytes: usize,
    scopes: Vec<String>,
    allow_private: bool,
    cache: moka::sync::Cache<String, (Arc<Described>, Duration)>,
}

impl fmt::Debug for ClientMetadataFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMetadataFetcher")
            .field("max_bytes", &self.max_bytes)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

/// Without `Cache-Control`, a document is trusted this long.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// A document is trusted at most this long, whatever its `Cache-Control`.
const MAX_TTL: Duration = Duration::from_secs(86_400);

fn invalid_client(description: String) -> OAuthError {
    OAuthError::invalid_request(format!("client metadata document: {description}"))
}

impl ClientMetadataFetcher {
    /// The document at `url`, from the cache or fetched.
    async fn described(&self, url: &str) -> Result<Arc<Described>, OAuthError> {
        if let Some((described, _)) = self.cache.get(url) {
            return Ok(described);
        }
        let parsed = parse_document_url(url).map_err(invalid_client)?;
        if let Some(host) = parsed.host_str()
            && let Ok(ip) = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            && !self.allow_private
            && !is_public(ip)
        {
            return Err(invalid_client(format!("{host} is not a public address")));
        }
        let fetch_error = |e: reqwest::Error| {
            tracing::info!(target: "tower_oauth2::server", %url, error = %e, "client metadata document fetch failed");
            invalid_client(format!("could not be fetched: {}", without_url(&e)))
        };
        let mut response = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(fetch_error)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(invalid_client(format!(
                "fetching it answered {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(invalid_client(format!(
                "larger than {} bytes",
                self.max_bytes
            )));
        }
        let ttl = ttl(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(invalid_client(format!(
                    "larger than {} bytes",
                    self.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let document: Document = serde_json::from_slice(&body)
            .map_err(|e| invalid_client(format!("not a client metadata document: {e}")))?;
        let described = Arc::new(self.check(url, document)?);
        if let Some(ttl) = ttl {
            self.cache
                .insert(url.to_owned(), (Arc::clone(&described), ttl));
        }
        Ok(described)
    }

    /// Checks a document against the URL it came from and this server's rules.
    fn check(&self, url: &str, document: Document) -> Result<Described, OAuthError> {
        if document.client_id != url {
            return Err(invalid_client(
                "its client_id differs from the URL it was fetched from".into(),
            ));
        }
        if document.client_secret.is_some() || document.client_secret_expires_at.is_some() {
            return Err(invalid_client(
                "it must not contain a client secret (the client is public)".into(),
            ));
        }
        match document.token_endpoint_auth_method.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(invalid_client(format!(
                    "token_endpoint_auth_method {other:?} is not supported (only none)"
                )));
            }
        }
        if document.redirect_uris.is_empty() {
            return Err(invalid_client("it has no redirect_uris".into()));
        }
        for uri in &document.redirect_uris {
            super::admin::check_redirect_uri(uri).map_err(invalid_client)?;
        }
        let mut grant_types = Vec::new();
        for name in document
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".into()])
        {
            match GrantType::parse(&name) {
                Some(g @ (GrantType::AuthorizationCode | GrantType::RefreshToken)) => {
                    if !grant_types.contains(&g) {
                        grant_types.push(g);
                    }
                }
                _ => {
                    return Err(invalid_client(format!(
                        "grant type {name:?} is not available to such a client"
                    )));
                }
            }
        }
        if !grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(invalid_client(
                "it must have the authorization_code grant".into(),
            ));
        }
        if let Some(types) = &document.response_types
            && types.iter().any(|t| t != "code")
        {
            return Err(invalid_client(
                "only the response type code is supported".into(),
            ));
        }
        let scopes =
            super::http::scopes_within(document.scope.as_deref(), &self.scopes).map_err(|bad| {
                invalid_client(format!("scope {bad} is not available to such a client"))
            })?;
        let name = document
            .client_name
            .map(|n| n.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| url.chars().take(200).collect());
        Ok(Described {
            name,
            redirect_uris: document.redirect_uris,
            grant_types,
            scopes,
        })
    }
}

/// The error's message without the URL (the client sent it; no need to echo it back).
fn without_url(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut deepest = None;
    while let Some(e) = source {
        deepest = Some(e.to_string());
        source = e.source();
    }
    deepest.unwrap_or_else(|| {
        if error.is_timeout() {
            "timed out".into()
        } else {
            "the request failed".into()
        }
    })
}

/// How long a response may be cached: `None` for `no-store` or `no-cache`; `max-age` within
/// the bounds; the default without one.
fn ttl(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let Some(value) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(DEFAULT_TTL);
    };
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return None;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            max_age = seconds.trim_matches('"').parse::<u64>().ok();
        }
    }
    match max_age {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds).min(MAX_TTL)),
        None => Some(DEFAULT_TTL),
    }
}

/// The client a Client ID Metadata Document URL names: its document fetched (or cached) and
/// checked, and its record in the store created or brought up to date (status and creation
/// kept; a new one gets the approval policy's status).
pub(crate) async fn client(
    state: &ServerState,
    fetcher: &ClientMetadataFetcher,
    url: &str,
    peer: Option<IpAddr>,
) -> Result<Option<ClientRecord>, OAuthError> {
    let stored = state.store.client(url).await?;
    if stored.is_none() {
        // A new client: counted against its peer, before anything is fetched.
        let key = peer.map_or_else(|| "cimd:unknown".to_owned(), |ip| format!("cimd:{ip}"));
        let now = Instant::now();
        if let Some(wait) = fetcher.limiter.blocked(&key, now) {
            return Err(OAuthError::too_many(
                "too many new clients from this address; retry later",
                wait,
            ));
        }
        fetcher.limiter.failed(&key, now);
    }
    let described = fetcher.described(url).await?;
    let fresh = |status: ClientStatus, created_at: u64, contacts: Vec<String>| ClientRecord {
        client_id: url.to_owned(),
        name: described.name.clone(),
        secret_hash: None,
        redirect_uris: described.redirect_uris.clone(),
        grant_types: described.grant_types.clone(),
        scopes: described.scopes.clone(),
        default_scopes: described.scopes.clone(),
        access_token_lifetime: None,
        refresh_token_lifetime: None,
        status,
        created_at,
        contacts,
        registration_token: None,
    };
    match stored {
        Some(current) => {
            let wanted = ClientRecord {
                access_token_lifetime: current.access_token_lifetime,
                refresh_token_lifetime: current.refresh_token_lifetime,
                ..fresh(current.status, current.created_at, current.contacts.clone())
            };
            if wanted != current {
                state.store.update_client(wanted.clone()).await?;
                state.clients.invalidate(url);
            }
            Ok(Some(wanted))
        }
        None => {
            let status = match state.approval {
                ApprovalPolicy::Automatic => ClientStatus::Approved,
                ApprovalPolicy::Manual | ApprovalPolicy::Groups(_) => ClientStatus::Pending,
            };
            let record = fresh(status, crate::time::now(), Vec::new());
            match super::admin::insert(state, Some("client-id-metadata-document"), record.clone())
                .await
            {
                Ok(()) => Ok(Some(record)),
                // Another request stored it first.
                Err(super::RegistrationError::Store(super::StoreError::Conflict(_))) => {
                    Ok(state.store.client(url).await?)
                }
                Err(super::RegistrationError::Store(error)) => Err(error.into()),
                Err(error) => Err(OAuthError::server_error(error.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = private.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(!is_public(ip), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(is_public(ip), "{public}");
        }
    }

    #[test]
    fn document_urls_are_https_with_a_path_in_normal_form() {
        for good in [
            "https://app.example/client.json",
            "https://app.example:8443/oauth/client",
            "https://127.0.0.1:9000/client",
        ] {
            assert!(is_document_url(good), "{good}");
        }
        for bad in [
            "http://app.example/client.json",
            "https://app.example",
            "https://app.example/",
            "https://app.example/a/../client",
            "https://app.example/./client",
            "https://user:pw@app.example/client",
            "https://app.example/client#x",
            "https://APP.example/client",
            "app-client",
        ] {
            assert!(!is_document_url(bad), "{bad}");
        }
    }

    #[test]
    fn cache_control_sets_the_lifetime_within_bounds() {
        let with = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Ok(v) = value.parse() {
                headers.insert(reqwest::header::CACHE_CONTROL, v);
            }
            ttl(&headers)
        };
        assert_eq!(ttl(&reqwest::header::HeaderMap::new()), Some(DEFAULT_TTL));
        assert_eq!(with("max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(with("public, max-age=9999999"), Some(MAX_TTL));
        assert_eq!(with("no-store"), None);
        assert_eq!(with("max-age=0"), None);
        assert_eq!(with("public"), Some(DEFAULT_TTL));
    }
}
