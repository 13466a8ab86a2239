//! The whole conformance suite against the inmemory driver. Each case gets a new,
//! empty driver (the root token is irrelevant: an instance is its own namespace).

driver_testsuite::conformance_tests!(|_root: String| async move {
    driver_api::factory::create("inmemory", driver_api::Parameters::new()).await
});

// The factory finds the driver only if the crate is linked.
use driver_inmemory as _;
