//! The server's background tasks: housekeeping (purging expired rows, pruning the key ring and
//! the denylist) and the sync with the store (revocations and signing keys).

use std::sync::Weak;
use std::time::Duration;

use crate::time;

use super::ServerState;
use super::store::StoreError;

/// How often the in-memory state (denylist, key ring) drops what expired.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Every how many prunes the store's expired rows and retired keys are purged (10 minutes).
const PURGE_EVERY: u32 = 10;

/// Prunes the in-memory state every minute, and purges expired rows and retired keys every ten,
/// while the server lives.
pub(super) async fn housekeeping(state: Weak<ServerState>) {
    let mut interval = tokio::time::interval(PRUNE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    loop {
        interval.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let now = time::now();
        state.prune(now);
        let due = ticks.is_multiple_of(PURGE_EVERY);
        ticks = ticks.wrapping_add(1);
        if !due {
            continue;
        }
        let purged = async {
            // Revocations stay in the log while validators may still accept the token.
            let rows = state
                .store
                .purge_expired(now.saturating_sub(state.leeway))
                .await?;
            let keys = state
                .store
                .purge_signing_keys(now.saturating_sub(state.leeway))
                .await?;
            let (max_age, max_events) = state.audit_retention;
            let audit = state
                .store
                .purge_audit(now.saturating_sub(max_age.as_secs()), max_events)
                .await?;
            Ok::<_, StoreError>(rows + keys + audit)
        };
        match purged.await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(target: "tower_oauth2::server", purged = n, "expired rows purged")
            }
            Err(error) => {
                tracing::warn!(target: "tower_oauth2::server", %error, "purging expired rows failed")
            }
        }
    }
}

/// Keeps the denylist, the client cache, the key ring and the failed-authentication limiter in
/// step with the store (other instances' revocations, client changes, rotations and blocked
/// keys). While the store is unreachable the last synced state stays in force.
pub(super) async fn sync_loop(state: Weak<ServerState>) {
    let interval = match state.upgrade() {
        Some(state) => state.sync_interval,
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signal = state
        .upgrade()
        .and_then(|state| state.store.revocation_signal());
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        match &mut signal {
            Some(receiver) => {
                tokio::select! {
                    _ = ticker.tick() => {}
                    changed = receiver.changed() => {
                        if changed.is_err() {
                            // The store stopped pushing: polling goes on.
                            signal = None;
                        }
                    }
                }
            }
            None => {
                ticker.tick().await;
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        let result = async {
            state.sync_revocations().await?;
            state.sync_clients().await?;
            if state.keys_in_store {
                state.sync_keys().await?;
            }
            // Keys other instances blocked (stores that share failure counts).
            state.limiter.sync(&*state.store).await?;
            Ok::<_, StoreError>(())
        };
        match (result.await, failing_since) {
            (Ok(()), None) => {}
            (Ok(()), Some(since)) => {
                failing_since = None;
                tracing::info!(
                    target: "tower_oauth2::server",
                    stale_for = ?since.elapsed(),
                    "store reachable again; revocations and keys are in sync"
                );
            }
            (Err(error), None) => {
                failing_since = Some(std::time::Instant::now());
                tracing::warn!(
                    target: "tower_oauth2::server",
                    %error,
                    "store unreachable: validating with the last synced denylist and keys, \
                     which may be stale"
                );
            }
            (Err(_), Some(_)) => {}
        }
    }
}
