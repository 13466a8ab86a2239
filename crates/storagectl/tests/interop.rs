//! Distribution's own registry against our drivers, on the storage both use.
//!
//! Debian's `docker-registry` (Distribution 2.8) and `skopeo` are installed and the
//! backends started by `cargo xtask test-all` (the `interop` row), which passes their
//! places in `INTEROP_REGISTRY`, `INTEROP_SKOPEO`, `S3_*` (moto) and `SWIFT_*` (one
//! OpenStack Swift node). Without them every test here skips with the reason printed
//! (and recorded in the skip log), never passes silently.
//!
//! Per backend pair (fs->s3, s3->fs, fs->swift, swift->fs), each test:
//! 1. builds small OCI images offline (real tar layers of random bytes; one layer larger
//!    than the registry's chunk size, so Distribution uploads it in parts on S3 and
//!    stores a Dynamic Large Object on Swift, and we write a multipart object and a
//!    Static Large Object; each checked on the service) and pushes them with skopeo into
//!    Distribution's registry on the source;
//! 2. reads every blob through our driver, created from the registry's own config.yml,
//!    and checks its digest, its walked size and that the set of blobs is what was pushed;
//! 3. `storagectl sync`s the tree to the destination and checks it the same way, with the
//!    same total bytes on both sides (`du`);
//! 4. starts Distribution's registry on the destination and pulls every image with
//!    skopeo: manifest and blob digests equal the pushed ones;
//! 5. re-syncs: nothing copied; pushes one more image through Distribution into the tree we
//!    wrote and pulls it back; runs Distribution's `garbage-collect --dry-run` on that tree:
//!    nothing is eligible for deletion.
//!
//! The `gc` module (`tests/interop/gc.rs`) compares `storagectl gc` with Distribution's
//! `registry garbage-collect` on registries built the same way, and collects one while
//! skopeo pushes into it.
//!
//! `INTEROP_LARGE_LAYER_MIB` sets the large layer's size (default 6, above the 5 MiB chunk
//! the configurations below set); `INTEROP_GC_PUSHES` the pushes during a collection
//! (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `storagectl gc` against Distribution's `garbage-collect` on the same registries.
#[path = "interop/gc.rs"]
mod gc;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use storagectl::config::StorageConfig;

const BIN: &str = env!("CARGO_BIN_EXE_storagectl");
/// Distribution's chunk size in the configurations below (its minimum on S3).
const CHUNK: usize = 5 << 20;
/// How long one skopeo or registry command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------
// The tools and backends the harness provides.

struct Tools {
    registry: PathBuf,
    skopeo: PathBuf,
}

/// The registry and skopeo, or `None` after recording why this test skips.
fn tools(test: &str) -> Option<Tools> {
    let reason = match (
        std::env::var_os("INTEROP_REGISTRY"),
        std::env::var_os("INTEROP_SKOPEO"),
    ) {
        (Some(r), Some(s)) => {
            return Some(Tools {
                registry: r.into(),
                skopeo: s.into(),
            })
        }
        _ => std::env::var("INTEROP_SKIP_REASON").unwrap_or_else(|_| {
            "INTEROP_REGISTRY and INTEROP_SKOPEO are not set (run `cargo xtask test-all \
             --only interop`, which installs Distribution's registry and skopeo)"
                .into()
        }),
    };
    driver_testsuite::skip_test("interop", test, &reason);
    None
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A unique, lowercase name for this run's roots, buckets and containers.
fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("interop-{tag}-{}-{nanos:x}", std::process::id())
}

/// Where a registry keeps its tree, in Distribution's configuration words.
enum Backend {
    Fs {
        root: PathBuf,
    },
    S3 {
        endpoint: String,
        bucket: String,
        region: String,
        access: String,
        secret: String,
        root: String,
    },
    Swift {
        authurl: String,
        user: String,
        key: String,
        container: String,
        tempurl_key: Option<String>,
    },
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Fs { .. } => "fs",
            Backend::S3 { .. } => "s3",
            Backend::Swift { .. } => "swift",
        }
    }

    fn fs(dir: &Path, tag: &str) -> Backend {
        Backend::Fs {
            root: dir.join(format!("fs-{tag}")),
        }
    }

    /// On moto, under a root of its own in the suites' bucket; `None` (with the reason)
    /// when moto is not running.
    fn s3(tag: &str) -> Result<Backend, String> {
        let endpoint = env("S3_ENDPOINT").ok_or("S3_ENDPOINT is not set (moto)")?;
        Ok(Backend::S3 {
            endpoint,
            bucket: env("S3_BUCKET").unwrap_or_else(|| "storage-driver-tests".into()),
            region: env("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            access: env("S3_ACCESS_KEY").unwrap_or_else(|| "test".into()),
            secret: env("S3_SECRET_KEY").unwrap_or_else(|| "test".into()),
            root: format!("/{}", unique(tag)),
        })
    }

    /// On the Swift node, in a container of its own; redirects are TempURLs signed with a
    /// container key, as Distribution sets them up.
    fn swift(tag: &str) -> Result<Backend, String> {
        let authurl = env("SWIFT_AUTH_URL").ok_or("SWIFT_AUTH_URL is not set (Swift node)")?;
        Ok(Backend::Swift {
            authurl,
            user: env("SWIFT_USERNAME").unwrap_or_else(|| "test:tester".into()),
            key: env("SWIFT_PASSWORD").unwrap_or_else(|| "testing".into()),
            container: unique(tag),
            tempurl_key: env("SWIFT_SECRET_KEY"),
        })
    }

    /// How the backend holds the file at storage path `path`, asked of the service
    /// directly: `multipart` (an S3 ETag with a part count), `dlo` (Swift
    /// `X-Object-Manifest`: Distribution's large objects), `slo` (Swift
    /// `X-Static-Large-Object`: ours), `plain`; `-` on the filesystem.
    fn object_kind(&self, path: &str) -> String {
        match self {
            Backend::Fs { .. } => "-".into(),
            Backend::S3 {
                endpoint,
                bucket,
                root,
                access,
                region,
                ..
            } => {
                // moto checks no signatures, but refuses anonymous requests: any
                // SigV4-shaped Authorization naming the access key passes.
                let key = format!("{}{path}", root.trim_start_matches('/'));
                let auth = format!(
                    "AWS4-HMAC-SHA256 Credential={access}/20260101/{region}/s3/aws4_request, \
                     SignedHeaders=host, Signature=00"
                );
                let head = raw_request(
                    "HEAD",
                    &format!("{endpoint}/{bucket}/{key}"),
                    &[("authorization", auth.as_str())],
                );
                let etag = header(&head, "etag").unwrap_or_else(|| panic!("HEAD {key}: {head}"));
                if etag.contains('-') {
                    "multipart"
                } else {
                    "plain"
                }
                .into()
            }
            Backend::Swift {
                authurl,
                user,
                key,
                container,
                ..
            } => {
                let auth = raw_request(
                    "GET",
                    authurl,
                    &[("x-auth-user", user.as_str()), ("x-auth-key", key.as_str())],
                );
                let token = header(&auth, "x-auth-token").expect("a TempAuth token");
                let storage = header(&auth, "x-storage-url").expect("a storage URL");
                let head = raw_request(
                    "HEAD",
                    &format!("{storage}/{container}/reg/files{path}"),
                    &[("x-auth-token", token.as_str())],
                );
                assert!(head.starts_with("HTTP/1.1 200"), "HEAD {path}: {head}");
                if header(&head, "x-object-manifest").is_some() {
                    "dlo".into()
                } else if header(&head, "x-static-large-object").is_some() {
                    "slo".into()
                } else {
                    "plain".into()
                }
            }
        }
    }

    /// The driver's section of `storage:`.
    fn storage_yaml(&self) -> String {
        match self {
            Backend::Fs { root } => {
                format!("  filesystem:\n    rootdirectory: {}\n", root.display())
            }
            Backend::S3 {
                endpoint,
                bucket,
                region,
                access,
                secret,
                root,
            } => format!(
                "  s3:\n    region: {region}\n    regionendpoint: {endpoint}\n    \
                 bucket: {bucket}\n    accesskey: {access}\n    secretkey: {secret}\n    \
                 rootdirectory: {root}\n    chunksize: {CHUNK}\n    secure: false\n    \
                 v4auth: true\n"
            ),
            Backend::Swift {
                authurl,
                user,
                key,
                container,
                tempurl_key,
            } => {
                let mut s = format!(
                    "  swift:\n    authurl: {authurl}\n    username: {user}\n    \
                     password: {key}\n    container: {container}\n    prefix: reg\n    \
                     chunksize: {CHUNK}\n"
                );
                if let Some(k) = tempurl_key {
                    s.push_str(&format!(
                        "    secretkey: {k}\n    tempurlcontainerkey: true\n"
                    ));
                }
                s
            }
        }
    }

    /// A whole Distribution config.yml for this storage, serving on `port`: the file both
    /// Distribution's registry and storagectl read.
    fn config(&self, dir: &Path, file: &str, port: u16) -> PathBuf {
        let text = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n{}  delete:\n    enabled: true\n  maintenance:\n    \
             uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: interop-test-secret\n",
            self.storage_yaml()
        );
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }
}

// ---------------------------------------------------------------------------------------
// OCI images, built offline.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `n` pseudo-random bytes from `seed` (the suite's generator; the seed is spread so
/// small seeds start far apart).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    driver_testsuite::data::DataGen::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        .bytes(n)
        .to_vec()
}

/// A ustar archive holding one regular file.
fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// One image in an OCI layout directory: its tag, manifest digest and every blob digest
/// (manifest, config, layers).
#[derive(Clone)]
struct Image {
    repo: String,
    tag: String,
    layout: PathBuf,
    manifest: String,
    blobs: Vec<String>,
    /// An image index: pushed and pulled with every platform (`--all`).
    all: bool,
}

/// Writes an OCI image layout at `dir` holding one image whose layers have these sizes.
fn build_image(dir: &Path, repo: &str, tag: &str, layers: &[(usize, u64)]) -> Image {
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    let put = |data: &[u8]| {
        let h = sha256_hex(data);
        std::fs::write(blobs_dir.join(&h), data).unwrap();
        h
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut blobs = Vec::new();
    for (size, seed) in layers {
        let tar = tar_of(&format!("layer-{seed}.bin"), &random_bytes(*size, *seed));
        let h = put(&tar);
        diff_ids.push(format!("sha256:{h}"));
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{h}"),
            "size": tar.len(),
        }));
        blobs.push(h);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"interop": format!("{repo}:{tag}")}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_hex = put(&config);
    blobs.push(config_hex.clone());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_hex}"),
            "size": config.len(),
        },
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_hex = put(&manifest);
    blobs.push(manifest_hex.clone());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    Image {
        repo: repo.into(),
        tag: tag.into(),
        layout: dir.into(),
        manifest: manifest_hex,
        blobs,
        all: false,
    }
}

/// The images every pair pushes: two tags of one repository sharing a layer (one layer
/// above the chunk size) and a second repository.
fn images(dir: &Path) -> Vec<Image> {
    let large = std::env::var("INTEROP_LARGE_LAYER_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(6)
        << 20;
    assert!(large > CHUNK, "the large layer must cross the chunk size");
    vec![
        build_image(
            &dir.join("img-app-v1"),
            "team/app",
            "v1",
            &[(large, 1), (150_000, 2)],
        ),
        build_image(
            &dir.join("img-app-v2"),
            "team/app",
            "v2",
            &[(large, 1), (70_000, 3)],
        ),
        build_image(&dir.join("img-tools"), "tools", "1.0", &[(20_000, 4)]),
    ]
}

/// The storage path of blob `hex` in a registry tree.
fn blob_path(hex: &str) -> String {
    format!("/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// The manifest digest and blob digests of the one image in an OCI layout.
fn layout_digests(layout: &Path) -> (String, Vec<String>) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest_hex = digest.strip_prefix("sha256:").unwrap().to_owned();
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (manifest_hex, blobs)
}

// ---------------------------------------------------------------------------------------
// Processes.

/// Runs `cmd` to completion within [`COMMAND_TIMEOUT`]; panics with its output on failure.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let start = Instant::now();
    let stdout_reader = std::thread::spawn(move || {
        let _ = out.read_to_string(&mut stdout);
        stdout
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no answer after {} s", COMMAND_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout_reader.join().unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        status.success(),
        "{what}: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout + &stderr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Distribution's registry with its environment cleared of anything that would change
/// its storage (REGISTRY_* overrides, the AWS SDK's CA bundle and profiles).
fn registry_command(tools: &Tools) -> Command {
    let mut c = Command::new(&tools.registry);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c
}

/// One HTTP/1.1 request without a body to `url` (`http://host:port/path`); the response
/// head.
fn raw_request(method: &str, url: &str, headers: &[(&str, &str)]) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

/// A header's value in a response head (names compared without case).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// A running Distribution registry, stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(tools: &Tools, config: &Path, port: u16, log: PathBuf) -> Registry {
        let file = std::fs::File::create(&log).unwrap();
        let child = registry_command(tools)
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut r = Registry { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if r.get_status("/v2/") == Some(200) {
                return r;
            }
            if let Some(s) = r.child.try_wait().unwrap() {
                panic!("registry exited with {s}: {}", r.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "registry not ready after 60 s: {}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).ok()?;
        String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{repo}:{tag}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo(tools: &Tools, home: &Path) -> Command {
    let mut c = Command::new(&tools.skopeo);
    // No user configuration, credentials or blob-info cache from elsewhere.
    c.env("HOME", home).arg("--insecure-policy");
    c
}

fn push(tools: &Tools, home: &Path, reg: &Registry, img: &Image) {
    run_ok(
        skopeo(tools, home)
            .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
            .args(img.all.then_some("--all"))
            .arg(format!("oci:{}:{}", img.layout.display(), img.tag))
            .arg(reg.reference(&img.repo, &img.tag)),
        &format!("skopeo push {}:{}", img.repo, img.tag),
    );
}

/// Pulls `img` from `reg` into a fresh layout; asserts the manifest and every blob digest
/// equal the pushed image's (skopeo itself checks each blob against its digest).
fn pull_equal(tools: &Tools, home: &Path, reg: &Registry, img: &Image, into: &Path) {
    let _ = std::fs::remove_dir_all(into);
    let out = run_ok(
        skopeo(tools, home)
            .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
            .args(img.all.then_some("--all"))
            .arg(reg.reference(&img.repo, &img.tag))
            .arg(format!("oci:{}:{}", into.display(), img.tag)),
        &format!("skopeo pull {}:{}", img.repo, img.tag),
    );
    let (manifest, blobs) = layout_digests(into);
    assert_eq!(
        manifest, img.manifest,
        "{}:{}: pulled manifest differs\n{out}",
        img.repo, img.tag
    );
    let mut want = img.blobs.clone();
    want.sort();
    assert_eq!(blobs, want, "{}:{}: pulled blobs differ", img.repo, img.tag);
    for b in &blobs {
        let data = std::fs::read(into.join("blobs/sha256").join(b)).unwrap();
        assert_eq!(&sha256_hex(&data), b, "{}:{}: blob {b}", img.repo, img.tag);
    }
}

/// Distribution's `garbage-collect --dry-run` on `config`: (blobs marked, blobs eligible,
/// manifests eligible), from its last line ("N blobs marked, M blobs and K manifests
/// eligible for deletion").
fn distribution_gc_dry_run(tools: &Tools, config: &Path) -> (u64, u64, u64) {
    let out = run_ok(
        registry_command(tools)
            .args(["garbage-collect", "--dry-run"])
            .arg(config),
        "registry garbage-collect --dry-run",
    );
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("eligible for deletion"))
        .unwrap_or_else(|| panic!("no summary in garbage-collect's output:\n{out}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 3, "unexpected summary {line:?}");
    (nums[0], nums[1], nums[2])
}

fn storagectl_sync(dir: &Path, from: &Path, to: &Path) -> Value {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            c.env_remove(k);
        }
    }
    let out = run_ok(
        c.args(["sync", "--json"])
            .arg(format!("{}:/docker", from.display()))
            .arg(format!("{}:/docker", to.display())),
        "storagectl sync",
    );
    let start = out.find('{').expect("sync printed no JSON");
    let v: Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(v["failed"], json!([]), "sync failed files: {v}");
    v
}

// ---------------------------------------------------------------------------------------
// Reading through our driver.

/// What our driver, created from `config`, sees of a registry tree.
struct Seen {
    /// sha256 hex of every blob under `blobs/`, each read whole and checked.
    blobs: Vec<String>,
    /// Files and bytes (walked sizes) of the whole `/docker` tree.
    files: u64,
    bytes: u64,
}

fn read_through_driver(config: &Path) -> Seen {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = StorageConfig::from_file(config).unwrap();
        let driver = cfg.create().await.unwrap();
        let all = driver.walk_collect("/docker").await.unwrap();
        let files: Vec<_> = all.iter().filter(|f| !f.is_dir).collect();
        let mut blobs = Vec::new();
        for f in &files {
            let p = f.path.as_str();
            let Some(rest) = p.strip_prefix("/docker/registry/v2/blobs/sha256/") else {
                continue;
            };
            let hex_name = rest
                .strip_suffix("/data")
                .and_then(|r| r.split('/').nth(1))
                .unwrap_or_else(|| panic!("unexpected file under blobs/: {p}"));
            let mut stream = driver.reader(p, 0).await.unwrap();
            let (mut hasher, mut n) = (Sha256::new(), 0u64);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                n += chunk.len() as u64;
                hasher.update(&chunk);
            }
            assert_eq!(hex(&hasher.finalize()), hex_name, "{p}: digest");
            assert_eq!(n, f.size, "{p}: walk says {} bytes, read {n}", f.size);
            let st = driver.stat(p).await.unwrap();
            assert_eq!(st.size, n, "{p}: stat size");
            blobs.push(hex_name.to_owned());
        }
        blobs.sort();
        Seen {
            blobs,
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
        }
    })
}

// ---------------------------------------------------------------------------------------
// The pairs.

fn pair(
    test: &str,
    src: impl FnOnce(&Path) -> Result<Backend, String>,
    dst: impl FnOnce(&Path) -> Result<Backend, String>,
) {
    let Some(tools) = tools(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (src, dst) = match (src(dir), dst(dir)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            driver_testsuite::skip_test("interop", test, &e);
            return;
        }
    };
    let label = format!("{}->{}", src.name(), dst.name());
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (src_port, dst_port) = (free_port(), free_port());
    let src_cfg = src.config(dir, "src.yml", src_port);
    let dst_cfg = dst.config(dir, "dst.yml", dst_port);
    let imgs = images(dir);
    let mut want: Vec<String> = imgs.iter().flat_map(|i| i.blobs.clone()).collect();
    want.sort();
    want.dedup();

    // 1. Distribution writes the source.
    {
        let reg = Registry::start(&tools, &src_cfg, src_port, dir.join("src-registry.log"));
        for img in &imgs {
            push(&tools, &home, &reg, img);
        }
    }

    // 2. Our driver reads it: every blob, digest and size. The large layer is what
    // Distribution writes above a chunk: a DLO on Swift; on S3 a multipart upload, which
    // its move to the blob's path (one CopyObject below `multipartcopythresholdsize`)
    // turns into a plain object.
    let seen_src = read_through_driver(&src_cfg);
    assert_eq!(seen_src.blobs, want, "{label}: blobs at the source");
    let large = blob_path(&imgs[0].blobs[0]);
    let src_kind = src.object_kind(&large);
    let expected = match &src {
        Backend::Fs { .. } => "-",
        Backend::S3 { .. } => "plain",
        Backend::Swift { .. } => "dlo",
    };
    assert_eq!(
        src_kind, expected,
        "{label}: how Distribution stored {large}"
    );

    // 3. storagectl copies it; our driver reads the copy; same bytes on both sides.
    let first = storagectl_sync(dir, &src_cfg, &dst_cfg);
    assert_eq!(first["copied_files"], seen_src.files, "{label}: {first}");
    let seen_dst = read_through_driver(&dst_cfg);
    assert_eq!(seen_dst.blobs, want, "{label}: blobs at the destination");
    let dst_kind = dst.object_kind(&large);
    let expected = match &dst {
        Backend::Fs { .. } => "-",
        Backend::S3 { .. } => "multipart",
        Backend::Swift { .. } => "slo",
    };
    assert_eq!(dst_kind, expected, "{label}: how we stored {large}");
    assert_eq!(
        (seen_dst.files, seen_dst.bytes),
        (seen_src.files, seen_src.bytes),
        "{label}: files and bytes, destination against source"
    );

    // 4. Distribution serves what we wrote.
    let reg = Registry::start(&tools, &dst_cfg, dst_port, dir.join("dst-registry.log"));
    for (i, img) in imgs.iter().enumerate() {
        pull_equal(&tools, &home, &reg, img, &dir.join(format!("pull-{i}")));
    }

    // 5. A re-run copies nothing; Distribution pushes into our tree and pulls back.
    let again = storagectl_sync(dir, &src_cfg, &dst_cfg);
    assert_eq!(
        (again["copied_files"].clone(), again["copied_bytes"].clone()),
        (json!(0), json!(0)),
        "{label}: re-sync {again}"
    );
    let extra = build_image(
        &dir.join("img-extra"),
        "team/app",
        "v3",
        &[(CHUNK + 4096, 5), (10_000, 2)],
    );
    push(&tools, &home, &reg, &extra);
    pull_equal(&tools, &home, &reg, &extra, &dir.join("pull-extra"));
    drop(reg);
    let seen_after = read_through_driver(&dst_cfg);
    let mut want_after = want.clone();
    want_after.extend(extra.blobs.iter().cloned());
    want_after.sort();
    want_after.dedup();
    assert_eq!(
        seen_after.blobs, want_after,
        "{label}: blobs after the push"
    );
    let (marked, blobs_eligible, manifests_eligible) = distribution_gc_dry_run(&tools, &dst_cfg);
    assert_eq!(
        (marked, blobs_eligible, manifests_eligible),
        (want_after.len() as u64, 0, 0),
        "{label}: Distribution's GC on the tree we wrote"
    );

    println!(
        "INTEROP {label:<10} images pushed {} (+1 into ours) | large layer {src_kind} -> \
         {dst_kind} | blobs verified src {} dst {} | files {} bytes {} both sides | pulls \
         equal {} | re-sync copied {} files {} bytes | gc marked {marked} eligible \
         {blobs_eligible}",
        imgs.len(),
        seen_src.blobs.len(),
        seen_after.blobs.len(),
        seen_src.files,
        seen_src.bytes,
        imgs.len() + 1,
        again["copied_files"],
        again["copied_bytes"],
    );
}

#[test]
fn fs_to_s3() {
    pair(
        "fs_to_s3",
        |d| Ok(Backend::fs(d, "src")),
        |_| Backend::s3("dst"),
    );
}

#[test]
fn s3_to_fs() {
    pair(
        "s3_to_fs",
        |_| Backend::s3("src"),
        |d| Ok(Backend::fs(d, "dst")),
    );
}

#[test]
fn fs_to_swift() {
    pair(
        "fs_to_swift",
        |d| Ok(Backend::fs(d, "src")),
        |_| Backend::swift("dst"),
    );
}

#[test]
fn swift_to_fs() {
    pair(
        "swift_to_fs",
        |_| Backend::swift("src"),
        |d| Ok(Backend::fs(d, "dst")),
    );
}

#[test]
fn s3_to_swift() {
    pair(
        "s3_to_swift",
        |_| Backend::s3("src"),
        |_| Backend::swift("dst"),
    );
}

/// The harness's own parts: the tar and image builders produce what skopeo and
/// registries expect (checked here without them, so these never skip).
#[test]
fn oci_layout_is_well_formed() {
    let tmp = tempfile::tempdir().unwrap();
    let img = build_image(tmp.path(), "r", "t", &[(1000, 1), (513, 2)]);
    let (manifest, blobs) = layout_digests(&img.layout);
    assert_eq!(manifest, img.manifest);
    let mut want = img.blobs.clone();
    want.sort();
    assert_eq!(blobs, want);
    let tar = tar_of("x", &[7u8; 513]);
    assert_eq!(tar.len(), 512 + 1024 + 1024);
    // The header checksum is what tar(1) computes: the byte sum with the field as spaces.
    let mut h = tar[..512].to_vec();
    let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
    h[148..156].copy_from_slice(b"        ");
    assert_eq!(stored, h.iter().map(|b| u32::from(*b)).sum::<u32>());
}
