//! [`Scopes`]: the set of scopes a token grants, as data.

use std::fmt;

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
}
