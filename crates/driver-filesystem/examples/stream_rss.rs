//! Streams a large file in through the writer and out through the reader, then prints the
//! process's peak resident memory: `cargo run --release -p driver-filesystem --example
//! stream_rss [GiB] [DIR]` (default 1 GiB in a temporary directory). Memory stays at a few
//! chunks whatever the size.
#![allow(clippy::print_stdout, clippy::expect_used)]

use driver_testsuite::data::DataGen;
use futures::StreamExt;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gib: u64 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let base = std::env::args()
        .nth(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base)?;
    let driver = driver_api::Driver::new(driver_filesystem::FilesystemDriver::new(dir.path(), 100));
    let total = gib << 30;
    let chunk = 1 << 20;

    let start = std::time::Instant::now();
    let mut gen = DataGen::new(42);
    let mut w = driver.writer("/big/blob", false).await?;
    let mut sum_in = 0u64;
    let mut written = 0;
    while written < total {
        let c = gen.bytes(chunk);
        sum_in = c
            .iter()
            .fold(sum_in, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
        w.write(c).await?;
        written += chunk as u64;
    }
    w.commit().await?;
    let write_secs = start.elapsed().as_secs_f64();

    let start = std::time::Instant::now();
    let mut s = driver.reader("/big/blob", 0).await?;
    let mut read = 0u64;
    let mut sum_out = 0u64;
    while let Some(c) = s.next().await {
        let c = c?;
        read += c.len() as u64;
        sum_out = c
            .iter()
            .fold(sum_out, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
    }
    let read_secs = start.elapsed().as_secs_f64();
    assert_eq!(read, total);
    assert_eq!(sum_in, sum_out, "content read back differs");
    println!(
        "streamed {gib} GiB in ({:.0} MB/s) and out ({:.0} MB/s); peak RSS {} MiB",
        total as f64 / write_secs / 1e6,
        total as f64 / read_secs / 1e6,
        peak_rss_kib() / 1024
    );
    Ok(())
}
