//! `sync SRC_SPEC DST_SPEC`: copies a tree between two storages.
//!
//! One walk of each side plans the work: a source file is copied when the destination has
//! no file at the same relative path or one of a different size, so re-running after an
//! interruption copies only what is missing. Copies run `jobs` at a time, each streamed
//! chunk by chunk and committed only when complete; Ctrl-C cancels the uploads in flight.
//!
//! A spec is `PATH` (the configured storage), `FILE.yml:PATH` / `FILE.yaml:PATH` (the
//! storage section of another Distribution config, without environment overrides) or
//! `DRIVER:PATH` (a registered driver, parameters from `--src-param`/`--dst-param`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use driver_api::{Driver, StoragePath, WalkControl, WalkOptions};
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
}

async fn open(app: &App, spec: &Spec, params: &[String]) -> CliResult<Driver> {
    let config = match &spec.store {
        Store::Configured => app.config.clone(),
        Store::File(f) => StorageConfig::from_file(f)?,
        Store::Driver(name) => StorageConfig::from_flags(name, params)?,
    };
    Ok(config.create().await?)
}

/// Files below `root` by path relative to it, with sizes; a missing root is empty.
async fn files_below(d: &Driver, root: &str) -> CliResult<Vec<(String, u64)>> {
    let base = d.path(root)?;
    let mut out = Vec::new();
    let res = d
        .walk(root, &WalkOptions::default(), |fi| {
            if !fi.is_dir {
                if let Some(rel) = fi.path.strip_prefix(&base) {
                    out.push((rel.as_str().to_owned(), fi.size));
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
                Ok(fi) if !fi.is_dir => Ok(vec![(String::from("/"), fi.size)]),
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
    let present: HashMap<String, u64> = files_below(&to, &dst_spec.path)
        .await?
        .into_iter()
        .collect();
    let mut todo = Vec::new();
    let mut skipped = 0u64;
    for (rel, size) in sources {
        if present.get(&rel) == Some(&size) {
            skipped += 1;
        } else {
            todo.push((rel, size));
        }
    }
    let planned_bytes: u64 = todo.iter().map(|(_, s)| s).sum();

    let copied_files = AtomicU64::new(0);
    let copied_bytes = AtomicU64::new(0);
    let mut failures = Vec::new();
    if !args.dry_run {
        let bar = app.progress.bytes(Some(planned_bytes), "sync");
        let results: Vec<(String, CliResult<u64>)> =
            futures::stream::iter(todo.iter().map(|(rel, _)| rel.clone()).collect::<Vec<_>>())
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
    let (files, bytes) = (
        copied_files.load(Ordering::Relaxed),
        copied_bytes.load(Ordering::Relaxed),
    );
    if app.json {
        emit_json(&json!({
            "dry_run": args.dry_run,
            "planned_files": todo.len(),
            "planned_bytes": planned_bytes,
            "copied_files": files,
            "copied_bytes": bytes,
            "skipped_files": skipped,
            "failed": failures.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        }))?;
    } else if args.dry_run {
        let mut text = String::new();
        for (rel, size) in &todo {
            text.push_str(&format!("would copy {rel} ({size} bytes)\n"));
        }
        text.push_str(&format!(
            "would copy {} files ({}), skip {skipped} already present\n",
            todo.len(),
            human_bytes(planned_bytes)
        ));
        emit(&text)?;
    } else {
        let mut text = String::new();
        for (rel, e) in &failures {
            text.push_str(&format!("failed {rel}: {e}\n"));
        }
        text.push_str(&format!(
            "copied {files} files ({bytes} bytes, {}), skipped {skipped} already present, \
             {} failed\n",
            human_bytes(bytes),
            failures.len()
        ));
        emit(&text)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "sync: {} of {} copies failed",
            failures.len(),
            todo.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
