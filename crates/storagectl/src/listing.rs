//! `ls`, `stat`, `rm`, `walk`, `du`.

use driver_api::{FileInfo, StoragePath, WalkControl, WalkOptions};
use futures::StreamExt;
use serde_json::json;

use crate::output::{human_bytes, info_json, info_line};
use crate::{emit, emit_json, App, CliError, CliResult};

/// `ls [-l] [-R] PATH`.
pub async fn ls(app: &App, path: &str, long: bool, recursive: bool) -> CliResult {
    let d = app.driver().await?;
    let infos: Vec<FileInfo> = if recursive {
        d.walk_collect(path).await?
    } else {
        let mut entries = d.list(path).await?;
        entries.sort();
        if long || app.json {
            // Stat concurrently, keeping the listing's order.
            // Owned paths: a closure over borrowed ones keeps the future from being
            // `Send` (rustc cannot prove it for every lifetime).
            let stats: Vec<_> = futures::stream::iter(entries.clone())
                .map(|p| {
                    let d = d.clone();
                    async move { d.stat(p.as_str()).await }
                })
                .buffered(16)
                .collect()
                .await;
            let mut out = Vec::with_capacity(stats.len());
            for s in stats {
                match s {
                    Ok(fi) => out.push(fi),
                    // Removed between the listing and the stat: not an error for `ls`.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            out
        } else {
            let mut text = String::new();
            for e in &entries {
                text.push_str(e.as_str());
                text.push('\n');
            }
            return emit(&text);
        }
    };
    if app.json {
        return emit_json(&json!(infos.iter().map(info_json).collect::<Vec<_>>()));
    }
    let mut text = String::new();
    for fi in &infos {
        if long {
            text.push_str(&info_line(fi));
        } else if fi.is_dir {
            text.push_str(&format!("{}/", fi.path.as_str()));
        } else {
            text.push_str(fi.path.as_str());
        }
        text.push('\n');
    }
    emit(&text)
}

/// `stat PATH`.
pub async fn stat(app: &App, path: &str) -> CliResult {
    let d = app.driver().await?;
    let fi = d.stat(path).await?;
    if app.json {
        emit_json(&info_json(&fi))
    } else {
        emit(&format!("{}\n", info_line(&fi)))
    }
}

/// `rm [-r] PATH`: refused when the configuration disables deletes, as the registry would.
pub async fn rm(app: &App, path: &str, recursive: bool) -> CliResult {
    if app.config.from_distribution && !app.config.delete_enabled {
        return Err(CliError::Failed(format!(
            "deleting is disabled by this configuration ({}): storage.delete.enabled is not \
             true (Distribution's default is false); enable it in the file or set \
             REGISTRY_STORAGE_DELETE_ENABLED=true",
            app.config.origin
        )));
    }
    let d = app.driver().await?;
    let fi = d.stat(path).await?;
    if fi.is_dir && !recursive {
        return Err(CliError::Failed(format!(
            "{path} is a directory: use rm -r to delete it and everything below it"
        )));
    }
    d.delete(path).await?;
    Ok(())
}

/// `walk PATH`: streamed output, one entry per line (JSON lines with `--json`).
pub async fn walk(app: &App, path: &str, start_after: Option<&str>, files_only: bool) -> CliResult {
    let d = app.driver().await?;
    let options = match start_after {
        Some(h) => WalkOptions::start_after(d.path(h)?),
        None => WalkOptions::default(),
    };
    let json = app.json;
    let mut buf = String::new();
    let mut failed = None;
    d.walk(path, &options, |fi| {
        if files_only && fi.is_dir {
            return WalkControl::Continue;
        }
        if json {
            buf.push_str(&info_json(fi).to_string());
        } else if fi.is_dir {
            buf.push_str(&format!("{}/", fi.path.as_str()));
        } else {
            buf.push_str(fi.path.as_str());
        }
        buf.push('\n');
        if buf.len() > 64 * 1024 {
            if let Err(e) = emit(&buf) {
                failed = Some(e);
                return WalkControl::Stop;
            }
            buf.clear();
        }
        WalkControl::Continue
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    emit(&buf)
}

/// `du PATH`: bytes, files and directories below `PATH` (or the file's own size).
pub async fn du(app: &App, path: &str) -> CliResult {
    let d = app.driver().await?;
    let p: StoragePath = d.path(path)?;
    let (mut bytes, mut files, mut dirs) = (0u64, 0u64, 0u64);
    let is_file = if p.is_root() {
        false
    } else {
        !d.stat(path).await?.is_dir
    };
    if is_file {
        bytes = d.stat(path).await?.size;
        files = 1;
    } else {
        d.walk(path, &WalkOptions::default(), |fi| {
            if fi.is_dir {
                dirs += 1;
            } else {
                files += 1;
                bytes += fi.size;
            }
            WalkControl::Continue
        })
        .await?;
    }
    if app.json {
        return emit_json(&json!({
            "path": p.as_str(), "bytes": bytes, "files": files, "directories": dirs,
        }));
    }
    emit(&format!(
        "{bytes}\t{}\t{files} files\t{dirs} directories\t{}\n",
        human_bytes(bytes),
        p.as_str()
    ))
}
