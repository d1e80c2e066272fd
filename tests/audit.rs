//! Audit events. Alone in its own test binary: tracing caches per-callsite interest globally,
//! so a scoped subscriber only sees every event when no other test runs beside it.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

/// A `MakeWriter` that collects formatted events.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_audit_event_per_request_without_the_token() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter("tower_oauth2::audit=info")
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = app(&authenticator());
    let good = token("events:read");
    get_with(&app, "/me", &good).await;
    let bad = format!("{good}x");
    get_with(&app, "/me", &bad).await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("outcome=\"accepted\"") && lines[0].contains("sub=\"user-42\""),
        "{log}"
    );
    assert!(
        lines[0].contains("client_id=\"client-7\"") && lines[0].contains("kid=\"ec-1\""),
        "{log}"
    );
    assert!(lines[0].contains(&format!("iss=\"{ISSUER}\"")), "{log}");
    assert!(
        lines[1].contains("outcome=\"rejected\"") && lines[1].contains("reason="),
        "{log}"
    );
    assert!(!log.contains(&good[..20]), "a token reached the log: {log}");
}
