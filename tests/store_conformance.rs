//! Conformance suite for the [`Store`] trait: one generic suite, run against every store this
//! build has — [`MemoryStore`] always, `SqliteStore` (feature `sqlite`) on a temporary file and
//! in memory, and `PostgresStore` (feature `postgres`) in a fresh schema of the database that
//! `TOWER_OAUTH2_TEST_POSTGRES_URL` names (skipped when it is unset).
//!
//! The suite runs its checks one after another on one store, so each check uses its own client
//! ids, token ids and families; the checks that see the whole store (revocation feeds, purging)
//! allow for what the others left behind. The races (code redemption, refresh rotation,
//! signing-key initialisation and rotation) run on a multi-threaded runtime with every
//! contender released at once by a barrier. The shared stores (an SQLite file, a PostgreSQL
//! schema) also run the races split over two instances on the same database, and the SQLite
//! file is reopened to check that everything was written to it.
//!
//! Cleanup: the SQLite files (with `-wal`, `-shm`) are removed and the PostgreSQL schema
//! (`conf_<pid>_<nanos>`) is dropped, whether the checks pass or fail; only a killed test run
//! leaves them behind (`DROP SCHEMA conf_… CASCADE`).
#![cfg(feature = "server")]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Barrier;
use tokio::task::JoinError;
use tower_oauth2::server::store::{
    ApprovalDecision, AuditQuery, AuditRecord, ClientActivity, Decision, DecisionOutcome,
    MemoryStore, Store, StoreError,
};
use tower_oauth2::server::store::{
    ClientRecord, ClientStatus, CodeRecord, GrantType, IssueOutcome, RevokedAccess,
    SigningKeyRecord, Successor, TokenHash, TokenIssue, TokenKind, TokenRecord, TokenState,
};
use tower_oauth2::server::{SecretHash, TokenLifetime};

/// How long one store's whole suite may take before it counts as hung (a deadlock, a lock
/// that is never released, a pool that never hands out a connection).
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn lifetime(text: &str) -> TokenLifetime {
    text.parse().expect("a valid lifetime")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        name: format!("client {id}"),
        secret_hash: Some(SecretHash::of(&format!("secret of {id}"))),
        redirect_uris: strings(&["https://app.example/cb"]),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: strings(&["read", "write"]),
        default_scopes: strings(&["read"]),
        access_token_lifetime: None,
        refresh_token_lifetime: None,
        status: ClientStatus::Approved,
        created_at: 1_700_000_000,
        contacts: strings(&["ops@app.example"]),
        registration_token: None,
    }
}

async fn register(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store
            .insert_client(client(id))
            .await
            .unwrap_or_else(|e| panic!("insert_client({id}): {e}"));
    }
}

fn code(value: &str, client_id: &str, family: &str, expires_at: u64) -> CodeRecord {
    CodeRecord {
        hash: TokenHash::of(value),
        client_id: client_id.into(),
        redirect_uri: "https://app.example/cb?state=ü".into(),
        subject: "alice@example.com".into(),
        scopes: strings(&["openid", "read"]),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        family_id: family.into(),
        used: false,
        expires_at,
        resources: strings(&["https://api.example/mcp", "urn:example:reports"]),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
    }
}

fn access(
    id: &str,
    client_id: &str,
    family: Option<&str>,
    issued_at: u64,
    expires_at: Option<u64>,
) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        kind: TokenKind::Access,
        hash: None,
        client_id: client_id.into(),
        subject: "alice".into(),
        family_id: family.map(str::to_owned),
        scopes: strings(&["read", "write"]),
        issued_at,
        expires_at,
        state: TokenState::Active,
        resources: Vec::new(),
        dpop_jkt: None,
    }
}

fn refresh(
    id: &str,
    value: &str,
    client_id: &str,
    family: Option<&str>,
    issued_at: u64,
    expires_at: Option<u64>,
) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        kind: TokenKind::Refresh,
        hash: Some(TokenHash::of(value)),
        client_id: client_id.into(),
        subject: "alice".into(),
        family_id: family.map(str::to_owned),
        scopes: strings(&["read", "offline_access"]),
        issued_at,
        expires_at,
        state: TokenState::Active,
        resources: strings(&["https://api.example/mcp", "urn:example:reports"]),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
    }
}

fn with_state(token: &TokenRecord, state: TokenState) -> TokenRecord {
    TokenRecord {
        state,
        ..token.clone()
    }
}

fn ids(tokens: &[TokenRecord]) -> Vec<&str> {
    tokens.iter().map(|t| t.id.as_str()).collect()
}

fn id_set(tokens: &[TokenRecord]) -> BTreeSet<&str> {
    tokens.iter().map(|t| t.id.as_str()).collect()
}

async fn get_token(store: &dyn Store, id: &str) -> Option<TokenRecord> {
    store
        .token(id)
        .await
        .unwrap_or_else(|e| panic!("token({id}): {e}"))
}

async fn state_of(store: &dyn Store, id: &str) -> TokenState {
    get_token(store, id)
        .await
        .unwrap_or_else(|| panic!("token {id} is stored"))
        .state
}

async fn insert_tokens(store: &dyn Store, tokens: Vec<TokenRecord>) -> bool {
    store.insert_tokens(tokens).await.expect("insert_tokens")
}

fn signing_key(kid: &str, algorithm: &str, seed: u32, encrypted: bool) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        algorithm: algorithm.into(),
        // Binary, with NUL and 0xff bytes: must round-trip as bytes, not text.
        private_key: (0..180u32)
            .map(|i| ((i * 7 + seed * 31) % 256) as u8)
            .collect(),
        encrypted,
        created_at: 1_700_000_000 + u64::from(seed),
        active: false,
        retired_until: None,
    }
}

fn active(key: &SigningKeyRecord) -> SigningKeyRecord {
    SigningKeyRecord {
        active: true,
        retired_until: None,
        ..key.clone()
    }
}

fn retired(key: &SigningKeyRecord, until: Option<u64>) -> SigningKeyRecord {
    SigningKeyRecord {
        active: false,
        retired_until: until,
        ..key.clone()
    }
}

async fn signing_keys(store: &dyn Store) -> Vec<SigningKeyRecord> {
    store.signing_keys().await.expect("signing_keys")
}

/// Every revocation from `cursor` on, following the cursor until it stops moving (a store may
/// hand them out in batches), and the cursor to ask with next.
async fn drain_revocations(store: &dyn Store, mut cursor: u64) -> (Vec<RevokedAccess>, u64) {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let (batch, next) = store
            .revocations_since(cursor)
            .await
            .expect("revocations_since");
        assert!(
            next >= cursor,
            "revocations_since({cursor}) moved the cursor back to {next}"
        );
        let done = batch.is_empty() || next == cursor;
        all.extend(batch);
        cursor = next;
        if done {
            return (all, cursor);
        }
    }
    panic!("revocations_since never ran dry (cursor {cursor})");
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

async fn conformance(store: Arc<dyn Store>) {
    // First: it needs a store without signing keys.
    check_signing_keys(&store).await;
    check_clients(store.as_ref()).await;
    check_delete_client(store.as_ref()).await;
    check_codes(store.as_ref()).await;
    check_code_race(std::slice::from_ref(&store), "race").await;
    check_tokens(store.as_ref()).await;
    check_rotate_refresh(store.as_ref()).await;
    check_rotation_race(std::slice::from_ref(&store), "race").await;
    check_issue_tokens(store.as_ref()).await;
    check_successor(store.as_ref()).await;
    check_issue_race(std::slice::from_ref(&store), "race").await;
    check_issue_against_disable(std::slice::from_ref(&store), "race").await;
    check_revoke_race(std::slice::from_ref(&store), "race").await;
    check_revoke_token(store.as_ref()).await;
    check_revoke_family(store.as_ref()).await;
    check_family_revocation_race(std::slice::from_ref(&store), "race").await;
    check_revoke_client_tokens(store.as_ref()).await;
    check_client_tokens(store.as_ref()).await;
    check_revoked_access_tokens(store.as_ref()).await;
    check_revocations_since(store.as_ref()).await;
    check_revocation_signal(store.as_ref(), store.as_ref(), "one").await;
    // It counts what it deletes, and other checks' records must not be old enough.
    check_purge_expired(store.as_ref()).await;
    check_purge_in_chunks(store.as_ref()).await;
    check_decisions(store.as_ref()).await;
    check_decision_race(std::slice::from_ref(&store), "race").await;
    // Last: it purges the audit log down to a few rows.
    check_audit_log(store.as_ref()).await;
}

fn decision(client_id: &str, approver: &str, decision: Decision) -> ApprovalDecision {
    ApprovalDecision {
        client_id: client_id.to_owned(),
        approver: approver.to_owned(),
        decision,
        groups: strings(&["security"]),
        comment: Some(format!("{approver} says {}", decision.as_str())),
        decided_at: 1_700_000_100,
    }
}

/// Approved once both alice and bob approved; rejected by any rejection.
fn alice_and_bob(decisions: &[ApprovalDecision]) -> Option<ClientStatus> {
    if decisions.iter().any(|d| d.decision == Decision::Reject) {
        return Some(ClientStatus::Rejected);
    }
    let approved = |who: &str| {
        decisions
            .iter()
            .any(|d| d.approver == who && d.decision == Decision::Approve)
    };
    (approved("alice") && approved("bob")).then_some(ClientStatus::Approved)
}

async fn register_pending(store: &dyn Store, id: &str) {
    store
        .insert_client(ClientRecord {
            status: ClientStatus::Pending,
            ..client(id)
        })
        .await
        .expect("insert_client");
}

/// Decisions: recorded with their comment and groups, settled by the rule in the same step;
/// a second decision by the same approver changes nothing; a settled client takes no more;
/// deleting the client deletes its decisions.
async fn check_decisions(store: &dyn Store) {
    let settle: &(dyn Fn(&[ApprovalDecision]) -> Option<ClientStatus> + Send + Sync) =
        &alice_and_bob;
    assert_eq!(
        store
            .decide(decision("dec-none", "alice", Decision::Approve), settle)
            .await,
        Ok(DecisionOutcome::NotFound)
    );
    register_pending(store, "dec-a").await;
    let alice = decision("dec-a", "alice", Decision::Approve);
    match store.decide(alice.clone(), settle).await.expect("decide") {
        DecisionOutcome::Recorded {
            client,
            decisions,
            settled,
        } => {
            assert_eq!(client.status, ClientStatus::Pending);
            assert_eq!(decisions, vec![alice.clone()]);
            assert!(!settled);
        }
        other => panic!("alice's approval is recorded, got {other:?}"),
    }
    // Again, even the other way: her first decision stands.
    let again = store
        .decide(decision("dec-a", "alice", Decision::Reject), settle)
        .await
        .expect("decide");
    assert!(
        matches!(&again, DecisionOutcome::AlreadyDecided { earlier, client }
            if *earlier == alice && client.status == ClientStatus::Pending),
        "{again:?}"
    );
    let bob = decision("dec-a", "bob", Decision::Approve);
    match store.decide(bob.clone(), settle).await.expect("decide") {
        DecisionOutcome::Recorded {
            client,
            decisions,
            settled,
        } => {
            assert_eq!(client.status, ClientStatus::Approved);
            assert_eq!(decisions, vec![alice.clone(), bob.clone()], "oldest first");
            assert!(settled);
        }
        other => panic!("bob's approval settles, got {other:?}"),
    }
    let stored = store.client("dec-a").await.expect("read").expect("client");
    assert_eq!(
        stored.status,
        ClientStatus::Approved,
        "the status is stored"
    );
    assert_eq!(
        store
            .decide(decision("dec-a", "carol", Decision::Reject), settle)
            .await,
        Ok(DecisionOutcome::NotPending(stored))
    );
    assert_eq!(store.decisions("dec-a").await, Ok(vec![alice, bob]));

    // One rejection rejects.
    register_pending(store, "dec-r").await;
    let no = DecisionOutcome::Recorded {
        client: ClientRecord {
            status: ClientStatus::Rejected,
            ..client("dec-r")
        },
        decisions: vec![ApprovalDecision {
            comment: None,
            ..decision("dec-r", "bob", Decision::Reject)
        }],
        settled: true,
    };
    assert_eq!(
        store
            .decide(
                ApprovalDecision {
                    comment: None,
                    ..decision("dec-r", "bob", Decision::Reject)
                },
                settle
            )
            .await,
        Ok(no)
    );
    assert!(store.delete_client("dec-r").await.expect("delete"));
    assert_eq!(store.decisions("dec-r").await, Ok(Vec::new()));
    assert_eq!(store.decisions("dec-none").await, Ok(Vec::new()));
}

/// Alice and bob approve the same pending client at the same moment (on one instance or two),
/// for several clients: both decisions are recorded, exactly one of them settles the client,
/// and it ends approved.
async fn check_decision_race(instances: &[Arc<dyn Store>], prefix: &str) {
    for round in 0..10 {
        let id = format!("{prefix}-dec-race-{round}");
        register_pending(instances[0].as_ref(), &id).await;
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = ["alice", "bob"]
            .into_iter()
            .enumerate()
            .map(|(i, who)| {
                let store = Arc::clone(&instances[i % instances.len()]);
                let barrier = Arc::clone(&barrier);
                let d = decision(&id, who, Decision::Approve);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.decide(d, &alice_and_bob).await
                })
            })
            .collect();
        let mut settled = 0;
        for task in tasks {
            match task.await.expect("task").expect("decide") {
                DecisionOutcome::Recorded { settled: s, .. } => settled += usize::from(s),
                other => panic!("{id}: both decisions are recorded, got {other:?}"),
            }
        }
        assert_eq!(settled, 1, "{id}: exactly one decision settles the client");
        let client = instances[0]
            .client(&id)
            .await
            .expect("read")
            .expect("client");
        assert_eq!(client.status, ClientStatus::Approved, "{id}");
        assert_eq!(instances[0].decisions(&id).await.map(|d| d.len()), Ok(2));
    }
}

fn audit_event(at: u64, kind: &str, client_id: Option<&str>, n: usize) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at,
        kind: kind.to_owned(),
        client_id: client_id.map(str::to_owned),
        actor: Some(format!("actor-{n}")),
        detail: serde_json::json!({"n": n, "scope": "read write", "nested": {"ok": true}}),
    }
}

/// Every page of `query` until the last, newest first.
async fn audit_pages(store: &dyn Store, mut query: AuditQuery) -> Vec<AuditRecord> {
    let mut all: Vec<AuditRecord> = Vec::new();
    loop {
        let page = store
            .audit_events(query.clone())
            .await
            .expect("audit_events");
        assert!(
            page.len() <= query.limit,
            "a page holds at most `limit` events"
        );
        let full = page.len() == query.limit;
        query.before = page.last().map(|e| e.seq);
        all.extend(page);
        if !full {
            return all;
        }
    }
}

/// The audit log: append keeps order and assigns increasing `seq`; each filter, their
/// combination and the cursor select exactly the matching events, newest first, with no
/// duplicate or gap across pages; the per-client activity counts `token_issued` events; purge
/// by age, then by count, deletes the oldest.
async fn check_audit_log(store: &dyn Store) {
    let t = now();
    // 60 events over 60 seconds, three kinds, two clients and some without a client; appended
    // in three calls, the last one large.
    let kinds = ["token_issued", "token_refused", "admin_action"];
    let events: Vec<AuditRecord> = (0..60)
        .map(|n| {
            let client = match n % 4 {
                0 | 1 => Some("audit-a"),
                2 => Some("audit-b"),
                _ => None,
            };
            audit_event(t - 60 + n as u64, kinds[n % 3], client, n)
        })
        .collect();
    store
        .append_audit(Vec::new())
        .await
        .expect("append nothing");
    store
        .append_audit(events[..1].to_vec())
        .await
        .expect("append one");
    store
        .append_audit(events[1..10].to_vec())
        .await
        .expect("append nine");
    store
        .append_audit(events[10..].to_vec())
        .await
        .expect("append fifty");

    let all = audit_pages(store, AuditQuery::new(7)).await;
    assert_eq!(all.len(), 60, "every event, once, across pages of 7");
    let numbers: Vec<u64> = all
        .iter()
        .map(|e| e.detail["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(
        numbers,
        (0..60).rev().collect::<Vec<u64>>(),
        "newest first, no gap"
    );
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "seq decreases");
    let first = all.last().expect("oldest");
    assert_eq!(
        (
            first.at,
            first.kind.as_str(),
            first.client_id.as_deref(),
            first.actor.as_deref()
        ),
        (t - 60, "token_issued", Some("audit-a"), Some("actor-0"))
    );
    assert_eq!(first.detail["nested"]["ok"], true, "the detail round-trips");

    let expect = |filter: &dyn Fn(usize) -> bool| -> Vec<u64> {
        (0..60u64).rev().filter(|&n| filter(n as usize)).collect()
    };
    let numbers_of = |events: &[AuditRecord]| -> Vec<u64> {
        events
            .iter()
            .map(|e| e.detail["n"].as_u64().expect("n"))
            .collect()
    };
    let mut by_client = AuditQuery::new(4);
    by_client.client_id = Some("audit-a".into());
    assert_eq!(
        numbers_of(&audit_pages(store, by_client).await),
        expect(&|n| n % 4 < 2)
    );
    let mut by_kind = AuditQuery::new(5);
    by_kind.kind = Some("token_refused".into());
    assert_eq!(
        numbers_of(&audit_pages(store, by_kind).await),
        expect(&|n| n % 3 == 1)
    );
    let mut both = AuditQuery::new(3);
    both.client_id = Some("audit-b".into());
    both.kind = Some("admin_action".into());
    assert_eq!(
        numbers_of(&audit_pages(store, both).await),
        expect(&|n| n % 4 == 2 && n % 3 == 2)
    );
    let mut window = AuditQuery::new(100);
    window.since = Some(t - 50);
    window.until = Some(t - 40);
    assert_eq!(
        numbers_of(&audit_pages(store, window).await),
        expect(&|n| (10..20).contains(&n)),
        "since is inclusive, until exclusive"
    );
    let mut nobody = AuditQuery::new(10);
    nobody.client_id = Some("audit-nobody".into());
    assert!(store.audit_events(nobody).await.expect("query").is_empty());

    // Activity: token_issued events per client (n % 3 == 0), counted from `since`.
    let activity = store
        .client_activity(t - 30)
        .await
        .expect("client_activity");
    let of = |id: &str| -> ClientActivity {
        let issued: Vec<u64> = (0..60u64)
            .filter(|n| {
                n % 3 == 0
                    && if id == "audit-a" {
                        n % 4 < 2
                    } else {
                        n % 4 == 2
                    }
            })
            .collect();
        ClientActivity {
            client_id: id.to_owned(),
            last_issued_at: t - 60 + issued.iter().max().copied().unwrap_or_default(),
            issued_since: issued.iter().filter(|&&n| t - 60 + n >= t - 30).count() as u64,
        }
    };
    assert_eq!(activity, vec![of("audit-a"), of("audit-b")]);

    // Retention: by age (older than t - 20: events 0..40), then by count.
    assert_eq!(store.purge_audit(t - 20, 1_000).await.expect("purge"), 40);
    let left = audit_pages(store, AuditQuery::new(100)).await;
    assert_eq!(numbers_of(&left), expect(&|n| n >= 40));
    assert_eq!(
        store.purge_audit(0, 5).await.expect("purge"),
        15,
        "keeps the newest 5"
    );
    let left = audit_pages(store, AuditQuery::new(100)).await;
    assert_eq!(numbers_of(&left), expect(&|n| n >= 55));
    assert_eq!(
        store.purge_audit(0, 5).await.expect("purge"),
        0,
        "nothing more"
    );

    // Appending goes on after a purge, with larger `seq`s.
    let newest_seq = left.first().expect("kept").seq;
    store
        .append_audit(vec![audit_event(t, "token_revoked", None, 99)])
        .await
        .expect("append");
    let newest = store.audit_events(AuditQuery::new(1)).await.expect("query");
    assert_eq!(newest.len(), 1);
    assert!(newest[0].seq > newest_seq);
    assert_eq!(newest[0].detail["n"], 99);
}

/// More expired tokens than one purge transaction deletes (the SQL stores purge in chunks of
/// 1,000): all go, and the count says so.
async fn check_purge_in_chunks(store: &dyn Store) {
    const EXPIRED: usize = 2_500;
    let t = now();
    register(store, &["chunk-c"]).await;
    let tokens: Vec<TokenRecord> = (0..EXPIRED)
        .map(|i| {
            access(
                &format!("chunk-{i}"),
                "chunk-c",
                None,
                1_000,
                Some(1_000 + 60),
            )
        })
        .collect();
    assert!(insert_tokens(store, tokens).await);
    let live = access("chunk-live", "chunk-c", None, t, Some(t + 3600));
    assert!(insert_tokens(store, vec![live.clone()]).await);
    // Up to a time long past, so that no other check's short-lived records (which expire a
    // second or two after they were made) go too when the suite runs slowly.
    let purged = store.purge_expired(2_000).await.expect("purge_expired");
    assert_eq!(
        purged, EXPIRED as u64,
        "every expired token, and nothing else"
    );
    for i in [0, 999, 1_000, 1_999, 2_000, EXPIRED - 1] {
        assert_eq!(
            get_token(store, &format!("chunk-{i}")).await,
            None,
            "chunk-{i}"
        );
    }
    assert_eq!(get_token(store, "chunk-live").await, Some(live));
}

/// Runs the suite on its own task, so that the caller can clean up before a failure unwinds.
async fn run_suite(store: Arc<dyn Store>) -> Result<(), JoinError> {
    run_guarded(async move {
        conformance(Arc::clone(&store)).await;
        check_sub_second_lifetimes(store.as_ref()).await;
    })
    .await
}

/// Runs `checks` on a task of their own, within [`SUITE_TIMEOUT`]: a failure comes back as the
/// task's panic, for [`rethrow`] after the caller's cleanup.
async fn run_guarded(
    checks: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JoinError> {
    let task = tokio::spawn(checks);
    let abort = task.abort_handle();
    match tokio::time::timeout(SUITE_TIMEOUT, task).await {
        Ok(result) => result,
        Err(_) => {
            abort.abort();
            panic!("the store conformance checks took longer than {SUITE_TIMEOUT:?}")
        }
    }
}

fn rethrow(result: Result<(), JoinError>) {
    if let Err(e) = result {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the conformance task failed: {e}"),
        }
    }
}

// ----- clients -------------------------------------------------------------------------------

async fn check_clients(store: &dyn Store) {
    assert_eq!(
        lifetime("1.5h"),
        TokenLifetime::Limited(Duration::from_secs(5400))
    );
    let t = now();
    // Registration order is neither alphabetical nor by `created_at` alone (equal seconds).
    let zeta = ClientRecord {
        client_id: "cl-zeta".into(),
        name: "Ünïcødé 客户端 🚀 \"quoted\" 'single' ; DROP TABLE clients; --".into(),
        secret_hash: Some(SecretHash::of("zeta-secret-0123456789-0123456789-abcdef")),
        redirect_uris: strings(&[
            "https://app.example/cb?x=a,b;c&y=%20",
            "http://127.0.0.1:8080/callback",
            "com.example.app:/oauth2redirect/ünï",
        ]),
        grant_types: GrantType::ALL.to_vec(),
        scopes: strings(&["read", "write", "admin:all", "données", "範囲", "a,b"]),
        default_scopes: strings(&["read", "données"]),
        access_token_lifetime: Some(lifetime("1.5h")),
        refresh_token_lifetime: Some(TokenLifetime::Unlimited),
        status: ClientStatus::Approved,
        created_at: t,
        contacts: strings(&["ops@app.example", "o'brien+oauth@sub.example.co.uk"]),
        registration_token: Some(SecretHash::of("registration access token of zeta")),
    };
    let alpha = ClientRecord {
        client_id: "cl-alpha".into(),
        name: String::new(),
        secret_hash: Some(SecretHash::of("")),
        redirect_uris: Vec::new(),
        grant_types: Vec::new(),
        scopes: Vec::new(),
        default_scopes: Vec::new(),
        access_token_lifetime: Some(TokenLifetime::Unlimited),
        refresh_token_lifetime: None,
        status: ClientStatus::Pending,
        created_at: t,
        contacts: Vec::new(),
        registration_token: None,
    };
    let mid = ClientRecord {
        // Not the canonical order: the stored order is the client's.
        grant_types: vec![GrantType::RefreshToken, GrantType::ClientCredentials],
        // A public client: no secret survives as no secret.
        secret_hash: None,
        status: ClientStatus::Rejected,
        access_token_lifetime: Some(lifetime("1y 2m 3w 7d 5h 30min 15s")),
        refresh_token_lifetime: Some(lifetime("2s")),
        ..client("cl-mid")
    };
    let beta = ClientRecord {
        grant_types: vec![GrantType::Password],
        status: ClientStatus::Disabled,
        access_token_lifetime: Some(TokenLifetime::Limited(Duration::from_secs(1))),
        refresh_token_lifetime: Some(lifetime("2.25min")),
        scopes: strings(&["only"]),
        default_scopes: Vec::new(),
        created_at: t + 1,
        ..client("cl-beta")
    };
    let registered = [zeta.clone(), alpha.clone(), mid.clone(), beta.clone()];

    assert_eq!(store.client("cl-zeta").await, Ok(None), "before insert");
    for c in &registered {
        store
            .insert_client(c.clone())
            .await
            .unwrap_or_else(|e| panic!("insert_client({}): {e}", c.client_id));
    }

    // Every field round-trips exactly.
    for c in &registered {
        assert_eq!(
            store.client(&c.client_id).await,
            Ok(Some(c.clone())),
            "client({}) round-trips",
            c.client_id
        );
    }
    let reloaded = store
        .client("cl-zeta")
        .await
        .expect("client")
        .expect("cl-zeta stored");
    assert!(
        reloaded.verify_secret("zeta-secret-0123456789-0123456789-abcdef"),
        "the secret verifies against the reloaded hash"
    );
    assert!(!reloaded.verify_secret("zeta-secret-wrong"));
    let reloaded_alpha = store
        .client("cl-alpha")
        .await
        .expect("client")
        .expect("cl-alpha stored");
    assert!(reloaded_alpha.verify_secret(""));
    let reloaded_mid = store.client("cl-mid").await.expect("client");
    assert!(
        reloaded_mid
            .as_ref()
            .is_some_and(|c| c.is_public() && !c.verify_secret(""))
    );
    assert_eq!(store.client("cl-unknown").await, Ok(None));
    assert_eq!(
        store.client("CL-ZETA").await,
        Ok(None),
        "client ids are case-sensitive"
    );
    assert_eq!(store.client("").await, Ok(None));

    // Registration order.
    let listed = store.clients().await.expect("clients");
    let ours: Vec<&ClientRecord> = listed
        .iter()
        .filter(|c| c.client_id.starts_with("cl-"))
        .collect();
    assert_eq!(
        ours,
        registered.iter().collect::<Vec<_>>(),
        "clients() lists every client, in registration order"
    );

    // Duplicate id: conflict, the stored client unchanged.
    let impostor = ClientRecord {
        name: "impostor".into(),
        secret_hash: Some(SecretHash::of("impostor")),
        ..alpha.clone()
    };
    let duplicate = store.insert_client(impostor).await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "a duplicate client id is a conflict, got {duplicate:?}"
    );
    assert_eq!(store.client("cl-alpha").await, Ok(Some(alpha.clone())));

    // Update: replaces every field, keeps the registration position.
    let updated = ClientRecord {
        client_id: "cl-zeta".into(),
        name: "renamed ✓".into(),
        secret_hash: Some(SecretHash::of("rotated secret")),
        redirect_uris: Vec::new(),
        grant_types: vec![GrantType::ClientCredentials],
        scopes: Vec::new(),
        default_scopes: Vec::new(),
        access_token_lifetime: Some(lifetime("3s")),
        refresh_token_lifetime: None,
        status: ClientStatus::Disabled,
        created_at: 42,
        contacts: strings(&["new-owner@example.org"]),
        // The update replaces it too (the admin API keeps it, RFC 7592 rotates it).
        registration_token: Some(SecretHash::of("rotated registration token")),
    };
    assert_eq!(store.update_client(updated.clone()).await, Ok(true));
    let reloaded = store.client("cl-zeta").await.expect("client");
    assert_eq!(
        reloaded,
        Some(updated.clone()),
        "update_client replaces the record"
    );
    let reloaded = reloaded.expect("cl-zeta stored");
    assert!(reloaded.verify_secret("rotated secret"));
    assert!(!reloaded.verify_secret("zeta-secret-0123456789-0123456789-abcdef"));
    let listed = store.clients().await.expect("clients");
    let order: Vec<&str> = listed
        .iter()
        .filter(|c| c.client_id.starts_with("cl-"))
        .map(|c| c.client_id.as_str())
        .collect();
    assert_eq!(
        order,
        ["cl-zeta", "cl-alpha", "cl-mid", "cl-beta"],
        "an update keeps the registration order"
    );
    // Back and forth through every status.
    for status in [
        ClientStatus::Pending,
        ClientStatus::Approved,
        ClientStatus::Rejected,
        ClientStatus::Disabled,
    ] {
        let c = ClientRecord {
            status,
            ..alpha.clone()
        };
        assert_eq!(store.update_client(c.clone()).await, Ok(true));
        assert_eq!(store.client("cl-alpha").await, Ok(Some(c)), "{status:?}");
    }

    // Unknown client: false, and nothing is inserted.
    let ghost = client("cl-ghost");
    assert_eq!(store.update_client(ghost).await, Ok(false));
    assert_eq!(store.client("cl-ghost").await, Ok(None));
    assert_eq!(
        store.clients().await.map(|v| v.len()),
        Ok(listed.len()),
        "update_client of an unknown client adds nothing"
    );
}

/// A lifetime is a `Duration`: one with a fraction of a second (`1.5s`, which the admin API
/// accepts) round-trips exactly too. It matters: token expiry rounds a fraction up (`1.5s`
/// lives 2 s), so a store that kept whole seconds would shorten the client's tokens.
async fn check_sub_second_lifetimes(store: &dyn Store) {
    let fractional = ClientRecord {
        access_token_lifetime: Some(lifetime("1.5s")),
        refresh_token_lifetime: Some(lifetime("1h 0.25s")),
        ..client("subsec-a")
    };
    assert_eq!(
        fractional.access_token_lifetime,
        Some(TokenLifetime::Limited(Duration::from_millis(1500)))
    );
    store
        .insert_client(fractional.clone())
        .await
        .expect("insert_client");
    assert_eq!(
        store.client("subsec-a").await,
        Ok(Some(fractional.clone())),
        "sub-second lifetimes round-trip exactly"
    );
    let updated = ClientRecord {
        access_token_lifetime: Some(TokenLifetime::Limited(Duration::from_millis(2_250))),
        ..fractional
    };
    assert_eq!(store.update_client(updated.clone()).await, Ok(true));
    assert_eq!(
        store.client("subsec-a").await,
        Ok(Some(updated)),
        "sub-second lifetimes round-trip exactly through update_client"
    );
}

async fn check_delete_client(store: &dyn Store) {
    let t = now();
    register(store, &["del-a", "del-b"]).await;
    let code_a = code("del-code-a", "del-a", "del-fam-a", t + 600);
    let code_b = code("del-code-b", "del-b", "del-fam-b", t + 600);
    store
        .insert_code(code_a.clone())
        .await
        .expect("insert_code");
    store
        .insert_code(code_b.clone())
        .await
        .expect("insert_code");

    assert_eq!(store.delete_client("del-unknown").await, Ok(false));
    assert_eq!(store.delete_client("del-a").await, Ok(true));
    assert_eq!(store.client("del-a").await, Ok(None));
    assert!(
        !store
            .clients()
            .await
            .expect("clients")
            .iter()
            .any(|c| c.client_id == "del-a"),
        "a deleted client is not listed"
    );
    assert_eq!(
        store.take_code(&code_a.hash, "del-a").await,
        Ok(None),
        "delete_client deletes the client's codes"
    );
    assert_eq!(
        store.take_code(&code_b.hash, "del-b").await,
        Ok(Some((
            CodeRecord {
                used: true,
                ..code_b
            },
            true
        ))),
        "another client's code is kept"
    );
    assert_eq!(store.client("del-b").await, Ok(Some(client("del-b"))));
    assert_eq!(
        store.delete_client("del-a").await,
        Ok(false),
        "a second delete finds nothing"
    );

    // The id can be registered again, as a new client at the end of the list.
    store
        .insert_client(client("del-a"))
        .await
        .expect("re-register a deleted id");
    let listed = store.clients().await.expect("clients");
    assert_eq!(
        listed.last().map(|c| c.client_id.as_str()),
        Some("del-a"),
        "a re-registered client is the newest"
    );
}

// ----- authorization codes -------------------------------------------------------------------

async fn check_codes(store: &dyn Store) {
    let t = now();
    register(store, &["code-a", "code-b"]).await;
    let first = CodeRecord {
        subject: "alice@example.com — ünïcødé".into(),
        scopes: strings(&["openid", "read", "données"]),
        ..code("code-value-1", "code-a", "code-fam-1", t + 600)
    };
    store.insert_code(first.clone()).await.expect("insert_code");

    // A second code with the same hash: conflict, the first unchanged.
    let clash = CodeRecord {
        client_id: "code-b".into(),
        family_id: "code-fam-clash".into(),
        ..first.clone()
    };
    let duplicate = store.insert_code(clash).await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "a duplicate code hash is a conflict, got {duplicate:?}"
    );

    assert_eq!(
        store
            .take_code(&TokenHash::of("code-unknown"), "code-a")
            .await,
        Ok(None),
        "an unknown code"
    );

    // Another client: the code, unchanged and not spoiled.
    assert_eq!(
        store.take_code(&first.hash, "code-b").await,
        Ok(Some((first.clone(), false))),
        "a code presented by another client is returned unused, with false"
    );
    assert_eq!(
        store.take_code(&first.hash, "code-b").await,
        Ok(Some((first.clone(), false))),
        "… and still not marked used"
    );

    // Its own client: true once, then false.
    let used = CodeRecord {
        used: true,
        ..first.clone()
    };
    assert_eq!(
        store.take_code(&first.hash, "code-a").await,
        Ok(Some((used.clone(), true))),
        "the first redemption wins"
    );
    assert_eq!(
        store.take_code(&first.hash, "code-a").await,
        Ok(Some((used.clone(), false))),
        "a second redemption is reported"
    );
    assert_eq!(
        store.take_code(&first.hash, "code-b").await,
        Ok(Some((used.clone(), false))),
        "another client after redemption"
    );

    // Expired codes are returned too; the caller checks `expires_at`.
    let expired = CodeRecord {
        scopes: Vec::new(),
        ..code("code-value-expired", "code-a", "code-fam-2", t - 60)
    };
    store
        .insert_code(expired.clone())
        .await
        .expect("insert_code");
    assert_eq!(
        store.take_code(&expired.hash, "code-a").await,
        Ok(Some((
            CodeRecord {
                used: true,
                ..expired
            },
            true
        ))),
        "an expired code is returned (with empty scopes round-tripping)"
    );

    // Case-sensitive client ids.
    let third = code("code-value-3", "code-a", "code-fam-3", t + 600);
    store.insert_code(third.clone()).await.expect("insert_code");
    assert_eq!(
        store.take_code(&third.hash, "CODE-A").await,
        Ok(Some((third.clone(), false))),
        "client ids are compared exactly"
    );
    assert_eq!(
        store
            .take_code(&third.hash, "code-a")
            .await
            .map(|r| r.map(|(_, first)| first)),
        Ok(Some(true))
    );
}

/// Sixty concurrent `take_code` calls on one code, spread over `instances`: fifty by its
/// client (exactly one wins), ten by another client (none wins, none spoils it).
async fn check_code_race(instances: &[Arc<dyn Store>], prefix: &str) {
    const RIGHT: usize = 50;
    const WRONG: usize = 10;
    let t = now();
    let owner = format!("{prefix}-code-a");
    let other = format!("{prefix}-code-b");
    register(instances[0].as_ref(), &[&owner, &other]).await;
    let raced = code(
        &format!("{prefix}-code-value"),
        &owner,
        &format!("{prefix}-code-fam"),
        t + 600,
    );
    instances[0]
        .insert_code(raced.clone())
        .await
        .expect("insert_code");

    let barrier = Arc::new(Barrier::new(RIGHT + WRONG));
    let mut tasks = Vec::new();
    for i in 0..RIGHT + WRONG {
        let store = Arc::clone(&instances[i % instances.len()]);
        let barrier = Arc::clone(&barrier);
        let hash = raced.hash;
        let client_id = if i % 6 == 5 {
            other.clone()
        } else {
            owner.clone()
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = store.take_code(&hash, &client_id).await;
            (client_id, result)
        }));
    }
    let mut winners = 0;
    let mut wrong_seen = 0;
    for task in tasks {
        let (client_id, result) = task.await.expect("take_code task");
        let (record, first) = result
            .expect("take_code under contention")
            .expect("the code is found");
        assert_eq!(record.hash, raced.hash);
        assert_eq!(record.client_id, owner);
        if client_id == other {
            wrong_seen += 1;
            assert!(!first, "another client never redeems the code");
        } else {
            assert!(record.used, "a redemption returns the code marked used");
            winners += usize::from(first);
        }
    }
    assert_eq!(wrong_seen, WRONG);
    assert_eq!(
        winners,
        1,
        "exactly one of {RIGHT} concurrent take_code calls ({} instances) gets true",
        instances.len()
    );
    for store in instances {
        assert_eq!(
            store
                .take_code(&raced.hash, &owner)
                .await
                .map(|r| r.map(|(_, first)| first)),
            Ok(Some(false)),
            "every instance sees the code used"
        );
    }
}

// ----- tokens --------------------------------------------------------------------------------

async fn check_tokens(store: &dyn Store) {
    let t = now();
    register(store, &["tok-a", "tok-b"]).await;
    let a1 = TokenRecord {
        subject: "ünïcødé subject ✓".into(),
        scopes: strings(&["read", "données", "範囲"]),
        ..access("tok-a1", "tok-a", Some("tok-fam-1"), t, Some(t + 3600))
    };
    let r1 = refresh(
        "tok-r1",
        "tok-refresh-value-1",
        "tok-a",
        Some("tok-fam-1"),
        t,
        Some(t + 86_400),
    );
    assert!(insert_tokens(store, vec![a1.clone(), r1.clone()]).await);

    assert_eq!(store.token("tok-a1").await, Ok(Some(a1.clone())));
    assert_eq!(store.token("tok-r1").await, Ok(Some(r1.clone())));
    assert_eq!(
        store
            .find_refresh(&TokenHash::of("tok-refresh-value-1"))
            .await,
        Ok(Some(r1.clone())),
        "find_refresh by hash"
    );
    assert_eq!(
        store
            .find_refresh(&TokenHash::of("tok-refresh-unknown"))
            .await,
        Ok(None)
    );
    assert_eq!(store.token("tok-unknown").await, Ok(None));
    assert_eq!(
        store.token("TOK-A1").await,
        Ok(None),
        "ids are case-sensitive"
    );

    // A client-credentials token: no family, no hash, no scopes, no expiry.
    let cc = TokenRecord {
        subject: "tok-b".into(),
        scopes: Vec::new(),
        ..access("tok-cc", "tok-b", None, t, None)
    };
    assert!(insert_tokens(store, vec![cc.clone()]).await);
    assert_eq!(store.token("tok-cc").await, Ok(Some(cc)));
    // An unlimited refresh token.
    let unlimited = refresh(
        "tok-r-unl",
        "tok-refresh-unlimited",
        "tok-b",
        Some("tok-fam-unl"),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![unlimited.clone()]).await);
    assert_eq!(
        store
            .find_refresh(&TokenHash::of("tok-refresh-unlimited"))
            .await,
        Ok(Some(unlimited))
    );

    // A batch with a taken id fails whole.
    let fresh = access("tok-fresh", "tok-a", Some("tok-fam-9"), t, Some(t + 60));
    let clash = store
        .insert_tokens(vec![fresh, with_state(&a1, TokenState::Active)])
        .await;
    assert!(
        matches!(clash, Err(StoreError::Conflict(_))),
        "insert_tokens with a taken token id is a conflict, got {clash:?}"
    );
    assert_eq!(
        store.token("tok-fresh").await,
        Ok(None),
        "a failed insert_tokens stores nothing"
    );
    assert_eq!(store.token("tok-a1").await, Ok(Some(a1)));
}

async fn check_rotate_refresh(store: &dyn Store) {
    let t = now();
    register(store, &["rot-a"]).await;
    let family = Some("rot-fam");
    let a1 = access("rot-a1", "rot-a", family, t, Some(t + 3600));
    let r1 = refresh(
        "rot-r1",
        "rot-value-1",
        "rot-a",
        family,
        t,
        Some(t + 86_400),
    );
    assert!(insert_tokens(store, vec![a1.clone(), r1.clone()]).await);

    let a2 = access("rot-a2", "rot-a", family, t + 10, Some(t + 3610));
    let r2 = refresh(
        "rot-r2",
        "rot-value-2",
        "rot-a",
        family,
        t + 10,
        Some(t + 86_410),
    );
    assert_eq!(
        store
            .rotate_refresh("rot-r1", vec![a2.clone(), r2.clone()])
            .await,
        Ok(true),
        "the first rotation wins"
    );
    assert_eq!(
        store.token("rot-r1").await,
        Ok(Some(with_state(&r1, TokenState::Rotated))),
        "the old refresh token is marked rotated, nothing else changed"
    );
    assert_eq!(
        store.find_refresh(&TokenHash::of("rot-value-1")).await,
        Ok(Some(with_state(&r1, TokenState::Rotated))),
        "find_refresh returns a rotated token too"
    );
    assert_eq!(store.token("rot-a2").await, Ok(Some(a2)));
    assert_eq!(
        store.find_refresh(&TokenHash::of("rot-value-2")).await,
        Ok(Some(r2))
    );
    assert_eq!(store.token("rot-a1").await, Ok(Some(a1)), "untouched");

    // A second rotation of the same token: false, nothing stored.
    let a3 = access("rot-a3", "rot-a", family, t + 20, Some(t + 3620));
    let r3 = refresh("rot-r3", "rot-value-3", "rot-a", family, t + 20, None);
    assert_eq!(
        store.rotate_refresh("rot-r1", vec![a3, r3]).await,
        Ok(false)
    );
    assert_eq!(store.token("rot-a3").await, Ok(None));
    assert_eq!(store.token("rot-r3").await, Ok(None));
    assert_eq!(
        store.find_refresh(&TokenHash::of("rot-value-3")).await,
        Ok(None)
    );

    // An unknown id: false, nothing stored.
    let a4 = access("rot-a4", "rot-a", family, t, Some(t + 60));
    let r4 = refresh("rot-r4", "rot-value-4", "rot-a", family, t, None);
    assert_eq!(
        store.rotate_refresh("rot-unknown", vec![a4, r4]).await,
        Ok(false)
    );
    assert_eq!(store.token("rot-a4").await, Ok(None));
    assert_eq!(store.token("rot-r4").await, Ok(None));

    // A revoked refresh token: false, nothing stored, still revoked.
    let rr = refresh(
        "rot-rr",
        "rot-value-rr",
        "rot-a",
        Some("rot-fam-rr"),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![rr]).await);
    assert!(
        store
            .revoke_token("rot-rr")
            .await
            .expect("revoke_token")
            .is_some()
    );
    let a5 = access("rot-a5", "rot-a", Some("rot-fam-rr"), t, Some(t + 60));
    let r5 = refresh(
        "rot-r5",
        "rot-value-5",
        "rot-a",
        Some("rot-fam-rr"),
        t,
        None,
    );
    assert_eq!(
        store.rotate_refresh("rot-rr", vec![a5, r5]).await,
        Ok(false)
    );
    assert_eq!(store.token("rot-a5").await, Ok(None));
    assert_eq!(store.token("rot-r5").await, Ok(None));
    assert_eq!(state_of(store, "rot-rr").await, TokenState::Revoked);

    // An access token's id is not a refresh token.
    let a6 = access("rot-a6", "rot-a", family, t, Some(t + 60));
    assert_eq!(
        store.rotate_refresh("rot-a1", vec![a6]).await,
        Ok(false),
        "rotate_refresh of an access token's id"
    );
    assert_eq!(state_of(store, "rot-a1").await, TokenState::Active);
    assert_eq!(store.token("rot-a6").await, Ok(None));

    // The new refresh token rotates in turn.
    let a7 = access("rot-a7", "rot-a", family, t + 30, Some(t + 3630));
    assert_eq!(store.rotate_refresh("rot-r2", vec![a7]).await, Ok(true));
    assert_eq!(state_of(store, "rot-r2").await, TokenState::Rotated);
    assert_eq!(state_of(store, "rot-a7").await, TokenState::Active);
}

/// Fifty concurrent rotations of one refresh token, spread over `instances`, each with its
/// own new tokens: exactly one wins, and only its tokens are stored.
async fn check_rotation_race(instances: &[Arc<dyn Store>], prefix: &str) {
    const CONTENDERS: usize = 50;
    let t = now();
    let client_id = format!("{prefix}-rot");
    let old_id = format!("{prefix}-rot-old");
    let family = format!("{prefix}-rot-fam");
    let family = Some(family.as_str());
    let store = instances[0].as_ref();
    register(store, &[&client_id]).await;
    let old = refresh(
        &old_id,
        &format!("{prefix}-rot-old-value"),
        &client_id,
        family,
        t,
        None,
    );
    assert!(insert_tokens(store, vec![old]).await);

    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let mut tasks = Vec::new();
    for i in 0..CONTENDERS {
        let instance = Arc::clone(&instances[i % instances.len()]);
        let barrier = Arc::clone(&barrier);
        let old_id = old_id.clone();
        let issued = vec![
            access(
                &format!("{prefix}-rot-a{i}"),
                &client_id,
                family,
                t + 1,
                Some(t + 3600),
            ),
            refresh(
                &format!("{prefix}-rot-r{i}"),
                &format!("{prefix}-rot-value-{i}"),
                &client_id,
                family,
                t + 1,
                Some(t + 86_400),
            ),
        ];
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            instance.rotate_refresh(&old_id, issued).await
        }));
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task
            .await
            .expect("rotate_refresh task")
            .expect("rotate_refresh under contention")
        {
            winners.push(i);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {CONTENDERS} concurrent rotations ({} instances) gets true: {winners:?}",
        instances.len()
    );
    let winner = winners[0];
    for i in 0..CONTENDERS {
        let stored_access = get_token(store, &format!("{prefix}-rot-a{i}")).await;
        let stored_refresh = store
            .find_refresh(&TokenHash::of(&format!("{prefix}-rot-value-{i}")))
            .await
            .expect("find_refresh");
        if i == winner {
            assert!(
                stored_access.is_some(),
                "the winner's access token is stored"
            );
            assert!(
                stored_refresh.is_some(),
                "the winner's refresh token is stored"
            );
        } else {
            assert_eq!(
                stored_access, None,
                "loser {i}'s access token is not stored"
            );
            assert_eq!(
                stored_refresh, None,
                "loser {i}'s refresh token is not stored"
            );
        }
    }
    assert_eq!(state_of(store, &old_id).await, TokenState::Rotated);
    let live = store
        .client_tokens(&client_id, t + 2)
        .await
        .expect("client_tokens");
    let expected = [
        format!("{prefix}-rot-a{winner}"),
        format!("{prefix}-rot-r{winner}"),
    ];
    assert_eq!(
        id_set(&live),
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "one set of new tokens"
    );
}

fn issue(client: &ClientRecord, rotate: Option<&str>, tokens: Vec<TokenRecord>) -> TokenIssue {
    TokenIssue {
        client: client.clone(),
        rotate: rotate.map(str::to_owned),
        tokens,
        successor: None,
    }
}

async fn issue_tokens(store: &dyn Store, issue: TokenIssue) -> IssueOutcome {
    store.issue_tokens(issue).await.expect("issue_tokens")
}

/// `issue_tokens`: stores only for the client record as stored, revokes into a revoked family,
/// rotates once.
/// A rotation's successor (the grace window's sealed answer) is kept with the rotation, only
/// by the call that rotated, and read back exactly.
async fn check_successor(store: &dyn Store) {
    let t = now();
    register(store, &["suc-c"]).await;
    let c = client("suc-c");
    let old = refresh(
        "suc-r0",
        "suc value 0",
        "suc-c",
        Some("suc-fam"),
        t,
        Some(t + 3600),
    );
    assert_eq!(
        issue_tokens(store, issue(&c, None, vec![old])).await,
        IssueOutcome::Stored
    );
    assert_eq!(
        store.successor("suc-r0").await,
        Ok(None),
        "none before a rotation"
    );
    let sealed = Successor {
        sealed: (0u8..=255).collect(),
        rotated_at: t,
    };
    let mut winner = issue(
        &c,
        Some("suc-r0"),
        vec![refresh(
            "suc-r1",
            "suc value 1",
            "suc-c",
            Some("suc-fam"),
            t,
            Some(t + 3600),
        )],
    );
    winner.successor = Some(sealed.clone());
    assert_eq!(issue_tokens(store, winner).await, IssueOutcome::Stored);
    assert_eq!(store.successor("suc-r0").await, Ok(Some(sealed.clone())));
    // A second rotation of the same token stores nothing, its successor included.
    let mut loser = issue(
        &c,
        Some("suc-r0"),
        vec![refresh(
            "suc-r2",
            "suc value 2",
            "suc-c",
            Some("suc-fam"),
            t,
            Some(t + 3600),
        )],
    );
    loser.successor = Some(Successor {
        sealed: vec![1, 2, 3],
        rotated_at: t + 1,
    });
    assert_eq!(issue_tokens(store, loser).await, IssueOutcome::NotRotated);
    assert_eq!(store.successor("suc-r0").await, Ok(Some(sealed)));
    assert_eq!(get_token(store, "suc-r2").await, None);
    assert_eq!(store.successor("suc-unknown").await, Ok(None));
}

async fn check_issue_tokens(store: &dyn Store) {
    let t = now();
    register(store, &["iss-c", "iss-off"]).await;
    let c = client("iss-c");

    let a1 = access("iss-a1", "iss-c", None, t, Some(t + 3600));
    assert_eq!(
        issue_tokens(store, issue(&c, None, vec![a1.clone()])).await,
        IssueOutcome::Stored
    );
    assert_eq!(get_token(store, "iss-a1").await, Some(a1));

    // A record that is not the stored one (another secret: a rotation elsewhere) stores nothing.
    let stale = ClientRecord {
        secret_hash: Some(SecretHash::of("the secret before a rotation")),
        ..c.clone()
    };
    let a2 = access("iss-a2", "iss-c", None, t, Some(t + 3600));
    assert_eq!(
        issue_tokens(store, issue(&stale, None, vec![a2])).await,
        IssueOutcome::ClientChanged
    );
    assert_eq!(get_token(store, "iss-a2").await, None, "nothing stored");

    // Unknown client.
    let ghost = client("iss-ghost");
    let a3 = access("iss-a3", "iss-ghost", None, t, Some(t + 3600));
    assert_eq!(
        issue_tokens(store, issue(&ghost, None, vec![a3])).await,
        IssueOutcome::ClientChanged
    );
    assert_eq!(get_token(store, "iss-a3").await, None);

    // Disabled since it was read.
    let off = client("iss-off");
    let disabled = ClientRecord {
        status: ClientStatus::Disabled,
        ..off.clone()
    };
    assert_eq!(store.update_client(disabled).await, Ok(true));
    let a4 = access("iss-a4", "iss-off", None, t, Some(t + 3600));
    assert_eq!(
        issue_tokens(store, issue(&off, None, vec![a4])).await,
        IssueOutcome::ClientChanged
    );
    assert_eq!(get_token(store, "iss-a4").await, None);

    // Into a revoked family: stored revoked, and the access token is in the revocation feed.
    let (_, cursor) = drain_revocations(store, 0).await;
    assert_eq!(store.revoke_family("iss-fam-gone").await, Ok(Vec::new()));
    let a5 = access("iss-a5", "iss-c", Some("iss-fam-gone"), t, Some(t + 3600));
    let r5 = refresh(
        "iss-r5",
        "iss-r5-value",
        "iss-c",
        Some("iss-fam-gone"),
        t,
        None,
    );
    assert_eq!(
        issue_tokens(store, issue(&c, None, vec![a5, r5])).await,
        IssueOutcome::Revoked
    );
    assert_eq!(state_of(store, "iss-a5").await, TokenState::Revoked);
    assert_eq!(state_of(store, "iss-r5").await, TokenState::Revoked);
    let (fresh, _) = drain_revocations(store, cursor).await;
    assert!(
        fresh.iter().any(|r| r.jti == "iss-a5"),
        "the revoked access token is logged: {fresh:?}"
    );

    // Rotation: once.
    let old = refresh(
        "iss-old",
        "iss-old-value",
        "iss-c",
        Some("iss-fam"),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![old]).await);
    let new = vec![
        access("iss-a6", "iss-c", Some("iss-fam"), t + 1, Some(t + 3600)),
        refresh(
            "iss-r6",
            "iss-r6-value",
            "iss-c",
            Some("iss-fam"),
            t + 1,
            None,
        ),
    ];
    assert_eq!(
        issue_tokens(store, issue(&c, Some("iss-old"), new)).await,
        IssueOutcome::Stored
    );
    assert_eq!(state_of(store, "iss-old").await, TokenState::Rotated);
    assert_eq!(state_of(store, "iss-r6").await, TokenState::Active);
    let again = vec![
        access("iss-a7", "iss-c", Some("iss-fam"), t + 2, Some(t + 3600)),
        refresh(
            "iss-r7",
            "iss-r7-value",
            "iss-c",
            Some("iss-fam"),
            t + 2,
            None,
        ),
    ];
    assert_eq!(
        issue_tokens(store, issue(&c, Some("iss-old"), again)).await,
        IssueOutcome::NotRotated
    );
    assert_eq!(get_token(store, "iss-a7").await, None, "nothing stored");
    assert_eq!(get_token(store, "iss-r7").await, None, "nothing stored");
    // A rotation for a stale client record does not rotate.
    let stale_rotation = vec![access("iss-a8", "iss-c", Some("iss-fam"), t, Some(t + 60))];
    assert_eq!(
        issue_tokens(store, issue(&stale, Some("iss-r6"), stale_rotation)).await,
        IssueOutcome::ClientChanged
    );
    assert_eq!(state_of(store, "iss-r6").await, TokenState::Active);
}

/// Many `issue_tokens` calls at once (one group commit on the SQL stores): each gets the
/// outcome it would have had alone — fresh clients store, stale records and unknown clients
/// store nothing, concurrent rotations of one refresh token have one winner, and a call whose
/// token id is taken fails alone, without failing the others committed with it.
async fn check_issue_race(instances: &[Arc<dyn Store>], prefix: &str) {
    const CALLS: usize = 96;
    let t = now();
    let store = instances[0].as_ref();
    let id = format!("{prefix}-grp");
    register(store, &[&id]).await;
    let fresh = client(&id);
    let stale = ClientRecord {
        name: "renamed since".into(),
        ..fresh.clone()
    };
    let family = format!("{prefix}-grp-fam");
    let old = refresh(
        &format!("{prefix}-grp-old"),
        &format!("{prefix}-grp-old-value"),
        &id,
        Some(&family),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![old.clone()]).await);
    let taken = access(&format!("{prefix}-grp-taken"), &id, None, t, Some(t + 60));
    assert!(insert_tokens(store, vec![taken.clone()]).await);

    let barrier = Arc::new(Barrier::new(CALLS));
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let instance = Arc::clone(&instances[i % instances.len()]);
        let barrier = Arc::clone(&barrier);
        let token = access(&format!("{prefix}-grp-{i}"), &id, None, t, Some(t + 3600));
        let call = match i % 4 {
            // Plain issues.
            0 => issue(&fresh, None, vec![token]),
            // A stale record.
            1 => issue(&stale, None, vec![token]),
            // Rotations of one refresh token.
            2 => issue(
                &fresh,
                Some(&old.id),
                vec![
                    TokenRecord {
                        family_id: Some(family.clone()),
                        ..token
                    },
                    refresh(
                        &format!("{prefix}-grp-r{i}"),
                        &format!("{prefix}-grp-r{i}-value"),
                        &id,
                        Some(&family),
                        t,
                        None,
                    ),
                ],
            ),
            // Every eighth call reuses a taken id; the others are plain.
            _ if i % 8 == 3 => issue(&fresh, None, vec![taken.clone()]),
            _ => issue(&fresh, None, vec![token]),
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            instance.issue_tokens(call).await
        }));
    }
    let mut rotations_won = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.expect("issue_tokens task");
        let stored = get_token(store, &format!("{prefix}-grp-{i}")).await;
        match i % 4 {
            0 => {
                assert_eq!(result, Ok(IssueOutcome::Stored), "call {i}");
                assert!(stored.is_some(), "call {i}'s token is stored");
            }
            1 => {
                assert_eq!(result, Ok(IssueOutcome::ClientChanged), "call {i}");
                assert_eq!(stored, None, "call {i} stored nothing");
            }
            2 => match result {
                Ok(IssueOutcome::Stored) => {
                    assert!(stored.is_some(), "winner {i}'s token is stored");
                    rotations_won.push(i);
                }
                Ok(IssueOutcome::NotRotated) => {
                    assert_eq!(stored, None, "loser {i} stored nothing")
                }
                other => panic!("rotation {i}: {other:?}"),
            },
            _ if i % 8 == 3 => assert!(
                matches!(result, Err(StoreError::Conflict(_))),
                "call {i} reused a taken id: {result:?}"
            ),
            _ => {
                assert_eq!(result, Ok(IssueOutcome::Stored), "call {i}");
                assert!(stored.is_some(), "call {i}'s token is stored");
            }
        }
    }
    assert_eq!(
        rotations_won.len(),
        1,
        "one rotation wins: {rotations_won:?}"
    );
    assert_eq!(state_of(store, &old.id).await, TokenState::Rotated);
    assert_eq!(
        get_token(store, &taken.id).await,
        Some(taken),
        "the taken id is untouched"
    );
}

/// A client disabled (and its tokens revoked, as the admin API does) while tokens are being
/// issued for it: no token issued with `Stored` outlives the revocation.
async fn check_issue_against_disable(instances: &[Arc<dyn Store>], prefix: &str) {
    const CALLS: usize = 64;
    let t = now();
    let store = Arc::clone(&instances[0]);
    let id = format!("{prefix}-dis");
    register(store.as_ref(), &[&id]).await;
    let record = client(&id);
    let barrier = Arc::new(Barrier::new(CALLS + 1));
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let instance = Arc::clone(&instances[i % instances.len()]);
        let barrier = Arc::clone(&barrier);
        let call = issue(
            &record,
            None,
            vec![access(
                &format!("{prefix}-dis-{i}"),
                &id,
                None,
                t,
                Some(t + 3600),
            )],
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Spread over the disable.
            tokio::time::sleep(Duration::from_micros(200 * (i as u64 % 16))).await;
            instance.issue_tokens(call).await
        }));
    }
    let admin = Arc::clone(instances.last().expect("an instance"));
    let disabled = ClientRecord {
        status: ClientStatus::Disabled,
        ..record.clone()
    };
    barrier.wait().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(admin.update_client(disabled).await, Ok(true));
    let revoked = admin
        .revoke_client_tokens(&id)
        .await
        .expect("revoke_client_tokens");
    let mut stored = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("issue task") {
            Ok(IssueOutcome::Stored) => {
                stored += 1;
                assert_eq!(
                    state_of(store.as_ref(), &format!("{prefix}-dis-{i}")).await,
                    TokenState::Revoked,
                    "token {i}, stored before the disable, is revoked by it"
                );
            }
            Ok(IssueOutcome::ClientChanged) => assert_eq!(
                get_token(store.as_ref(), &format!("{prefix}-dis-{i}")).await,
                None,
                "token {i}, refused, is not stored"
            ),
            other => panic!("issue {i}: {other:?}"),
        }
    }
    assert_eq!(
        revoked.len(),
        stored,
        "the revocation caught every stored token"
    );
    assert_eq!(
        store.client_tokens(&id, t).await.expect("client_tokens"),
        Vec::new(),
        "no live token outlives the disable"
    );
}

/// Revocations racing each other and issues (one group commit on the SQL stores): each token
/// revoked twice at once is returned by exactly one of the two calls, every one ends revoked
/// and in the revocation feed, and the issues beside them are stored.
async fn check_revoke_race(instances: &[Arc<dyn Store>], prefix: &str) {
    const TOKENS: usize = 16;
    let t = now();
    let store = instances[0].as_ref();
    let id = format!("{prefix}-rvk");
    register(store, &[&id]).await;
    let record = client(&id);
    let (_, cursor) = drain_revocations(store, 0).await;
    for i in 0..TOKENS {
        let token = access(&format!("{prefix}-rvk-{i}"), &id, None, t, Some(t + 3600));
        assert!(insert_tokens(store, vec![token]).await);
    }
    let barrier = Arc::new(Barrier::new(3 * TOKENS));
    let mut revokes = Vec::new();
    let mut issues = Vec::new();
    for i in 0..3 * TOKENS {
        let instance = Arc::clone(&instances[i % instances.len()]);
        let barrier = Arc::clone(&barrier);
        if i < 2 * TOKENS {
            let token_id = format!("{prefix}-rvk-{}", i % TOKENS);
            revokes.push((
                i % TOKENS,
                tokio::spawn(async move {
                    barrier.wait().await;
                    instance.revoke_token(&token_id).await
                }),
            ));
        } else {
            let call = issue(
                &record,
                None,
                vec![access(
                    &format!("{prefix}-rvk-new-{i}"),
                    &id,
                    None,
                    t,
                    Some(t + 60),
                )],
            );
            issues.push(tokio::spawn(async move {
                barrier.wait().await;
                instance.issue_tokens(call).await
            }));
        }
    }
    let mut returned = [0usize; TOKENS];
    for (i, task) in revokes {
        if let Some(token) = task.await.expect("revoke task").expect("revoke_token") {
            assert_eq!(token.id, format!("{prefix}-rvk-{i}"));
            assert_eq!(token.state, TokenState::Revoked);
            returned[i] += 1;
        }
    }
    assert_eq!(
        returned, [1; TOKENS],
        "each token is returned by exactly one revocation"
    );
    for task in issues {
        assert_eq!(task.await.expect("issue task"), Ok(IssueOutcome::Stored));
    }
    let (fresh, _) = drain_revocations(store, cursor).await;
    for i in 0..TOKENS {
        let jti = format!("{prefix}-rvk-{i}");
        assert_eq!(state_of(store, &jti).await, TokenState::Revoked);
        assert!(
            fresh.iter().any(|r| r.jti == jti),
            "{jti} is in the revocation feed"
        );
    }
}

async fn check_revoke_token(store: &dyn Store) {
    let t = now();
    register(store, &["rvk-a"]).await;
    let a = access("rvk-access", "rvk-a", Some("rvk-fam"), t, Some(t + 3600));
    let r = refresh(
        "rvk-refresh",
        "rvk-value",
        "rvk-a",
        Some("rvk-fam"),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![a.clone(), r.clone()]).await);

    assert_eq!(
        store.revoke_token("rvk-access").await,
        Ok(Some(with_state(&a, TokenState::Revoked))),
        "revoke_token returns the token it revoked"
    );
    assert_eq!(
        store.revoke_token("rvk-access").await,
        Ok(None),
        "a second revocation returns nothing"
    );
    assert_eq!(state_of(store, "rvk-access").await, TokenState::Revoked);
    assert_eq!(store.revoke_token("rvk-unknown").await, Ok(None));
    assert_eq!(
        state_of(store, "rvk-refresh").await,
        TokenState::Active,
        "the sibling is untouched"
    );

    assert_eq!(
        store.revoke_token("rvk-refresh").await,
        Ok(Some(with_state(&r, TokenState::Revoked)))
    );
    assert_eq!(
        store.find_refresh(&TokenHash::of("rvk-value")).await,
        Ok(Some(with_state(&r, TokenState::Revoked))),
        "find_refresh returns a revoked token too"
    );
    assert_eq!(store.revoke_token("rvk-refresh").await, Ok(None));

    // A rotated refresh token can still be revoked.
    let old = refresh(
        "rvk-old",
        "rvk-old-value",
        "rvk-a",
        Some("rvk-fam-2"),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![old.clone()]).await);
    let new = refresh(
        "rvk-new",
        "rvk-new-value",
        "rvk-a",
        Some("rvk-fam-2"),
        t,
        None,
    );
    assert_eq!(store.rotate_refresh("rvk-old", vec![new]).await, Ok(true));
    assert_eq!(
        store.revoke_token("rvk-old").await,
        Ok(Some(with_state(&old, TokenState::Revoked))),
        "a rotated token is not revoked yet"
    );
}

async fn check_revoke_family(store: &dyn Store) {
    let t = now();
    register(store, &["fam-a"]).await;
    let family = Some("fam-1");
    let a1 = access("fam-a1", "fam-a", family, t, Some(t + 3600));
    let r1 = refresh(
        "fam-r1",
        "fam-value-1",
        "fam-a",
        family,
        t,
        Some(t + 86_400),
    );
    assert!(insert_tokens(store, vec![a1.clone(), r1.clone()]).await);
    let a2 = access("fam-a2", "fam-a", family, t + 5, Some(t + 3605));
    let r2 = refresh("fam-r2", "fam-value-2", "fam-a", family, t + 5, None);
    assert!(
        store
            .rotate_refresh("fam-r1", vec![a2.clone(), r2.clone()])
            .await
            .expect("rotate_refresh")
    );
    assert!(
        store
            .revoke_token("fam-a2")
            .await
            .expect("revoke_token")
            .is_some()
    );
    // Another family of the same client.
    let other = access("fam-other", "fam-a", Some("fam-2"), t, Some(t + 3600));
    let other_refresh = refresh(
        "fam-other-r",
        "fam-other-v",
        "fam-a",
        Some("fam-2"),
        t,
        None,
    );
    assert!(insert_tokens(store, vec![other.clone(), other_refresh]).await);
    // A token without a family.
    let loose = access("fam-loose", "fam-a", None, t, Some(t + 3600));
    assert!(insert_tokens(store, vec![loose]).await);

    let revoked = store.revoke_family("fam-1").await.expect("revoke_family");
    assert_eq!(
        id_set(&revoked),
        BTreeSet::from(["fam-a1", "fam-r1", "fam-r2"]),
        "revoke_family returns the active and rotated tokens, not the one revoked before"
    );
    let mut expected = vec![
        with_state(&a1, TokenState::Revoked),
        with_state(&r1, TokenState::Revoked),
        with_state(&r2, TokenState::Revoked),
    ];
    let mut revoked = revoked;
    revoked.sort_by(|x, y| x.id.cmp(&y.id));
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(revoked, expected, "the returned records, revoked");
    for id in ["fam-a1", "fam-r1", "fam-a2", "fam-r2"] {
        assert_eq!(state_of(store, id).await, TokenState::Revoked, "{id}");
    }
    for id in ["fam-other", "fam-other-r", "fam-loose"] {
        assert_eq!(
            state_of(store, id).await,
            TokenState::Active,
            "{id} is not of the family"
        );
    }
    assert_eq!(
        store.revoke_family("fam-1").await,
        Ok(Vec::new()),
        "a second revoke_family revokes nothing new"
    );
    assert_eq!(
        store.rotate_refresh("fam-r2", Vec::new()).await,
        Ok(false),
        "a revoked family's refresh token does not rotate"
    );

    // Tokens issued into the revoked family afterwards are stored revoked.
    let late_a = access("fam-late-a", "fam-a", family, t + 9, Some(t + 3609));
    let late_r = refresh("fam-late-r", "fam-late-value", "fam-a", family, t + 9, None);
    assert_eq!(
        store
            .insert_tokens(vec![late_a.clone(), late_r.clone()])
            .await,
        Ok(false),
        "insert_tokens into a revoked family"
    );
    assert_eq!(
        store.token("fam-late-a").await,
        Ok(Some(with_state(&late_a, TokenState::Revoked)))
    );
    assert_eq!(
        store.find_refresh(&TokenHash::of("fam-late-value")).await,
        Ok(Some(with_state(&late_r, TokenState::Revoked)))
    );
    assert!(
        store
            .revoked_access_tokens(t)
            .await
            .expect("revoked_access_tokens")
            .iter()
            .any(|tok| tok.id == "fam-late-a"),
        "a token stored revoked is on the denylist"
    );

    // A family revoked before any of its tokens was stored: the double-redeemed code whose
    // second redemption got there first.
    assert_eq!(store.revoke_family("fam-ghost").await, Ok(Vec::new()));
    let ghost_a = access("fam-ghost-a", "fam-a", Some("fam-ghost"), t, Some(t + 3600));
    let ghost_r = refresh(
        "fam-ghost-r",
        "fam-ghost-v",
        "fam-a",
        Some("fam-ghost"),
        t,
        None,
    );
    assert_eq!(
        store.insert_tokens(vec![ghost_a, ghost_r]).await,
        Ok(false),
        "insert_tokens into a family revoked before it had tokens"
    );
    assert_eq!(state_of(store, "fam-ghost-a").await, TokenState::Revoked);
    assert_eq!(state_of(store, "fam-ghost-r").await, TokenState::Revoked);

    // Other families still admit tokens.
    let fine = access("fam-fine", "fam-a", Some("fam-2"), t, Some(t + 3600));
    assert_eq!(store.insert_tokens(vec![fine]).await, Ok(true));
    assert_eq!(state_of(store, "fam-fine").await, TokenState::Active);
}

/// Revoking a family while tokens are stored into it (`insert_tokens`, as a code's first
/// redemption does) or rotated within it (`rotate_refresh`), many times at once, spread over
/// `instances`: whatever the order, once both are done no token of the family is active, and
/// `revoke_family` returned exactly the tokens that were live when it ran.
async fn check_family_revocation_race(instances: &[Arc<dyn Store>], prefix: &str) {
    // Rounds of a few pairs each, so that every contender has a connection at once.
    const ROUNDS: usize = 30;
    const PAIRS: usize = 4;
    let client_id = format!("{prefix}-famrace");
    register(instances[0].as_ref(), &[&client_id]).await;
    for round in 0..ROUNDS {
        let trials: Vec<usize> = (round * PAIRS..(round + 1) * PAIRS).collect();
        family_revocation_round(instances, prefix, &client_id, &trials).await;
    }
}

async fn family_revocation_round(
    instances: &[Arc<dyn Store>],
    prefix: &str,
    client_id: &str,
    trials: &[usize],
) {
    let t = now();
    let store = instances[0].as_ref();
    // Odd trials rotate the family's refresh token, even ones store new tokens into it.
    for &i in trials.iter().filter(|&&i| i % 2 == 1) {
        let old = refresh(
            &format!("{prefix}-famrace-{i}-old"),
            &format!("{prefix}-famrace-{i}-old-value"),
            client_id,
            Some(&format!("{prefix}-famrace-{i}")),
            t,
            None,
        );
        assert!(insert_tokens(store, vec![old]).await);
    }

    let barrier = Arc::new(Barrier::new(2 * trials.len()));
    let mut pairs = Vec::new();
    for &i in trials {
        let family = format!("{prefix}-famrace-{i}");
        let issued = vec![
            access(
                &format!("{family}-a"),
                client_id,
                Some(&family),
                t,
                Some(t + 3600),
            ),
            refresh(
                &format!("{family}-r"),
                &format!("{family}-r-value"),
                client_id,
                Some(&family),
                t,
                None,
            ),
        ];
        let writer = Arc::clone(&instances[i % instances.len()]);
        let revoker = Arc::clone(&instances[(i + 1) % instances.len()]);
        let (barrier_w, barrier_r) = (Arc::clone(&barrier), Arc::clone(&barrier));
        let old_id = format!("{family}-old");
        let write = tokio::spawn(async move {
            barrier_w.wait().await;
            if i % 2 == 0 {
                writer.insert_tokens(issued).await
            } else {
                writer.rotate_refresh(&old_id, issued).await
            }
        });
        let revoke = tokio::spawn(async move {
            barrier_r.wait().await;
            revoker.revoke_family(&family).await
        });
        pairs.push((i, write, revoke));
    }
    for (i, write, revoke) in pairs {
        let family = format!("{prefix}-famrace-{i}");
        let wrote = write
            .await
            .expect("writer task")
            .expect("insert_tokens / rotate_refresh against revoke_family");
        let revoked = revoke
            .await
            .expect("revoke_family task")
            .expect("revoke_family against a writer");
        let revoked = id_set(&revoked);
        let new_ids = [format!("{family}-a"), format!("{family}-r")];
        let what = if i % 2 == 0 {
            "insert_tokens"
        } else {
            "rotate_refresh"
        };
        for id in &new_ids {
            if let Some(tok) = get_token(store, id).await {
                assert_eq!(
                    tok.state,
                    TokenState::Revoked,
                    "{id}: {what} returned {wrote} alongside revoke_family of its family, \
                     which returned {revoked:?}; the token is left {:?}",
                    tok.state
                );
            }
        }
        if i % 2 == 0 {
            // Stored either way; live (true) only if it came first, and then revoked by it.
            for id in &new_ids {
                assert_eq!(
                    revoked.contains(id.as_str()),
                    wrote,
                    "{id}: insert_tokens returned {wrote}, revoke_family returned {revoked:?}"
                );
            }
        } else {
            let old_id = format!("{family}-old");
            assert!(
                revoked.contains(old_id.as_str()),
                "{old_id}: revoke_family revokes the rotated or active old token: {revoked:?}"
            );
            for id in &new_ids {
                assert_eq!(
                    get_token(store, id).await.is_some(),
                    wrote,
                    "{id} is stored if and only if rotate_refresh returned true"
                );
                assert_eq!(
                    revoked.contains(id.as_str()),
                    wrote,
                    "{id}: rotate_refresh returned {wrote}, revoke_family returned {revoked:?}"
                );
            }
        }
    }
}

async fn check_revoke_client_tokens(store: &dyn Store) {
    let t = now();
    register(store, &["rct-x", "rct-y"]).await;
    let x_access = access("rct-x-a", "rct-x", Some("rct-f"), t, Some(t + 3600));
    let x_refresh = refresh("rct-x-r", "rct-x-value", "rct-x", Some("rct-f"), t, None);
    let x_loose = access("rct-x-cc", "rct-x", None, t, None);
    let x_before = access("rct-x-old", "rct-x", None, t, Some(t + 3600));
    let y_access = access("rct-y-a", "rct-y", Some("rct-g"), t, Some(t + 3600));
    assert!(
        insert_tokens(
            store,
            vec![x_access, x_refresh, x_loose, x_before, y_access.clone()]
        )
        .await
    );
    let x_new = refresh("rct-x-r2", "rct-x-value-2", "rct-x", Some("rct-f"), t, None);
    assert!(
        store
            .rotate_refresh("rct-x-r", vec![x_new])
            .await
            .expect("rotate_refresh")
    );
    assert!(
        store
            .revoke_token("rct-x-old")
            .await
            .expect("revoke_token")
            .is_some()
    );

    let revoked = store
        .revoke_client_tokens("rct-x")
        .await
        .expect("revoke_client_tokens");
    assert_eq!(
        id_set(&revoked),
        BTreeSet::from(["rct-x-a", "rct-x-cc", "rct-x-r", "rct-x-r2"]),
        "every token not revoked before, rotated ones too"
    );
    assert!(
        revoked
            .iter()
            .all(|tok| tok.state == TokenState::Revoked && tok.client_id == "rct-x"),
        "returned as revoked: {revoked:?}"
    );
    for id in ["rct-x-a", "rct-x-r", "rct-x-cc", "rct-x-old", "rct-x-r2"] {
        assert_eq!(state_of(store, id).await, TokenState::Revoked, "{id}");
    }
    assert_eq!(
        store.token("rct-y-a").await,
        Ok(Some(y_access)),
        "another client's token is untouched"
    );
    assert_eq!(
        store.revoke_client_tokens("rct-x").await,
        Ok(Vec::new()),
        "a second call revokes nothing new"
    );
    assert_eq!(
        store.revoke_client_tokens("rct-unknown").await,
        Ok(Vec::new())
    );
    assert_eq!(store.client_tokens("rct-x", t).await, Ok(Vec::new()));

    // Deleting the client (as the server does after revoking) keeps the denylist.
    assert_eq!(store.delete_client("rct-x").await, Ok(true));
    let denied: HashSet<String> = store
        .revoked_access_tokens(t)
        .await
        .expect("revoked_access_tokens")
        .into_iter()
        .map(|tok| tok.id)
        .collect();
    for id in ["rct-x-a", "rct-x-cc", "rct-x-old"] {
        assert!(
            denied.contains(id),
            "{id}: a deleted client's revoked access tokens stay on the denylist"
        );
    }
}

async fn check_client_tokens(store: &dyn Store) {
    let t = now();
    register(store, &["ct-a", "ct-b"]).await;
    let k1 = refresh("ct-k1", "ct-k1-value", "ct-a", Some("ct-f1"), t - 50, None);
    let k2 = access("ct-k2", "ct-a", Some("ct-f1"), t - 40, Some(t + 1));
    let k3 = access("ct-k3", "ct-a", None, t - 30, Some(t + 100));
    let at_now = access("ct-at-now", "ct-a", None, t - 45, Some(t));
    let expired = access("ct-expired", "ct-a", None, t - 44, Some(t - 5));
    let revoked = access("ct-revoked", "ct-a", None, t - 35, Some(t + 100));
    let rotated = refresh(
        "ct-rotated",
        "ct-rotated-v",
        "ct-a",
        Some("ct-f2"),
        t - 60,
        None,
    );
    let other = access("ct-other", "ct-b", None, t - 33, Some(t + 100));
    // Inserted out of order, so that the result must be sorted.
    for batch in [
        vec![k3.clone()],
        vec![other.clone()],
        vec![k2.clone()],
        vec![rotated],
        vec![expired, at_now],
        vec![revoked],
        vec![k1.clone()],
    ] {
        assert!(insert_tokens(store, batch).await);
    }
    assert!(
        store
            .revoke_token("ct-revoked")
            .await
            .expect("revoke_token")
            .is_some()
    );
    let k5 = refresh(
        "ct-k5",
        "ct-k5-value",
        "ct-a",
        Some("ct-f2"),
        t - 10,
        Some(t + 1000),
    );
    let k4 = access("ct-k4", "ct-a", Some("ct-f2"), t - 20, Some(t + 50));
    assert!(
        store
            .rotate_refresh("ct-rotated", vec![k5.clone(), k4.clone()])
            .await
            .expect("rotate_refresh")
    );

    let live = store.client_tokens("ct-a", t).await.expect("client_tokens");
    assert_eq!(
        ids(&live),
        ["ct-k1", "ct-k2", "ct-k3", "ct-k4", "ct-k5"],
        "active, unexpired at now (expires_at == now is expired), sorted by issued_at"
    );
    assert_eq!(live, vec![k1, k2, k3.clone(), k4, k5]);
    assert_eq!(
        ids(&store
            .client_tokens("ct-a", t + 2)
            .await
            .expect("client_tokens")),
        ["ct-k1", "ct-k3", "ct-k4", "ct-k5"],
        "later, ct-k2 has expired"
    );
    assert_eq!(
        ids(&store
            .client_tokens("ct-a", t + 10_000)
            .await
            .expect("client_tokens")),
        ["ct-k1"],
        "much later, only the unlimited token"
    );
    assert_eq!(
        ids(&store
            .client_tokens("ct-a", u64::MAX)
            .await
            .expect("client_tokens at u64::MAX")),
        ["ct-k1"],
        "at the end of time, only the unlimited token"
    );
    assert_eq!(
        store.client_tokens("ct-b", t).await,
        Ok(vec![other]),
        "filtered by client"
    );
    assert_eq!(store.client_tokens("ct-nobody", t).await, Ok(Vec::new()));
}

async fn check_revoked_access_tokens(store: &dyn Store) {
    let t = now();
    register(store, &["rat-a"]).await;
    let v1 = access("rat-v1", "rat-a", None, t - 10, Some(t + 100));
    let v2 = access("rat-v2", "rat-a", None, t - 10, None);
    let v3 = access("rat-v3", "rat-a", None, t - 10, Some(t - 1));
    let at_now = access("rat-at-now", "rat-a", None, t - 10, Some(t));
    let v4 = refresh(
        "rat-v4",
        "rat-v4-value",
        "rat-a",
        None,
        t - 10,
        Some(t + 100),
    );
    let v5 = access("rat-v5", "rat-a", None, t - 10, Some(t + 100));
    assert!(insert_tokens(store, vec![v1.clone(), v2.clone(), v3, at_now, v4, v5]).await);
    for id in ["rat-v1", "rat-v2", "rat-v3", "rat-at-now", "rat-v4"] {
        assert!(
            store
                .revoke_token(id)
                .await
                .expect("revoke_token")
                .is_some(),
            "{id}"
        );
    }

    let ours = |tokens: Vec<TokenRecord>| -> Vec<TokenRecord> {
        let mut ours: Vec<TokenRecord> = tokens
            .into_iter()
            .filter(|tok| tok.client_id == "rat-a")
            .collect();
        ours.sort_by(|x, y| x.id.cmp(&y.id));
        ours
    };
    let listed = ours(
        store
            .revoked_access_tokens(t)
            .await
            .expect("revoked_access_tokens"),
    );
    assert_eq!(
        listed,
        vec![
            with_state(&v1, TokenState::Revoked),
            with_state(&v2, TokenState::Revoked)
        ],
        "revoked access tokens unexpired at now (expires_at == now is expired); \
         no refresh tokens, no active ones"
    );
    let later = ours(
        store
            .revoked_access_tokens(t + 200)
            .await
            .expect("revoked_access_tokens"),
    );
    assert_eq!(ids(&later), ["rat-v2"], "later, only the unlimited one");
    let at_the_end = ours(
        store
            .revoked_access_tokens(u64::MAX)
            .await
            .expect("revoked_access_tokens at u64::MAX"),
    );
    assert_eq!(ids(&at_the_end), ["rat-v2"], "at the end of time, too");
    let all = store
        .revoked_access_tokens(t)
        .await
        .expect("revoked_access_tokens");
    assert!(
        all.iter().all(|tok| tok.kind == TokenKind::Access
            && tok.state == TokenState::Revoked
            && !tok.is_expired(t)),
        "only revoked, unexpired access tokens: {all:?}"
    );
}

async fn check_revocations_since(store: &dyn Store) {
    let t = now();
    register(store, &["rs-a"]).await;

    // From 0: every access revocation so far (at least the unexpired ones), no refresh token.
    let (seen, cursor) = drain_revocations(store, 0).await;
    let seen_jtis: HashSet<&str> = seen.iter().map(|r| r.jti.as_str()).collect();
    let denylist = store
        .revoked_access_tokens(t)
        .await
        .expect("revoked_access_tokens");
    assert!(!denylist.is_empty(), "earlier checks revoked access tokens");
    for tok in &denylist {
        assert!(
            seen_jtis.contains(tok.id.as_str()),
            "revocations_since(0) includes {} ({:?})",
            tok.id,
            tok.family_id
        );
        assert!(
            seen.contains(&RevokedAccess {
                jti: tok.id.clone(),
                expires_at: tok.expires_at
            }),
            "revocations_since(0) reports {}'s expiry {:?}",
            tok.id,
            tok.expires_at
        );
    }
    for entry in &seen {
        let tok = get_token(store, &entry.jti)
            .await
            .unwrap_or_else(|| panic!("{} is a stored token", entry.jti));
        assert_eq!(
            tok.kind,
            TokenKind::Access,
            "{}: only access tokens",
            entry.jti
        );
        assert_eq!(tok.state, TokenState::Revoked, "{}", entry.jti);
    }
    for refresh_id in ["rvk-refresh", "fam-r1", "fam-late-r", "rct-x-r", "rat-v4"] {
        assert!(
            !seen_jtis.contains(refresh_id),
            "refresh token {refresh_id} is not in the access-token feed"
        );
    }

    // A cursor beyond anything handed out finds nothing.
    let (beyond, _) = store
        .revocations_since(u64::MAX)
        .await
        .expect("revocations_since(u64::MAX)");
    assert_eq!(beyond, Vec::new(), "revocations_since(u64::MAX)");

    // Nothing new since the returned cursor (entries may repeat).
    let (again, cursor2) = drain_revocations(store, cursor).await;
    assert!(
        again.iter().all(|r| seen_jtis.contains(r.jti.as_str())),
        "nothing new after cursor {cursor}: {again:?}"
    );

    // A later revocation shows up after that cursor; a refresh token's does not.
    let a = access("rs-a1", "rs-a", Some("rs-f"), t, Some(t + 3600));
    let unl = access("rs-unl", "rs-a", None, t, None);
    let r = refresh("rs-r1", "rs-value", "rs-a", Some("rs-f"), t, Some(t + 3600));
    let fa = access("rs-fa", "rs-a", Some("rs-g"), t, Some(t + 1800));
    let fr = refresh("rs-fr", "rs-fr-value", "rs-a", Some("rs-g"), t, None);
    assert!(insert_tokens(store, vec![a, unl, r, fa, fr]).await);
    store.revoke_token("rs-r1").await.expect("revoke_token");
    store.revoke_token("rs-a1").await.expect("revoke_token");
    store.revoke_token("rs-unl").await.expect("revoke_token");
    let (fresh, cursor3) = drain_revocations(store, cursor2).await;
    assert!(
        cursor3 > cursor,
        "the cursor moved on after new revocations"
    );
    assert!(
        fresh.contains(&RevokedAccess {
            jti: "rs-a1".into(),
            expires_at: Some(t + 3600)
        }),
        "a later revocation shows up after the cursor: {fresh:?}"
    );
    assert!(
        fresh.contains(&RevokedAccess {
            jti: "rs-unl".into(),
            expires_at: None
        }),
        "an unlimited token's revocation, with no expiry: {fresh:?}"
    );
    assert!(
        !fresh.iter().any(|r| r.jti == "rs-r1"),
        "a refresh token's revocation is not in the feed: {fresh:?}"
    );
    assert!(
        fresh
            .iter()
            .all(|r| r.jti == "rs-a1" || r.jti == "rs-unl" || seen_jtis.contains(r.jti.as_str())),
        "only the new revocations, or repeats: {fresh:?}"
    );

    // Revocations by family and by client feed it too.
    store.revoke_family("rs-g").await.expect("revoke_family");
    let (by_family, cursor4) = drain_revocations(store, cursor3).await;
    assert!(
        by_family.contains(&RevokedAccess {
            jti: "rs-fa".into(),
            expires_at: Some(t + 1800)
        }),
        "revoke_family feeds revocations_since: {by_family:?}"
    );
    assert!(!by_family.iter().any(|r| r.jti == "rs-fr"));
    let late = access("rs-late", "rs-a", Some("rs-g"), t, Some(t + 900));
    assert_eq!(store.insert_tokens(vec![late]).await, Ok(false));
    let cc = access("rs-cc", "rs-a", None, t, Some(t + 600));
    assert!(insert_tokens(store, vec![cc]).await);
    store
        .revoke_client_tokens("rs-a")
        .await
        .expect("revoke_client_tokens");
    let (by_client, _) = drain_revocations(store, cursor4).await;
    assert!(
        by_client.contains(&RevokedAccess {
            jti: "rs-cc".into(),
            expires_at: Some(t + 600)
        }),
        "revoke_client_tokens feeds revocations_since: {by_client:?}"
    );
    let (from_zero, _) = drain_revocations(store, 0).await;
    assert!(
        from_zero.iter().any(|r| r.jti == "rs-late"),
        "a token stored revoked (into a revoked family) is in the feed: {from_zero:?}"
    );
}

/// A store with a push channel ([`Store::revocation_signal`]) wakes its listener when an
/// access token is revoked, on any instance. Revokes a fresh token every half second until the
/// signal moves, so that a listener still subscribing does not make the check flaky.
async fn check_revocation_signal(revoker: &dyn Store, listener: &dyn Store, prefix: &str) {
    let Some(mut signal) = listener.revocation_signal() else {
        return;
    };
    let t = now();
    let client_id = format!("{prefix}-sig");
    register(revoker, &[&client_id]).await;
    signal.borrow_and_update();
    for attempt in 0..20 {
        let id = format!("{prefix}-sig-a{attempt}");
        let tok = access(&id, &client_id, None, t, Some(t + 3600));
        assert!(insert_tokens(revoker, vec![tok]).await);
        assert!(
            revoker
                .revoke_token(&id)
                .await
                .expect("revoke_token")
                .is_some()
        );
        match tokio::time::timeout(Duration::from_millis(500), signal.changed()).await {
            Ok(changed) => {
                changed.expect("the revocation signal's sender is alive");
                return;
            }
            Err(_) => continue,
        }
    }
    panic!("revocation_signal did not move within 10 s of revocations");
}

async fn check_purge_expired(store: &dyn Store) {
    // Timestamps far in the past, so that no other check's records are old enough to go.
    register(store, &["pg-a"]).await;
    let old_code = code("pg-code-old", "pg-a", "pg-f", 500);
    let new_code = code("pg-code-new", "pg-a", "pg-f", 5000);
    store
        .insert_code(old_code.clone())
        .await
        .expect("insert_code");
    store
        .insert_code(new_code.clone())
        .await
        .expect("insert_code");
    let old_access = access("pg-old-a", "pg-a", Some("pg-f"), 100, Some(500));
    let old_refresh = refresh(
        "pg-old-r",
        "pg-old-value",
        "pg-a",
        Some("pg-f"),
        100,
        Some(600),
    );
    let old_revoked = access("pg-old-rv", "pg-a", None, 100, Some(700));
    let new_access = access("pg-new-a", "pg-a", Some("pg-f"), 100, Some(5000));
    let unlimited = refresh("pg-unl", "pg-unl-value", "pg-a", Some("pg-f"), 100, None);
    assert!(
        insert_tokens(
            store,
            vec![
                old_access,
                old_refresh,
                old_revoked,
                new_access.clone(),
                unlimited.clone()
            ]
        )
        .await
    );
    assert!(
        store
            .revoke_token("pg-old-rv")
            .await
            .expect("revoke_token")
            .is_some()
    );
    assert!(
        store
            .find_refresh(&TokenHash::of("pg-old-value"))
            .await
            .expect("find_refresh")
            .is_some(),
        "not purged yet"
    );

    assert_eq!(
        store.purge_expired(1000).await,
        Ok(4),
        "one code and three tokens expired before 1000"
    );
    assert_eq!(
        store.find_refresh(&TokenHash::of("pg-old-value")).await,
        Ok(None),
        "a purged refresh token is not found by hash"
    );
    assert_eq!(store.token("pg-old-r").await, Ok(None));
    assert_eq!(store.token("pg-old-a").await, Ok(None));
    assert_eq!(store.token("pg-old-rv").await, Ok(None));
    assert_eq!(store.take_code(&old_code.hash, "pg-a").await, Ok(None));
    assert_eq!(store.token("pg-new-a").await, Ok(Some(new_access)));
    assert_eq!(
        store.find_refresh(&TokenHash::of("pg-unl-value")).await,
        Ok(Some(unlimited)),
        "an unlimited token is kept"
    );
    assert_eq!(
        store.take_code(&new_code.hash, "pg-a").await,
        Ok(Some((
            CodeRecord {
                used: true,
                ..new_code
            },
            true
        ))),
        "an unexpired code is kept"
    );
    assert_eq!(
        store.purge_expired(1000).await,
        Ok(0),
        "nothing left to purge"
    );
    // Everything the other checks stored is recent.
    for id in ["tok-a1", "tok-cc", "rot-r1", "fam-a1", "ct-k1"] {
        assert!(get_token(store, id).await.is_some(), "{id} is kept");
    }

    // Purging now keeps the marks of families revoked minutes ago: a code redeemed into one
    // (up to ten minutes later) must still find it revoked.
    let t = now();
    store.purge_expired(t).await.expect("purge_expired");
    for family in ["fam-1", "fam-ghost"] {
        let late = access(
            &format!("pg-after-{family}"),
            "pg-a",
            Some(family),
            t,
            Some(t + 60),
        );
        assert_eq!(
            store.insert_tokens(vec![late]).await,
            Ok(false),
            "{family} is still revoked after purge_expired"
        );
    }
    assert_eq!(
        store.token("ct-expired").await,
        Ok(None),
        "purge_expired(now) deleted the tokens that expired before"
    );
}

// ----- signing keys --------------------------------------------------------------------------

async fn check_signing_keys(store: &Arc<dyn Store>) {
    const CONTENDERS: u32 = 20;
    let t = now();
    assert_eq!(
        signing_keys(store.as_ref()).await,
        Vec::new(),
        "no signing keys initially"
    );

    // Twenty instances start at once, each with its own key: one wins, all get the winner.
    let algorithms = ["ES256", "EdDSA", "RS256"];
    let candidates: Vec<SigningKeyRecord> = (0..CONTENDERS)
        .map(|i| SigningKeyRecord {
            // Whatever the caller passes, the installed key is active and not retired.
            retired_until: Some(123),
            ..signing_key(
                &format!("kid-race-{i}"),
                algorithms[i as usize % algorithms.len()],
                i,
                i % 2 == 0,
            )
        })
        .collect();
    let barrier = Arc::new(Barrier::new(CONTENDERS as usize));
    let mut tasks = Vec::new();
    for key in candidates.clone() {
        let store = Arc::clone(store);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.init_signing_key(key).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(
            task.await
                .expect("init_signing_key task")
                .expect("init_signing_key under contention"),
        );
    }
    let winner = results[0].clone();
    assert!(
        results.iter().all(|k| *k == winner),
        "every concurrent init_signing_key returns the same key: {:?}",
        results.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>()
    );
    let expected_winner = candidates
        .iter()
        .find(|c| c.kid == winner.kid)
        .map(active)
        .expect("the winner is one of the candidates");
    assert_eq!(
        winner, expected_winner,
        "the installed key round-trips (private key bytes, algorithm, flags), active"
    );
    assert_eq!(
        signing_keys(store.as_ref()).await,
        vec![winner.clone()],
        "exactly one key is stored"
    );

    // A later init changes nothing.
    let late = signing_key("kid-late", "ES256", 77, false);
    assert_eq!(
        store.init_signing_key(late).await,
        Ok(winner.clone()),
        "init_signing_key returns the key already active"
    );
    assert_eq!(signing_keys(store.as_ref()).await, vec![winner.clone()]);

    // Rotation: the active key retires, the new one is active.
    let k2 = signing_key("kid-2", "EdDSA", 102, true);
    store
        .rotate_signing_key(k2.clone(), Some(t + 3600))
        .await
        .expect("rotate_signing_key");
    assert_eq!(
        signing_keys(store.as_ref()).await,
        vec![retired(&winner, Some(t + 3600)), active(&k2)],
        "the old key retired until the given time, the new one active, oldest first"
    );

    // A duplicate kid, of a retired key or of the active one: conflict, nothing changed.
    for kid in [winner.kid.as_str(), "kid-2"] {
        let duplicate = store
            .rotate_signing_key(signing_key(kid, "RS256", 200, false), Some(t))
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "rotating to an existing kid {kid} is a conflict, got {duplicate:?}"
        );
    }
    assert_eq!(
        signing_keys(store.as_ref()).await,
        vec![retired(&winner, Some(t + 3600)), active(&k2)],
        "a failed rotation changes nothing"
    );

    let k3 = signing_key("kid-3", "RS256", 103, false);
    store
        .rotate_signing_key(k3.clone(), None)
        .await
        .expect("rotate_signing_key");
    let k4 = signing_key("kid-4", "ES256", 104, true);
    store
        .rotate_signing_key(k4.clone(), Some(t - 10))
        .await
        .expect("rotate_signing_key");
    let keys = signing_keys(store.as_ref()).await;
    assert_eq!(
        keys,
        vec![
            retired(&winner, Some(t + 3600)),
            retired(&k2, None),
            retired(&k3, Some(t - 10)),
            active(&k4)
        ]
    );
    assert_eq!(
        keys.iter().filter(|k| k.active).count(),
        1,
        "exactly one key is active"
    );

    // Purging: retired keys past their time go; the active one and `None` stay.
    assert_eq!(store.purge_signing_keys(t).await, Ok(1));
    assert_eq!(
        signing_keys(store.as_ref()).await,
        vec![
            retired(&winner, Some(t + 3600)),
            retired(&k2, None),
            active(&k4)
        ]
    );
    assert_eq!(store.purge_signing_keys(t + 7200).await, Ok(1));
    assert_eq!(
        signing_keys(store.as_ref()).await,
        vec![retired(&k2, None), active(&k4)]
    );
    assert_eq!(
        store.purge_signing_keys(u64::MAX).await,
        Ok(0),
        "the active key and one retired forever are never purged"
    );
    assert_eq!(
        store
            .init_signing_key(signing_key("kid-5", "ES256", 105, false))
            .await,
        Ok(active(&k4)),
        "after rotations, init returns the active key"
    );

    // `Debug` never shows the private key.
    for key in signing_keys(store.as_ref()).await {
        let debug = format!("{key:?}");
        let decimal = key.private_key[..6]
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let hex: String = key.private_key[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(debug.contains(&key.kid), "{debug}");
        assert!(
            !debug.contains(&decimal) && !debug.contains(&hex) && !debug.contains("private_key"),
            "Debug of a signing key shows its private key: {debug}"
        );
    }

    check_signing_key_rotation_race(std::slice::from_ref(store), "race", t).await;
}

/// Ten concurrent rotations, spread over `instances`: each takes effect in turn, and exactly
/// one key ends up active, the newest.
async fn check_signing_key_rotation_race(instances: &[Arc<dyn Store>], prefix: &str, t: u64) {
    const CONTENDERS: u32 = 10;
    let before = signing_keys(instances[0].as_ref()).await;
    let barrier = Arc::new(Barrier::new(CONTENDERS as usize));
    let mut tasks = Vec::new();
    for i in 0..CONTENDERS {
        let store = Arc::clone(&instances[i as usize % instances.len()]);
        let barrier = Arc::clone(&barrier);
        let key = signing_key(&format!("{prefix}-kid-rot-{i}"), "ES256", 300 + i, false);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.rotate_signing_key(key, Some(t + 3600)).await
        }));
    }
    for task in tasks {
        task.await
            .expect("rotate_signing_key task")
            .expect("concurrent rotate_signing_key");
    }
    let keys = signing_keys(instances[0].as_ref()).await;
    assert_eq!(
        keys.len(),
        before.len() + CONTENDERS as usize,
        "every rotation stored its key"
    );
    let active: Vec<&str> = keys
        .iter()
        .filter(|k| k.active)
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(
        active.len(),
        1,
        "exactly one key is active after concurrent rotations: {active:?}"
    );
    assert!(
        active[0].starts_with(&format!("{prefix}-kid-rot-")),
        "one of the new keys is active: {active:?}"
    );
    assert_eq!(
        keys.last().map(|k| k.kid.as_str()),
        Some(active[0]),
        "the active key is the newest"
    );
    for key in &keys[..keys.len() - 1] {
        let was = before.iter().find(|k| k.kid == key.kid);
        let expected_until = match was {
            Some(old) if !old.active => old.retired_until,
            _ => Some(t + 3600),
        };
        assert_eq!(
            (key.active, key.retired_until),
            (false, expected_until),
            "{} is retired as its rotation said",
            key.kid
        );
    }
}

// ---------------------------------------------------------------------------------------------
// One test per store
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store() {
    rethrow(run_suite(Arc::new(MemoryStore::new())).await);
}

// ---------------------------------------------------------------------------------------------
// Shared stores: several instances on one database, and reopening it
// ---------------------------------------------------------------------------------------------

/// Two instances on one database (two processes on one SQLite file, two servers on one
/// PostgreSQL schema): the races are decided across them, and each sees the other's writes.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn check_two_instances(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let instances = [a, b];
    check_code_race(&instances, "two").await;
    check_rotation_race(&instances, "two").await;
    check_issue_race(&instances, "two").await;
    check_issue_against_disable(&instances, "two").await;
    check_revoke_race(&instances, "two").await;
    check_family_revocation_race(&instances, "two").await;
    check_decision_race(&instances, "two").await;
    let t = now();
    check_signing_key_rotation_race(&instances, "two", t).await;
    let [a, b] = instances;
    check_revocation_signal(a.as_ref(), b.as_ref(), "two").await;

    // Writes on one are read on the other.
    register(a.as_ref(), &["two-x"]).await;
    assert_eq!(b.client("two-x").await, Ok(Some(client("two-x"))));
    let conflict = b.insert_client(client("two-x")).await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "a client id taken on one instance is a conflict on the other, got {conflict:?}"
    );
    let (_, cursor) = drain_revocations(b.as_ref(), 0).await;
    let tok = access("two-x-a", "two-x", Some("two-x-f"), t, Some(t + 3600));
    assert!(insert_tokens(a.as_ref(), vec![tok.clone()]).await);
    assert_eq!(b.token("two-x-a").await, Ok(Some(tok)));
    assert!(
        a.revoke_token("two-x-a")
            .await
            .expect("revoke_token")
            .is_some()
    );
    assert_eq!(b.revoke_token("two-x-a").await, Ok(None));
    let (fresh, _) = drain_revocations(b.as_ref(), cursor).await;
    assert!(
        fresh.contains(&RevokedAccess {
            jti: "two-x-a".into(),
            expires_at: Some(t + 3600)
        }),
        "a revocation on one instance reaches the other's feed: {fresh:?}"
    );
    // A family revoked on one instance refuses tokens on the other.
    assert_eq!(b.revoke_family("two-x-ghost").await, Ok(Vec::new()));
    let late = access("two-x-late", "two-x", Some("two-x-ghost"), t, Some(t + 60));
    assert_eq!(a.insert_tokens(vec![late]).await, Ok(false));
}

/// What a store holds after the suite, to compare once it is reopened.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn snapshot(
    store: &dyn Store,
) -> (
    Vec<ClientRecord>,
    Vec<SigningKeyRecord>,
    Vec<Option<TokenRecord>>,
    Vec<TokenRecord>,
) {
    let clients = store.clients().await.expect("clients");
    let keys = signing_keys(store).await;
    let mut tokens = Vec::new();
    for id in [
        "tok-a1",
        "tok-cc",
        "rot-r1",
        "fam-a1",
        "fam-late-a",
        "ct-k1",
        "pg-unl",
    ] {
        tokens.push(get_token(store, id).await);
    }
    let mut denylist = store
        .revoked_access_tokens(now())
        .await
        .expect("revoked_access_tokens");
    denylist.sort_by(|x, y| x.id.cmp(&y.id));
    (clients, keys, tokens, denylist)
}

/// A unique name for this run's database or schema: the process id and the clock.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

// ----- SQLite --------------------------------------------------------------------------------

/// A database file in the temporary directory, removed (with its `-wal`, `-shm` and
/// `-journal` companions) when dropped, also when the test fails.
#[cfg(feature = "sqlite")]
struct TempDatabase(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl TempDatabase {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!(
            "{}.sqlite3",
            unique_name("tower_oauth2_conformance")
        )))
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        ["", "-wal", "-shm", "-journal"]
            .into_iter()
            .map(|suffix| {
                let mut name = self.0.clone().into_os_string();
                name.push(suffix);
                std::path::PathBuf::from(name)
            })
            .collect()
    }
}

#[cfg(feature = "sqlite")]
impl Drop for TempDatabase {
    fn drop(&mut self) {
        for file in self.files() {
            // Absent companions are fine.
            let _ = std::fs::remove_file(file);
        }
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_on_a_file() {
    use tower_oauth2::server::store::SqliteStore;

    let db = TempDatabase::new();
    let path = db.0.clone();
    let result = run_guarded(async move {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path).await.expect("SqliteStore::open"));
        assert!(path.exists(), "the database file is created");
        conformance(Arc::clone(&store)).await;

        // A second process on the same file.
        let second: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&path)
                .await
                .expect("SqliteStore::open, a second time"),
        );
        check_two_instances(Arc::clone(&store), second).await;

        // Everything is in the file: reopened, the store holds the same.
        let before = snapshot(store.as_ref()).await;
        drop(store);
        let reopened = SqliteStore::open(&path)
            .await
            .expect("SqliteStore::open, reopening");
        assert_eq!(
            snapshot(&reopened).await,
            before,
            "a reopened file holds what was stored"
        );
        check_sub_second_lifetimes(&reopened).await;
        reopened.pool().close().await;
    })
    .await;
    let files = db.files();
    drop(db);
    for file in files {
        assert!(!file.exists(), "{} is removed", file.display());
    }
    rethrow(result);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_in_memory() {
    use tower_oauth2::server::store::SqliteStore;

    let store = SqliteStore::open_in_memory()
        .await
        .expect("SqliteStore::open_in_memory");
    let result = run_suite(Arc::new(store)).await;
    // Each in-memory store is its own database.
    let a = SqliteStore::open_in_memory()
        .await
        .expect("SqliteStore::open_in_memory");
    let b = SqliteStore::open_in_memory()
        .await
        .expect("SqliteStore::open_in_memory");
    a.insert_client(client("only-in-a"))
        .await
        .expect("insert_client");
    assert_eq!(b.client("only-in-a").await, Ok(None));
    rethrow(result);
}

// ----- PostgreSQL ----------------------------------------------------------------------------

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store() {
    use tower_oauth2::server::store::PostgresStore;

    let url = match std::env::var("TOWER_OAUTH2_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            println!("skipped: TOWER_OAUTH2_TEST_POSTGRES_URL is not set");
            return;
        }
    };
    // A fresh schema for this run, dropped at the end whatever the outcome.
    let schema = unique_name("conf");
    // Connected here, outside the guarded task, so a failing connect is reported as such.
    let instances = async {
        let first = PostgresStore::connect_with_schema(&url, &schema).await?;
        // A second server instance on the same schema (its migrations find the tables).
        let second = PostgresStore::connect_with_schema(&url, &schema).await?;
        Ok::<_, StoreError>((first, second))
    }
    .await;
    let result = match instances {
        Ok((first, second)) => {
            let store: Arc<dyn Store> = Arc::new(first);
            let second: Arc<dyn Store> = Arc::new(second);
            run_guarded(async move {
                conformance(Arc::clone(&store)).await;
                check_two_instances(Arc::clone(&store), Arc::clone(&second)).await;
                let seen_by_second = snapshot(second.as_ref()).await;
                let seen_by_first = snapshot(store.as_ref()).await;
                assert_eq!(
                    seen_by_second, seen_by_first,
                    "both instances see the same store"
                );
                check_sub_second_lifetimes(store.as_ref()).await;
            })
            .await
        }
        Err(e) => {
            drop_schema(&url, &schema).await;
            panic!("PostgresStore::connect_with_schema({url}, {schema}): {e}");
        }
    };
    drop_schema(&url, &schema).await;
    rethrow(result);
}

/// Drops the test run's schema over a connection of its own.
#[cfg(feature = "postgres")]
async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;

    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to drop schema {schema}: {e}"));
    // The name is ours: `conf_<pid>_<nanos>`, a plain identifier.
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("dropping schema {schema}: {e}"));
    let _ = conn.close().await;
}
