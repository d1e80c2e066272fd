//! Where an authenticator's keys come from, and the one immutable [`Snapshot`] of them that a
//! request is validated with.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::KeySet;

/// A key set that another part of the process replaces whole, shared by every authenticator
/// built with it: each request sees either the old set or the new one, never half of each,
/// and no reader waits on a lock. Cheap to clone; clones share the set.
///
/// For keys your application keeps current itself (say, from a secret store). The
/// authorization server (feature `server`) hands its own authenticators its signing keys this
/// way, so a rotation is seen at once with no HTTP hop.
///
/// ```
/// use tower_oauth2::keys::SharedKeys;
/// use tower_oauth2::{Algorithm, Authenticator, Key, KeySet};
///
/// # fn main() -> Result<(), tower_oauth2::ConfigError> {
/// let keys = SharedKeys::new(KeySet::new([Key::hmac([1u8; 32], Algorithm::HS256)?]));
/// let auth = Authenticator::builder()
///     .issuer("https://issuer.example")
///     .audience("orders-api")
///     .shared_keys(keys.clone())
///     .build()?;
/// // Later, on rotation: requests from now on are verified with the new set.
/// keys.replace(KeySet::new([Key::hmac([2u8; 32], Algorithm::HS256)?]));
/// # let _ = auth; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedKeys(Arc<ArcSwap<KeySet>>);

impl SharedKeys {
    /// Shared keys that start as `keys`.
    pub fn new(keys: KeySet) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(keys)))
    }

    /// Replaces the whole set; requests that already took a snapshot finish with the old one.
    pub fn replace(&self, keys: KeySet) {
        self.0.store(Arc::new(keys));
    }

    /// The current set.
    pub fn load(&self) -> Arc<KeySet> {
        self.0.load_full()
    }
}

impl fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedKeys").field(&**self.0.load()).finish()
    }
}

/// Where an authenticator's keys come from. Validation takes a [`Snapshot`] and reads only
/// that; nothing in the validation core knows how the keys got there.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// Keys fixed at build time.
    Static(KeySet),
    /// A JWKS fetched over HTTP and refreshed.
    #[cfg(feature = "remote")]
    Remote(Arc<super::remote::RemoteJwks>),
    /// Keys another part of the process replaces whole.
    Shared(SharedKeys),
}

impl KeySource {
    /// The keys to validate one request with.
    pub(crate) fn snapshot(&self) -> Snapshot<'_> {
        match self {
            KeySource::Static(set) => Snapshot::Borrowed(set),
            #[cfg(feature = "remote")]
            KeySource::Remote(remote) => Snapshot::Shared(remote.snapshot()),
            KeySource::Shared(shared) => Snapshot::Shared(shared.0.load()),
        }
    }
}

/// One immutable view of a [`KeySource`]'s keys.
pub(crate) enum Snapshot<'a> {
    /// A set the source owns for its whole life.
    Borrowed(&'a KeySet),
    /// The set a replaceable source held when the request came in.
    Shared(arc_swap::Guard<Arc<KeySet>>),
}

impl Snapshot<'_> {
    /// The shared set itself, for a source whose keys change (`None`: they never do).
    pub(crate) fn identity(&self) -> Option<Arc<KeySet>> {
        match self {
            Snapshot::Borrowed(_) => None,
            Snapshot::Shared(set) => Some(Arc::clone(set)),
        }
    }

    /// Whether this is the set `identity` returned earlier.
    pub(crate) fn is(&self, identity: Option<&Arc<KeySet>>) -> bool {
        match (self, identity) {
            (Snapshot::Borrowed(_), None) => true,
            (Snapshot::Shared(set), Some(held)) => Arc::ptr_eq(set, held),
            _ => false,
        }
    }
}

impl std::ops::Deref for Snapshot<'_> {
    type Target = KeySet;

    fn deref(&self) -> &KeySet {
        match self {
            Snapshot::Borrowed(set) => set,
            Snapshot::Shared(set) => set,
        }
    }
}
