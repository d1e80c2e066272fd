//! The signing key ring: the active key and the retired ones still published, and how the
//! server rotates, syncs and prunes it.

use std::sync::Arc;

use crate::error::ConfigError;
use crate::keys::KeySet;
use crate::time;

use super::store::StoreError;
use super::{ServerState, SigningKey, TokenLifetime, seal, signing, store};

/// The active signing key and the retired ones still published.
pub(crate) struct KeyRing {
    pub(crate) active: RingKey,
    pub(crate) retired: Vec<RingKey>,
}

impl KeyRing {
    /// Every published key, active first.
    pub(crate) fn published(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.active.key).chain(self.retired.iter().map(|r| &r.key))
    }
}

/// How long a key stays in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Until {
    /// The active key.
    Active,
    /// Retired, published until this time (plus the leeway).
    Time(u64),
    /// Retired, but it may have signed a token that never expires.
    Forever,
}

/// A signing key with its verification key and how long it stays published.
#[derive(Clone)]
pub(crate) struct RingKey {
    pub(crate) key: SigningKey,
    pub(super) verify: crate::keys::Key,
    until: Until,
}

impl RingKey {
    pub(super) fn new(key: SigningKey, verify: crate::keys::Key, until: Until) -> Self {
        Self { key, verify, until }
    }

    /// Whether a token this key signed may still be valid at `now`.
    fn needed_at(&self, now: u64, leeway: u64) -> bool {
        match self.until {
            Until::Active | Until::Forever => true,
            Until::Time(t) => t.saturating_add(leeway) > now,
        }
    }
}

/// The ring the store's key records describe; `None` without an active key.
pub(super) fn ring_from_records(
    records: &[store::SigningKeyRecord],
    sealer: Option<&seal::Sealer>,
) -> Result<Option<KeyRing>, ConfigError> {
    let mut active = None;
    let mut retired = Vec::new();
    for record in records {
        let der = match (record.encrypted, sealer) {
            (false, Some(_)) => {
                tracing::warn!(
                    target: "tower_oauth2::server",
                    kid = %record.kid,
                    "stored signing key is not sealed (it predates key_encryption_secret); \
                     rotate the signing key to replace it with a sealed one"
                );
                record.private_key.clone()
            }
            (false, None) => record.private_key.clone(),
            (true, Some(sealer)) => sealer
                .open(&record.kid, &record.private_key)
                .map_err(ConfigError::new)?,
            (true, None) => {
                return Err(ConfigError::new(format!(
                    "stored signing key {} is sealed: configure key_encryption_secret",
                    record.kid
                )));
            }
        };
        let key = SigningKey::from_der(&record.algorithm, &der, &record.kid)?;
        let verify = key.verification_key()?;
        if record.active {
            active = Some(RingKey::new(key, verify, Until::Active));
        } else {
            let until = record.retired_until.map_or(Until::Forever, Until::Time);
            retired.push(RingKey::new(key, verify, until));
        }
    }
    Ok(active.map(|active| KeyRing { active, retired }))
}
impl ServerState {
    /// Until when a key retired now must stay published: every access token it can have
    /// signed has expired by then. `None`: forever.
    async fn retire_until(&self, now: u64) -> Result<Option<u64>, StoreError> {
        let mut longest = self.access_lifetime.duration();
        for client in self.store.clients().await? {
            match client.access_token_lifetime {
                None => {}
                Some(TokenLifetime::Unlimited) => longest = None,
                Some(TokenLifetime::Limited(d)) => longest = longest.map(|l| l.max(d)),
            }
            if longest.is_none() {
                break;
            }
        }
        Ok(longest.map(|d| now + d.as_secs() + 1 + self.leeway))
    }

    pub(super) async fn rotate(&self, key: SigningKey) -> Result<(), StoreError> {
        let verify = key
            .verification_key()
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let _changing = self.ring_lock.lock().await;
        let now = time::now();
        let current = self.ring.load_full();
        if current.published().any(|k| k.kid() == key.kid()) {
            return Err(StoreError::Conflict(format!(
                "signing key {} is already in use",
                key.kid()
            )));
        }
        let until = self.retire_until(now).await?;
        if self.keys_in_store {
            let record = self.key_record(&key, now)?;
            self.store.rotate_signing_key(record, until).await?;
        }
        let mut retired: Vec<RingKey> = current
            .retired
            .iter()
            .filter(|r| r.needed_at(now, self.leeway))
            .cloned()
            .collect();
        let mut old = current.active.clone();
        old.until = until.map_or(Until::Forever, Until::Time);
        retired.push(old);
        self.publish(KeyRing {
            active: RingKey::new(key, verify, Until::Active),
            retired,
        });
        tracing::info!(
            target: "tower_oauth2::audit",
            outcome = "signing_key_rotated",
            kid = self.ring.load().active.key.kid(),
            "signing key rotated"
        );
        Ok(())
    }

    /// A key as the store keeps it, sealed when a key-encryption secret is configured.
    fn key_record(
        &self,
        key: &SigningKey,
        now: u64,
    ) -> Result<store::SigningKeyRecord, StoreError> {
        let der = key.private_der();
        let (private_key, encrypted) = match &self.sealer {
            Some(sealer) => (
                sealer
                    .seal(key.kid(), der)
                    .map_err(StoreError::Unavailable)?,
                true,
            ),
            None => (der.to_vec(), false),
        };
        Ok(store::SigningKeyRecord {
            kid: key.kid().to_owned(),
            algorithm: signing::alg_name(key.algorithm()).to_owned(),
            private_key,
            encrypted,
            created_at: now,
            active: false,
            retired_until: None,
        })
    }

    /// Rebuilds the ring from the store's keys when they differ from the ring's.
    pub(super) async fn sync_keys(&self) -> Result<(), StoreError> {
        let records = self.store.signing_keys().await?;
        let ring = self.ring.load();
        let same = records.iter().filter(|r| r.active).count() == 1
            && records
                .iter()
                .any(|r| r.active && r.kid == ring.active.key.kid())
            && records
                .iter()
                .filter(|r| !r.active)
                .all(|r| ring.retired.iter().any(|k| k.key.kid() == r.kid));
        if same {
            return Ok(());
        }
        let _changing = self.ring_lock.lock().await;
        match ring_from_records(&records, self.sealer.as_ref()) {
            Ok(Some(ring)) => self.publish(ring),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(target: "tower_oauth2::server", %error, "stored signing keys are unusable");
            }
        }
        Ok(())
    }

    /// Installs a ring and the verification keys derived from it.
    fn publish(&self, ring: KeyRing) {
        let keys = KeySet::new(
            std::iter::once(ring.active.verify.clone())
                .chain(ring.retired.iter().map(|r| r.verify.clone())),
        );
        self.ring.store(Arc::new(ring));
        self.verify_keys.replace(keys);
    }

    /// Drops retired keys whose tokens have all expired, and expired denylist entries.
    pub(super) fn prune(&self, now: u64) {
        self.denylist.prune(now.saturating_sub(self.leeway));
        let ring = self.ring.load_full();
        if !ring.retired.iter().any(|r| !r.needed_at(now, self.leeway)) {
            return;
        }
        // A rotation in progress will prune when it publishes; try again next time.
        let Ok(_changing) = self.ring_lock.try_lock() else {
            return;
        };
        // Reloaded under the lock: a rotation may have landed in between.
        let ring = self.ring.load_full();
        let retired = ring
            .retired
            .iter()
            .filter(|r| r.needed_at(now, self.leeway))
            .cloned()
            .collect();
        self.publish(KeyRing {
            active: ring.active.clone(),
            retired,
        });
    }
}
