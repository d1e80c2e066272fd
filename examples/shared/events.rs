//! The events API both examples serve (included with `#[path = "shared/events.rs"] mod events;`).
//!
//! ```text
//! GET  /public       open to everyone
//! GET  /me           any valid token; answers sub, client_id and scopes
//! GET  /events/{id}  scope events:read
//! POST /events       scope events:write
//! GET  /openapi.json the OpenAPI document, with each route's security (feature `utoipa`)
//! ```
//!
//! The scopes are defined once ([`read_scope`], [`write_scope`]): the router enforces them and
//! the OpenAPI document lists them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_oauth2::{Authenticator, Claims, RequireScope, StandardClaims, VerifiedToken};

#[derive(Clone, Serialize)]
struct Event {
    id: u64,
    title: String,
    created_by: Option<String>,
}

#[derive(Deserialize)]
struct NewEvent {
    title: String,
}

#[derive(Default)]
struct Events {
    next_id: u64,
    by_id: BTreeMap<u64, Event>,
}

type Db = Arc<Mutex<Events>>;

/// Reads what the layer already parsed: `VerifiedToken`'s accessors cost nothing more, where
/// `Claims<T>` deserializes the claims JSON again into `T` (worth it for your own claim types,
/// as `create_event` shows).
async fn me(token: VerifiedToken) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scopes": token.scopes(),
    }))
}

async fn get_event(State(db): State<Db>, Path(id): Path<u64>) -> Result<Json<Event>, StatusCode> {
    let events = db.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    events
        .by_id
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

async fn create_event(
    State(db): State<Db>,
    Claims(claims): Claims<StandardClaims>,
    Json(new): Json<NewEvent>,
) -> Result<(StatusCode, Json<Event>), StatusCode> {
    let mut events = db.lock().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    events.next_id += 1;
    let event = Event {
        id: events.next_id,
        title: new.title,
        created_by: claims.sub,
    };
    events.by_id.insert(event.id, event.clone());
    Ok((StatusCode::CREATED, Json(event)))
}

/// What `GET /events/{id}` requires.
pub(crate) fn read_scope() -> RequireScope {
    RequireScope::all(["events:read"])
}

/// What `POST /events` requires.
pub(crate) fn write_scope() -> RequireScope {
    RequireScope::all(["events:write"])
}

/// The events API behind `auth`; `/public` stays open.
pub(crate) fn router(auth: &Authenticator) -> Router {
    let db = Db::default();
    Router::new()
        .route("/me", get(me))
        .route("/events/{id}", get(get_event).route_layer(read_scope()))
        .route("/events", post(create_event).route_layer(write_scope()))
        .layer(auth.layer())
        .route("/public", get(|| async { "anyone can read this\n" }))
        .with_state(db)
}

/// `GET /openapi.json`: the events API's OpenAPI document, with `security`'s scheme on every
/// route the layer protects and the scopes of [`read_scope`] and [`write_scope`].
#[cfg(feature = "utoipa")]
pub(crate) fn openapi_router(
    security: tower_oauth2::openapi::ApiSecurity,
) -> Result<Router, String> {
    let document = openapi(security)?;
    let json = document.to_pretty_json().map_err(|e| e.to_string())?;
    Ok(Router::new().route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
            }
        }),
    ))
}

/// Without the feature: `/openapi.json` says how to get it.
#[cfg(not(feature = "utoipa"))]
pub(crate) fn openapi_router<S>(_security: S) -> Result<Router, String> {
    Ok(Router::new().route(
        "/openapi.json",
        get(|| async {
            (
                StatusCode::NOT_FOUND,
                "the OpenAPI document needs a build with --features utoipa\n",
            )
        }),
    ))
}

/// The document: the operations, then what each one requires.
#[cfg(feature = "utoipa")]
pub(crate) fn openapi(
    security: tower_oauth2::openapi::ApiSecurity,
) -> Result<utoipa::openapi::OpenApi, String> {
    use axum::http::Method;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::{
        ContentBuilder, InfoBuilder, ObjectBuilder, OpenApiBuilder, PathItem, PathsBuilder,
        Required, ResponseBuilder, Type,
    };

    let json = |schema: ObjectBuilder| ContentBuilder::new().schema(Some(schema)).build();
    let event = || {
        ObjectBuilder::new()
            .property("id", ObjectBuilder::new().schema_type(Type::Integer))
            .property("title", ObjectBuilder::new().schema_type(Type::String))
            .property("created_by", ObjectBuilder::new().schema_type(Type::String))
            .required("id")
            .required("title")
    };
    let response = |description: &str| ResponseBuilder::new().description(description);
    // Every protected operation may be refused (RFC 6750).
    let refusals = |operation: OperationBuilder| {
        operation
            .response("401", response("no token, or one that is not valid"))
            .response("403", response("the token lacks a required scope"))
    };
    let me = refusals(
        OperationBuilder::new()
            .operation_id(Some("me"))
            .summary(Some("Who the token is about"))
            .response("200", response("subject, client and scopes")),
    );
    let get_event = refusals(
        OperationBuilder::new()
            .operation_id(Some("get_event"))
            .summary(Some("One event"))
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer))),
            )
            .response(
                "200",
                response("the event").content("application/json", json(event())),
            )
            .response("404", response("no such event")),
    );
    let create_event = refusals(
        OperationBuilder::new()
            .operation_id(Some("create_event"))
            .summary(Some("Create an event"))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        json(
                            ObjectBuilder::new()
                                .property("title", ObjectBuilder::new().schema_type(Type::String))
                                .required("title"),
                        ),
                    )
                    .required(Some(Required::True))
                    .build(),
            ))
            .response(
                "201",
                response("the event created").content("application/json", json(event())),
            ),
    );
    let public = OperationBuilder::new()
        .operation_id(Some("public"))
        .summary(Some("Open to everyone"))
        .response("200", response("a greeting"));
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("events API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("The tower-oauth2 examples' events API")),
        )
        .paths(
            PathsBuilder::new()
                .path("/public", PathItem::new(HttpMethod::Get, public))
                .path("/me", PathItem::new(HttpMethod::Get, me))
                .path("/events/{id}", PathItem::new(HttpMethod::Get, get_event))
                .path("/events", PathItem::new(HttpMethod::Post, create_event)),
        )
        .build();
    security
        .authenticated(Method::GET, "/me")
        .scoped(Method::GET, "/events/{id}", &read_scope())
        .scoped(Method::POST, "/events", &write_scope())
        .apply(&mut document)
        .map_err(|e| e.to_string())?;
    Ok(document)
}
