//! [`ServerState`]: what the endpoints share, and the few things they ask of it (a client's
//! lifetimes, signing, syncing the denylist from the store's revocation log).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::authenticator::Authenticator;
use crate::authenticator::Issuer;
use crate::keys::SharedKeys;

use super::builder::trust;
use super::denylist::Denylist;
use super::ring::KeyRing;
use super::{
    ApprovalPolicy, ConsentHandler, PasswordVerifier, Store, StoreError, TokenLifetime,
    client_auth, seal, store,
};

/// Everything the endpoints share.
pub(crate) struct ServerState {
    pub(crate) issuer: String,
    /// Where [`AuthorizationServer::router`](super::AuthorizationServer::router) is mounted, for
    /// the metadata's endpoint URLs.
    pub(crate) endpoint_base: String,
    pub(crate) audiences: Vec<String>,
    /// The resource servers tokens may be for (RFC 8707), the audiences included.
    pub(crate) resources: super::resource::Resources,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ring: ArcSwap<KeyRing>,
    /// The verification keys of the ring, shared with the authenticators this server hands out.
    pub(crate) verify_keys: SharedKeys,
    pub(crate) denylist: Arc<Denylist>,
    pub(crate) access_lifetime: TokenLifetime,
    pub(crate) refresh_lifetime: TokenLifetime,
    pub(crate) code_lifetime: Duration,
    pub(crate) allow_unlimited: bool,
    pub(crate) approval: ApprovalPolicy,
    pub(crate) consent: Option<Arc<dyn ConsentHandler>>,
    pub(crate) password: Option<Arc<dyn PasswordVerifier>>,
    /// The refresh-token grace window, when on.
    pub(crate) refresh_grace: Option<Duration>,
    /// Client ID Metadata Documents, when accepted.
    #[cfg(feature = "remote")]
    pub(crate) client_metadata: Option<super::client_metadata::ClientMetadataFetcher>,
    /// Dynamic client registration (RFC 7591), when on.
    pub(crate) registration: Option<super::registration::Registration>,
    /// The app's extra access-token claims.
    pub(crate) claims: Option<Arc<dyn super::ClaimsHook>>,
    pub(crate) limiter: client_auth::RateLimiter,
    /// Approved clients, so that token requests need no read before their write.
    pub(crate) clients: client_auth::ClientCache,
    pub(crate) authenticator: Authenticator,
    /// Like `authenticator`, for any of the resources (RFC 8707) tokens may be for: what
    /// introspection and revocation recognise as this server's access tokens.
    pub(crate) any_resource: Authenticator,
    /// Seconds of clock skew the authenticator allows: how long past `exp` a revoked token's
    /// `jti` must stay on the denylist.
    pub(crate) leeway: u64,
    /// Serializes changes to the key ring (rotation, pruning); readers never take it.
    pub(super) ring_lock: tokio::sync::Mutex<()>,
    /// Whether the signing keys live in the store (generated and shared by every instance)
    /// rather than being given to the builder.
    pub(super) keys_in_store: bool,
    /// Seals stored private keys, when the app configured a key-encryption secret.
    pub(super) sealer: Option<seal::Sealer>,
    /// Where the denylist sync has read the store's revocation log up to.
    pub(super) revocation_cursor: tokio::sync::Mutex<u64>,
    /// Where the client-cache sync has read the store's client change feed up to.
    pub(super) client_cursor: tokio::sync::Mutex<u64>,
    /// How often the store is polled for revocations and signing keys.
    pub(super) sync_interval: Duration,
    /// Whether `POST /token` also takes a JSON object of string members.
    pub(crate) accept_json: bool,
    /// Checks the DPoP proofs of token requests; its URL is the token endpoint's.
    pub(crate) dpop: crate::dpop::ProofChecker,
    /// The DPoP settings (algorithms, nonces) for the authenticators this server hands out.
    pub(crate) dpop_settings: crate::dpop::Dpop,
    /// The queue to the store's audit log.
    pub(crate) audit: super::audit::AuditLog,
    /// How long audit events are kept, and how many at most.
    pub(super) audit_retention: (Duration, u64),
    /// The app's directory of approver groups.
    pub(crate) approver_directory: Option<Arc<dyn super::ApproverDirectory>>,
    /// The queue to the app's notifier.
    pub(crate) notifications: super::approval::Notifications,
}

impl ServerState {
    pub(super) fn trusted_issuer(&self) -> Issuer {
        trust(
            &self.issuer,
            &self.audiences,
            &self.verify_keys,
            &self.denylist,
            self.allow_unlimited,
        )
    }

    /// Whether `client_id` could name a client: a registered id's shape, or a Client ID
    /// Metadata Document URL when those are accepted. Anything else is refused before any
    /// lookup.
    pub(crate) fn plausible_client_id(&self, client_id: &str) -> bool {
        if super::client_auth::valid_client_id(client_id) {
            return true;
        }
        // A URL is parsed only when it could be one (not for every registered id).
        #[cfg(feature = "remote")]
        if self.client_metadata.is_some() && super::client_metadata::is_document_url(client_id) {
            return true;
        }
        false
    }

    /// The client `client_id` names, for the authorization endpoint: from the store, or, for a
    /// Client ID Metadata Document URL, from its document (fetched, checked and stored).
    pub(crate) async fn client_for_authorization(
        &self,
        client_id: &str,
        request: &http::request::Parts,
    ) -> Result<Option<store::ClientRecord>, super::http::OAuthError> {
        #[cfg(feature = "remote")]
        if let Some(fetcher) = &self.client_metadata
            && super::client_metadata::is_document_url(client_id)
        {
            let peer = super::client_auth::peer(&request.extensions);
            return super::client_metadata::client(self, fetcher, client_id, peer).await;
        }
        #[cfg(not(feature = "remote"))]
        let _ = request;
        Ok(self.store.client(client_id).await?)
    }

    /// The lifetimes a client's tokens get.
    pub(crate) fn lifetimes(&self, client: &store::ClientRecord) -> (TokenLifetime, TokenLifetime) {
        (
            client.access_token_lifetime.unwrap_or(self.access_lifetime),
            client
                .refresh_token_lifetime
                .unwrap_or(self.refresh_lifetime),
        )
    }

    /// Signs an access token's claims with the active key.
    pub(crate) fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        self.ring.load().active.key.sign("at+jwt", claims)
    }

    /// Drops the clients changed on any instance since the last sync from the client cache.
    pub(crate) async fn sync_clients(&self) -> Result<(), StoreError> {
        let mut cursor = self.client_cursor.lock().await;
        if let Some((changed, next)) = self.store.client_changes_since(*cursor).await? {
            for client_id in &changed {
                self.clients.invalidate(client_id);
            }
            *cursor = next;
        }
        Ok(())
    }

    /// Reads the store's revocation log since the last sync into the denylist.
    pub(crate) async fn sync_revocations(&self) -> Result<usize, StoreError> {
        let mut cursor = self.revocation_cursor.lock().await;
        let (revoked, next) = self.store.revocations_since(*cursor).await?;
        *cursor = next;
        Ok(self
            .denylist
            .add(revoked.into_iter().map(|r| (r.jti, r.expires_at))))
    }
}
