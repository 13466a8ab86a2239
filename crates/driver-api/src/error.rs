//! The one error type every driver returns.

use std::borrow::Cow;
use std::fmt;

use crate::operation::Operation;
use crate::path::{InvalidPathError, StoragePath};

/// A driver's name as carried by errors: static for built-in drivers, owned for drivers
/// discovered at run time (out-of-process ones).
pub type DriverName = Cow<'static, str>;

/// A boxed source error from a backend client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, StorageError>`.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What a [`FileWriter`](crate::FileWriter) was already done with when it was misused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStatus {
    /// `close` was called.
    Closed,
    /// `commit` was called.
    Committed,
    /// `cancel` was called.
    Cancelled,
    /// `commit` was called and failed: the writer has already aborted what it started,
    /// and only `cancel` (which then has nothing left to remove) and `close` (a no-op)
    /// are allowed.
    CommitFailed,
}

impl fmt::Display for WriterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriterStatus::Closed => "closed",
            WriterStatus::Committed => "committed",
            WriterStatus::Cancelled => "cancelled",
            WriterStatus::CommitFailed => "failed to commit",
        })
    }
}

/// Every failure a storage driver reports.
///
/// Each variant names the driver, and `Display` prints it first, so a log line always says
/// which backend failed. Match on the variant to react (`PathNotFound` is routine for a
/// registry); use [`StorageError::is_retryable`] to decide whether to try again.
///
/// ```
/// use driver_api::{StorageError, StoragePath};
/// let e = StorageError::not_found("inmemory", &StoragePath::new("/a/b").unwrap());
/// assert_eq!(e.to_string(), "inmemory: path not found: /a/b");
/// assert!(matches!(e, StorageError::PathNotFound { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Nothing exists at `path` (no file, or no directory for `list`/`walk`).
    #[error("{driver}: path not found: {path}")]
    PathNotFound {
        /// Driver name.
        driver: DriverName,
        /// The missing path.
        path: String,
    },

    /// `path` is not a valid storage path (see [`StoragePath`]), or is the root where a
    /// file is needed.
    #[error("{driver}: invalid path {path:?}: {reason}")]
    InvalidPath {
        /// Driver name.
        driver: DriverName,
        /// The rejected input, verbatim.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A read started past the end of the object.
    #[error("{driver}: invalid offset {offset} for {path} (size {size})")]
    InvalidOffset {
        /// Driver name.
        driver: DriverName,
        /// The object read.
        path: String,
        /// The requested offset.
        offset: u64,
        /// The object's size.
        size: u64,
    },

    /// The driver does not do `feature` (for this path or at all).
    #[error("{driver}: unsupported: {feature}{}", fmt_path(path))]
    Unsupported {
        /// Driver name.
        driver: DriverName,
        /// The operation that was asked for.
        operation: Operation,
        /// What exactly is not supported, in words (`appending to committed content`).
        feature: Cow<'static, str>,
        /// The path involved, if any.
        path: Option<String>,
    },

    /// A [`FileWriter`](crate::FileWriter) was used after `close`, `commit` or `cancel`.
    #[error("{driver}: writer for {path} already {status}")]
    WriterFinished {
        /// Driver name.
        driver: DriverName,
        /// The writer's path.
        path: String,
        /// What had been done with it.
        status: WriterStatus,
    },

    /// A factory parameter is missing, malformed, out of range or unknown.
    #[error("{driver}: invalid parameter {key:?}: {expected}")]
    InvalidParameter {
        /// Driver name.
        driver: DriverName,
        /// The parameter's key.
        key: String,
        /// What was expected (never the value itself, which may be a secret).
        expected: String,
    },

    /// The parameters are individually valid but do not make a working configuration.
    #[error("{driver}: configuration error: {message}")]
    Config {
        /// Driver name.
        driver: DriverName,
        /// What is wrong.
        message: String,
    },

    /// No driver is registered under `name`.
    #[error("{name}: no storage driver registered under this name (registered: {})", registered.join(", "))]
    InvalidStorageDriver {
        /// The name asked for.
        name: String,
        /// Every registered name, sorted.
        registered: Vec<String>,
    },

    /// The object at `path` was replaced or deleted while a stream was reading it. The
    /// bytes already delivered are the old object's; the rest are not sent, so a caller
    /// never sees two versions spliced. Reading again from the start gives the new
    /// object; retrying at the same offset does not help, so this is not retryable.
    #[error("{driver}: {path} changed while being read (at byte {offset}); read it again from the start")]
    Changed {
        /// Driver name.
        driver: DriverName,
        /// The path being read.
        path: String,
        /// Bytes of the old object already delivered.
        offset: u64,
    },

    /// The backend refused the credentials: missing, wrong, expired, or a signature it
    /// does not accept (HTTP 401; S3 and OSS `InvalidAccessKeyId`, `SignatureDoesNotMatch`,
    /// `ExpiredToken`; Azure `AuthenticationFailed`; an identity service's refusal). Not
    /// retryable: fix the configuration.
    #[error("{driver}: {operation} {path}: not authenticated: {source}")]
    Unauthenticated {
        /// Driver name.
        driver: DriverName,
        /// The operation that failed.
        operation: Operation,
        /// The path involved (empty if none).
        path: String,
        /// What the backend said.
        #[source]
        source: BoxError,
    },

    /// The backend knows who is asking and refuses this operation (HTTP 403 without an
    /// authentication code; S3 `AccessDenied`; Azure `AuthorizationPermissionMismatch`;
    /// a file the process may not read or write, `EACCES`). Not retryable.
    #[error("{driver}: {operation} {path}: permission denied: {source}")]
    PermissionDenied {
        /// Driver name.
        driver: DriverName,
        /// The operation that failed.
        operation: Operation,
        /// The path involved (empty if none).
        path: String,
        /// What the backend said.
        #[source]
        source: BoxError,
    },

    /// Any other failure of the backend (I/O, network, service errors).
    #[error("{driver}: {operation} {path}: {source}")]
    Backend {
        /// Driver name.
        driver: DriverName,
        /// The operation that failed (`put_content`, `list`, ...).
        operation: Operation,
        /// The path involved (empty if none).
        path: String,
        /// Whether trying again may succeed (timeouts, throttling, 5xx).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

fn fmt_path(p: &Option<String>) -> String {
    p.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
}

/// `e`'s message followed by those of its sources, joined by `": "`: one line for a
/// `Backend` error's text, where a library's own `Display` says only its outermost layer
/// ("dispatch failure") and its `Debug` is not for people.
///
/// ```
/// use std::error::Error;
/// use std::io::{ErrorKind, Error as IoError};
///
/// #[derive(Debug)]
/// struct Dispatch(IoError);
/// impl std::fmt::Display for Dispatch {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("dispatch failure")
///     }
/// }
/// impl Error for Dispatch {
///     fn source(&self) -> Option<&(dyn Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let e = Dispatch(IoError::new(ErrorKind::ConnectionRefused, "connection refused"));
/// assert_eq!(e.to_string(), "dispatch failure");
/// assert_eq!(driver_api::error_chain(&e), "dispatch failure: connection refused");
/// ```
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let more = s.to_string();
        // Layers that only repeat what they wrap add nothing.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        src = s.source();
    }
    text
}

impl StorageError {
    /// `Changed`: `path` changed after `offset` bytes of it were read.
    pub fn changed(driver: impl Into<DriverName>, path: &StoragePath, offset: u64) -> Self {
        StorageError::Changed {
            driver: driver.into(),
            path: path.as_str().to_owned(),
            offset,
        }
    }

    /// `PathNotFound` for `path`.
    pub fn not_found(driver: impl Into<DriverName>, path: &StoragePath) -> Self {
        StorageError::PathNotFound {
            driver: driver.into(),
            path: path.as_str().to_owned(),
        }
    }

    /// `Unsupported`: `writer(path, true)` on committed content of `size` bytes (only
    /// empty content may be appended to; see the trait's contract). Every driver answers
    /// this case with this error, so callers can match it.
    ///
    /// ```
    /// use driver_api::{StoragePath, StorageError};
    /// let e = StorageError::append_to_committed("demo", &StoragePath::new("/a").unwrap(), 3);
    /// assert!(matches!(e, StorageError::Unsupported { .. }));
    /// assert_eq!(e.to_string(), "demo: unsupported: appending to committed content (3 bytes) (/a)");
    /// ```
    pub fn append_to_committed(
        driver: impl Into<DriverName>,
        path: &StoragePath,
        size: u64,
    ) -> Self {
        StorageError::Unsupported {
            driver: driver.into(),
            operation: Operation::Writer,
            feature: format!("appending to committed content ({size} bytes)").into(),
            path: Some(path.as_str().to_owned()),
        }
    }

    /// `InvalidPath` from a parse failure.
    pub fn invalid_path(driver: impl Into<DriverName>, e: InvalidPathError) -> Self {
        StorageError::InvalidPath {
            driver: driver.into(),
            path: e.path,
            reason: e.reason,
        }
    }

    /// `InvalidOffset` for a read at `offset` of an object of `size` bytes.
    pub fn invalid_offset(
        driver: impl Into<DriverName>,
        path: &StoragePath,
        offset: u64,
        size: u64,
    ) -> Self {
        StorageError::InvalidOffset {
            driver: driver.into(),
            path: path.as_str().to_owned(),
            offset,
            size,
        }
    }

    /// A non-retryable `Backend` error.
    pub fn backend(
        driver: impl Into<DriverName>,
        operation: Operation,
        path: &StoragePath,
        source: impl Into<BoxError>,
    ) -> Self {
        StorageError::Backend {
            driver: driver.into(),
            operation,
            path: path.as_str().to_owned(),
            retryable: false,
            source: source.into(),
        }
    }

    /// `Unauthenticated`: the backend refused the credentials.
    pub fn unauthenticated(
        driver: impl Into<DriverName>,
        operation: Operation,
        path: &StoragePath,
        source: impl Into<BoxError>,
    ) -> Self {
        StorageError::Unauthenticated {
            driver: driver.into(),
            operation,
            path: path.as_str().to_owned(),
            source: source.into(),
        }
    }

    /// `PermissionDenied`: the backend refused the operation to these credentials.
    ///
    /// ```
    /// use driver_api::{Operation, StorageError, StoragePath};
    /// let e = StorageError::permission_denied("s3", Operation::Stat, &StoragePath::new("/a").unwrap(), "AccessDenied (HTTP 403)");
    /// assert_eq!(e.to_string(), "s3: stat /a: permission denied: AccessDenied (HTTP 403)");
    /// assert!(e.is_auth() && !e.is_retryable());
    /// ```
    pub fn permission_denied(
        driver: impl Into<DriverName>,
        operation: Operation,
        path: &StoragePath,
        source: impl Into<BoxError>,
    ) -> Self {
        StorageError::PermissionDenied {
            driver: driver.into(),
            operation,
            path: path.as_str().to_owned(),
            source: source.into(),
        }
    }

    /// The operation that failed, for the variants that carry one (`Backend`,
    /// `Unauthenticated`, `PermissionDenied`, `Unsupported`).
    pub fn operation(&self) -> Option<Operation> {
        match self {
            StorageError::Backend { operation, .. }
            | StorageError::Unauthenticated { operation, .. }
            | StorageError::PermissionDenied { operation, .. }
            | StorageError::Unsupported { operation, .. } => Some(*operation),
            _ => None,
        }
    }

    /// True for `Unauthenticated` and `PermissionDenied`: retrying with the same
    /// credentials will not help.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            StorageError::Unauthenticated { .. } | StorageError::PermissionDenied { .. }
        )
    }

    /// Marks a `Backend` error as retryable (other variants are unchanged).
    pub fn with_retryable(mut self, value: bool) -> Self {
        if let StorageError::Backend { retryable, .. } = &mut self {
            *retryable = value;
        }
        self
    }

    /// The driver the error came from (the requested name for `InvalidStorageDriver`).
    pub fn driver(&self) -> &str {
        match self {
            StorageError::PathNotFound { driver, .. }
            | StorageError::InvalidPath { driver, .. }
            | StorageError::InvalidOffset { driver, .. }
            | StorageError::Unsupported { driver, .. }
            | StorageError::WriterFinished { driver, .. }
            | StorageError::InvalidParameter { driver, .. }
            | StorageError::Config { driver, .. }
            | StorageError::Changed { driver, .. }
            | StorageError::Unauthenticated { driver, .. }
            | StorageError::PermissionDenied { driver, .. }
            | StorageError::Backend { driver, .. } => driver,
            StorageError::InvalidStorageDriver { name, .. } => name,
        }
    }

    /// The path the error is about, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            StorageError::PathNotFound { path, .. }
            | StorageError::InvalidPath { path, .. }
            | StorageError::InvalidOffset { path, .. }
            | StorageError::WriterFinished { path, .. }
            | StorageError::Changed { path, .. } => Some(path),
            StorageError::Backend { path, .. }
            | StorageError::Unauthenticated { path, .. }
            | StorageError::PermissionDenied { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            StorageError::Unsupported { path, .. } => path.as_deref(),
            _ => None,
        }
    }

    /// Rewrites the path this error carries (if any) with `f`: for layers that present a
    /// driver under different paths (see [`Prefixed`](crate::prefix::Prefixed)), so the
    /// error names the path the caller used.
    pub fn map_path(mut self, f: impl FnOnce(&str) -> String) -> Self {
        match &mut self {
            StorageError::PathNotFound { path, .. }
            | StorageError::InvalidPath { path, .. }
            | StorageError::InvalidOffset { path, .. }
            | StorageError::WriterFinished { path, .. }
            | StorageError::Changed { path, .. }
            | StorageError::Unauthenticated { path, .. }
            | StorageError::PermissionDenied { path, .. }
            | StorageError::Backend { path, .. } => *path = f(path),
            StorageError::Unsupported {
                path: Some(path), ..
            } => *path = f(path),
            StorageError::Unsupported { path: None, .. }
            | StorageError::InvalidParameter { .. }
            | StorageError::Config { .. }
            | StorageError::InvalidStorageDriver { .. } => {}
        }
        self
    }

    /// True for `PathNotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::PathNotFound { .. })
    }

    /// True when retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Backend {
                retryable: true,
                ..
            }
        )
    }
}

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        let kind = match &e {
            StorageError::PathNotFound { .. } => std::io::ErrorKind::NotFound,
            StorageError::InvalidPath { .. }
            | StorageError::InvalidOffset { .. }
            | StorageError::InvalidParameter { .. } => std::io::ErrorKind::InvalidInput,
            StorageError::Unsupported { .. } => std::io::ErrorKind::Unsupported,
            StorageError::Unauthenticated { .. } | StorageError::PermissionDenied { .. } => {
                std::io::ErrorKind::PermissionDenied
            }
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
