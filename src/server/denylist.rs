//! The denylist: `jti`s of revoked access tokens the in-process authenticators refuse.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::authenticator::RevocationCheck;
use crate::token::VerifiedToken;

use super::store;

/// The `jti`s of revoked access tokens that have not expired, for the in-process
/// authenticators, with their expiry.
///
/// A read-write lock over one map: a check takes the read lock (uncontended, a few
/// nanoseconds), a revocation the write lock for one insert. (It was copy-on-write, which made
/// every revocation copy the whole map: quadratic in the revocations alive.)
#[derive(Default)]
pub(crate) struct Denylist {
    entries: RwLock<HashMap<String, Option<u64>>>,
}

impl Denylist {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Option<u64>>> {
        // A panic while the map was being written leaves it usable: at worst one entry is
        // missing or extra until the next sync adds it again.
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Option<u64>>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn contains(&self, jti: &str) -> bool {
        let entries = self.read();
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
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return 0;
        }
        let mut map = self.write();
        entries
            .filter(|(jti, exp)| map.insert(jti.clone(), *exp).is_none())
            .count()
    }

    /// Drops the entries that expired before `now`.
    pub(super) fn prune(&self, now: u64) {
        if self.read().values().all(|exp| exp.is_none_or(|e| e > now)) {
            return;
        }
        self.write().retain(|_, exp| exp.is_none_or(|e| e > now));
    }

    /// How many entries it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().len()
    }
}

pub(super) struct DenylistCheck(pub(super) Arc<Denylist>);

impl RevocationCheck for DenylistCheck {
    fn is_revoked(&self, token: &VerifiedToken) -> bool {
        token.jwt_id().is_some_and(|jti| self.0.contains(jti))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_counts_new_entries_and_prune_drops_expired_ones() {
        let list = Denylist::default();
        assert!(!list.contains("a"));
        assert_eq!(list.add([("a".into(), Some(10)), ("b".into(), None)]), 2);
        assert_eq!(
            list.add([("a".into(), Some(10)), ("c".into(), Some(20))]),
            1
        );
        assert!(list.contains("a") && list.contains("b") && list.contains("c"));
        list.prune(15);
        assert!(!list.contains("a"), "expired at 10");
        assert!(list.contains("b"), "never expires");
        assert!(list.contains("c"), "expires at 20");
        assert_eq!(list.len(), 2);
    }
}
