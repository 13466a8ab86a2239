//! A real single-node Ceph cluster for the rados driver: Debian's ceph-mon, ceph-osd and
//! ceph-common (Pacific), one monitor and one memstore OSD on 127.0.0.1 (as in the shared
//! notes' ceph-one.sh), in a directory of this run's own (in /dev/shm when there is one),
//! on free ports, so two runs never collide. The daemons run in the foreground (`-f`) as
//! direct children, killed when the [`Emulator`] is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, run, spawn, Error};
use crate::drivers::Emulator;

/// The pool the suite uses.
pub const CEPH_POOL: &str = "rados-test";
/// Memstore capacity: the suite's streams, a 300 MiB file and the bench's 1 MiB objects,
/// all in RAM.
const MEMSTORE_MIB: u64 = 4096;
/// Binaries the cluster needs, and the packages that bring them.
const BINARIES: &[&str] = &[
    "ceph-mon",
    "ceph-osd",
    "ceph",
    "ceph-authtool",
    "monmaptool",
    "rados",
];
const PACKAGES: &[&str] = &["ceph-mon", "ceph-osd", "ceph-common"];

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Installs the Debian packages once (we run as root; skipped when the binaries exist).
fn ensure_installed(log_dir: &Path) -> Result<(), Error> {
    if BINARIES.iter().all(|b| on_path(b)) {
        return Ok(());
    }
    let t0 = Instant::now();
    super::apt_get_install(log_dir, PACKAGES)?;
    eprintln!(
        "rados: Ceph packages installed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn conf(dir: &Path, fsid: &str, port2: u16, port1: u16) -> String {
    let d = dir.display();
    format!(
        "[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{port2},v1:127.0.0.1:{port1}]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {d}/client.admin.keyring
run dir = {d}/run
crash dir = {d}/crash
log to stderr = false
err to stderr = true
mon cluster log file = {d}/log/cluster.log
chdir = {d}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
ms async op threads = 2
paxos propose interval = 0.1

[mon]
mon data = {d}/mon/$id
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
mon memory target = 134217728
rocksdb cache size = 33554432

[osd]
osd data = {d}/osd/$id
keyring = {d}/osd/$id/keyring
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
osd objectstore = memstore
memstore device bytes = {}
osd class load list = *
osd class default list = *
osd op num shards = 2
osd op num threads per shard = 1
osd crush update on start = true
",
        MEMSTORE_MIB << 20
    )
}

/// `ceph <args>` against the cluster, with a timeout; its stdout.
fn ceph(conf: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("timeout")
        .args(["30", "ceph", "--connect-timeout", "10", "-c"])
        .arg(conf)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "ceph {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(
    what: &str,
    em: &mut Emulator,
    log_dir: &Path,
    mut probe: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !probe() {
        for c in &mut em.children {
            if let Some(status) = c.try_wait()? {
                return Err(format!(
                    "a Ceph daemon exited with {status} while waiting for {what} (logs: {})",
                    log_dir.display()
                )
                .into());
            }
        }
        if Instant::now() > deadline {
            return Err(
                format!("timed out waiting for {what} (logs: {})", log_dir.display()).into(),
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn uuid() -> Result<String, Error> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/uuid")?
        .trim()
        .to_owned())
}

/// Installs (once) and starts the cluster; ready when a `rados put` succeeds.
pub fn start_rados() -> Result<Emulator, Error> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // Directories of earlier runs whose process is gone.
    for e in std::fs::read_dir(&base)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("storage-drivers-ceph-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("storage-drivers-ceph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log_dir = dir.join("log");
    for d in ["mon/a", "osd/0", "run", "log", "crash"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let mut em = Emulator::default();
    em.dirs.push(dir.clone());
    ensure_installed(&log_dir)?;

    let t0 = Instant::now();
    let (port2, port1) = (free_port()?, free_port()?);
    let fsid = uuid()?;
    let conf_path = dir.join("ceph.conf");
    std::fs::write(&conf_path, conf(&dir, &fsid, port2, port1))?;
    let keyring = dir.join("client.admin.keyring");
    let mon_keyring = dir.join("mon.keyring");
    let mkfs_log = log_dir.join("mkfs.log");
    run(
        Command::new("ceph-authtool")
            .arg("--create-keyring")
            .arg(&mon_keyring)
            .args(["--gen-key", "-n", "mon.", "--cap", "mon", "allow *"]),
        "ceph-authtool (mon. key)",
        &mkfs_log,
    )?;
    run(
        Command::new("ceph-authtool")
            .arg("--create-keyring")
            .arg(&keyring)
            .args(["--gen-key", "-n", "client.admin"])
            .args([
                "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *",
            ]),
        "ceph-authtool (client.admin key)",
        &mkfs_log,
    )?;
    run(
        Command::new("ceph-authtool")
            .arg(&mon_keyring)
            .arg("--import-keyring")
            .arg(&keyring),
        "ceph-authtool (import)",
        &mkfs_log,
    )?;
    let monmap = dir.join("monmap");
    run(
        Command::new("monmaptool")
            .args(["--create", "--fsid", &fsid, "--addv", "a"])
            .arg(format!("[v2:127.0.0.1:{port2},v1:127.0.0.1:{port1}]"))
            .arg(&monmap),
        "monmaptool",
        &mkfs_log,
    )?;
    run(
        Command::new("ceph-mon")
            .arg("-c")
            .arg(&conf_path)
            .args(["--mkfs", "-i", "a", "--monmap"])
            .arg(&monmap)
            .arg("--keyring")
            .arg(&mon_keyring),
        "ceph-mon --mkfs",
        &mkfs_log,
    )?;
    em.children.push(spawn(
        Command::new("ceph-mon")
            .args(["-f", "-i", "a", "-c"])
            .arg(&conf_path),
        &log_dir.join("mon.a.stdout"),
    )?);
    wait_until("the monitor", &mut em, &log_dir, || {
        ceph(&conf_path, &["mon", "stat"]).is_ok()
    })?;

    let osd_uuid = uuid()?;
    let id = ceph(&conf_path, &["osd", "new", &osd_uuid])?;
    if id.trim() != "0" {
        return Err(format!("unexpected osd id {id:?}").into());
    }
    run(
        Command::new("ceph-osd").arg("-c").arg(&conf_path).args([
            "-i",
            "0",
            "--mkfs",
            "--mkkey",
            "--no-mon-config",
            "--osd-uuid",
            &osd_uuid,
        ]),
        "ceph-osd --mkfs",
        &log_dir.join("osd-mkfs.log"),
    )?;
    let osd_keyring = dir.join("osd/0/keyring");
    let osd_keyring_s = osd_keyring.to_string_lossy().into_owned();
    ceph(
        &conf_path,
        &[
            "auth",
            "add",
            "osd.0",
            "osd",
            "allow *",
            "mon",
            "allow profile osd",
            "mgr",
            "allow profile osd",
            "-i",
            &osd_keyring_s,
        ],
    )?;
    let osd = spawn(
        Command::new("ceph-osd")
            .args(["-f", "-i", "0", "-c"])
            .arg(&conf_path),
        &log_dir.join("osd.0.stdout"),
    )?;
    let osd_pid = osd.id();
    em.children.push(osd);
    wait_until("osd.0 up", &mut em, &log_dir, || {
        ceph(&conf_path, &["osd", "dump"])
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("osd.0 up")))
    })?;
    ceph(
        &conf_path,
        &["osd", "pool", "create", CEPH_POOL, "8", "8", "replicated"],
    )?;
    let _ = ceph(
        &conf_path,
        &["osd", "pool", "application", "enable", CEPH_POOL, "rados"],
    );
    wait_until("a writable pool", &mut em, &log_dir, || {
        let probe_file = conf_path.to_string_lossy().into_owned();
        let rados = |args: &[&str]| {
            Command::new("timeout")
                .args(["10", "rados", "-c"])
                .arg(&conf_path)
                .args(["-p", CEPH_POOL])
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        rados(&["put", "__ready", &probe_file]) && rados(&["rm", "__ready"])
    })?;
    eprintln!(
        "rados: single-node Ceph ready in {:.1} s ({})",
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    em.env
        .insert("CEPH_CONF".into(), conf_path.to_string_lossy().into_owned());
    em.env.insert(
        "CEPH_KEYRING".into(),
        keyring.to_string_lossy().into_owned(),
    );
    em.env.insert("CEPH_POOL".into(), CEPH_POOL.into());
    // This run's own OSD, which the tests may pause (SIGSTOP) for a moment to see an
    // operation time out; never set for a cluster the tests do not own.
    em.env
        .insert("CEPH_TEST_OSD_PID".into(), osd_pid.to_string());
    Ok(em)
}

/// The bucket (S3) and container (Swift) of the suites on radosgw: one name, as radosgw
/// keeps both in one namespace.
const RGW_BUCKET: &str = "storage-driver-tests";
/// The radosgw user's S3 keys and Swift subuser key (a local test service only).
const RGW_ACCESS_KEY: &str = "STORAGEDRIVERSRGW000";
const RGW_SECRET_KEY: &str = "storage-drivers-rgw-secret-key-000000000";
const RGW_SWIFT_USER: &str = "storage-drivers:swift";
const RGW_SWIFT_KEY: &str = "storage-drivers-rgw-swift-key";
/// The TempURL key the swift suite sets on the account.
const RGW_TEMPURL_KEY: &str = "storage-drivers-rgw-tempurl-key";

/// Ceph's RADOS Gateway (Debian's `radosgw`, the S3 and Swift service most deployed
/// on-premises) on the single-node cluster of [`start_rados`], on 127.0.0.1: one user
/// with S3 keys and a Swift subuser, the suites' bucket created through Swift (radosgw
/// keeps buckets and containers in one namespace). Sets the `S3_*` and `SWIFT_*`
/// variables the s3 and swift tests read, and `STORAGE_TEST_IMPLEMENTATION=radosgw` for
/// the tests that must skip what radosgw lacks.
pub fn start_radosgw() -> Result<Emulator, Error> {
    let mut em = start_rados()?;
    let conf_path = PathBuf::from(em.env.get("CEPH_CONF").ok_or("no CEPH_CONF")?);
    let dir = conf_path
        .parent()
        .ok_or("the cluster has no directory")?
        .to_path_buf();
    let log_dir = dir.join("log");
    if !on_path("radosgw") || !on_path("radosgw-admin") {
        let t0 = Instant::now();
        super::apt_get_install(&log_dir, &["radosgw"])?;
        eprintln!(
            "radosgw: package installed in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    let t0 = Instant::now();
    let keyring = dir.join("client.rgw.keyring");
    let keyring_s = keyring.to_string_lossy().into_owned();
    ceph(
        &conf_path,
        &[
            "auth",
            "get-or-create",
            "client.rgw.x",
            "mon",
            "allow rw",
            "osd",
            "allow rwx",
            "-o",
            &keyring_s,
        ],
    )?;
    let port = free_port()?;
    let data = dir.join("rgw");
    std::fs::create_dir_all(&data)?;
    let log = log_dir.join("rgw.stdout");
    let mut child = spawn(
        Command::new("radosgw")
            .arg("-c")
            .arg(&conf_path)
            .args(["-n", "client.rgw.x", "--keyring", &keyring_s, "-f"])
            .args([
                "--rgw-frontends",
                &format!("beast endpoint=127.0.0.1:{port}"),
            ])
            .arg("--log-file")
            .arg(log_dir.join("rgw.log"))
            .arg("--rgw-data")
            .arg(&data),
        &log,
    )?;
    let ready = super::wait_http(port, &mut child, &log);
    em.children.push(child);
    ready.map_err(|e| format!("radosgw: {e}"))?;
    let admin = |args: &[&str], what: &str| -> Result<(), Error> {
        run(
            Command::new("radosgw-admin")
                .arg("-c")
                .arg(&conf_path)
                .args(["-n", "client.admin"])
                .args(args),
            what,
            &log_dir.join("rgw-admin.log"),
        )
    };
    let uid = RGW_SWIFT_USER
        .split(':')
        .next()
        .unwrap_or("storage-drivers");
    admin(
        &[
            "user",
            "create",
            &format!("--uid={uid}"),
            "--display-name=storage drivers",
            &format!("--access-key={RGW_ACCESS_KEY}"),
            &format!("--secret={RGW_SECRET_KEY}"),
        ],
        "radosgw-admin user create",
    )?;
    admin(
        &[
            "subuser",
            "create",
            &format!("--uid={uid}"),
            &format!("--subuser={RGW_SWIFT_USER}"),
            "--access=full",
            &format!("--secret={RGW_SWIFT_KEY}"),
            "--key-type=swift",
        ],
        "radosgw-admin subuser create",
    )?;
    // The bucket, through Swift (no S3 signature needed): a token, then a PUT.
    let (status, head) = super::http_get_head(
        port,
        "/auth/v1.0",
        &format!("X-Auth-User: {RGW_SWIFT_USER}\r\nX-Auth-Key: {RGW_SWIFT_KEY}\r\n"),
    )?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let (Some(token), 200 | 204) = (header("x-auth-token"), status) else {
        return Err(format!("radosgw: Swift authentication answered {status}").into());
    };
    let status = super::http_put_with(
        port,
        &format!("/swift/v1/{RGW_BUCKET}"),
        &format!("X-Auth-Token: {token}\r\n"),
    )?;
    if !matches!(status, 201 | 202) {
        return Err(format!("radosgw: creating {RGW_BUCKET} answered {status}").into());
    }
    eprintln!(
        "radosgw: ready in {:.1} s on 127.0.0.1:{port}",
        t0.elapsed().as_secs_f64()
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    for (k, v) in [
        ("STORAGE_TEST_IMPLEMENTATION", "radosgw".to_owned()),
        ("S3_ENDPOINT", endpoint.clone()),
        ("S3_BUCKET", RGW_BUCKET.into()),
        ("S3_REGION", "us-east-1".into()),
        ("S3_ACCESS_KEY", RGW_ACCESS_KEY.into()),
        ("S3_SECRET_KEY", RGW_SECRET_KEY.into()),
        ("SWIFT_AUTH_URL", format!("{endpoint}/auth/v1.0")),
        ("SWIFT_USERNAME", RGW_SWIFT_USER.into()),
        ("SWIFT_PASSWORD", RGW_SWIFT_KEY.into()),
        ("SWIFT_CONTAINER", RGW_BUCKET.into()),
        ("SWIFT_SECRET_KEY", RGW_TEMPURL_KEY.into()),
    ] {
        em.env.insert(k.into(), v);
    }
    Ok(em)
}
