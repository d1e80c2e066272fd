//! Scopes: the set a token grants, and [`RequireScope`], the route layer that demands some.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::AuthError;
use crate::layer::{LayerContext, ResponseFuture, call_ready};
use crate::validate::VerifiedToken;

/// The scopes a token grants: its `scope` (space-delimited) and `scp` (string or array) claims,
/// plus any configured role claims. Sorted and without duplicates.
///
/// Compact: the scopes' text in one allocation and their end offsets in another, whatever their
/// number; a cached token keeps its scopes in this form.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes {
    /// The sorted scopes, concatenated.
    text: Box<str>,
    /// Where each scope ends in `text`.
    ends: Box<[u32]>,
}

impl Scopes {
    /// The set of `scopes` (any order, repeats allowed).
    pub(crate) fn from_strs<S: AsRef<str>>(scopes: &mut [S]) -> Self {
        scopes.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let mut text = String::with_capacity(scopes.iter().map(|s| s.as_ref().len()).sum());
        let mut ends = Vec::with_capacity(scopes.len());
        let mut last: Option<&str> = None;
        for scope in scopes.iter().map(AsRef::as_ref) {
            if last == Some(scope) {
                continue;
            }
            text.push_str(scope);
            // Scopes come from a token of at most `max_token_size` (≤ 1 MiB) or from a string
            // an application parsed; 4 GiB of scopes is not a case to serve.
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            last = Some(scope);
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    fn get(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        self.text
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }

    /// Heap bytes held, for the token cache's memory bound.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.len() + self.ends.len() * 4
    }

    /// Whether `scope` is granted.
    ///
    /// ```
    /// use tower_oauth2::Scopes;
    /// let scopes: Scopes = "events:read profile".parse().unwrap_or_default();
    /// assert!(scopes.contains("profile"));
    /// assert!(!scopes.contains("events:write"));
    /// ```
    pub fn contains(&self, scope: &str) -> bool {
        let (mut low, mut high) = (0, self.ends.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.get(mid).cmp(scope) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Whether every one of `scopes` is granted.
    pub fn contains_all<S: AsRef<str>>(&self, scopes: impl IntoIterator<Item = S>) -> bool {
        scopes.into_iter().all(|s| self.contains(s.as_ref()))
    }

    /// Whether at least one of `scopes` is granted.
    pub fn contains_any<S: AsRef<str>>(&self, scopes: impl IntoIterator<Item = S>) -> bool {
        scopes.into_iter().any(|s| self.contains(s.as_ref()))
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len()).map(|i| self.get(i))
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl std::str::FromStr for Scopes {
    type Err = std::convert::Infallible;

    /// Parses a space-delimited scope string (RFC 6749 §3.3).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut scopes: Vec<&str> = s.split(' ').filter(|t| !t.is_empty()).collect();
        Ok(Self::from_strs(&mut scopes))
    }
}

impl fmt::Display for Scopes {
    /// Space-delimited, as in a `scope` claim.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Scopes {
    /// As an array of strings.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// A route layer that lets a request through only if its verified token grants the required
/// scopes; otherwise 403 `insufficient_scope` with the required scopes in the challenge
/// (RFC 6750 §3.1). Put it on routes behind an [`Authenticator`](crate::Authenticator) layer.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{Router, routing::get};
/// use tower_oauth2::RequireScope;
///
/// let app: Router = Router::new()
///     .route("/events", get(|| async { "events" }))
///     .route_layer(RequireScope::all(["events:read"]));
/// # }
/// ```
#[derive(Clone)]
pub struct RequireScope {
    inner: Arc<Requirement>,
}

struct Requirement {
    mode: Mode,
    scopes: Box<[Box<str>]>,
    /// Space-delimited, for the challenge's `scope` attribute.
    joined: String,
}

impl RequireScope {
    /// Requires every one of `scopes`. A string with spaces counts as the scopes it lists
    /// (`"a b"` is `"a"` and `"b"`), as in a `scope` claim. With no scope at all, every
    /// authenticated request passes (a warning is logged).
    pub fn all<S: AsRef<str>>(scopes: impl IntoIterator<Item = S>) -> Self {
        Self::new(Mode::All, scopes)
    }

    /// Requires at least one of `scopes` (split on spaces like [`RequireScope::all`]). With no
    /// scope at all, no request passes (a warning is logged).
    pub fn any<S: AsRef<str>>(scopes: impl IntoIterator<Item = S>) -> Self {
        Self::new(Mode::Any, scopes)
    }

    fn new<S: AsRef<str>>(mode: Mode, scopes: impl IntoIterator<Item = S>) -> Self {
        let mut list: Vec<Box<str>> = Vec::new();
        for s in scopes {
            for scope in s.as_ref().split(' ').filter(|t| !t.is_empty()) {
                if !list.iter().any(|known| **known == *scope) {
                    list.push(scope.into());
                }
            }
        }
        if list.is_empty() {
            let effect = match mode {
                Mode::All => "lets every authenticated request through",
                Mode::Any => "refuses every request",
            };
            tracing::warn!("RequireScope with no scope {effect}");
        }
        let joined = list.join(" ");
        Self {
            inner: Arc::new(Requirement {
                mode,
                scopes: list.into_boxed_slice(),
                joined,
            }),
        }
    }

    /// Checks `token` against the requirement.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), AuthError> {
        let granted = token.scopes();
        let ok = match self.inner.mode {
            Mode::All => granted.contains_all(self.inner.scopes.iter()),
            Mode::Any => granted.contains_any(self.inner.scopes.iter()),
        };
        if ok {
            return Ok(());
        }
        let description = match self.inner.mode {
            Mode::All => format!("requires scope {}", self.inner.joined),
            Mode::Any => format!("requires one of the scopes {}", self.inner.joined),
        };
        Err(AuthError::insufficient_scope(
            self.inner.joined.clone(),
            description,
        ))
    }
}

impl fmt::Debug for RequireScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("mode", &self.inner.mode)
            .field("scopes", &self.inner.scopes)
            .finish()
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            requirement: self.clone(),
        }
    }
}

/// The service [`RequireScope`] wraps around a route.
#[derive(Clone, Debug)]
pub struct RequireScopeService<S> {
    inner: S,
    requirement: RequireScope,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopeService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let extensions = request.extensions();
        let result = match (
            extensions.get::<LayerContext>(),
            extensions.get::<VerifiedToken>(),
        ) {
            (Some(_), Some(token)) => self.requirement.check(token),
            (Some(_), None) => Err(AuthError::missing_token()),
            (None, _) => Err(AuthError::layer_missing("RequireScope")),
        };
        match result {
            Ok(()) => ResponseFuture::inner(call_ready(&mut self.inner, request)),
            Err(error) => {
                let extensions = request.extensions();
                crate::audit::rejected(&error, extensions.get::<VerifiedToken>());
                let context = extensions.get::<LayerContext>();
                ResponseFuture::reject(LayerContext::respond(context, &error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sorted_deduplicated_and_searchable() {
        let s: Scopes = "b a  b c".parse().unwrap_or_default();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        assert_eq!(s.to_string(), "a b c");
        assert!(s.contains_all(["a", "c"]));
        assert!(!s.contains_all(["a", "d"]));
        assert!(s.contains_any(["d", "c"]));
        assert!(!s.contains_any(["d"]));
        assert!(!s.contains_any(Vec::<String>::new()));
    }

    #[test]
    fn compact_set_keeps_each_scope_whole() {
        // Role claims may hold spaces; the compact form must not split or merge them.
        let mut roles = vec!["offline access", "zeta", "a", "m:read", "a", "b", "offline"];
        let s = Scopes::from_strs(&mut roles);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            ["a", "b", "m:read", "offline", "offline access", "zeta"]
        );
        assert_eq!(s.len(), 6);
        for scope in ["a", "b", "m:read", "offline", "offline access", "zeta"] {
            assert!(s.contains(scope), "{scope}");
        }
        for absent in [
            "",
            "ab",
            "offline acces",
            "offline accessx",
            "zet",
            "zz",
            "0",
        ] {
            assert!(!s.contains(absent), "{absent:?}");
        }
        assert!(Scopes::default().is_empty() && !Scopes::default().contains(""));
    }

    #[test]
    fn requirement_strings_are_split_like_scope_claims() {
        let r = RequireScope::all(["a b", "b", " c "]);
        assert_eq!(
            &*r.inner.scopes,
            ["a".into(), "b".into(), "c".into()] as [Box<str>; 3]
        );
        assert_eq!(r.inner.joined, "a b c");
        assert!(
            RequireScope::any(Vec::<&str>::new())
                .inner
                .scopes
                .is_empty()
        );
    }
}
