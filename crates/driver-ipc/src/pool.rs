//! Warm buffers for bytes copied out of shared memory.
//!
//! A fresh buffer of a megabyte costs hundreds of page faults on first touch (about half
//! a millisecond on a small VM, twenty times the copy itself). Bytes that leave shared
//! memory are therefore copied into buffers from this pool: a buffer comes back when the
//! last [`Bytes`] of it is dropped, and is reused with its pages still mapped. Idle
//! buffers are capped (by count per size and in total), so the pool holds at most a few
//! tens of megabytes however much passes through it.
//!
//! ```
//! use driver_ipc::pool::Pool;
//! let pool = Pool::new();
//! let a = pool.copy(&[&[1u8; 50_000], &[2u8; 50_000]]);
//! assert_eq!(a.len(), 100_000);
//! drop(a); // the buffer (128 KiB, the size class of 100,000 bytes) goes back
//! assert_eq!(pool.idle_bytes(), 128 << 10);
//! ```

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// The smallest pooled buffer.
const MIN_CLASS: usize = 64 << 10;
/// Copies under this size are plain allocations (small ones come from the allocator's
/// warm heap anyway).
const MIN_POOLED: usize = 16 << 10;
/// Size classes: 64 KiB to 16 MiB, powers of two.
const CLASSES: usize = 9;
/// Idle buffers kept per class.
const PER_CLASS: usize = 4;
/// Idle bytes kept in all.
const MAX_IDLE: usize = 32 << 20;

/// A pool of warm buffers (see the module docs). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    classes: [Vec<Vec<u8>>; CLASSES],
    bytes: usize,
}

fn class_of(len: usize) -> Option<usize> {
    let size = len.max(MIN_CLASS).checked_next_power_of_two()?;
    let class = (size / MIN_CLASS).trailing_zeros() as usize;
    (class < CLASSES).then_some(class)
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pieces, concatenated into one buffer (a warm one when the size allows).
    pub fn copy(&self, pieces: &[&[u8]]) -> Bytes {
        let len = pieces.iter().map(|p| p.len()).sum();
        let mut buf = self.take(len);
        for p in pieces {
            buf.extend_from_slice(p);
        }
        self.wrap(buf)
    }

    /// An empty buffer with room for `len` bytes: from the pool if one is idle.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let Some(class) = class_of(len).filter(|_| len >= MIN_POOLED) else {
            return Vec::with_capacity(len);
        };
        let mut idle = self.lock();
        match idle.classes[class].pop() {
            Some(buf) => {
                idle.bytes -= buf.capacity();
                buf
            }
            None => {
                drop(idle);
                Vec::with_capacity(MIN_CLASS << class)
            }
        }
    }

    /// `buf` as [`Bytes`] that give the buffer back to the pool when dropped.
    pub fn wrap(&self, buf: Vec<u8>) -> Bytes {
        let cap = buf.capacity();
        if class_of(cap).is_none_or(|c| MIN_CLASS << c != cap) {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// A buffer on loan from the pool.
struct Pooled {
    buf: Vec<u8>,
    pool: Weak<Inner>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(inner) = self.pool.upgrade() else {
            return;
        };
        let cap = self.buf.capacity();
        // Only buffers of exactly a class size go back (so `take` finds room as promised).
        let Some(class) = class_of(cap).filter(|&c| MIN_CLASS << c == cap) else {
            return;
        };
        let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.classes[class].len() < PER_CLASS && idle.bytes + cap <= MAX_IDLE {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            idle.bytes += cap;
            idle.classes[class].push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_idle_memory_is_capped() {
        let pool = Pool::new();
        let a = pool.copy(&[&vec![1u8; 1 << 20]]);
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool.idle_bytes(), 1 << 20);
        let b = pool.copy(&[&[2u8; 700_000], &[3u8; 300_000]]);
        assert_eq!(b.as_ptr(), ptr, "the same buffer again");
        assert_eq!(b.len(), 1_000_000);
        assert!(b[..700_000].iter().all(|&x| x == 2) && b[700_000..].iter().all(|&x| x == 3));
        assert_eq!(pool.idle_bytes(), 0);
        // A slice keeps the buffer on loan until the last piece is dropped.
        let tail = b.slice(999_000..);
        drop(b);
        assert_eq!(pool.idle_bytes(), 0);
        drop(tail);
        assert_eq!(pool.idle_bytes(), 1 << 20);
        // Many buffers at once: only a few per size stay, and never over the cap.
        let many: Vec<Bytes> = (0..40).map(|_| pool.copy(&[&[0u8; 5 << 20]])).collect();
        drop(many);
        assert!(pool.idle_bytes() <= MAX_IDLE, "{}", pool.idle_bytes());
        // Tiny and huge copies are plain allocations.
        assert_eq!(pool.copy(&[b"x"]).len(), 1);
        assert_eq!(pool.copy(&[&vec![0u8; 17 << 20]]).len(), 17 << 20);
        // The pool can go first; loans then simply free their buffers.
        let loan = pool.copy(&[&[1u8; 100_000]]);
        drop(pool);
        assert_eq!(loan.len(), 100_000);
    }

    #[test]
    fn size_classes() {
        assert_eq!(class_of(0), Some(0));
        assert_eq!(class_of(64 << 10), Some(0));
        assert_eq!(class_of((64 << 10) + 1), Some(1));
        assert_eq!(class_of(16 << 20), Some(8));
        assert_eq!(class_of((16 << 20) + 1), None);
    }
}
