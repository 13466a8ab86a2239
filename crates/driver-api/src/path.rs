//! [`StoragePath`]: a validated, traversal-proof path into a storage driver.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Why a string is not a valid [`StoragePath`].
///
/// This is the driver-independent half of [`StorageError::InvalidPath`](crate::StorageError);
/// the [`Driver`](crate::Driver) handle adds the driver name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?}: {reason}")]
pub struct InvalidPathError {
    /// The rejected input.
    pub path: String,
    /// A short, static explanation.
    pub reason: &'static str,
}

/// A validated storage path.
///
/// Grammar: `^(/[A-Za-z0-9._-]+)+$` with no component equal to `.` or `..`, or the root `/`.
/// Anything else (empty string, relative paths, `//`, trailing `/`, traversal components,
/// characters outside the set) is rejected, so a `StoragePath` can be joined under any
/// backend root without escaping it.
///
/// Ordering is component-wise (as if `/` sorted before every other byte): a directory sorts
/// directly before its own contents, so sorting paths gives the depth-first order used by
/// [`walk`](crate::StorageDriver::walk).
///
/// ```
/// use driver_api::StoragePath;
/// let p = StoragePath::new("/docker/registry/v2").unwrap();
/// assert_eq!(p.file_name(), Some("v2"));
/// assert_eq!(p.parent().unwrap().as_str(), "/docker/registry");
/// assert!(StoragePath::new("/a/../etc").is_err());
/// assert!(StoragePath::new("/a//b").is_err());
/// ```
///
/// Cloning is a reference-count increment: listings and walks hand out paths cheaply.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoragePath(Arc<str>);

/// True for a byte allowed inside a path component.
#[inline]
fn is_component_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// Checks one path component (the text between two slashes).
pub fn validate_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    if c == "." || c == ".." {
        return Err("'.' and '..' components are not allowed");
    }
    if !c.bytes().all(is_component_byte) {
        return Err("components may only contain A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

impl StoragePath {
    /// Parses and validates `s`.
    pub fn new(s: &str) -> Result<Self, InvalidPathError> {
        let err = |reason| InvalidPathError {
            path: s.to_owned(),
            reason,
        };
        if s == "/" {
            return Ok(Self::root());
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(err(if s.is_empty() {
                "path is empty"
            } else {
                "path must start with '/'"
            }));
        };
        for c in rest.split('/') {
            validate_component(c).map_err(err)?;
        }
        Ok(Self(s.into()))
    }

    /// The root path `/`.
    pub fn root() -> Self {
        Self("/".into())
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        &*self.0 == "/"
    }

    /// The path as a string, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (empty for the root): handy for joining under a
    /// backend prefix.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// The parent directory, or `None` for the root.
    pub fn parent(&self) -> Option<StoragePath> {
        if self.is_root() {
            return None;
        }
        let idx = self.0.rfind('/').unwrap_or(0);
        Some(if idx == 0 {
            Self::root()
        } else {
            Self(self.0[..idx].into())
        })
    }

    /// Iterates over the components (none for the root).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.relative().split('/').filter(|c| !c.is_empty())
    }

    /// Appends one validated component.
    pub fn join(&self, name: &str) -> Result<StoragePath, InvalidPathError> {
        validate_component(name).map_err(|reason| InvalidPathError {
            path: format!("{}/{}", self.0.trim_end_matches('/'), name),
            reason,
        })?;
        Ok(self.join_unchecked(name))
    }

    /// Appends a component already known to be valid (for example one produced by a
    /// backend listing that was filtered with [`validate_component`]).
    pub(crate) fn join_unchecked(&self, name: &str) -> StoragePath {
        let mut s = String::with_capacity(self.0.len() + 1 + name.len());
        if !self.is_root() {
            s.push_str(&self.0);
        }
        s.push('/');
        s.push_str(name);
        Self(s.into())
    }

    /// Builds a child path from a listing entry, returning `None` when the entry's name is
    /// not a valid component (temporary files, foreign objects): drivers use this to hide
    /// whatever the path grammar cannot name.
    pub fn child(&self, name: &str) -> Option<StoragePath> {
        validate_component(name).ok()?;
        Some(self.join_unchecked(name))
    }

    /// True when `self` is a strict ancestor directory of `other` (`/a` of `/a/b`, but not of
    /// `/ab` nor of `/a` itself). The root is an ancestor of every other path.
    pub fn is_ancestor_of(&self, other: &StoragePath) -> bool {
        if self.is_root() {
            return !other.is_root();
        }
        other.0.len() > self.0.len()
            && other.0.starts_with(&*self.0)
            && other.0.as_bytes()[self.0.len()] == b'/'
    }

    /// True when `other` equals `self` or lies below it.
    pub fn contains(&self, other: &StoragePath) -> bool {
        self == other || self.is_ancestor_of(other)
    }

    /// `self` re-rooted below `prefix`: `/b/c` under `/a` is `/a/b/c`; the root under `/a`
    /// is `/a`.
    ///
    /// ```
    /// use driver_api::StoragePath;
    /// let p = StoragePath::new("/b/c").unwrap();
    /// let prefix = StoragePath::new("/a").unwrap();
    /// assert_eq!(p.under(&prefix).as_str(), "/a/b/c");
    /// assert_eq!(p.under(&prefix).strip_prefix(&prefix), Some(p));
    /// ```
    pub fn under(&self, prefix: &StoragePath) -> StoragePath {
        if prefix.is_root() {
            return self.clone();
        }
        if self.is_root() {
            return prefix.clone();
        }
        let mut s = String::with_capacity(prefix.0.len() + self.0.len());
        s.push_str(&prefix.0);
        s.push_str(&self.0);
        Self(s.into())
    }

    /// The inverse of [`under`](Self::under): `self` relative to `prefix` as a path of its
    /// own (`prefix` itself becomes the root), or `None` when `self` is not inside `prefix`.
    pub fn strip_prefix(&self, prefix: &StoragePath) -> Option<StoragePath> {
        if prefix.is_root() {
            Some(self.clone())
        } else if self == prefix {
            Some(Self::root())
        } else if prefix.is_ancestor_of(self) {
            Some(Self(self.0[prefix.0.len()..].into()))
        } else {
            None
        }
    }
}

/// Maps `/` below every other byte so that byte order equals component order.
#[inline]
fn sort_byte(b: u8) -> u8 {
    if b == b'/' {
        0
    } else {
        b
    }
}

/// Compares two path strings component-wise (see [`StoragePath`]'s ordering).
pub fn cmp_paths(a: &str, b: &str) -> Ordering {
    sort_bytes(a).cmp(sort_bytes(b))
}

/// The bytes of a path string as the component-wise order sees them.
/// every other byte unchanged and at least 0x2d). Lets drivers build sort keys, e.g.
/// a bound just past a directory's subtree by appending the byte 1.
fn sort_bytes(path: &str) -> impl Iterator<Item = u8> + '_ {
    path.bytes().map(sort_byte)
}

impl Ord for StoragePath {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_paths(&self.0, &other.0)
    }
}

impl PartialOrd for StoragePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for StoragePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for StoragePath {
    type Err = InvalidPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for StoragePath {
    type Error = InvalidPathError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        for ok in [
            "/",
            "/a",
            "/2",
            "/a.a",
            "/0-9/abcdefg",
            "/.abc",
            "/a--b",
            "/_.abc",
            "/abc./abc",
            "/...",
            "/a/..b",
        ] {
            assert!(StoragePath::new(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "abc",
            "123.abc",
            "//bcd",
            "/abc_123/",
            "/..",
            "/.",
            "/a/../b",
            "/a/./b",
            "/a b",
            "/a%2f",
            "/a\\b",
            "/a/#b",
            "/\u{e9}",
        ] {
            assert!(StoragePath::new(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn parents_and_ancestry() {
        let p = StoragePath::new("/a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/a/b");
        assert_eq!(
            StoragePath::new("/a").unwrap().parent().unwrap(),
            StoragePath::root()
        );
        assert!(StoragePath::root().parent().is_none());
        let a = StoragePath::new("/a").unwrap();
        assert!(a.is_ancestor_of(&p));
        assert!(!a.is_ancestor_of(&StoragePath::new("/ab").unwrap()));
        assert!(!a.is_ancestor_of(&a));
        assert!(StoragePath::root().is_ancestor_of(&a));
        assert_eq!(StoragePath::root().join("x").unwrap().as_str(), "/x");
        assert!(a.join("..").is_err());
        assert!(a.child("b#upload").is_none());
    }

    #[test]
    fn component_order_is_depth_first() {
        let mut v: Vec<StoragePath> = ["/a-b", "/a/x", "/a", "/a/x/y", "/b"]
            .iter()
            .map(|s| StoragePath::new(s).unwrap())
            .collect();
        v.sort();
        let s: Vec<&str> = v.iter().map(|p| p.as_str()).collect();
        assert_eq!(s, ["/a", "/a/x", "/a/x/y", "/a-b", "/b"]);
    }
}
