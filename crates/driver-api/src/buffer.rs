//! Buffers that drivers read into, so that whoever runs a driver can choose where the
//! bytes land.
//!
//! A driver that reads a file or a socket into memory of its own asks [`read_buffer`] for
//! that memory instead of allocating it. By default the answer is an ordinary heap buffer,
//! so nothing changes in process. A host that must move the bytes on anyway (the IPC
//! child, whose bytes go to the host through shared memory) installs a [`BufferSource`]
//! around the driver calls with [`with_buffer_source`]; the driver then reads straight into
//! that memory, and the copy from the driver's buffer into the shared region disappears.
//!
//! ```
//! use std::io::Cursor;
//! let mut buf = driver_api::buffer::read_buffer(5);
//! let n = buf.fill_from(&mut Cursor::new(b"hello, world")).unwrap();
//! assert_eq!(n, 5);
//! assert_eq!(&buf.freeze()[..], b"hello");
//! ```

use std::future::Future;
use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;

/// Where the buffers of [`read_buffer`] come from, within [`with_buffer_source`].
pub trait BufferSource: Send + Sync {
    /// A buffer of exactly `len` bytes, or `None` to fall back to the heap (too small to
    /// be worth it, or no room).
    fn buffer(&self, len: usize) -> Option<Box<dyn ExternalBuffer>>;
}

/// A buffer handed out by a [`BufferSource`].
pub trait ExternalBuffer: Send {
    /// The whole buffer, to be filled from the start.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Its first `len` bytes, as immutable bytes that keep the memory until dropped.
    fn freeze(self: Box<Self>, len: usize) -> Bytes;
}

tokio::task_local! {
    static SOURCE: Arc<dyn BufferSource>;
}

/// Runs `fut` with `source` answering its [`read_buffer`] calls (those made while `fut`
/// is polled, in its task).
pub async fn with_buffer_source<F: Future>(source: Arc<dyn BufferSource>, fut: F) -> F::Output {
    SOURCE.scope(source, fut).await
}

/// A buffer for up to `len` bytes: from the [`BufferSource`] in scope, or the heap.
pub fn read_buffer(len: usize) -> ReadBuffer {
    let external = SOURCE.try_with(|s| s.buffer(len)).ok().flatten();
    ReadBuffer {
        inner: match external {
            Some(b) => Inner::External(b, 0),
            None => Inner::Heap(Vec::with_capacity(len)),
        },
        len,
    }
}

/// Memory to read up to a fixed number of bytes into, then [`freeze`](Self::freeze).
pub struct ReadBuffer {
    inner: Inner,
    len: usize,
}

enum Inner {
    /// A heap buffer (filled without zeroing it first).
    Heap(Vec<u8>),
    /// A source's buffer and how much of it is filled.
    External(Box<dyn ExternalBuffer>, usize),
}

impl std::fmt::Debug for ReadBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Heap(_) => "heap",
            Inner::External(..) => "external",
        };
        f.debug_struct("ReadBuffer")
            .field("len", &self.len)
            .field("kind", &kind)
            .finish()
    }
}

impl ReadBuffer {
    /// Whether the buffer came from a [`BufferSource`] (not the heap).
    pub fn is_external(&self) -> bool {
        matches!(self.inner, Inner::External(..))
    }

    /// Reads from `r` until the buffer is full or `r` ends; returns the bytes read by this
    /// call.
    pub fn fill_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Heap(v) => {
                let room = (self.len - v.len()) as u64;
                r.take(room).read_to_end(v)
            }
            Inner::External(b, filled) => {
                let start = *filled;
                let buf = b.as_mut_slice();
                while *filled < buf.len() {
                    match r.read(&mut buf[*filled..]) {
                        Ok(0) => break,
                        Ok(n) => *filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(*filled - start)
            }
        }
    }

    /// The bytes read so far.
    pub fn freeze(self) -> Bytes {
        match self.inner {
            Inner::Heap(v) => Bytes::from(v),
            Inner::External(b, filled) => b.freeze(filled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source of plain boxed buffers that counts what it hands out.
    struct Counting(AtomicUsize);

    struct Boxed(Vec<u8>);

    impl ExternalBuffer for Boxed {
        fn as_mut_slice(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn freeze(self: Box<Self>, len: usize) -> Bytes {
            Bytes::from(self.0).slice(..len)
        }
    }

    impl BufferSource for Counting {
        fn buffer(&self, len: usize) -> Option<Box<dyn ExternalBuffer>> {
            if len < 4 {
                return None;
            }
            self.0.fetch_add(1, Ordering::Relaxed);
            Some(Box::new(Boxed(vec![0xAA; len])))
        }
    }

    /// A reader that hands out at most 3 bytes per call, with an interruption first.
    struct Trickle<'a>(&'a [u8], bool);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.1 {
                self.1 = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[tokio::test]
    async fn without_a_source_buffers_come_from_the_heap() {
        let mut b = read_buffer(8);
        assert!(!b.is_external());
        assert_eq!(
            b.fill_from(&mut Trickle(b"0123456789", false)).ok(),
            Some(8)
        );
        assert_eq!(&b.freeze()[..], b"01234567");
    }

    #[tokio::test]
    async fn a_source_in_scope_answers_and_short_reads_are_kept_short() {
        let src = Arc::new(Counting(AtomicUsize::new(0)));
        let got = with_buffer_source(src.clone(), async {
            let mut b = read_buffer(16);
            assert!(b.is_external());
            // The reader ends after 10 bytes: the rest of the buffer is not handed out.
            let n = b.fill_from(&mut Trickle(b"0123456789", false)).ok();
            assert_eq!(n, Some(10));
            assert_eq!(b.fill_from(&mut Trickle(b"", true)).ok(), Some(0));
            let small = read_buffer(2);
            assert!(!small.is_external(), "the source declined");
            b.freeze()
        })
        .await;
        assert_eq!(&got[..], b"0123456789");
        assert_eq!(src.0.load(Ordering::Relaxed), 1);
        // Out of scope again.
        assert!(!read_buffer(16).is_external());
    }

    #[tokio::test]
    async fn errors_other_than_interruptions_are_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let src = Arc::new(Counting(AtomicUsize::new(0)));
        with_buffer_source(src, async {
            let mut b = read_buffer(16);
            let e = b.fill_from(&mut Broken).err().map(|e| e.kind());
            assert_eq!(e, Some(io::ErrorKind::BrokenPipe));
        })
        .await;
    }
}
