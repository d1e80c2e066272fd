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

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::token::VerifiedToken;

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
    /// A cache of at most 64 MiB (about 70,000 typical access tokens, at about 900 bytes each
    /// in memory) whose entries live at most 5 minutes (and never past the token's `exp`).
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

/// Bytes an entry costs besides its claims text and scopes: the key, the token's fixed-size
/// part and the cache's own bookkeeping. Calibrated against the process's RSS growth for
/// 100,000 cached HS256 tokens (`cargo bench -p tower-oauth2-benches --bench peers` prints it).
/// Measured: 901 bytes per entry in all, for tokens whose claims JSON is about 190 bytes.
pub(crate) const ENTRY_OVERHEAD: u32 = 675;

/// The cache: SHA-256 of the token → the token as verified (which also records the issuer and
/// key set that verified it).
pub(crate) struct Cache {
    entries: moka::sync::Cache<[u8; 32], VerifiedToken>,
}

/// Each entry's lifetime: until the token's `exp` plus its issuer's leeway, and at most
/// `max_ttl`.
struct PerEntry {
    max_ttl: Duration,
    /// Leeway per issuer index.
    leeways: Box<[u64]>,
}

impl moka::Expiry<[u8; 32], VerifiedToken> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        token: &VerifiedToken,
        _created_at: Instant,
    ) -> Option<Duration> {
        let Some(exp) = token.expires_at() else {
            return Some(self.max_ttl);
        };
        let (issuer, _) = token.verified_by();
        let leeway = self.leeways.get(issuer).copied().unwrap_or(0);
        let left = exp
            .saturating_add(leeway)
            .saturating_sub(crate::time::now());
        Some(Duration::from_secs(left).min(self.max_ttl))
    }
}

impl Cache {
    /// `leeways`: each issuer's leeway, by index.
    pub(crate) fn new(config: TokenCache, leeways: Vec<u64>) -> Option<Self> {
        if !config.enabled || config.max_bytes == 0 || config.max_ttl.is_zero() {
            return None;
        }
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &[u8; 32], token: &VerifiedToken| {
                let claims = u32::try_from(token.weight()).unwrap_or(u32::MAX);
                claims.saturating_add(ENTRY_OVERHEAD)
            })
            .expire_after(PerEntry {
                max_ttl: config.max_ttl,
                leeways: leeways.into_boxed_slice(),
            })
            .build();
        Some(Self { entries })
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<VerifiedToken> {
        self.entries.get(key)
    }

    /// Caches `token`, which has just been verified.
    pub(crate) fn insert(&self, key: [u8; 32], token: VerifiedToken) {
        self.entries.insert(key, token);
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
