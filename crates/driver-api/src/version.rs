//! The storage-driver API version and its compatibility rule.

use std::fmt;

/// A `major.minor` API version, as in Distribution's storage driver package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes bump this.
    pub major: u32,
    /// Backwards-compatible additions bump this.
    pub minor: u32,
}

/// The version of the contract this crate defines: "0.1", as Distribution's.
pub const CURRENT_VERSION: Version = Version { major: 0, minor: 1 };

impl Version {
    /// Parses `"major.minor"`.
    pub fn parse(s: &str) -> Option<Version> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Version {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }

    /// Whether a driver speaking `driver` can serve a registry built for `self`: the same
    /// major version and an equal or greater minor version (Distribution's rule).
    ///
    /// ```
    /// use driver_api::{Version, CURRENT_VERSION};
    /// assert!(CURRENT_VERSION.accepts(Version { major: 0, minor: 2 }));
    /// assert!(!CURRENT_VERSION.accepts(Version { major: 1, minor: 1 }));
    /// assert!(!Version { major: 0, minor: 2 }.accepts(CURRENT_VERSION));
    /// ```
    pub fn accepts(self, driver: Version) -> bool {
        driver.major == self.major && driver.minor >= self.minor
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
