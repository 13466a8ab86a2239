//! Just enough HTTP/1.1 for the fault proxy: reading heads, telling where a body ends
//! (RFC 9112 §6), and streaming a message through an [`Out`] that can cut it short, flip a
//! byte of its body, or drop it.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest head accepted (request or status line and headers).
pub(super) const MAX_HEAD: usize = 64 << 10;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 << 10;
/// Bytes read at once.
const READ: usize = 64 << 10;
/// What [`Out`] xors into the byte it corrupts.
const FLIP: u8 = 0x01;

/// Why a message stopped before its end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The [`Out`]'s byte budget ran out; the bytes within it were written.
    Cut,
    /// Reading, writing or parsing failed, or the peer closed mid-message.
    Broken,
}

/// A buffered reader of one side of a connection.
pub(super) struct Reader<R> {
    pub(super) inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(super) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(READ),
        }
    }

    /// Bytes read but not yet taken.
    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads more into the buffer: `Ok(0)` at the end of the stream. Cancel-safe.
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ);
        self.inner.read_buf(&mut self.buf).await
    }

    /// The next head, from its first line to the empty line (inclusive); `None` if the
    /// stream ends (or fails) before a byte of one.
    pub(super) async fn head(&mut self) -> Result<Option<Bytes>, Stop> {
        let mut scanned = 0;
        loop {
            // Empty lines before a request line are to be ignored (RFC 9112 §2.2).
            while self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
                scanned = 0;
            }
            if let Some(end) = find(self.buf.get(scanned..).unwrap_or_default(), b"\r\n\r\n") {
                return Ok(Some(self.buf.split_to(scanned + end + 4).freeze()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Stop::Broken);
            }
            scanned = self.buf.len().saturating_sub(3);
            match self.fill().await {
                Ok(0) | Err(_) if self.buf.is_empty() => return Ok(None),
                Ok(0) | Err(_) => return Err(Stop::Broken),
                Ok(_) => {}
            }
        }
    }

    /// The next line, CRLF included.
    pub(super) async fn line(&mut self) -> Result<Bytes, Stop> {
        let mut scanned = 0;
        loop {
            if let Some(end) = find(self.buf.get(scanned..).unwrap_or_default(), b"\r\n") {
                return Ok(self.buf.split_to(scanned + end + 2).freeze());
            }
            if self.buf.len() > MAX_LINE {
                return Err(Stop::Broken);
            }
            scanned = self.buf.len().saturating_sub(1);
            match self.fill().await {
                Ok(0) | Err(_) => return Err(Stop::Broken),
                Ok(_) => {}
            }
        }
    }

    /// Up to `max` bytes: what is buffered, else what one read brings; empty at the end of
    /// the stream.
    pub(super) async fn some(&mut self, max: u64) -> Result<Bytes, Stop> {
        if self.buf.is_empty() && self.fill().await.is_err() {
            return Err(Stop::Broken);
        }
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        Ok(self.buf.split_to(n).freeze())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed head: its first line and its header fields in order.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) line: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    /// Parses `raw` (ending in CRLF CRLF); `None` if it is not a well-formed head.
    pub(super) fn parse(raw: &[u8]) -> Option<Head> {
        // Every line then ends in CR.
        let text = raw.strip_suffix(b"\n\r\n")?;
        let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r"));
        let first = lines.next()??;
        if first.is_empty() || first.iter().any(|&b| b == b'\r' || b == 0) {
            return None;
        }
        let mut headers = Vec::new();
        for line in lines {
            let line = line?;
            // No obsolete line folding, no bare CR, no NUL.
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                return None;
            }
            if line.iter().any(|&b| b == b'\r' || b == 0) {
                return None;
            }
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            let value = value.get(1..).unwrap_or_default();
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return None;
            }
            let value = value.trim_ascii();
            headers.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
        Some(Head {
            line: String::from_utf8_lossy(first).into_owned(),
            headers,
        })
    }

    /// Every value of header `name` (any case), comma-separated lists split.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// Whether header `name` lists `token` (any case).
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).any(|v| v.eq_ignore_ascii_case(token))
    }

    /// `Some(true)` if the last transfer coding is `chunked`, `Some(false)` if it is
    /// something else, `None` without `Transfer-Encoding`.
    fn chunked(&self) -> Option<bool> {
        self.values("transfer-encoding")
            .last()
            .map(|last| last.eq_ignore_ascii_case("chunked"))
    }

    /// The `Content-Length`: `Ok(None)` without one, `Err` if malformed or conflicting.
    fn content_length(&self) -> Result<Option<u64>, ()> {
        let mut length = None;
        for v in self.values("content-length") {
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = v.parse().map_err(|_| ())?;
            if length.is_some_and(|l| l != n) {
                return Err(());
            }
            length = Some(n);
        }
        Ok(length)
    }

    /// The request line's method, target and whether its version is HTTP/1.x; `None` for
    /// a malformed line or another version.
    pub(super) fn request_line(&self) -> Option<(&str, &str)> {
        let mut parts = self.line.split(' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        let ok = parts.next().is_none()
            && !method.is_empty()
            && method.bytes().all(is_tchar)
            && !target.is_empty()
            && matches!(version, "HTTP/1.1" | "HTTP/1.0");
        ok.then_some((method, target))
    }

    /// The status line's code; `None` for a malformed line or another version.
    pub(super) fn status(&self) -> Option<u16> {
        let rest = self
            .line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| self.line.strip_prefix("HTTP/1.0 "))?;
        let code = rest.get(..3)?;
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !(rest.len() == 3 || rest.get(3..4) == Some(" ")) {
            return None;
        }
        code.parse().ok().filter(|c| (100..1000).contains(c))
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Where a message's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the sender closes (responses only).
    Close,
}

impl Framing {
    /// The body's length, if framing tells it.
    pub(super) fn len(self) -> Option<u64> {
        match self {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked | Framing::Close => None,
        }
    }

    fn length(n: u64) -> Self {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    }

    /// A request's framing (RFC 9112 §6.3); `None` if it cannot be framed.
    pub(super) fn request(head: &Head) -> Option<Framing> {
        match head.chunked() {
            Some(true) => Some(Framing::Chunked),
            Some(false) => None,
            None => match head.content_length() {
                Ok(n) => Some(Framing::length(n.unwrap_or(0))),
                Err(()) => None,
            },
        }
    }

    /// The framing of a response with `status` to a request that was `HEAD` or not;
    /// `None` if it cannot be framed.
    pub(super) fn response(head: &Head, status: u16, head_request: bool) -> Option<Framing> {
        if head_request || status < 200 || status == 204 || status == 304 {
            return Some(Framing::Empty);
        }
        match head.chunked() {
            Some(true) => Some(Framing::Chunked),
            Some(false) => Some(Framing::Close),
            None => match head.content_length() {
                Ok(Some(n)) => Some(Framing::length(n)),
                Ok(None) => Some(Framing::Close),
                Err(()) => None,
            },
        }
    }
}

/// The size of a chunk from its size line (`1a2b;ext=v\r\n`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let size = line.split(|&b| b == b';').next()?.trim_ascii();
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

/// The writing end of one message (a request and its body, or a response's heads and body)
/// that can stop after a number of bytes and flip one body byte.
pub(super) struct Out<'a, W> {
    w: &'a mut W,
    /// Bytes written.
    sent: u64,
    /// Stop after this many bytes.
    cut: Option<u64>,
    /// The body byte to flip, while not yet flipped.
    corrupt: Option<u64>,
    /// Whether the body's length is unknown, so its last byte is held back (with the framing
    /// after it) until it is known whether the flip falls on it.
    hold: bool,
    held: Vec<u8>,
    /// Body bytes seen.
    body_pos: u64,
    /// The body byte flipped, once it is.
    pub(super) flipped: Option<u64>,
}

impl<'a, W: AsyncWrite + Unpin> Out<'a, W> {
    pub(super) fn new(w: &'a mut W) -> Self {
        Self {
            w,
            sent: 0,
            cut: None,
            corrupt: None,
            hold: false,
            held: Vec::new(),
            body_pos: 0,
            flipped: None,
        }
    }

    /// Bytes written so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// The byte budget, if one is set.
    pub(super) fn cut(&self) -> Option<u64> {
        self.cut
    }

    /// Stops the message after `after` bytes (counted from its start).
    pub(super) fn cut_at(&mut self, after: u64) {
        self.cut = Some(after);
    }

    /// Flips body byte `offset` of a body of `len` bytes (`None`: unknown): the last one if
    /// the body is shorter, none if it is empty.
    pub(super) fn corrupt_at(&mut self, offset: u64, len: Option<u64>) {
        match len {
            Some(0) => {}
            Some(n) => self.corrupt = Some(offset.min(n - 1)),
            None => {
                self.corrupt = Some(offset);
                self.hold = true;
            }
        }
    }

    async fn emit(&mut self, data: &[u8]) -> Result<(), Stop> {
        if let Some(cut) = self.cut {
            let room = cut.saturating_sub(self.sent);
            if data.len() as u64 > room {
                let part = data.get(..room as usize).unwrap_or_default();
                self.write(part).await?;
                return Err(Stop::Cut);
            }
        }
        self.write(data).await
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Stop> {
        self.w.write_all(data).await.map_err(|_| Stop::Broken)?;
        self.sent += data.len() as u64;
        Ok(())
    }

    /// Writes what is held back, as it is.
    async fn release(&mut self) -> Result<(), Stop> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.emit(&held).await
    }

    /// A head, or framing bytes (chunk-size lines, CRLFs, trailers).
    pub(super) async fn framing(&mut self, data: &[u8]) -> Result<(), Stop> {
        if self.held.is_empty() {
            self.emit(data).await
        } else {
            self.held.extend_from_slice(data);
            Ok(())
        }
    }

    /// Body bytes.
    pub(super) async fn body(&mut self, data: &[u8]) -> Result<(), Stop> {
        let Some((&last, most)) = data.split_last() else {
            return Ok(());
        };
        let start = self.body_pos;
        self.body_pos += data.len() as u64;
        if let Some(at) = self.corrupt {
            if at >= start && at - start < data.len() as u64 {
                let mut copy = data.to_vec();
                if let Some(b) = copy.get_mut((at - start) as usize) {
                    *b ^= FLIP;
                }
                self.corrupt = None;
                self.flipped = Some(at);
                self.release().await?;
                return self.emit(&copy).await;
            }
            if self.hold {
                self.release().await?;
                self.emit(most).await?;
                self.held.push(last);
                return Ok(());
            }
        }
        self.release().await?;
        self.emit(data).await
    }

    /// The body has ended: a flip still due falls on its last byte (held back).
    pub(super) async fn end_body(&mut self) -> Result<(), Stop> {
        if self.corrupt.take().is_some() {
            if let Some(b) = self.held.first_mut() {
                *b ^= FLIP;
                self.flipped = Some(self.body_pos.saturating_sub(1));
            }
        }
        self.release().await
    }
}

/// Passes a body framed by `framing` from `r` to `out`.
pub(super) async fn body<R, W>(
    r: &mut Reader<R>,
    out: &mut Out<'_, W>,
    framing: Framing,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Empty => {}
        Framing::Length(len) => exactly(r, out, len).await?,
        Framing::Close => loop {
            let data = r.some(u64::MAX).await?;
            if data.is_empty() {
                break;
            }
            out.body(&data).await?;
        },
        Framing::Chunked => loop {
            let line = r.line().await?;
            let size = chunk_size(&line).ok_or(Stop::Broken)?;
            out.framing(&line).await?;
            if size == 0 {
                out.end_body().await?;
                // Trailer fields, then the empty line.
                loop {
                    let line = r.line().await?;
                    out.framing(&line).await?;
                    if line.as_ref() == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            exactly(r, out, size).await?;
            let crlf = r.line().await?;
            if crlf.as_ref() != b"\r\n" {
                return Err(Stop::Broken);
            }
            out.framing(&crlf).await?;
        },
    }
    out.end_body().await
}

/// Passes exactly `len` body bytes.
async fn exactly<R, W>(r: &mut Reader<R>, out: &mut Out<'_, W>, mut len: u64) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while len > 0 {
        let data = r.some(len).await?;
        if data.is_empty() {
            return Err(Stop::Broken);
        }
        len -= data.len() as u64;
        out.body(&data).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_framing() {
        let h = Head::parse(b"PUT /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(h.request_line(), Some(("PUT", "/a?b")));
        assert_eq!(Framing::request(&h), Some(Framing::Length(12)));
        let h = Head::parse(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap();
        assert_eq!(Framing::request(&h), Some(Framing::Chunked));
        let h = Head::parse(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(Framing::request(&h), Some(Framing::Empty));
        let h = Head::parse(b"GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n").unwrap();
        assert_eq!(Framing::request(&h), None);
        let h = Head::parse(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").unwrap();
        assert_eq!(Framing::request(&h), None);
        let h = Head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(h.status(), Some(200));
        assert_eq!(Framing::response(&h, 200, false), Some(Framing::Length(5)));
        assert_eq!(Framing::response(&h, 200, true), Some(Framing::Empty));
        let h = Head::parse(b"HTTP/1.1 200\r\n\r\n").unwrap();
        assert_eq!(h.status(), Some(200));
        assert_eq!(Framing::response(&h, 200, false), Some(Framing::Close));
        assert_eq!(Framing::response(&h, 204, false), Some(Framing::Empty));
        for bad in [
            &b"GET / HTTP/1.1\r\n folded\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(
                Head::parse(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let h = Head::parse(b"GET / HTTP/2\r\n\r\n").unwrap();
        assert_eq!(h.request_line(), None);
        let h = Head::parse(b"HTTP/1.1 2000 OK\r\n\r\n").unwrap();
        assert_eq!(h.status(), None);
        assert_eq!(chunk_size(b"1aF;x=y\r\n"), Some(0x1af));
        assert_eq!(chunk_size(b"\r\n"), None);
        assert_eq!(chunk_size(b"fffffffffffffffff\r\n"), None);
    }

    async fn pass(
        input: &[u8],
        framing: Framing,
        set: impl FnOnce(&mut Out<'_, Vec<u8>>),
    ) -> (Vec<u8>, Result<(), Stop>, Option<u64>) {
        let mut r = Reader::new(input);
        let mut sink = Vec::new();
        let mut out = Out::new(&mut sink);
        set(&mut out);
        let res = body(&mut r, &mut out, framing).await;
        let flipped = out.flipped;
        (sink, res, flipped)
    }

    #[tokio::test]
    async fn streams_cuts_and_corrupts_bodies() {
        let chunked = b"3\r\nabc\r\n2;e=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
        let (got, res, _) = pass(chunked, Framing::Chunked, |_| {}).await;
        assert_eq!((got.as_slice(), res), (&chunked[..], Ok(())));
        // Past the end of a chunked body: the last data byte ('e') is flipped.
        let (got, res, flipped) = pass(chunked, Framing::Chunked, |o| o.corrupt_at(99, None)).await;
        assert_eq!(res, Ok(()));
        assert_eq!(flipped, Some(4));
        let want = b"3\r\nabc\r\n2;e=1\r\ndd\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(got, want);
        let (got, _, flipped) = pass(chunked, Framing::Chunked, |o| o.corrupt_at(1, None)).await;
        assert_eq!(flipped, Some(1));
        assert_eq!(got, b"3\r\nacc\r\n2;e=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n");
        let (got, res, _) = pass(chunked, Framing::Chunked, |o| o.cut_at(5)).await;
        assert_eq!((got.as_slice(), res), (&b"3\r\nab"[..], Err(Stop::Cut)));
        let (got, res, flipped) = pass(b"hello", Framing::Close, |o| o.corrupt_at(10, None)).await;
        assert_eq!(
            (got.as_slice(), res, flipped),
            (&b"helln"[..], Ok(()), Some(4))
        );
        let (got, res, flipped) =
            pass(b"hello!", Framing::Length(5), |o| o.corrupt_at(10, Some(5))).await;
        assert_eq!(
            (got.as_slice(), res, flipped),
            (&b"helln"[..], Ok(()), Some(4))
        );
        let (_, res, _) = pass(b"hel", Framing::Length(5), |_| {}).await;
        assert_eq!(res, Err(Stop::Broken));
        let (_, res, _) = pass(b"3\r\nabcX\r\n", Framing::Chunked, |_| {}).await;
        assert_eq!(res, Err(Stop::Broken));
    }
}
