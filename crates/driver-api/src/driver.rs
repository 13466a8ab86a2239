//! The raw driver contract: [`StorageDriver`], [`FileWriter`] and their value types.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::operation::Operation;
use crate::path::StoragePath;

/// A stream of an object's bytes, as returned by [`StorageDriver::reader`].
///
/// Chunk sizes are the driver's choice; memory held by the stream is bounded by about one
/// chunk whatever the object's size.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Metadata of a file or (implicit) directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The path stat'ed.
    pub path: StoragePath,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time (for directories, the backend's best notion of one).
    pub mod_time: SystemTime,
    /// True for a directory.
    pub is_dir: bool,
}

/// What a [`walk`](StorageDriver::walk) callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkControl {
    /// Go on (and descend into this entry if it is a directory).
    Continue,
    /// On a directory: do not descend into it. On a file: the same as `Continue`
    /// (Distribution's semantics, unlike Go's `filepath.SkipDir`).
    SkipDir,
    /// End the walk now; `walk` returns `Ok(())`.
    Stop,
}

/// Options for [`StorageDriver::walk`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalkOptions {
    /// Start strictly after this path in walk order: the hint itself and everything before
    /// it is not reported. Directories that contain the hint are entered, not reported.
    pub start_after_hint: Option<StoragePath>,
}

impl WalkOptions {
    /// Options that start after `hint`.
    pub fn start_after(hint: StoragePath) -> Self {
        Self {
            start_after_hint: Some(hint),
        }
    }
}

/// The callback type of [`StorageDriver::walk`].
pub type WalkFn<'a> = dyn FnMut(&FileInfo) -> WalkControl + Send + 'a;

/// The HTTP method a redirect URL will be used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectMethod {
    /// `GET`: download the content.
    #[default]
    Get,
    /// `HEAD`: check existence and size.
    Head,
}

/// What a client wants a redirect URL for (Distribution's `URLFor` options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedirectRequest {
    /// The method the URL must accept.
    pub method: RedirectMethod,
    /// How long the URL should stay valid (driver default when `None`).
    pub expires_in: Option<Duration>,
}

impl RedirectRequest {
    /// A request for a `GET` URL with the driver's default expiry.
    pub fn get() -> Self {
        Self::default()
    }
    /// A request for a `HEAD` URL with the driver's default expiry.
    pub fn head() -> Self {
        Self {
            method: RedirectMethod::Head,
            expires_in: None,
        }
    }

    /// The same request with a lifetime for the URL (drivers cap it at their maximum).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }

    /// The URL's lifetime: `expires_in`, or Distribution's default of 20 minutes, kept
    /// between 1 second and [`MAX_REDIRECT_LIFETIME`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use driver_api::RedirectRequest;
    /// assert_eq!(RedirectRequest::get().lifetime(), Duration::from_secs(20 * 60));
    /// let long = RedirectRequest::get().expires_in(Duration::from_secs(30 * 24 * 3600));
    /// assert_eq!(long.lifetime(), driver_api::MAX_REDIRECT_LIFETIME);
    /// ```
    pub fn lifetime(&self) -> Duration {
        self.expires_in
            .unwrap_or(DEFAULT_REDIRECT_LIFETIME)
            .clamp(Duration::from_secs(1), MAX_REDIRECT_LIFETIME)
    }
}

/// The lifetime of a redirect URL when none is asked for (Distribution's 20 minutes).
pub const DEFAULT_REDIRECT_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// The longest lifetime drivers give a redirect URL: 7 days, the limit of S3 presigning,
/// GCS V4 signing and Azure user-delegation SAS.
pub const MAX_REDIRECT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// An upload that never completed, as [`StorageDriver::uploads`] finds it: what a killed
/// process, a lost answer or a writer closed and never resumed leaves on the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The path the upload was for.
    pub path: StoragePath,
    /// What it is.
    pub kind: LeftoverKind,
    /// The driver's name for it (an upload id, a file or object name): shown to operators,
    /// and what [`StorageDriver::purge_upload`] removes.
    pub id: String,
    /// When it was started or last written, where the backend says.
    pub modified: Option<SystemTime>,
    /// Bytes it holds, where the backend says without further requests.
    pub size: Option<u64>,
}

/// The kinds of [`Leftover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LeftoverKind {
    /// A writer's upload that was closed, with the state that lets `writer(path, true)`
    /// resume it (object stores: the parked `<key>#upload` object and the service's
    /// upload it names).
    Parked,
    /// An upload whose writer never closed: it was killed (or is still running), or the
    /// answer that started it was lost. Not resumable. (S3 and OSS multipart uploads,
    /// Azure uncommitted blocks, GCS sessions and Swift segments recorded when they
    /// started.)
    Orphan,
    /// A temporary file of a write that never finished (filesystem `#tmp.` files).
    TempFile,
}

impl LeftoverKind {
    /// `parked`, `orphan`, `tempfile`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeftoverKind::Parked => "parked",
            LeftoverKind::Orphan => "orphan",
            LeftoverKind::TempFile => "tempfile",
        }
    }
}

impl fmt::Display for LeftoverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a driver can and cannot do; the conformance suite skips (and says why) the cases
/// a driver opts out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// State is shared by every instance created with the same parameters (false for
    /// `inmemory`, whose state lives and dies with one instance).
    pub shared_state: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self { shared_state: true }
    }
}

impl Capabilities {
    /// Builder: sets [`Capabilities::shared_state`].
    pub fn with_shared_state(mut self, v: bool) -> Self {
        self.shared_state = v;
        self
    }
}

/// A storage backend, modelled as a filesystem-like tree of immutable-once-committed files.
///
/// This is the raw trait drivers implement; applications use the [`Driver`](crate::Driver)
/// handle, which validates paths, rejects the root where a file is needed, enforces the
/// writer protocol and opens a tracing span per call. Implementations may therefore assume:
/// every path they receive is a valid [`StoragePath`], only `list`, `stat` and `walk` ever
/// receive the root (every other operation on `/` is rejected with
/// [`StorageError::InvalidPath`](crate::StorageError::InvalidPath) before it reaches the
/// driver), and each [`FileWriter`] sees `write* (close | commit [close] | cancel [close])`.
/// The root always exists: `stat("/")` is a directory (size 0) on every driver, even when
/// nothing is stored, and `list("/")` / `walk("/")` of an empty store are empty.
///
/// Semantics follow Distribution's storage driver API version 0.1 (see
/// `docs/architecture.md` for the full contract).
#[async_trait]
pub trait StorageDriver: Send + Sync + fmt::Debug + 'static {
    /// The driver's registered name (`"filesystem"`, `"s3"`, ...), used in every error.
    fn name(&self) -> &str;

    /// What the driver supports; defaults to everything.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The whole content of the file at `path`.
    async fn get_content(&self, path: &StoragePath) -> Result<Bytes>;

    /// Atomically replaces the file at `path` with `content`: concurrent readers see the
    /// old or the new content, never a mix.
    async fn put_content(&self, path: &StoragePath, content: Bytes) -> Result<()>;

    /// A stream of the file's bytes from `offset`. `offset == size` yields an empty
    /// stream; `offset > size` is `InvalidOffset`; a missing file is `PathNotFound`.
    async fn reader(&self, path: &StoragePath, offset: u64) -> Result<ByteStream>;

    /// A writer for `path`. `append == false` starts a new upload (discarding any
    /// uncommitted one); `append == true` resumes the uncommitted upload at `path`, or
    /// appends to committed content that is empty. Nothing is readable at `path` until
    /// [`FileWriter::commit`].
    async fn writer(&self, path: &StoragePath, append: bool) -> Result<Box<dyn FileWriter>>;

    /// Metadata of the file or directory at `path`. The root always exists: `stat("/")` is
    /// a directory of size 0 on every driver, even when nothing is stored (never
    /// `PathNotFound`); [`keys::dir_info`](crate::keys::dir_info) gives object stores that.
    async fn stat(&self, path: &StoragePath) -> Result<FileInfo>;

    /// The direct children of the directory `path`, as full paths, sorted.
    async fn list(&self, path: &StoragePath) -> Result<Vec<StoragePath>>;

    /// Moves the file `src` to `dst`, replacing `dst` if it exists (Distribution's `Move`).
    async fn rename(&self, src: &StoragePath, dst: &StoragePath) -> Result<()>;

    /// Deletes `path` and everything below it.
    async fn delete(&self, path: &StoragePath) -> Result<()>;

    /// A URL from which a client may fetch `path` directly, or `None` when the driver does
    /// not redirect (the default).
    async fn redirect_url(
        &self,
        _request: &RedirectRequest,
        _path: &StoragePath,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// Visits everything below `path` in depth-first, lexical order (see [`WalkControl`]).
    ///
    /// The default is [`walk_fallback`](crate::walk::walk_fallback) over `list` + `stat`;
    /// drivers override it with a single efficient listing where the backend allows.
    async fn walk(
        &self,
        path: &StoragePath,
        options: &WalkOptions,
        f: &mut WalkFn<'_>,
    ) -> Result<()> {
        crate::walk::walk_fallback(self, path, options, f).await
    }

    /// The uploads that never completed at or below `path` (see [`Leftover`]), in path
    /// order. Operators sweep them (`storagectl uploads`); a parked upload is resumable,
    /// so only its age says whether it is abandoned. The default is `Unsupported`.
    async fn uploads(&self, path: &StoragePath) -> Result<Vec<Leftover>> {
        Err(crate::StorageError::Unsupported {
            driver: self.name().to_owned().into(),
            operation: Operation::Uploads,
            feature: "listing uploads".into(),
            path: Some(path.to_string()),
        })
    }

    /// Removes `leftover` (one that [`uploads`](Self::uploads) reported) and nothing else:
    /// committed content at its path stays. One already gone is fine. The default is
    /// `Unsupported`.
    async fn purge_upload(&self, leftover: &Leftover) -> Result<()> {
        Err(crate::StorageError::Unsupported {
            driver: self.name().to_owned().into(),
            operation: Operation::PurgeUpload,
            feature: "purging uploads".into(),
            path: Some(leftover.path.to_string()),
        })
    }
}

/// An in-progress upload returned by [`StorageDriver::writer`].
///
/// Protocol: any number of `write`s, then one of `close` (keep the upload so a later
/// `writer(path, true)` resumes it, possibly from another process), `commit` (make the
/// content readable at the path, atomically) or `cancel` (discard the upload). The
/// [`Writer`](crate::Writer) handle turns misuse into
/// [`StorageError::WriterFinished`](crate::StorageError::WriterFinished).
#[async_trait]
pub trait FileWriter: Send + Sync {
    /// Appends `data`.
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Bytes in the upload so far, including those of a resumed upload.
    fn size(&self) -> u64;
    /// Flushes and keeps the upload for a later resume.
    async fn close(&mut self) -> Result<()>;
    /// Discards the upload: removes everything it stored. Also called after a failed
    /// `commit`, so it must succeed when there is nothing left to remove.
    async fn cancel(&mut self) -> Result<()>;
    /// Makes the upload's content the file at the writer's path. If it fails, whatever
    /// the upload stored is aborted (as far as the backend can), the file at the path
    /// keeps its previous content, and `cancel` may follow.
    async fn commit(&mut self) -> Result<()>;
}
