//! Opt-in: the whole conformance suite against real Aliyun OSS, when
//! `OSS_ACCESS_KEY_ID`, `OSS_ACCESS_KEY_SECRET`, `OSS_BUCKET` and `OSS_ENDPOINT` are set
//! (`OSS_REGION` too for V4 signatures when the endpoint does not name the region;
//! `OSS_SECURITY_TOKEN` for STS credentials). Without them it prints that it was skipped
//! and why. Everything is written under a fresh `storage-driver-live/<random>` prefix and
//! deleted by each case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use driver_api::Parameters;
use driver_oss as _;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The region of an endpoint such as `oss-cn-hangzhou.aliyuncs.com`.
fn region_of(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").last()?;
    let first = host.split('.').next()?;
    let r = first.strip_prefix("oss-")?;
    Some(r.trim_end_matches("-internal").to_owned())
}

#[test]
fn conformance_suite_against_real_oss() {
    let (Some(id), Some(secret), Some(bucket), Some(endpoint)) = (
        var("OSS_ACCESS_KEY_ID"),
        var("OSS_ACCESS_KEY_SECRET"),
        var("OSS_BUCKET"),
        var("OSS_ENDPOINT"),
    ) else {
        let reason = "OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET, OSS_BUCKET and OSS_ENDPOINT are \
                      not all set (no Aliyun OSS is reachable from CI; the suite runs on the OSS \
                      test server instead)";
        driver_testsuite::skip_test("oss", "live", reason);
        return;
    };
    let Some(region) = var("OSS_REGION").or_else(|| region_of(&endpoint)) else {
        panic!("set OSS_REGION: it cannot be read from OSS_ENDPOINT {endpoint:?}");
    };
    let base = format!(
        "storage-driver-live/{}",
        driver_testsuite::data::random_name(10)
    );
    let mut params = Parameters::new()
        .with("accesskeyid", id)
        .with("accesskeysecret", secret)
        .with("bucket", bucket)
        .with("endpoint", endpoint)
        .with("region", region);
    if let Some(t) = var("OSS_SECURITY_TOKEN") {
        params = params.with("securitytoken", t);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failed = Vec::new();
    let cases = driver_testsuite::all_cases();
    let total = cases.len();
    for case in cases {
        let params = params.clone();
        let base = base.clone();
        let factory: Arc<driver_testsuite::DriverFactoryFn> = Arc::new(move |root: String| {
            let p = params
                .clone()
                .with("rootdirectory", format!("{base}/{root}"));
            Box::pin(async move { driver_api::factory::create("oss", p).await })
        });
        let report = rt.block_on(driver_testsuite::run_case_async(
            case,
            factory,
            driver_testsuite::Sizes::from_env(),
            driver_testsuite::case_timeout(),
        ));
        println!(
            "{} {:?} in {:?}",
            report.name, report.outcome, report.elapsed
        );
        if let driver_testsuite::Outcome::Failed(m) = report.outcome {
            failed.push(format!("{}: {m}", report.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed on real OSS:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
