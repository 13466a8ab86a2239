//! Crash safety and cross-process resume, with real processes: this binary re-executes
//! itself as a child (`FS_TEST_CHILD=<mode>`), lets it write, and kills it with SIGKILL.
//!
//! Runs without libtest (`harness = false`) so the child mode is not a test of its own; it
//! prints libtest-style lines so `cargo xtask test-all` counts its cases.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::Driver;
use driver_filesystem::FilesystemDriver;
use driver_testsuite::runtime as rt;

const FILE: &str = "/repo/blob/data";
const A_LEN: usize = 8 << 20;
const B_LEN: usize = (8 << 20) + 4099;

fn content_a() -> Bytes {
    Bytes::from(vec![b'a'; A_LEN])
}
fn content_b() -> Bytes {
    Bytes::from(vec![b'b'; B_LEN])
}

fn driver(root: &Path) -> Driver {
    Driver::new(FilesystemDriver::new(root, 100))
}

// ---------------------------------------------------------------------------------------
// child side

fn child(mode: &str, root: PathBuf) {
    let d = driver(&root);
    let ready = root.join("..").join("ready");
    rt().block_on(async move {
        match mode {
            "put-loop" => {
                let (a, b) = (content_a(), content_b());
                d.put_content(FILE, a.clone()).await.unwrap();
                std::fs::write(&ready, b"").unwrap();
                for i in 0u64.. {
                    d.put_content(FILE, if i % 2 == 0 { b.clone() } else { a.clone() })
                        .await
                        .unwrap();
                }
            }
            "commit-loop" => {
                for i in 0u64.. {
                    let mut w = d.writer(FILE, false).await.unwrap();
                    let c = if i % 2 == 0 { content_a() } else { content_b() };
                    for chunk in c.chunks(1 << 20) {
                        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
                    }
                    w.commit().await.unwrap();
                    if i == 0 {
                        std::fs::write(&ready, b"").unwrap();
                    }
                }
            }
            "upload-then-exit" => {
                let mut w = d.writer(FILE, false).await.unwrap();
                w.write(content_a()).await.unwrap();
                w.close().await.unwrap();
            }
            "upload-then-die" => {
                // Close once (durably resumable), then keep appending until killed.
                let mut w = d.writer(FILE, false).await.unwrap();
                w.write(content_a()).await.unwrap();
                w.close().await.unwrap();
                std::fs::write(&ready, b"").unwrap();
                let mut w = d.writer(FILE, true).await.unwrap();
                loop {
                    w.write(Bytes::from(vec![b'a'; 64 << 10])).await.unwrap();
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

// ---------------------------------------------------------------------------------------
// parent side

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn spawn(&self, mode: &str) -> Child {
        let _ = std::fs::remove_file(self.dir.path().join("ready"));
        Command::new(std::env::current_exe().unwrap())
            .env("FS_TEST_CHILD", mode)
            .env("FS_TEST_ROOT", self.root())
            .spawn()
            .unwrap()
    }
    fn wait_ready(&self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.dir.path().join("ready").exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child exited early: {status}");
            }
            assert!(Instant::now() < deadline, "child never became ready");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn kill(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Files below `root` whose names carry `#` (temporary or upload files).
fn hidden_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().contains('#') {
                out.push(p);
            }
        }
    }
    out
}

fn check_whole(got: &Bytes) {
    let whole_a = got.len() == A_LEN && got.iter().all(|&b| b == b'a');
    let whole_b = got.len() == B_LEN && got.iter().all(|&b| b == b'b');
    assert!(whole_a || whole_b, "torn file: {} bytes", got.len());
}

fn kill_during(mode: &str) {
    let s = Scratch::new();
    for round in 0..6u64 {
        let mut c = s.spawn(mode);
        s.wait_ready(&mut c);
        std::thread::sleep(Duration::from_millis(20 + round * 37));
        kill(&mut c);
        let d = driver(&s.root());
        rt().block_on(async {
            check_whole(&d.get_content(FILE).await.unwrap());
            // Leftover temporary files are never visible through the driver.
            let listed = d.list("/repo/blob").await.unwrap();
            assert_eq!(
                listed.len(),
                1,
                "only the committed file is listed: {listed:?}"
            );
            let walked = d.walk_collect("/").await.unwrap();
            assert!(walked.iter().all(|fi| !fi.path.as_str().contains('#')));
        });
    }
    println!(
        "    ({} hidden leftovers after 6 kills)",
        hidden_files(&s.root()).len()
    );
}

fn kill_during_put_content() {
    kill_during("put-loop");
}

fn kill_during_commit() {
    kill_during("commit-loop");
}

fn upload_resumes_in_another_process() {
    let s = Scratch::new();
    let status = s.spawn("upload-then-exit").wait().unwrap();
    assert!(status.success());
    let d = driver(&s.root());
    rt().block_on(async {
        assert!(
            d.get_content(FILE).await.is_err(),
            "uncommitted upload is not readable"
        );
        let mut w = d.writer(FILE, true).await.unwrap();
        assert_eq!(w.size(), A_LEN as u64);
        w.write("tail").await.unwrap();
        w.commit().await.unwrap();
        let got = d.get_content(FILE).await.unwrap();
        assert_eq!(got.len(), A_LEN + 4);
        assert!(got[..A_LEN].iter().all(|&b| b == b'a'));
        assert_eq!(&got[A_LEN..], b"tail");
    });
}

fn killed_upload_resumes_consistently() {
    let s = Scratch::new();
    let mut c = s.spawn("upload-then-die");
    s.wait_ready(&mut c);
    std::thread::sleep(Duration::from_millis(100));
    kill(&mut c);
    let d = driver(&s.root());
    rt().block_on(async {
        let mut w = d.writer(FILE, true).await.unwrap();
        let size = w.size();
        assert!(size >= A_LEN as u64, "the closed part survives: {size}");
        w.commit().await.unwrap();
        let got = d.get_content(FILE).await.unwrap();
        assert_eq!(got.len() as u64, size, "size() matches what is committed");
        assert!(
            got.iter().all(|&b| b == b'a'),
            "resumed upload holds only written bytes"
        );
    });
}

fn main() {
    if let (Ok(mode), Ok(root)) = (
        std::env::var("FS_TEST_CHILD"),
        std::env::var("FS_TEST_ROOT"),
    ) {
        child(&mode, PathBuf::from(root));
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, fn()); 4] = [
        ("kill_during_put_content", kill_during_put_content),
        ("kill_during_commit", kill_during_commit),
        (
            "upload_resumes_in_another_process",
            upload_resumes_in_another_process,
        ),
        (
            "killed_upload_resumes_consistently",
            killed_upload_resumes_consistently,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    println!("\nrunning {} tests", tests.len());
    for (name, f) in tests {
        if !filter.is_empty() && !filter.iter().any(|x| name.contains(x.as_str())) {
            continue;
        }
        let ok = std::panic::catch_unwind(f).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(101);
    }
}
