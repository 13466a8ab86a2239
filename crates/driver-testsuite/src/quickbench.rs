//! The shared benchmarks as a quick, self-timed run for tools (`storagectl bench`): the
//! same operations and semantics as [`bench`](crate::bench) (see its table), each repeated
//! for a fixed time instead of under criterion's statistics, and returning errors instead
//! of panicking, so a misconfigured backend gives a message, not a crash.
//!
//! Everything is written under one random directory, deleted at the end.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use crate::bench::{BenchResult, BenchStore, GIB, KIB, MIB};
use crate::data::{random_name, DataGen};

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct QuickOptions {
    /// Time spent repeating each operation (at least one iteration always runs).
    pub time_per_case: Duration,
    /// Object sizes for `put_get` and `stream`.
    pub sizes: Vec<usize>,
    /// Files in the `walk` tree (directories of 100 files); 0 leaves `walk` out.
    pub walk_files: usize,
}

impl Default for QuickOptions {
    /// 1 s per case; 0 B, 1 KiB and 1 MiB objects; a 1,000-file walk.
    fn default() -> Self {
        Self {
            time_per_case: Duration::from_secs(1),
            sizes: vec![0, KIB, MIB],
            walk_files: 1_000,
        }
    }
}

/// One benchmark's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuickResult {
    /// `group/parameter`, as in the criterion report (`put_get/1KiB`, `list/50`...).
    pub name: String,
    /// Timed iterations.
    pub iterations: u64,
    /// Total timed wall time.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
    /// Payload bytes moved per iteration (0 for metadata operations).
    pub bytes_per_op: u64,
    /// Entries handled per iteration (files listed, deleted or walked; 1 otherwise).
    pub items_per_op: u64,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl QuickResult {
    /// Iterations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Mean time per iteration.
    pub fn mean(&self) -> Duration {
        self.elapsed / (self.iterations.max(1) as u32)
    }
    /// Payload throughput in MB/s (10^6 bytes), `None` for metadata operations.
    pub fn mb_per_sec(&self) -> Option<f64> {
        (self.bytes_per_op > 0).then(|| self.bytes_per_op as f64 * self.ops_per_sec() / 1e6)
    }
}

fn size_label(n: usize) -> String {
    match n {
        0 => "0B".into(),
        n if n >= GIB && n % GIB == 0 => format!("{}GiB", n / GIB),
        n if n >= MIB && n % MIB == 0 => format!("{}MiB", n / MIB),
        n if n % KIB == 0 => format!("{}KiB", n / KIB),
        n => format!("{n}B"),
    }
}

/// Repeats `op` until `time` has been spent timing it (at least once); `untimed` runs
/// after each iteration, outside the clock.
async fn repeat<T, Op, OpFut, After, AfterFut>(
    time: Duration,
    mut op: Op,
    mut untimed: After,
) -> BenchResult<(u64, Duration)>
where
    Op: FnMut(u64) -> OpFut,
    OpFut: std::future::Future<Output = BenchResult<T>>,
    After: FnMut(u64, T) -> AfterFut,
    AfterFut: std::future::Future<Output = BenchResult<()>>,
{
    let mut spent = Duration::ZERO;
    let mut n = 0;
    while n == 0 || spent < time {
        let t = Instant::now();
        let out = op(n).await?;
        spent += t.elapsed();
        untimed(n, out).await?;
        n += 1;
    }
    Ok((n, spent))
}

/// Runs every quick benchmark against `store`, calling `report` as each finishes.
pub async fn run(
    store: &dyn BenchStore,
    options: &QuickOptions,
    mut report: impl FnMut(&QuickResult) + Send,
) -> BenchResult<Vec<QuickResult>> {
    let base = format!("/quickbench-{}", random_name(10));
    let res = run_under(store, options, &base, &mut report).await;
    let cleanup = store.delete_dir(&base).await;
    let results = res?;
    cleanup?;
    Ok(results)
}

async fn run_under(
    store: &dyn BenchStore,
    o: &QuickOptions,
    base: &str,
    report: &mut (dyn FnMut(&QuickResult) + Send),
) -> BenchResult<Vec<QuickResult>> {
    let mut out = Vec::new();
    let mut push = |r: QuickResult, out: &mut Vec<QuickResult>| {
        report(&r);
        out.push(r);
    };
    let objects = format!("{base}/objects");
    // A sentinel keeps the parent in place, as in the criterion benchmarks.
    store
        .put(&format!("{objects}/sentinel"), Bytes::new())
        .await?;
    for (group, streaming) in [("put_get", false), ("stream", true)] {
        for &size in &o.sizes {
            let data = DataGen::random().bytes(size);
            let path = |i: u64| format!("{objects}/{group}-{i}");
            let (n, t) = repeat(
                o.time_per_case,
                |i| {
                    let (p, d) = (path(i), data.clone());
                    async move {
                        if streaming {
                            store.stream(&p, d).await
                        } else {
                            store.put(&p, d).await?;
                            let got = store.get(&p).await?;
                            if got.len() != size {
                                return Err(format!(
                                    "read back {} bytes of {p}, wrote {size}",
                                    got.len()
                                )
                                .into());
                            }
                            Ok(())
                        }
                    }
                },
                |i, ()| {
                    let p = path(i);
                    async move { store.delete(&p).await }
                },
            )
            .await?;
            push(
                QuickResult {
                    name: format!("{group}/{}", size_label(size)),
                    iterations: n,
                    elapsed: t,
                    bytes_per_op: size as u64,
                    items_per_op: 1,
                },
                &mut out,
            );
        }
    }
    for files in [5usize, 50] {
        let dir = format!("{base}/list{files}");
        put_empty(store, &dir, files).await?;
        // Let directory timestamps settle, as the criterion benchmark does.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let (n, t) = repeat(
            o.time_per_case,
            |_| async {
                let got = store.list(&dir).await?;
                if got != files {
                    return Err(format!("listed {got} entries of {dir}, expected {files}").into());
                }
                Ok(())
            },
            |_, ()| async { Ok(()) },
        )
        .await?;
        push(
            QuickResult {
                name: format!("list/{files}"),
                iterations: n,
                elapsed: t,
                bytes_per_op: 0,
                items_per_op: files as u64,
            },
            &mut out,
        );
        store.delete_dir(&dir).await?;
    }
    for files in [5usize, 50] {
        // Creating the files is untimed: done before each timed delete.
        let dir = |i: u64| format!("{base}/delete{files}-{i}");
        put_empty(store, &dir(0), files).await?;
        let (n, t) = repeat(
            o.time_per_case,
            |i| {
                let d = dir(i);
                async move { store.delete_dir(&d).await }
            },
            |i, ()| {
                let next = dir(i + 1);
                async move { put_empty(store, &next, files).await }
            },
        )
        .await?;
        store.delete_dir(&dir(n)).await?;
        push(
            QuickResult {
                name: format!("delete/{files}"),
                iterations: n,
                elapsed: t,
                bytes_per_op: 0,
                items_per_op: files as u64,
            },
            &mut out,
        );
    }
    if o.walk_files > 0 {
        let root = format!("{base}/walk");
        let puts = futures::stream::iter(0..o.walk_files).map(|i| {
            let path = format!("{root}/d{:04}/f{:03}", i / 100, i % 100);
            async move { store.put(&path, Bytes::new()).await }
        });
        let created: Vec<BenchResult<()>> = puts.buffer_unordered(16).collect().await;
        created.into_iter().collect::<BenchResult<Vec<()>>>()?;
        let files = o.walk_files;
        let (n, t) = repeat(
            o.time_per_case,
            |_| async {
                let seen = store.walk(&root).await?;
                if seen < files {
                    return Err(
                        format!("walk saw {seen} entries, expected at least {files}").into(),
                    );
                }
                Ok(())
            },
            |_, ()| async { Ok(()) },
        )
        .await?;
        push(
            QuickResult {
                name: format!("walk/{files}"),
                iterations: n,
                elapsed: t,
                bytes_per_op: 0,
                items_per_op: files as u64,
            },
            &mut out,
        );
    }
    Ok(out)
}

async fn put_empty(store: &dyn BenchStore, dir: &str, n: usize) -> BenchResult<()> {
    for i in 0..n {
        store.put(&format!("{dir}/f{i:05}"), Bytes::new()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_rates() {
        assert_eq!(size_label(0), "0B");
        assert_eq!(size_label(KIB), "1KiB");
        assert_eq!(size_label(MIB), "1MiB");
        assert_eq!(size_label(3 * GIB), "3GiB");
        assert_eq!(size_label(1000), "1000B");
        let r = QuickResult {
            name: "x".into(),
            iterations: 10,
            elapsed: Duration::from_secs(2),
            bytes_per_op: 1_000_000,
            items_per_op: 1,
        };
        assert_eq!(r.ops_per_sec(), 5.0);
        assert_eq!(r.mb_per_sec(), Some(5.0));
        assert_eq!(r.mean(), Duration::from_millis(200));
    }
}
