//! Shared memory for stream data (docs/ipc-protocol.md, "Shared memory").
//!
//! On Linux the host creates two memory files (`memfd`), one per direction, hands them to
//! the child as file descriptors 3 and 4, and says so in the `REGISTRY_STORAGE_SHM`
//! environment variable. A child that maps them says `"shm": true` in `HELLO`; from then
//! on a `DATA` frame may carry, instead of its bytes, a reference to them in the sender's
//! region ([`Frame::shared_data`]), and the receiver gives the space back with `RELEASE`
//! when it is done. The bytes cross once, with one `memcpy` into the region, instead of
//! twice through the kernel; a sender whose region is full simply sends through the pipe.
//!
//! # `unsafe`
//!
//! The workspace denies `unsafe_code`; this module is the crate's one exception. It maps
//! the regions (`mmap`), copies into the outgoing one, lends slices of the incoming one,
//! and puts the regions on file descriptors 3 and 4 of the child between `fork` and
//! `exec`. The rules that make that sound:
//!
//! - each process maps the region it writes read-write and the region it reads read-only,
//!   so neither can scribble on what it is given;
//! - a sender writes only space its [`Slots`] lent out and got back, so it never writes
//!   what the receiver may still be reading (a receiver that releases too early, or never,
//!   only spoils or holds its own data);
//! - the frame that names a range is written to the pipe after the bytes, and read before
//!   them: the pipe's system calls order the two processes' accesses;
//! - the bytes are only ever read as bytes: no value read from a region is trusted as
//!   anything else, and references are checked against the region's bounds.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::frame::{Frame, FrameError, Kind};
use crate::slots::Slots;

/// The environment variable that offers the regions to the child.
pub const ENV: &str = "REGISTRY_STORAGE_SHM";

/// Each region's size: 8 MiB, enough for a few streams' windows.
pub const REGION: usize = crate::slots::MAX_REGION;

/// Data shorter than this goes through the pipe: its copy there is cheaper than a
/// reference and a `RELEASE`.
pub const MIN_SHARED: usize = 32 << 10;

/// The offer, as JSON in [`ENV`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Offer {
    /// The descriptor of the region the host writes (the child maps it read-only).
    host_to_driver: i32,
    /// The descriptor of the region the child writes.
    driver_to_host: i32,
    /// Each region's size in bytes.
    size: usize,
}

/// A shared mapping of a whole memory file.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared by design; who may write which bytes when is
// governed by `Slots` and the protocol (see the module docs), not by the thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map(fd: impl AsFd, len: usize, writable: bool) -> std::io::Result<Self> {
        use rustix::mm::{MapFlags, ProtFlags};
        let st = rustix::fs::fstat(&fd)?;
        if (st.st_size as u64) < len as u64 || len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the region holds {} bytes, not {len}", st.st_size),
            ));
        }
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a new mapping at an address of the kernel's choosing touches no existing
        // memory; `len` bytes of the file exist (checked above).
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, &fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { ptr, len })
    }

    /// `len` bytes at `offset`, which the caller has checked lie inside.
    ///
    /// # Safety
    /// Nobody may write the range while the slice lives (the protocol's lending rule).
    unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: inside the mapping (the caller checked), mapped readable for as long as
        // `self` lives, and not written meanwhile (the caller's promise).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length, and every slice of it
        // borrows `self` (leases hold an `Arc` of it), so nothing refers to it any more.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The region this side writes, and what of it is lent out.
struct Outgoing {
    map: Mapping,
    space: Mutex<Space>,
}

/// The outgoing region's bookkeeping: allocations, and which of them are buffers that a
/// driver reads into ([`Shm::buffer`]) and that references may point into.
#[derive(Debug)]
struct Space {
    slots: Slots,
    /// Buffer allocations by start offset: their size and the references to them (the
    /// local bytes while alive, plus one per reference sent and not yet released).
    buffers: std::collections::BTreeMap<u32, Buffer>,
    /// References into buffers sent to the peer and not released: (offset, len) to count.
    sent: std::collections::HashMap<(u32, u32), u32>,
}

#[derive(Debug)]
struct Buffer {
    size: u32,
    refs: u32,
}

impl Space {
    /// Drops one reference to the buffer at `start`, freeing its space after the last.
    fn unref(&mut self, start: u32) {
        let Some(b) = self.buffers.get_mut(&start) else {
            return;
        };
        b.refs -= 1;
        if b.refs == 0 {
            let size = b.size;
            self.buffers.remove(&start);
            let _ = self.slots.release(start, size);
        }
    }

    /// The buffer that `[offset, offset + len)` lies in, if any.
    fn buffer_of(&self, offset: u32, len: u32) -> Option<u32> {
        let (&start, b) = self.buffers.range(..=offset).next_back()?;
        (offset as u64 + len as u64 <= start as u64 + b.size as u64).then_some(start)
    }

    /// The peer gives back `[offset, offset + len)`.
    fn release(&mut self, offset: u32, len: u32) -> Result<(), String> {
        if let Some(n) = self.sent.get_mut(&(offset, len)) {
            *n -= 1;
            if *n == 0 {
                self.sent.remove(&(offset, len));
            }
            if let Some(start) = self.buffer_of(offset, len) {
                self.unref(start);
            }
            return Ok(());
        }
        if self.buffers.contains_key(&offset) {
            // A buffer's space is not the peer's to free.
            return Err(format!(
                "released {len} bytes at offset {offset}, which were not lent"
            ));
        }
        self.slots.release(offset, len)
    }
}

/// Ranges of the incoming region this side is done with, waiting to be sent back.
#[derive(Default)]
struct Releases {
    pending: Mutex<Vec<(u32, u32)>>,
    wake: tokio::sync::Notify,
    /// Bytes of the incoming region lent to this side now (leases alive).
    held: AtomicU64,
}

/// One connection's pair of regions.
pub struct Shm {
    out: Outgoing,
    incoming: Arc<Mapping>,
    releases: Arc<Releases>,
    counters: Counters,
    pool: crate::pool::Pool,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    full: AtomicU64,
}

/// What a connection's shared memory has carried so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShmStats {
    /// Bytes sent through the outgoing region.
    pub sent_bytes: u64,
    /// Bytes received through the incoming region.
    pub received_bytes: u64,
    /// Sends that found the outgoing region full and went through the pipe instead, and
    /// driver read buffers that found it full and came from the heap.
    pub region_full: u64,
    /// Bytes of the outgoing region lent out now (in 64 KiB units).
    pub lent_bytes: u64,
    /// Bytes of the incoming region this side holds now (handed on without a copy and
    /// not yet dropped); at most about half the region, beyond which bytes are copied.
    pub held_bytes: u64,
}

impl std::fmt::Debug for Shm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shm")
            .field("size", &self.out.map.len)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shm {
    fn new(out: Mapping, incoming: Mapping) -> Self {
        Self {
            out: Outgoing {
                space: Mutex::new(Space {
                    slots: Slots::new(out.len),
                    buffers: Default::default(),
                    sent: Default::default(),
                }),
                map: out,
            },
            incoming: Arc::new(incoming),
            releases: Default::default(),
            counters: Counters::default(),
            pool: crate::pool::Pool::new(),
        }
    }

    /// Warm buffers for bytes copied out of the incoming region.
    pub fn pool(&self) -> &crate::pool::Pool {
        &self.pool
    }

    /// The counters.
    pub fn stats(&self) -> ShmStats {
        ShmStats {
            sent_bytes: self.counters.sent.load(Ordering::Relaxed),
            received_bytes: self.counters.received.load(Ordering::Relaxed),
            region_full: self.counters.full.load(Ordering::Relaxed),
            lent_bytes: self.lent() as u64 * crate::slots::UNIT as u64,
            held_bytes: self.held_bytes(),
        }
    }

    /// Copies `data` into free space of the outgoing region and returns the frame that
    /// names it, or `None` when there is no room (send it through the pipe then).
    pub fn put(&self, id: u64, data: &[u8]) -> Option<Frame> {
        let len = u32::try_from(data.len()).ok()?;
        let Some(offset) = lock(&self.out.space).slots.alloc(data.len()) else {
            self.counters.full.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.counters.sent.fetch_add(len as u64, Ordering::Relaxed);
        // SAFETY: `Slots` lent `[offset, offset + len)` (inside the region, which is mapped
        // writable) to this call alone, and the peer reads it only after the frame
        // returned here, so nobody else reads or writes it meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.out.map.ptr.as_ptr().add(offset as usize),
                data.len(),
            );
        }
        Some(Frame::shared_data(id, offset, len))
    }

    /// A buffer of `len` bytes in the outgoing region for a driver to read into, or
    /// `None` when there is no room. Bytes frozen from it are sent by reference, without
    /// a copy ([`reference`](Self::reference)); its space comes back when the bytes are
    /// dropped and the peer has released every reference to them.
    pub fn buffer(self: &Arc<Self>, len: usize) -> Option<ShmBuffer> {
        let size = u32::try_from(len).ok()?;
        let mut space = lock(&self.out.space);
        let start = space.slots.alloc(len)?;
        space.buffers.insert(start, Buffer { size, refs: 1 });
        Some(ShmBuffer {
            hold: BufferHold {
                shm: self.clone(),
                start,
            },
            len: size,
        })
    }

    /// A frame naming `data` where it already lies, in a buffer of the outgoing region
    /// ([`buffer`](Self::buffer)); `None` for bytes anywhere else.
    pub fn reference(&self, id: u64, data: &[u8]) -> Option<Frame> {
        let base = self.out.map.ptr.as_ptr() as usize;
        let at = (data.as_ptr() as usize).checked_sub(base)?;
        if data.is_empty() || at + data.len() > self.out.map.len {
            return None;
        }
        let (offset, len) = (u32::try_from(at).ok()?, u32::try_from(data.len()).ok()?);
        let mut space = lock(&self.out.space);
        let start = space.buffer_of(offset, len)?;
        if let Some(b) = space.buffers.get_mut(&start) {
            b.refs += 1;
        }
        *space.sent.entry((offset, len)).or_default() += 1;
        drop(space);
        self.counters.sent.fetch_add(len as u64, Ordering::Relaxed);
        Some(Frame::shared_data(id, offset, len))
    }

    /// Bytes of the incoming region this side holds now (its leases not yet dropped).
    pub fn held_bytes(&self) -> u64 {
        self.releases.held.load(Ordering::Relaxed)
    }

    /// Units of the outgoing region lent out (for tests and metrics).
    pub fn lent(&self) -> u32 {
        lock(&self.out.space).slots.in_use()
    }

    /// Handles a frame as it arrives: a `RELEASE` frees outgoing space (and is consumed),
    /// a shared `DATA` frame's reference becomes its bytes, lent until dropped; other
    /// frames pass through.
    pub fn receive(&self, f: Frame) -> Result<Option<Frame>, FrameError> {
        if f.kind == Kind::Release {
            let mut space = lock(&self.out.space);
            for (offset, len) in f.ranges() {
                space.release(offset, len).map_err(FrameError::Shared)?;
            }
            return Ok(None);
        }
        if !f.is_shared() {
            return Ok(Some(f));
        }
        let Some((offset, len)) = f.ranges().next() else {
            return Err(FrameError::BadReference(f.kind, f.payload.len()));
        };
        let end = offset as u64 + len as u64;
        if len == 0 || end > self.incoming.len as u64 {
            return Err(FrameError::Shared(format!(
                "a reference to {len} bytes at offset {offset}, outside the {}-byte region",
                self.incoming.len
            )));
        }
        self.counters
            .received
            .fetch_add(len as u64, Ordering::Relaxed);
        self.releases.held.fetch_add(len as u64, Ordering::Relaxed);
        let lease = Lease {
            map: self.incoming.clone(),
            offset,
            len,
            releases: self.releases.clone(),
        };
        Ok(Some(Frame {
            payload: Bytes::from_owner(lease),
            ..f
        }))
    }

    /// A `RELEASE` frame for the ranges dropped since the last one, if any: a sender
    /// puts it in front of whatever it writes next, so releases mostly travel for free.
    pub fn take_released(&self) -> Option<Frame> {
        let batch = std::mem::take(&mut *lock(&self.releases.pending));
        (!batch.is_empty()).then(|| Frame::release(&batch))
    }
}

/// Bytes of the incoming region, lent by the peer until dropped.
struct Lease {
    map: Arc<Mapping>,
    offset: u32,
    len: u32,
    releases: Arc<Releases>,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `receive` checked the range lies inside the mapping, which `self.map`
        // keeps alive; the peer does not write it until this lease's `RELEASE`, sent only
        // after the lease (and so every slice of it) is dropped.
        unsafe { self.map.slice(self.offset as usize, self.len as usize) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.releases
            .held
            .fetch_sub(self.len as u64, Ordering::Relaxed);
        lock(&self.releases.pending).push((self.offset, self.len));
        self.releases.wake.notify_one();
    }
}

/// One reference to a buffer of the outgoing region, dropped with its holder.
struct BufferHold {
    shm: Arc<Shm>,
    start: u32,
}

impl Drop for BufferHold {
    fn drop(&mut self) {
        lock(&self.shm.out.space).unref(self.start);
    }
}

/// A buffer of the outgoing region being filled (see [`Shm::buffer`]).
pub struct ShmBuffer {
    hold: BufferHold,
    len: u32,
}

impl driver_api::buffer::ExternalBuffer for ShmBuffer {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        let map = &self.hold.shm.out.map;
        // SAFETY: `Shm::buffer` allocated `[start, start + len)` inside the writable
        // mapping to this buffer alone; nothing references it before `freeze` (no frame
        // can name bytes that are not frozen), and `&mut self` makes this borrow unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                map.ptr.as_ptr().add(self.hold.start as usize),
                self.len as usize,
            )
        }
    }

    fn freeze(self: Box<Self>, len: usize) -> Bytes {
        let len = (len as u32).min(self.len);
        Bytes::from_owner(Frozen {
            hold: self.hold,
            len,
        })
    }
}

/// The filled part of a buffer, immutable from now on.
struct Frozen {
    hold: BufferHold,
    len: u32,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        let map = &self.hold.shm.out.map;
        // SAFETY: inside the mapping (allocated by `Shm::buffer`), kept mapped by the
        // `Arc<Shm>`; the space is freed only after this holder is dropped, and only
        // freed space is ever written again.
        unsafe { map.slice(self.hold.start as usize, self.len as usize) }
    }
}

/// Hands a driver buffers of the outgoing region (see [`driver_api::buffer`]), so that
/// what it reads goes to the host without a copy.
pub(crate) struct Source(pub(crate) Arc<Shm>);

impl driver_api::buffer::BufferSource for Source {
    fn buffer(&self, len: usize) -> Option<Box<dyn driver_api::buffer::ExternalBuffer>> {
        if len < MIN_SHARED {
            return None;
        }
        match self.0.buffer(len) {
            Some(b) => Some(Box::new(b)),
            None => {
                self.0.counters.full.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// How long a release may wait for other frames to ride with.
const RELEASE_DELAY: std::time::Duration = std::time::Duration::from_micros(500);

/// Pending releases of at least this many bytes go at once: a sender streaming a large
/// object may be waiting for the space.
const RELEASE_NOW: u64 = 1 << 20;

/// Sends the `RELEASE`s that found no other frame to ride with (see
/// [`Shm::take_released`]), after [`RELEASE_DELAY`] unless [`RELEASE_NOW`] bytes wait,
/// until the connection closes.
pub(crate) async fn send_releases(shm: Arc<Shm>, out: crate::chan::Outbox) {
    loop {
        shm.releases.wake.notified().await;
        let waiting: u64 = lock(&shm.releases.pending)
            .iter()
            .map(|&(_, len)| len as u64)
            .sum();
        if waiting < RELEASE_NOW {
            tokio::time::sleep(RELEASE_DELAY).await;
        }
        if let Some(f) = shm.take_released() {
            if out.send(f).await.is_err() {
                return;
            }
        }
    }
}

/// The host's side before the child runs: both regions, and their descriptors to pass.
pub struct HostOffer {
    shm: Shm,
    to_driver: OwnedFd,
    to_host: OwnedFd,
}

impl std::fmt::Debug for HostOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOffer").finish_non_exhaustive()
    }
}

/// The descriptors the child finds the regions on.
const CHILD_FDS: (i32, i32) = (3, 4);

impl HostOffer {
    /// Creates the two regions (Linux only; elsewhere an `Unsupported` error).
    pub fn create() -> std::io::Result<Self> {
        let to_driver = memfd("registry-storage host-to-driver")?;
        let to_host = memfd("registry-storage driver-to-host")?;
        let shm = Shm::new(
            Mapping::map(&to_driver, REGION, true)?,
            Mapping::map(&to_host, REGION, false)?,
        );
        Ok(Self {
            shm,
            to_driver,
            to_host,
        })
    }

    /// Puts the regions on the child's descriptors 3 and 4 and names them in [`ENV`].
    pub fn attach(&self, cmd: &mut tokio::process::Command) {
        let offer = Offer {
            host_to_driver: CHILD_FDS.0,
            driver_to_host: CHILD_FDS.1,
            size: REGION,
        };
        cmd.env(ENV, serde_json::json!(offer).to_string());
        let from = (self.to_driver.as_raw_fd(), self.to_host.as_raw_fd());
        let dup = move || -> std::io::Result<()> {
            for (src, dst) in [(from.0, CHILD_FDS.0), (from.1, CHILD_FDS.1)] {
                // SAFETY: `src` is open in the child (it was in the parent at the fork,
                // kept alive by `self` until `spawn` returns) and `dst` is a descriptor
                // number this closure takes over; `ManuallyDrop` keeps it open.
                let src = unsafe { std::os::fd::BorrowedFd::borrow_raw(src) };
                let mut dst = std::mem::ManuallyDrop::new(unsafe {
                    <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dst)
                });
                rustix::io::dup2(src, &mut dst)?;
            }
            Ok(())
        };
        // SAFETY: the closure runs between fork and exec, so it must be async-signal-safe:
        // it only calls dup2 (no allocation, no locks). The sources are at descriptors of
        // at least 10 (see `memfd`), so they cannot be 3 or 4 and be overwritten first,
        // and dup2 clears close-on-exec on the copies.
        unsafe {
            cmd.pre_exec(dup);
        }
    }

    /// The child agreed (`"shm": true` in `HELLO`): the host's side of the regions. The
    /// descriptors are closed; the mappings stay.
    pub fn accept(self) -> Shm {
        self.shm
    }
}

/// A memory file of [`REGION`] bytes, close-on-exec, at a descriptor of at least 10.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, REGION as u64)?;
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 10)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn memfd(_name: &str) -> std::io::Result<OwnedFd> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "shared memory needs memfd (Linux)",
    ))
}

/// The child's side: maps the regions the host offered in [`ENV`], if it did.
/// `None`: no offer; `Some(Err)`: an offer that could not be taken up (the child then
/// says `"shm": false` and uses the pipes).
pub fn from_env() -> Option<std::io::Result<Shm>> {
    let text = std::env::var(ENV).ok()?;
    Some(take_offer(&text))
}

fn take_offer(text: &str) -> std::io::Result<Shm> {
    let offer: Offer = serde_json::from_str(text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let fds = [offer.host_to_driver, offer.driver_to_host];
    if fds[0] == fds[1] || fds.iter().any(|&fd| fd < 3) || offer.size > REGION {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("an offer this driver cannot take: {text}"),
        ));
    }
    let take = |fd: i32| -> std::io::Result<OwnedFd> {
        // Only a descriptor that is what the offer says (a memory file of the offered
        // size) is taken over: a stale offer inherited from elsewhere must not make this
        // process close a descriptor it uses.
        let st = rustix::fs::fstat(
            // SAFETY: borrowed only for this check, which fails cleanly if it is closed.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        )?;
        let regular = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file();
        if !regular || st.st_size as u64 != offer.size as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not the offered region"),
            ));
        }
        // SAFETY: the host passed this descriptor for this process to own (the offer),
        // and it is the region (checked above); nothing else here uses it.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    };
    let to_driver = take(offer.host_to_driver)?;
    let to_host = take(offer.driver_to_host)?;
    Ok(Shm::new(
        Mapping::map(&to_host, offer.size, true)?,
        Mapping::map(&to_driver, offer.size, false)?,
    ))
}

/// [`Shm::receive`] on a connection with shared memory; without, shared-memory frames
/// are a protocol error.
pub fn receive(shm: Option<&Shm>, f: Frame) -> Result<Option<Frame>, FrameError> {
    match shm {
        Some(s) => s.receive(f),
        None if f.is_shared() || f.kind == Kind::Release => Err(FrameError::Shared(format!(
            "a {:?} frame that refers to shared memory, which was not agreed",
            f.kind
        ))),
        None => Ok(Some(f)),
    }
}

#[cfg(all(
    test,
    any(target_os = "linux", target_os = "android", target_os = "freebsd")
))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::IntoRawFd;

    /// Both sides of one connection in one process: the host's offer, and the child's
    /// side taken up from copies of its descriptors, as `from_env` would.
    fn pair() -> (Shm, Shm) {
        let offer = HostOffer::create().unwrap();
        let a = rustix::io::fcntl_dupfd_cloexec(&offer.to_driver, 3).unwrap();
        let b = rustix::io::fcntl_dupfd_cloexec(&offer.to_host, 3).unwrap();
        let text = serde_json::json!({
            "host_to_driver": a.into_raw_fd(),
            "driver_to_host": b.into_raw_fd(),
            "size": REGION,
        })
        .to_string();
        let child = take_offer(&text).unwrap();
        (offer.accept(), child)
    }

    #[test]
    fn bytes_cross_both_ways_and_every_range_comes_back() {
        let (host, child) = pair();
        for (from, to) in [(&host, &child), (&child, &host)] {
            let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
            let wire = from.put(5, &data).unwrap();
            assert!(wire.is_shared() && wire.payload.len() == 8);
            let got = to.receive(wire).unwrap().unwrap();
            assert_eq!(got.payload, data);
            assert_eq!(to.held_bytes(), 700_000);
            assert!(from.lent() > 0);
            let slice = got.payload.slice(10..20);
            drop(got);
            assert!(to.take_released().is_none(), "a slice still holds it");
            drop(slice);
            let release = to.take_released().unwrap();
            assert!(from.receive(release.clone()).unwrap().is_none());
            assert_eq!(from.lent(), 0);
            // The same release again is refused.
            assert!(matches!(from.receive(release), Err(FrameError::Shared(_))));
        }
    }

    /// Fills a buffer of the child's region as a driver would, through `read_buffer`.
    fn read_into(child: &Arc<Shm>, data: &[u8]) -> Bytes {
        use driver_api::buffer::BufferSource;
        let b = Source(child.clone()).buffer(data.len()).unwrap();
        let mut b = b;
        b.as_mut_slice()[..data.len()].copy_from_slice(data);
        b.freeze(data.len())
    }

    #[test]
    fn bytes_read_into_the_region_go_by_reference_until_every_holder_is_done() {
        let (host, child) = pair();
        let child = Arc::new(child);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let bytes = read_into(&child, &data);
        let units = child.lent();
        assert!(units > 0, "the buffer takes space");
        // Two references into it, as a stream sends a chunk in pieces.
        let a = child.reference(7, &bytes[..600_000]).unwrap();
        let b = child.reference(7, &bytes[600_000..]).unwrap();
        assert_eq!(
            child.lent(),
            units,
            "references copy nothing and take no space"
        );
        let (a, b) = (
            host.receive(a).unwrap().unwrap(),
            host.receive(b).unwrap().unwrap(),
        );
        assert_eq!([&a.payload[..], &b.payload[..]].concat(), data);
        // The driver's bytes go first: the space stays while the host reads.
        drop(bytes);
        assert_eq!(child.lent(), units);
        drop(a);
        let first = host.take_released().unwrap();
        assert!(child.receive(first.clone()).unwrap().is_none());
        assert_eq!(child.lent(), units, "one reference is still out");
        // The same release again, and a release of the buffer itself, are refused.
        assert!(matches!(child.receive(first), Err(FrameError::Shared(_))));
        let whole = Frame::release(&[(0, 1_000_000)]);
        assert!(matches!(child.receive(whole), Err(FrameError::Shared(_))));
        drop(b);
        assert!(child
            .receive(host.take_released().unwrap())
            .unwrap()
            .is_none());
        assert_eq!(child.lent(), 0, "every holder is done: the space is back");
    }

    #[test]
    fn a_buffer_released_by_the_peer_first_lives_until_its_bytes_are_dropped() {
        let (host, child) = pair();
        let child = Arc::new(child);
        let bytes = read_into(&child, &[5u8; 100_000]);
        let f = child.reference(1, &bytes).unwrap();
        drop(host.receive(f).unwrap());
        assert!(child
            .receive(host.take_released().unwrap())
            .unwrap()
            .is_none());
        assert!(child.lent() > 0, "the driver still holds its bytes");
        assert!(bytes.iter().all(|&b| b == 5));
        drop(bytes);
        assert_eq!(child.lent(), 0);
        // Bytes anywhere else are not references: they are copied (`put`).
        assert!(child.reference(1, &[5u8; 100_000]).is_none());
        let unsent = read_into(&child, &[1u8; 70_000]);
        drop(unsent);
        assert_eq!(
            child.lent(),
            0,
            "a buffer never sent frees its space when dropped"
        );
    }

    #[test]
    fn a_full_region_says_so_and_references_are_checked() {
        let (host, child) = pair();
        let mut lent = Vec::new();
        while let Some(f) = host.put(1, &[9u8; 1 << 20]) {
            lent.push(f);
        }
        assert_eq!(lent.len(), REGION >> 20);
        assert_eq!(host.stats().region_full, 1);
        let outside = Frame::shared_data(1, (REGION - 10) as u32, 11);
        assert!(matches!(child.receive(outside), Err(FrameError::Shared(_))));
        let empty = Frame::shared_data(1, 0, 0);
        assert!(matches!(child.receive(empty), Err(FrameError::Shared(_))));
        // Plain frames pass through untouched.
        let plain = Frame::new(Kind::Data, 1, &b"abc"[..]);
        assert_eq!(child.receive(plain.clone()).unwrap(), Some(plain));
    }

    #[test]
    fn offers_that_do_not_fit_are_refused_and_nothing_is_closed() {
        for bad in [
            r#"{"host_to_driver": 0, "driver_to_host": 4, "size": 8388608}"#,
            r#"{"host_to_driver": 3, "driver_to_host": 3, "size": 8388608}"#,
            r#"{"host_to_driver": 3, "driver_to_host": 4, "size": 99999999999}"#,
            "not json",
        ] {
            assert!(take_offer(bad).is_err(), "{bad}");
        }
        // A stale offer naming a descriptor that is something else (here a small file):
        // refused, and the descriptor stays open.
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        let text =
            format!(r#"{{"host_to_driver": {fd}, "driver_to_host": {fd}, "size": 8388608}}"#);
        assert!(take_offer(&text).is_err());
        let text = format!(r#"{{"host_to_driver": {fd}, "driver_to_host": 999, "size": 8388608}}"#);
        assert!(take_offer(&text).is_err());
        assert!(rustix::io::fcntl_getfd(&file).is_ok(), "still open");
    }
}
