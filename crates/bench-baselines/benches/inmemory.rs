//! The inmemory driver next to object_store's memory store, benchmark by benchmark:
//! `cargo xtask bench inmemory`.
#![allow(missing_docs)]

use bench_baselines::Peer;
use criterion::Criterion;
use driver_testsuite::bench::{self, BenchStore};

fn benches(c: &mut Criterion) {
    let rt = bench::runtime();
    let ours = driver_inmemory::InMemoryDriver::new().into_driver();
    let peer = Peer::memory();
    let stores: [(&str, &dyn BenchStore); 2] =
        [("inmemory", &ours), ("object_store-memory", &peer)];
    for (label, store) in stores {
        bench::put_get(c, &rt, label, store);
    }
    for (label, store) in stores {
        bench::stream(c, &rt, label, store);
    }
    for (label, store) in stores {
        bench::list(c, &rt, label, store);
        bench::delete(c, &rt, label, store);
        bench::walk(c, &rt, label, store);
    }
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
