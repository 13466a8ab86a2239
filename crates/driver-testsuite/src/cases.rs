//! The conformance cases. Each is a plain async function over a [`Ctx`]; the
//! [`conformance_tests!`](crate::conformance_tests) macro makes one test of each.
//!
//! Cases named after Distribution's `testsuites.go` / `walk_test.go` keep their intent
//! (see `../shared/notes/conformance-cases.md` in the design notes); the rest are ours.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use driver_api::{
    walk, Driver, FileInfo, RedirectRequest, StorageDriver, StorageError, StoragePath, WalkControl,
    WalkFn, WalkOptions, WriterStatus,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::data::{random_bytes, random_name, random_path, DataGen};
use crate::{CaseResult, Ctx};

// ---------------------------------------------------------------------------------------
// helpers

/// Asserts `res` is `PathNotFound` for `path` and that the message names the driver.
#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(ctx: &Ctx, res: Result<T, StorageError>, path: &str) {
    match res {
        Err(StorageError::PathNotFound { driver, path: p }) => {
            assert_eq!(driver, ctx.name());
            assert_eq!(p, path, "PathNotFound names the path asked for");
            let msg = StorageError::PathNotFound { driver, path: p }.to_string();
            assert!(msg.contains(ctx.name()), "message {msg:?} names the driver");
        }
        other => panic!("expected PathNotFound for {path}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid_path<T: std::fmt::Debug>(ctx: &Ctx, res: Result<T, StorageError>, path: &str) {
    match res {
        Err(e @ StorageError::InvalidPath { .. }) => {
            assert_eq!(e.driver(), ctx.name());
            assert!(e.to_string().contains(ctx.name()), "{e} names the driver");
        }
        other => panic!("expected InvalidPath for {path:?}, got {other:?}"),
    }
}

async fn read_stream(driver: &Driver, path: &str, offset: u64) -> Result<Bytes, StorageError> {
    let mut s = driver.reader(path, offset).await?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = s.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(buf.freeze())
}

/// `list(path)` as plain strings, for comparisons.
async fn list_names(driver: &Driver, path: &str) -> Result<Vec<String>, StorageError> {
    Ok(driver
        .list(path)
        .await?
        .iter()
        .map(|p| p.to_string())
        .collect())
}

async fn write_read(ctx: &Ctx, contents: Bytes) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, contents.clone()).await?;
    let got = ctx.driver.get_content(&path).await?;
    assert_eq!(got.len(), contents.len());
    assert!(got == contents, "content read back differs");
    Ok(())
}

async fn write_read_stream(ctx: &Ctx, contents: Bytes) -> CaseResult {
    let path = random_path(2);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write(contents.clone()).await?;
    assert_eq!(w.size(), contents.len() as u64);
    w.commit().await?;
    w.close().await?;
    assert_eq!(w.size(), contents.len() as u64);
    let got = read_stream(&ctx.driver, &path, 0).await?;
    assert!(got == contents, "streamed content read back differs");
    Ok(())
}

fn concat(parts: &[&Bytes]) -> Bytes {
    let mut b = BytesMut::new();
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}

// ---------------------------------------------------------------------------------------
// Distribution's testsuites.go

/// The root is usable at once, and shows what is written into it.
pub async fn root_exists(ctx: Ctx) -> CaseResult {
    assert!(
        ctx.driver.list("/").await?.is_empty(),
        "a fresh root lists empty"
    );
    ctx.driver.put_content("/a", "x").await?;
    let entries = ctx.driver.list("/").await?;
    assert_eq!(entries.len(), 1);
    Ok(())
}

/// Every path of the grammar round-trips.
pub async fn valid_paths(ctx: Ctx) -> CaseResult {
    let contents = random_bytes(64);
    for p in [
        "/a",
        "/2",
        "/aa",
        "/a.a",
        "/0-9/abcdefg",
        "/abcdefg/z.75",
        "/abc/1.2.3.4.5-6_zyx/123.z/4",
        "/docker/docker-registry",
        "/123.abc",
        "/abc./abc",
        "/.abc",
        "/a--b",
        "/a-.b",
        "/_.abc",
        "/Docker/docker-registry",
        "/Abc/Cba",
    ] {
        ctx.driver.put_content(p, contents.clone()).await?;
        assert!(
            ctx.driver.get_content(p).await? == contents,
            "{p} round-trips"
        );
        ctx.driver.delete(p).await?;
    }
    Ok(())
}

/// Paths outside the grammar are rejected for writes and reads.
pub async fn invalid_paths(ctx: Ctx) -> CaseResult {
    for p in [
        "",
        "/",
        "abc",
        "123.abc",
        "//bcd",
        "/abc_123/",
        "/..",
        "/.",
        "/a/../b",
        "/a/./b",
    ] {
        assert_invalid_path(&ctx, ctx.driver.put_content(p, "x").await, p);
        assert_invalid_path(&ctx, ctx.driver.get_content(p).await, p);
    }
    Ok(())
}

/// One byte.
pub async fn write_read1(ctx: Ctx) -> CaseResult {
    write_read(&ctx, Bytes::from_static(b"a")).await
}
/// A two-byte UTF-8 character.
pub async fn write_read2(ctx: Ctx) -> CaseResult {
    write_read(&ctx, Bytes::from_static(b"\xc3\x9f")).await
}
/// 32 random bytes.
pub async fn write_read3(ctx: Ctx) -> CaseResult {
    write_read(&ctx, random_bytes(32)).await
}
/// 1 MiB of random bytes.
pub async fn write_read4(ctx: Ctx) -> CaseResult {
    write_read(&ctx, random_bytes(1 << 20)).await
}
/// Bytes that are not UTF-8.
pub async fn write_read_non_utf8(ctx: Ctx) -> CaseResult {
    write_read(&ctx, Bytes::from_static(&[0x80, 0x80, 0x80, 0x80])).await
}

/// A smaller put replaces a larger one entirely.
pub async fn truncate(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, random_bytes(1 << 20)).await?;
    let small = random_bytes(1024);
    ctx.driver.put_content(&path, small.clone()).await?;
    assert!(ctx.driver.get_content(&path).await? == small);
    Ok(())
}

/// Reading a missing file is `PathNotFound`.
pub async fn read_nonexistent(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    assert_not_found(&ctx, ctx.driver.get_content(&path).await, &path);
    Ok(())
}

/// One byte through writer and reader.
pub async fn write_read_streams1(ctx: Ctx) -> CaseResult {
    write_read_stream(&ctx, Bytes::from_static(b"a")).await
}
/// A two-byte character through writer and reader.
pub async fn write_read_streams2(ctx: Ctx) -> CaseResult {
    write_read_stream(&ctx, Bytes::from_static(b"\xc3\x9f")).await
}
/// 32 random bytes through writer and reader.
pub async fn write_read_streams3(ctx: Ctx) -> CaseResult {
    write_read_stream(&ctx, random_bytes(32)).await
}
/// 1 MiB through writer and reader.
pub async fn write_read_streams4(ctx: Ctx) -> CaseResult {
    write_read_stream(&ctx, random_bytes(1 << 20)).await
}
/// Non-UTF-8 bytes through writer and reader.
pub async fn write_read_streams_non_utf8(ctx: Ctx) -> CaseResult {
    write_read_stream(&ctx, Bytes::from_static(&[0x80, 0x80, 0x80, 0x80])).await
}

/// A large stream (`Sizes::large_stream`) written in uneven chunks, read back and compared
/// by SHA-256; memory stays at one chunk on each side.
pub async fn write_read_large_streams(ctx: Ctx) -> CaseResult {
    let total = ctx.sizes.large_stream;
    let path = random_path(2);
    let mut gen = DataGen::random();
    let mut hash_in = Sha256::new();
    let mut w = ctx.driver.writer(&path, false).await?;
    let mut written = 0u64;
    let mut step = 0u64;
    while written < total {
        // 1 MiB plus an odd amount, so writes straddle every chunk and part boundary.
        let n = ((1 << 20) + (step * 7919) % 65_537).min(total - written) as usize;
        step += 1;
        let chunk = gen.bytes(n);
        hash_in.update(&chunk);
        w.write(chunk).await?;
        written += n as u64;
    }
    assert_eq!(w.size(), total);
    w.commit().await?;
    w.close().await?;

    let mut hash_out = Sha256::new();
    let mut read = 0u64;
    let mut s = ctx.driver.reader(&path, 0).await?;
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        read += chunk.len() as u64;
        hash_out.update(&chunk);
    }
    assert_eq!(read, total);
    assert_eq!(
        hash_in.finalize(),
        hash_out.finalize(),
        "digest of what was read back"
    );
    assert_eq!(ctx.driver.stat(&path).await?.size, total);
    Ok(())
}

/// Readers at offsets return the right tails; past the end is `InvalidOffset`.
pub async fn reader_with_offset(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let (c1, c2, c3) = (random_bytes(32), random_bytes(32), random_bytes(32));
    let all = concat(&[&c1, &c2, &c3]);
    ctx.driver.put_content(&path, all.clone()).await?;
    assert!(read_stream(&ctx.driver, &path, 0).await? == all);
    assert!(read_stream(&ctx.driver, &path, 32).await? == concat(&[&c2, &c3]));
    assert!(read_stream(&ctx.driver, &path, 64).await? == c3);
    assert!(
        read_stream(&ctx.driver, &path, 96).await?.is_empty(),
        "offset == size is empty"
    );
    assert!(read_stream(&ctx.driver, &path, 95).await? == all.slice(95..));
    match ctx.driver.reader(&path, 97).await {
        Err(e @ StorageError::InvalidOffset { .. }) => {
            let StorageError::InvalidOffset {
                ref driver,
                path: ref p,
                offset,
                size,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(driver, ctx.name());
            assert_eq!(p, &path);
            assert_eq!((offset, size), (97, 96));
            assert!(e.to_string().contains(ctx.name()));
        }
        other => panic!("expected InvalidOffset, got {:?}", other.map(|_| ())),
    }
    Ok(())
}

async fn continue_stream_append(ctx: &Ctx, chunk: usize) -> CaseResult {
    let path = random_path(2);
    let (c1, c2, c3) = (
        random_bytes(chunk),
        random_bytes(chunk),
        random_bytes(chunk),
    );
    let n = chunk as u64;

    let mut w = ctx.driver.writer(&path, false).await?;
    w.write(c1.clone()).await?;
    assert_eq!(w.size(), n);
    w.close().await?;
    assert_eq!(w.size(), n);

    let mut w = ctx.driver.writer(&path, true).await?;
    assert_eq!(
        w.size(),
        n,
        "resumed upload reports the bytes already written"
    );
    w.write(c2.clone()).await?;
    assert_eq!(w.size(), 2 * n);
    w.close().await?;
    assert_eq!(w.size(), 2 * n);

    let mut w = ctx.driver.writer(&path, true).await?;
    assert_eq!(w.size(), 2 * n);
    w.write(c3.clone()).await?;
    assert_eq!(w.size(), 3 * n);
    w.commit().await?;
    w.close().await?;

    let got = ctx.driver.get_content(&path).await?;
    assert_eq!(got.len(), 3 * chunk);
    assert!(got == concat(&[&c1, &c2, &c3]), "resumed upload content");
    Ok(())
}

/// Close and resume twice with 10 MiB chunks.
pub async fn continue_stream_append_large(ctx: Ctx) -> CaseResult {
    continue_stream_append(&ctx, 10 << 20).await
}
/// Close and resume twice with 32-byte chunks.
pub async fn continue_stream_append_small(ctx: Ctx) -> CaseResult {
    continue_stream_append(&ctx, 32).await
}

/// A reader on a missing file is `PathNotFound`, at any offset.
pub async fn read_nonexistent_stream(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    assert_not_found(&ctx, ctx.driver.reader(&path, 0).await.map(|_| ()), &path);
    assert_not_found(&ctx, ctx.driver.reader(&path, 64).await.map(|_| ()), &path);
    Ok(())
}

async fn append_after_empty(ctx: &Ctx, path: &str) -> CaseResult {
    assert_eq!(ctx.driver.stat(path).await?.size, 0);
    assert!(read_stream(&ctx.driver, path, 0).await?.is_empty());
    let more = random_bytes(32);
    let mut w = ctx.driver.writer(path, true).await?;
    assert_eq!(w.size(), 0);
    w.write(more.clone()).await?;
    w.commit().await?;
    w.close().await?;
    assert_eq!(w.size(), 32);
    assert!(read_stream(&ctx.driver, path, 0).await? == more);
    Ok(())
}

/// Commit an empty upload, then append to it.
pub async fn write_zero_byte_stream_then_append(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.commit().await?;
    w.close().await?;
    assert_eq!(w.size(), 0);
    append_after_empty(&ctx, &path).await
}

/// Put empty content, then append to it.
pub async fn write_zero_byte_content_then_append(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, Bytes::new()).await?;
    append_after_empty(&ctx, &path).await
}

/// Listing: missing directory, root, intermediate directories, 50 sorted children.
pub async fn list(ctx: Ctx) -> CaseResult {
    let root = format!("/{}", random_name(8));
    let missing = format!("{root}/{}", random_name(8));
    assert_not_found(&ctx, ctx.driver.list(&missing).await, &missing);

    let parent = format!("{root}/{}", random_name(8));
    let mut expected = BTreeSet::new();
    for i in 0..50 {
        // Unique by construction (Go's version collides now and then).
        let p = format!("{parent}/{}{i:02}", random_name(6));
        ctx.driver.put_content(&p, random_bytes(16)).await?;
        expected.insert(p);
    }
    assert_eq!(list_names(&ctx.driver, "/").await?, vec![root.clone()]);
    assert_eq!(list_names(&ctx.driver, &root).await?, vec![parent.clone()]);
    let got = list_names(&ctx.driver, &parent).await?;
    let want: Vec<String> = expected.into_iter().collect();
    assert_eq!(got, want, "children, full paths, sorted");
    Ok(())
}

/// Move: content at the destination, source gone.
pub async fn move_file(ctx: Ctx) -> CaseResult {
    let (src, dst) = (random_path(2), random_path(2));
    let contents = random_bytes(32);
    ctx.driver.put_content(&src, contents.clone()).await?;
    ctx.driver.rename(&src, &dst).await?;
    assert!(ctx.driver.get_content(&dst).await? == contents);
    assert_not_found(&ctx, ctx.driver.get_content(&src).await, &src);
    Ok(())
}

/// Move over an existing file replaces it.
pub async fn move_overwrite(ctx: Ctx) -> CaseResult {
    let (src, dst) = (random_path(2), random_path(2));
    let (a, b) = (random_bytes(32), random_bytes(64));
    ctx.driver.put_content(&src, a.clone()).await?;
    ctx.driver.put_content(&dst, b).await?;
    ctx.driver.rename(&src, &dst).await?;
    assert!(ctx.driver.get_content(&dst).await? == a);
    assert_not_found(&ctx, ctx.driver.get_content(&src).await, &src);
    Ok(())
}

/// Writes `data` at `path` through a writer, 1 MiB a write (so the driver's parts,
/// segments or blocks are used), and commits.
async fn write_large(driver: &Driver, path: &str, data: &Bytes) -> Result<(), StorageError> {
    let mut w = driver.writer(path, false).await?;
    for chunk in data.chunks(1 << 20) {
        w.write(data.slice_ref(chunk)).await?;
    }
    w.commit().await
}

/// A move of a file large enough to take a driver's multipart path (`Sizes::large_object`,
/// which a driver's harness keeps above its copy thresholds): byte-exact at the
/// destination, the source gone, `stat` giving the size.
pub async fn move_large_file(ctx: Ctx) -> CaseResult {
    let (src, dst) = (random_path(2), random_path(2));
    let data = DataGen::random().bytes(ctx.sizes.large_object + 4321);
    write_large(&ctx.driver, &src, &data).await?;
    ctx.driver.rename(&src, &dst).await?;
    assert_eq!(ctx.driver.stat(&dst).await?.size, data.len() as u64);
    assert!(
        read_stream(&ctx.driver, &dst, 0).await? == data,
        "moved bytes differ"
    );
    assert_not_found(&ctx, ctx.driver.stat(&src).await, &src);
    Ok(())
}

/// Writing over and moving onto a large (segmented, multipart) file: a small file
/// replaces a large one, a large one a small one, a small file moved onto a large one
/// and a large one onto a large one replace it; each read back byte-exact, with the size
/// `stat` gives. The tree, with an upload parked in it, then deletes cleanly: no upload
/// state is left where the driver lists uploads (`uploads`; state it keeps elsewhere,
/// such as Swift's segments, is each driver's own tests' to check).
pub async fn overwrite_and_move_onto_large(ctx: Ctx) -> CaseResult {
    let dir = format!("/{}", random_name(8));
    let (p, q, r) = (format!("{dir}/p"), format!("{dir}/q"), format!("{dir}/r"));
    let large = DataGen::random().bytes(ctx.sizes.large_object + 17);
    let other = DataGen::random().bytes(ctx.sizes.large_object / 2 + 5);
    let check = |path: String, want: Bytes| {
        let d = ctx.driver.clone();
        async move {
            assert_eq!(d.stat(&path).await?.size, want.len() as u64, "{path}: size");
            assert!(d.get_content(&path).await? == want, "{path}: content");
            Ok::<_, StorageError>(())
        }
    };
    // Large, then small over it, then large over the small one.
    write_large(&ctx.driver, &p, &large).await?;
    ctx.driver.put_content(&p, "small now").await?;
    check(p.clone(), Bytes::from_static(b"small now")).await?;
    write_large(&ctx.driver, &p, &other).await?;
    check(p.clone(), other.clone()).await?;
    // A small file moved onto a large one, then a large one onto a large one.
    ctx.driver.put_content(&q, "moved small").await?;
    ctx.driver.rename(&q, &p).await?;
    check(p.clone(), Bytes::from_static(b"moved small")).await?;
    write_large(&ctx.driver, &q, &large).await?;
    write_large(&ctx.driver, &r, &other).await?;
    ctx.driver.rename(&q, &r).await?;
    check(r.clone(), large.clone()).await?;
    assert_not_found(&ctx, ctx.driver.stat(&q).await, &q);
    // An upload closed (parked) over the large file: the tree delete takes its state too.
    let mut w = ctx.driver.writer(&r, false).await?;
    w.write(other.slice(..other.len() / 2)).await?;
    w.close().await?;
    ctx.driver.delete(&dir).await?;
    assert_not_found(&ctx, ctx.driver.stat(&dir).await, &dir);
    match ctx.driver.uploads(&dir).await {
        Ok(left) => assert!(
            left.is_empty(),
            "upload state left after the tree delete: {left:?}"
        ),
        Err(StorageError::Unsupported { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Every file a walk reports has the size `stat` gives and a modification time within
/// 2 s of `stat`'s (never the epoch): a small file, a large written file, one moved and
/// one replaced by a small file. (Listings are where services show large objects
/// differently: at a manifest's size, at 0, with times in other formats.)
pub async fn walk_sizes_and_times_match_stat(ctx: Ctx) -> CaseResult {
    let dir = format!("/{}", random_name(8));
    let large = DataGen::random().bytes(ctx.sizes.large_object + 3);
    ctx.driver
        .put_content(&format!("{dir}/small"), "small")
        .await?;
    write_large(&ctx.driver, &format!("{dir}/large"), &large).await?;
    write_large(&ctx.driver, &format!("{dir}/src"), &large).await?;
    ctx.driver
        .rename(&format!("{dir}/src"), &format!("{dir}/sub/moved"))
        .await?;
    write_large(&ctx.driver, &format!("{dir}/shrunk"), &large).await?;
    ctx.driver
        .put_content(&format!("{dir}/shrunk"), "x")
        .await?;
    let files: Vec<FileInfo> = ctx
        .driver
        .walk_collect(&dir)
        .await?
        .into_iter()
        .filter(|f| !f.is_dir)
        .collect();
    let names: Vec<String> = files.iter().map(|f| f.path.to_string()).collect();
    let want: Vec<String> = ["large", "shrunk", "small", "sub/moved"]
        .iter()
        .map(|n| format!("{dir}/{n}"))
        .collect();
    assert_eq!(names, want, "walked files");
    let recent = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for f in &files {
        let st = ctx.driver.stat(f.path.as_str()).await?;
        assert_eq!(f.size, st.size, "{}: walk and stat sizes", f.path);
        let apart = f
            .mod_time
            .duration_since(st.mod_time)
            .unwrap_or_else(|e| e.duration());
        assert!(
            apart <= Duration::from_secs(2),
            "{}: walk and stat times {apart:?} apart",
            f.path
        );
        assert!(
            f.mod_time > recent,
            "{}: walk time {:?}",
            f.path,
            f.mod_time
        );
    }
    ctx.driver.delete(&dir).await?;
    Ok(())
}

/// Moving a missing file fails and leaves the destination alone.
pub async fn move_nonexistent(ctx: Ctx) -> CaseResult {
    let (src, dst) = (random_path(2), random_path(2));
    let contents = random_bytes(32);
    ctx.driver.put_content(&dst, contents.clone()).await?;
    assert_not_found(&ctx, ctx.driver.rename(&src, &dst).await, &src);
    assert!(ctx.driver.get_content(&dst).await? == contents);
    Ok(())
}

/// Moving from below a file fails.
pub async fn move_invalid(ctx: Ctx) -> CaseResult {
    ctx.driver.put_content("/notadir", "this is a file").await?;
    let res = ctx.driver.rename("/notadir/foo", "/notadir/bar").await;
    assert!(res.is_err(), "moving below a file must fail");
    assert_eq!(
        &ctx.driver.get_content("/notadir").await?[..],
        b"this is a file"
    );
    Ok(())
}

/// Delete a file.
pub async fn delete(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, random_bytes(32)).await?;
    ctx.driver.delete(&path).await?;
    assert_not_found(&ctx, ctx.driver.get_content(&path).await, &path);
    Ok(())
}

/// A redirect URL, when offered, serves the content (GET) and its length (HEAD).
pub async fn redirect_url(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let contents = random_bytes(32);
    ctx.driver.put_content(&path, contents.clone()).await?;
    let Some(url) = ctx
        .driver
        .redirect_url(&RedirectRequest::get(), &path)
        .await?
    else {
        assert!(
            ctx.driver
                .redirect_url(&RedirectRequest::head(), &path)
                .await?
                .is_none(),
            "a driver that does not redirect GET does not redirect HEAD"
        );
        return Ok(());
    };
    let client = crate::http_client();
    let resp = client.get(&url).send().await?;
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    assert!(resp.bytes().await? == contents);
    let head = ctx
        .driver
        .redirect_url(&RedirectRequest::head(), &path)
        .await?
        .expect("a driver that redirects GET redirects HEAD");
    let resp = client.head(&head).send().await?;
    assert_eq!(resp.status().as_u16(), 200);
    let len = resp
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(len, Some(32));
    Ok(())
}

/// Deleting a missing path is `PathNotFound`.
pub async fn delete_nonexistent(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    assert_not_found(&ctx, ctx.driver.delete(&path).await, &path);
    Ok(())
}

/// Deleting a file leaves its siblings; deleting the folder removes all.
pub async fn delete_folder(ctx: Ctx) -> CaseResult {
    let dir = random_path(2);
    let files: Vec<String> = (0..3).map(|i| format!("{dir}/file{i}")).collect();
    let nested = format!("{dir}/sub/file");
    for f in files.iter().chain([&nested]) {
        ctx.driver.put_content(f, random_bytes(32)).await?;
    }
    ctx.driver.delete(&files[0]).await?;
    assert_not_found(&ctx, ctx.driver.get_content(&files[0]).await, &files[0]);
    ctx.driver.get_content(&files[1]).await?;
    ctx.driver.get_content(&files[2]).await?;
    ctx.driver.delete(&dir).await?;
    for f in files.iter().chain([&nested]) {
        assert_not_found(&ctx, ctx.driver.get_content(f).await, f);
    }
    assert_not_found(&ctx, ctx.driver.delete(&dir).await, &dir);
    Ok(())
}

/// Deleting `d/f` keeps `d/fsuffix`; deleting `d/d` keeps `d/dsuffix/f`.
pub async fn delete_only_deletes_subpaths(ctx: Ctx) -> CaseResult {
    let dir = random_path(1);
    let file = format!("{dir}/file");
    let file_suffix = format!("{dir}/filesuffix");
    let sub_file = format!("{dir}/dir/file");
    let sub_suffix_file = format!("{dir}/dirsuffix/file");
    for f in [&file, &file_suffix, &sub_file, &sub_suffix_file] {
        ctx.driver.put_content(f, random_bytes(32)).await?;
    }
    ctx.driver.delete(&file).await?;
    assert_not_found(&ctx, ctx.driver.get_content(&file).await, &file);
    ctx.driver.get_content(&file_suffix).await?;
    ctx.driver.delete(&format!("{dir}/dir")).await?;
    assert_not_found(&ctx, ctx.driver.get_content(&sub_file).await, &sub_file);
    ctx.driver.get_content(&sub_suffix_file).await?;
    Ok(())
}

/// Stat of missing paths, files, directories; mod_time moves forward on overwrite.
pub async fn stat_call(ctx: Ctx) -> CaseResult {
    let dir = random_path(2);
    let file = format!("{dir}/{}", random_name(8));
    let contents = random_bytes(4096 + 17);
    assert_not_found(&ctx, ctx.driver.stat(&dir).await, &dir);
    assert_not_found(&ctx, ctx.driver.stat(&file).await, &file);

    ctx.driver.put_content(&file, contents.clone()).await?;
    let fi = ctx.driver.stat(&file).await?;
    assert_eq!(fi.path.as_str(), file);
    assert_eq!(fi.size, contents.len() as u64);
    assert!(!fi.is_dir);
    let di = ctx.driver.stat(&dir).await?;
    assert_eq!(di.path.as_str(), dir);
    assert_eq!(di.size, 0);
    assert!(di.is_dir);

    // Overwrite until the backend's clock granularity shows a later mod_time (Go sleeps a
    // fixed 15 s); it must never go backwards.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ctx.driver.put_content(&file, contents.clone()).await?;
        let later = ctx.driver.stat(&file).await?;
        assert!(later.mod_time >= fi.mod_time, "mod_time went backwards");
        if later.mod_time > fi.mod_time {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mod_time did not advance within 10 s"
        );
    }

    // The root always exists, as a directory.
    assert!(
        ctx.driver.stat("/").await?.is_dir,
        "the root is a directory"
    );
    Ok(())
}

/// The last put wins.
pub async fn put_content_multiple_times(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, random_bytes(4096)).await?;
    let second = random_bytes(2048);
    ctx.driver.put_content(&path, second.clone()).await?;
    assert!(ctx.driver.get_content(&path).await? == second);
    Ok(())
}

/// Ten concurrent readers at random offsets each get the exact tail.
pub async fn concurrent_stream_reads(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let size = ctx.sizes.concurrent_read_file;
    let contents = random_bytes(size);
    ctx.driver.put_content(&path, contents.clone()).await?;
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let (driver, path, contents) = (ctx.driver.clone(), path.clone(), contents.clone());
        // Spread offsets over the whole file, including both ends.
        let offset = match i {
            0 => 0,
            9 => size as u64,
            _ => (crate::data::random_u64() % size as u64).max(1),
        };
        tasks.push(tokio::spawn(async move {
            let got = read_stream(&driver, &path, offset).await?;
            assert!(got == contents.slice(offset as usize..), "tail at {offset}");
            Ok::<_, StorageError>(())
        }));
    }
    for t in tasks {
        t.await.expect("reader task")?;
    }
    Ok(())
}

/// Many concurrent writer + reader round trips complete with the right content.
pub async fn concurrent_file_streams(ctx: Ctx) -> CaseResult {
    let mut tasks = Vec::new();
    for _ in 0..ctx.sizes.concurrent_streams {
        let driver = ctx.driver.clone();
        let size = ctx.sizes.concurrent_stream_size;
        tasks.push(tokio::spawn(async move {
            let path = random_path(2);
            let contents = random_bytes(size);
            let mut w = driver.writer(&path, false).await?;
            for chunk in contents.chunks(1 << 20) {
                w.write(Bytes::copy_from_slice(chunk)).await?;
            }
            w.commit().await?;
            let got = read_stream(&driver, &path, 0).await?;
            assert!(got == contents, "stream {path} round-trips");
            Ok::<_, StorageError>(())
        }));
    }
    for t in tasks {
        t.await.expect("stream task")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Distribution's walk_test.go

const WALK_TREE: [&str; 8] = [
    "/folder1/file1",
    "/folder2/file1",
    "/folder3/subfolder1/subfolder1/file1",
    "/folder3/subfolder2/subfolder1/file1",
    "/folder4/file1",
    "/folder1-v2/folder1/file1",
    "/folder1-v2/folder1/file2",
    "/folder1-v2/folder1/file3",
];

/// The whole tree in walk order: component-wise lexical, a directory before its contents.
const WALK_ORDER: [&str; 19] = [
    "/folder1",
    "/folder1/file1",
    "/folder1-v2",
    "/folder1-v2/folder1",
    "/folder1-v2/folder1/file1",
    "/folder1-v2/folder1/file2",
    "/folder1-v2/folder1/file3",
    "/folder2",
    "/folder2/file1",
    "/folder3",
    "/folder3/subfolder1",
    "/folder3/subfolder1/subfolder1",
    "/folder3/subfolder1/subfolder1/file1",
    "/folder3/subfolder2",
    "/folder3/subfolder2/subfolder1",
    "/folder3/subfolder2/subfolder1/file1",
    "/folder4",
    "/folder4/file1",
    // Sentinel: the tree is built under a prefix, see `walk_tree`.
    "",
];

/// Builds [`WALK_TREE`] under a random prefix; returns the prefix.
async fn walk_tree(ctx: &Ctx) -> Result<String, StorageError> {
    let prefix = random_path(1);
    for f in WALK_TREE {
        ctx.driver
            .put_content(&format!("{prefix}{f}"), random_bytes(8))
            .await?;
    }
    Ok(prefix)
}

fn expected(prefix: &str, order: &[&str]) -> Vec<String> {
    order
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

async fn walk_paths<F>(
    ctx: &Ctx,
    root: &str,
    opts: WalkOptions,
    mut f: F,
) -> Result<Vec<String>, StorageError>
where
    F: FnMut(&FileInfo) -> WalkControl + Send,
{
    let mut seen = Vec::new();
    ctx.driver
        .walk(root, &opts, |fi| {
            seen.push(fi.path.to_string());
            f(fi)
        })
        .await?;
    Ok(seen)
}

/// Every file and directory, in order, with correct metadata.
pub async fn walk_order(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let mut infos = Vec::new();
    ctx.driver
        .walk(&prefix, &WalkOptions::default(), |fi| {
            infos.push(fi.clone());
            WalkControl::Continue
        })
        .await?;
    let got: Vec<String> = infos.iter().map(|fi| fi.path.to_string()).collect();
    assert_eq!(got, expected(&prefix, &WALK_ORDER));
    for fi in &infos {
        let is_file = WALK_TREE
            .iter()
            .any(|f| format!("{prefix}{f}") == fi.path.as_str());
        assert_eq!(fi.is_dir, !is_file, "{}", fi.path);
        assert_eq!(fi.size, if is_file { 8 } else { 0 }, "{}", fi.path);
    }
    // Walking the root covers the same entries under the prefix directory.
    let from_root =
        walk_paths(&ctx, "/", WalkOptions::default(), |_| WalkControl::Continue).await?;
    assert_eq!(from_root[0], prefix);
    assert_eq!(&from_root[1..], &got[..]);
    Ok(())
}

/// Skipping a directory does not enter it; the walk goes on after it.
pub async fn walk_skip_dir(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let skip = format!("{prefix}/folder3/subfolder1");
    let got = walk_paths(&ctx, &prefix, WalkOptions::default(), |fi| {
        if fi.path.as_str() == skip {
            WalkControl::SkipDir
        } else {
            WalkControl::Continue
        }
    })
    .await?;
    let want: Vec<String> = expected(&prefix, &WALK_ORDER)
        .into_iter()
        .filter(|p| !p.starts_with(&format!("{skip}/")))
        .collect();
    assert_eq!(got, want);
    Ok(())
}

/// Skip-dir on a file is the same as continue (Distribution's semantics): its siblings are
/// still visited.
pub async fn walk_skip_dir_on_file(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let at = format!("{prefix}/folder1-v2/folder1/file1");
    let got = walk_paths(&ctx, &prefix, WalkOptions::default(), |fi| {
        if fi.path.as_str() == at {
            WalkControl::SkipDir
        } else {
            WalkControl::Continue
        }
    })
    .await?;
    assert_eq!(got, expected(&prefix, &WALK_ORDER));
    Ok(())
}

/// Stop ends the walk at once.
pub async fn walk_stop(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let stop = format!("{prefix}/folder2");
    let got = walk_paths(&ctx, &prefix, WalkOptions::default(), |fi| {
        if fi.path.as_str() == stop {
            WalkControl::Stop
        } else {
            WalkControl::Continue
        }
    })
    .await?;
    let all = expected(&prefix, &WALK_ORDER);
    let idx = all
        .iter()
        .position(|p| *p == stop)
        .expect("stop path in tree");
    assert_eq!(got, all[..=idx].to_vec());
    Ok(())
}

fn after_hint(all: Vec<String>, hint: &str) -> Vec<String> {
    all.into_iter()
        .filter(|p| driver_api::cmp_paths(p, hint).is_gt())
        .collect()
}

/// The start-after hint is exclusive: the hint and everything before it are not reported.
pub async fn walk_start_after_hint(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let hint = format!("{prefix}/folder2/file1");
    let hint_path = ctx.driver.path(&hint)?;
    let got = walk_paths(&ctx, &prefix, WalkOptions::start_after(hint_path), |_| {
        WalkControl::Continue
    })
    .await?;
    let want = after_hint(expected(&prefix, &WALK_ORDER), &hint);
    assert_eq!(want[0], format!("{prefix}/folder3"));
    assert_eq!(got, want);
    Ok(())
}

/// A hint deep in the tree: its ancestors are entered, not reported.
pub async fn walk_start_after_hint_deep(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let hint = format!("{prefix}/folder3/subfolder1/subfolder1/file1");
    let got = walk_paths(
        &ctx,
        &prefix,
        WalkOptions::start_after(ctx.driver.path(&hint)?),
        |_| WalkControl::Continue,
    )
    .await?;
    let want = after_hint(expected(&prefix, &WALK_ORDER), &hint);
    assert_eq!(want[0], format!("{prefix}/folder3/subfolder2"));
    assert_eq!(got, want);
    Ok(())
}

/// Wraps a driver to stage what a case cannot cause through the contract: `list`
/// deleting one listed file before returning it (as if it were removed concurrently
/// between list and stat), or a writer's commit failing (after the upload was closed, so
/// that there is something to clean up).
#[derive(Debug)]
struct Meddler {
    inner: Arc<dyn StorageDriver>,
    victim: Option<StoragePath>,
    fail_commit: bool,
}

/// A writer whose `commit` closes the upload and fails.
struct FailingCommit(Box<dyn driver_api::FileWriter>);

#[driver_api::async_trait]
impl driver_api::FileWriter for FailingCommit {
    async fn write(&mut self, data: Bytes) -> driver_api::Result<()> {
        self.0.write(data).await
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
    async fn close(&mut self) -> driver_api::Result<()> {
        self.0.close().await
    }
    async fn cancel(&mut self) -> driver_api::Result<()> {
        self.0.cancel().await
    }
    async fn commit(&mut self) -> driver_api::Result<()> {
        self.0.close().await?;
        Err(StorageError::Unsupported {
            driver: "meddler".into(),
            operation: driver_api::Operation::Commit,
            feature: "commit (staged failure)".into(),
            path: None,
        })
    }
}

#[driver_api::async_trait]
impl StorageDriver for Meddler {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn get_content(&self, p: &StoragePath) -> driver_api::Result<Bytes> {
        self.inner.get_content(p).await
    }
    async fn put_content(&self, p: &StoragePath, c: Bytes) -> driver_api::Result<()> {
        self.inner.put_content(p, c).await
    }
    async fn reader(&self, p: &StoragePath, o: u64) -> driver_api::Result<driver_api::ByteStream> {
        self.inner.reader(p, o).await
    }
    async fn writer(
        &self,
        p: &StoragePath,
        a: bool,
    ) -> driver_api::Result<Box<dyn driver_api::FileWriter>> {
        let w = self.inner.writer(p, a).await?;
        Ok(if self.fail_commit {
            Box::new(FailingCommit(w))
        } else {
            w
        })
    }
    async fn stat(&self, p: &StoragePath) -> driver_api::Result<FileInfo> {
        self.inner.stat(p).await
    }
    async fn list(&self, p: &StoragePath) -> driver_api::Result<Vec<StoragePath>> {
        let listed = self.inner.list(p).await?;
        if let Some(victim) = self.victim.as_ref().filter(|v| listed.contains(v)) {
            self.inner.delete(victim).await?;
        }
        Ok(listed)
    }
    async fn rename(&self, s: &StoragePath, d: &StoragePath) -> driver_api::Result<()> {
        self.inner.rename(s, d).await
    }
    async fn delete(&self, p: &StoragePath) -> driver_api::Result<()> {
        self.inner.delete(p).await
    }
}

/// The generic walk skips a file removed between list and stat.
pub async fn walk_file_removed(ctx: Ctx) -> CaseResult {
    let prefix = walk_tree(&ctx).await?;
    let victim = ctx.driver.path(&format!("{prefix}/folder2/file1"))?;
    let wrapper = Meddler {
        inner: ctx.driver.inner().clone(),
        victim: Some(victim.clone()),
        fail_commit: false,
    };
    let mut seen = Vec::new();
    let f: &mut WalkFn<'_> = &mut |fi: &FileInfo| {
        seen.push(fi.path.to_string());
        WalkControl::Continue
    };
    walk::walk_fallback(
        &wrapper,
        &ctx.driver.path(&prefix)?,
        &WalkOptions::default(),
        f,
    )
    .await?;
    let want: Vec<String> = expected(&prefix, &WALK_ORDER)
        .into_iter()
        .filter(|p| p != victim.as_str())
        .collect();
    assert_eq!(seen, want);
    Ok(())
}

/// Walking a missing directory is `PathNotFound`.
pub async fn walk_missing_root(ctx: Ctx) -> CaseResult {
    let missing = random_path(2);
    let res = walk_paths(&ctx, &missing, WalkOptions::default(), |_| {
        WalkControl::Continue
    })
    .await;
    assert_not_found(&ctx, res, &missing);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// ours

/// Traversal and malformed paths are rejected by every operation, and nothing is written.
pub async fn traversal_paths_rejected(ctx: Ctx) -> CaseResult {
    let ok = "/ok";
    for p in [
        "/..",
        "/.",
        "/a/../b",
        "/a/./b",
        "/../etc/passwd",
        "/a/..",
        "../a",
        "/a/%2e%2e",
        "/a\\..\\b",
        "/a/b/",
        "//etc",
        "/a//b",
        "/a b",
        "/a\0b",
        "/\u{2e}\u{2e}/x",
        "/a/\u{ff0e}\u{ff0e}",
    ] {
        let d = &ctx.driver;
        assert_invalid_path(&ctx, d.put_content(p, "x").await, p);
        assert_invalid_path(&ctx, d.get_content(p).await, p);
        assert_invalid_path(&ctx, d.reader(p, 0).await.map(|_| ()), p);
        assert_invalid_path(&ctx, d.writer(p, false).await.map(|_| ()), p);
        assert_invalid_path(&ctx, d.writer(p, true).await.map(|_| ()), p);
        assert_invalid_path(&ctx, d.stat(p).await, p);
        assert_invalid_path(&ctx, d.list(p).await, p);
        assert_invalid_path(&ctx, d.delete(p).await, p);
        assert_invalid_path(&ctx, d.rename(p, ok).await, p);
        assert_invalid_path(&ctx, d.rename(ok, p).await, p);
        assert_invalid_path(&ctx, d.redirect_url(&RedirectRequest::get(), p).await, p);
        assert_invalid_path(
            &ctx,
            d.walk(p, &WalkOptions::default(), |_| WalkControl::Continue)
                .await,
            p,
        );
    }
    assert!(
        ctx.driver.list("/").await?.is_empty(),
        "nothing was written"
    );
    Ok(())
}

/// The root is a directory: file operations on it are `InvalidPath`.
pub async fn root_rejected_for_file_ops(ctx: Ctx) -> CaseResult {
    let d = &ctx.driver;
    assert_invalid_path(&ctx, d.put_content("/", "x").await, "/");
    assert_invalid_path(&ctx, d.get_content("/").await, "/");
    assert_invalid_path(&ctx, d.reader("/", 0).await.map(|_| ()), "/");
    assert_invalid_path(&ctx, d.writer("/", false).await.map(|_| ()), "/");
    assert_invalid_path(&ctx, d.delete("/").await, "/");
    assert_invalid_path(&ctx, d.rename("/", "/x").await, "/");
    d.list("/").await?;
    Ok(())
}

#[track_caller]
fn assert_finished<T: std::fmt::Debug>(
    ctx: &Ctx,
    res: Result<T, StorageError>,
    status: WriterStatus,
) {
    match res {
        Err(e @ StorageError::WriterFinished { .. }) => {
            let StorageError::WriterFinished { status: s, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*s, status);
            assert!(e.to_string().contains(ctx.name()), "{e} names the driver");
        }
        other => panic!("expected WriterFinished({status}), got {other:?}"),
    }
}

/// After commit: write and commit fail, cancel fails, close is a no-op; content intact.
pub async fn writer_misuse_after_commit(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write("abc").await?;
    w.commit().await?;
    assert_finished(&ctx, w.write("more").await, WriterStatus::Committed);
    assert_finished(&ctx, w.commit().await, WriterStatus::Committed);
    assert_finished(&ctx, w.cancel().await, WriterStatus::Committed);
    w.close().await?;
    assert_eq!(&ctx.driver.get_content(&path).await?[..], b"abc");
    Ok(())
}

/// After cancel: write and commit fail; nothing is readable.
pub async fn writer_misuse_after_cancel(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write("abc").await?;
    w.cancel().await?;
    assert_finished(&ctx, w.write("more").await, WriterStatus::Cancelled);
    assert_finished(&ctx, w.commit().await, WriterStatus::Cancelled);
    w.close().await?;
    assert_not_found(&ctx, ctx.driver.get_content(&path).await, &path);
    Ok(())
}

/// After a failed commit: write and commit are refused, close is a no-op, cancel is
/// allowed and leaves no upload behind (the path is not resumable); the previous content
/// is intact.
pub async fn writer_cancel_after_failed_commit(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, "old").await?;
    let meddler = Driver::new(Meddler {
        inner: ctx.driver.inner().clone(),
        victim: None,
        fail_commit: true,
    });
    let mut w = meddler.writer(&path, false).await?;
    w.write("new content").await?;
    let e = w.commit().await.expect_err("the staged commit fails");
    assert!(e.to_string().contains("staged failure"), "{e}");
    assert_finished(&ctx, w.write("more").await, WriterStatus::CommitFailed);
    assert_finished(&ctx, w.commit().await, WriterStatus::CommitFailed);
    w.cancel().await?;
    w.close().await?;
    assert_eq!(&ctx.driver.get_content(&path).await?[..], b"old");
    match ctx.driver.writer(&path, true).await {
        Err(StorageError::Unsupported { .. }) => {}
        Ok(w) => panic!(
            "the cancelled upload is still resumable ({} bytes)",
            w.size()
        ),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// After close: write, commit and a second close fail; the upload stays resumable.
pub async fn writer_misuse_after_close(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write("abc").await?;
    w.close().await?;
    assert_finished(&ctx, w.write("more").await, WriterStatus::Closed);
    assert_finished(&ctx, w.commit().await, WriterStatus::Closed);
    assert_finished(&ctx, w.close().await, WriterStatus::Closed);
    let mut w = ctx.driver.writer(&path, true).await?;
    assert_eq!(w.size(), 3);
    w.commit().await?;
    assert_eq!(&ctx.driver.get_content(&path).await?[..], b"abc");
    Ok(())
}

/// Skips a case that needs a second instance to see the first one's uploads.
fn needs_shared_state(ctx: &Ctx) -> CaseResult {
    if ctx.driver.capabilities().shared_state {
        Ok(())
    } else {
        ctx.skip("state is private to one driver instance (capabilities.shared_state = false)")
    }
}

/// An upload closed by one instance is resumed by a brand-new instance on the same root.
pub async fn resume_from_new_instance(ctx: Ctx) -> CaseResult {
    needs_shared_state(&ctx)?;
    let path = random_path(2);
    let other = ctx.new_instance().await?;
    let data =
        crate::checks::resume_from_new_instance(&ctx.driver, &other, &path, 3 << 20, 1 << 20).await;
    assert!(
        ctx.driver.get_content(&path).await? == data,
        "the first instance sees the commit"
    );
    Ok(())
}

/// An upload closed with nothing written is resumed, closed and resumed again, each time
/// by a new instance, and committed by yet another.
pub async fn resume_twice_from_new_instances(ctx: Ctx) -> CaseResult {
    needs_shared_state(&ctx)?;
    let path = random_path(2);
    let instance = || async { ctx.new_instance().await.expect("a new instance") };
    crate::checks::resume_twice(instance, &path, 1 << 20).await;
    assert_eq!(
        ctx.driver.get_content(&path).await?.len(),
        (1 << 20) + 99,
        "the first instance sees the commit"
    );
    Ok(())
}

/// A cancelled upload leaves nothing: no file, no directory, nothing to resume.
pub async fn cancel_leaves_nothing(ctx: Ctx) -> CaseResult {
    let dir = random_path(1);
    let path = format!("{dir}/sub/file");
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write(random_bytes(64 << 10)).await?;
    w.cancel().await?;
    assert_not_found(&ctx, ctx.driver.stat(&path).await, &path);
    assert_not_found(
        &ctx,
        ctx.driver.writer(&path, true).await.map(|_| ()),
        &path,
    );
    assert!(
        ctx.driver.list("/").await?.is_empty(),
        "no directory left behind"
    );

    // Cancelling a closed upload through a resumed writer also leaves nothing.
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write("abc").await?;
    w.close().await?;
    let mut w = ctx.driver.writer(&path, true).await?;
    w.cancel().await?;
    assert_not_found(
        &ctx,
        ctx.driver.writer(&path, true).await.map(|_| ()),
        &path,
    );
    assert!(
        ctx.driver.list("/").await?.is_empty(),
        "no directory left behind"
    );
    Ok(())
}

/// `uploads` lists closed uploads at or below a path (a sibling sharing a name prefix is
/// not below it), and `purge_upload` removes each and nothing else: committed content
/// stays, a purged upload is no longer resumable, and purging it again is fine. Drivers
/// that do not list uploads (`Unsupported`) skip it.
pub async fn uploads_listed_and_purged(ctx: Ctx) -> CaseResult {
    let dir = random_path(1);
    let fresh = format!("{dir}/a/file");
    let over = format!("{dir}/ab");
    ctx.driver.put_content(&over, "old").await?;
    for (path, data) in [(&fresh, random_bytes(64 << 10)), (&over, random_bytes(10))] {
        let mut w = ctx.driver.writer(path, false).await?;
        w.write(data).await?;
        w.close().await?;
    }
    let found = match ctx.driver.uploads(&dir).await {
        Err(StorageError::Unsupported { .. }) => {
            return ctx.skip("the driver does not list uploads (uploads is Unsupported)")
        }
        other => other?,
    };
    let paths = |v: &[driver_api::Leftover]| {
        v.iter()
            .map(|l| l.path.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        paths(&found),
        BTreeSet::from([fresh.clone(), over.clone()]),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .all(|l| l.kind == driver_api::LeftoverKind::Parked),
        "closed uploads are parked: {found:?}"
    );
    let below_a = ctx.driver.uploads(&format!("{dir}/a")).await?;
    assert_eq!(
        paths(&below_a),
        BTreeSet::from([fresh.clone()]),
        "{below_a:?}"
    );
    assert!(ctx.driver.uploads(&random_path(1)).await?.is_empty());

    for l in &below_a {
        ctx.driver.purge_upload(l).await?;
    }
    let left = ctx.driver.uploads(&dir).await?;
    assert_eq!(paths(&left), BTreeSet::from([over.clone()]), "{left:?}");
    for l in &left {
        ctx.driver.purge_upload(l).await?;
        ctx.driver.purge_upload(l).await?;
    }
    assert!(ctx.driver.uploads(&dir).await?.is_empty());
    assert_eq!(&ctx.driver.get_content(&over).await?[..], b"old");
    assert_not_found(
        &ctx,
        ctx.driver.writer(&fresh, true).await.map(|_| ()),
        &fresh,
    );
    assert_eq!(list_names(&ctx.driver, &dir).await?, vec![over.clone()]);
    Ok(())
}

/// Uncommitted bytes are not readable, and do not disturb committed content.
pub async fn uncommitted_upload_invisible(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let fresh = random_path(2);
    let committed = random_bytes(100);
    ctx.driver.put_content(&path, committed.clone()).await?;
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write(random_bytes(1000)).await?;
    w.close().await?;
    assert!(ctx.driver.get_content(&path).await? == committed);
    assert_eq!(ctx.driver.stat(&path).await?.size, 100);

    let mut w = ctx.driver.writer(&fresh, false).await?;
    w.write("pending").await?;
    w.close().await?;
    assert_not_found(&ctx, ctx.driver.get_content(&fresh).await, &fresh);
    assert_not_found(&ctx, ctx.driver.stat(&fresh).await, &fresh);
    assert_not_found(&ctx, ctx.driver.reader(&fresh, 0).await.map(|_| ()), &fresh);
    Ok(())
}

/// Resuming where there is no upload and no file is `PathNotFound`.
pub async fn append_to_missing_path(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    assert_not_found(
        &ctx,
        ctx.driver.writer(&path, true).await.map(|_| ()),
        &path,
    );
    Ok(())
}

/// Appending to committed, non-empty content is refused and loses nothing.
pub async fn append_to_committed_content(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    ctx.driver.put_content(&path, "committed").await?;
    match ctx.driver.writer(&path, true).await {
        Err(e) => assert!(e.to_string().contains(ctx.name()), "{e} names the driver"),
        Ok(_) => panic!("append to committed non-empty content must fail"),
    }
    assert_eq!(&ctx.driver.get_content(&path).await?[..], b"committed");
    Ok(())
}

/// Every error a driver returns names it, in the variant and in the message.
pub async fn errors_name_driver(ctx: Ctx) -> CaseResult {
    let d = &ctx.driver;
    let missing = random_path(2);
    let file = random_path(2);
    d.put_content(&file, "abc").await?;
    let mut errors: Vec<StorageError> = vec![
        d.get_content(&missing).await.unwrap_err(),
        d.reader(&missing, 0).await.map(|_| ()).unwrap_err(),
        d.reader(&file, 4).await.map(|_| ()).unwrap_err(),
        d.stat(&missing).await.unwrap_err(),
        d.list(&missing).await.unwrap_err(),
        d.delete(&missing).await.unwrap_err(),
        d.rename(&missing, &file).await.unwrap_err(),
        d.writer(&missing, true).await.map(|_| ()).unwrap_err(),
        d.get_content("bad").await.unwrap_err(),
        d.put_content("/", "x").await.unwrap_err(),
    ];
    let mut w = d.writer(&file, false).await?;
    w.cancel().await?;
    errors.push(w.write("x").await.unwrap_err());
    for e in errors {
        assert_eq!(e.driver(), ctx.name(), "{e:?}");
        assert!(e.to_string().contains(ctx.name()), "{e} names the driver");
    }
    Ok(())
}

/// Directories exist exactly while something lives below them.
pub async fn implicit_directories(ctx: Ctx) -> CaseResult {
    let base = random_path(1);
    let file = format!("{base}/b/c/d");
    ctx.driver.put_content(&file, "x").await?;
    for dir in [base.clone(), format!("{base}/b"), format!("{base}/b/c")] {
        let fi = ctx.driver.stat(&dir).await?;
        assert!(fi.is_dir, "{dir} is a directory");
        assert_eq!(fi.size, 0);
    }
    assert_eq!(
        ctx.driver.list(&base).await?,
        vec![ctx.driver.path(&format!("{base}/b"))?]
    );
    assert_eq!(
        ctx.driver.list(&format!("{base}/b/c")).await?,
        vec![ctx.driver.path(&file)?]
    );
    assert!(!ctx.driver.stat(&file).await?.is_dir);
    ctx.driver.delete(&file).await?;
    assert_not_found(&ctx, ctx.driver.stat(&base).await, &base);
    assert!(ctx.driver.list("/").await?.is_empty());
    Ok(())
}

/// A directory read as a file, and a file listed as a directory, are `PathNotFound`
/// (there is no such file, no such directory); a file moved onto itself stays whole.
pub async fn files_and_directories_not_confused(ctx: Ctx) -> CaseResult {
    let dir = random_path(1);
    let file = format!("{dir}/f");
    ctx.driver.put_content(&file, "content").await?;
    assert_not_found(&ctx, ctx.driver.get_content(&dir).await, &dir);
    assert_not_found(&ctx, ctx.driver.reader(&dir, 0).await.map(drop), &dir);
    assert_not_found(&ctx, ctx.driver.list(&file).await, &file);
    ctx.driver.rename(&file, &file).await?;
    assert_eq!(&ctx.driver.get_content(&file).await?[..], b"content");
    assert_eq!(ctx.driver.list(&dir).await?, vec![ctx.driver.path(&file)?]);
    Ok(())
}

/// Concurrent put_content on one path: every read sees one whole version.
pub async fn concurrent_put_content_never_torn(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let a = Bytes::from(vec![b'a'; 1 << 20]);
    let b = Bytes::from(vec![b'b'; (1 << 20) + 4099]);
    ctx.driver.put_content(&path, a.clone()).await?;
    let mut writers = Vec::new();
    for i in 0..4 {
        let (d, p, a, b) = (ctx.driver.clone(), path.clone(), a.clone(), b.clone());
        writers.push(tokio::spawn(async move {
            for j in 0..20 {
                d.put_content(
                    &p,
                    if (i + j) % 2 == 0 {
                        a.clone()
                    } else {
                        b.clone()
                    },
                )
                .await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    let mut reads = 0;
    while !writers.iter().all(|w| w.is_finished()) || reads < 20 {
        let got = ctx.driver.get_content(&path).await?;
        assert!(got == a || got == b, "torn read of {} bytes", got.len());
        reads += 1;
    }
    for w in writers {
        w.await.expect("writer task")?;
    }
    Ok(())
}

/// Dropping an operation midway (a timed-out request) never leaves a torn file, and the
/// path stays usable.
pub async fn cancellation_safety(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let old = random_bytes(1 << 20);
    let new = random_bytes(16 << 20);
    ctx.driver.put_content(&path, old.clone()).await?;
    for us in [0u64, 50, 500, 5_000] {
        let _ = tokio::time::timeout(
            Duration::from_micros(us),
            ctx.driver.put_content(&path, new.clone()),
        )
        .await;
        let got = ctx.driver.get_content(&path).await?;
        assert!(
            got == old || got == new,
            "torn file after a cancelled put ({} bytes)",
            got.len()
        );
    }
    // A timed-out put may still land later (blocking work and in-flight requests are not
    // aborted), so the rest uses a path of its own.
    let path = random_path(2);
    ctx.driver.put_content(&path, old.clone()).await?;
    // A reader dropped mid-stream and a writer dropped without close leave the path usable.
    let mut r = ctx.driver.reader(&path, 0).await?;
    let _ = r.next().await;
    drop(r);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write(random_bytes(1000)).await?;
    drop(w);
    let mut w = ctx.driver.writer(&path, false).await?;
    w.write("fresh").await?;
    w.commit().await?;
    assert_eq!(&ctx.driver.get_content(&path).await?[..], b"fresh");
    Ok(())
}

/// The AsyncWrite / AsyncRead adapters round-trip through small buffers.
pub async fn async_adapters(ctx: Ctx) -> CaseResult {
    let path = random_path(2);
    let contents = random_bytes((3 << 20) + 123);
    let mut w = ctx.driver.writer(&path, false).await?.into_async_write();
    for chunk in contents.chunks(8 << 10) {
        w.write_all(chunk).await?;
    }
    w.shutdown().await?;
    let mut r = ctx.driver.async_reader(&path, 5).await?;
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).await?;
    assert!(buf[..] == contents[5..]);
    assert!(ctx.driver.read_to_end(&path).await? == contents);
    let copy = random_path(2);
    assert_eq!(ctx.driver.copy(&path, &copy).await?, contents.len() as u64);
    assert!(ctx.driver.get_content(&copy).await? == contents);
    Ok(())
}

/// A fresh driver's root lists empty, walks empty and stats as a directory (size 0).
pub async fn list_root_of_fresh_driver(ctx: Ctx) -> CaseResult {
    assert!(ctx.driver.list("/").await?.is_empty());
    let root = ctx.driver.stat("/").await?;
    assert!(
        root.is_dir && root.size == 0,
        "the root is a directory: {root:?}"
    );
    let walked = ctx.driver.walk_collect("/").await?;
    assert!(walked.is_empty());
    Ok(())
}

/// Listing a directory of 1,000 files returns each once, sorted (past any page size).
pub async fn list_many_files(ctx: Ctx) -> CaseResult {
    let dir = random_path(1);
    let mut want = Vec::new();
    let puts = futures::stream::iter(0..1000).map(|i| {
        let p = format!("{dir}/f{i:04}");
        let d = ctx.driver.clone();
        async move { d.put_content(&p, Bytes::new()).await.map(|_| p) }
    });
    let mut puts = puts.buffer_unordered(32);
    while let Some(p) = puts.next().await {
        want.push(p?);
    }
    want.sort();
    assert_eq!(list_names(&ctx.driver, &dir).await?, want);
    Ok(())
}

/// A directory containing an entry of its own name (`.../c/c`) resolves correctly (Go's
/// inmemory driver returned the wrong node here).
pub async fn same_name_nesting(ctx: Ctx) -> CaseResult {
    let base = random_path(1);
    let deep = format!("{base}/c/c/c");
    ctx.driver.put_content(&deep, "deep").await?;
    ctx.driver.put_content(&format!("{base}/c/x"), "x").await?;
    assert!(ctx.driver.stat(&format!("{base}/c")).await?.is_dir);
    assert!(ctx.driver.stat(&format!("{base}/c/c")).await?.is_dir);
    assert!(!ctx.driver.stat(&deep).await?.is_dir);
    let c = format!("{base}/c");
    assert_not_found(&ctx, ctx.driver.get_content(&c).await, &c);
    assert_eq!(
        list_names(&ctx.driver, &c).await?,
        vec![format!("{base}/c/c"), format!("{base}/c/x")]
    );
    assert_eq!(&ctx.driver.get_content(&deep).await?[..], b"deep");
    ctx.driver.delete(&format!("{base}/c/c")).await?;
    assert_eq!(
        &ctx.driver.get_content(&format!("{base}/c/x")).await?[..],
        b"x"
    );
    Ok(())
}
