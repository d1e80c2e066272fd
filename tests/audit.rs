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
async fn audit_events_tell_each_decision_without_the_token() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter("tower_oauth2::audit=info")
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = app(&authenticator());
    let good = token("events:read");
    let bad_signature = {
        let mut t = good.clone();
        t.truncate(t.len() - 4);
        t.push_str("AAAA");
        t
    };
    let unknown_kid = {
        let (key, _) = signing_key(tower_oauth2::Algorithm::ES256);
        let header = r#"{"alg":"ES256","kid":"rotated-away"}"#;
        sign_raw(
            header,
            &claims("").to_string(),
            &key,
            tower_oauth2::Algorithm::ES256,
        )
    };
    get_with(&app, "/me", &good).await; // accepted
    get_with(&app, "/me", &bad_signature).await; // rejected by the layer
    get_with(&app, "/me", &unknown_kid).await; // rejected: which kid?
    get_with(&app, "/events/1", &token("profile")).await; // accepted, then 403

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    let has = |line: &str, fields: &[&str]| fields.iter().all(|f| line.contains(f));
    let iss = format!("iss=\"{ISSUER}\"");
    assert!(
        has(
            lines[0],
            &[
                "outcome=\"accepted\"",
                "sub=\"user-42\"",
                "client_id=\"client-7\"",
                "kid=\"ec-1\"",
                &iss
            ]
        ),
        "{log}"
    );
    assert!(
        has(
            lines[1],
            &[
                "outcome=\"rejected\"",
                "reason=\"signature does not verify\"",
                "status=401",
                "kid=\"ec-1\"",
                &iss
            ]
        ),
        "{log}"
    );
    assert!(
        has(
            lines[2],
            &[
                "outcome=\"rejected\"",
                "kid=\"rotated-away\"",
                "no key with this kid"
            ]
        ),
        "{log}"
    );
    assert!(has(lines[3], &["outcome=\"accepted\""]), "{log}");
    assert!(
        has(
            lines[4],
            &[
                "outcome=\"rejected\"",
                "status=403",
                "requires scope events:read",
                "sub=\"user-42\""
            ]
        ),
        "{log}"
    );
    for token in [&good, &bad_signature, &unknown_kid] {
        for part in token.split('.') {
            assert!(!log.contains(part), "a token part reached the log: {log}");
        }
    }
}
