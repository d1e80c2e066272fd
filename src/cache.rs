//! The verified-token cache: a token seen before skips signature verification and claim
//! parsing, but never the checks that can change while it is cached.
//!
//! - The key is the SHA-256 of the whole token, so a cached entry answers only for exactly the
//!   bytes that were verified.
//! - An entry lives no longer than the token's `exp` (plus the leeway) nor [`TokenCache::max_ttl`].
//! - On every hit, `exp` and `nbf` are checked again against the clock, the issuer's
//!   [`RevocationCheck`](crate::RevocationCheck) is asked again, and the issuer's key set must be
//!   the very set that verified the token: any change to a refreshed key set (a key removed, or
//!   any other) sends the token through full verification again.
//! - Only successes are cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::keys::KeySet;
use crate::validate::VerifiedToken;

/// Configures the verified-token cache ([`AuthenticatorBuilder::token_cache`]). On by default
/// with [`TokenCache::new`]'s limits.
///
/// [`AuthenticatorBuilder::token_cache`]: crate::AuthenticatorBuilder::token_cache
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCache {
    pub(crate) max_bytes: u64,
    pub(crate) max_ttl: Duration,
    pub(crate) enabled: bool,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCache {
    /// A cache of at most 64 MiB (about 50,000 typical access tokens of 300–500 bytes) whose
    /// entries live at most 5 minutes (and never past the token's `exp`).
    pub fn new() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_ttl: Duration::from_secs(300),
            enabled: true,
        }
    }

    /// No cache: every request verifies its token in full.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// The most memory the entries may take, counted as the token's claims and scopes plus a
    /// fixed overhead per entry.
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The longest an entry lives, whatever the token's `exp`.
    #[must_use]
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
}

/// Bytes an entry costs besides its claims: key, entry, token, parsed claims and the cache's
/// own bookkeeping. Calibrated against the process's RSS growth for 100,000 cached HS256 tokens
/// (`cargo bench --bench peers` prints it): about 1,330 bytes per entry in all.
pub(crate) const ENTRY_OVERHEAD: u32 = 880;

/// One verified token and what it was verified with.
pub(crate) struct Entry {
    pub(crate) token: VerifiedToken,
    /// Index of the issuer that verified it.
    pub(crate) issuer: usize,
    /// The key set that verified it (`None`: the issuer's keys never change). Holding the
    /// `Arc` keeps the allocation alive, so pointer equality cannot be fooled by reuse.
    pub(crate) keys: Option<Arc<KeySet>>,
    /// When the entry must go: the token's `exp` plus the leeway, as an instant.
    expires: Option<Instant>,
}

pub(crate) struct Cache {
    entries: moka::sync::Cache<[u8; 32], Arc<Entry>>,
    max_ttl: Duration,
}

struct PerEntry {
    max_ttl: Duration,
}

impl moka::Expiry<[u8; 32], Arc<Entry>> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Entry>,
        created_at: Instant,
    ) -> Option<Duration> {
        let until_exp = value
            .expires
            .map_or(self.max_ttl, |at| at.saturating_duration_since(created_at));
        Some(until_exp.min(self.max_ttl))
    }
}

impl Cache {
    pub(crate) fn new(config: TokenCache) -> Option<Self> {
        if !config.enabled || config.max_bytes == 0 || config.max_ttl.is_zero() {
            return None;
        }
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &[u8; 32], entry: &Arc<Entry>| {
                let claims = u32::try_from(entry.token.weight()).unwrap_or(u32::MAX);
                claims.saturating_add(ENTRY_OVERHEAD)
            })
            .expire_after(PerEntry {
                max_ttl: config.max_ttl,
            })
            .build();
        Some(Self {
            entries,
            max_ttl: config.max_ttl,
        })
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    /// Caches `token`, verified by issuer `issuer` with `keys`, at `now` (Unix seconds).
    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        token: VerifiedToken,
        issuer: usize,
        keys: Option<Arc<KeySet>>,
        leeway: u64,
        now: u64,
    ) {
        let expires = token.expires_at().map(|exp| {
            let left = exp.saturating_add(leeway).saturating_sub(now);
            Instant::now() + Duration::from_secs(left).min(self.max_ttl)
        });
        self.entries.insert(
            key,
            Arc::new(Entry {
                token,
                issuer,
                keys,
                expires,
            }),
        );
    }

    /// Drops an entry that no longer holds (its key set changed).
    pub(crate) fn remove(&self, key: &[u8; 32]) {
        self.entries.invalidate(key);
    }

    /// Entries currently held (approximate; for tests and stats).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// The weighted size of the entries, in bytes (approximate).
    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}
