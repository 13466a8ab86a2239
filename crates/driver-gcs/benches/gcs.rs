//! Distribution's benchmarks against the gcs driver: `cargo xtask bench gcs` starts
//! fake-gcs-server and runs these (see tests/common for the variables, e.g. a real
//! bucket). Against the emulator the 1 GiB cases are left out (printed): fake-gcs-server
//! holds objects in memory and re-hashes uploads per chunk, so its figures at that size
//! measure the emulator, not the driver.
//!
//! `paired/gcs-vs-rest/*` times the driver against the floor: the same operations as
//! bare JSON API calls (a simple upload then a media download; a simple upload then a
//! download opened, not drained) on the same HTTP stack, interleaved, so the ratio is the
//! driver's own overhead. It runs on the emulator (anonymous requests).
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use driver_api::async_trait;
use driver_testsuite::bench::{self, BenchResult, BenchStore, KIB, MIB};

/// Bare JSON API calls: the floor under the driver.
struct Rest {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    root: String,
}

impl Rest {
    fn object(&self, path: &str) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.endpoint).expect("endpoint URL");
        url.path_segments_mut()
            .expect("endpoint URL")
            .pop_if_empty()
            .extend(["storage", "v1", "b", &self.bucket, "o"])
            .push(&format!("{}{path}", self.root));
        url
    }

    async fn check(resp: reqwest::Response) -> BenchResult<reqwest::Response> {
        if !resp.status().is_success() {
            return Err(format!(
                "{} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            )
            .into());
        }
        Ok(resp)
    }

    async fn media(&self, path: &str) -> BenchResult<reqwest::Response> {
        let mut url = self.object(path);
        url.query_pairs_mut().append_pair("alt", "media");
        Self::check(self.http.get(url).send().await?).await
    }
}

#[async_trait]
impl BenchStore for Rest {
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.endpoint.trim_end_matches('/'),
            self.bucket
        );
        let resp = self
            .http
            .post(url)
            .query(&[
                ("uploadType", "media"),
                ("name", &format!("{}{path}", self.root)),
            ])
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await?;
        Self::check(resp).await.map(drop)
    }
    async fn get(&self, path: &str) -> BenchResult<Bytes> {
        Ok(self.media(path).await?.bytes().await?)
    }
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()> {
        self.put(path, data).await?;
        drop(self.media(path).await?);
        Ok(())
    }
    async fn list(&self, _dir: &str) -> BenchResult<usize> {
        Err("not used".into())
    }
    async fn delete(&self, path: &str) -> BenchResult<()> {
        Self::check(self.http.delete(self.object(path)).send().await?)
            .await
            .map(drop)
    }
    async fn delete_dir(&self, _dir: &str) -> BenchResult<()> {
        // The paired benchmarks delete object by object.
        Ok(())
    }
    async fn walk(&self, _dir: &str) -> BenchResult<usize> {
        Err("not used".into())
    }
}

fn benches(c: &mut criterion::Criterion) {
    if common::emulated() && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none() {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let root = common::root("bench");
    let params = common::params()
        .expect("GCS_BUCKET (and GCS_ENDPOINT) set: run through `cargo xtask bench gcs`")
        .with("rootdirectory", root.clone());
    let driver = rt
        .block_on(common::create(params))
        .expect("creating the gcs driver");
    if common::emulated() {
        let rest = Rest {
            http: driver_testsuite::http_client(),
            endpoint: common::var("GCS_ENDPOINT").expect("emulated"),
            bucket: common::var("GCS_BUCKET").expect("emulated"),
            root: format!("{root}-rest"),
        };
        let stores: [(&str, &dyn BenchStore); 2] = [("gcs", &driver), ("rest", &rest)];
        bench::paired(
            c,
            &rt,
            "gcs-vs-rest-put_get",
            &[0, KIB, MIB],
            stores,
            |s, p, d| bench::put_get_op(s, p, d),
        );
        bench::paired(
            c,
            &rt,
            "gcs-vs-rest-stream",
            &[0, KIB, MIB],
            stores,
            |s, p, d| bench::stream_op(s, p, d),
        );
    } else {
        eprintln!("SKIP paired gcs-vs-rest: runs on the emulator only (anonymous bare calls)");
    }
    bench::run_all(c, &rt, "gcs", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
