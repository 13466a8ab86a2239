//! Benchmarks with Distribution's semantics (`testsuites.BenchDriver`), as criterion
//! functions any driver crate can call from a `benches/` target.
//! (placeholder, filled below)
