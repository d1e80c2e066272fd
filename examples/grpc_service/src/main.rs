//! A tonic gRPC service behind tower-oauth2: the same layer that protects an HTTP API
//! protects the service's methods, and refuses calls the gRPC way (`grpc-status` 16
//! `UNAUTHENTICATED` without a valid token, 7 `PERMISSION_DENIED` without the scope).
//!
//! ```text
//! events.Events/Get    unary             scope events:read
//! events.Events/Watch  server streaming  scopes events:read and events:watch
//! ```
//!
//! Configuration comes from the environment, as for the `protected_service` example:
//!
//! | variable | meaning |
//! |---|---|
//! | `BIND` | address to listen on (default `127.0.0.1:50051`), HTTP/2 without TLS |
//! | `OAUTH2_ISSUER` | the `iss` tokens must carry (required) |
//! | `OAUTH2_AUDIENCE` | the `aud` tokens must contain (required) |
//! | `OAUTH2_JWKS_FILE` | a JWKS JSON file with the issuer's public keys (else discovered from the issuer) |
//!
//! `RequireScope` on the service's router demands `events:read` of every method; `Watch`
//! demands `events:watch` too, in the handler, with `tower_oauth2::grpc::require_scope`
//! (feature `tonic`), which refuses the way the layer does. Handlers get the
//! [`VerifiedToken`] with `tower_oauth2::grpc::verified_token`.

use std::pin::Pin;
use std::process::ExitCode;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tower_oauth2::grpc::{require_scope, verified_token};
use tower_oauth2::{Authenticator, RequireScope, VerifiedToken};

/// The code generated from `proto/events.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod events {
    tonic::include_proto!("events");
}

use events::events_server::{Events, EventsServer};
use events::{Event, GetRequest, WatchRequest};

/// The most events one `Watch` sends.
const MAX_WATCH: u32 = 100;

struct EventsService;

/// The subject of a token.
fn seen_by(token: &VerifiedToken) -> String {
    token.subject().unwrap_or_default().to_owned()
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<Event>, Status> {
        let seen_by = seen_by(verified_token(&request)?);
        let id = request.into_inner().id;
        Ok(Response::new(Event { id, seen_by }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // More than the router's `events:read`: refused like the layer would, if missing.
        let watcher = require_scope(&request, &RequireScope::all(["events:watch"]))?;
        let seen_by = seen_by(watcher);
        let WatchRequest { from_id, count } = request.into_inner();
        let events = (0..u64::from(count.min(MAX_WATCH))).map(move |i| {
            Ok(Event {
                id: from_id.saturating_add(i),
                seen_by: seen_by.clone(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }
}

fn required(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("{name} is not set")),
    }
}

async fn authenticator() -> Result<Authenticator, String> {
    let builder = Authenticator::builder()
        .issuer(required("OAUTH2_ISSUER")?)
        .audience(required("OAUTH2_AUDIENCE")?);
    let builder = match std::env::var("OAUTH2_JWKS_FILE") {
        Ok(file) if !file.trim().is_empty() => builder.jwks_file(file),
        _ => builder,
    };
    let auth = builder.build().map_err(|e| e.to_string())?;
    auth.refresh_keys()
        .await
        .map_err(|e| format!("cannot load the signing keys: {e}"))?;
    Ok(auth)
}

#[tokio::main]
async fn main() -> ExitCode {
    let auth = match authenticator().await {
        Ok(auth) => auth,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    // The service's routes as an axum router: the layer answers a refused call itself, the
    // gRPC way; `RequireScope` guards every method of the service.
    let app = tonic::service::Routes::new(EventsServer::new(EventsService))
        .into_axum_router()
        .route_layer(RequireScope::all(["events:read"]))
        .layer(auth.layer());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {bind}: {error}");
            return ExitCode::from(2);
        }
    };
    println!("gRPC events service on {bind} (HTTP/2 without TLS)");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
