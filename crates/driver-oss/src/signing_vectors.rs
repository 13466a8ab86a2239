//! The driver's signer against Aliyun's own SDK: `testdata/signing-vectors.json` holds
//! requests as the driver sends them, signed by `oss2` (V1 and V4, headers and presigned
//! URLs, with and without an STS token, virtual-hosted and path-style) with fixed keys
//! and a frozen clock (`testdata/gen_signing_vectors.py` made it). The signer reads the
//! wall clock, so the check runs in a child process whose clock libfaketime freezes at
//! the vectors' instant.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use driver_api::Parameters;
use serde_json::Value;

use crate::params::OssParams;

/// Set in the child that checks the vectors under the frozen clock.
const FROZEN: &str = "OSS_SIGNING_VECTORS_FROZEN";

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/signing-vectors.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// libfaketime's preload library (Debian's `libfaketime` package), or `FAKETIME_LIB`.
fn libfaketime() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("FAKETIME_LIB")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        candidates.push(PathBuf::from(dir).join("faketime/libfaketime.so.1"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

#[test]
fn signing_vectors_match_oss2() {
    if std::env::var_os(FROZEN).is_some() {
        return check_under_frozen_clock();
    }
    let Some(lib) = libfaketime() else {
        assert!(
            std::env::var_os("OSS_REQUIRE_SIGNING_VECTORS").is_none(),
            "libfaketime is not installed (cargo xtask installs Debian's libfaketime)"
        );
        eprintln!(
            "SKIPPED signing_vectors_match_oss2: libfaketime not found (apt-get install \
             libfaketime, or set FAKETIME_LIB); it freezes the clock the signer reads"
        );
        return;
    };
    let v = vectors();
    let at = v["now_rfc3339"]
        .as_str()
        .unwrap()
        .replace('T', " ")
        .replace('Z', "");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "signing_vectors::signing_vectors_match_oss2",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FROZEN, "1")
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", at)
        .env("TZ", "UTC")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "the frozen-clock check failed");
    assert!(
        stdout.contains("signing vectors match oss2") && stdout.contains("1 passed"),
        "the child did not run the check"
    );
}

/// The parts of a V4 `Authorization` header (their order differs between SDKs).
fn v4_fields(auth: &str) -> BTreeMap<String, String> {
    let rest = auth.strip_prefix("OSS4-HMAC-SHA256 ").unwrap_or(auth);
    let mut m: BTreeMap<String, String> = rest
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    m.entry("AdditionalHeaders".into()).or_default();
    m
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn check_under_frozen_clock() {
    let v = vectors();
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        now,
        v["now"].as_u64().unwrap(),
        "libfaketime did not freeze the clock at the vectors' instant"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let list = v["vectors"].as_array().unwrap();
    for t in list {
        let name = t["name"].as_str().unwrap();
        let mut params = Parameters::new()
            .with("accesskeyid", v["access_key_id"].as_str().unwrap())
            .with("accesskeysecret", v["access_key_secret"].as_str().unwrap())
            .with("region", v["region"].as_str().unwrap())
            .with("bucket", v["bucket"].as_str().unwrap())
            .with("signatureversion", if t["version"] == "v1" { 1 } else { 4 });
        if t["sts"].as_bool().unwrap() {
            params = params.with("securitytoken", v["security_token"].as_str().unwrap());
        }
        let signer = crate::client::signer(&OssParams::parse(params).unwrap());
        let mut req = http::Request::builder()
            .method(t["method"].as_str().unwrap())
            .uri(t["url"].as_str().unwrap());
        let sent: BTreeMap<String, String> = t["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for (k, val) in &sent {
            req = req.header(k, val);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        let expires = t["expires"].as_u64().map(Duration::from_secs);
        rt.block_on(signer.sign(&mut parts, expires)).unwrap();

        if t["kind"] == "header" {
            let expected: BTreeMap<String, String> = t["expected_headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let added: BTreeMap<String, String> = parts
                .headers
                .iter()
                .filter(|(k, _)| !sent.contains_key(k.as_str()))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let same = if t["version"] == "v4" {
                let strip = |m: &BTreeMap<String, String>| {
                    let mut m = m.clone();
                    let auth = m.remove("authorization").unwrap_or_default();
                    (m, v4_fields(&auth))
                };
                strip(&added) == strip(&expected)
            } else {
                added == expected
            };
            if !same {
                failures.push(format!("{name}:\n  oss2: {expected:?}\n  ours: {added:?}"));
            }
        } else {
            let expected: BTreeMap<String, String> = t["expected_query"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let got: BTreeMap<String, String> = parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (decode(k), decode(v))
                })
                .collect();
            if got != expected {
                failures.push(format!("{name}:\n  oss2: {expected:?}\n  ours: {got:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ from oss2:\n{}",
        failures.len(),
        list.len(),
        failures.join("\n")
    );
    println!(
        "{} signing vectors match oss2 ({})",
        list.len(),
        v["generator"].as_str().unwrap()
    );
}
