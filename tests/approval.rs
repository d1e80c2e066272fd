//! Approval of registrations by approver groups, over real HTTP: the admin API sits behind the
//! server's own authenticator (scope `admin`), approvers are the subjects of their tokens, and
//! the policy is "security: alice AND bob" plus "owners: anyone the directory names". Decisions
//! are recorded with comments, outsiders get 403, deciding twice is a no-op, one rejection
//! rejects, a pending client gets no token, and the notifier hears of every step.
#![cfg(feature = "server")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use serde_json::{Value, json};
use tower_oauth2::RequireScope;
use tower_oauth2::server::store::MemoryStore;
use tower_oauth2::server::{
    ApprovalPolicy, ApprovalRule, ApproverDirectory, ApproverGroup, ApproverGroups,
    AuthorizationServer, ClientRegistration, ClientSecret, HookFuture, Notification,
    NotificationKind, Notifier,
};

fn secret_of(id: &str) -> String {
    format!("{id}-secret-0123456789abcdefghijklmnopqrstuvwxyz")
}

/// Olga is an owner.
struct Directory;

impl ApproverDirectory for Directory {
    fn groups_of<'a>(&'a self, subject: &'a str) -> HookFuture<'a, Vec<String>> {
        let groups = if subject == "olga" {
            vec!["owners".to_owned()]
        } else {
            Vec::new()
        };
        Box::pin(async move { groups })
    }
}

/// Keeps what it is asked to deliver.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Notification>>>);

impl Notifier for Recorder {
    fn notify<'a>(&'a self, n: &'a Notification) -> HookFuture<'a, Result<(), String>> {
        self.0.lock().expect("lock").push(n.clone());
        Box::pin(async { Ok(()) })
    }
}

impl Recorder {
    async fn wait_for(&self, count: usize) -> Vec<Notification> {
        for _ in 0..200 {
            let seen = self.0.lock().expect("lock").clone();
            if seen.len() >= count {
                return seen;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.0.lock().expect("lock").clone()
    }
}

struct Fixture {
    addr: SocketAddr,
    server: AuthorizationServer,
    http: reqwest::Client,
    notes: Recorder,
}

async fn fixture() -> Fixture {
    let groups = ApproverGroups::new([
        ApproverGroup::new("security", ApprovalRule::All)
            .members(["alice", "bob"])
            .notify(["security@example.com"]),
        ApproverGroup::new("owners", ApprovalRule::Any).notify(["owners@example.com"]),
    ])
    .expect("valid groups");
    let notes = Recorder::default();
    let server = AuthorizationServer::builder()
        .issuer("http://127.0.0.1")
        .store(MemoryStore::new())
        .approval_policy(ApprovalPolicy::Groups(groups))
        .approver_directory(Directory)
        .notifier(notes.clone())
        .build()
        .await
        .expect("server");
    // The administrators are clients registered (approved) by the app itself.
    for who in ["alice", "bob", "olga", "mallory"] {
        let mut registration = ClientRegistration::new(who);
        registration.client_id = Some(who.into());
        registration.scopes = vec!["admin".into()];
        registration.secret = Some(ClientSecret::from_value(secret_of(who)).expect("secret"));
        let (record, _) = server
            .register_client(registration)
            .await
            .expect("registered");
        // Registered under the groups policy, they start pending: the app approves its own
        // administrators directly in the store.
        let mut approved = record;
        approved.status = tower_oauth2::server::store::ClientStatus::Approved;
        server
            .store()
            .update_client(approved)
            .await
            .expect("approve");
    }
    let admin = server
        .admin_router()
        .layer(RequireScope::all(["admin"]))
        .layer(server.authenticator().layer());
    let app = Router::new()
        .nest("/oauth2", server.router())
        .nest("/admin", admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture {
        addr,
        server,
        http: reqwest::Client::new(),
        notes,
    }
}

impl Fixture {
    async fn token(&self, id: &str, secret: &str, scope: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("http://{}/oauth2/token", self.addr))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&scope={scope}"))
            .send()
            .await
            .expect("token endpoint");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).expect("JSON"))
    }

    /// An admin request as `who`, with an optional JSON body.
    async fn admin(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, token) = self.token(who, &secret_of(who), "admin").await;
        assert_eq!(status, 200, "{who} gets an admin token: {token}");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("http://{}/admin{path}", self.addr))
            .bearer_auth(token["access_token"].as_str().expect("token"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("admin API");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn register(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .admin(
                "alice",
                "POST",
                "/clients",
                Some(json!({"name": name, "contacts": ["dev@app.example"], "scopes": ["read"]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "pending");
        assert_eq!(body["contacts"], json!(["dev@app.example"]));
        (
            body["client_id"].as_str().expect("id").to_owned(),
            body["client_secret"].as_str().expect("secret").to_owned(),
        )
    }
}

fn approvers(body: &Value) -> Vec<(String, String)> {
    body["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            (
                d["approver"].as_str().expect("approver").to_owned(),
                d["decision"].as_str().expect("decision").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_group_must_be_satisfied_and_outsiders_are_refused() {
    let f = fixture().await;
    let (id, secret) = f.register("Payroll app").await;
    // Pending: no credentials yet.
    let (status, body) = f.token(&id, &secret, "read").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // Mallory administers, but is in no approver group.
    let approve = format!("/clients/{id}/approve");
    let (status, body) = f.admin("mallory", "POST", &approve, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "not_an_approver");
    let why = body["error_description"].as_str().expect("description");
    assert!(
        why.contains("mallory") && why.contains("security") && why.contains("owners"),
        "{why}"
    );

    let (status, body) = f
        .admin(
            "alice",
            "POST",
            &approve,
            Some(json!({"comment": "scopes look right"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["status"], "pending",
        "bob and an owner have not approved"
    );
    assert_eq!(body["decisions"][0]["comment"], "scopes look right");
    assert_eq!(body["decisions"][0]["groups"], json!(["security"]));
    // Approving twice is a no-op; changing her mind is a conflict.
    let (status, body) = f.admin("alice", "POST", &approve, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(approvers(&body).len(), 1);
    let (status, body) = f
        .admin("alice", "POST", &format!("/clients/{id}/reject"), None)
        .await;
    assert_eq!(status, 409, "{body}");

    // An owner before bob: the order does not matter.
    let (status, body) = f.admin("olga", "POST", &approve, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));
    let (status, token) = f.token(&id, &secret, "read").await;
    assert_eq!(status, 401, "still pending: {token}");
    let (status, body) = f.admin("bob", "POST", &approve, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(
        approvers(&body),
        [
            ("alice", "approve"),
            ("olga", "approve"),
            ("bob", "approve")
        ]
        .map(|(a, d)| (a.to_owned(), d.to_owned()))
    );
    // Now the client gets its credentials' worth.
    let (status, token) = f.token(&id, &secret, "read").await;
    assert_eq!(status, 200, "{token}");

    // The decisions are listed, and settled clients take no more.
    let (status, listed) = f
        .admin("mallory", "GET", &format!("/clients/{id}/decisions"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(approvers(&listed).len(), 3);
    let (status, _) = f
        .admin("olga", "POST", &format!("/clients/{id}/reject"), None)
        .await;
    assert_eq!(status, 409, "olga already approved");

    // Notifications: submitted to every approver address, approved to the contacts.
    let notes = f.notes.wait_for(2).await;
    let for_client: Vec<&Notification> = notes.iter().filter(|n| n.client_id == id).collect();
    assert_eq!(for_client.len(), 2, "{notes:?}");
    assert_eq!(for_client[0].kind, NotificationKind::Submitted);
    assert_eq!(
        for_client[0].recipients,
        ["owners@example.com", "security@example.com"]
    );
    assert_eq!(for_client[0].client_name, "Payroll app");
    assert_eq!(for_client[1].kind, NotificationKind::Approved);
    assert_eq!(for_client[1].recipients, ["dev@app.example"]);
    assert_eq!(for_client[1].decided_by.as_deref(), Some("bob"));

    // The audit log has every decision, with the approver.
    f.server.flush_audit().await;
    let (status, audit) = f
        .admin(
            "mallory",
            "GET",
            &format!("/audit?kind=approval_decision&client_id={id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let events = audit["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "{audit}");
    assert_eq!(events[0]["actor"], "bob");
    assert_eq!(events[0]["detail"]["settled"], "approved");
    assert_eq!(events[2]["detail"]["comment"], "scopes look right");
}

#[tokio::test]
async fn one_rejection_rejects_for_good() {
    let f = fixture().await;
    let (id, secret) = f.register("Shadow IT").await;
    let (status, _) = f
        .admin("alice", "POST", &format!("/clients/{id}/approve"), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = f
        .admin(
            "olga",
            "POST",
            &format!("/clients/{id}/reject"),
            Some(json!({"comment": "we already have one"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "rejected");
    // Bob's approval cannot bring it back.
    let (status, body) = f
        .admin("bob", "POST", &format!("/clients/{id}/approve"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = f.token(&id, &secret, "read").await;
    assert_eq!(status, 401);
    let notes = f.notes.wait_for(2).await;
    let rejected = notes
        .iter()
        .find(|n| n.client_id == id && n.kind == NotificationKind::Rejected)
        .expect("a rejection notice");
    assert_eq!(rejected.recipients, ["dev@app.example"]);
    assert_eq!(rejected.comment.as_deref(), Some("we already have one"));
}

#[tokio::test]
async fn bad_decision_bodies_are_400_and_change_nothing() {
    let f = fixture().await;
    let (id, _) = f.register("Careful app").await;
    let path = format!("/clients/{id}/approve");
    for body in [
        json!({"comment": 42}),
        json!({"comment": "ok", "extra": true}),
        json!({"comment": "x".repeat(1001)}),
        json!(["comment"]),
    ] {
        let (status, answer) = f.admin("alice", "POST", &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, listed) = f
        .admin("alice", "GET", &format!("/clients/{id}/decisions"), None)
        .await;
    assert_eq!(status, 200);
    assert!(approvers(&listed).is_empty(), "nothing recorded: {listed}");
    let (status, _) = f
        .admin("alice", "POST", "/clients/no-such-client/approve", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_contacts_are_refused() {
    let f = fixture().await;
    for contacts in [
        json!(["not-an-address"]),
        json!(["a@b\r\nBcc: x@y"]),
        json!([1]),
    ] {
        let (status, body) = f
            .admin(
                "alice",
                "POST",
                "/clients",
                Some(json!({"name": "x", "contacts": contacts})),
            )
            .await;
        assert!(
            status == 422 || status == 400,
            "{contacts}: {status} {body}"
        );
    }
}

#[tokio::test]
async fn a_registration_must_be_an_object() {
    let f = fixture().await;
    let (status, body) = f
        .admin("alice", "POST", "/clients", Some(json!(["Positional app"])))
        .await;
    assert_eq!(status, 400, "{body}");
}

/// An approved client with scopes `read write` and the client-credentials grant.
async fn approved_client(f: &Fixture, id: &str) -> String {
    let mut registration = ClientRegistration::new(format!("{id} app"));
    registration.client_id = Some(id.into());
    registration.scopes = vec!["read".into(), "write".into()];
    registration.secret = Some(ClientSecret::from_value(secret_of(id)).expect("secret"));
    let (mut record, _) = f
        .server
        .register_client(registration)
        .await
        .expect("registered");
    record.status = tower_oauth2::server::store::ClientStatus::Approved;
    f.server
        .store()
        .update_client(record)
        .await
        .expect("approve");
    secret_of(id)
}

#[tokio::test]
async fn narrowing_a_client_revokes_what_no_longer_fits_after_confirmation() {
    let f = fixture().await;
    let secret = approved_client(&f, "narrow").await;
    let mut tokens = Vec::new();
    for scope in ["read", "write", "read%20write"] {
        let (status, body) = f.token("narrow", &secret, scope).await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["access_token"].as_str().expect("token").to_owned());
    }
    let valid = |token: &str| f.server.authenticator().verify(token).is_ok();

    // Without confirmation: 409 with the count, and nothing changes.
    let (status, body) = f
        .admin(
            "alice",
            "PATCH",
            "/clients/narrow",
            Some(json!({"scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "confirmation_required");
    assert_eq!(body["tokens_to_revoke"], 2);
    let (_, shown) = f.admin("alice", "GET", "/clients/narrow", None).await;
    assert_eq!(shown["scopes"], json!(["read", "write"]));
    assert!(tokens.iter().all(|t| valid(t)), "nothing revoked yet");

    // Confirmed: the two tokens with `write` are revoked, the `read` one lives.
    let (status, body) = f
        .admin(
            "alice",
            "PATCH",
            "/clients/narrow",
            Some(json!({"scopes": ["read"], "confirm": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_tokens"], 2);
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(
        body["default_scopes"],
        json!(["read"]),
        "defaults that remain allowed"
    );
    assert!(valid(&tokens[0]));
    assert!(
        !valid(&tokens[1]) && !valid(&tokens[2]),
        "the write tokens are refused"
    );
    let (status, _) = f.token("narrow", &secret, "write").await;
    assert_eq!(status, 400, "write is no longer granted");

    // A change that narrows nothing needs no confirmation.
    let (status, body) = f
        .admin(
            "alice",
            "PATCH",
            "/clients/narrow",
            Some(json!({"name": "Renamed", "contacts": ["ops@narrow.example"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_tokens"], 0);
    assert_eq!(body["name"], "Renamed");
    assert!(valid(&tokens[0]));

    // Bad changes: 400 or 422 naming the field, nothing changed.
    for (change, expected) in [
        (json!({"colour": "blue"}), 400),
        (json!(["scopes"]), 400),
        (json!({"access_token_lifetime": "5 parsecs"}), 422),
        (json!({"default_scopes": ["admin"]}), 422),
        (json!({"contacts": ["nope"]}), 422),
    ] {
        let (status, body) = f
            .admin("alice", "PATCH", "/clients/narrow", Some(change.clone()))
            .await;
        assert_eq!(status, expected, "{change}: {body}");
    }
    let (_, shown) = f.admin("alice", "GET", "/clients/narrow", None).await;
    assert_eq!(shown["name"], "Renamed");
    let (status, _) = f
        .admin(
            "alice",
            "PATCH",
            "/clients/nobody",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 404);
}
