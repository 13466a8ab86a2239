//! The librados binding on its own: futures dropped mid-flight, thousands of times, must
//! leave no callback writing into freed memory, leak no operation state, and leave the
//! handles working. Also: handles dropped while their operations are still in flight.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_rados::sys::{self, Cluster, IoCtx, WriteAction};

fn open() -> Arc<IoCtx> {
    let conf = common::var("CEPH_CONF")
        .expect("CEPH_CONF (run through cargo xtask test-all --only rados)");
    let keyring = common::var("CEPH_KEYRING");
    let mut opts = Vec::new();
    if let Some(k) = keyring.as_deref() {
        opts.push(("keyring", k));
    }
    let name = format!(
        "client.{}",
        common::var("CEPH_USER").unwrap_or_else(|| "admin".into())
    );
    let cluster = Cluster::connect(&name, Some(&conf), &opts).expect("connect");
    IoCtx::open(Arc::new(cluster), &common::pool()).expect("open pool")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sys::live_ops() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} operation states never freed",
            sys::live_ops()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn missing_library_error_names_the_package() {
    let e = sys::LoadError {
        reason: "librados.so.2: cannot open shared object file".into(),
    };
    let msg = e.to_string();
    assert!(
        msg.contains("librados2") && msg.contains("apt-get install"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_futures_never_touch_freed_memory() {
    let io = tokio::task::spawn_blocking(open).await.unwrap();
    let prefix = format!("binding-{}", driver_testsuite::data::random_name(8));
    let big = Bytes::from(vec![7u8; 1 << 20]);
    io.write_full(&format!("{prefix}/big"), big.clone())
        .await
        .unwrap();
    let rounds: usize = common::var("RADOS_CANCEL_ROUNDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let t0 = Instant::now();
    let rss0 = rss_kib();
    let mut completed = 0;
    for i in 0..rounds {
        // Give each future from 0 to ~120 µs: dropped before, during or after completion.
        let budget = Duration::from_micros((i as u64 * 37) % 120);
        let oid = format!("{prefix}/o{}", i % 16);
        let r = match i % 5 {
            0 => {
                tokio::time::timeout(budget, async {
                    io.read(&format!("{prefix}/big"), 0, 1 << 20)
                        .await
                        .map(|_| ())
                })
                .await
            }
            1 => {
                tokio::time::timeout(budget, io.write_full(&oid, big.slice(..(i % 4096) + 1))).await
            }
            2 => {
                tokio::time::timeout(budget, async {
                    io.omap_get(&format!("{prefix}/dir"), "", 100)
                        .await
                        .map(|_| ())
                })
                .await
            }
            3 => {
                tokio::time::timeout(
                    budget,
                    io.operate(
                        &format!("{prefix}/dir"),
                        vec![WriteAction::OmapSet(vec![(
                            format!("k{}", i % 50),
                            vec![b'v'; 64],
                        )])],
                    ),
                )
                .await
            }
            _ => {
                tokio::time::timeout(budget, async {
                    io.stat(&format!("{prefix}/big")).await.map(|_| ())
                })
                .await
            }
        };
        if matches!(r, Ok(Ok(()))) {
            completed += 1;
        }
    }
    settle().await;
    let rss1 = rss_kib();
    println!(
        "binding cancellation: {rounds} futures given 0-120 µs ({} dropped in flight, {completed} completed) in {:.1} s; \
         all operation states freed after their callbacks; RSS {rss0} KiB -> {rss1} KiB",
        rounds - completed,
        t0.elapsed().as_secs_f64()
    );
    // Each dropped read owned a 1 MiB buffer: had they leaked, RSS would have grown by GiBs.
    assert!(
        rss1 < rss0 + 256 * 1024,
        "RSS grew from {rss0} to {rss1} KiB"
    );

    // The handle still works and data is intact.
    let got = io.read(&format!("{prefix}/big"), 0, 2 << 20).await.unwrap();
    assert_eq!(
        got.len(),
        1 << 20,
        "reads are never capped below what exists"
    );
    assert!(got.iter().all(|b| *b == 7));
    let (entries, more) = io
        .omap_get(&format!("{prefix}/dir"), "", 1000)
        .await
        .unwrap();
    assert!(!more && entries.len() <= 50 && entries.iter().all(|(_, v)| v == &vec![b'v'; 64]));
    for i in 0..16 {
        let _ = io.remove(&format!("{prefix}/o{i}")).await;
    }
    io.remove(&format!("{prefix}/dir")).await.ok();
    io.remove(&format!("{prefix}/big")).await.unwrap();
    settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_dropped_with_operations_in_flight() {
    // The last references to the pool and cluster handles are the in-flight operations':
    // they are released off librados' callback thread (no deadlock, no use after free).
    for round in 0..5 {
        let io = tokio::task::spawn_blocking(open).await.unwrap();
        let oid = format!(
            "binding-inflight-{}",
            driver_testsuite::data::random_name(8)
        );
        let futs: Vec<_> = (0..32)
            .map(|i| {
                let io = io.clone();
                let oid = format!("{oid}-{i}");
                tokio::spawn(
                    async move { io.write_full(&oid, Bytes::from(vec![1u8; 256 << 10])).await },
                )
            })
            .collect();
        drop(io);
        tokio::time::sleep(Duration::from_micros(200 * round)).await;
        for f in futs {
            f.abort();
        }
        settle().await;
        // Clean up with a fresh connection.
        let io = tokio::task::spawn_blocking(open).await.unwrap();
        for i in 0..32 {
            let _ = io.remove(&format!("{oid}-{i}")).await;
        }
    }
}

/// Creating the driver where librados cannot be loaded is a typed configuration error
/// naming the package. The test re-runs itself in a private mount namespace with
/// /dev/null bound over the library (skipped, with a message, where that is not allowed).
#[test]
fn creating_without_librados_names_the_package() {
    let check = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(driver_api::factory::create(
                "rados",
                driver_api::Parameters::new().with("poolname", "x"),
            ))
            .unwrap_err();
        assert!(matches!(e, driver_api::StorageError::Config { .. }), "{e}");
        assert!(e.to_string().contains("apt-get install librados2"), "{e}");
        println!("NO-LIBRARY-OK: {e}");
    };
    if std::env::var_os("RADOS_CHILD_NO_LIBRARY").is_some() {
        return check();
    }
    let lib = [
        "/usr/lib/x86_64-linux-gnu/librados.so.2",
        "/usr/lib64/librados.so.2",
        "/usr/lib/librados.so.2",
    ]
    .iter()
    .find_map(|p| std::fs::canonicalize(p).ok());
    let Some(lib) = lib else {
        return check(); // not installed here: the real thing
    };
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind /dev/null \"$0\" && exec \"$1\" --exact creating_without_librados_names_the_package --nocapture"])
        .arg(&lib)
        .arg(std::env::current_exe().unwrap())
        .env("RADOS_CHILD_NO_LIBRARY", "1")
        .output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("NO-LIBRARY-OK") => {
            let s = String::from_utf8_lossy(&o.stdout);
            println!(
                "{}",
                s.lines()
                    .find(|l| l.contains("NO-LIBRARY-OK"))
                    .unwrap_or_default()
            );
        }
        Ok(o)
            if o.status.success()
                || String::from_utf8_lossy(&o.stderr).contains("mount")
                || String::from_utf8_lossy(&o.stderr).contains("unshare") =>
        {
            driver_testsuite::skip_test(
                "rados",
                "creating_without_librados_names_the_package",
                &format!(
                    "cannot hide {} here: {}",
                    lib.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            );
        }
        Ok(o) => panic!(
            "child failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => driver_testsuite::skip_test(
            "rados",
            "creating_without_librados_names_the_package",
            &format!("no unshare: {e}"),
        ),
    }
}
