//! Benchmarks with Distribution's semantics (`testsuites.BenchDriver`), as criterion
//! functions any driver crate calls from a `benches/` target:
//!
//! ```text
//! // benches/mydriver.rs
//! fn benches(c: &mut criterion::Criterion) {
//!     let rt = driver_testsuite::bench::runtime();
//!     let driver = rt.block_on(make_driver());
//!     driver_testsuite::bench::run_all(c, &rt, "mydriver", &driver);
//! }
//! criterion::criterion_group!(g, benches);
//! criterion::criterion_main!(g);
//! ```
//!
//! What each benchmark times, per iteration (as Distribution's Go benchmarks):
//!
//! | group | timed | untimed |
//! |---|---|---|
//! | `put_get/{0B,1KiB,1MiB,1GiB}` | `put_content(new path)` + `get_content` | delete afterwards (keeps memory bounded) |
//! | `stream/{…}` | `writer(new path)`, one write, `commit`, `close`, `reader(path, 0)` opened, not drained | delete afterwards |
//! | `list/{5,50}` | `list(parent)` of N empty files | creating them once, then 2.1 s for directory timestamps to settle |
//! | `delete/{5,50}` | `delete(parent)` | creating N empty files |
//! | `walk/10k` | walking 100 dirs × 100 empty files | creating them once |
//!
//! The same functions run any [`BenchStore`], so reference stores (raw syscalls, a peer
//! library) are measured with identical semantics in the same run. `DRIVER_BENCH_SKIP_1G=1`
//! leaves out the 1 GiB cases (with a printed reason).

#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use driver_api::{async_trait, BoxError, Driver, WalkControl, WalkOptions};
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::runtime::Runtime;

use crate::data::{random_name, DataGen};
use criterion::measurement::WallTime;

/// Result type of [`BenchStore`] methods.
pub type BenchResult<T> = Result<T, BoxError>;

/// The operations the benchmarks time, so drivers and reference stores share one harness.
#[async_trait]
pub trait BenchStore: Send + Sync {
    /// Replace the object at `path` with `data`.
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()>;
    /// Read the whole object.
    async fn get(&self, path: &str) -> BenchResult<Bytes>;
    /// Stream `data` in with one write and commit, then open a reader without draining it.
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()>;
    /// Number of direct children of `dir`.
    async fn list(&self, dir: &str) -> BenchResult<usize>;
    /// Delete one object.
    async fn delete(&self, path: &str) -> BenchResult<()>;
    /// Delete `dir` and everything below it.
    async fn delete_dir(&self, dir: &str) -> BenchResult<()>;
    /// Number of entries below `dir` (files and, where the store has them, directories).
    async fn walk(&self, dir: &str) -> BenchResult<usize>;
}

#[async_trait]
impl BenchStore for Driver {
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()> {
        Ok(self.put_content(path, data).await?)
    }
    async fn get(&self, path: &str) -> BenchResult<Bytes> {
        Ok(self.get_content(path).await?)
    }
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()> {
        let mut w = self.writer(path, false).await?;
        w.write(data).await?;
        w.commit().await?;
        w.close().await?;
        drop(self.reader(path, 0).await?);
        Ok(())
    }
    async fn list(&self, dir: &str) -> BenchResult<usize> {
        Ok(Driver::list(self, dir).await?.len())
    }
    async fn delete(&self, path: &str) -> BenchResult<()> {
        Ok(Driver::delete(self, path).await?)
    }
    async fn delete_dir(&self, dir: &str) -> BenchResult<()> {
        Ok(Driver::delete(self, dir).await?)
    }
    async fn walk(&self, dir: &str) -> BenchResult<usize> {
        let mut n = 0;
        Driver::walk(self, dir, &WalkOptions::default(), |_| {
            n += 1;
            WalkControl::Continue
        })
        .await?;
        Ok(n)
    }
}

/// The suite's runtime, for benchmark harnesses.
pub use crate::runtime;

/// 1 KiB.
pub const KIB: usize = 1 << 10;
/// 1 MiB.
pub const MIB: usize = 1 << 20;
/// 1 GiB.
pub const GIB: usize = 1 << 30;

fn size_label(n: usize) -> String {
    match n {
        0 => "0B".into(),
        n if n >= GIB => format!("{}GiB", n / GIB),
        n if n >= MIB => format!("{}MiB", n / MIB),
        n => format!("{}KiB", n / KIB),
    }
}

fn skip_1g() -> bool {
    let skip = std::env::var("DRIVER_BENCH_SKIP_1G").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("SKIP 1 GiB benchmarks: DRIVER_BENCH_SKIP_1G=1");
    }
    skip
}

fn must<T>(r: BenchResult<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("benchmark step {what} failed: {e}"))
}

/// Every benchmark for `store`, under `label` in criterion's report.
pub fn run_all<S: BenchStore + ?Sized>(c: &mut Criterion, rt: &Runtime, label: &str, store: &S) {
    put_get(c, rt, label, store);
    stream(c, rt, label, store);
    list(c, rt, label, store);
    delete(c, rt, label, store);
    walk(c, rt, label, store);
}

fn sizes() -> Vec<usize> {
    let mut v = vec![0, KIB, MIB];
    if !skip_1g() {
        v.push(GIB);
    }
    v
}

fn configure_for(group: &mut criterion::BenchmarkGroup<'_, WallTime>, size: usize) {
    if size >= GIB {
        // Fewer samples, never a smaller size.
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_millis(1));
        group.measurement_time(Duration::from_secs(5));
    } else {
        group.sample_size(30);
        group.sampling_mode(SamplingMode::Auto);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
    }
}

/// One `put_get` operation: put the object, read it back.
pub fn put_get_op<'a, S: BenchStore + ?Sized>(
    store: &'a S,
    path: &'a str,
    data: Bytes,
) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let len = data.len();
        must(store.put(path, data).await, "put");
        let got = must(store.get(path).await, "get");
        assert_eq!(got.len(), len);
    })
}

/// One `stream` operation: writer, one write, commit, close, open a reader.
pub fn stream_op<'a, S: BenchStore + ?Sized>(
    store: &'a S,
    path: &'a str,
    data: Bytes,
) -> BoxFuture<'a, ()> {
    Box::pin(async move { must(store.stream(path, data).await, "stream") })
}

/// `put_get/<size>`: put a new object, read it back.
pub fn put_get<S: BenchStore + ?Sized>(c: &mut Criterion, rt: &Runtime, label: &str, store: &S) {
    per_new_object(c, rt, label, "put_get", store, put_get_op::<S>);
}

/// `stream/<size>`: writer, one write, commit, close, open a reader.
pub fn stream<S: BenchStore + ?Sized>(c: &mut Criterion, rt: &Runtime, label: &str, store: &S) {
    per_new_object(c, rt, label, "stream", store, stream_op::<S>);
}

/// An operation on a fresh object, for [`paired`].
pub type ObjectOp = for<'a> fn(&'a dyn BenchStore, &'a str, Bytes) -> BoxFuture<'a, ()>;

/// Interleaved comparison of two stores on `op` at each of `sizes`: benchmarks
/// `paired/<name>/<size>/<label>`, one per store, each timing its store's operation while
/// the other store's runs, untimed, between its iterations. Both figures come from the same
/// workload, so background noise (disk writeback, neighbours on the VM) weighs on both alike
/// and their ratio holds even where absolute figures move 2x between runs.
pub fn paired(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    sizes: &[usize],
    stores: [(&str, &dyn BenchStore); 2],
    op: ObjectOp,
) {
    let all = [stores[0].1, stores[1].1];
    per_size(
        c,
        rt,
        &format!("paired/{name}"),
        sizes,
        &all,
        |group, size, data, parent| {
            for (timed, other) in [(0, 1), (1, 0)] {
                let (label, store) = stores[timed];
                let (_, shadow) = stores[other];
                let id = BenchmarkId::new(size_label(size), label);
                group.bench_with_input(id, data, |b, data| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                let path = format!("{parent}/{}", random_name(32));
                                op(shadow, &path, data.clone()).await;
                                must(shadow.delete(&path).await, "delete");
                                let t = Instant::now();
                                op(store, &path, data.clone()).await;
                                total += t.elapsed();
                                must(store.delete(&path).await, "delete");
                            }
                            total
                        })
                    })
                });
            }
        },
    );
}

/// Like [`paired`], for any number of stores, with each batch of iterations run as a task
/// on the runtime's workers, as a server's request handlers run: `paired-on-workers/<name>/
/// <size>/<label>`. Timed from the harness's `block_on` thread instead, every answer that
/// arrives on a worker also pays a wake-up of that thread (tens of microseconds on a small
/// VM), which weighs on stores that answer through more hops, such as a driver in
/// another process. Each timed operation follows the same operation, untimed, on every
/// other store.
pub fn paired_on_workers(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    sizes: &[usize],
    stores: &[(&str, std::sync::Arc<dyn BenchStore>)],
    op: ObjectOp,
) {
    let refs: Vec<&dyn BenchStore> = stores.iter().map(|(_, s)| &**s).collect();
    let group_name = format!("paired-on-workers/{name}");
    per_size(
        c,
        rt,
        &group_name,
        sizes,
        &refs,
        |group, size, data, parent| {
            for (timed, (label, _)) in stores.iter().enumerate() {
                let id = BenchmarkId::new(size_label(size), label);
                group.bench_with_input(id, data, |b, data| {
                    b.iter_custom(|iters| {
                        let all: Vec<_> = stores.iter().map(|(_, s)| s.clone()).collect();
                        let (data, parent) = (data.clone(), parent.to_owned());
                        let task = rt.spawn(async move {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                let path = format!("{parent}/{}", random_name(32));
                                for (i, shadow) in all.iter().enumerate() {
                                    if i != timed {
                                        op(&**shadow, &path, data.clone()).await;
                                        must(shadow.delete(&path).await, "delete");
                                    }
                                }
                                let t = Instant::now();
                                op(&*all[timed], &path, data.clone()).await;
                                total += t.elapsed();
                                must(all[timed].delete(&path).await, "delete");
                            }
                            total
                        });
                        must(rt.block_on(task).map_err(Into::into), "benchmark task")
                    })
                });
            }
        },
    );
}

/// What the paired comparisons share: a group; a parent directory in every store, kept by
/// a sentinel file; each size (1 GiB ones only on demand) configured, with its data made
/// once and handed to `each` with the parent; then the parents deleted.
fn per_size(
    c: &mut Criterion,
    rt: &Runtime,
    group_name: &str,
    sizes: &[usize],
    stores: &[&dyn BenchStore],
    mut each: impl FnMut(&mut criterion::BenchmarkGroup<'_, WallTime>, usize, &Bytes, &str),
) {
    let mut group = c.benchmark_group(group_name);
    let parent = format!("/bench-{}", random_name(8));
    for store in stores {
        rt.block_on(async {
            must(
                store.put(&format!("{parent}/sentinel"), Bytes::new()).await,
                "put",
            )
        });
    }
    for &size in sizes {
        if size >= GIB && skip_1g() {
            continue;
        }
        configure_for(&mut group, size);
        group.throughput(Throughput::Bytes(size as u64));
        let data = DataGen::random().bytes(size);
        each(&mut group, size, &data, &parent);
    }
    for store in stores {
        rt.block_on(async { must(store.delete_dir(&parent).await, "cleanup") });
    }
    group.finish();
}

/// Times `op` on a fresh object per iteration, for every size; each object is deleted
/// (untimed) afterwards. A sentinel file keeps the parent directory in place, as in Go's
/// benchmark, so a store that removes empty directories does not pay to re-create it.
fn per_new_object<S, F>(c: &mut Criterion, rt: &Runtime, label: &str, name: &str, store: &S, op: F)
where
    S: BenchStore + ?Sized,
    F: for<'a> Fn(&'a S, &'a str, Bytes) -> BoxFuture<'a, ()>,
{
    let mut group = c.benchmark_group(format!("{label}/{name}"));
    let parent = format!("/bench-{}", random_name(8));
    rt.block_on(async {
        must(
            store.put(&format!("{parent}/sentinel"), Bytes::new()).await,
            "put",
        )
    });
    for size in sizes() {
        configure_for(&mut group, size);
        group.throughput(Throughput::Bytes(size as u64));
        let data = DataGen::random().bytes(size);
        group.bench_with_input(
            BenchmarkId::from_parameter(size_label(size)),
            &data,
            |b, data| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let path = format!("{parent}/{}", random_name(32));
                            let t = Instant::now();
                            op(store, &path, data.clone()).await;
                            total += t.elapsed();
                            must(store.delete(&path).await, "delete");
                        }
                        total
                    })
                })
            },
        );
    }
    rt.block_on(async { must(store.delete_dir(&parent).await, "cleanup") });
    group.finish();
}

async fn put_empty_files<S: BenchStore + ?Sized>(store: &S, dir: &str, n: usize) {
    let data = Bytes::new();
    for i in 0..n {
        must(
            store.put(&format!("{dir}/f{i:05}"), data.clone()).await,
            "put",
        );
    }
}

/// `list/<n>`: list a directory of `n` empty files.
pub fn list<S: BenchStore + ?Sized>(c: &mut Criterion, rt: &Runtime, label: &str, store: &S) {
    let mut group = c.benchmark_group(format!("{label}/list"));
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for n in [5usize, 50] {
        let dir = format!("/bench-{}", random_name(8));
        rt.block_on(put_empty_files(store, &dir, n));
        // A listed directory in a running registry was usually written a while ago; let its
        // timestamps settle so stores that validate caches by them behave as they would.
        std::thread::sleep(Duration::from_millis(2100));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(must(store.list(&dir).await, "list"), n);
                    }
                    t.elapsed()
                })
            })
        });
        rt.block_on(async { must(store.delete_dir(&dir).await, "cleanup") });
    }
    group.finish();
}

/// `delete/<n>`: delete a directory of `n` empty files (created untimed).
pub fn delete<S: BenchStore + ?Sized>(c: &mut Criterion, rt: &Runtime, label: &str, store: &S) {
    let mut group = c.benchmark_group(format!("{label}/delete"));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
    for n in [5usize, 50] {
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = format!("/bench-{}", random_name(8));
                        put_empty_files(store, &dir, n).await;
                        let t = Instant::now();
                        must(store.delete_dir(&dir).await, "delete");
                        total += t.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

/// `walk/10k`: walk 100 directories of 100 empty files.
pub fn walk<S: BenchStore + ?Sized>(c: &mut Criterion, rt: &Runtime, label: &str, store: &S) {
    let mut group = c.benchmark_group(format!("{label}/walk"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let root = format!("/bench-{}", random_name(8));
    rt.block_on(async {
        let puts = futures::stream::iter(0..10_000).map(|i| {
            let path = format!("{root}/d{:03}/f{:03}", i / 100, i % 100);
            async move { must(store.put(&path, Bytes::new()).await, "put") }
        });
        puts.buffer_unordered(16).collect::<Vec<()>>().await;
    });
    let mut expected = None;
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("10k", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let n = must(store.walk(&root).await, "walk");
                    assert!(n >= 10_000, "walk saw {n} entries");
                    assert_eq!(*expected.get_or_insert(n), n);
                }
                t.elapsed()
            })
        })
    });
    rt.block_on(async { must(store.delete_dir(&root).await, "cleanup") });
    group.finish();
}
