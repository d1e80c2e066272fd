//! `GET /metrics`: the crate's metrics (feature `metrics`, see `tower_oauth2::telemetry`) in the
//! Prometheus text format, rendered by `metrics-exporter-prometheus`. Without the feature the
//! route answers 404 with a note saying how to build with it.
//!
//! The route is not behind the authentication layer, as a scraper has no token: in production,
//! serve it on an address only the scraper reaches.

use axum::Router;
use axum::routing::get;

/// Installs the process's recorder (call it first thing in `main`, before any authenticator is
/// built or any request is served, so every count lands in it) and returns the `/metrics`
/// route.
#[cfg(feature = "metrics")]
pub(crate) fn install() -> Result<Router, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    Ok(Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                // Histograms are summarised on scrape.
                handle.run_upkeep();
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    ))
}

/// Without the feature: `/metrics` says how to get them.
#[cfg(not(feature = "metrics"))]
pub(crate) fn install() -> Result<Router, String> {
    Ok(Router::new().route(
        "/metrics",
        get(|| async {
            (
                http::StatusCode::NOT_FOUND,
                "metrics need a build with --features metrics\n",
            )
        }),
    ))
}
