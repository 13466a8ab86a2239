//! The `storagectl` binary, run as an operator would: every command over the filesystem
//! driver (and what can be shown in one process over inmemory), Distribution config
//! files, environment overrides, bad configuration, `check`, `sync` resume, `gc` and Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_storagectl");

/// storagectl in `dir`, with no inherited REGISTRY_* configuration.
fn sc(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c
}

fn json_of(out: &[u8]) -> Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// A deterministic payload of `n` bytes.
fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A Distribution config as registries write them: everything but `storage` is ignored,
/// and the storage section holds the driver next to Distribution's settings keys.
fn distribution_config(root: &Path, delete: bool, redirect_disable: bool) -> String {
    format!(
        r#"version: 0.1
log:
  accesslog:
    disabled: true
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {root}
    maxthreads: 100
  delete:
    enabled: {delete}
  redirect:
    disable: {redirect_disable}
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
  tag:
    concurrencylimit: 8
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"#,
        root = root.display()
    )
}

#[test]
fn every_command_over_the_filesystem_driver() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = payload(3 * 1024 * 1024 + 17, 1); // crosses the 1 MiB chunk size
    std::fs::write(dir.join("big.bin"), &big).unwrap();

    // The embedded default announces itself the first time (./data does not exist yet).
    sc(dir)
        .args(["put", "big.bin", "/repo/big"])
        .assert()
        .success()
        .stderr(contains("using the filesystem driver at ./data"));
    assert!(dir.join("data/repo/big").exists());
    sc(dir)
        .args(["put", "-", "/repo/small"])
        .write_stdin("hello from stdin")
        .assert()
        .success()
        .stderr(contains("using the filesystem driver").not());

    sc(dir)
        .args(["cat", "/repo/small"])
        .assert()
        .success()
        .stdout("hello from stdin");
    sc(dir)
        .args(["cat", "--offset", "6", "/repo/small"])
        .assert()
        .success()
        .stdout("from stdin");
    sc(dir).args(["get", "/repo/big"]).assert().success();
    assert_eq!(std::fs::read(dir.join("big")).unwrap(), big);
    sc(dir)
        .args(["get", "/repo/big", "copy.bin"])
        .assert()
        .success();
    assert_eq!(std::fs::read(dir.join("copy.bin")).unwrap(), big);
    let out = sc(dir).args(["get", "/repo/small", "-"]).output().unwrap();
    assert_eq!(out.stdout, b"hello from stdin");

    sc(dir)
        .args(["ls", "/repo"])
        .assert()
        .success()
        .stdout("/repo/big\n/repo/small\n");
    sc(dir)
        .args(["ls", "-l", "/repo"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(
                r"(?m)^-\s+3145745 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /repo/big$",
            )
            .unwrap(),
        );
    sc(dir)
        .args(["ls", "-R"])
        .assert()
        .success()
        .stdout("/repo/\n/repo/big\n/repo/small\n");
    let ls = json_of(
        &sc(dir)
            .args(["ls", "--json", "/repo"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(ls[1]["path"], "/repo/small");
    assert_eq!(ls[1]["size"], 16);

    let st = json_of(
        &sc(dir)
            .args(["stat", "--json", "/repo/big"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(st["size"], big.len() as u64);
    assert_eq!(st["is_dir"], false);
    let st = json_of(
        &sc(dir)
            .args(["stat", "--json", "/repo"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(st["is_dir"], true);

    let du = json_of(&sc(dir).args(["du", "--json", "/"]).output().unwrap().stdout);
    assert_eq!(du["bytes"], big.len() as u64 + 16);
    assert_eq!(du["files"], 2);
    sc(dir)
        .args(["du", "/repo/big"])
        .assert()
        .success()
        .stdout(contains("3145745\t3.0 MiB\t1 files"));

    sc(dir)
        .args(["mv", "/repo/small", "/other/moved"])
        .assert()
        .success();
    sc(dir)
        .args(["walk", "/"])
        .assert()
        .success()
        .stdout("/other/\n/other/moved\n/repo/\n/repo/big\n");
    sc(dir)
        .args(["walk", "--files", "--start-after", "/other/moved"])
        .assert()
        .success()
        .stdout("/repo/big\n");
    let walked = sc(dir).args(["walk", "--json"]).output().unwrap().stdout;
    let lines: Vec<Value> = walked
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(json_of)
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["path"], "/repo/big");

    // The filesystem driver has no redirect URLs: said plainly, exit 1.
    sc(dir)
        .args(["url", "/repo/big"])
        .assert()
        .code(1)
        .stderr(contains("has no redirect URLs"));

    // rm: files directly, directories only with -r.
    sc(dir).args(["rm", "/other/moved"]).assert().success();
    sc(dir)
        .args(["rm", "/repo"])
        .assert()
        .code(1)
        .stderr(contains("/repo is a directory: use rm -r"));
    sc(dir).args(["rm", "-r", "/repo"]).assert().success();
    sc(dir).args(["ls"]).assert().success().stdout("");

    // Operation failures exit 1 and name the driver and path.
    sc(dir)
        .args(["stat", "/missing"])
        .assert()
        .code(1)
        .stderr(contains("filesystem: path not found: /missing"));
    sc(dir)
        .args(["get", "/missing"])
        .assert()
        .code(1)
        .stderr(contains("path not found"));
    assert!(!dir.join("missing").exists());
    assert!(!dir.join("missing.storagectl-part").exists());
    sc(dir)
        .args(["put", "big.bin", "/../escape"])
        .assert()
        .code(1)
        .stderr(contains("invalid path"));
    sc(dir)
        .args(["put", "nope.bin", "/x"])
        .assert()
        .code(1)
        .stderr(contains("nope.bin"));
    // Usage errors exit 2.
    sc(dir).args(["put", "only-one-arg"]).assert().code(2);
    sc(dir).args(["frobnicate"]).assert().code(2);
}

#[test]
fn offset_past_the_end_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    sc(tmp.path())
        .args(["-q", "put", "-", "/f"])
        .write_stdin("abc")
        .assert()
        .success();
    sc(tmp.path())
        .args(["cat", "--offset", "10", "/f"])
        .assert()
        .code(1)
        .stderr(contains("invalid offset 10 for /f (size 3)"));
}

#[test]
fn drivers_completions_and_man_page() {
    let tmp = tempfile::tempdir().unwrap();
    let d = json_of(
        &sc(tmp.path())
            .args(["drivers", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    let names: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"filesystem") && names.contains(&"inmemory"),
        "{names:?}"
    );
    sc(tmp.path())
        .arg("drivers")
        .assert()
        .success()
        .stdout(contains("rootdirectory").and(contains("/var/lib/registry")));
    sc(tmp.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(contains("storagectl"));
    sc(tmp.path())
        .arg("man")
        .assert()
        .success()
        .stdout(contains(".TH storagectl"));
}

#[test]
fn distribution_config_file_is_used_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("registry-root");
    let cfg = tmp.path().join("config.yml");
    std::fs::write(&cfg, distribution_config(&root, true, false)).unwrap();
    sc(tmp.path())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "put",
            "-",
            "/docker/registry/v2/x",
        ])
        .write_stdin("layer")
        .assert()
        .success()
        .stderr("");
    assert_eq!(
        std::fs::read(root.join("docker/registry/v2/x")).unwrap(),
        b"layer"
    );
    // REGISTRY_CONFIGURATION_PATH works as for the registry itself.
    sc(tmp.path())
        .env("REGISTRY_CONFIGURATION_PATH", &cfg)
        .args(["cat", "/docker/registry/v2/x"])
        .assert()
        .success()
        .stdout("layer");
    let shown = json_of(
        &sc(tmp.path())
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "config",
                "show",
                "--json",
            ])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(shown["driver"], "filesystem");
    assert_eq!(shown["parameters"]["maxthreads"], 100);
    assert_eq!(shown["delete"]["enabled"], true);
    // delete.enabled: true permits rm.
    sc(tmp.path())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "rm",
            "/docker/registry/v2/x",
        ])
        .assert()
        .success();
}

#[test]
fn delete_and_redirect_settings_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    let cfg = tmp.path().join("config.yml");
    std::fs::write(&cfg, distribution_config(&root, false, true)).unwrap();
    let c = cfg.to_str().unwrap();
    sc(tmp.path())
        .args(["-c", c, "put", "-", "/blob"])
        .write_stdin("x")
        .assert()
        .success();
    sc(tmp.path())
        .args(["-c", c, "rm", "/blob"])
        .assert()
        .code(1)
        .stderr(contains("deleting is disabled").and(contains("storage.delete.enabled")));
    assert!(root.join("blob").exists(), "nothing was deleted");
    sc(tmp.path())
        .args(["-c", c, "url", "/blob"])
        .assert()
        .code(1)
        .stderr(contains(
            "redirects are disabled by storage.redirect.disable",
        ));
    // Distribution's environment override turns deletes on.
    sc(tmp.path())
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .args(["-c", c, "rm", "/blob"])
        .assert()
        .success();
    assert!(!root.join("blob").exists());
}

#[test]
fn environment_overrides_as_distribution_defines_them() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let cfg = tmp.path().join("config.yml");
    std::fs::write(&cfg, distribution_config(&a, true, false)).unwrap();
    // REGISTRY_STORAGE_<DRIVER>_<KEY> overrides a parameter of the file...
    sc(tmp.path())
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &b)
        .args(["-c", cfg.to_str().unwrap(), "put", "-", "/f"])
        .write_stdin("to b")
        .assert()
        .success();
    assert!(b.join("f").exists() && !a.join("f").exists());
    // ...and REGISTRY_STORAGE switches the driver, with parameters from the environment.
    let shown = json_of(
        &sc(tmp.path())
            .env("REGISTRY_STORAGE", "inmemory")
            .args(["-c", cfg.to_str().unwrap(), "config", "show", "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(shown["driver"], "inmemory");
    assert_eq!(shown["parameters"], serde_json::json!({}));
    // Without a file, the environment alone configures the storage.
    sc(tmp.path())
        .env("REGISTRY_STORAGE", "filesystem")
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &a)
        .args(["put", "-", "/g"])
        .write_stdin("to a")
        .assert()
        .success()
        .stderr("");
    assert!(a.join("g").exists());
    // A wrongly typed override names the variable and the key.
    sc(tmp.path())
        .env("REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS", "lots")
        .args(["-c", cfg.to_str().unwrap(), "ls"])
        .assert()
        .code(2)
        .stderr(contains(
            "environment variable REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS: storage.filesystem.maxthreads: expected a non-negative integer, got a string",
        ));
    // --param beats both; --no-env ignores the environment.
    sc(tmp.path())
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &a)
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "--param",
            &format!("rootdirectory={}", b.display()),
            "cat",
            "/f",
        ])
        .assert()
        .success()
        .stdout("to b");
    sc(tmp.path())
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &b)
        .args(["-c", cfg.to_str().unwrap(), "--no-env", "ls"])
        .assert()
        .success()
        .stdout("/g\n"); // the file's root (a), not the variable's (b)
}

#[test]
fn bad_configuration_gets_one_clear_error_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write("two.yml", "storage:\n  filesystem: {}\n  inmemory: {}\n"),
            "two.yml: storage: expected exactly one storage driver, found filesystem, inmemory",
        ),
        (
            write("none.yml", "version: 0.1\nstorage:\n  delete: {enabled: true}\n"),
            "none.yml: storage: expected one storage driver",
        ),
        (
            write("unknown.yml", "storage:\n  nosuch: {}\n"),
            "unknown.yml: storage: nosuch: no storage driver registered under this name (registered: azure, filesystem, gcs, inmemory, oss, rados, s3, swift)",
        ),
        (
            write("type.yml", "storage:\n  filesystem:\n    maxthreads: many\n"),
            "type.yml: storage.filesystem.maxthreads: expected a non-negative integer, got a string",
        ),
        (
            write("key.yml", "storage:\n  filesystem:\n    rootdir: /x\n"),
            "key.yml: storage.filesystem.rootdir: expected",
        ),
        (
            write("delete.yml", "storage:\n  inmemory:\n  delete:\n    enabled: sometimes\n"),
            "delete.yml: storage.delete.enabled: expected true or false, found a string",
        ),
        (
            write("yaml.yml", "storage:\n  filesystem: {rootdirectory: /x\n"),
            "yaml.yml: not valid YAML",
        ),
        (dir.join("absent.yml"), "absent.yml: cannot read configuration"),
    ];
    for (file, expected) in cases {
        sc(dir)
            .args(["--config", file.to_str().unwrap(), "ls"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(contains(expected));
    }
    sc(dir)
        .args(["--driver", "nosuch", "ls"])
        .assert()
        .code(2)
        .stderr(contains(
            "command line: storage: nosuch: no storage driver registered",
        ));
    sc(dir)
        .args(["--driver", "filesystem", "--param", "oops", "ls"])
        .assert()
        .code(2)
        .stderr(contains("--param \"oops\": expected key=value"));
}

#[test]
fn secrets_are_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config.yml");
    std::fs::write(
        &cfg,
        "storage:\n  s3:\n    accesskey: AKIAEXAMPLE\n    secretkey: hunter2-secret\n    region: us-east-1\nmiddleware:\n  storage:\n    - name: cloudfront\n      options:\n        privatekey: /etc/key.pem\n        keypairid: ABC\n",
    )
    .unwrap();
    let out = sc(tmp.path())
        .args(["-c", cfg.to_str().unwrap(), "config", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("hunter2") && !text.contains("AKIAEXAMPLE"),
        "{text}"
    );
    assert!(text.contains("region: us-east-1"), "{text}");
    assert!(text.contains("- cloudfront"), "{text}");
    // A parameter error from the driver names the key, never a value.
    let bad = tmp.path().join("bad.yml");
    std::fs::write(
        &bad,
        "storage:\n  s3:\n    accesskey: AKIAEXAMPLE\n    secretkey: hunter2-secret\n    region: us-east-1\n    bucket: b\n    chunksize: 1024\n",
    )
    .unwrap();
    let err = sc(tmp.path())
        .args(["-c", bad.to_str().unwrap(), "ls"])
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(2));
    let e = String::from_utf8_lossy(&err.stderr);
    assert!(
        e.contains("storage.s3.chunksize: expected integer in 5242880..="),
        "{e}"
    );
    assert!(!e.contains("hunter2") && !e.contains("AKIAEXAMPLE"), "{e}");
    // Middleware is parsed and reported, not silently dropped.
    let out = sc(tmp.path())
        .args(["-c", cfg.to_str().unwrap(), "config", "show"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("storage middleware cloudfront not applied"),
        "{e}"
    );
}

#[test]
fn check_is_green_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Other data in the same storage must survive the check.
    sc(dir)
        .args(["-q", "put", "-", "/keep/me"])
        .write_stdin("precious")
        .assert()
        .success();
    let out = sc(dir).args(["check", "--json"]).output().unwrap();
    let report = json_of(&out.stdout);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["passed"], driver_testsuite::all_cases().len());
    sc(dir).args(["ls"]).assert().success().stdout("/keep\n");
    sc(dir)
        .args(["cat", "/keep/me"])
        .assert()
        .success()
        .stdout("precious");

    // The human table, on the inmemory driver.
    sc(dir)
        .args(["--driver", "inmemory", "check", "--filter", "write_read"])
        .assert()
        .success()
        .stdout(
            contains("write_read1")
                .and(contains("pass"))
                .and(contains("0 failed")),
        );
}

#[test]
fn bench_prints_a_table_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sc(tmp.path())
        .args([
            "--driver",
            "inmemory",
            "bench",
            "--json",
            "--time",
            "0.05",
            "--sizes",
            "0,1K,1M",
            "--walk-files",
            "200",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_of(&out.stdout);
    let names: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "put_get/0B",
            "put_get/1KiB",
            "put_get/1MiB",
            "stream/0B",
            "stream/1KiB",
            "stream/1MiB",
            "list/5",
            "list/50",
            "delete/5",
            "delete/50",
            "walk/200"
        ]
    );
    assert!(r["results"][2]["mb_per_sec"].as_f64().unwrap() > 0.0);
    sc(tmp.path())
        .args([
            "bench",
            "--time",
            "0.02",
            "--sizes",
            "1K",
            "--walk-files",
            "0",
        ])
        .assert()
        .success()
        .stdout(contains("ops/s").and(contains("put_get/1KiB")));
    // The scratch prefix is gone.
    sc(tmp.path()).args(["ls"]).assert().success().stdout("");
    sc(tmp.path())
        .args(["bench", "--sizes", "huge"])
        .assert()
        .code(2)
        .stderr(contains("\"huge\" is not a size"));
}

#[test]
fn sync_copies_a_tree_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src_root = dir.join("src");
    let dst_root = dir.join("dst");
    let old = dir.join("old.yml");
    std::fs::write(
        &old,
        format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n",
            src_root.display()
        ),
    )
    .unwrap();
    // A registry-like tree: several directories, empty, small and multi-chunk files.
    let mut files = Vec::new();
    for i in 0..12usize {
        let path = format!("docker/registry/v2/blobs/sha256/{i:02}/data");
        let size = [0, 1, 4096, 1 << 20, (1 << 20) + 1, 3 << 20][i % 6];
        let p = src_root.join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, payload(size, i as u8)).unwrap();
        files.push((path, size));
    }
    let dst_spec = "filesystem:/mirror";
    let run = |extra: &[&str]| {
        let mut c = sc(dir);
        c.args(["sync", &format!("{}:/docker", old.display()), dst_spec])
            .args([
                "--dst-param",
                &format!("rootdirectory={}", dst_root.display()),
            ])
            .args(extra);
        c
    };
    let total: usize = files.iter().map(|f| f.1).sum();
    run(&["--dry-run"])
        .assert()
        .success()
        .stdout(contains("would copy 12 files"));
    assert!(!dst_root.exists(), "a dry run writes nothing");
    run(&["-j", "4"])
        .assert()
        .success()
        .stdout(contains(format!("copied 12 files ({total} bytes")).and(contains("skipped 0")));
    for (path, size) in &files {
        let rel = path.strip_prefix("docker/").unwrap();
        let got = std::fs::read(dst_root.join("mirror").join(rel)).unwrap();
        assert_eq!(got.len(), *size);
        assert_eq!(got, std::fs::read(src_root.join(path)).unwrap());
    }
    // Second run: nothing to do.
    run(&[])
        .assert()
        .success()
        .stdout(contains("copied 0 files (0 bytes").and(contains("skipped 12 unchanged")));
    // An interrupted earlier run (a missing file) or a changed size is copied again.
    std::fs::remove_file(dst_root.join("mirror/registry/v2/blobs/sha256/03/data")).unwrap();
    std::fs::write(
        dst_root.join("mirror/registry/v2/blobs/sha256/05/data"),
        b"short",
    )
    .unwrap();
    let r = json_of(&run(&["--json"]).output().unwrap().stdout);
    assert_eq!(r["copied_files"], 2);
    assert_eq!(
        (r["new_files"].clone(), r["updated_files"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(r["skipped_files"], 10);
    assert_eq!(r["copied_bytes"], (1u64 << 20) + (3 << 20));
    // The configured storage (here: --driver/--param) works as a side too.
    sc(dir)
        .args([
            "--driver",
            "filesystem",
            "--param",
            &format!("rootdirectory={}", dst_root.display()),
        ])
        .args(["sync", "/mirror", "filesystem:/back"])
        .args([
            "--dst-param",
            &format!("rootdirectory={}", src_root.display()),
        ])
        .assert()
        .success()
        .stdout(contains("copied 12 files"));
    assert!(src_root
        .join("back/registry/v2/blobs/sha256/11/data")
        .exists());
    sc(dir)
        .args(["sync", "nosuchdriver:/", "/x"])
        .assert()
        .code(2)
        .stderr(contains("nosuchdriver: no storage driver registered"));
    sc(dir).args(["sync", "relative", "/x"]).assert().code(2);
}

/// Distribution's path of a blob's data.
fn blob_path(data: &[u8]) -> String {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// The second pass of a two-phase migration: a moved tag (a link of the same size), a
/// same-size rewrite of a large file and a deleted blob at the source all reach the
/// destination, and nothing else is copied.
#[test]
fn sync_carries_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (src_root, dst_root) = (dir.join("src"), dir.join("dst"));
    let yml = |name: &str, root: &Path| {
        let f = dir.join(name);
        let text = format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        );
        std::fs::write(&f, text).unwrap();
        f
    };
    let (a, b) = (yml("a.yml", &src_root), yml("b.yml", &dst_root));
    let put = |rel: &str, data: &[u8]| {
        let p = src_root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    let layers: Vec<Vec<u8>> = (0..3u8).map(|i| payload(100_000 + i as usize, i)).collect();
    for l in &layers {
        put(&blob_path(l), l);
    }
    let link = |data: &[u8]| {
        let p = blob_path(data);
        let hex = p.rsplit('/').nth(1).unwrap().to_owned();
        format!("sha256:{hex}")
    };
    let tag = "docker/registry/v2/repositories/app/_manifests/tags/latest/current/link";
    put(tag, link(&layers[0]).as_bytes());
    let big = "docker/registry/v2/repositories/app/_uploads/u1/data";
    put(big, &payload(200_000, 7));
    let sync = |extra: &[&str]| {
        let mut c = sc(dir);
        c.args([
            "sync",
            &format!("{}:/docker", a.display()),
            &format!("{}:/docker", b.display()),
            "--json",
        ])
        .args(extra);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Both sides come from files: nothing is said about a default configuration.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("no configuration given"), "{err}");
        json_of(&out.stdout)
    };
    let dst = |rel: &str| std::fs::read(dst_root.join(rel)).ok();
    let r = sync(&[]);
    assert_eq!(
        (r["copied_files"].clone(), r["new_files"].clone()),
        (5.into(), 5.into())
    );

    // Nothing changed: nothing copied (the link is compared by content, the blobs by
    // path and size, the large file by size and age).
    let r = sync(&[]);
    assert_eq!(r["copied_files"], 0, "{r}");
    assert_eq!(
        (r["skipped_files"].clone(), r["compared_files"].clone()),
        (5.into(), 1.into())
    );

    // Phase two's changes: the tag moves (same 71 bytes), the large file is rewritten
    // with its size kept, a blob is deleted.
    put(tag, link(&layers[1]).as_bytes());
    assert_eq!(link(&layers[0]).len(), link(&layers[1]).len());
    std::thread::sleep(std::time::Duration::from_millis(20));
    put(big, &payload(200_000, 8));
    std::fs::remove_file(src_root.join(blob_path(&layers[2]))).unwrap();

    let r = sync(&["--dry-run"]);
    assert_eq!(
        (r["planned_files"].clone(), r["updated_files"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(
        dst(tag).unwrap(),
        link(&layers[0]).as_bytes(),
        "a dry run writes nothing"
    );

    let r = sync(&[]);
    assert_eq!(
        (r["copied_files"].clone(), r["updated_files"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(
        (r["extra_files"].clone(), r["deleted_files"].clone()),
        (1.into(), 0.into())
    );
    assert_eq!(dst(tag).unwrap(), link(&layers[1]).as_bytes());
    assert_eq!(dst(big).unwrap(), payload(200_000, 8));
    assert!(
        dst(&blob_path(&layers[2])).is_some(),
        "kept without --delete"
    );

    let r = sync(&["--delete"]);
    assert_eq!(
        (r["copied_files"].clone(), r["deleted_files"].clone()),
        (0.into(), 1.into())
    );
    assert!(dst(&blob_path(&layers[2])).is_none());
    for l in &layers[..2] {
        assert_eq!(dst(&blob_path(l)).unwrap(), *l);
    }

    // A same-size change at the destination that is newer than the source is only seen
    // with --checksum.
    std::fs::write(dst_root.join(big), payload(200_000, 9)).unwrap();
    assert_eq!(sync(&[])["copied_files"], 0);
    let r = sync(&["--checksum"]);
    assert_eq!(
        (r["copied_files"].clone(), r["compared_files"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(dst(big).unwrap(), payload(200_000, 8));

    // The text summary says what was updated.
    std::fs::write(src_root.join(tag), link(&layers[0])).unwrap();
    let out = sc(dir)
        .args([
            "sync",
            &format!("{}:/docker", a.display()),
            &format!("{}:/docker", b.display()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "copied 1 files (71 bytes, 71 B: 0 new, 1 updated), skipped 3 unchanged, 0 failed"
        ),
        "{text}"
    );
}

#[test]
fn ctrl_c_cancels_an_upload_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // stdin stays open and some data has arrived: the upload is in progress.
    let mut child = StdCommand::new(BIN)
        .current_dir(tmp.path())
        .args([
            "--driver",
            "filesystem",
            "--param",
            &format!("rootdirectory={}", root.display()),
        ])
        .args(["put", "-", "/uploads/x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &payload(3 << 20, 7)).unwrap();
    // Wait until the writer has made its upload file (bytes reached the driver).
    let deadline = Instant::now() + Duration::from_secs(20);
    let uploads = root.join("uploads");
    while std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    // Cancelled, not left half-written: nothing visible, nothing left over.
    let left: Vec<_> = walkdir(&root);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `kill -9` in the middle of a put leaves its upload; `uploads ls` finds it (and a
/// temporary file of an interrupted write), `uploads purge` removes them and nothing else.
#[test]
fn uploads_finds_and_purges_what_a_killed_put_left() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let rootparam = format!("rootdirectory={}", root.display());
    let base = ["--driver", "filesystem", "--param", rootparam.as_str()];
    let keep = tmp.path().join("keep");
    std::fs::write(&keep, b"committed").unwrap();
    assert!(sc(tmp.path())
        .args(base)
        .args(["put", keep.to_str().unwrap(), "/uploads/keep"])
        .output()
        .unwrap()
        .status
        .success());
    let mut child = StdCommand::new(BIN)
        .current_dir(tmp.path())
        .args(base)
        .args(["put", "-", "/uploads/x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &payload(3 << 20, 7)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let upload = root.join("uploads").join("x#upload");
    while !upload.exists() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(StdCommand::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap();
    drop(stdin);
    // A crash between writing a temporary file and renaming it leaves this.
    std::fs::write(root.join("uploads").join("y#tmp.4242.0"), b"torn").unwrap();

    let out = sc(tmp.path())
        .args(base)
        .args(["--json", "uploads", "ls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = json_of(&out.stdout);
    let kinds: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("parked".to_owned(), "/uploads/x".to_owned()),
            ("tempfile".to_owned(), "/uploads/y".to_owned())
        ]
    );
    // Younger than the default 24 h: kept.
    let out = sc(tmp.path())
        .args(base)
        .args(["uploads", "purge"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 0 upload(s)"));
    assert!(upload.exists());
    let out = sc(tmp.path())
        .args(base)
        .args(["uploads", "purge", "--older-than", "0s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("purged 2 upload(s)"), "{text}");
    let left: Vec<_> = walkdir(&root);
    assert_eq!(left, [root.join("uploads").join("keep")], "left: {left:?}");
    let out = sc(tmp.path())
        .args(base)
        .args(["cat", "/uploads/keep"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"committed");
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// `gc` from a Distribution config: Distribution's lines, the summary, what a dry run
/// and a real run do to the tree, and usage errors.
#[test]
fn gc_prints_distributions_lines_and_collects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("registry");
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, distribution_config(&root, true, false)).unwrap();
    let write = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    let digest_of = |p: &str| {
        let hex = p.rsplit('/').nth(1).unwrap().to_owned();
        format!("sha256:{hex}")
    };
    let (layer, config, orphan) = (b"layer".as_slice(), b"{}".as_slice(), b"orphan".as_slice());
    let (lp, cp, op) = (blob_path(layer), blob_path(config), blob_path(orphan));
    for (p, data) in [(&lp, layer), (&cp, config), (&op, orphan)] {
        write(p, data);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":5}}]}}"#,
        digest_of(&cp),
        digest_of(&lp)
    );
    let mp = blob_path(manifest.as_bytes());
    write(&mp, manifest.as_bytes());
    let m = digest_of(&mp);
    let repo = "docker/registry/v2/repositories/app";
    let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
    write(
        &format!("{repo}/_manifests/revisions/sha256/{}/link", hex(&m)),
        m.as_bytes(),
    );
    write(
        &format!("{repo}/_manifests/tags/v1/current/link"),
        m.as_bytes(),
    );
    for d in [digest_of(&lp), digest_of(&cp), digest_of(&op)] {
        write(
            &format!("{repo}/_layers/sha256/{}/link", hex(&d)),
            d.as_bytes(),
        );
    }
    let orphan_digest = digest_of(&op);

    let out = sc(dir)
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "gc",
            "--dry-run",
            "--min-age",
            "0s",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for line in [
        "app".to_owned(),
        format!("app: marking manifest {m}"),
        format!("app: marking blob {}", digest_of(&lp)),
        format!("app: marking blob {}", digest_of(&cp)),
        "3 blobs marked, 1 blobs and 0 manifests eligible for deletion".to_owned(),
        format!("blob eligible for deletion: {orphan_digest}"),
        format!("app: layer link eligible for deletion: {orphan_digest}"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    assert!(root.join(&op).exists(), "a dry run deleted");

    // With the default --min-age, the just-written orphan is spared.
    sc(dir)
        .args(["-c", cfg.to_str().unwrap(), "gc"])
        .assert()
        .success()
        .stdout(contains(
            "1 blobs and 0 manifests unreferenced but changed within --min-age 1h: kept",
        ))
        .stdout(contains(
            "deleted 0 manifests, 0 blobs, 0 layer links; 0 failed",
        ));
    assert!(root.join(&op).exists());

    sc(dir)
        .args(["-c", cfg.to_str().unwrap(), "gc", "--min-age", "0s"])
        .assert()
        .success()
        .stdout(contains(
            "deleted 0 manifests, 1 blobs, 1 layer links; 0 failed",
        ));
    assert!(!root.join(&op).exists());
    assert!(!root
        .join(format!(
            "{repo}/_layers/sha256/{}/link",
            hex(&orphan_digest)
        ))
        .exists());
    for p in [&lp, &cp, &mp] {
        assert!(root.join(p).exists(), "{p} was deleted");
    }

    sc(dir)
        .args(["-c", cfg.to_str().unwrap(), "gc", "--min-age", "soon"])
        .assert()
        .code(2)
        .stderr(contains("is not a duration"));
}
