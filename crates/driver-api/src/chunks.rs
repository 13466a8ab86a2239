//! Cutting a writer's input into fixed-size parts, holding at most one part in memory:
//! how object-store writers (multipart uploads, blocks, segments, resumable sessions)
//! turn arbitrary `write` calls into uploads.
//!
//! A part that can be cut straight out of the caller's buffer is, without a copy; only a
//! part assembled from several writes is copied, once, into a buffer allocated at exactly
//! the part size (growing by doubling would copy again and briefly hold up to three
//! parts).
//!
//! ```
//! use bytes::Bytes;
//! use driver_api::chunks::Chunker;
//! let mut c = Chunker::new(4);
//! let mut parts = Vec::new();
//! for write in ["ab", "cdefghij", "k"] {
//!     let mut data = Bytes::from(write);
//!     while let Some(part) = c.next_part(&mut data) {
//!         parts.push(part); // a driver uploads it here
//!     }
//! }
//! assert_eq!(parts, ["abcd", "efgh"]);
//! assert_eq!(c.take(), "ijk"); // the tail: the last part, or state to park on close
//! ```

use bytes::{Bytes, BytesMut};

/// Cuts input into parts of `chunk` bytes (see the module docs).
#[derive(Debug, Default)]
pub struct Chunker {
    chunk: usize,
    buf: BytesMut,
}

impl Chunker {
    /// Parts of `chunk` bytes (at least 1).
    pub fn new(chunk: usize) -> Self {
        Self {
            chunk: chunk.max(1),
            buf: BytesMut::new(),
        }
    }

    /// The part size.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Consumes the front of `data` until a whole part is ready (returned) or `data` is
    /// used up (`None`; what is left is buffered). Call it until it returns `None`.
    pub fn next_part(&mut self, data: &mut Bytes) -> Option<Bytes> {
        if self.buf.len() >= self.chunk {
            // A restored tail larger than a part (see `extend`).
            return Some(self.buf.split_to(self.chunk).freeze());
        }
        if data.is_empty() {
            return None;
        }
        if self.buf.is_empty() && data.len() >= self.chunk {
            return Some(data.split_to(self.chunk));
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.chunk);
        }
        let take = (self.chunk - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data.split_to(take));
        if self.buf.len() == self.chunk {
            Some(self.buf.split().freeze())
        } else {
            None
        }
    }

    /// Bytes buffered (less than a part, unless restored with [`extend`](Self::extend)).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The buffered bytes.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Restores buffered bytes (a parked tail, when an upload resumes).
    pub fn extend(&mut self, data: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.chunk.max(data.len()));
        }
        self.buf.extend_from_slice(data);
    }

    /// The first `n` buffered bytes (at most all of them), removed from the buffer.
    pub fn take_front(&mut self, n: usize) -> Bytes {
        let n = n.min(self.buf.len());
        self.buf.split_to(n).freeze()
    }

    /// Everything buffered, removed; the buffer's memory is released.
    pub fn take(&mut self) -> Bytes {
        std::mem::take(&mut self.buf).freeze()
    }

    /// Drops what is buffered and releases the memory.
    pub fn clear(&mut self) {
        self.buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of splitting a stream gives the same parts, whole parts of the input
    /// are not copied, and the tail is what is left.
    #[test]
    fn parts_are_exact_whatever_the_writes() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for chunk in [1, 7, 64, 999, 1000, 1001] {
            for step in [1, 3, 64, 500, 1000] {
                let mut c = Chunker::new(chunk);
                let mut out = Vec::new();
                for piece in input.chunks(step) {
                    let mut data = Bytes::copy_from_slice(piece);
                    while let Some(p) = c.next_part(&mut data) {
                        assert_eq!(p.len(), chunk);
                        out.extend_from_slice(&p);
                    }
                    assert!(data.is_empty());
                    assert!(c.len() < chunk);
                }
                assert_eq!(out.len(), input.len() / chunk * chunk);
                out.extend_from_slice(&c.take());
                assert_eq!(out, input, "chunk {chunk} step {step}");
                assert!(c.is_empty());
            }
        }
    }

    #[test]
    fn whole_parts_are_cut_without_copy_and_tails_restore() {
        let mut c = Chunker::new(4);
        let mut data = Bytes::from_static(b"abcdefghij");
        let start = data.as_ptr();
        let p = c.next_part(&mut data).unwrap();
        assert_eq!(p.as_ptr(), start, "no copy");
        assert_eq!(c.next_part(&mut data).unwrap(), "efgh");
        assert_eq!(c.next_part(&mut data), None);
        assert_eq!(c.buffered(), b"ij");
        let mut c = Chunker::new(2);
        c.extend(b"12345");
        let mut none = Bytes::new();
        assert_eq!(c.next_part(&mut none).unwrap(), "12");
        assert_eq!(c.next_part(&mut none).unwrap(), "34");
        assert_eq!(c.next_part(&mut none), None);
        assert_eq!(c.take_front(9), "5");
    }
}
