//! The events API both examples serve (included with `#[path = "shared/events.rs"] mod events;`).
//!
//! ```text
//! GET  /public       open to everyone
//! GET  /me           any valid token; answers sub, client_id and scopes
//! GET  /events/{id}  scope events:read
//! POST /events       scope events:write
//! ```

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

/// The events API behind `auth`; `/public` stays open.
pub(crate) fn router(auth: &Authenticator) -> Router {
    let db = Db::default();
    Router::new()
        .route("/me", get(me))
        .route(
            "/events/{id}",
            get(get_event).route_layer(RequireScope::all(["events:read"])),
        )
        .route(
            "/events",
            post(create_event).route_layer(RequireScope::all(["events:write"])),
        )
        .layer(auth.layer())
        .route("/public", get(|| async { "anyone can read this\n" }))
        .with_state(db)
}
