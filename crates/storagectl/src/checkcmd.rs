//! `check` (the conformance suite against the configured storage) and `bench` (the shared
//! benchmarks). Both work only under a random prefix of the storage, removed at the end,
//! so they never touch other data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use driver_api::prefix::Prefixed;
use driver_api::{Driver, StorageError, StoragePath};
use driver_testsuite::quickbench::{self, QuickOptions};
use driver_testsuite::{all_cases, run_case_async, DriverFactoryFn, Outcome, Sizes};
use futures::StreamExt;
use serde_json::json;

use crate::config::StorageConfig;
use crate::output::{parse_size, table};
use crate::{emit, emit_json, App, CliError, CliResult};

fn random_prefix(what: &str) -> CliResult<StoragePath> {
    let name = format!(
        "/storagectl-{what}-{}",
        driver_testsuite::data::random_name(12)
    );
    StoragePath::new(&name).map_err(|e| CliError::Failed(e.to_string()))
}

/// Deletes the scratch prefix (nothing there is fine).
async fn remove_prefix(d: &Driver, prefix: &StoragePath) -> CliResult {
    match d.delete(prefix.as_str()).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `check`.
pub async fn check(
    app: &App,
    filter: Option<&str>,
    jobs: usize,
    full: bool,
    timeout_secs: u64,
) -> CliResult {
    let base_driver = app.driver().await?;
    let prefix = random_prefix("check")?;
    let config: Arc<StorageConfig> = Arc::new(app.config.clone());
    let scratch = prefix.clone();
    // Every case (and every "new instance" a case asks for) gets a freshly created driver,
    // as a separate process would, scoped to its own directory under the scratch prefix.
    let factory: Arc<DriverFactoryFn> = Arc::new(move |root: String| {
        let (config, scratch) = (config.clone(), scratch.clone());
        Box::pin(async move {
            let d = config.create().await.map_err(|e| match e {
                crate::config::CreateError::Backend(s) => s,
                crate::config::CreateError::Config(c) => StorageError::Config {
                    driver: config.driver.clone().into(),
                    message: c.to_string(),
                },
            })?;
            let p = scratch
                .join(&root)
                .map_err(|e| StorageError::invalid_path(config.driver.clone(), e))?;
            Ok(Driver::new(Prefixed::new(d.inner().clone(), p)))
        })
    });
    let mut sizes = Sizes::from_env();
    if full {
        sizes = Sizes::full();
    }
    let cases: Vec<_> = all_cases()
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .collect();
    if cases.is_empty() {
        return Err(CliError::Usage(format!(
            "check: no case matches {:?}",
            filter.unwrap_or_default()
        )));
    }
    let bar = app.progress.items(cases.len() as u64, "check");
    // Failed assertions are reported in the table; keep the default hook from printing
    // them (with backtraces) over the progress bar.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let timeout = Duration::from_secs(timeout_secs);
    let started = Instant::now();
    let reports = futures::stream::iter(cases)
        .map(|case| {
            let factory = factory.clone();
            let bar = bar.clone();
            async move {
                // Each case on its own task: a case that blocks a worker does not stall
                // the others, and a panic stays inside its task.
                let handle = tokio::spawn(run_case_async(case, factory, sizes, timeout));
                let r = handle.await;
                bar.inc(1);
                (case.name, r)
            }
        })
        .buffer_unordered(jobs.max(1));
    let interrupted = app.interrupt.clone();
    let reports: Vec<_> = tokio::select! {
        r = reports.collect::<Vec<_>>() => r,
        () = interrupted.wait() => {
            std::panic::set_hook(previous_hook);
            bar.finish_and_clear();
            let _ = remove_prefix(&base_driver, &prefix).await;
            return Err(CliError::Interrupted);
        }
    };
    std::panic::set_hook(previous_hook);
    bar.finish_and_clear();
    let cleanup = remove_prefix(&base_driver, &prefix).await;
    let total = started.elapsed();

    let mut rows = Vec::new();
    let (mut passed, mut skipped, mut failed) = (0, 0, 0);
    let mut items = Vec::new();
    let mut sorted = reports;
    sorted.sort_by_key(|(name, _)| *name);
    for (name, r) in sorted {
        let (status, detail, secs) = match r {
            Ok(rep) => {
                let secs = rep.elapsed.as_secs_f64();
                match rep.outcome {
                    Outcome::Passed => ("pass", String::new(), secs),
                    Outcome::Skipped(why) => ("skip", why, secs),
                    Outcome::Failed(why) => ("FAIL", why, secs),
                }
            }
            Err(e) => ("FAIL", format!("the case's task failed: {e}"), 0.0),
        };
        match status {
            "pass" => passed += 1,
            "skip" => skipped += 1,
            _ => failed += 1,
        }
        items.push(json!({"case": name, "status": status.to_lowercase(), "seconds": secs, "detail": detail}));
        rows.push(vec![
            name.to_owned(),
            status.to_owned(),
            format!("{secs:.2}s"),
            detail
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(100)
                .collect(),
        ]);
    }
    if app.json {
        emit_json(&json!({
            "driver": app.config.driver,
            "prefix": prefix.as_str(),
            "passed": passed, "skipped": skipped, "failed": failed,
            "seconds": total.as_secs_f64(),
            "cases": items,
        }))?;
    } else {
        let mut text = table(&["case", "result", "time", "detail"], "llrl", &rows);
        text.push_str(&format!(
            "\n{} driver, scratch prefix {} (removed): {passed} passed, {skipped} skipped, \
             {failed} failed in {:.1}s\n",
            app.config.driver,
            prefix.as_str(),
            total.as_secs_f64()
        ));
        emit(&text)?;
    }
    cleanup?;
    if failed > 0 {
        return Err(CliError::Failed(format!("check: {failed} case(s) failed")));
    }
    Ok(())
}

/// `bench`.
pub async fn bench(app: &App, secs: f64, sizes: &[String], walk_files: usize) -> CliResult {
    if !(secs.is_finite() && secs > 0.0) {
        return Err(CliError::Usage(
            "bench: --time must be a positive number of seconds".into(),
        ));
    }
    let sizes = sizes
        .iter()
        .map(|s| {
            parse_size(s).ok_or_else(|| {
                CliError::Usage(format!(
                    "bench: --sizes: {s:?} is not a size (e.g. 0, 1K, 4M)"
                ))
            })
        })
        .collect::<CliResult<Vec<_>>>()?;
    let base = app.driver().await?;
    let prefix = random_prefix("bench")?;
    let scoped = Driver::new(Prefixed::new(base.inner().clone(), prefix.clone()));
    let options = QuickOptions {
        time_per_case: Duration::from_secs_f64(secs),
        sizes,
        walk_files,
    };
    let bar = app.progress.items(0, "bench");
    let run = quickbench::run(&scoped, &options, |r| {
        bar.set_message(format!("bench {}", r.name));
    });
    let results = tokio::select! {
        r = run => r,
        () = app.interrupt.wait() => {
            bar.finish_and_clear();
            let _ = remove_prefix(&base, &prefix).await;
            return Err(CliError::Interrupted);
        }
    };
    bar.finish_and_clear();
    let cleanup = remove_prefix(&base, &prefix).await;
    let results = results.map_err(|e| CliError::Failed(format!("bench: {e}")))?;
    if app.json {
        emit_json(&json!({
            "driver": app.config.driver,
            "results": results.iter().map(|r| json!({
                "name": r.name,
                "iterations": r.iterations,
                "seconds": r.elapsed.as_secs_f64(),
                "ops_per_sec": r.ops_per_sec(),
                "mean_us": r.mean().as_secs_f64() * 1e6,
                "mb_per_sec": r.mb_per_sec(),
                "items_per_op": r.items_per_op,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.iterations.to_string(),
                    format!("{:.1}", r.ops_per_sec()),
                    format_duration(r.mean()),
                    r.mb_per_sec()
                        .map(|m| format!("{m:.1}"))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let mut text = table(
            &["benchmark", "iterations", "ops/s", "mean", "MB/s"],
            "lrrrr",
            &rows,
        );
        text.push_str(&format!(
            "\n{} driver, {secs} s per benchmark, scratch prefix {} (removed)\n",
            app.config.driver,
            prefix.as_str()
        ));
        emit(&text)?;
    }
    cleanup
}

fn format_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}
