//! `tower_oauth2::grpc` (feature `tonic`) behind the real layer: a handler's view of the call
//! as tonic gives it (`tonic::Request::from_http`), refusals as the `tonic::Status` the layer
//! would send, with the challenge in the metadata.
#![cfg(all(feature = "tonic", feature = "axum"))]
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::convert::Infallible;

use axum::body::Body;
use common::token;
use http::{Request, Response};
use tower::{Layer, ServiceExt};
use tower_oauth2::RequireScope;
use tower_oauth2::grpc::{require_scope, verified_token};

/// What the handler did: the subject, or the status it refused with.
async fn call(
    token: Option<&str>,
    optional: bool,
    scope: Option<&str>,
) -> Result<String, tonic::Status> {
    let auth = common::authenticator();
    let layer = if optional {
        auth.layer().optional()
    } else {
        auth.layer()
    };
    let scope = scope.map(|s| RequireScope::all([s]));
    let (sender, receiver) = std::sync::mpsc::channel();
    let handler = tower::service_fn(move |request: Request<Body>| {
        let request = tonic::Request::from_http(request);
        let outcome = match &scope {
            Some(scope) => require_scope(&request, scope),
            None => verified_token(&request),
        }
        .map(|t| t.subject().unwrap_or_default().to_owned());
        sender.send(outcome).unwrap();
        async { Ok::<_, Infallible>(Response::new(Body::empty())) }
    });
    let mut request =
        Request::post("/events.Events/Get").header("content-type", "application/grpc");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    layer
        .layer(handler)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    receiver.recv().unwrap()
}

#[tokio::test]
async fn a_handler_gets_the_layers_token() {
    let subject = call(Some(&token("events:read")), false, None)
        .await
        .unwrap();
    assert_eq!(subject, "user-42");
}

#[tokio::test]
async fn a_method_scope_is_refused_like_the_layer_refuses() {
    let granted = call(
        Some(&token("events:read events:watch")),
        false,
        Some("events:watch"),
    )
    .await;
    assert_eq!(granted.unwrap(), "user-42");
    let status = call(Some(&token("events:read")), false, Some("events:watch"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "requires scope events:watch");
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"events:watch\""), "{challenge}");
    assert!(status.metadata().get("content-type").is_none());
}

#[tokio::test]
async fn an_anonymous_call_in_optional_mode_is_unauthenticated() {
    let status = call(None, true, None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "a bearer token is required");
    let status = call(None, true, Some("events:read")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}
