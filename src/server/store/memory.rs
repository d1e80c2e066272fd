//! [`MemoryStore`]: everything in one mutex-guarded map set. For tests, demos and single
//! instances that may forget their clients on restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{
    ApprovalDecision, AuditQuery, AuditRecord, ClientActivity, ClientRecord, ClientStatus,
    CodeRecord, DecisionOutcome, IssueOutcome, RevokedAccess, SigningKeyRecord, Store, StoreError,
    StoreFuture, Successor, TokenHash, TokenIssue, TokenKind, TokenRecord, TokenState,
};

/// A [`Store`] in process memory. Every operation takes one lock, so each is atomic; nothing
/// survives a restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    clients: Vec<ClientRecord>,
    codes: HashMap<TokenHash, CodeRecord>,
    tokens: HashMap<String, TokenRecord>,
    refresh_by_hash: HashMap<TokenHash, String>,
    /// Revoked families, kept until nothing could join them any more (`None`: forever).
    revoked_families: HashMap<String, Option<u64>>,
    /// Every access-token revocation, in order: position `i` is cursor `i + 1`.
    revocation_log: Vec<RevokedAccess>,
    signing_keys: Vec<SigningKeyRecord>,
    /// The audit log, oldest first.
    audit: VecDeque<AuditRecord>,
    /// The `seq` of the last audit event appended.
    audit_seq: u64,
    /// Approval decisions, oldest first.
    decisions: Vec<ApprovalDecision>,
    /// What rotations left for the grace window, by rotated-out token id.
    successors: HashMap<String, Successor>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> StoreFuture<'_, T> {
        let result = self.lock().and_then(|mut inner| f(&mut inner));
        Box::pin(std::future::ready(result))
    }
}

impl Inner {
    fn insert_tokens(&mut self, tokens: Vec<TokenRecord>) -> Result<bool, StoreError> {
        if tokens.iter().any(|t| self.tokens.contains_key(&t.id)) {
            return Err(StoreError::Conflict("token id exists".into()));
        }
        let mut live = true;
        for mut token in tokens {
            if token
                .family_id
                .as_ref()
                .is_some_and(|f| self.revoked_families.contains_key(f))
            {
                token.state = TokenState::Revoked;
                live = false;
                self.log_revocations(std::slice::from_ref(&token));
            }
            self.insert_token(token)?;
        }
        Ok(live)
    }

    fn rotate_refresh(
        &mut self,
        old_id: &str,
        issued: Vec<TokenRecord>,
    ) -> Result<bool, StoreError> {
        let active = self
            .tokens
            .get(old_id)
            .is_some_and(|t| t.kind == TokenKind::Refresh && t.state == TokenState::Active);
        if !active || issued.iter().any(|t| self.tokens.contains_key(&t.id)) {
            return Ok(false);
        }
        if let Some(old) = self.tokens.get_mut(old_id) {
            old.state = TokenState::Rotated;
        }
        for token in issued {
            self.insert_token(token)?;
        }
        Ok(true)
    }

    fn insert_token(&mut self, token: TokenRecord) -> Result<(), StoreError> {
        if self.tokens.contains_key(&token.id) {
            return Err(StoreError::Conflict(format!(
                "token id {} exists",
                token.id
            )));
        }
        if let Some(hash) = token.hash {
            self.refresh_by_hash.insert(hash, token.id.clone());
        }
        self.tokens.insert(token.id.clone(), token);
        Ok(())
    }

    fn revoke_where(&mut self, matches: impl Fn(&TokenRecord) -> bool) -> Vec<TokenRecord> {
        let mut revoked = Vec::new();
        for token in self.tokens.values_mut() {
            if matches(token) && token.state != TokenState::Revoked {
                token.state = TokenState::Revoked;
                revoked.push(token.clone());
            }
        }
        self.log_revocations(&revoked);
        revoked
    }

    fn log_revocations(&mut self, tokens: &[TokenRecord]) {
        self.revocation_log.extend(
            tokens
                .iter()
                .filter(|t| t.kind == TokenKind::Access && t.state == TokenState::Revoked)
                .map(|t| RevokedAccess {
                    jti: t.id.clone(),
                    expires_at: t.expires_at,
                }),
        );
    }
}

impl Store for MemoryStore {
    fn insert_client(&self, client: ClientRecord) -> StoreFuture<'_, ()> {
        self.with(move |inner| {
            if inner
                .clients
                .iter()
                .any(|c| c.client_id == client.client_id)
            {
                return Err(StoreError::Conflict(format!(
                    "client {} exists",
                    client.client_id
                )));
            }
            inner.clients.push(client);
            Ok(())
        })
    }

    fn client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Option<ClientRecord>> {
        self.with(|inner| {
            Ok(inner
                .clients
                .iter()
                .find(|c| c.client_id == client_id)
                .cloned())
        })
    }

    fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
        self.with(|inner| Ok(inner.clients.clone()))
    }

    fn update_client(&self, client: ClientRecord) -> StoreFuture<'_, bool> {
        self.with(move |inner| {
            match inner
                .clients
                .iter_mut()
                .find(|c| c.client_id == client.client_id)
            {
                Some(slot) => {
                    *slot = client;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    fn delete_client<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, bool> {
        self.with(|inner| {
            let before = inner.clients.len();
            inner.clients.retain(|c| c.client_id != client_id);
            inner.codes.retain(|_, code| code.client_id != client_id);
            inner.decisions.retain(|d| d.client_id != client_id);
            Ok(inner.clients.len() != before)
        })
    }

    fn insert_code(&self, code: CodeRecord) -> StoreFuture<'_, ()> {
        self.with(move |inner| {
            if inner.codes.contains_key(&code.hash) {
                return Err(StoreError::Conflict("authorization code exists".into()));
            }
            inner.codes.insert(code.hash, code);
            Ok(())
        })
    }

    fn take_code<'a>(
        &'a self,
        hash: &'a TokenHash,
        client_id: &'a str,
    ) -> StoreFuture<'a, Option<(CodeRecord, bool)>> {
        self.with(|inner| {
            Ok(inner.codes.get_mut(hash).map(|code| {
                if code.client_id != client_id {
                    return (code.clone(), false);
                }
                let first = !code.used;
                code.used = true;
                (code.clone(), first)
            }))
        })
    }

    fn insert_tokens(&self, tokens: Vec<TokenRecord>) -> StoreFuture<'_, bool> {
        self.with(move |inner| inner.insert_tokens(tokens))
    }

    fn find_refresh<'a>(&'a self, hash: &'a TokenHash) -> StoreFuture<'a, Option<TokenRecord>> {
        self.with(|inner| {
            Ok(inner
                .refresh_by_hash
                .get(hash)
                .and_then(|id| inner.tokens.get(id))
                .cloned())
        })
    }

    fn rotate_refresh<'a>(
        &'a self,
        old_id: &'a str,
        issued: Vec<TokenRecord>,
    ) -> StoreFuture<'a, bool> {
        self.with(move |inner| inner.rotate_refresh(old_id, issued))
    }

    fn issue_tokens(&self, issue: TokenIssue) -> StoreFuture<'_, IssueOutcome> {
        self.with(move |inner| {
            let current = inner
                .clients
                .iter()
                .find(|c| c.client_id == issue.client.client_id);
            if current != Some(&issue.client) {
                return Ok(IssueOutcome::ClientChanged);
            }
            Ok(match &issue.rotate {
                Some(old_id) => match inner.rotate_refresh(old_id, issue.tokens)? {
                    true => {
                        if let Some(successor) = issue.successor {
                            inner.successors.insert(old_id.clone(), successor);
                        }
                        IssueOutcome::Stored
                    }
                    false => IssueOutcome::NotRotated,
                },
                None => match inner.insert_tokens(issue.tokens)? {
                    true => IssueOutcome::Stored,
                    false => IssueOutcome::Revoked,
                },
            })
        })
    }

    fn token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
        self.with(|inner| Ok(inner.tokens.get(id).cloned()))
    }

    fn successor<'a>(&'a self, token_id: &'a str) -> StoreFuture<'a, Option<Successor>> {
        self.with(|inner| Ok(inner.successors.get(token_id).cloned()))
    }

    fn revoke_token<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<TokenRecord>> {
        self.with(|inner| Ok(inner.revoke_where(|t| t.id == id).pop()))
    }

    fn revoke_family<'a>(&'a self, family_id: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
        self.with(|inner| {
            let revoked = inner.revoke_where(|t| t.family_id.as_deref() == Some(family_id));
            // Remembered while its tokens live, and at least as long as a code could still be
            // redeemed into it (ten minutes).
            let until = inner
                .tokens
                .values()
                .filter(|t| t.family_id.as_deref() == Some(family_id))
                .map(|t| t.expires_at)
                .try_fold(crate::time::now() + 600, |acc, exp| exp.map(|e| acc.max(e)));
            inner.revoked_families.insert(family_id.to_owned(), until);
            Ok(revoked)
        })
    }

    fn revoke_client_tokens<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
        self.with(|inner| Ok(inner.revoke_where(|t| t.client_id == client_id)))
    }

    fn client_tokens<'a>(
        &'a self,
        client_id: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Vec<TokenRecord>> {
        self.with(move |inner| {
            let mut tokens: Vec<TokenRecord> = inner
                .tokens
                .values()
                .filter(|t| {
                    t.client_id == client_id && t.state == TokenState::Active && !t.is_expired(now)
                })
                .cloned()
                .collect();
            tokens.sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
            Ok(tokens)
        })
    }

    fn revoked_access_tokens(&self, now: u64) -> StoreFuture<'_, Vec<TokenRecord>> {
        self.with(move |inner| {
            Ok(inner
                .tokens
                .values()
                .filter(|t| {
                    t.kind == TokenKind::Access
                        && t.state == TokenState::Revoked
                        && !t.is_expired(now)
                })
                .cloned()
                .collect())
        })
    }

    fn revocations_since(&self, cursor: u64) -> StoreFuture<'_, (Vec<RevokedAccess>, u64)> {
        self.with(move |inner| {
            let start = usize::try_from(cursor)
                .unwrap_or(usize::MAX)
                .min(inner.revocation_log.len());
            let next = inner.revocation_log.len() as u64;
            Ok((inner.revocation_log[start..].to_vec(), next))
        })
    }

    fn signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>> {
        self.with(|inner| Ok(inner.signing_keys.clone()))
    }

    fn init_signing_key(&self, key: SigningKeyRecord) -> StoreFuture<'_, SigningKeyRecord> {
        self.with(move |inner| {
            if let Some(active) = inner.signing_keys.iter().find(|k| k.active) {
                return Ok(active.clone());
            }
            let key = SigningKeyRecord {
                active: true,
                retired_until: None,
                ..key
            };
            inner.signing_keys.push(key.clone());
            Ok(key)
        })
    }

    fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        retired_until: Option<u64>,
    ) -> StoreFuture<'_, ()> {
        self.with(move |inner| {
            if inner.signing_keys.iter().any(|k| k.kid == key.kid) {
                return Err(StoreError::Conflict(format!(
                    "signing key {} exists",
                    key.kid
                )));
            }
            for old in inner.signing_keys.iter_mut().filter(|k| k.active) {
                old.active = false;
                old.retired_until = retired_until;
            }
            inner.signing_keys.push(SigningKeyRecord {
                active: true,
                retired_until: None,
                ..key
            });
            Ok(())
        })
    }

    fn purge_signing_keys(&self, now: u64) -> StoreFuture<'_, u64> {
        self.with(move |inner| {
            let before = inner.signing_keys.len();
            inner
                .signing_keys
                .retain(|k| k.active || k.retired_until.is_none_or(|until| until > now));
            Ok((before - inner.signing_keys.len()) as u64)
        })
    }

    fn purge_expired(&self, now: u64) -> StoreFuture<'_, u64> {
        self.with(move |inner| {
            let before = inner.codes.len() + inner.tokens.len();
            inner.codes.retain(|_, code| code.expires_at > now);
            inner.tokens.retain(|_, token| !token.is_expired(now));
            let tokens = &inner.tokens;
            inner
                .refresh_by_hash
                .retain(|_, id| tokens.contains_key(id));
            inner.successors.retain(|id, _| tokens.contains_key(id));
            inner
                .revoked_families
                .retain(|_, until| until.is_none_or(|u| u > now));
            Ok((before - inner.codes.len() - inner.tokens.len()) as u64)
        })
    }

    // --- audit log ---

    fn append_audit(&self, events: Vec<AuditRecord>) -> StoreFuture<'_, ()> {
        self.with(move |inner| {
            for mut event in events {
                inner.audit_seq += 1;
                event.seq = inner.audit_seq;
                inner.audit.push_back(event);
            }
            Ok(())
        })
    }

    fn audit_events(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>> {
        self.with(move |inner| {
            Ok(inner
                .audit
                .iter()
                .rev()
                .filter(|event| query.matches(event))
                .take(query.limit)
                .cloned()
                .collect())
        })
    }

    fn purge_audit(&self, older_than: u64, max_rows: u64) -> StoreFuture<'_, u64> {
        self.with(move |inner| {
            let before = inner.audit.len();
            inner.audit.retain(|event| event.at >= older_than);
            let keep = usize::try_from(max_rows).unwrap_or(usize::MAX);
            let excess = inner.audit.len().saturating_sub(keep);
            inner.audit.drain(..excess);
            Ok((before - inner.audit.len()) as u64)
        })
    }

    fn decide<'a>(
        &'a self,
        decision: ApprovalDecision,
        settle: &'a (dyn Fn(&[ApprovalDecision]) -> Option<ClientStatus> + Send + Sync),
    ) -> StoreFuture<'a, DecisionOutcome> {
        self.with(move |inner| {
            let Some(index) = inner
                .clients
                .iter()
                .position(|c| c.client_id == decision.client_id)
            else {
                return Ok(DecisionOutcome::NotFound);
            };
            let client = inner.clients[index].clone();
            if let Some(earlier) = inner
                .decisions
                .iter()
                .find(|d| d.client_id == decision.client_id && d.approver == decision.approver)
            {
                return Ok(DecisionOutcome::AlreadyDecided {
                    earlier: earlier.clone(),
                    client,
                });
            }
            if client.status != ClientStatus::Pending {
                return Ok(DecisionOutcome::NotPending(client));
            }
            inner.decisions.push(decision.clone());
            let decisions: Vec<ApprovalDecision> = inner
                .decisions
                .iter()
                .filter(|d| d.client_id == decision.client_id)
                .cloned()
                .collect();
            let settled = settle(&decisions);
            if let Some(status) = settled {
                inner.clients[index].status = status;
            }
            Ok(DecisionOutcome::Recorded {
                client: inner.clients[index].clone(),
                decisions,
                settled: settled.is_some(),
            })
        })
    }

    fn decisions<'a>(&'a self, client_id: &'a str) -> StoreFuture<'a, Vec<ApprovalDecision>> {
        self.with(move |inner| {
            Ok(inner
                .decisions
                .iter()
                .filter(|d| d.client_id == client_id)
                .cloned()
                .collect())
        })
    }

    fn client_activity(&self, since: u64) -> StoreFuture<'_, Vec<ClientActivity>> {
        self.with(move |inner| {
            let mut by_client: HashMap<&str, ClientActivity> = HashMap::new();
            for event in inner.audit.iter().filter(|e| e.kind == "token_issued") {
                let Some(client_id) = event.client_id.as_deref() else {
                    continue;
                };
                let entry = by_client
                    .entry(client_id)
                    .or_insert_with(|| ClientActivity {
                        client_id: client_id.to_owned(),
                        last_issued_at: event.at,
                        issued_since: 0,
                    });
                entry.last_issued_at = entry.last_issued_at.max(event.at);
                entry.issued_since += u64::from(event.at >= since);
            }
            let mut activity: Vec<_> = by_client.into_values().collect();
            activity.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            Ok(activity)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::TokenKind;

    fn token(id: &str, family: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            kind: TokenKind::Access,
            hash: None,
            client_id: "c".into(),
            subject: "s".into(),
            family_id: Some(family.into()),
            scopes: Vec::new(),
            issued_at: 1,
            expires_at: Some(u64::MAX / 2),
            state: TokenState::Active,
            resources: Vec::new(),
            dpop_jkt: None,
        }
    }

    #[tokio::test]
    async fn a_revoked_family_admits_no_new_tokens() {
        let store = MemoryStore::new();
        assert_eq!(store.insert_tokens(vec![token("a", "f")]).await, Ok(true));
        let revoked = store.revoke_family("f").await.expect("revoke");
        assert_eq!(revoked.len(), 1);
        // A code redeemed twice: the second redemption revoked the family before the first
        // stored its tokens. They must not appear as active.
        assert_eq!(store.insert_tokens(vec![token("b", "f")]).await, Ok(false));
        let b = store.token("b").await.expect("read").expect("stored");
        assert_eq!(b.state, TokenState::Revoked);
        assert_eq!(store.revoked_access_tokens(2).await.map(|v| v.len()), Ok(2));
        assert_eq!(store.insert_tokens(vec![token("c", "g")]).await, Ok(true));
        // Purging keeps the mark while a token of the family could live.
        assert_eq!(store.purge_expired(crate::time::now()).await, Ok(0));
        assert_eq!(store.insert_tokens(vec![token("d", "f")]).await, Ok(false));
        assert_eq!(
            store.client_tokens("c", 2).await.map(|v| v.len()),
            Ok(1),
            "only c is live"
        );
    }
}
