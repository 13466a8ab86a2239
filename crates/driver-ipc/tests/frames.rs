//! Property tests of the frame codec, with a seeded generator (set `IPC_FUZZ_SEED` and
//! `IPC_FUZZ_ROUNDS` to explore further): frames survive any split of the byte stream;
//! random and corrupted input never panics, never yields an oversized payload, and never
//! makes the decoder reserve more than one frame's worth of memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Bytes, BytesMut};
use driver_ipc::frame::{Frame, FrameCodec, FrameError, Kind, HEADER_LEN, MAX_PAYLOAD};
use tokio_util::codec::{Decoder, Encoder};

/// xorshift64*: small, seeded, good enough to drive the cases.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("IPC_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_1234_abcd_ef01u64);
        eprintln!("seed {seed}");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn rounds() -> usize {
    std::env::var("IPC_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

const KINDS: [Kind; 8] = [
    Kind::Hello,
    Kind::Request,
    Kind::Response,
    Kind::Data,
    Kind::End,
    Kind::Credit,
    Kind::Cancel,
    Kind::Error,
];

fn random_frame(r: &mut Rng) -> Frame {
    // Now and then the shared-memory frames (protocol 1.1): a reference, a release.
    match r.below(20) {
        0 => return Frame::shared_data(r.next(), r.next() as u32, r.next() as u32),
        1 => {
            let ranges: Vec<(u32, u32)> = (0..r.below(5))
                .map(|_| (r.next() as u32, r.next() as u32))
                .collect();
            return Frame::release(&ranges);
        }
        _ => {}
    }
    let len = match r.below(10) {
        0 => 0,
        1 => r.below(300 << 10) as usize,
        _ => r.below(200) as usize,
    };
    let kind = KINDS[r.below(8) as usize];
    let id = r.next();
    Frame::new(kind, id, r.bytes(len))
}

/// Feeds `input` to a decoder in random pieces; returns the frames and the first error.
fn decode_in_pieces(r: &mut Rng, input: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
    let mut codec = FrameCodec;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let n = (r.below(64 << 10) as usize + 1).min(input.len() - at);
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        loop {
            let res = if at == input.len() {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            // Never more than one frame (plus what was given) is reserved.
            assert!(buf.capacity() <= input.len() + HEADER_LEN + MAX_PAYLOAD + (64 << 10));
            match res {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= MAX_PAYLOAD);
                    out.push(f)
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if at == input.len() {
            return (out, None);
        }
    }
}

#[test]
fn frames_survive_any_split() {
    let mut r = Rng::new();
    for _ in 0..rounds() / 10 {
        let frames: Vec<Frame> = (0..r.below(20) + 1).map(|_| random_frame(&mut r)).collect();
        let mut wire = BytesMut::new();
        for f in &frames {
            FrameCodec.encode(f.clone(), &mut wire).unwrap();
        }
        let (got, err) = decode_in_pieces(&mut r, &wire);
        assert_eq!(err, None);
        assert_eq!(got, frames);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut r = Rng::new();
    for i in 0..rounds() {
        let n = r.below(4096) as usize;
        let mut input = r.bytes(n);
        // Half the time, start with the magic so the header checks are reached.
        if i % 2 == 0 && input.len() >= 2 {
            input[..2].copy_from_slice(b"SD");
        }
        let _ = decode_in_pieces(&mut r, &input);
    }
}

#[test]
fn corrupted_streams_fail_cleanly() {
    let mut r = Rng::new();
    for _ in 0..rounds() {
        let mut wire = BytesMut::new();
        for _ in 0..r.below(5) + 1 {
            let mut f = random_frame(&mut r);
            let n = r.below(100) as usize;
            f.payload = Bytes::from(r.bytes(n));
            FrameCodec.encode(f, &mut wire).unwrap();
        }
        let mut wire = wire.to_vec();
        for _ in 0..r.below(4) + 1 {
            let at = r.below(wire.len() as u64) as usize;
            wire[at] = r.next() as u8;
        }
        if r.below(3) == 0 {
            let cut = r.below(wire.len() as u64) as usize;
            wire.truncate(cut);
        }
        // Whatever happens, it is frames then at most one error; never a panic.
        let _ = decode_in_pieces(&mut r, &wire);
    }
}

#[test]
fn every_header_violation_is_named() {
    let mut codec = FrameCodec;
    let header = |magic: &[u8; 2], kind: u8, flags: u8, len: u32| {
        let mut b = BytesMut::new();
        b.extend_from_slice(magic);
        b.extend_from_slice(&[kind, flags]);
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&9u64.to_be_bytes());
        b
    };
    let cases = [
        (header(b"XX", 1, 0, 0), FrameError::BadMagic(*b"XX")),
        (header(b"SD", 0, 0, 0), FrameError::UnknownKind(0)),
        (header(b"SD", 10, 0, 0), FrameError::UnknownKind(10)),
        (header(b"SD", 4, 2, 0), FrameError::Flags(2)),
        // Only DATA may be shared; a reference is 8 bytes; a release, whole pairs.
        (header(b"SD", 5, 1, 0), FrameError::Flags(1)),
        (
            header(b"SD", 4, 1, 7),
            FrameError::BadReference(Kind::Data, 7),
        ),
        (
            header(b"SD", 9, 0, 12),
            FrameError::BadReference(Kind::Release, 12),
        ),
        // Refused from the header alone: no 4 GiB buffer is waited for.
        (
            header(b"SD", 4, 0, u32::MAX),
            FrameError::TooLarge(u32::MAX as u64),
        ),
    ];
    for (mut buf, want) in cases {
        assert_eq!(codec.decode(&mut buf).unwrap_err(), want);
    }
    // The magic is checked as soon as two bytes are there.
    let mut two = BytesMut::from(&b"{\""[..]);
    assert!(matches!(
        codec.decode(&mut two),
        Err(FrameError::BadMagic(_))
    ));
    // A clean end between frames is fine; inside one it is named.
    let mut part = header(b"SD", 4, 0, 10);
    part.extend_from_slice(b"abc");
    assert_eq!(
        codec.decode_eof(&mut part).unwrap_err(),
        FrameError::Truncated(19)
    );
    let mut empty = BytesMut::new();
    assert_eq!(codec.decode_eof(&mut empty).unwrap(), None);
    // The encoder refuses what the decoder would.
    let big = Frame::new(Kind::Data, 1, vec![0u8; MAX_PAYLOAD + 1]);
    assert!(matches!(
        FrameCodec.encode(big, &mut BytesMut::new()),
        Err(FrameError::TooLarge(_))
    ));
}

/// The writer the pipes use: frames of every size (coalesced small ones, large ones
/// written from their own buffer) arrive intact and in order through a narrow pipe that
/// forces partial writes.
#[tokio::test]
async fn frame_writer_output_decodes_to_the_same_frames() {
    use futures::StreamExt;
    let mut r = Rng::new();
    let frames: Vec<Frame> = (0..200).map(|_| random_frame(&mut r)).collect();
    let (a, b) = tokio::io::duplex(7 << 10);
    let sent = frames.clone();
    let writer = tokio::spawn(async move {
        let mut w = driver_ipc::frame::FrameWriter::new(a);
        for (i, f) in sent.into_iter().enumerate() {
            if i % 3 == 0 {
                w.send(f).await.unwrap();
            } else {
                w.feed(f).await.unwrap();
            }
        }
        w.flush().await.unwrap();
    });
    let got: Vec<Frame> = tokio_util::codec::FramedRead::new(b, FrameCodec)
        .map(|f| f.unwrap())
        .collect()
        .await;
    writer.await.unwrap();
    assert_eq!(got, frames);
}

/// A send abandoned half way (its future dropped, as when a request is cancelled) is
/// completed by the next call: the reader never sees half a frame.
#[tokio::test]
async fn an_abandoned_send_is_finished_by_the_next() {
    use futures::StreamExt;
    let (a, b) = tokio::io::duplex(4 << 10);
    let mut w = driver_ipc::frame::FrameWriter::new(a);
    let big = Frame::new(Kind::Data, 1, vec![9u8; 300 << 10]);
    let abandoned =
        tokio::time::timeout(std::time::Duration::from_millis(50), w.send(big.clone())).await;
    assert!(
        abandoned.is_err(),
        "the pipe is full: the send must still be pending"
    );
    let next = Frame::new(Kind::End, 1, Bytes::new());
    let reader = tokio::spawn(async move {
        tokio_util::codec::FramedRead::new(b, FrameCodec)
            .take(2)
            .map(|f| f.unwrap())
            .collect::<Vec<_>>()
            .await
    });
    w.send(next.clone()).await.unwrap();
    assert_eq!(reader.await.unwrap(), vec![big, next]);
}
