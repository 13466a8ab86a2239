//! `docs`: the numbers the documentation states about the code, checked against the code.
//!
//! Two facts have one source each, and every doc that states them must agree:
//!
//! * **The conformance case count**: the list in `driver-testsuite`'s `__for_each_case!`
//!   macro (which `conformance_tests!` and `all_cases()` both expand), read from the source
//!   text so this check builds nothing. Every `pub async fn` of `cases.rs` must be in it.
//! * **The MSRV**: `rust-version` in the root `Cargo.toml`'s `[workspace.package]`. Every
//!   workspace crate must inherit it (`rust-version.workspace = true`), and it must not be
//!   below the `rust-version` of any package in the resolved dependency graph (`cargo
//!   metadata`).
//!
//! What counts as a statement in `README.md`, `docs/*.md` and `docs/drivers/*.md`:
//!
//! * a case count: a number directly followed by ` cases` or ` conformance`; and the
//!   summary of a `storagectl check` sample (a line with `(removed):`): `N passed, M
//!   skipped, K failed` must add up to the count. The rows of such a sample must be real
//!   case names, and as many as the count unless the sample is abridged with `...`;
//! * an MSRV: a version `1.x[.y]` directly after `Rust`, `MSRV` or `rust-version` (markup
//!   and `:`, `=`, `"` in between are ignored), or directly before `or newer` / `or later`.
//!   Any other version (say, the toolchain something was tested with) is not read.
//!
//! `docs/drivers/*.md` are read too: a driver page's `storagectl check` figure must be the
//! suite's count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::Error;

/// Where the case list lives, relative to the workspace root.
const SUITE_LIB: &str = "crates/driver-testsuite/src/lib.rs";
/// The case functions.
const SUITE_CASES: &str = "crates/driver-testsuite/src/cases.rs";
/// The macro holding the list, and the arm that receives it.
const LIST_MACRO: &str = "macro_rules! __for_each_case";
const LIST_ARM: &str = "@list $cb, $arg;";

/// Statements a doc must make at least once (so deleting them is noticed too).
const REQUIRED: &[(&str, Kind)] = &[
    ("README.md", Kind::Msrv),
    ("README.md", Kind::Cases),
    ("README.md", Kind::CheckSummary),
    ("docs/writing-a-driver.md", Kind::Cases),
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Msrv,
    Cases,
    CheckSummary,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Msrv => "the MSRV (e.g. \"Rust 1.x or newer\")",
            Kind::Cases => "the conformance case count (\"N cases\")",
            Kind::CheckSummary => "a `storagectl check` sample with its summary line",
        }
    }
}

/// What the check found.
pub struct Report {
    /// The number of conformance cases in the suite's list.
    pub cases: usize,
    /// The workspace MSRV.
    pub msrv: String,
    /// One line per disagreement, each naming a file and line.
    pub findings: Vec<String>,
}

/// Runs every check against the workspace at `root`.
pub fn check(root: &Path) -> Result<Report, Error> {
    let mut findings = Vec::new();
    let cases = case_list(root, &mut findings)?;
    let (msrv, msrv_line, members) = workspace_manifest(root)?;
    check_members(root, &members, &mut findings);
    check_dependencies(root, &msrv, msrv_line, &mut findings);

    let mut files = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| format!("docs/{}", e.file_name().to_string_lossy()))
        .collect();
    let mut drivers: Vec<String> = std::fs::read_dir(root.join("docs/drivers"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| format!("docs/drivers/{}", e.file_name().to_string_lossy()))
        .collect();
    docs.append(&mut drivers);
    docs.sort();
    files.extend(docs);
    let names: BTreeSet<&str> = cases.iter().map(String::as_str).collect();
    let mut seen: BTreeSet<(String, Kind)> = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file))?;
        for kind in check_doc(file, &text, &msrv, &names, &mut findings) {
            seen.insert((file.clone(), kind));
        }
    }
    for (file, kind) in REQUIRED {
        if !seen.contains(&((*file).to_owned(), *kind)) {
            findings.push(format!("{file}: states nowhere {}", kind.describe()));
        }
    }
    Ok(Report {
        cases: cases.len(),
        msrv,
        findings,
    })
}

/// 1-based line number of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// The case names of the suite's list, in order; checked against `cases.rs`.
fn case_list(root: &Path, findings: &mut Vec<String>) -> Result<Vec<String>, Error> {
    let lib = std::fs::read_to_string(root.join(SUITE_LIB))?;
    let start = lib
        .find(LIST_MACRO)
        .and_then(|m| lib[m..].find(LIST_ARM).map(|a| m + a + LIST_ARM.len()))
        .ok_or_else(|| format!("{SUITE_LIB}: no `{LIST_ARM}` list in `{LIST_MACRO}`"))?;
    let end = lib[start..].find(");").map(|e| start + e).ok_or_else(|| {
        format!(
            "{SUITE_LIB}:{}: the case list does not end",
            line_of(&lib, start)
        )
    })?;
    let mut cases: Vec<String> = Vec::new();
    let mut first_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut offset = start;
    for raw in lib[start..end].split_inclusive('\n') {
        let code = raw.split("//").next().unwrap_or("");
        for name in code.split(|c: char| c == ',' || c.is_whitespace()) {
            if name.is_empty() {
                continue;
            }
            let line = line_of(&lib, offset);
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                findings.push(format!(
                    "{SUITE_LIB}:{line}: `{name}` in the case list is not a case name"
                ));
                continue;
            }
            if let Some(first) = first_at.get(name) {
                findings.push(format!(
                    "{SUITE_LIB}:{line}: case `{name}` is listed twice (first on line {first})"
                ));
                continue;
            }
            first_at.insert(name.to_owned(), line);
            cases.push(name.to_owned());
        }
        offset += raw.len();
    }

    let src = std::fs::read_to_string(root.join(SUITE_CASES))?;
    let mut fns = BTreeSet::new();
    for (i, line) in src.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("pub async fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !first_at.contains_key(&name) {
                findings.push(format!(
                    "{SUITE_CASES}:{}: case `{name}` is missing from the list in {SUITE_LIB} \
                     (`{LIST_MACRO}`), so no driver runs it",
                    i + 1
                ));
            }
            fns.insert(name);
        }
    }
    for (name, line) in &first_at {
        if !fns.contains(name) {
            findings.push(format!(
                "{SUITE_LIB}:{line}: case `{name}` has no `pub async fn {name}` in {SUITE_CASES}"
            ));
        }
    }
    Ok(cases)
}

/// The `key = "value"` of a manifest line, if it has that key.
fn toml_string<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line
        .trim()
        .strip_prefix(key)?
        .trim_start()
        .strip_prefix('=')?;
    rest.trim().strip_prefix('"')?.split('"').next()
}

/// The workspace `rust-version` (and its line) and the member directories.
fn workspace_manifest(root: &Path) -> Result<(String, usize, Vec<String>), Error> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let mut section = "";
    let mut msrv = None;
    let mut members = Vec::new();
    let mut in_members = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') && !in_members {
            section = t;
            continue;
        }
        if section == "[workspace.package]" {
            if let Some(v) = toml_string(t, "rust-version") {
                msrv = Some((v.to_owned(), i + 1));
            }
        }
        if section == "[workspace]" && (in_members || t.starts_with("members")) {
            in_members = !t.contains(']');
            for (j, part) in t.split('"').enumerate() {
                if j % 2 == 1 {
                    members.push(part.to_owned());
                }
            }
        }
    }
    let (msrv, line) = msrv.ok_or(
        "Cargo.toml: no `rust-version = \"...\"` in [workspace.package]: that is where the \
         MSRV is set",
    )?;
    if version(&msrv).is_none() {
        return Err(format!("Cargo.toml:{line}: rust-version {msrv:?} is not a version").into());
    }
    if members.is_empty() {
        return Err("Cargo.toml: no [workspace] members".into());
    }
    Ok((msrv, line, members))
}

/// Every member inherits the workspace `rust-version`, and says nothing else.
fn check_members(root: &Path, members: &[String], findings: &mut Vec<String>) {
    for member in members {
        let file = format!("{member}/Cargo.toml");
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
            findings.push(format!("{file}: cannot be read"));
            continue;
        };
        let mut section = "";
        let mut stated = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with('[') {
                section = t;
                continue;
            }
            if section != "[package]" || !t.starts_with("rust-version") {
                continue;
            }
            stated = true;
            let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            if compact != "rust-version.workspace=true"
                && compact != "rust-version={workspace=true}"
            {
                findings.push(format!(
                    "{file}:{}: `{t}`: write `rust-version.workspace = true`; the MSRV is set \
                     once, in the root Cargo.toml's [workspace.package]",
                    i + 1
                ));
            }
        }
        if !stated {
            findings.push(format!(
                "{file}: [package] has no `rust-version.workspace = true`"
            ));
        }
    }
}

/// `1.x` or `1.x.y` as numbers (a missing patch is 0).
fn version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().unwrap_or(Some(0))?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// The MSRV is not below what any package of the resolved graph declares.
fn check_dependencies(root: &Path, msrv: &str, msrv_line: usize, findings: &mut Vec<String>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1"])
        .output();
    let meta = match out {
        Ok(o) if o.status.success() => serde_json::from_slice::<serde_json::Value>(&o.stdout),
        Ok(o) => {
            findings.push(format!(
                "cargo metadata failed, the dependencies' rust-version is unchecked: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            findings.push(format!("cargo metadata could not run: {e}"));
            return;
        }
    };
    let Ok(meta) = meta else {
        findings.push("cargo metadata printed no JSON".into());
        return;
    };
    let ids = |key: &str| -> BTreeSet<String> {
        meta[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let members = ids("workspace_members");
    let resolved: BTreeSet<String> = meta["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    let Some(ours) = version(msrv) else { return };
    let mut highest: Option<((u64, u64, u64), String)> = None;
    for p in meta["packages"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or("");
        if members.contains(id) || !resolved.contains(id) {
            continue;
        }
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        let Some(v) = version(rv) else { continue };
        if highest.as_ref().is_none_or(|(h, _)| v > *h) {
            let name = format!(
                "{} {} (rust-version {rv})",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?")
            );
            highest = Some((v, name));
        }
    }
    if let Some((v, name)) = highest {
        if v > ours {
            findings.push(format!(
                "Cargo.toml:{msrv_line}: rust-version {msrv} is below what the dependency \
                 {name} requires; raise the MSRV to at least that"
            ));
        }
    }
}

/// Checks one markdown file; returns the kinds of statement it makes.
fn check_doc(
    file: &str,
    text: &str,
    msrv: &str,
    cases: &BTreeSet<&str>,
    findings: &mut Vec<String>,
) -> BTreeSet<Kind> {
    let total = cases.len();
    let mut kinds = BTreeSet::new();
    // Rows of the current fenced block that look like `storagectl check` table rows.
    let mut in_fence = false;
    let mut rows: Vec<(usize, String, String)> = Vec::new();
    let mut abridged = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            rows.clear();
            abridged = false;
            continue;
        }
        for v in msrv_statements(line) {
            kinds.insert(Kind::Msrv);
            if v != msrv {
                findings.push(format!(
                    "{file}:{n}: states Rust {v} as the minimum, but the MSRV (rust-version \
                     in Cargo.toml's [workspace.package]) is {msrv}"
                ));
            }
        }
        for c in case_statements(line) {
            kinds.insert(Kind::Cases);
            if c != total {
                findings.push(format!(
                    "{file}:{n}: states {c} cases, but the suite has {total} (the list in \
                     {SUITE_LIB}); reword it if that number is not the suite's size"
                ));
            }
        }
        if !in_fence {
            continue;
        }
        if line.trim() == "..." {
            abridged = true;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 3
            && matches!(cols[1], "pass" | "skip" | "FAIL")
            && cols[2].ends_with('s')
            && cols[2].trim_end_matches('s').parse::<f64>().is_ok()
        {
            if !cases.contains(cols[0]) {
                findings.push(format!(
                    "{file}:{n}: sample row `{}` is not a case of the suite",
                    cols[0]
                ));
            }
            rows.push((n, cols[0].to_owned(), cols[1].to_owned()));
        }
        if line.contains("(removed):") {
            kinds.insert(Kind::CheckSummary);
            let (Some(p), Some(s), Some(f)) = (
                number_before(line, " passed,"),
                number_before(line, " skipped,"),
                number_before(line, " failed"),
            ) else {
                findings.push(format!(
                    "{file}:{n}: a `storagectl check` summary without `N passed, M skipped, K \
                     failed`"
                ));
                continue;
            };
            if p + s + f != total {
                findings.push(format!(
                    "{file}:{n}: the summary counts {} cases ({p} passed, {s} skipped, {f} \
                     failed), but the suite has {total} (the list in {SUITE_LIB})",
                    p + s + f
                ));
            }
            let count = |status: &str| rows.iter().filter(|r| r.2 == status).count();
            for (status, stated) in [("pass", p), ("skip", s), ("FAIL", f)] {
                if count(status) > stated {
                    findings.push(format!(
                        "{file}:{n}: the sample shows {} `{status}` rows, the summary says {stated}",
                        count(status)
                    ));
                }
            }
            if !abridged && rows.len() != p + s + f {
                findings.push(format!(
                    "{file}:{n}: the sample shows {} rows, not abridged with `...`, but the \
                     summary counts {}",
                    rows.len(),
                    p + s + f
                ));
            }
            let mut seen = BTreeSet::new();
            for (row_line, name, _) in &rows {
                if !seen.insert(name.as_str()) {
                    findings.push(format!("{file}:{row_line}: sample row `{name}` repeated"));
                }
            }
        }
    }
    kinds
}

/// The decimal number that ends right before `marker` in `line`.
fn number_before(line: &str, marker: &str) -> Option<usize> {
    let at = line.find(marker)?;
    let digits: String = line[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// Maximal runs of `[0-9.]` in `line` that stand alone: (start, end) byte offsets, a
/// sentence's full stop left out. A number touching a word or another number (`1.85x`,
/// `v1`, `62/62`, `5,100`) is no statement.
fn numeric_runs(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let glued = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'/';
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            && (i == 0
                || !(glued(bytes[i - 1])
                    || (matches!(bytes[i - 1], b'.' | b',') && i >= 2 && digit_at(i - 2))));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let mut end = i;
        while end > start && bytes[end - 1] == b'.' {
            end -= 1;
        }
        let alone = match bytes.get(i) {
            None => true,
            Some(b',') => !digit_at(i + 1),
            Some(&b) => !glued(b),
        };
        if alone {
            runs.push((start, end));
        }
    }
    runs
}

/// Versions stated as the minimum Rust in `line` (see the module docs).
fn msrv_statements(line: &str) -> Vec<String> {
    let lower = line.to_ascii_lowercase();
    let mut out = Vec::new();
    for (start, end) in numeric_runs(line) {
        let v = &line[start..end];
        if !v.starts_with("1.") || version(v).is_none() {
            continue;
        }
        let before = lower[..start].trim_end_matches([' ', '*', '`', ':', '"', '=', '(']);
        let after = lower[end..]
            .trim_start_matches(['*', '`', '"'])
            .trim_start();
        let named = ["rust", "msrv", "rust-version", "msrv is"]
            .iter()
            .any(|k| before.ends_with(k));
        let minimum = after.starts_with("or newer") || after.starts_with("or later");
        if named || minimum {
            out.push(v.to_owned());
        }
    }
    out
}

/// Case counts stated in `line`: a number directly followed by ` cases` or ` conformance`.
fn case_statements(line: &str) -> Vec<usize> {
    let lower = line.to_ascii_lowercase();
    numeric_runs(line)
        .into_iter()
        .filter(|&(_, end)| {
            let after = &lower[end..];
            after.starts_with(" cases") || after.starts_with(" conformance")
        })
        .filter_map(|(start, end)| line[start..end].parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_msrv_statements_only() {
        assert_eq!(
            msrv_statements("a toolchain (1.85 or newer), here"),
            ["1.85"]
        );
        assert_eq!(msrv_statements("**MSRV: Rust 1.94.1**"), ["1.94.1"]);
        assert_eq!(msrv_statements("rust-version = \"1.90\""), ["1.90"]);
        assert!(msrv_statements("only the 1.95 toolchain is installed").is_empty());
        assert!(msrv_statements("stream 1.95x / 1.80x and Rust 2021").is_empty());
    }

    #[test]
    fn reads_case_counts() {
        assert_eq!(case_statements("the suite (64 cases, one"), [64]);
        assert_eq!(case_statements("79 tests (64 conformance, 5 unit"), [64]);
        assert!(case_statements("the 1 GiB cases; 62/62 cases; 5,100 cases").is_empty());
        assert_eq!(case_statements("says 64 cases."), [64]);
        assert_eq!(msrv_statements("needs Rust 1.94.1."), ["1.94.1"]);
        assert_eq!(msrv_statements("Rust 1.94, 1.95"), ["1.94"]);
    }

    #[test]
    fn reads_summaries() {
        let l = "fs driver, scratch prefix /x (removed): 61 passed, 2 skipped, 1 failed in 2s";
        assert_eq!(number_before(l, " passed,"), Some(61));
        assert_eq!(number_before(l, " skipped,"), Some(2));
        assert_eq!(number_before(l, " failed"), Some(1));
    }
}
