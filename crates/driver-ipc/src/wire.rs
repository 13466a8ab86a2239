//! The JSON payloads of frames (docs/ipc-protocol.md, "Handshake", "Requests", "Errors").

use driver_api::Operation;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driver_api::{FileInfo, Leftover, LeftoverKind, StorageError, StoragePath};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks (1.1: shared memory, negotiated).
pub const PROTOCOL: driver_api::Version = driver_api::Version { major: 1, minor: 1 };

/// The oldest protocol a host accepts from a child: 1.0 (no shared memory).
pub const MIN_PROTOCOL: driver_api::Version = driver_api::Version { major: 1, minor: 0 };

/// The child's first frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Wire protocol version, `major.minor`.
    pub protocol: String,
    /// Storage API version, `major.minor`.
    pub api: String,
    /// The driver's name.
    pub driver: String,
    /// The driver's own version.
    #[serde(default)]
    pub version: String,
    /// Whether another instance with the same parameters sees the same files (absent:
    /// true; false for in-memory drivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_state: Option<bool>,
    /// Whether the child mapped the shared memory the host offered (protocol 1.1;
    /// absent: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm: Option<bool>,
    /// Why the driver could not start, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

/// A request (`REQUEST` payload).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The whole content, as a stream.
    GetContent {
        /// Path.
        path: String,
    },
    /// Store the stream that follows.
    PutContent {
        /// Path.
        path: String,
        /// The content's length: a hint for the receiver's buffer, which may be absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// The bytes from `offset`, as a stream.
    Reader {
        /// Path.
        path: String,
        /// Start.
        offset: u64,
    },
    /// Open an upload.
    Writer {
        /// Path.
        path: String,
        /// Resume.
        append: bool,
    },
    /// File information.
    Stat {
        /// Path.
        path: String,
    },
    /// Children, one path per line.
    List {
        /// Path.
        path: String,
    },
    /// Move.
    Rename {
        /// From.
        src: String,
        /// To.
        dst: String,
    },
    /// Delete a subtree.
    Delete {
        /// Path.
        path: String,
    },
    /// A direct URL.
    RedirectUrl {
        /// Path.
        path: String,
        /// `GET` or `HEAD`.
        method: String,
        /// Lifetime asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_in_ms: Option<u64>,
    },
    /// Everything below, one file information object per line.
    Walk {
        /// Path.
        path: String,
        /// Start strictly after this path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_after: Option<String>,
    },
    /// Uploads that never completed, at or below `path` (protocol 1.1; older children
    /// answer `unsupported`).
    Uploads {
        /// Path.
        path: String,
    },
    /// Remove one upload that `uploads` reported.
    PurgeUpload {
        /// The upload, as `uploads` reported it.
        upload: WireLeftover,
    },
}

/// `uploads`' answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadsReply {
    /// The uploads, in path order.
    pub uploads: Vec<WireLeftover>,
}

/// A [`Leftover`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLeftover {
    /// The path it was for.
    pub path: String,
    /// `parked`, `orphan` or `tempfile`.
    pub kind: String,
    /// The driver's id for it.
    pub id: String,
    /// Last written, nanoseconds since the Unix epoch, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<u64>,
    /// Bytes it holds, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl From<&Leftover> for WireLeftover {
    fn from(l: &Leftover) -> Self {
        WireLeftover {
            path: l.path.as_str().to_owned(),
            kind: l.kind.as_str().to_owned(),
            id: l.id.clone(),
            modified_ns: l.modified.map(nanos),
            size: l.size,
        }
    }
}

impl WireLeftover {
    /// Back to the API's type; `None` if the path or the kind is not valid.
    pub fn into_leftover(self) -> Option<Leftover> {
        let kind = match self.kind.as_str() {
            "parked" => LeftoverKind::Parked,
            "orphan" => LeftoverKind::Orphan,
            "tempfile" => LeftoverKind::TempFile,
            _ => return None,
        };
        Some(Leftover {
            path: StoragePath::new(&self.path).ok()?,
            kind,
            id: self.id,
            modified: self
                .modified_ns
                .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns)),
            size: self.size,
        })
    }
}

/// What a writer's final `END` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Make the content the file.
    Commit,
    /// Keep the upload for a later resume.
    Close,
    /// Discard the upload.
    Cancel,
}

/// The `END` payload of a writer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    /// The action.
    pub action: Action,
}

/// `get_content`'s answer: the length, a hint for the receiver's buffer (may be absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SizeHint {
    /// Bytes that follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The buffer to reserve for a stream of `size` bytes announced by the peer: the hint
/// saves regrowing (and copying) the buffer, and is capped so that a wrong one cannot
/// reserve much more than will arrive.
pub fn size_hint(size: Option<u64>) -> usize {
    size.unwrap_or(0).min(64 << 20) as usize
}

/// A writer's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeReply {
    /// Bytes in the upload.
    pub size: u64,
}

/// `redirect_url`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UrlReply {
    /// The URL, if the driver redirects.
    pub url: Option<String>,
}

/// File information.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// Path.
    pub path: String,
    /// Size.
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mod_time_ns: u64,
    /// Directory.
    pub is_dir: bool,
}

impl From<&FileInfo> for Info {
    fn from(i: &FileInfo) -> Self {
        Info {
            path: i.path.as_str().to_owned(),
            size: i.size,
            mod_time_ns: nanos(i.mod_time),
            is_dir: i.is_dir,
        }
    }
}

impl Info {
    /// Back to the API's type; `None` if the path is not valid.
    pub fn into_file_info(self) -> Option<FileInfo> {
        Some(FileInfo {
            path: StoragePath::new(&self.path).ok()?,
            size: self.size,
            mod_time: UNIX_EPOCH + Duration::from_nanos(self.mod_time_ns),
            is_dir: self.is_dir,
        })
    }
}

/// An error on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `path_not_found`, `invalid_offset`, ... (see the protocol).
    pub kind: String,
    /// For people: what went wrong, without the driver's name, the operation or the
    /// path, which the host adds (so an error reads the same over IPC as in process).
    #[serde(default)]
    pub message: String,
    /// The path involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `invalid_offset`: the offset asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `invalid_offset`: the size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `invalid_parameter`: the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `backend`: whether trying again may help.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
}

impl WireError {
    /// A `backend` error.
    pub fn backend(message: impl Into<String>) -> Self {
        WireError {
            kind: "backend".into(),
            message: message.into(),
            ..Default::default()
        }
    }

    /// The wire form of a driver's error. The message leaves out what the host adds
    /// back (driver, operation, path) so it is not said twice.
    pub fn from_storage(e: &StorageError) -> Self {
        let mut w = WireError {
            message: e.to_string(),
            ..Default::default()
        };
        match e {
            StorageError::PathNotFound { path, .. } => {
                w.kind = "path_not_found".into();
                w.path = Some(path.clone());
            }
            StorageError::InvalidPath { path, .. } => {
                w.kind = "invalid_path".into();
                w.path = Some(path.clone());
            }
            StorageError::InvalidOffset {
                path, offset, size, ..
            } => {
                w.kind = "invalid_offset".into();
                w.path = Some(path.clone());
                w.offset = Some(*offset);
                w.size = Some(*size);
            }
            StorageError::Unsupported { feature, path, .. } => {
                w.kind = "unsupported".into();
                w.message = feature.to_string();
                w.path = path.clone();
            }
            StorageError::InvalidParameter { key, expected, .. } => {
                w.kind = "invalid_parameter".into();
                w.message = expected.clone();
                w.key = Some(key.clone());
            }
            StorageError::Config { message, .. } => {
                w.kind = "config".into();
                w.message = message.clone();
            }
            StorageError::Backend {
                path,
                retryable,
                source,
                ..
            } => {
                w.kind = "backend".into();
                w.message = source.to_string();
                w.path = (!path.is_empty()).then(|| path.clone());
                w.retryable = *retryable;
            }
            StorageError::Unauthenticated { path, source, .. }
            | StorageError::PermissionDenied { path, source, .. } => {
                w.kind = if matches!(e, StorageError::Unauthenticated { .. }) {
                    "unauthenticated"
                } else {
                    "permission_denied"
                }
                .into();
                w.message = source.to_string();
                w.path = (!path.is_empty()).then(|| path.clone());
            }
            other => {
                w.kind = "backend".into();
                w.retryable = other.is_retryable();
            }
        }
        w
    }

    /// The host's error for it: `driver` is the name the host knows the driver by,
    /// `op` and `path` the operation that failed.
    pub fn into_storage(self, driver: &str, op: Operation, path: &str) -> StorageError {
        let driver: driver_api::DriverName = driver.to_owned().into();
        let at = self.path.clone().unwrap_or_else(|| path.to_owned());
        match self.kind.as_str() {
            "path_not_found" => StorageError::PathNotFound { driver, path: at },
            "invalid_offset" => StorageError::InvalidOffset {
                driver,
                path: at,
                offset: self.offset.unwrap_or(0),
                size: self.size.unwrap_or(0),
            },
            "unsupported" => StorageError::Unsupported {
                driver,
                operation: op,
                feature: self.message.into(),
                path: self.path,
            },
            "invalid_parameter" => StorageError::InvalidParameter {
                driver,
                key: self.key.unwrap_or_default(),
                expected: self.message,
            },
            "config" => StorageError::Config {
                driver,
                message: self.message,
            },
            "unauthenticated" => StorageError::Unauthenticated {
                driver,
                operation: op,
                path: at,
                source: self.message.into(),
            },
            "permission_denied" => StorageError::PermissionDenied {
                driver,
                operation: op,
                path: at,
                source: self.message.into(),
            },
            _ => StorageError::Backend {
                driver,
                operation: op,
                path: at,
                retryable: self.retryable,
                source: self.message.into(),
            },
        }
    }
}

/// A `SystemTime` as nanoseconds since the epoch (0 before it).
pub fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that crosses the process boundary reads as it did in the child and keeps
    /// its kind, once the host has put back the driver, operation and path.
    #[test]
    fn errors_read_the_same_after_the_wire() {
        let driver: driver_api::DriverName = "filesystem".to_owned().into();
        let cases = [
            StorageError::PathNotFound {
                driver: driver.clone(),
                path: "/a/b".into(),
            },
            StorageError::InvalidOffset {
                driver: driver.clone(),
                path: "/a/b".into(),
                offset: 9,
                size: 4,
            },
            StorageError::Unsupported {
                driver: driver.clone(),
                operation: Operation::Writer,
                feature: "appending to committed content (3 bytes)".into(),
                path: Some("/a/b".into()),
            },
            StorageError::InvalidParameter {
                driver: driver.clone(),
                key: "rootdirectory".into(),
                expected: "a string".into(),
            },
            StorageError::Config {
                driver: driver.clone(),
                message: "cannot create the root".into(),
            },
            StorageError::Backend {
                driver: driver.clone(),
                operation: Operation::Write,
                path: "/a/b".into(),
                retryable: true,
                source: "No space left on device (os error 28)".into(),
            },
            StorageError::Unauthenticated {
                driver: driver.clone(),
                operation: Operation::Write,
                path: "/a/b".into(),
                source: "InvalidAccessKeyId (HTTP 403)".into(),
            },
            StorageError::PermissionDenied {
                driver: driver.clone(),
                operation: Operation::Write,
                path: "/a/b".into(),
                source: "Permission denied (os error 13)".into(),
            },
        ];
        for e in cases {
            let wire = WireError::from_storage(&e);
            let json = serde_json::to_vec(&wire).unwrap();
            let back: WireError = serde_json::from_slice(&json).unwrap();
            let host = back.into_storage("filesystem", Operation::Write, "/a/b");
            assert_eq!(host.to_string(), e.to_string());
            assert_eq!(host.is_retryable(), e.is_retryable());
            assert_eq!(
                std::mem::discriminant(&host),
                std::mem::discriminant(&e),
                "{e}"
            );
        }
    }

    /// A backend error keeps the child's path where the host's operation named another
    /// (a rename's destination), and says nothing of a path when it had none.
    #[test]
    fn a_backend_error_keeps_the_childs_path() {
        let e = StorageError::Backend {
            driver: "filesystem".to_owned().into(),
            operation: Operation::Rename,
            path: "/dst".into(),
            retryable: false,
            source: "permission denied".into(),
        };
        let host =
            WireError::from_storage(&e).into_storage("filesystem", Operation::Rename, "/src");
        assert_eq!(
            host.to_string(),
            "filesystem: rename /dst: permission denied"
        );
        let none = StorageError::Backend {
            driver: "filesystem".to_owned().into(),
            operation: Operation::Walk,
            path: String::new(),
            retryable: false,
            source: "gone".into(),
        };
        let w = WireError::from_storage(&none);
        assert_eq!(w.path, None);
        assert_eq!(w.message, "gone");
    }
}
