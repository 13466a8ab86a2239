//! Distribution's benchmarks against the inmemory driver alone (`cargo bench -p
//! driver-inmemory`); `cargo xtask bench inmemory` runs them next to a peer instead.
#![allow(missing_docs)]

fn benches(c: &mut criterion::Criterion) {
    let rt = driver_testsuite::bench::runtime();
    let driver = driver_inmemory::InMemoryDriver::new().into_driver();
    driver_testsuite::bench::run_all(c, &rt, "inmemory", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
