//! The denylist: `jti`s of revoked access tokens the in-process authenticators refuse.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::authenticator::RevocationCheck;
use crate::token::VerifiedToken;

use super::store;

/// The `jti`s of revoked access tokens that have not expired, for the in-process
/// authenticators. Copy-on-write: readers never lock.
#[derive(Default)]
pub(crate) struct Denylist {
    entries: ArcSwap<HashMap<String, Option<u64>>>,
}

impl Denylist {
    pub(crate) fn contains(&self, jti: &str) -> bool {
        let entries = self.entries.load();
        !entries.is_empty() && entries.contains_key(jti)
    }

    /// Adds the access tokens among `tokens`.
    pub(crate) fn extend(&self, tokens: &[store::TokenRecord]) {
        self.add(
            tokens
                .iter()
                .filter(|t| t.kind == store::TokenKind::Access)
                .map(|t| (t.id.clone(), t.expires_at)),
        );
    }

    /// Adds `(jti, exp)` entries; returns how many were new.
    pub(crate) fn add(&self, entries: impl IntoIterator<Item = (String, Option<u64>)>) -> usize {
        let current = self.entries.load();
        let new: Vec<_> = entries
            .into_iter()
            .filter(|(jti, _)| !current.contains_key(jti))
            .collect();
        if new.is_empty() {
            return 0;
        }
        self.entries.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.extend(new.iter().cloned());
            next
        });
        new.len()
    }

    pub(super) fn prune(&self, now: u64) {
        if self
            .entries
            .load()
            .values()
            .all(|exp| exp.is_none_or(|e| e > now))
        {
            return;
        }
        self.entries.rcu(|current| {
            current
                .iter()
                .filter(|(_, exp)| exp.is_none_or(|e| e > now))
                .map(|(k, v)| (k.clone(), *v))
                .collect::<HashMap<_, _>>()
        });
    }
}

pub(super) struct DenylistCheck(pub(super) Arc<Denylist>);

impl RevocationCheck for DenylistCheck {
    fn is_revoked(&self, token: &VerifiedToken) -> bool {
        token.jwt_id().is_some_and(|jti| self.0.contains(jti))
    }
}
