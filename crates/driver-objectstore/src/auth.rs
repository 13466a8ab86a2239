//! Authentication and permission failures, told apart once for every object store from
//! an answer's status and the service's error code, so callers match
//! [`StorageError::Unauthenticated`] and [`StorageError::PermissionDenied`] whichever
//! service refused them.

use driver_api::Operation;
use driver_api::{BoxError, StorageError, StoragePath};

/// Which refusal an answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credentials were refused: missing, wrong, expired, or a bad signature.
    Unauthenticated,
    /// The credentials were accepted and the operation refused.
    PermissionDenied,
}

/// Codes that mean "who are you?", whatever the status (S3 and OSS answer 403 to a bad
/// signature; Azure to a bad key).
const UNAUTHENTICATED: &[&str] = &[
    // S3 and S3-compatible stores
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    // OSS
    "SecurityTokenExpired",
    "InvalidSecurityToken",
    // Azure
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
];

impl AuthFailure {
    /// The refusal an answer of `status` with error `code` (empty if none) is, if any:
    /// a code from the list above, or 401, is `Unauthenticated`; any other 403 is
    /// `PermissionDenied` (S3 `AccessDenied`, Azure `AuthorizationPermissionMismatch`,
    /// GCS and Swift 403).
    ///
    /// ```
    /// use driver_objectstore::auth::AuthFailure;
    /// assert_eq!(AuthFailure::of(403, "SignatureDoesNotMatch"), Some(AuthFailure::Unauthenticated));
    /// assert_eq!(AuthFailure::of(403, "AccessDenied"), Some(AuthFailure::PermissionDenied));
    /// assert_eq!(AuthFailure::of(401, ""), Some(AuthFailure::Unauthenticated));
    /// assert_eq!(AuthFailure::of(503, "SlowDown"), None);
    /// ```
    pub fn of(status: u16, code: &str) -> Option<Self> {
        if UNAUTHENTICATED.contains(&code) || status == 401 {
            Some(AuthFailure::Unauthenticated)
        } else if status == 403 {
            Some(AuthFailure::PermissionDenied)
        } else {
            None
        }
    }

    /// The error of this kind.
    pub fn error(
        self,
        driver: &'static str,
        operation: Operation,
        path: &StoragePath,
        source: impl Into<BoxError>,
    ) -> StorageError {
        match self {
            AuthFailure::Unauthenticated => {
                StorageError::unauthenticated(driver, operation, path, source)
            }
            AuthFailure::PermissionDenied => {
                StorageError::permission_denied(driver, operation, path, source)
            }
        }
    }
}
