//! `SmtpNotifier` against a real SMTP server on loopback (PyPI `aiosmtpd`, started by this
//! test from tests/support/smtp_sink.py): the messages for a submitted, an approved and a
//! rejected registration arrive with the right recipients, subject and text; and with the SMTP
//! server down, decisions are answered and kept, and each notification is tried a bounded
//! number of times. Prints `skipped` when python3 or aiosmtpd is missing (`.ci/run` installs
//! aiosmtpd).
#![cfg(feature = "smtp")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::Value;
use tower_oauth2::server::store::{ClientStatus, MemoryStore};
use tower_oauth2::server::{
    ApprovalPolicy, ApprovalRule, ApproverGroup, ApproverGroups, AuthorizationServer,
    ClientRegistration, NotificationKind, SmtpNotifier,
};

/// The aiosmtpd sink: its port and the messages it prints.
struct Sink {
    child: Child,
    port: u16,
    messages: mpsc::Receiver<Value>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sink() -> Option<Sink> {
    let available = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        println!("skipped: python3 with aiosmtpd is not installed (pip install aiosmtpd)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the SMTP sink");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let ready = received
        .recv_timeout(Duration::from_secs(30))
        .expect("the sink says it is ready");
    let port = ready
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {ready:?}"));
    let (messages_tx, messages) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(line) = received.recv() {
            let message = serde_json::from_str(&line).expect("a JSON line");
            if messages_tx.send(message).is_err() {
                return;
            }
        }
    });
    Some(Sink {
        child,
        port,
        messages,
    })
}

fn groups() -> ApproverGroups {
    ApproverGroups::new([ApproverGroup::new("security", ApprovalRule::Any)
        .members(["alice"])
        .notify(["security@example.com", "ciso@example.com"])])
    .expect("groups")
}

async fn server(notifier: SmtpNotifier) -> AuthorizationServer {
    AuthorizationServer::builder()
        .issuer("http://127.0.0.1")
        .store(MemoryStore::new())
        .approval_policy(ApprovalPolicy::Groups(groups()))
        .notifier(notifier)
        .build()
        .await
        .expect("server")
}

fn registration(name: &str, contact: &str) -> ClientRegistration {
    let mut registration = ClientRegistration::new(name);
    registration.contacts = vec![contact.to_owned()];
    registration
}

/// Decides through the admin router in process, as `approver` (a `VerifiedToken` in the
/// request, as the app's authentication layer would put it).
async fn decide(
    server: &AuthorizationServer,
    client_id: &str,
    what: &str,
    comment: &str,
) -> (u16, Value) {
    use tower::ServiceExt;
    let token = server
        .authenticator()
        .verify(&admin_token(server, "alice").await)
        .expect("valid");
    let mut request = http::Request::post(format!("/clients/{client_id}/{what}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({"comment": comment}).to_string(),
        ))
        .expect("request");
    request.extensions_mut().insert(token);
    let response = server
        .admin_router()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

/// An access token whose subject is `subject` (client credentials of a client of that id).
async fn admin_token(server: &AuthorizationServer, subject: &str) -> String {
    use tower::ServiceExt;
    if server
        .store()
        .client(subject)
        .await
        .expect("read")
        .is_none()
    {
        let mut registration = ClientRegistration::new(subject);
        registration.client_id = Some(subject.into());
        registration.secret = Some(
            tower_oauth2::server::ClientSecret::from_value(format!(
                "{subject}-secret-0123456789abcdefghijklmnopqrstuvwxyz"
            ))
            .expect("secret"),
        );
        let (mut record, _) = server
            .register_client(registration)
            .await
            .expect("registered");
        record.status = ClientStatus::Approved;
        server.store().update_client(record).await.expect("approve");
    }
    let request = http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(format!(
            "grant_type=client_credentials&client_id={subject}&client_secret={subject}-secret-0123456789abcdefghijklmnopqrstuvwxyz"
        )))
        .expect("request");
    let response = server.router().oneshot(request).await.expect("infallible");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    body["access_token"].as_str().expect("a token").to_owned()
}

fn next_message(sink: &Sink) -> Value {
    sink.messages
        .recv_timeout(Duration::from_secs(20))
        .expect("a message arrives")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_approved_and_rejected_messages_arrive() {
    let Some(sink) = start_sink() else { return };
    let notifier = SmtpNotifier::builder("127.0.0.1", "OAuth server <oauth@example.com>")
        .port(sink.port)
        .plain_on_loopback()
        .template(
            NotificationKind::Rejected,
            "Sorry, {client_name}",
            "Rejected by {decided_by} because: {comment} {{literal}}\n",
        )
        .build()
        .expect("notifier");
    let server = server(notifier).await;
    // The approver's own client (registered, hence submitted, then approved in the store).
    admin_token(&server, "alice").await;
    let alice = next_message(&sink);
    assert!(
        alice["subject"]
            .as_str()
            .is_some_and(|s| s.ends_with(": alice"))
    );

    let (payroll, _) = server
        .register_client(registration("Payroll <script>", "dev@payroll.example"))
        .await
        .expect("registered");
    assert_eq!(payroll.status, ClientStatus::Pending);
    let submitted = next_message(&sink);
    assert_eq!(submitted["from"], "oauth@example.com");
    let mut to: Vec<&str> = submitted["to"]
        .as_array()
        .expect("to")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["ciso@example.com", "security@example.com"]);
    assert_eq!(
        submitted["subject"],
        "OAuth client registration waiting for your approval: Payroll <script>"
    );
    let body = submitted["body"].as_str().expect("body");
    assert!(body.contains(&payroll.client_id) && body.contains("waits for your decision"));

    let (status, answer) = decide(&server, &payroll.client_id, "approve", "fine by me").await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("approved")));
    let approved = next_message(&sink);
    assert_eq!(approved["to"], serde_json::json!(["dev@payroll.example"]));
    assert_eq!(
        approved["subject"],
        "Your OAuth client Payroll <script> is approved"
    );
    let body = approved["body"].as_str().expect("body");
    assert!(body.contains("Approved by: alice") && body.contains("Comment:     fine by me"));

    let (shadow, _) = server
        .register_client(registration("Shadow", "owner@shadow.example"))
        .await
        .expect("registered");
    let _ = next_message(&sink); // its submission
    let (status, _) = decide(&server, &shadow.client_id, "reject", "duplicate of Payroll").await;
    assert_eq!(status, 200);
    let rejected = next_message(&sink);
    assert_eq!(rejected["to"], serde_json::json!(["owner@shadow.example"]));
    assert_eq!(rejected["subject"], "Sorry, Shadow");
    assert_eq!(
        rejected["body"].as_str().map(str::trim_end),
        Some("Rejected by alice because: duplicate of Payroll {literal}")
    );
    assert!(
        sink.messages
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "one message each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_loses_no_decision() {
    // A port that accepts connections and closes them at once: every attempt fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut stream) = stream {
                let _ = stream.write_all(b"421 down for maintenance\r\n");
            }
        }
    });
    let notifier = SmtpNotifier::builder("127.0.0.1", "oauth@example.com")
        .port(port)
        .plain_on_loopback()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("notifier");
    let server = server(notifier).await;
    admin_token(&server, "alice").await;
    let (client, _) = server
        .register_client(registration("Payroll", "dev@payroll.example"))
        .await
        .expect("registration answered while SMTP is down");
    let (status, answer) = decide(&server, &client.client_id, "approve", "ok").await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("approved")));
    let stored = server
        .store()
        .client(&client.client_id)
        .await
        .expect("read")
        .expect("client");
    assert_eq!(
        stored.status,
        ClientStatus::Approved,
        "the decision is kept"
    );
    assert_eq!(
        server
            .store()
            .decisions(&client.client_id)
            .await
            .map(|d| d.len()),
        Ok(1)
    );
    // Three notifications (alice's and Payroll's submissions, Payroll's approval), four
    // attempts each, then no more.
    for _ in 0..300 {
        if attempts.load(Ordering::SeqCst) >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 12, "bounded retries");
}
