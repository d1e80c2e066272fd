//! An MCP server secured by tower-oauth2, as the Model Context Protocol's authorization spec
//! (2025-06-18, 2025-11-25) asks: an MCP server on the official Rust SDK (`rmcp`, streamable
//! HTTP on axum) with one tool, `whoami`, behind the layer; and in the same process the
//! crate's authorization server with dynamic client registration, public clients with PKCE,
//! resource indicators and an auto-approving consent handler.
//!
//! ```sh
//! cargo run -p tower-oauth2-mcp-example        # BIND=127.0.0.1:8931 by default
//! ```
//!
//! An MCP client that calls `http://127.0.0.1:8931/mcp` gets a 401 naming the
//! protected-resource metadata (RFC 9728), reads the authorization server from it, registers
//! itself (RFC 7591), runs the authorization code grant with PKCE and `resource` (RFC 8707), and
//! calls the tool with a token whose audience is this MCP server only.
//!
//! Clients may also name themselves by the `https` URL of a Client ID Metadata Document
//! (the MCP 2025-11-25 default). `MCP_CLIENT_METADATA_CA` (a PEM file) adds a certificate
//! authority for fetching those documents, and `MCP_DANGEROUS_PRIVATE_CLIENT_METADATA=1` lets
//! them be fetched from loopback and private addresses — both for tests only.
//!
//! With `MCP_SERVICE_CLIENT_SECRET` set (at least 32 characters), it also registers the
//! confidential client `mcp-service` for the `client_credentials` grant, for machine-to-machine
//! callers.
//!
//! The consent handler approves every request as the user `mcp-user`: a real server shows a
//! login and a consent page there (see `examples/demo.rs`). Clients and tokens are kept in
//! memory.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    AuthorizationRequest, AuthorizationServer, ClientIdMetadata, ClientRegistration, ClientSecret,
    ConsentDecision, ConsentHandler, DynamicRegistration, HookFuture, ResourceServer,
};
use tower_oauth2::{ProtectedResource, RequireScope, VerifiedToken};

/// The scope the tool needs.
const SCOPE: &str = "mcp:tools";

/// The MCP server: one tool.
#[derive(Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// Who the caller is, from the verified access token the layer put in the request.
    #[tool(description = "Tells who you are: the subject, client and scopes of your access token")]
    async fn whoami(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(token) = parts.extensions.get::<VerifiedToken>() else {
            // The layer runs before every request; without it, refuse rather than guess.
            return Err(ErrorData::internal_error("no verified token", None));
        };
        let scopes: Vec<&str> = token.scopes().iter().collect();
        let text = format!(
            "You are {} (client {}), with the scopes {}.",
            token.subject().unwrap_or("nobody"),
            token.client_id().unwrap_or("unknown"),
            scopes.join(" ")
        );
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {}

/// Approves every authorization request as `mcp-user`: the example's stand-in for a login and
/// consent page.
struct AutoApprove;

impl ConsentHandler for AutoApprove {
    fn decide<'a>(
        &'a self,
        _authorization: &'a AuthorizationRequest,
        _request: &'a Parts,
    ) -> HookFuture<'a, ConsentDecision> {
        Box::pin(async {
            ConsentDecision::Approve {
                subject: "mcp-user".into(),
                scopes: None,
            }
        })
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_oauth2=info".into()),
        )
        .init();
    if let Err(error) = run().await {
        eprintln!("mcp_server: {error}");
        std::process::exit(2);
    }
}

/// Client ID Metadata Documents, with the test-only options from the environment.
fn client_metadata() -> Result<ClientIdMetadata, Box<dyn std::error::Error>> {
    let mut config = ClientIdMetadata::new().scopes([SCOPE]);
    if let Ok(path) = std::env::var("MCP_CLIENT_METADATA_CA") {
        let pem =
            std::fs::read(&path).map_err(|e| format!("MCP_CLIENT_METADATA_CA {path}: {e}"))?;
        config = config.root_certificate_pem(pem);
    }
    if std::env::var("MCP_DANGEROUS_PRIVATE_CLIENT_METADATA").is_ok_and(|v| v == "1") {
        config = config.dangerous_allow_private_addresses();
    }
    Ok(config)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:8931".into())
        .parse()
        .map_err(|e| format!("BIND: {e}"))?;
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let resource = format!("{base}/mcp");

    let server = AuthorizationServer::builder()
        .issuer(base.clone())
        .store(MemoryStore::new())
        .consent_handler(AutoApprove)
        .resource_server(ResourceServer::new(resource.clone()).scopes([SCOPE]))
        .dynamic_registration(DynamicRegistration::new().scopes([SCOPE]))
        .client_id_metadata_documents(client_metadata()?)
        .build()
        .await?;
    if let Ok(secret) = std::env::var("MCP_SERVICE_CLIENT_SECRET") {
        let mut service = ClientRegistration::new("MCP service client");
        service.client_id = Some("mcp-service".into());
        service.grant_types = Some(vec!["client_credentials".into()]);
        service.scopes = vec![SCOPE.into()];
        service.secret = Some(
            ClientSecret::from_value(secret)
                .map_err(|e| format!("MCP_SERVICE_CLIENT_SECRET: {e}"))?,
        );
        server.register_client(service).await?;
    }
    // Only this server's tokens for this resource (RFC 8707), and its RFC 9728 metadata.
    let auth = server.resource_authenticator(
        ProtectedResource::new(resource.clone())
            .scopes_supported([SCOPE])
            .resource_name("tower-oauth2 MCP example"),
    )?;

    let host = listener.local_addr()?.to_string();
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts.push(host);
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(RequireScope::all([SCOPE]))
        .route_layer(auth.layer())
        .merge(auth.resource_metadata_router())
        .nest("/oauth2", server.router())
        .merge(server.metadata_router());

    println!("MCP server: {resource}");
    println!(
        "authorization server: {base} (metadata at {base}/.well-known/oauth-authorization-server)"
    );
    println!(
        "protected-resource metadata: {}",
        auth.resource_metadata_url().unwrap_or_default()
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
