//! Distribution's benchmarks against the s3 driver on the test server: `cargo xtask bench
//! s3` starts moto and runs these (see tests/common for the variables, e.g. a real bucket).
//! Against an emulator the 1 GiB cases are left out (printed): moto keeps objects in RAM and
//! its figures at that size measure Python, not the driver.
//!
//! `paired/s3-vs-sdk/*` times the driver against the floor: the same operations as bare
//! aws-sdk-s3 calls (PutObject then GetObject; PutObject then a GetObject opened, not
//! drained) on the same server and client settings, interleaved, so the ratio is the
//! driver's own overhead.
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use driver_api::async_trait;
use driver_testsuite::bench::{self, BenchResult, BenchStore, KIB, MIB};

use driver_s3 as _;

/// Bare SDK calls: the floor under the driver.
struct Sdk {
    client: aws_sdk_s3::Client,
    bucket: String,
    root: String,
}

impl Sdk {
    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }
}

#[async_trait]
impl BenchStore for Sdk {
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(path))
            .body(data.into())
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
    async fn get(&self, path: &str) -> BenchResult<Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(path))
            .send()
            .await?;
        Ok(out.body.collect().await?.into_bytes())
    }
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()> {
        self.put(path, data).await?;
        drop(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(path))
                .send()
                .await?,
        );
        Ok(())
    }
    async fn list(&self, _dir: &str) -> BenchResult<usize> {
        Err("not used".into())
    }
    async fn delete(&self, path: &str) -> BenchResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(path))
            .send()
            .await?;
        Ok(())
    }
    async fn delete_dir(&self, dir: &str) -> BenchResult<()> {
        let prefix = format!("{}/", self.key(dir));
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await?;
        for o in out.contents() {
            if let Some(k) = o.key() {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(k)
                    .send()
                    .await?;
            }
        }
        Ok(())
    }
    async fn walk(&self, _dir: &str) -> BenchResult<usize> {
        Err("not used".into())
    }
}

async fn sdk_client() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // The driver's HTTP stack (rustls on ring), so only the driver's own code differs.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(
            env("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        ));
    if let (Some(ak), Some(sk)) = (env("S3_ACCESS_KEY"), env("S3_SECRET_KEY")) {
        loader = loader.credentials_provider(Credentials::new(ak, sk, None, None, "bench"));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(e) = env("S3_ENDPOINT") {
        b = b.endpoint_url(e).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

fn benches(c: &mut criterion::Criterion) {
    if std::env::var_os("S3_ENDPOINT").is_some()
        && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none()
    {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let root = common::root("bench");
    let params = common::params()
        .expect("S3_BUCKET (and S3_ENDPOINT) set: run through `cargo xtask bench s3`")
        .with("rootdirectory", root.clone());
    let bucket = params
        .get("bucket")
        .and_then(|b| b.as_str())
        .unwrap_or_default()
        .to_owned();
    let driver = rt
        .block_on(driver_api::factory::create("s3", params))
        .expect("creating the s3 driver");
    let sdk = Sdk {
        client: rt.block_on(sdk_client()),
        bucket,
        root: format!("{root}-sdk"),
    };
    let stores: [(&str, &dyn BenchStore); 2] = [("s3", &driver), ("sdk", &sdk)];
    bench::paired(
        c,
        &rt,
        "s3-vs-sdk-put_get",
        &[0, KIB, MIB],
        stores,
        |s, p, d| bench::put_get_op(s, p, d),
    );
    bench::paired(
        c,
        &rt,
        "s3-vs-sdk-stream",
        &[0, KIB, MIB],
        stores,
        |s, p, d| bench::stream_op(s, p, d),
    );
    bench::run_all(c, &rt, "s3", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
