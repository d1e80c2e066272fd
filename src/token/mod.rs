//! What a verified token is, as data: [`VerifiedToken`] and its [`Scopes`].
//!
//! Nothing here checks anything: the validation pipeline (`crate::validate`) builds a
//! `VerifiedToken` only after every check passed.

mod scopes;

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::AuthError;
use crate::jose::Algorithm;
use crate::keys::KeySet;

pub use scopes::Scopes;

/// A token whose signature and claims passed every check. Cheap to clone. It also holds the key
/// set that verified it, so a token kept long after a JWKS refresh keeps the old set alive.
///
/// The layer puts one in the request extensions; handlers read it through the
/// [`Claims`](crate::Claims), [`Scopes`] or `VerifiedToken` extractors, or from
/// `request.extensions()`. `Debug` prints the subject, client and scopes, never the token.
#[derive(Clone)]
pub struct VerifiedToken {
    inner: Arc<TokenInner>,
}

pub(crate) struct TokenInner {
    /// The claims JSON as the token carried it (`text[..payload_len]`), followed by the
    /// unescaped text of any string claim whose JSON escapes the parser had to undo. Every
    /// string claim below is a [`Span`] of it: one allocation for all of them.
    pub(crate) text: Box<str>,
    pub(crate) payload_len: usize,
    pub(crate) iss: Option<Span>,
    pub(crate) sub: Option<Span>,
    pub(crate) jti: Option<Span>,
    pub(crate) client_id: Option<Span>,
    /// The first audience, and any others (usually none, which allocates nothing).
    pub(crate) aud_first: Option<Span>,
    pub(crate) aud_rest: Box<[Span]>,
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: Option<u64>,
    pub(crate) scopes: Scopes,
    /// The token carries `cnf` (RFC 7800): it is bound to a key.
    pub(crate) confirmed: bool,
    /// `cnf.jkt`: the thumbprint of the DPoP key it is bound to (RFC 9449 §6.1).
    pub(crate) jkt: Option<Span>,
    /// `None`: validated by introspection (RFC 7662), not by a signature.
    pub(crate) alg: Option<Algorithm>,
    /// Shared with the key that verified the token when their ids are the same.
    pub(crate) kid: Option<Arc<str>>,
    /// Index of the issuer that verified it, for the token cache.
    pub(crate) issuer: usize,
    /// The key set that verified it (`None`: the issuer's keys never change), for the token
    /// cache. Holding the `Arc` keeps the allocation alive, so pointer equality cannot be fooled
    /// by reuse.
    pub(crate) keys: Option<Arc<KeySet>>,
}

/// A byte range of [`TokenInner::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

/// Builds [`TokenInner::text`] and its spans from the payload the claims were parsed from.
pub(crate) struct TextBuilder {
    base: usize,
    payload_len: usize,
    extra: String,
}

impl TextBuilder {
    pub(crate) fn new(payload: &[u8]) -> Self {
        Self {
            base: payload.as_ptr() as usize,
            payload_len: payload.len(),
            extra: String::new(),
        }
    }

    /// Where `s` will be: inside the payload if it is a slice of it (the parser borrowed it),
    /// else appended after it (JSON escapes made the parser build it; a live allocation of its
    /// own never overlaps the payload's).
    pub(crate) fn span(&mut self, s: &str) -> Span {
        let inside = (s.as_ptr() as usize)
            .checked_sub(self.base)
            .filter(|start| start + s.len() <= self.payload_len);
        let start = inside.unwrap_or_else(|| {
            let start = self.payload_len + self.extra.len();
            self.extra.push_str(s);
            start
        });
        // The token is at most `max_token_size` bytes, which the builder keeps to 1 MiB.
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(s.len()).unwrap_or(0),
        }
    }

    /// The text: the payload, then what `span` appended.
    pub(crate) fn finish(self, payload: Vec<u8>) -> Result<Box<str>, AuthError> {
        let mut text =
            String::from_utf8(payload).map_err(|_| AuthError::malformed("claims are not UTF-8"))?;
        text.push_str(&self.extra);
        Ok(text.into_boxed_str())
    }
}

impl VerifiedToken {
    /// The token as the pipeline assembled it.
    pub(crate) fn new(inner: TokenInner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `cnf.jkt`: the RFC 7638 thumbprint of the DPoP key the token is bound to (RFC 9449
    /// §6.1). Through the layer, a token with one passed only with a proof signed by that key,
    /// so handlers may log it or compare it with a key they know.
    pub fn dpop_thumbprint(&self) -> Option<&str> {
        self.text(self.inner.jkt)
    }

    /// Whether the token is sender-constrained: it carries a confirmation (`cnf`, RFC 7800),
    /// bound to a DPoP key ([`dpop_thumbprint`](Self::dpop_thumbprint)) or to a client
    /// certificate.
    pub fn is_sender_constrained(&self) -> bool {
        self.inner.confirmed
    }

    /// `sub`: the principal the token is about.
    pub fn subject(&self) -> Option<&str> {
        self.text(self.inner.sub)
    }

    /// `iss`: who issued the token.
    pub fn issuer(&self) -> Option<&str> {
        self.text(self.inner.iss)
    }

    /// `aud`: the audiences, whether the token sent a string or an array.
    pub fn audience(&self) -> impl Iterator<Item = &str> + '_ {
        let inner = &*self.inner;
        inner
            .aud_first
            .iter()
            .chain(inner.aud_rest.iter())
            .map(|span| self.text(Some(*span)).unwrap_or_default())
    }

    fn text(&self, span: Option<Span>) -> Option<&str> {
        let span = span?;
        let start = span.start as usize;
        self.inner.text.get(start..start + span.len as usize)
    }

    /// `client_id` (RFC 9068 §2.2): the OAuth client the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.text(self.inner.client_id)
    }

    /// `jti`: the token's unique id.
    pub fn jwt_id(&self) -> Option<&str> {
        self.text(self.inner.jti)
    }

    /// `exp` in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<u64> {
        self.inner.exp
    }

    /// Roughly the heap bytes this token holds besides its fixed-size part, for the cache's
    /// memory bound.
    pub(crate) fn weight(&self) -> usize {
        let inner = &self.inner;
        inner.text.len() + inner.aud_rest.len() * 8 + inner.scopes.heap_bytes()
    }

    /// The issuer (its index) and key set that verified the token, for the token cache.
    pub(crate) fn verified_by(&self) -> (usize, Option<&Arc<KeySet>>) {
        (self.inner.issuer, self.inner.keys.as_ref())
    }

    /// `iat` in seconds since the Unix epoch.
    pub fn issued_at(&self) -> Option<u64> {
        self.inner.iat
    }

    /// `nbf` in seconds since the Unix epoch.
    pub fn not_before(&self) -> Option<u64> {
        self.inner.nbf
    }

    /// The granted scopes: `scope` and `scp`, plus any configured role claims.
    pub fn scopes(&self) -> &Scopes {
        &self.inner.scopes
    }

    /// The signature algorithm the token was verified with; `None` for a token the issuer's
    /// introspection endpoint vouched for (RFC 7662), which was not verified locally.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.inner.alg
    }

    /// Whether the issuer's introspection endpoint (RFC 7662) vouched for the token, rather than
    /// a signature verified here.
    pub fn is_introspected(&self) -> bool {
        self.inner.alg.is_none()
    }

    /// The `kid` of the key that verified the token, if the token named one.
    pub fn key_id(&self) -> Option<&str> {
        self.inner.kid.as_deref()
    }

    /// The verified claims JSON, as the token carried it.
    pub fn claims_json(&self) -> &[u8] {
        let inner = &*self.inner;
        inner
            .text
            .as_bytes()
            .get(..inner.payload_len)
            .unwrap_or_default()
    }

    /// Deserializes the verified claims into `T`.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.claims_json())
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("sub", &self.subject())
            .field("client_id", &self.client_id())
            .field("iss", &self.issuer())
            .field("scopes", &self.scopes())
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}
