//! `sync SRC_SPEC DST_SPEC`: copies a tree between two storages.
//!
//! One walk of each side plans the work. A source file is copied when the destination
//! has no file at the same relative path, or has one that is not known to be equal:
//!
//! * a different size is always a change;
//! * a content-addressed blob (`.../blobs/<algorithm>/<xx>/<digest>/data`, Distribution's
//!   layout) of the same size is equal: its path names its content;
//! * a small file (up to [`SMALL_FILE`] bytes: Distribution's links, `startedat` files,
//!   hash states) is read on both sides and compared, so a tag moved to another digest
//!   (a 71-byte `current/link` replaced by another 71-byte one) is carried;
//! * any other file of the same size is equal when the destination's copy is at least as
//!   new as the source's (`mod_time`): a copy made by an earlier run is newer than its
//!   source unless the source changed after it. `--checksum` compares such files byte for
//!   byte instead (both are read).
//!
//! `--delete` then removes destination files the source no longer has (off by default,
//! as `rclone copy` against `rclone sync`; never after a failed copy). Re-running after an
//! interruption or after changes at the source therefore carries exactly what changed.
//! Copies and comparisons run `jobs` at a time; each copy is streamed chunk by chunk and
//! committed only when complete; Ctrl-C cancels the uploads in flight.
//!
//! A spec is `PATH` (the configured storage), `FILE.yml:PATH` / `FILE.yaml:PATH` (the
//! storage section of another Distribution config, without environment overrides) or
//! `DRIVER:PATH` (a registered driver, parameters from `--src-param`/`--dst-param`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use driver_api::{ByteStream, Driver, StoragePath, WalkControl, WalkOptions};
use futures::StreamExt;
use serde_json::json;

use crate::config::StorageConfig;
use crate::output::human_bytes;
use crate::transfer::copy_between;
use crate::{emit, emit_json, App, CliError, CliResult};

/// Which storage a spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The configured storage (`--config`, environment, flags).
    Configured,
    /// Another Distribution config file.
    File(PathBuf),
    /// A driver by name.
    Driver(String),
}

/// A parsed `sync` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The storage.
    pub store: Store,
    /// The tree's root in it.
    pub path: String,
}

impl Spec {
    /// Parses a spec (see the module docs).
    pub fn parse(spec: &str) -> Result<Self, CliError> {
        let bad = |why: &str| CliError::Usage(format!("sync: {spec:?}: {why}"));
        let (store, path) = if let Some(i) = [".yml:", ".yaml:"]
            .iter()
            .filter_map(|ext| spec.find(ext).map(|i| i + ext.len() - 1))
            .min()
        {
            (Store::File(PathBuf::from(&spec[..i])), &spec[i + 1..])
        } else if spec.starts_with('/') {
            (Store::Configured, spec)
        } else {
            let (name, path) = spec
                .split_once(':')
                .ok_or_else(|| bad("expected /PATH, FILE.yml:/PATH or DRIVER:/PATH"))?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad("expected a driver name before ':'"));
            }
            (Store::Driver(name.to_owned()), path)
        };
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            return Err(bad("the path must start with '/'"));
        }
        Ok(Spec {
            store,
            path: path.to_owned(),
        })
    }
}

/// Arguments of `sync`.
pub struct SyncArgs<'a> {
    /// Source spec.
    pub src: &'a str,
    /// Destination spec.
    pub dst: &'a str,
    /// Parameters for a `DRIVER:` source.
    pub src_params: &'a [String],
    /// Parameters for a `DRIVER:` destination.
    pub dst_params: &'a [String],
    /// Concurrent copies.
    pub jobs: usize,
    /// Plan only.
    pub dry_run: bool,
    /// Compare every same-size file's content, not only small ones.
    pub checksum: bool,
    /// Remove destination files the source does not have.
    pub delete: bool,
}

/// Files up to this size are compared by content whenever both sides have them.
pub const SMALL_FILE: u64 = 64 * 1024;

/// A file found by a walk: its size and modification time.
#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    mod_time: SystemTime,
}

/// Why a file is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The destination has no file there.
    New,
    /// The destination's file differs.
    Changed,
}

/// What the plan does with one source file that the destination also has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Known equal without reading.
    Same,
    /// Known different without reading.
    Differs,
    /// Read both and compare.
    Compare,
}

/// True for Distribution's content-addressed blob data: `.../blobs/<alg>/<xx>/<hex>/data`
/// where `<xx>` is the first two characters of `<hex>`.
fn content_addressed(rel: &str) -> bool {
    let parts: Vec<&str> = rel.rsplit('/').take(5).collect();
    match parts.as_slice() {
        ["data", hex, xx, alg, "blobs"] => {
            hex.len() >= 32
                && hex.starts_with(xx)
                && xx.len() == 2
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
                && !alg.is_empty()
                && alg.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        _ => false,
    }
}

/// How a source file compares with the destination's file at the same path.
fn verdict(rel: &str, src: Entry, dst: Entry, checksum: bool) -> Verdict {
    if src.size != dst.size {
        Verdict::Differs
    } else if content_addressed(rel) {
        Verdict::Same
    } else if checksum || src.size <= SMALL_FILE {
        Verdict::Compare
    } else if dst.mod_time >= src.mod_time {
        Verdict::Same
    } else {
        Verdict::Differs
    }
}

/// True when the two streams deliver the same bytes (chunk boundaries may differ).
async fn same_stream(mut a: ByteStream, mut b: ByteStream) -> driver_api::Result<bool> {
    let (mut x, mut y) = (Bytes::new(), Bytes::new());
    loop {
        if x.is_empty() {
            x = match a.next().await.transpose()? {
                Some(c) => c,
                None => {
                    // `a` ended: equal only if `b` has nothing more either.
                    if !y.is_empty() {
                        return Ok(false);
                    }
                    while let Some(c) = b.next().await.transpose()? {
                        if !c.is_empty() {
                            return Ok(false);
                        }
                    }
                    return Ok(true);
                }
            };
            continue;
        }
        if y.is_empty() {
            y = match b.next().await.transpose()? {
                Some(c) => c,
                None => return Ok(false),
            };
            continue;
        }
        let n = x.len().min(y.len());
        if x[..n] != y[..n] {
            return Ok(false);
        }
        let _ = x.split_to(n);
        let _ = y.split_to(n);
    }
}

/// Reads `src` and `dst` and says whether they hold the same bytes.
async fn same_content(from: &Driver, src: &str, to: &Driver, dst: &str) -> CliResult<bool> {
    let (a, b) = futures::try_join!(from.reader(src, 0), to.reader(dst, 0))?;
    Ok(same_stream(a, b).await?)
}

async fn open(app: &App, spec: &Spec, params: &[String]) -> CliResult<Driver> {
    let config = match &spec.store {
        Store::Configured => app.config.clone(),
        Store::File(f) => StorageConfig::from_file(f)?,
        Store::Driver(name) => StorageConfig::from_flags(name, params)?,
    };
    Ok(config.create().await?)
}

/// Files below `root` by path relative to it; a missing root is empty.
async fn files_below(d: &Driver, root: &str) -> CliResult<Vec<(String, Entry)>> {
    let base = d.path(root)?;
    let mut out = Vec::new();
    let res = d
        .walk(root, &WalkOptions::default(), |fi| {
            if !fi.is_dir {
                if let Some(rel) = fi.path.strip_prefix(&base) {
                    let e = Entry {
                        size: fi.size,
                        mod_time: fi.mod_time,
                    };
                    out.push((rel.as_str().to_owned(), e));
                }
            }
            WalkControl::Continue
        })
        .await;
    match res {
        Ok(()) => Ok(out),
        Err(e) if e.is_not_found() => {
            // Maybe the root is itself a file.
            match d.stat(root).await {
                Ok(fi) if !fi.is_dir => {
                    let e = Entry {
                        size: fi.size,
                        mod_time: fi.mod_time,
                    };
                    Ok(vec![(String::from("/"), e)])
                }
                _ => Ok(out),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn join(root: &str, rel: &str) -> CliResult<String> {
    let root = StoragePath::new(root).map_err(|e| CliError::Usage(format!("sync: {e}")))?;
    let rel = StoragePath::new(rel).map_err(|e| CliError::Usage(format!("sync: {e}")))?;
    Ok(rel.under(&root).as_str().to_owned())
}

/// `sync`.
pub async fn command(app: &App, args: SyncArgs<'_>) -> CliResult {
    let (src_spec, dst_spec) = (Spec::parse(args.src)?, Spec::parse(args.dst)?);
    let jobs = args.jobs.max(1);
    let from = open(app, &src_spec, args.src_params).await?;
    let to = open(app, &dst_spec, args.dst_params).await?;

    let sources = files_below(&from, &src_spec.path).await?;
    let mut present: HashMap<String, Entry> = files_below(&to, &dst_spec.path)
        .await?
        .into_iter()
        .collect();
    let mut todo: Vec<(String, u64, Reason)> = Vec::new();
    let mut compare = Vec::new();
    let mut skipped = 0u64;
    for (rel, src) in sources {
        match present.remove(&rel) {
            None => todo.push((rel, src.size, Reason::New)),
            Some(dst) => match verdict(&rel, src, dst, args.checksum) {
                Verdict::Same => skipped += 1,
                Verdict::Differs => todo.push((rel, src.size, Reason::Changed)),
                Verdict::Compare => compare.push((rel, src.size)),
            },
        }
    }
    // What is left at the destination, the source does not have.
    let mut extra: Vec<String> = present.into_keys().collect();
    extra.sort();
    let compared = compare.len();
    let outcomes: Vec<(String, u64, CliResult<bool>)> = futures::stream::iter(compare)
        .map(|(rel, size)| {
            let (from, to) = (&from, &to);
            let (src_root, dst_root) = (&src_spec.path, &dst_spec.path);
            async move {
                let res = async {
                    let (src, dst) = (join(src_root, &rel)?, join(dst_root, &rel)?);
                    same_content(from, &src, to, &dst).await
                }
                .await;
                (rel, size, res)
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    for (rel, size, res) in outcomes {
        match res {
            Ok(true) => skipped += 1,
            Ok(false) => todo.push((rel, size, Reason::Changed)),
            // Unreadable on one side now (deleted meanwhile?): copying settles it.
            Err(_) => todo.push((rel, size, Reason::Changed)),
        }
    }
    todo.sort_by(|a, b| a.0.cmp(&b.0));
    let updates = todo.iter().filter(|t| t.2 == Reason::Changed).count();
    let planned_bytes: u64 = todo.iter().map(|t| t.1).sum();

    let copied_files = AtomicU64::new(0);
    let copied_bytes = AtomicU64::new(0);
    let mut failures = Vec::new();
    if !args.dry_run {
        let bar = app.progress.bytes(Some(planned_bytes), "sync");
        let results: Vec<(String, CliResult<u64>)> =
            futures::stream::iter(todo.iter().map(|t| t.0.clone()).collect::<Vec<_>>())
                .map(|rel| {
                    let (from, to, bar) = (&from, &to, &bar);
                    let (src_root, dst_root) = (&src_spec.path, &dst_spec.path);
                    let (copied_files, copied_bytes) = (&copied_files, &copied_bytes);
                    async move {
                        let res = async {
                            let src = join(src_root, &rel)?;
                            let dst = join(dst_root, &rel)?;
                            copy_between(from, &src, to, &dst, bar, &app.interrupt).await
                        }
                        .await;
                        if let Ok(n) = &res {
                            copied_files.fetch_add(1, Ordering::Relaxed);
                            copied_bytes.fetch_add(*n, Ordering::Relaxed);
                        }
                        (rel, res)
                    }
                })
                .buffer_unordered(jobs)
                .collect()
                .await;
        bar.finish_and_clear();
        for (rel, res) in results {
            match res {
                Ok(_) => {}
                Err(CliError::Interrupted) => return Err(CliError::Interrupted),
                Err(e) => failures.push((rel, e.to_string())),
            }
        }
    }
    // Deletions only once every copy succeeded: a destination is never left with less
    // than it had while the source's copy of something failed.
    let mut deleted = 0u64;
    let copy_failures = failures.len();
    if args.delete && !args.dry_run && copy_failures == 0 {
        let results: Vec<(String, CliResult)> = futures::stream::iter(extra.clone())
            .map(|rel| {
                let (to, dst_root) = (&to, &dst_spec.path);
                async move {
                    let res = async {
                        let dst = join(dst_root, &rel)?;
                        match to.delete(&dst).await {
                            Err(e) if !e.is_not_found() => Err(e.into()),
                            _ => Ok(()),
                        }
                    }
                    .await;
                    (rel, res)
                }
            })
            .buffer_unordered(jobs)
            .collect()
            .await;
        for (rel, res) in results {
            match res {
                Ok(()) => deleted += 1,
                Err(e) => failures.push((rel, format!("delete: {e}"))),
            }
        }
    }
    let (files, bytes) = (
        copied_files.load(Ordering::Relaxed),
        copied_bytes.load(Ordering::Relaxed),
    );
    let new_files = todo.len() - updates;
    if app.json {
        emit_json(&json!({
            "dry_run": args.dry_run,
            "planned_files": todo.len(),
            "planned_bytes": planned_bytes,
            "new_files": new_files,
            "updated_files": updates,
            "compared_files": compared,
            "copied_files": files,
            "copied_bytes": bytes,
            "skipped_files": skipped,
            "extra_files": extra.len(),
            "deleted_files": deleted,
            "failed": failures.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        }))?;
    } else if args.dry_run {
        let mut text = String::new();
        for (rel, size, why) in &todo {
            let why = match why {
                Reason::New => "new",
                Reason::Changed => "changed",
            };
            text.push_str(&format!("would copy {rel} ({size} bytes, {why})\n"));
        }
        if args.delete {
            for rel in &extra {
                text.push_str(&format!("would delete {rel}\n"));
            }
        }
        text.push_str(&format!(
            "would copy {} files ({}: {new_files} new, {updates} changed), skip {skipped} \
             unchanged",
            todo.len(),
            human_bytes(planned_bytes)
        ));
        text.push_str(&extra_note(args.delete, extra.len(), "would delete"));
        text.push('\n');
        emit(&text)?;
    } else {
        let mut text = String::new();
        for (rel, e) in &failures {
            text.push_str(&format!("failed {rel}: {e}\n"));
        }
        text.push_str(&format!(
            "copied {files} files ({bytes} bytes, {}: {new_files} new, {updates} updated), \
             skipped {skipped} unchanged",
            human_bytes(bytes),
        ));
        text.push_str(&extra_note(args.delete, deleted as usize, "deleted"));
        if args.delete && copy_failures > 0 && !extra.is_empty() {
            text.push_str(" (deletions skipped: a copy failed)");
        } else if !args.delete && !extra.is_empty() {
            text.push_str(&format!(
                ", {} only at the destination (--delete removes them)",
                extra.len()
            ));
        }
        text.push_str(&format!(", {} failed\n", failures.len()));
        emit(&text)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "sync: {} of {} copies and deletions failed",
            failures.len(),
            todo.len() + if args.delete { extra.len() } else { 0 }
        )))
    }
}

/// `, deleted N` when deleting (the dry run's line ends here too).
fn extra_note(delete: bool, n: usize, verb: &str) -> String {
    if delete {
        format!(", {verb} {n}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn content_addressed_paths() {
        let hex = "ab".to_owned() + &"0".repeat(62);
        assert!(content_addressed(&format!(
            "/registry/v2/blobs/sha256/ab/{hex}/data"
        )));
        assert!(content_addressed(&format!("blobs/sha256/ab/{hex}/data")));
        // Not under its two-character directory, not `data`, not hex, not under blobs.
        assert!(!content_addressed(&format!("/blobs/sha256/cd/{hex}/data")));
        assert!(!content_addressed(&format!("/blobs/sha256/ab/{hex}/link")));
        assert!(!content_addressed("/blobs/sha256/ab/abzz/data"));
        assert!(!content_addressed(&format!(
            "/repositories/sha256/ab/{hex}/data"
        )));
        assert!(!content_addressed("/blobs/sha256/00/data"));
    }

    #[test]
    fn verdicts() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let t1 = t0 + std::time::Duration::from_secs(1);
        let e = |size, mod_time| Entry { size, mod_time };
        let big = SMALL_FILE + 1;
        let hex = "ab".to_owned() + &"1".repeat(62);
        let blob = format!("/blobs/sha256/ab/{hex}/data");
        assert_eq!(verdict("/x", e(1, t0), e(2, t1), false), Verdict::Differs);
        assert_eq!(verdict(&blob, e(big, t1), e(big, t0), true), Verdict::Same);
        assert_eq!(
            verdict("/link", e(71, t0), e(71, t1), false),
            Verdict::Compare
        );
        assert_eq!(verdict("/x", e(big, t0), e(big, t1), false), Verdict::Same);
        assert_eq!(verdict("/x", e(big, t0), e(big, t0), false), Verdict::Same);
        assert_eq!(
            verdict("/x", e(big, t1), e(big, t0), false),
            Verdict::Differs
        );
        assert_eq!(
            verdict("/x", e(big, t0), e(big, t1), true),
            Verdict::Compare
        );
    }

    #[tokio::test]
    async fn streams_compare_across_chunk_boundaries() {
        let s = |parts: &[&'static [u8]]| -> ByteStream {
            let v: Vec<driver_api::Result<Bytes>> =
                parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
            futures::stream::iter(v).boxed()
        };
        assert!(
            same_stream(s(&[b"abc", b"def"]), s(&[b"a", b"bcd", b"", b"ef"]))
                .await
                .unwrap()
        );
        assert!(same_stream(s(&[]), s(&[b""])).await.unwrap());
        assert!(!same_stream(s(&[b"abc"]), s(&[b"abd"])).await.unwrap());
        assert!(!same_stream(s(&[b"abc"]), s(&[b"ab"])).await.unwrap());
        assert!(!same_stream(s(&[b"ab"]), s(&[b"a", b"bc"])).await.unwrap());
    }

    #[test]
    fn specs() {
        assert_eq!(Spec::parse("/a").unwrap().store, Store::Configured);
        let s = Spec::parse("old.yml:/docker").unwrap();
        assert_eq!(s.store, Store::File("old.yml".into()));
        assert_eq!(s.path, "/docker");
        let s = Spec::parse("/etc/registry/config.yaml:").unwrap();
        assert_eq!(s.store, Store::File("/etc/registry/config.yaml".into()));
        assert_eq!(s.path, "/");
        let s = Spec::parse("s3:/docker/registry").unwrap();
        assert_eq!(s.store, Store::Driver("s3".into()));
        assert!(Spec::parse("s3").is_err());
        assert!(Spec::parse("s3:relative").is_err());
        let s = Spec::parse("/a/b:c").unwrap();
        assert_eq!((s.store, s.path.as_str()), (Store::Configured, "/a/b:c"));
        let s = Spec::parse("./new.yaml:/x:y").unwrap();
        assert_eq!(
            (s.store, s.path.as_str()),
            (Store::File("./new.yaml".into()), "/x:y")
        );
    }
}
