//! A thin, sound binding of the part of librados' C API this driver uses, loaded at run
//! time from `librados.so.2` with `libloading`.
//!
//! This is the only module of the crate allowed to use `unsafe` (see the crate docs).
//! Its safe surface:
//!
//! * [`Cluster`]: a connected cluster handle; `rados_shutdown` runs exactly once, when the
//!   last [`IoCtx`] using it and the driver are gone. Creating and connecting block: call
//!   them on a blocking thread.
//! * [`IoCtx`]: a pool handle holding an `Arc<Cluster>`, so it can never outlive it.
//! * Asynchronous operations on `Arc<IoCtx>` ([`IoCtx::read`], [`IoCtx::write`],
//!   [`IoCtx::write_full`], [`IoCtx::remove`], [`IoCtx::stat`], [`IoCtx::operate`] for
//!   atomic compound writes, [`IoCtx::omap_get`]), each a future woken by librados'
//!   completion callback.
//!
//! # Cancellation
//!
//! Everything librados may touch while an operation is in flight (the object name, data
//! and read buffers, output slots, the compound-op handle, the completion and a reference
//! to the `IoCtx`) lives in one heap allocation (`OpState` in an `Arc`). The callback
//! owns one reference, the future another. Dropping the future drops only its reference;
//! the allocation is freed when the callback has run, never before, so librados never
//! writes into freed memory. Drops that happen on librados' own callback thread never run
//! `rados_ioctx_destroy`/`rados_shutdown` there (that would deadlock): the last `IoCtx`
//! reference is handed to a reaper thread instead.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

type RadosT = *mut c_void;
type IoCtxT = *mut c_void;
type CompletionT = *mut c_void;
type WriteOpT = *mut c_void;
type ReadOpT = *mut c_void;
type OmapIterT = *mut c_void;
type Callback = extern "C" fn(CompletionT, *mut c_void);

/// `LIBRADOS_CMPXATTR_OP_EQ`.
const CMPXATTR_OP_EQ: u8 = 1;
/// `LIBRADOS_CREATE_EXCLUSIVE`.
const CREATE_EXCLUSIVE: c_int = 1;

/// The shared object loaded.
pub const LIBRARY: &str = "librados.so.2";
/// The Debian/Ubuntu package that provides it.
pub const PACKAGE: &str = "librados2";

macro_rules! api {
    ($( $name:ident : fn($($arg:ty),*) $(-> $ret:ty)? ; )*) => {
        /// librados' entry points, resolved once.
        pub(crate) struct Api {
            $( $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
            /// Keeps the library mapped for as long as the pointers above are used
            /// (forever: the `Api` lives in a static).
            _lib: libloading::Library,
        }

        impl Api {
            fn load() -> Result<Self, String> {
                // SAFETY: loading librados runs its (C++) static initialisers, which have
                // no preconditions on our side; the library is never unloaded.
                let lib = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| e.to_string())?;
                $(
                    // SAFETY: the symbol is librados' exported C function of this name,
                    // whose prototype (librados.h, stable since Luminous) is the type
                    // given; the pointer stays valid because `_lib` is kept with it.
                    let $name = unsafe {
                        *lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                        .map_err(|e| e.to_string())?
                    };
                )*
                Ok(Self { $( $name, )* _lib: lib })
            }
        }
    };
}

api! {
    rados_version: fn(*mut c_int, *mut c_int, *mut c_int);
    rados_create2: fn(*mut RadosT, *const c_char, *const c_char, u64) -> c_int;
    rados_conf_read_file: fn(RadosT, *const c_char) -> c_int;
    rados_conf_set: fn(RadosT, *const c_char, *const c_char) -> c_int;
    rados_connect: fn(RadosT) -> c_int;
    rados_shutdown: fn(RadosT);
    rados_ioctx_create: fn(RadosT, *const c_char, *mut IoCtxT) -> c_int;
    rados_ioctx_destroy: fn(IoCtxT);
    rados_aio_create_completion: fn(*mut c_void, Option<Callback>, Option<Callback>, *mut CompletionT) -> c_int;
    rados_aio_release: fn(CompletionT);
    rados_aio_get_return_value: fn(CompletionT) -> c_int;
    rados_aio_write: fn(IoCtxT, *const c_char, CompletionT, *const c_char, usize, u64) -> c_int;
    rados_aio_write_full: fn(IoCtxT, *const c_char, CompletionT, *const c_char, usize) -> c_int;
    rados_aio_read: fn(IoCtxT, *const c_char, CompletionT, *mut c_char, usize, u64) -> c_int;
    rados_aio_stat: fn(IoCtxT, *const c_char, CompletionT, *mut u64, *mut libc::time_t) -> c_int;
    rados_aio_remove: fn(IoCtxT, *const c_char, CompletionT) -> c_int;
    rados_create_write_op: fn() -> WriteOpT;
    rados_release_write_op: fn(WriteOpT);
    rados_write_op_create: fn(WriteOpT, c_int, *const c_char);
    rados_write_op_cmpxattr: fn(WriteOpT, *const c_char, u8, *const c_char, usize);
    rados_write_op_setxattr: fn(WriteOpT, *const c_char, *const c_char, usize);
    rados_write_op_write_full: fn(WriteOpT, *const c_char, usize);
    rados_write_op_remove: fn(WriteOpT);
    rados_write_op_omap_set: fn(WriteOpT, *const *const c_char, *const *const c_char, *const usize, usize);
    rados_write_op_omap_rm_keys: fn(WriteOpT, *const *const c_char, usize);
    rados_aio_write_op_operate: fn(WriteOpT, IoCtxT, CompletionT, *const c_char, *mut libc::time_t, c_int) -> c_int;
    rados_create_read_op: fn() -> ReadOpT;
    rados_release_read_op: fn(ReadOpT);
    rados_read_op_omap_get_vals2: fn(ReadOpT, *const c_char, *const c_char, u64, *mut OmapIterT, *mut u8, *mut c_int);
    rados_omap_get_next2: fn(OmapIterT, *mut *mut c_char, *mut *mut c_char, *mut usize, *mut usize) -> c_int;
    rados_omap_get_end: fn(OmapIterT);
    rados_aio_read_op_operate: fn(ReadOpT, IoCtxT, CompletionT, *const c_char, c_int) -> c_int;
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// Operation states alive (submitted and not yet freed), process-wide.
static LIVE_OPS: AtomicUsize = AtomicUsize::new(0);

/// How many operations' heap states are alive in this process: in flight, or completed
/// and not yet collected. Zero once everything settled (how the tests prove that
/// dropped futures leak nothing).
pub fn live_ops() -> usize {
    LIVE_OPS.load(Ordering::SeqCst)
}

/// librados could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "cannot load {LIBRARY} ({reason}); install Ceph's client library, e.g. \
     `apt-get install {PACKAGE}` on Debian/Ubuntu, `dnf install {PACKAGE}` on Fedora/RHEL"
)]
pub struct LoadError {
    /// What the dynamic loader said.
    pub reason: String,
}

/// A librados call failed with a negative errno.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {} (errno {})", std::io::Error::from_raw_os_error(*.errno), .errno)]
pub struct RadosError {
    /// The librados function.
    pub call: &'static str,
    /// The (positive) errno.
    pub errno: i32,
}

impl RadosError {
    fn new(call: &'static str, rv: c_int) -> Self {
        Self {
            call,
            errno: rv.saturating_neg(),
        }
    }
    /// `ENOENT`: no such object.
    pub fn is_not_found(&self) -> bool {
        self.errno == libc::ENOENT
    }
    /// `ECANCELED` (a compare guard failed) or `EEXIST` (an exclusive create lost).
    pub fn is_guard_failure(&self) -> bool {
        self.errno == libc::ECANCELED || self.errno == libc::EEXIST
    }
    /// The call timed out (`ETIMEDOUT`: `connecttimeout` or `optimeout` ran out).
    pub fn is_timeout(&self) -> bool {
        self.errno == libc::ETIMEDOUT
    }
    /// Transient failures (timeouts, a cluster busy or reconnecting).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.errno,
            libc::ETIMEDOUT | libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED | libc::ESHUTDOWN
        )
    }
}

fn check(call: &'static str, rv: c_int) -> Result<c_int, RadosError> {
    if rv < 0 {
        Err(RadosError::new(call, rv))
    } else {
        Ok(rv)
    }
}

fn cstring(call: &'static str, s: &str) -> Result<CString, RadosError> {
    CString::new(s).map_err(|_| RadosError {
        call,
        errno: libc::EINVAL,
    })
}

/// librados' entry points, loading the library on first use.
pub(crate) fn api() -> Result<&'static Api, LoadError> {
    API.get_or_init(Api::load)
        .as_ref()
        .map_err(|reason| LoadError {
            reason: reason.clone(),
        })
}

/// librados' version, `(major, minor, extra)`.
pub fn version() -> Result<(i32, i32, i32), LoadError> {
    let api = api()?;
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: the three pointers are valid, writable ints for the duration of the call.
    unsafe { (api.rados_version)(&mut a, &mut b, &mut c) };
    Ok((a, b, c))
}

// ---------------------------------------------------------------------------------------
// cluster and pool handles

/// A cluster handle (`rados_t`), connected by [`Cluster::connect`].
#[derive(Debug)]
pub struct Cluster {
    api: &'static Api,
    handle: RadosT,
}

// SAFETY: librados cluster handles are thread-safe (every entry point taking a `rados_t`
// may be called from any thread); the handle is only destroyed in `Drop`, once.
unsafe impl Send for Cluster {}
// SAFETY: as above; no method takes `&mut self` semantics from C's point of view.
unsafe impl Sync for Cluster {}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("librados")
    }
}

impl Cluster {
    /// Creates a handle for client `name` (`client.<id>`), reads `conf` (or Ceph's default
    /// search path when `None`), applies `options` and connects. Blocking: run it on a
    /// blocking thread.
    pub fn connect(
        name: &str,
        conf: Option<&str>,
        options: &[(&str, &str)],
    ) -> Result<Self, ConnectError> {
        let api = api()?;
        let cname = cstring("rados_create2", name)?;
        let cluster_name = cstring("rados_create2", "ceph")?;
        let mut handle: RadosT = ptr::null_mut();
        // SAFETY: `handle` is a valid out-pointer; the strings are NUL-terminated and
        // outlive the call (librados copies them).
        check("rados_create2", unsafe {
            (api.rados_create2)(&mut handle, cluster_name.as_ptr(), cname.as_ptr(), 0)
        })?;
        // From here on `Drop` shuts the handle down, also on the error paths below.
        let cluster = Self { api, handle };
        let conf = conf
            .map(|c| cstring("rados_conf_read_file", c))
            .transpose()?;
        // SAFETY: the handle is live and not yet connected; a null path asks for Ceph's
        // default search path ($CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf).
        check("rados_conf_read_file", unsafe {
            (api.rados_conf_read_file)(
                cluster.handle,
                conf.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            )
        })?;
        for (k, v) in options {
            let (k, v) = (cstring("rados_conf_set", k)?, cstring("rados_conf_set", v)?);
            // SAFETY: live handle, NUL-terminated strings valid for the call.
            check("rados_conf_set", unsafe {
                (api.rados_conf_set)(cluster.handle, k.as_ptr(), v.as_ptr())
            })?;
        }
        // SAFETY: live, configured handle; connect is called once.
        check("rados_connect", unsafe {
            (api.rados_connect)(cluster.handle)
        })?;
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create2 and is shut down exactly once, here;
        // every IoCtx holds an Arc<Cluster>, so none is left using it.
        unsafe { (self.api.rados_shutdown)(self.handle) }
    }
}

/// Connecting failed: librados is missing, or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The library is not installed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A librados call failed.
    #[error(transparent)]
    Rados(#[from] RadosError),
}

/// A pool handle (`rados_ioctx_t`); it keeps its cluster alive.
pub struct IoCtx {
    cluster: Arc<Cluster>,
    handle: IoCtxT,
    ops: AtomicU64,
}

impl std::fmt::Debug for IoCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoCtx").finish_non_exhaustive()
    }
}

// SAFETY: librados I/O contexts may be used from several threads at once for I/O (we never
// change their state — snapshot, namespace, locator — after creation).
unsafe impl Send for IoCtx {}
// SAFETY: as above.
unsafe impl Sync for IoCtx {}

impl IoCtx {
    /// Opens `pool`. Blocking (it may look the pool up on the monitors).
    pub fn open(cluster: Arc<Cluster>, pool: &str) -> Result<Arc<Self>, RadosError> {
        let name = cstring("rados_ioctx_create", pool)?;
        let mut handle: IoCtxT = ptr::null_mut();
        // SAFETY: connected cluster handle, valid NUL-terminated name, valid out-pointer.
        check("rados_ioctx_create", unsafe {
            (cluster.api.rados_ioctx_create)(cluster.handle, name.as_ptr(), &mut handle)
        })?;
        Ok(Arc::new(Self {
            cluster,
            handle,
            ops: AtomicU64::new(0),
        }))
    }

    /// Operations submitted on this pool handle so far (every read, write, remove, stat,
    /// compound write and omap read counts one).
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed once; every in-flight operation
        // holds an Arc<IoCtx>, so none is pending on it.
        unsafe { (self.cluster.api.rados_ioctx_destroy)(self.handle) }
    }
}

// ---------------------------------------------------------------------------------------
// the reaper: drops of the last IoCtx reference that would otherwise happen on librados'
// callback thread

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

static REAPER: OnceLock<Option<Mutex<mpsc::Sender<Arc<IoCtx>>>>> = OnceLock::new();

fn reap(io: Arc<IoCtx>) {
    let tx = REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Arc<IoCtx>>();
        std::thread::Builder::new()
            .name("rados-reaper".into())
            .spawn(move || {
                for io in rx {
                    drop(io);
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let sent = match tx {
        Some(tx) => match tx.lock() {
            Ok(tx) => tx.send(io).map_err(|e| e.0),
            Err(_) => Err(io),
        },
        None => Err(io),
    };
    if let Err(io) = sent {
        // No reaper: leaking one handle beats deadlocking librados' finisher thread.
        std::mem::forget(io);
    }
}

// ---------------------------------------------------------------------------------------
// asynchronous operations

/// Where librados writes results; boxed so its address never changes.
struct Out {
    rval: c_int,
    more: u8,
    iter: OmapIterT,
    size: u64,
    mtime: libc::time_t,
}

/// What an operation owns while librados may use it.
struct Keep {
    oid: CString,
    data: Option<Bytes>,
    buf: Vec<u8>,
    strings: Vec<CString>,
    values: Vec<Vec<u8>>,
    out: Box<Out>,
    write_op: WriteOpT,
    read_op: ReadOpT,
}

struct Progress {
    done: bool,
    rv: c_int,
    waker: Option<Waker>,
    /// The pool handle, kept alive while the operation is in flight. The future takes it
    /// out once it saw completion, so the callback thread only ever drops it for
    /// operations whose future was dropped (and then hands it to the reaper).
    io: Option<Arc<IoCtx>>,
}

/// The heap state of one operation (see the module docs).
struct OpState {
    api: &'static Api,
    completion: CompletionT,
    progress: Mutex<Progress>,
    keep: Mutex<Keep>,
}

// SAFETY: the raw pointers in `Keep`/`OpState` are librados handles and buffers owned by
// this state; librados allows them to be used and released from any thread, and Rust code
// only touches `keep` before submission and after completion (under its mutex).
unsafe impl Send for OpState {}
// SAFETY: as above; shared access goes through the mutexes.
unsafe impl Sync for OpState {}

impl Drop for OpState {
    fn drop(&mut self) {
        LIVE_OPS.fetch_sub(1, Ordering::SeqCst);
        let keep = self.keep.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: each handle below was created for this operation, is released once, and
        // librados is done with it: the state is dropped only after the completion fired
        // (the callback holds a reference until then) or when submission failed.
        unsafe {
            if !keep.out.iter.is_null() {
                (self.api.rados_omap_get_end)(keep.out.iter);
            }
            if !keep.write_op.is_null() {
                (self.api.rados_release_write_op)(keep.write_op);
            }
            if !keep.read_op.is_null() {
                (self.api.rados_release_read_op)(keep.read_op);
            }
            if !self.completion.is_null() {
                (self.api.rados_aio_release)(self.completion);
            }
        }
        let progress = self.progress.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(io) = progress.io.take() {
            if IN_CALLBACK.with(Cell::get) {
                reap(io);
            }
        }
    }
}

extern "C" fn on_complete(c: CompletionT, arg: *mut c_void) {
    // SAFETY: `arg` is the `Arc::into_raw` made in `submit` for this completion, and
    // librados calls this callback exactly once; we take that reference back here.
    let state = unsafe { Arc::from_raw(arg as *const OpState) };
    // SAFETY: `c` is the live completion this callback is for.
    let rv = unsafe { (state.api.rados_aio_get_return_value)(c) };
    IN_CALLBACK.with(|f| f.set(true));
    let waker = {
        let mut p = state.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.done = true;
        p.rv = rv;
        p.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
    drop(state);
    IN_CALLBACK.with(|f| f.set(false));
}

/// The future of one operation: resolves to the state once librados completed it.
struct Pending {
    state: Option<Arc<OpState>>,
    call: &'static str,
    error: Option<RadosError>,
}

impl Future for Pending {
    type Output = Result<(c_int, Arc<OpState>), RadosError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let Some(state) = self.state.as_ref() else {
            return Poll::Ready(Err(RadosError {
                call: self.call,
                errno: libc::EINVAL,
            }));
        };
        {
            let mut p = state.progress.lock().unwrap_or_else(|e| e.into_inner());
            if !p.done {
                match &p.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => p.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let rv = p.rv;
            let io = p.io.take();
            drop(p);
            drop(io);
            let state = self.state.take().ok_or(RadosError {
                call: self.call,
                errno: libc::EINVAL,
            })?;
            if rv < 0 {
                return Poll::Ready(Err(RadosError::new(self.call, rv)));
            }
            Poll::Ready(Ok((rv, state)))
        }
    }
}

fn empty_keep(oid: CString) -> Keep {
    Keep {
        oid,
        data: None,
        buf: Vec::new(),
        strings: Vec::new(),
        values: Vec::new(),
        out: Box::new(Out {
            rval: 0,
            more: 0,
            iter: ptr::null_mut(),
            size: 0,
            mtime: 0,
        }),
        write_op: ptr::null_mut(),
        read_op: ptr::null_mut(),
    }
}

/// One action of a compound, atomic write operation on one object ([`IoCtx::operate`]).
#[derive(Debug, Clone)]
pub enum WriteAction {
    /// Fail with `EEXIST` if the object exists (exclusive create).
    CreateExclusive,
    /// Create the object if missing (no-op otherwise).
    Create,
    /// Fail with `ECANCELED` unless xattr `name` equals `value`.
    AssertXattr(String, Vec<u8>),
    /// Set xattr `name`.
    SetXattr(String, Vec<u8>),
    /// Replace the object's data.
    WriteFull(Bytes),
    /// Remove the object.
    Remove,
    /// Set omap entries.
    OmapSet(Vec<(String, Vec<u8>)>),
    /// Remove omap keys.
    OmapRemove(Vec<String>),
}

impl IoCtx {
    /// Submits one operation: `start` fills `keep` and calls the librados aio function,
    /// returning its status.
    fn submit(
        self: &Arc<Self>,
        call: &'static str,
        oid: &str,
        prepare: impl FnOnce(&mut Keep),
        start: impl FnOnce(&'static Api, IoCtxT, CompletionT, &mut Keep) -> c_int,
    ) -> Pending {
        let fail = |error| Pending {
            state: None,
            call,
            error: Some(error),
        };
        let oid = match cstring(call, oid) {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        let api = self.cluster.api;
        let mut keep = empty_keep(oid);
        prepare(&mut keep);
        LIVE_OPS.fetch_add(1, Ordering::SeqCst);
        let mut state = Arc::new(OpState {
            api,
            completion: ptr::null_mut(),
            progress: Mutex::new(Progress {
                done: false,
                rv: 0,
                waker: None,
                io: Some(self.clone()),
            }),
            keep: Mutex::new(keep),
        });
        let arg = Arc::as_ptr(&state) as *mut c_void;
        let mut completion: CompletionT = ptr::null_mut();
        // SAFETY: valid out-pointer; `arg` is only dereferenced by `on_complete`, and only
        // after `into_raw` below gave the callback its own reference (the callback cannot
        // fire before the operation is submitted).
        let rv = unsafe {
            (api.rados_aio_create_completion)(arg, Some(on_complete), None, &mut completion)
        };
        if rv < 0 || completion.is_null() {
            return fail(RadosError::new("rados_aio_create_completion", rv.min(-1)));
        }
        match Arc::get_mut(&mut state) {
            Some(s) => s.completion = completion,
            None => {
                // Unreachable (the Arc is not shared yet); release rather than leak.
                // SAFETY: the completion was just created and never submitted.
                unsafe { (api.rados_aio_release)(completion) };
                return fail(RadosError::new(call, -libc::EINVAL));
            }
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
        let for_callback = Arc::into_raw(state.clone());
        let rv = {
            let mut keep = state.keep.lock().unwrap_or_else(|e| e.into_inner());
            start(api, self.handle, completion, &mut keep)
        };
        if rv < 0 {
            // Not submitted: the callback will never run; take its reference back.
            // SAFETY: `for_callback` came from `Arc::into_raw` just above and was not
            // handed to librados (the submission failed).
            drop(unsafe { Arc::from_raw(for_callback) });
            return fail(RadosError::new(call, rv));
        }
        Pending {
            state: Some(state),
            call,
            error: None,
        }
    }

    /// Reads up to `len` bytes at `offset`; fewer at the end of the object.
    pub async fn read(
        self: &Arc<Self>,
        oid: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, RadosError> {
        let pending = self.submit(
            "rados_aio_read",
            oid,
            |k| k.buf = vec![0; len],
            |api, io, c, k| {
                // SAFETY: `k.buf` is a heap buffer of `len` bytes owned by the op state,
                // which lives until the completion fired; `oid` likewise.
                unsafe {
                    (api.rados_aio_read)(
                        io,
                        k.oid.as_ptr(),
                        c,
                        k.buf.as_mut_ptr().cast(),
                        len,
                        offset,
                    )
                }
            },
        );
        let (n, state) = pending.await?;
        let mut keep = state.keep.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = std::mem::take(&mut keep.buf);
        buf.truncate((n as usize).min(len));
        Ok(buf)
    }

    /// Writes `data` at `offset` (extending the object as needed).
    pub async fn write(
        self: &Arc<Self>,
        oid: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<(), RadosError> {
        let len = data.len();
        self.submit(
            "rados_aio_write",
            oid,
            |k| k.data = Some(data),
            |api, io, c, k| {
                let ptr = k.data.as_ref().map_or(ptr::null(), |d| d.as_ptr());
                // SAFETY: `data` (len bytes) and `oid` are owned by the op state until the
                // completion fired.
                unsafe { (api.rados_aio_write)(io, k.oid.as_ptr(), c, ptr.cast(), len, offset) }
            },
        )
        .await
        .map(|_| ())
    }

    /// Replaces the object's content with `data` (creating it).
    pub async fn write_full(self: &Arc<Self>, oid: &str, data: Bytes) -> Result<(), RadosError> {
        let len = data.len();
        self.submit(
            "rados_aio_write_full",
            oid,
            |k| k.data = Some(data),
            |api, io, c, k| {
                let ptr = k.data.as_ref().map_or(ptr::null(), |d| d.as_ptr());
                // SAFETY: as in `write`.
                unsafe { (api.rados_aio_write_full)(io, k.oid.as_ptr(), c, ptr.cast(), len) }
            },
        )
        .await
        .map(|_| ())
    }

    /// Removes the object (`ENOENT` if missing).
    pub async fn remove(self: &Arc<Self>, oid: &str) -> Result<(), RadosError> {
        self.submit(
            "rados_aio_remove",
            oid,
            |_| {},
            |api, io, c, k| {
                // SAFETY: `oid` is owned by the op state until completion.
                unsafe { (api.rados_aio_remove)(io, k.oid.as_ptr(), c) }
            },
        )
        .await
        .map(|_| ())
    }

    /// Size and modification time (seconds) of the object.
    pub async fn stat(self: &Arc<Self>, oid: &str) -> Result<(u64, libc::time_t), RadosError> {
        let (_, state) = self
            .submit(
                "rados_aio_stat",
                oid,
                |_| {},
                |api, io, c, k| {
                    let out: *mut Out = &mut *k.out;
                    // SAFETY: the output slots live in the boxed `Out` owned by the op
                    // state until the completion fired.
                    unsafe {
                        (api.rados_aio_stat)(
                            io,
                            k.oid.as_ptr(),
                            c,
                            &mut (*out).size,
                            &mut (*out).mtime,
                        )
                    }
                },
            )
            .await?;
        let keep = state.keep.lock().unwrap_or_else(|e| e.into_inner());
        Ok((keep.out.size, keep.out.mtime))
    }

    /// Runs `actions` on `oid` as one atomic write operation: all of them or none.
    pub async fn operate(
        self: &Arc<Self>,
        oid: &str,
        actions: Vec<WriteAction>,
    ) -> Result<(), RadosError> {
        self.submit(
            "rados_aio_write_op_operate",
            oid,
            |k| {
                for a in &actions {
                    match a {
                        WriteAction::AssertXattr(n, v) | WriteAction::SetXattr(n, v) => {
                            k.strings.push(CString::new(n.as_str()).unwrap_or_default());
                            k.values.push(v.clone());
                        }
                        WriteAction::OmapSet(kv) => {
                            for (n, v) in kv {
                                k.strings.push(CString::new(n.as_str()).unwrap_or_default());
                                k.values.push(v.clone());
                            }
                        }
                        WriteAction::OmapRemove(names) => {
                            for n in names {
                                k.strings.push(CString::new(n.as_str()).unwrap_or_default());
                            }
                        }
                        WriteAction::WriteFull(d) => k.data = Some(d.clone()),
                        _ => {}
                    }
                }
            },
            |api, io, c, k| {
                // SAFETY: a fresh write op, released in OpState::drop.
                let op = unsafe { (api.rados_create_write_op)() };
                if op.is_null() {
                    return -libc::ENOMEM;
                }
                k.write_op = op;
                let (mut s, mut v) = (0usize, 0usize);
                for a in &actions {
                    // SAFETY (for every call in this match): `op` is live; every pointer
                    // points into strings, values or data owned by the op state, which
                    // outlives the operation; lengths match the buffers.
                    unsafe {
                        match a {
                            WriteAction::CreateExclusive => {
                                (api.rados_write_op_create)(op, CREATE_EXCLUSIVE, ptr::null())
                            }
                            WriteAction::Create => (api.rados_write_op_create)(op, 0, ptr::null()),
                            WriteAction::AssertXattr(..) => {
                                let (n, val) = (&k.strings[s], &k.values[v]);
                                (api.rados_write_op_cmpxattr)(
                                    op,
                                    n.as_ptr(),
                                    CMPXATTR_OP_EQ,
                                    val.as_ptr().cast(),
                                    val.len(),
                                );
                                s += 1;
                                v += 1;
                            }
                            WriteAction::SetXattr(..) => {
                                let (n, val) = (&k.strings[s], &k.values[v]);
                                (api.rados_write_op_setxattr)(
                                    op,
                                    n.as_ptr(),
                                    val.as_ptr().cast(),
                                    val.len(),
                                );
                                s += 1;
                                v += 1;
                            }
                            WriteAction::WriteFull(d) => {
                                let d = k.data.as_ref().unwrap_or(d);
                                (api.rados_write_op_write_full)(op, d.as_ptr().cast(), d.len())
                            }
                            WriteAction::Remove => (api.rados_write_op_remove)(op),
                            WriteAction::OmapSet(kv) => {
                                let n = kv.len();
                                let keys: Vec<*const c_char> =
                                    k.strings[s..s + n].iter().map(|c| c.as_ptr()).collect();
                                let vals: Vec<*const c_char> = k.values[v..v + n]
                                    .iter()
                                    .map(|b| b.as_ptr().cast())
                                    .collect();
                                let lens: Vec<usize> =
                                    k.values[v..v + n].iter().map(Vec::len).collect();
                                // The arrays are read (and the entries copied) during the call.
                                (api.rados_write_op_omap_set)(
                                    op,
                                    keys.as_ptr(),
                                    vals.as_ptr(),
                                    lens.as_ptr(),
                                    n,
                                );
                                s += n;
                                v += n;
                            }
                            WriteAction::OmapRemove(names) => {
                                let n = names.len();
                                let keys: Vec<*const c_char> =
                                    k.strings[s..s + n].iter().map(|c| c.as_ptr()).collect();
                                (api.rados_write_op_omap_rm_keys)(op, keys.as_ptr(), n);
                                s += n;
                            }
                        }
                    }
                }
                // SAFETY: live op, ioctx and completion; `oid` owned by the op state; a
                // null mtime means "now".
                unsafe {
                    (api.rados_aio_write_op_operate)(op, io, c, k.oid.as_ptr(), ptr::null_mut(), 0)
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// Up to `max` omap entries of `oid` after `start_after` (all when empty), sorted by
    /// key, and whether more follow.
    pub async fn omap_get(
        self: &Arc<Self>,
        oid: &str,
        start_after: &str,
        max: u64,
    ) -> Result<(Vec<(String, Vec<u8>)>, bool), RadosError> {
        let start = cstring("rados_read_op_omap_get_vals2", start_after)?;
        let (_, state) = self
            .submit(
                "rados_aio_read_op_operate",
                oid,
                |k| k.strings.push(start),
                |api, io, c, k| {
                    // SAFETY: a fresh read op, released in OpState::drop.
                    let op = unsafe { (api.rados_create_read_op)() };
                    if op.is_null() {
                        return -libc::ENOMEM;
                    }
                    k.read_op = op;
                    let out: *mut Out = &mut *k.out;
                    // SAFETY: live op; `start_after` and the output slots (boxed `Out`)
                    // are owned by the op state until the completion fired; the iterator
                    // is ended in OpState::drop.
                    unsafe {
                        (api.rados_read_op_omap_get_vals2)(
                            op,
                            k.strings[0].as_ptr(),
                            ptr::null(),
                            max,
                            &mut (*out).iter,
                            &mut (*out).more,
                            &mut (*out).rval,
                        );
                        (api.rados_aio_read_op_operate)(op, io, c, k.oid.as_ptr(), 0)
                    }
                },
            )
            .await?;
        let keep = state.keep.lock().unwrap_or_else(|e| e.into_inner());
        if keep.out.rval < 0 {
            return Err(RadosError::new(
                "rados_read_op_omap_get_vals2",
                keep.out.rval,
            ));
        }
        let mut entries = Vec::new();
        if keep.out.iter.is_null() {
            return Ok((entries, false));
        }
        loop {
            let (mut key, mut val): (*mut c_char, *mut c_char) = (ptr::null_mut(), ptr::null_mut());
            let (mut klen, mut vlen) = (0usize, 0usize);
            // SAFETY: the iterator is live (ended only in OpState::drop) and the operation
            // completed; the out-pointers are valid locals.
            let rv = unsafe {
                (state.api.rados_omap_get_next2)(
                    keep.out.iter,
                    &mut key,
                    &mut val,
                    &mut klen,
                    &mut vlen,
                )
            };
            check("rados_omap_get_next2", rv)?;
            if key.is_null() {
                break;
            }
            // SAFETY: librados returns pointers to `klen`/`vlen` bytes valid until the next
            // call on the iterator; we copy them at once.
            let (k, v) = unsafe {
                (
                    std::slice::from_raw_parts(key.cast::<u8>(), klen).to_vec(),
                    if val.is_null() {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(val.cast::<u8>(), vlen).to_vec()
                    },
                )
            };
            entries.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        Ok((entries, keep.out.more != 0))
    }
}
