//! `uploads ls` and `uploads purge`: what interrupted and abandoned writes left behind
//! ([`driver_api::Leftover`]), with their ages, and their removal.

use std::time::{Duration, SystemTime};

use driver_api::Leftover;
use serde_json::{json, Value};

use crate::output::{human_bytes, rfc3339, table};
use crate::{emit, emit_json, App, CliError, CliResult};

/// `uploads ls [PATH] [--older-than D]`.
pub async fn ls(app: &App, path: &str, older_than: Option<Duration>) -> CliResult {
    let d = app.driver().await?;
    let now = SystemTime::now();
    let found: Vec<Leftover> = d
        .uploads(path)
        .await?
        .into_iter()
        .filter(|l| older_than.is_none_or(|min| age(l, now).is_some_and(|a| a >= min)))
        .collect();
    if app.json {
        return emit_json(&Value::Array(
            found.iter().map(|l| to_json(l, now)).collect(),
        ));
    }
    let rows: Vec<Vec<String>> = found.iter().map(|l| row(l, now)).collect();
    let total: u64 = found.iter().filter_map(|l| l.size).sum();
    let mut text = table(&["KIND", "AGE", "SIZE", "PATH", "ID"], "llrll", &rows);
    text.push_str(&format!(
        "{} upload(s), {} known\n",
        found.len(),
        human_bytes(total)
    ));
    emit(&text)
}

/// `uploads purge [PATH] [--older-than D] [--dry-run]`.
pub async fn purge(app: &App, path: &str, older_than: Duration, dry_run: bool) -> CliResult {
    let d = app.driver().await?;
    let now = SystemTime::now();
    let found = d.uploads(path).await?;
    let (old, young): (Vec<Leftover>, Vec<Leftover>) = found
        .into_iter()
        .partition(|l| age(l, now).is_some_and(|a| a >= older_than));
    let mut purged = Vec::new();
    let mut failed = Vec::new();
    for l in &old {
        if app.interrupt.is_set() {
            return Err(CliError::Interrupted);
        }
        if dry_run {
            purged.push(l);
            continue;
        }
        match d.purge_upload(l).await {
            Ok(()) => purged.push(l),
            Err(e) => {
                eprintln!("storagectl: {e}");
                failed.push(l);
            }
        }
    }
    let bytes: u64 = purged.iter().filter_map(|l| l.size).sum();
    if app.json {
        emit_json(&json!({
            "dry_run": dry_run,
            "purged": purged.iter().map(|l| to_json(l, now)).collect::<Vec<_>>(),
            "failed": failed.iter().map(|l| to_json(l, now)).collect::<Vec<_>>(),
            "kept_younger": young.len(),
        }))?;
    } else {
        let rows: Vec<Vec<String>> = purged.iter().map(|l| row(l, now)).collect();
        let mut text = if rows.is_empty() {
            String::new()
        } else {
            table(&["KIND", "AGE", "SIZE", "PATH", "ID"], "llrll", &rows)
        };
        text.push_str(&format!(
            "{} {} upload(s) ({} known), kept {} younger than {}{}\n",
            if dry_run { "would purge" } else { "purged" },
            purged.len(),
            human_bytes(bytes),
            young.len(),
            humantime(older_than),
            if failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", failed.len())
            }
        ));
        emit(&text)?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} upload(s) could not be purged",
            failed.len()
        )))
    }
}

/// How long `l` has been left, if its backend says when it was last written. One without
/// a time is never old enough to purge.
fn age(l: &Leftover, now: SystemTime) -> Option<Duration> {
    l.modified
        .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
}

fn row(l: &Leftover, now: SystemTime) -> Vec<String> {
    vec![
        l.kind.to_string(),
        age(l, now).map_or_else(|| "-".into(), humantime),
        l.size.map_or_else(|| "-".into(), human_bytes),
        l.path.to_string(),
        l.id.clone(),
    ]
}

fn to_json(l: &Leftover, now: SystemTime) -> Value {
    json!({
        "path": l.path.as_str(),
        "kind": l.kind.as_str(),
        "id": l.id,
        "modified": l.modified.map(rfc3339),
        "age_seconds": age(l, now).map(|a| a.as_secs()),
        "size": l.size,
    })
}

/// `45s`, `12m`, `5h`, `3d`.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_short() {
        assert_eq!(humantime(Duration::from_secs(59)), "59s");
        assert_eq!(humantime(Duration::from_secs(3599)), "59m");
        assert_eq!(humantime(Duration::from_secs(86_399)), "23h");
        assert_eq!(humantime(Duration::from_secs(3 * 86_400)), "3d");
    }
}
