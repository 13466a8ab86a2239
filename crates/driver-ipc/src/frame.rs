//! Frames: the 16-byte header and the payload (docs/ipc-protocol.md, "Frames").
//!
//! [`FrameCodec`] is a `tokio_util` codec: it never panics on malformed input, never
//! allocates more than the declared (and bounded) payload, and reports what was wrong.
//!
//! ```
//! use bytes::BytesMut;
//! use driver_ipc::frame::{Frame, FrameCodec, Kind};
//! use tokio_util::codec::{Decoder, Encoder};
//! let mut buf = BytesMut::new();
//! FrameCodec.encode(Frame::new(Kind::Data, 7, "abc"), &mut buf).unwrap();
//! assert_eq!(buf.len(), 16 + 3);
//! let f = FrameCodec.decode(&mut buf).unwrap().unwrap();
//! assert_eq!((f.kind, f.id, &f.payload[..]), (Kind::Data, 7, &b"abc"[..]));
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"SD";
/// Header length.
pub const HEADER_LEN: usize = 16;
/// Largest payload.
pub const MAX_PAYLOAD: usize = 4 << 20;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// The child's handshake.
    Hello = 1,
    /// A request (host to child).
    Request = 2,
    /// A result (child to host).
    Response = 3,
    /// Stream bytes.
    Data = 4,
    /// End of a stream.
    End = 5,
    /// More bytes the peer may send.
    Credit = 6,
    /// Abandon a request (host to child).
    Cancel = 7,
    /// A request failed (child to host).
    Error = 8,
    /// Shared-memory space the receiver is done with (only once shared memory was
    /// agreed in `HELLO`).
    Release = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Request,
            3 => Kind::Response,
            4 => Kind::Data,
            5 => Kind::End,
            6 => Kind::Credit,
            7 => Kind::Cancel,
            8 => Kind::Error,
            9 => Kind::Release,
            _ => return None,
        })
    }
}

/// The flag of a `DATA` frame whose bytes are in the sender's shared region: on the
/// wire its payload is a reference (offset and length, 4 bytes each, big-endian); once
/// resolved, the payload is the bytes themselves, lent until dropped.
pub const SHARED: u8 = 0x01;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its kind.
    pub kind: Kind,
    /// The request it belongs to (0: the handshake, `RELEASE`).
    pub id: u64,
    /// Header flags: 0, or [`SHARED`] on `DATA`.
    pub flags: u8,
    /// Raw bytes (`Data`) or JSON.
    pub payload: Bytes,
}

impl Frame {
    /// A frame.
    pub fn new(kind: Kind, id: u64, payload: impl Into<Bytes>) -> Self {
        Self {
            kind,
            id,
            flags: 0,
            payload: payload.into(),
        }
    }

    /// A `DATA` frame naming `len` bytes at `offset` of the sender's shared region.
    pub fn shared_data(id: u64, offset: u32, len: u32) -> Self {
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&offset.to_be_bytes());
        p[4..].copy_from_slice(&len.to_be_bytes());
        Self {
            flags: SHARED,
            ..Self::new(Kind::Data, id, Bytes::copy_from_slice(&p))
        }
    }

    /// Whether this is a shared-memory `DATA` frame.
    pub fn is_shared(&self) -> bool {
        self.flags & SHARED != 0
    }

    /// The (offset, length) pairs of a `RELEASE` payload, or of a shared `DATA` frame's
    /// reference (its one pair); the codec has checked the payload is whole pairs.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.payload.chunks_exact(8).map(|c| {
            let (o, l) = c.split_at(4);
            (
                u32::from_be_bytes([o[0], o[1], o[2], o[3]]),
                u32::from_be_bytes([l[0], l[1], l[2], l[3]]),
            )
        })
    }

    /// A `RELEASE` frame giving back `ranges`.
    pub fn release(ranges: &[(u32, u32)]) -> Self {
        let mut p = BytesMut::with_capacity(ranges.len() * 8);
        for (o, l) in ranges {
            p.put_u32(*o);
            p.put_u32(*l);
        }
        Self::new(Kind::Release, 0, p.freeze())
    }

    /// A `Credit` frame granting `n` bytes.
    pub fn credit(id: u64, n: u32) -> Self {
        Self::new(Kind::Credit, id, Bytes::copy_from_slice(&n.to_be_bytes()))
    }

    /// The grant of a `Credit` frame.
    pub fn credit_amount(&self) -> Option<u32> {
        let b: [u8; 4] = self.payload.as_ref().try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }
}

/// Why a byte stream is not (or no longer) a frame stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The first bytes are not the magic (the peer wrote something else, e.g. a `print`).
    #[error("not a frame: the stream starts with {0:02x?} (expected \"SD\"; did the driver print to stdout?)")]
    BadMagic([u8; 2]),
    /// An unknown kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Reserved flags set (only `DATA` may carry [`SHARED`]).
    #[error("frame flags {0:#04x} are reserved (must be 0, or 0x01 on DATA)")]
    Flags(u8),
    /// A shared `DATA` frame not 8 bytes long, or a `RELEASE` not whole 8-byte pairs.
    #[error("a {0:?} frame with a {1}-byte payload (shared-memory references are 8 bytes each)")]
    BadReference(Kind, usize),
    /// Shared memory misused: not agreed, or a reference outside the region.
    #[error("shared memory: {0}")]
    Shared(String),
    /// A payload over [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes is over the 4 MiB limit")]
    TooLarge(u64),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame ({0} bytes of it read)")]
    Truncated(usize),
    /// Reading or writing failed.
    #[error("pipe failed: {0}")]
    Io(String),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e.to_string())
    }
}

/// The frame codec (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() >= 2 && src[..2] != MAGIC {
            return Err(FrameError::BadMagic([src[0], src[1]]));
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = Kind::from_u8(src[2]).ok_or(FrameError::UnknownKind(src[2]))?;
        let flags = src[3];
        if flags != 0 && !(flags == SHARED && kind == Kind::Data) {
            return Err(FrameError::Flags(flags));
        }
        let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len as u64));
        }
        let bad_reference = match kind {
            Kind::Data => flags == SHARED && len != 8,
            Kind::Release => !len.is_multiple_of(8),
            _ => false,
        };
        if bad_reference {
            return Err(FrameError::BadReference(kind, len));
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&src[8..16]);
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Ok(Some(Frame {
            kind,
            id: u64::from_be_bytes(id),
            flags,
            payload,
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len())),
        }
    }
}

impl tokio_util::codec::Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, f: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        if f.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(f.payload.len() as u64));
        }
        dst.reserve(HEADER_LEN + f.payload.len());
        dst.put_slice(&MAGIC);
        dst.put_u8(f.kind as u8);
        dst.put_u8(f.flags);
        dst.put_u32(f.payload.len() as u32);
        dst.put_u64(f.id);
        dst.put_slice(&f.payload);
        Ok(())
    }
}

/// Payloads up to this size are copied next to their header and written with it (and
/// with other small frames) in one call; larger ones are written from their own buffer,
/// never copied.
const COALESCE: usize = 64 << 10;

/// Writes frames to a pipe without copying large payloads: the header goes into a small
/// buffer, the payload is written straight from its [`Bytes`] (one vectored write for
/// both where the pipe supports it).
///
/// A frame handed to [`feed`](Self::feed) or [`send`](Self::send) is kept here until it is
/// completely written, so a write interrupted by dropping its future (a cancelled
/// request) is finished by the next call: the peer never sees half a frame followed by
/// another.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    /// Headers and small payloads not yet written.
    buf: BytesMut,
    /// A large payload to write after `buf`.
    big: Bytes,
}

impl<W: tokio::io::AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer over `io`.
    pub fn new(io: W) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(COALESCE + HEADER_LEN),
            big: Bytes::new(),
        }
    }

    /// Queues `f`, writing as much as needed to make room; call [`flush`](Self::flush)
    /// to write the rest.
    pub async fn feed(&mut self, f: Frame) -> Result<(), FrameError> {
        if f.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(f.payload.len() as u64));
        }
        // Earlier frames first: a large payload, or a buffer that is full enough.
        if !self.big.is_empty() || self.buf.len() + HEADER_LEN + f.payload.len() > COALESCE * 2 {
            self.drain().await?;
        }
        self.buf.put_slice(&MAGIC);
        self.buf.put_u8(f.kind as u8);
        self.buf.put_u8(f.flags);
        self.buf.put_u32(f.payload.len() as u32);
        self.buf.put_u64(f.id);
        if f.payload.len() <= COALESCE {
            self.buf.put_slice(&f.payload);
        } else {
            self.big = f.payload;
            self.drain().await?;
        }
        Ok(())
    }

    /// Writes everything queued and flushes the pipe.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.drain().await?;
        tokio::io::AsyncWriteExt::flush(&mut self.io).await?;
        Ok(())
    }

    /// Queues `f` and flushes.
    pub async fn send(&mut self, f: Frame) -> Result<(), FrameError> {
        self.feed(f).await?;
        self.flush().await
    }

    /// Writes `buf`, then `big`, advancing both as bytes go out.
    async fn drain(&mut self) -> Result<(), FrameError> {
        use tokio::io::AsyncWriteExt;
        while !self.buf.is_empty() || !self.big.is_empty() {
            let n = if self.buf.is_empty() {
                self.io.write(&self.big).await?
            } else if self.big.is_empty() {
                self.io.write(&self.buf).await?
            } else {
                let parts = [
                    std::io::IoSlice::new(&self.buf),
                    std::io::IoSlice::new(&self.big),
                ];
                self.io.write_vectored(&parts).await?
            };
            if n == 0 {
                return Err(FrameError::Io("the pipe is closed".into()));
            }
            let from_buf = n.min(self.buf.len());
            self.buf.advance(from_buf);
            self.big.advance(n - from_buf);
        }
        self.buf.clear();
        Ok(())
    }
}
