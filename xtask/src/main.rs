//! Project automation, run as `cargo xtask <command>`:
//!
//! * `test-all [--only a,b] [--no-lint]`: the docs check, fmt check, clippy `-D warnings`,
//!   rustdoc, cargo-deny (when installed), then every driver's suite (starting the emulators
//!   it needs), the `interop` row (Distribution's registry and skopeo, installed from
//!   Debian, against our drivers and storagectl's `sync` and `gc`), the `radosgw` row (the s3 and swift tests on Ceph's
//!   RADOS Gateway) and every other test; prints a table and
//!   `N passed, N failed`; exits non-zero on any failure. `--only` takes driver names,
//!   `interop`, `radosgw` and `docs` (the docs check alone).
//! * `bench [driver...] [-- criterion args]`: the criterion benchmarks.
//! * `lint`: the docs check, fmt check, clippy, rustdoc and cargo-deny only.
//! * `docs`: the docs check alone: the conformance case count and the MSRV stated in
//!   README.md and docs/*.md agree with driver-testsuite's case list and with Cargo.toml
//!   (see `docs.rs`).
//! * `emulators start [driver...]`: install and run the emulators in the foreground, printing their environment.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod docs;
mod drivers;
mod emulators;
mod libtest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use drivers::{DriverSuite, DRIVERS};
use libtest::Counts;

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("test-all") => test_all(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("lint") => lint().map(|rows| rows.iter().all(|r| r.counts.failed == 0)),
        Some("docs") => {
            let row = docs_check();
            print_table(std::slice::from_ref(&row), row.seconds);
            Ok(row.counts.failed == 0)
        }
        Some("emulators") => emulators(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask test-all [--only a,b|docs] [--no-lint]\n       \
                 cargo xtask bench [driver...] [-- criterion args]\n       \
                 cargo xtask lint\n       \
                 cargo xtask docs\n       \
                 cargo xtask emulators start [driver...]"
            );
            Ok(false)
        }
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
///
/// `cargo run` names the package's directory at run time; that wins over the directory
/// compiled in, which is stale when two checkouts share one target directory (cargo does
/// not rebuild xtask for the second one, and it would test the first).
pub(crate) fn workspace_root() -> PathBuf {
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// Where logs and scratch files go.
fn xtask_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("xtask");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// One line of the final table.
struct Row {
    name: String,
    counts: Counts,
    skipped: Vec<String>,
    seconds: f64,
    note: String,
}

fn run_status(name: &str, cmd: &mut Command) -> Row {
    let start = Instant::now();
    eprintln!("==> {name}: {cmd:?}");
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    Row {
        name: name.into(),
        counts: Counts {
            passed: ok as u64,
            failed: (!ok) as u64,
            ..Counts::default()
        },
        skipped: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
        note: String::new(),
    }
}

/// Runs the docs check (`docs.rs`): stated case count and MSRV against the code. Each
/// disagreement is one failure line (file:line: what is wrong) in the final table.
fn docs_check() -> Row {
    let start = Instant::now();
    eprintln!("==> docs: case count and MSRV in README.md and docs/*.md against the code");
    let mut counts = Counts::default();
    let mut note = String::new();
    match docs::check(&workspace_root()) {
        Ok(report) => {
            note = format!("{} cases, MSRV {}", report.cases, report.msrv);
            for f in &report.findings {
                eprintln!("docs: {f}");
            }
            counts.failures = report.findings;
        }
        Err(e) => {
            eprintln!("docs: {e}");
            counts.failures.push(e.to_string());
        }
    }
    if counts.failures.is_empty() {
        counts.passed = 1;
    } else {
        counts.failed = 1;
    }
    Row {
        name: "docs".into(),
        counts,
        skipped: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
        note,
    }
}

fn lint() -> Result<Vec<Row>, Error> {
    let mut rows = vec![
        docs_check(),
        run_status("fmt", cargo().args(["fmt", "--all", "--", "--check"])),
        run_status(
            "clippy",
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // The crate docs are part of the product: broken or private links fail.
        run_status(
            "rustdoc",
            cargo()
                .args(["doc", "--workspace", "--no-deps"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        ),
    ];
    match find_cargo_deny() {
        Some(deny) => rows.push(run_status(
            "deny",
            Command::new(deny)
                .current_dir(workspace_root())
                .args(["check", "licenses", "bans", "sources"]),
        )),
        None => {
            let reason = "cargo-deny not installed (.ci/run installs it into ~/.cache/tools)";
            eprintln!("SKIP deny: {reason}");
            rows.push(Row {
                name: "deny".into(),
                counts: Counts::default(),
                skipped: vec![reason.into()],
                seconds: 0.0,
                note: String::new(),
            });
        }
    }
    Ok(rows)
}

fn find_cargo_deny() -> Option<PathBuf> {
    let ok = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let cached =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tools/bin/cargo-deny"));
    cached
        .into_iter()
        .chain([PathBuf::from("cargo-deny")])
        .find(|p| ok(p))
}

fn parse_only(args: &[String]) -> Result<(Option<Vec<String>>, bool), Error> {
    let mut only = None;
    let mut lint = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => {
                let v = it
                    .next()
                    .ok_or("--only needs a comma-separated list of drivers (or `docs`)")?;
                only = Some(v.split(',').map(|s| s.trim().to_owned()).collect());
            }
            s if s.starts_with("--only=") => {
                only = Some(s[7..].split(',').map(|s| s.trim().to_owned()).collect());
            }
            "--no-lint" => lint = false,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if let Some(names) = &only {
        for n in names {
            if n != DOCS && !DRIVERS.iter().any(|d| d.name == n) {
                let mut known: Vec<&str> = DRIVERS.iter().map(|d| d.name).collect();
                known.push(DOCS);
                return Err(format!("unknown driver {n:?} (known: {})", known.join(", ")).into());
            }
        }
    }
    Ok((only, lint))
}

/// The `--only` name of the docs check.
const DOCS: &str = "docs";

fn test_all(args: &[String]) -> Result<bool, Error> {
    let (only, with_lint) = parse_only(args)?;
    let started = Instant::now();
    let selected: Vec<&DriverSuite> = DRIVERS
        .iter()
        .filter(|d| only.as_ref().is_none_or(|o| o.iter().any(|n| n == d.name)))
        .collect();

    let mut rows = Vec::new();
    if with_lint && only.is_none() {
        rows.extend(lint()?);
    }
    if only.as_ref().is_some_and(|o| o.iter().any(|n| n == DOCS)) {
        rows.push(docs_check());
    }

    // Build every test binary once; run them per driver below (nothing to build when
    // `--only` names no driver).
    let packages: Option<Vec<&str>> = only.as_ref().map(|_| {
        selected
            .iter()
            .flat_map(|d| std::iter::once(d.package).chain(d.also.iter().copied()))
            .collect()
    });
    let executables = match &packages {
        Some(p) if p.is_empty() => Vec::new(),
        _ => libtest::build_tests(packages.as_deref())?,
    };

    for suite in &selected {
        rows.push(run_driver(suite, &executables)?);
    }
    if only.is_none() {
        for tool in TOOLS {
            rows.push(run_tool(tool, &executables)?);
        }
        rows.push(run_other(&executables)?);
        rows.push(run_doctests()?);
    }

    print_table(&rows, started.elapsed().as_secs_f64());
    Ok(rows.iter().all(|r| r.counts.failed == 0))
}

fn run_driver(suite: &DriverSuite, executables: &[libtest::Executable]) -> Result<Row, Error> {
    let start = Instant::now();
    let skip_log = xtask_dir().join(format!("skips-{}.tsv", suite.name));
    let _ = std::fs::remove_file(&skip_log);
    let mut note = String::new();
    let mut counts = Counts::default();

    let emulator = match suite.emulator {
        Some(start_emulator) => match start_emulator() {
            Ok(e) => Some(e),
            Err(e) => {
                note = format!("emulator failed to start: {e}");
                counts.failed += 1;
                None
            }
        },
        None => None,
    };
    if counts.failed == 0 {
        let mut env: BTreeMap<String, String> =
            emulator.as_ref().map(|e| e.env.clone()).unwrap_or_default();
        env.insert(
            "DRIVER_TESTSUITE_SKIP_LOG".into(),
            skip_log.to_string_lossy().into_owned(),
        );
        for exe in executables.iter().filter(|e| suite.runs(e)) {
            counts += libtest::run(exe, &env, &xtask_dir())?;
        }
    }
    drop(emulator);
    let skipped = read_skips(&skip_log);
    Ok(Row {
        name: suite.name.into(),
        counts,
        skipped,
        seconds: start.elapsed().as_secs_f64(),
        note,
    })
}

/// Packages that are not drivers but get a row of their own (their tests run binaries).
const TOOLS: &[&str] = &["storagectl"];

fn run_tool(package: &str, executables: &[libtest::Executable]) -> Result<Row, Error> {
    let start = Instant::now();
    let mut counts = Counts::default();
    for exe in executables
        .iter()
        .filter(|e| e.package == package && !drivers::claimed(e))
    {
        counts += libtest::run(exe, &BTreeMap::new(), &xtask_dir())?;
    }
    Ok(Row {
        name: package.into(),
        counts,
        skipped: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
        note: String::new(),
    })
}

fn run_other(executables: &[libtest::Executable]) -> Result<Row, Error> {
    let start = Instant::now();
    let mut counts = Counts::default();
    let env = BTreeMap::new();
    for exe in executables.iter().filter(|e| {
        !DRIVERS.iter().any(|d| d.package == e.package) && !TOOLS.contains(&e.package.as_str())
    }) {
        counts += libtest::run(exe, &env, &xtask_dir())?;
    }
    Ok(Row {
        name: "(other tests)".into(),
        counts,
        skipped: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
        note: String::new(),
    })
}

fn run_doctests() -> Result<Row, Error> {
    let start = Instant::now();
    let counts = libtest::run_doctests(&xtask_dir())?;
    Ok(Row {
        name: "(doc tests)".into(),
        counts,
        skipped: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
        note: String::new(),
    })
}

fn read_skips(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let _driver = parts.next();
            let case = parts.next().unwrap_or("?");
            let reason = parts.next().unwrap_or("");
            format!("{case}: {reason}")
        })
        .collect()
}

fn print_table(rows: &[Row], total_seconds: f64) {
    println!();
    println!(
        "{:<16} {:>7} {:>7} {:>8} {:>9}",
        "driver", "passed", "failed", "skipped", "seconds"
    );
    println!("{}", "-".repeat(51));
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for r in rows {
        // A skipped case still passes (libtest counts it); report it in its own column.
        let sk = r.skipped.len() as u64;
        let p = r.counts.passed.saturating_sub(sk);
        println!(
            "{:<16} {:>7} {:>7} {:>8} {:>9.1}{}",
            r.name,
            p,
            r.counts.failed,
            sk + r.counts.ignored,
            r.seconds,
            if r.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.note)
            }
        );
        passed += p;
        failed += r.counts.failed;
        skipped += sk + r.counts.ignored;
    }
    println!("{}", "-".repeat(51));
    for r in rows {
        for s in &r.skipped {
            println!("skipped [{}] {s}", r.name);
        }
        for f in &r.counts.failures {
            println!("FAILED  [{}] {f}", r.name);
        }
    }
    println!("total {total_seconds:.1} s, {skipped} skipped");
    println!("{passed} passed, {failed} failed");
}

fn bench(args: &[String]) -> Result<bool, Error> {
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (names, extra) = (&args[..split], &args[split.min(args.len())..]);
    let selected: Vec<&DriverSuite> = if names.is_empty() {
        DRIVERS.iter().filter(|d| d.is_driver()).collect()
    } else {
        names
            .iter()
            .map(|n| {
                DRIVERS
                    .iter()
                    .find(|d| d.name == n && d.is_driver())
                    .ok_or_else(|| format!("unknown driver {n:?}"))
            })
            .collect::<Result<_, _>>()?
    };
    let mut ok = true;
    for suite in selected {
        let emulator = suite.emulator.map(|f| f()).transpose()?;
        // Drivers with a side-by-side comparison (raw floors, peers) run that; it includes
        // the driver's own benchmarks.
        let package = if suite.compare {
            "bench-baselines"
        } else {
            suite.package
        };
        let mut cmd = cargo();
        cmd.args(["bench", "-p", package, "--bench", suite.name]);
        cmd.args(extra);
        if let Some(e) = &emulator {
            cmd.envs(&e.env);
        }
        eprintln!("==> bench {}: {cmd:?}", suite.name);
        ok &= cmd.status()?.success();
    }
    Ok(ok)
}

fn emulators(args: &[String]) -> Result<bool, Error> {
    let action = args.first().map(String::as_str).unwrap_or("start");
    let names: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let with: Vec<&DriverSuite> = DRIVERS
        .iter()
        .filter(|d| {
            d.emulator.is_some()
                && if names.is_empty() {
                    d.is_driver()
                } else {
                    names.contains(&d.name)
                }
        })
        .collect();
    match action {
        "start" => {
            // Runs in the foreground: prints the environment, serves until Ctrl-C.
            let mut running = Vec::new();
            for d in &with {
                if let Some(start) = d.emulator {
                    let em = start().map_err(|e| format!("{}: {e}", d.name))?;
                    println!("# {}", d.name);
                    emulators::print_env(&em.env);
                    running.push(em);
                }
            }
            println!("# running; press Ctrl-C to stop");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        _ => Err(format!("emulators {action}: expected `start [driver...]`").into()),
    }
}
