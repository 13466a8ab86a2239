//! Building test executables once and running them, reading libtest's summaries.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::ops::AddAssign;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cargo, Error};

/// Benchmark-only crate: no tests, and it pulls a peer library; clippy still checks it.
const NO_TESTS: &str = "bench-baselines";

/// A test executable and the package it belongs to.
pub struct Executable {
    pub package: String,
    pub target: String,
    pub path: PathBuf,
    pub manifest_dir: PathBuf,
}

/// Results of one or more libtest runs.
#[derive(Default, Debug)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub failures: Vec<String>,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
        self.failures.extend(o.failures);
    }
}

/// `cargo test --no-run` for the workspace (or `packages`), returning the executables.
pub fn build_tests(packages: Option<&[&str]>) -> Result<Vec<Executable>, Error> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    match packages {
        Some(ps) => {
            for p in ps {
                cmd.args(["-p", p]);
            }
        }
        None => {
            cmd.args(["--workspace", "--exclude", NO_TESTS]);
        }
    }
    eprintln!("==> build tests: {cmd:?}");
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err("building the tests failed".into());
    }
    let mut exes = Vec::new();
    for line in out.stdout.split(|b| *b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        // Test harness binaries, and `harness = false` test targets (not built with --test).
        let is_test_target = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|x| x == "test"));
        if v["reason"] != "compiler-artifact" || !(v["profile"]["test"] == true || is_test_target) {
            continue;
        }
        let (Some(exe), Some(manifest)) = (v["executable"].as_str(), v["manifest_path"].as_str())
        else {
            continue;
        };
        let manifest_dir = PathBuf::from(manifest)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        exes.push(Executable {
            package: package_name(&manifest_dir),
            target: v["target"]["name"].as_str().unwrap_or("?").to_owned(),
            path: PathBuf::from(exe),
            manifest_dir,
        });
    }
    Ok(exes)
}

/// The `name` in a package's Cargo.toml.
fn package_name(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_default()
}

/// Runs one test executable; the full output goes to a log under `log_dir`.
pub fn run(
    exe: &Executable,
    env: &BTreeMap<String, String>,
    log_dir: &Path,
) -> Result<Counts, Error> {
    eprintln!("==> {} ({})", exe.package, exe.target);
    let child = Command::new(&exe.path)
        .current_dir(&exe.manifest_dir)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let log_path = log_dir.join(format!("{}-{}.log", exe.package, exe.target));
    let out = child.wait_with_output()?;
    let mut log = std::fs::File::create(&log_path)?;
    log.write_all(&out.stdout)?;
    log.write_all(&out.stderr)?;
    let mut counts = parse(&out.stdout[..]);
    if !out.status.success() && counts.failed == 0 {
        // Crashed before printing a summary.
        counts.failed += 1;
        counts.failures.push(format!(
            "{} ({}) exited with {}",
            exe.package, exe.target, out.status
        ));
    }
    if counts.failed > 0 {
        // Show what failed, and where the whole log is.
        print_failures(&out.stdout);
        eprintln!("    full log: {}", log_path.display());
    }
    Ok(counts)
}

/// `cargo test --doc --workspace`.
pub fn run_doctests(log_dir: &Path) -> Result<Counts, Error> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--doc",
        "--workspace",
        "--exclude",
        NO_TESTS,
        "--no-fail-fast",
    ]);
    eprintln!("==> doc tests: {cmd:?}");
    let out = cmd.output()?;
    std::fs::write(
        log_dir.join("doctests.log"),
        [&out.stdout[..], &out.stderr[..]].concat(),
    )?;
    let mut counts = parse(&out.stdout[..]);
    if !out.status.success() && counts.failed == 0 {
        counts.failed += 1;
        counts
            .failures
            .push("doc tests did not build or run".into());
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(counts)
}

fn print_failures(stdout: &[u8]) {
    let text = String::from_utf8_lossy(stdout);
    if let Some(idx) = text.find("\nfailures:\n") {
        let tail: String = text[idx..].chars().take(20_000).collect();
        eprintln!("{tail}");
    }
}

/// Sums every `test result:` line and collects `test NAME ... FAILED` names.
pub fn parse(stdout: impl std::io::Read) -> Counts {
    let mut c = Counts::default();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match kind {
                    "passed" => c.passed += n,
                    "failed" => c.failed += n,
                    "ignored" => c.ignored += n,
                    _ => {}
                }
            }
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            c.failures.push(name.to_owned());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        let out = "running 3 tests\ntest a ... ok\ntest b ... FAILED\ntest c ... ignored\n\n\
                   test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s\n";
        let c = parse(out.as_bytes());
        assert_eq!((c.passed, c.failed, c.ignored), (6, 1, 1));
        assert_eq!(c.failures, vec!["b".to_string()]);
    }
}
