//! [`Operation`]: what a driver was doing when it failed, as a value code can match.

use std::fmt;
use std::str::FromStr;

/// The operation an error is about: one of the [`StorageDriver`](crate::StorageDriver)
/// and [`FileWriter`](crate::FileWriter) methods, or one of the two steps a driver takes
/// before any of them (connecting to its backend, authenticating to it).
///
/// Errors carry it ([`StorageError::operation`](crate::StorageError::operation)), so a
/// caller reacts to "the commit failed" with a `match`, never by comparing message text.
/// `Display` prints the method's name, as messages always have:
///
/// ```
/// use driver_api::{Operation, StorageError, StoragePath};
/// let e = StorageError::backend("s3", Operation::Commit, &StoragePath::new("/a").unwrap(), "HTTP 500");
/// assert_eq!(e.to_string(), "s3: commit /a: HTTP 500");
/// assert_eq!(e.operation(), Some(Operation::Commit));
/// assert_eq!("put_content".parse::<Operation>(), Ok(Operation::PutContent));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`StorageDriver::get_content`](crate::StorageDriver::get_content).
    GetContent,
    /// [`StorageDriver::put_content`](crate::StorageDriver::put_content).
    PutContent,
    /// [`StorageDriver::reader`](crate::StorageDriver::reader), and reading the stream it
    /// returned.
    Reader,
    /// [`StorageDriver::writer`](crate::StorageDriver::writer): opening (or resuming) a
    /// writer.
    Writer,
    /// [`FileWriter::write`](crate::FileWriter::write).
    Write,
    /// [`FileWriter::close`](crate::FileWriter::close).
    Close,
    /// [`FileWriter::cancel`](crate::FileWriter::cancel).
    Cancel,
    /// [`FileWriter::commit`](crate::FileWriter::commit).
    Commit,
    /// [`StorageDriver::stat`](crate::StorageDriver::stat).
    Stat,
    /// [`StorageDriver::list`](crate::StorageDriver::list).
    List,
    /// [`StorageDriver::rename`](crate::StorageDriver::rename) (Distribution's `Move`).
    Rename,
    /// [`StorageDriver::delete`](crate::StorageDriver::delete).
    Delete,
    /// [`StorageDriver::redirect_url`](crate::StorageDriver::redirect_url).
    RedirectUrl,
    /// [`StorageDriver::walk`](crate::StorageDriver::walk).
    Walk,
    /// [`StorageDriver::uploads`](crate::StorageDriver::uploads).
    Uploads,
    /// [`StorageDriver::purge_upload`](crate::StorageDriver::purge_upload).
    PurgeUpload,
    /// Preparing the backend before any operation: a cluster connection (rados), an
    /// out-of-process driver's child and handshake (IPC), the container or bucket and
    /// keys a driver sets up when it is created.
    Connect,
    /// Obtaining credentials from an identity service (Swift's Keystone or TempAuth).
    Authenticate,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 18] = [
        Operation::GetContent,
        Operation::PutContent,
        Operation::Reader,
        Operation::Writer,
        Operation::Write,
        Operation::Close,
        Operation::Cancel,
        Operation::Commit,
        Operation::Stat,
        Operation::List,
        Operation::Rename,
        Operation::Delete,
        Operation::RedirectUrl,
        Operation::Walk,
        Operation::Uploads,
        Operation::PurgeUpload,
        Operation::Connect,
        Operation::Authenticate,
    ];

    /// The method's name in snake case (`get_content`, `commit`, ...): what messages,
    /// tracing spans and the IPC protocol use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::GetContent => "get_content",
            Operation::PutContent => "put_content",
            Operation::Reader => "reader",
            Operation::Writer => "writer",
            Operation::Write => "write",
            Operation::Close => "close",
            Operation::Cancel => "cancel",
            Operation::Commit => "commit",
            Operation::Stat => "stat",
            Operation::List => "list",
            Operation::Rename => "rename",
            Operation::Delete => "delete",
            Operation::RedirectUrl => "redirect_url",
            Operation::Walk => "walk",
            Operation::Uploads => "uploads",
            Operation::PurgeUpload => "purge_upload",
            Operation::Connect => "connect",
            Operation::Authenticate => "authenticate",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of [`Operation::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage operation {0:?}")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for op in Operation::ALL {
            assert!(seen.insert(op.as_str()), "duplicate name {op}");
            assert_eq!(op.as_str().parse::<Operation>(), Ok(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        assert_eq!(
            "move".parse::<Operation>(),
            Err(UnknownOperation("move".into()))
        );
    }
}
