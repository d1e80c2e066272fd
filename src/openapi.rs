//! OpenAPI documents that state what the layer and [`RequireScope`] enforce (feature
//! `utoipa`, for [utoipa](https://docs.rs/utoipa) 5's document types).
//!
//! [`ApiSecurity`] adds one security scheme to a `utoipa::openapi::OpenApi` document (HTTP
//! bearer with format JWT, or OAuth 2.0 with the flows and URLs of the issuer or of this
//! crate's own server, `AuthorizationServer::openapi_flows`) and a security requirement to each protected operation, with the very
//! scopes its [`RequireScope`] demands: `all` becomes one requirement listing every scope,
//! `any` one requirement per scope (OpenAPI requirements are alternatives). Give it the
//! `RequireScope` values the router uses and the document cannot drift from what is enforced.
//!
//! ```
//! use http::Method;
//! use tower_oauth2::RequireScope;
//! use tower_oauth2::openapi::ApiSecurity;
//! use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
//! use utoipa::openapi::{OpenApiBuilder, PathsBuilder};
//!
//! # fn main() -> Result<(), tower_oauth2::openapi::OpenApiError> {
//! let read = RequireScope::all(["events:read"]);
//! // The router: `get(handler).route_layer(read.clone())`. The document:
//! let mut doc = OpenApiBuilder::new()
//!     .paths(PathsBuilder::new().path(
//!         "/events/{id}",
//!         PathItem::new(HttpMethod::Get, OperationBuilder::new().operation_id(Some("get_event"))),
//!     ))
//!     .build();
//! ApiSecurity::bearer_jwt()
//!     .scoped(Method::GET, "/events/{id}", &read)
//!     .apply(&mut doc)?;
//! let json = serde_json::to_value(&doc).unwrap_or_default();
//! assert_eq!(json["paths"]["/events/{id}"]["get"]["security"][0]["bearer"][0], "events:read");
//! # Ok(()) }
//! ```
//!
//! OpenAPI 3.1 (utoipa 5's version) allows scopes ("role names") in requirements of any
//! scheme, so the bearer scheme lists them too; for an OAuth 2.0 scheme every scope a route
//! requires is also declared in each flow, with the description given by
//! [`OAuth2Flows::scope`] or a generated one.

use std::collections::BTreeMap;
use std::fmt;

use http::Method;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    AuthorizationCode, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password,
    Scopes, SecurityRequirement, SecurityScheme,
};

use crate::http::require_scope::RequireScope;

/// A document that does not fit what [`ApiSecurity::apply`] was asked to state.
#[derive(Debug, Clone)]
pub struct OpenApiError(String);

impl fmt::Display for OpenApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenApiError {}

/// The OAuth 2.0 flows of an [`ApiSecurity::oauth2`] scheme: the URLs where a client gets a
/// token, and descriptions of the scopes.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct OAuth2Flows {
    authorization_code: Option<(String, String)>,
    client_credentials: Option<String>,
    password: Option<String>,
    refresh_url: Option<String>,
    descriptions: BTreeMap<String, String>,
}

impl OAuth2Flows {
    /// No flows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The authorization-code flow (with PKCE, as OAuth 2.1 requires).
    pub fn authorization_code(
        mut self,
        authorization_url: impl Into<String>,
        token_url: impl Into<String>,
    ) -> Self {
        self.authorization_code = Some((authorization_url.into(), token_url.into()));
        self
    }

    /// The client-credentials flow.
    pub fn client_credentials(mut self, token_url: impl Into<String>) -> Self {
        self.client_credentials = Some(token_url.into());
        self
    }

    /// The resource-owner password flow.
    pub fn password(mut self, token_url: impl Into<String>) -> Self {
        self.password = Some(token_url.into());
        self
    }

    /// Where refresh tokens are exchanged (the token endpoint), for every flow.
    pub fn refresh_url(mut self, url: impl Into<String>) -> Self {
        self.refresh_url = Some(url.into());
        self
    }

    /// Describes a scope. Scopes the routes require and nobody described get a generated
    /// description.
    pub fn scope(mut self, scope: impl Into<String>, description: impl Into<String>) -> Self {
        self.descriptions.insert(scope.into(), description.into());
        self
    }

    /// The flows an authorization server's metadata (RFC 8414, or OpenID Connect Discovery)
    /// announces: authorization code when it has an `authorization_endpoint`, client
    /// credentials and password when `grant_types_supported` lists them (RFC 8414's default
    /// is authorization code only), refresh at the token endpoint when it lists
    /// `refresh_token`. The URLs must be https (http only on loopback).
    pub fn from_metadata(metadata: &serde_json::Value) -> Result<Self, OpenApiError> {
        let url = |member: &str| -> Result<Option<String>, OpenApiError> {
            match metadata.get(member) {
                None => Ok(None),
                Some(serde_json::Value::String(url)) if https_or_loopback(url) => {
                    Ok(Some(url.clone()))
                }
                Some(_) => Err(OpenApiError(format!(
                    "the metadata's {member} is not an https URL"
                ))),
            }
        };
        let token = url("token_endpoint")?
            .ok_or_else(|| OpenApiError("the metadata has no token_endpoint".into()))?;
        let grants: Vec<&str> = match metadata.get("grant_types_supported") {
            Some(serde_json::Value::Array(grants)) => grants
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect(),
            None => vec!["authorization_code", "implicit"],
            Some(_) => {
                return Err(OpenApiError(
                    "the metadata's grant_types_supported is not an array".into(),
                ));
            }
        };
        let mut flows = Self::new();
        if let Some(authorize) = url("authorization_endpoint")?
            && grants.contains(&"authorization_code")
        {
            flows = flows.authorization_code(authorize, token.clone());
        }
        if grants.contains(&"client_credentials") {
            flows = flows.client_credentials(token.clone());
        }
        if grants.contains(&"password") {
            flows = flows.password(token.clone());
        }
        if grants.contains(&"refresh_token") {
            flows = flows.refresh_url(token);
        }
        if flows.is_empty() {
            return Err(OpenApiError(
                "the metadata announces no flow an OpenAPI document can describe".into(),
            ));
        }
        Ok(flows)
    }

    /// [`from_metadata`](Self::from_metadata) of the configured issuer's metadata, fetched from
    /// `{issuer}/.well-known/openid-configuration` (else RFC 8414's location) as the JWKS
    /// discovery does: the document must name this very issuer (feature `remote`).
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub async fn discover(issuer: &str) -> Result<Self, OpenApiError> {
        use crate::keys::remote::{check_url, discover_metadata, redirect_policy};
        check_url(issuer).map_err(|e| OpenApiError(e.to_string()))?;
        let client = reqwest::Client::builder()
            .redirect(redirect_policy())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| OpenApiError(format!("cannot create the HTTP client: {e}")))?;
        let (_, document) = discover_metadata(&client, issuer, 512 * 1024)
            .await
            .map_err(|e| OpenApiError(e.to_string()))?;
        Self::from_metadata(&serde_json::Value::Object(document))
    }

    fn is_empty(&self) -> bool {
        self.authorization_code.is_none()
            && self.client_credentials.is_none()
            && self.password.is_none()
    }

    /// The flows, each declaring `scopes`.
    fn build(&self, scopes: &BTreeMap<String, String>) -> Vec<Flow> {
        let scopes = || Scopes::from_iter(scopes.iter().map(|(k, v)| (k.clone(), v.clone())));
        let refresh = self.refresh_url.clone();
        let mut flows = Vec::new();
        if let Some((authorize, token)) = &self.authorization_code {
            let flow = match &refresh {
                Some(r) => AuthorizationCode::with_refresh_url(authorize, token, scopes(), r),
                None => AuthorizationCode::new(authorize, token, scopes()),
            };
            flows.push(Flow::AuthorizationCode(flow));
        }
        if let Some(token) = &self.client_credentials {
            let flow = match &refresh {
                Some(r) => ClientCredentials::with_refresh_url(token, scopes(), r),
                None => ClientCredentials::new(token, scopes()),
            };
            flows.push(Flow::ClientCredentials(flow));
        }
        if let Some(token) = &self.password {
            let flow = match &refresh {
                Some(r) => Password::with_refresh_url(token, scopes(), r),
                None => Password::new(token, scopes()),
            };
            flows.push(Flow::Password(flow));
        }
        flows
    }
}

/// An https URL, or http on a loopback host ([`keys::fetchable`](crate::keys::fetchable), the
/// rule of every URL this crate fetches), read with `http::Uri` so that it needs no feature.
fn https_or_loopback(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|uri| crate::keys::fetchable(uri.scheme_str().unwrap_or_default(), uri.host()))
}

/// What a route demands: a token, and perhaps scopes.
#[derive(Debug, Clone)]
enum Need {
    Token,
    All(Vec<String>),
    Any(Vec<String>),
}

#[derive(Debug, Clone)]
enum Kind {
    BearerJwt,
    OAuth2(OAuth2Flows),
}

/// One security scheme and the operations it protects, applied to a document by
/// [`apply`](Self::apply). See the [module](self) documentation.
#[derive(Debug, Clone)]
#[must_use]
pub struct ApiSecurity {
    name: String,
    kind: Kind,
    description: Option<String>,
    routes: Vec<(Method, String, Need)>,
}

impl ApiSecurity {
    /// An HTTP bearer scheme with format JWT, named `bearer`.
    pub fn bearer_jwt() -> Self {
        Self {
            name: "bearer".into(),
            kind: Kind::BearerJwt,
            description: None,
            routes: Vec::new(),
        }
    }

    /// An OAuth 2.0 scheme with `flows`, named `oauth2`.
    pub fn oauth2(flows: OAuth2Flows) -> Self {
        Self {
            name: "oauth2".into(),
            kind: Kind::OAuth2(flows),
            description: None,
            routes: Vec::new(),
        }
    }

    /// Names the scheme in the document's `components.securitySchemes` (default `bearer` or
    /// `oauth2`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The scheme's description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The operation `method path` needs a valid token and no particular scope.
    pub fn authenticated(mut self, method: Method, path: impl Into<String>) -> Self {
        self.routes.push((method, path.into(), Need::Token));
        self
    }

    /// The operation `method path` needs what `scope` requires.
    pub fn scoped(mut self, method: Method, path: impl Into<String>, scope: &RequireScope) -> Self {
        let scopes = scope.scopes().map(str::to_owned).collect();
        let need = if scope.requires_all() {
            Need::All(scopes)
        } else {
            Need::Any(scopes)
        };
        self.routes.push((method, path.into(), need));
        self
    }

    /// Adds the scheme to `doc`'s components and a requirement to each operation named with
    /// [`authenticated`](Self::authenticated) or [`scoped`](Self::scoped), replacing what the
    /// operation required before. An operation the document does not have, a method OpenAPI
    /// has no field for, or an OAuth 2.0 scheme without flows is an error, and `doc` is left
    /// unchanged.
    pub fn apply(&self, doc: &mut OpenApi) -> Result<(), OpenApiError> {
        let scheme = self.scheme()?;
        let mut updated = doc.clone();
        for (method, path, need) in &self.routes {
            let operation = operation(&mut updated, method, path)?;
            let requirements = match need {
                Need::Token => vec![SecurityRequirement::new(&self.name, Vec::<String>::new())],
                Need::All(scopes) => vec![SecurityRequirement::new(&self.name, scopes.clone())],
                Need::Any(scopes) => scopes
                    .iter()
                    .map(|s| SecurityRequirement::new(&self.name, [s.clone()]))
                    .collect(),
            };
            operation.security = Some(requirements);
        }
        updated
            .components
            .get_or_insert_with(Default::default)
            .security_schemes
            .insert(self.name.clone(), scheme);
        *doc = updated;
        Ok(())
    }

    /// The scheme, an OAuth 2.0 one declaring every scope a route requires.
    fn scheme(&self) -> Result<SecurityScheme, OpenApiError> {
        match &self.kind {
            Kind::BearerJwt => {
                let mut http = HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT");
                if let Some(description) = &self.description {
                    http = http.description(Some(description.clone()));
                }
                Ok(SecurityScheme::Http(http.build()))
            }
            Kind::OAuth2(flows) => {
                if flows.is_empty() {
                    return Err(OpenApiError(format!(
                        "the OAuth 2.0 scheme {} has no flow: add authorization_code, \
                         client_credentials or password",
                        self.name
                    )));
                }
                let mut scopes = flows.descriptions.clone();
                for (method, path, need) in &self.routes {
                    let (Need::All(list) | Need::Any(list)) = need else {
                        continue;
                    };
                    for scope in list {
                        scopes
                            .entry(scope.clone())
                            .or_insert_with(|| format!("required by {method} {path}"));
                    }
                }
                let oauth2 = match &self.description {
                    Some(d) => OAuth2::with_description(flows.build(&scopes), d.clone()),
                    None => OAuth2::new(flows.build(&scopes)),
                };
                Ok(SecurityScheme::OAuth2(oauth2))
            }
        }
    }
}

/// The operation `method path` of `doc`.
fn operation<'d>(
    doc: &'d mut OpenApi,
    method: &Method,
    path: &str,
) -> Result<&'d mut Operation, OpenApiError> {
    let missing = || OpenApiError(format!("the document has no operation {method} {path}"));
    let item = doc.paths.paths.get_mut(path).ok_or_else(missing)?;
    let slot = match *method {
        Method::GET => &mut item.get,
        Method::POST => &mut item.post,
        Method::PUT => &mut item.put,
        Method::DELETE => &mut item.delete,
        Method::PATCH => &mut item.patch,
        Method::HEAD => &mut item.head,
        Method::OPTIONS => &mut item.options,
        Method::TRACE => &mut item.trace,
        _ => {
            return Err(OpenApiError(format!(
                "OpenAPI has no operation field for the method {method}"
            )));
        }
    };
    slot.as_mut().ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder};

    fn doc() -> OpenApi {
        OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path(
                        "/a",
                        PathItem::new(HttpMethod::Get, OperationBuilder::new()),
                    )
                    .path(
                        "/b",
                        PathItem::new(HttpMethod::Post, OperationBuilder::new()),
                    ),
            )
            .build()
    }

    fn json(doc: &OpenApi) -> serde_json::Value {
        serde_json::to_value(doc).unwrap_or_default()
    }

    #[test]
    fn all_is_one_requirement_any_is_one_per_scope() {
        let mut d = doc();
        let applied = ApiSecurity::bearer_jwt()
            .scoped(Method::GET, "/a", &RequireScope::all(["x", "y"]))
            .scoped(Method::POST, "/b", &RequireScope::any(["x", "y"]))
            .apply(&mut d);
        assert!(applied.is_ok(), "{applied:?}");
        let j = json(&d);
        assert_eq!(
            j["paths"]["/a"]["get"]["security"],
            serde_json::json!([{"bearer": ["x", "y"]}])
        );
        assert_eq!(
            j["paths"]["/b"]["post"]["security"],
            serde_json::json!([{"bearer": ["x"]}, {"bearer": ["y"]}])
        );
        assert_eq!(
            j["components"]["securitySchemes"]["bearer"],
            serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
    }

    #[test]
    fn oauth2_flows_declare_every_required_scope() {
        let mut d = doc();
        let flows = OAuth2Flows::new()
            .client_credentials("https://as.example/token")
            .scope("x", "read x");
        let applied = ApiSecurity::oauth2(flows)
            .scoped(Method::GET, "/a", &RequireScope::all(["x", "y"]))
            .authenticated(Method::POST, "/b")
            .apply(&mut d);
        assert!(applied.is_ok(), "{applied:?}");
        let j = json(&d);
        let flow = &j["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"];
        assert_eq!(flow["tokenUrl"], "https://as.example/token");
        assert_eq!(flow["scopes"]["x"], "read x");
        assert_eq!(flow["scopes"]["y"], "required by GET /a");
        assert_eq!(
            j["paths"]["/b"]["post"]["security"],
            serde_json::json!([{"oauth2": []}])
        );
    }

    #[test]
    fn flows_from_metadata() {
        let metadata = serde_json::json!({
            "issuer": "https://as.example",
            "token_endpoint": "https://as.example/token",
            "authorization_endpoint": "https://as.example/authorize",
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        });
        let flows = OAuth2Flows::from_metadata(&metadata);
        assert!(flows.is_ok(), "{flows:?}");
        let mut d = doc();
        let applied = flows
            .map(ApiSecurity::oauth2)
            .and_then(|s| s.authenticated(Method::GET, "/a").apply(&mut d));
        assert!(applied.is_ok(), "{applied:?}");
        let j = json(&d);
        let flows = &j["components"]["securitySchemes"]["oauth2"]["flows"];
        assert_eq!(
            flows["authorizationCode"]["authorizationUrl"],
            "https://as.example/authorize"
        );
        assert_eq!(
            flows["clientCredentials"]["refreshUrl"],
            "https://as.example/token"
        );
        assert!(flows.get("password").is_none());
        // Plain http off loopback, no token endpoint, no usable flow: errors.
        for bad in [
            serde_json::json!({"token_endpoint": "http://as.example/token"}),
            serde_json::json!({"grant_types_supported": ["client_credentials"]}),
            serde_json::json!({"token_endpoint": "https://as.example/t", "grant_types_supported": ["implicit"]}),
        ] {
            assert!(OAuth2Flows::from_metadata(&bad).is_err(), "{bad}");
        }
        assert!(https_or_loopback("http://127.0.0.1:8080/token"));
        assert!(https_or_loopback("http://[::1]/token"));
        assert!(!https_or_loopback("http://127.0.0.1.evil.example/token"));
    }

    #[test]
    fn a_missing_operation_is_an_error_and_changes_nothing() {
        let mut d = doc();
        let before = json(&d);
        let error = ApiSecurity::bearer_jwt()
            .authenticated(Method::GET, "/a")
            .authenticated(Method::DELETE, "/a")
            .apply(&mut d)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("the document has no operation DELETE /a")
        );
        assert_eq!(json(&d), before);
        let no_flows = ApiSecurity::oauth2(OAuth2Flows::new()).apply(&mut d);
        assert!(no_flows.is_err());
    }
}
