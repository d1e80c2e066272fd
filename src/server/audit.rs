//! Audit events of the authorization server, under the `tracing` target `tower_oauth2::audit`
//! like the resource server's: every token issued or refused, every revocation, every admin
//! action, every failed client authentication. Never a token or secret value.
//!
//! Each event is also appended to the store's audit log ([`Store::append_audit`]) by
//! [`AuditLog`]: requests hand their events to a bounded queue and never wait for the write; a
//! writer task appends what has queued in one transaction, so under load many events share a
//! commit.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::http::OAuthError;
use super::store::{ApprovalDecision, AuditRecord, ClientStatus, Store, TokenRecord};
use crate::time;

/// What an audit event records: the `kind` of an [`AuditRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditKind {
    /// A token response: an access token (and perhaps a refresh token) issued.
    TokenIssued,
    /// A token request refused (the error code and description are in the detail).
    TokenRefused,
    /// A client failed to authenticate (bad credentials, not approved, rate limited).
    ClientAuthRefused,
    /// A token revoked (by its client, an administrator, or reuse detection).
    TokenRevoked,
    /// A rotated-out refresh token presented again: its family is revoked.
    RefreshTokenReuse,
    /// An authorization code presented again: what it issued is revoked.
    AuthorizationCodeReuse,
    /// An administrator registered, approved, rejected, disabled, deleted a client, rotated
    /// its secret or revoked a token.
    AdminAction,
    /// An approver approved or rejected a registration (with the groups they decided as,
    /// their comment, and the status it settled, if any).
    ApprovalDecision,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [AuditKind; 8] = [
        AuditKind::TokenIssued,
        AuditKind::TokenRefused,
        AuditKind::ClientAuthRefused,
        AuditKind::TokenRevoked,
        AuditKind::RefreshTokenReuse,
        AuditKind::AuthorizationCodeReuse,
        AuditKind::AdminAction,
        AuditKind::ApprovalDecision,
    ];

    /// Its stable name, as stored: `token_issued`, `token_refused`, `client_auth_refused`,
    /// `token_revoked`, `refresh_token_reuse`, `authorization_code_reuse`, `admin_action`,
    /// `approval_decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::TokenIssued => "token_issued",
            AuditKind::TokenRefused => "token_refused",
            AuditKind::ClientAuthRefused => "client_auth_refused",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::RefreshTokenReuse => "refresh_token_reuse",
            AuditKind::AuthorizationCodeReuse => "authorization_code_reuse",
            AuditKind::AdminAction => "admin_action",
            AuditKind::ApprovalDecision => "approval_decision",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Events waiting for the writer at most; beyond, new events are dropped, counted and logged.
const QUEUE: usize = 16 * 1024;

/// Events one append takes at most.
const BATCH: usize = 1024;

/// How often an append that failed is tried again before its events are given up.
const RETRIES: u32 = 3;

enum Message {
    Event(AuditRecord),
    /// Answered once every event queued before it has been appended (or given up).
    Flush(oneshot::Sender<()>),
}

/// The queue to the audit writer task.
pub(crate) struct AuditLog {
    queue: mpsc::Sender<Message>,
    /// Events dropped because the queue was full or the store kept failing.
    lost: Arc<AtomicU64>,
}

impl AuditLog {
    /// Starts the writer task, which ends when the log is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store, receiver, Arc::clone(&lost)));
        Self { queue, lost }
    }

    fn append(&self, kind: AuditKind, client_id: Option<&str>, actor: Option<&str>, detail: Value) {
        let event = AuditRecord {
            seq: 0,
            at: time::now(),
            kind: kind.as_str().to_owned(),
            client_id: client_id.map(str::to_owned),
            actor: actor.map(str::to_owned),
            detail,
        };
        if self.queue.try_send(Message::Event(event)).is_err() {
            let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
            if lost.is_power_of_two() {
                tracing::warn!(
                    target: "tower_oauth2::server",
                    lost,
                    "audit log queue full: events are dropped from the store's log (they are \
                     still in tracing)"
                );
            }
        }
    }

    /// Waits until every event recorded before the call is in the store (or given up).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// How many events never reached the store.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<Message>,
    lost: Arc<AtomicU64>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        let mut events = Vec::with_capacity(messages.len());
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !events.is_empty() {
            let count = events.len() as u64;
            let mut attempt = 0;
            loop {
                match store.append_audit(events.clone()).await {
                    Ok(()) => break,
                    Err(error) if attempt < RETRIES => {
                        attempt += 1;
                        tracing::warn!(target: "tower_oauth2::server", %error, attempt, "appending to the audit log failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200) * 4u32.pow(attempt)).await;
                    }
                    Err(error) => {
                        lost.fetch_add(count, Ordering::Relaxed);
                        tracing::error!(target: "tower_oauth2::server", %error, lost = count, "appending to the audit log failed; these events are only in tracing");
                        break;
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

pub(crate) fn token_issued(
    log: &AuditLog,
    grant: &str,
    access: &TokenRecord,
    refresh: Option<&TokenRecord>,
) {
    crate::telemetry::server_token_issued(crate::telemetry::grant_label(grant));
    log.append(
        AuditKind::TokenIssued,
        Some(&access.client_id),
        Some(&access.subject),
        json!({
            "grant": grant,
            "jti": access.id,
            "scope": access.scopes.join(" "),
            "exp": access.expires_at,
            "refresh_id": refresh.map(|r| r.id.as_str()),
            "family": access.family_id,
        }),
    );
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "token_issued",
        grant,
        client_id = %access.client_id,
        sub = %access.subject,
        jti = %access.id,
        scope = %access.scopes.join(" "),
        exp = access.expires_at,
        refresh_id = refresh.map(|r| r.id.as_str()),
        family = access.family_id.as_deref(),
        "access token issued"
    );
}

pub(crate) fn token_refused(
    log: &AuditLog,
    grant: Option<&str>,
    client_id: Option<&str>,
    error: &OAuthError,
) {
    // No grant: the request named none, or one this server does not support.
    let grant_label = grant.map_or("other", crate::telemetry::grant_label);
    crate::telemetry::server_token_refused(grant_label, error.code);
    log.append(
        AuditKind::TokenRefused,
        client_id,
        None,
        json!({"grant": grant, "error": error.code, "reason": error.description}),
    );
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "token_refused",
        grant,
        client_id,
        error = error.code,
        reason = %error.description,
        "token request refused"
    );
}

pub(crate) fn client_auth_refused(
    log: &AuditLog,
    client_id: &str,
    peer: Option<IpAddr>,
    reason: &'static str,
) {
    crate::telemetry::server_client_auth_failure(reason);
    log.append(
        AuditKind::ClientAuthRefused,
        Some(client_id),
        None,
        json!({"peer": peer.map(|p| p.to_string()), "reason": reason}),
    );
    tracing::warn!(
        target: "tower_oauth2::audit",
        outcome = "client_auth_refused",
        client_id,
        peer = peer.map(tracing::field::display),
        reason,
        "client authentication refused"
    );
}

pub(crate) fn refresh_reuse(log: &AuditLog, family: &str, client_id: &str, revoked: usize) {
    log.append(
        AuditKind::RefreshTokenReuse,
        Some(client_id),
        None,
        json!({"family": family, "revoked": revoked}),
    );
    tracing::warn!(
        target: "tower_oauth2::audit",
        outcome = "refresh_token_reuse",
        family,
        client_id,
        revoked,
        "a rotated refresh token was presented again; its family is revoked"
    );
}

/// A rotated-out refresh token retried within the grace window got its rotation's answer
/// again: recorded as that answer's issue, marked as a retry.
pub(crate) fn refresh_retry(log: &AuditLog, client_id: &str, family: Option<&str>) {
    log.append(
        AuditKind::TokenIssued,
        Some(client_id),
        None,
        json!({"grant_type": "refresh_token", "retry": true, "family": family}),
    );
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "refresh_retry",
        client_id,
        family,
        "a rotated refresh token was retried within the grace window; its answer is sent again"
    );
}

pub(crate) fn code_reuse(log: &AuditLog, client_id: &str, revoked: usize) {
    log.append(
        AuditKind::AuthorizationCodeReuse,
        Some(client_id),
        None,
        json!({"revoked": revoked}),
    );
    tracing::warn!(
        target: "tower_oauth2::audit",
        outcome = "authorization_code_reuse",
        client_id,
        revoked,
        "an authorization code was presented again; the tokens issued from it are revoked"
    );
}

pub(crate) fn revoked(log: &AuditLog, by: &str, cause: &str, tokens: &[TokenRecord]) {
    for token in tokens {
        crate::telemetry::server_revocation(token.kind.as_str());
        log.append(
            AuditKind::TokenRevoked,
            Some(&token.client_id),
            Some(by),
            json!({"cause": cause, "token_kind": token.kind.as_str(), "id": token.id}),
        );
        tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "token_revoked",
            by,
            cause,
            kind = token.kind.as_str(),
            id = %token.id,
            client_id = %token.client_id,
            "token revoked"
        );
    }
}

pub(crate) fn admin(
    log: &AuditLog,
    actor: Option<&str>,
    action: &str,
    client_id: &str,
    detail: Option<&str>,
) {
    log.append(
        AuditKind::AdminAction,
        Some(client_id),
        actor,
        json!({"action": action, "detail": detail}),
    );
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "admin",
        actor,
        action,
        client_id,
        detail,
        "admin action"
    );
}

pub(crate) fn approval_decision(
    log: &AuditLog,
    decision: &ApprovalDecision,
    settled: Option<ClientStatus>,
) {
    log.append(
        AuditKind::ApprovalDecision,
        Some(&decision.client_id),
        Some(&decision.approver),
        json!({
            "decision": decision.decision.as_str(),
            "groups": decision.groups,
            "comment": decision.comment,
            "settled": settled.map(ClientStatus::as_str),
        }),
    );
    tracing::info!(
        target: "tower_oauth2::audit",
        outcome = "approval_decision",
        client_id = %decision.client_id,
        approver = %decision.approver,
        decision = decision.decision.as_str(),
        groups = %decision.groups.join(" "),
        settled = settled.map(ClientStatus::as_str),
        "approval decision"
    );
}
