//! `put`, `get`/`cat`, and the streamed object copy `sync` uses. Nothing is buffered
//! whole: data moves in chunks of [`CHUNK`], and an interrupted upload is cancelled, so
//! the destination never shows a partial object.

use std::path::Path;

use driver_api::{Driver, Writer};
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::interrupt::Interrupt;
use crate::{App, CliError, CliResult};

/// Bytes read from a local source per driver write.
pub const CHUNK: usize = 1 << 20;

/// Runs `fut` unless Ctrl-C comes first.
async fn or_interrupt<T>(
    interrupt: &Interrupt,
    fut: impl std::future::Future<Output = CliResult<T>>,
) -> CliResult<T> {
    tokio::select! {
        biased;
        () = interrupt.wait() => Err(CliError::Interrupted),
        r = fut => r,
    }
}

/// Cancels `w` after a failure or interrupt, keeping the first error.
async fn abandon(w: &mut Writer, err: CliError) -> CliError {
    if let Err(e) = w.cancel().await {
        tracing::warn!(error = %e, "cancelling the upload failed");
    }
    err
}

/// Feeds `chunks` into `w` and commits; cancels on error or Ctrl-C. Returns the size.
async fn feed<E>(
    w: &mut Writer,
    mut chunks: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    bar: &ProgressBar,
    interrupt: &Interrupt,
) -> CliResult<u64>
where
    CliError: From<E>,
{
    let result = or_interrupt(interrupt, async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            let n = chunk.len() as u64;
            w.write(chunk).await?;
            bar.inc(n);
        }
        w.commit().await?;
        Ok(w.size())
    })
    .await;
    match result {
        Ok(n) => {
            w.close().await?;
            Ok(n)
        }
        Err(e) => Err(abandon(w, e).await),
    }
}

/// `put SRC DST`.
pub async fn put(app: &App, src: &str, dst: &str) -> CliResult {
    let d = app.driver().await?;
    let (input, total): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) = if src == "-" {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(src)
            .await
            .map_err(|e| CliError::io(src, e))?;
        let len = f.metadata().await.map_err(|e| CliError::io(src, e))?.len();
        (Box::new(f), Some(len))
    };
    let bar = app.progress.bytes(total, dst);
    let mut w = d.writer(dst, false).await?;
    let what = src.to_owned();
    let chunks = tokio_util::io::ReaderStream::with_capacity(input, CHUNK)
        .map(|r| r.map_err(|e| CliError::io(what.clone(), e)));
    let res = feed(&mut w, chunks, &bar, &app.interrupt).await;
    bar.finish_and_clear();
    res.map(|_| ())
}

/// `get SRC [DST|-]` and `cat`.
pub async fn get(app: &App, src: &str, dst: Option<&str>, offset: u64) -> CliResult {
    let d = app.driver().await?;
    let info = d.stat(src).await?;
    if info.is_dir {
        return Err(CliError::Failed(format!("{src} is a directory")));
    }
    let stream = d.reader(src, offset).await?;
    let remaining = info.size.saturating_sub(offset);
    let target = match dst {
        Some(t) => t.to_owned(),
        None => info.path.file_name().unwrap_or("download").to_owned(),
    };
    if target == "-" {
        let bar = app.progress.bytes(Some(remaining), src);
        let res = drain(stream, tokio::io::stdout(), "stdout", &bar, &app.interrupt).await;
        bar.finish_and_clear();
        return res.map(|_| ());
    }
    // Write next to the target and rename when complete: an interrupted download never
    // leaves a truncated file under the real name.
    let part = format!("{target}.storagectl-part");
    let file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| CliError::io(&part, e))?;
    let bar = app.progress.bytes(Some(remaining), src);
    let res = drain(stream, file, &part, &bar, &app.interrupt).await;
    bar.finish_and_clear();
    match res {
        Ok(_) => tokio::fs::rename(&part, &target)
            .await
            .map_err(|e| CliError::io(&target, e)),
        Err(e) => {
            let _ = tokio::fs::remove_file(Path::new(&part)).await;
            Err(e)
        }
    }
}

/// Copies a driver stream into a local writer.
async fn drain(
    mut stream: driver_api::ByteStream,
    mut out: impl tokio::io::AsyncWrite + Unpin,
    what: &str,
    bar: &ProgressBar,
    interrupt: &Interrupt,
) -> CliResult<u64> {
    or_interrupt(interrupt, async {
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            match out.write_all(&chunk).await {
                Ok(()) => {}
                // `storagectl cat big | head`: the reader went away, which is fine.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(n),
                Err(e) => return Err(CliError::io(what, e)),
            }
            n += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        match out.flush().await {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(n),
            Err(e) => Err(CliError::io(what, e)),
        }
    })
    .await
}

/// Streams `src` of one driver into `dst` of another and commits; on failure or Ctrl-C the
/// upload is cancelled. Returns the bytes copied.
pub async fn copy_between(
    from: &Driver,
    src: &str,
    to: &Driver,
    dst: &str,
    bar: &ProgressBar,
    interrupt: &Interrupt,
) -> CliResult<u64> {
    let stream = from.reader(src, 0).await?;
    let mut w = to.writer(dst, false).await?;
    feed(&mut w, stream, bar, interrupt).await
}
