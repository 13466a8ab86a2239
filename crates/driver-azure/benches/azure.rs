//! Distribution's benchmarks against the azure driver: `cargo xtask bench azure` starts
//! Azurite and runs these (see tests/common for the variables, e.g. a real account).
//! Against Azurite the 1 GiB cases are left out (printed): Azurite holds blobs in memory
//! in a Node process, and its figures at that size measure Node, not the driver.
//!
//! `paired/azure-vs-rest/*` times the driver against the floor: the same operations as
//! bare signed REST calls (`Put Blob` then `Get Blob`; `Put Blob` then a `Get Blob`
//! opened, not drained) on the same HTTP stack and signer, interleaved, so the ratio is
//! the driver's own overhead. It needs the account key (shared-key auth).
#![allow(missing_docs, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use driver_api::async_trait;
use driver_testsuite::bench::{self, BenchResult, BenchStore, KIB, MIB};
use reqsign_azure_storage::{Credential, RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, Signer};

/// Bare signed REST calls: the floor under the driver.
struct Rest {
    http: reqwest::Client,
    signer: Signer<Credential>,
    /// `<service>/<container>/<root>`.
    base: String,
}

impl Rest {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> BenchResult<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method.clone();
        parts.uri = url.parse()?;
        parts.headers.insert("x-ms-version", "2023-11-03".parse()?);
        if let Some(b) = &body {
            parts.headers.insert("content-length", b.len().into());
            parts.headers.insert("x-ms-blob-type", "BlockBlob".parse()?);
        }
        self.signer.sign(&mut parts, None).await?;
        let mut req = self.http.request(method, parts.uri.to_string());
        for (k, v) in &parts.headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await?;
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
}

#[async_trait]
impl BenchStore for Rest {
    async fn put(&self, path: &str, data: Bytes) -> BenchResult<()> {
        self.send(reqwest::Method::PUT, path, Some(data))
            .await
            .map(drop)
    }
    async fn get(&self, path: &str) -> BenchResult<Bytes> {
        Ok(self
            .send(reqwest::Method::GET, path, None)
            .await?
            .bytes()
            .await?)
    }
    async fn stream(&self, path: &str, data: Bytes) -> BenchResult<()> {
        self.put(path, data).await?;
        drop(self.send(reqwest::Method::GET, path, None).await?);
        Ok(())
    }
    async fn list(&self, _dir: &str) -> BenchResult<usize> {
        Err("not used".into())
    }
    async fn delete(&self, path: &str) -> BenchResult<()> {
        self.send(reqwest::Method::DELETE, path, None)
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

fn rest(root: &str) -> Option<Rest> {
    let account = common::var("AZURE_ACCOUNT_NAME")?;
    let key = common::var("AZURE_ACCOUNT_KEY")?;
    let service = common::var("AZURE_SERVICE_URL")
        .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
    let container = common::var("AZURE_CONTAINER").unwrap_or_else(|| "storage-driver-tests".into());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build().expect("an HTTP client");
    let signer = Signer::new(
        Context::new(),
        StaticCredentialProvider::new_shared_key(&account, &key),
        RequestSigner::new(),
    );
    Some(Rest {
        http,
        signer,
        base: format!("{service}/{container}/{root}"),
    })
}

fn benches(c: &mut criterion::Criterion) {
    if std::env::var_os("AZURE_SERVICE_URL").is_some()
        && std::env::var_os("DRIVER_BENCH_SKIP_1G").is_none()
    {
        std::env::set_var("DRIVER_BENCH_SKIP_1G", "1");
    }
    let rt = bench::runtime();
    let root = common::root("bench");
    let params = common::params()
        .expect(
            "AZURE_ACCOUNT_NAME (and AZURE_SERVICE_URL) set: run through `cargo xtask bench azure`",
        )
        .with("rootdirectory", root.clone());
    let driver = rt
        .block_on(common::create(params))
        .expect("creating the azure driver");
    match rest(&format!("{root}-rest")) {
        Some(rest) => {
            let stores: [(&str, &dyn BenchStore); 2] = [("azure", &driver), ("rest", &rest)];
            bench::paired(
                c,
                &rt,
                "azure-vs-rest-put_get",
                &[0, KIB, MIB],
                stores,
                |s, p, d| bench::put_get_op(s, p, d),
            );
            bench::paired(
                c,
                &rt,
                "azure-vs-rest-stream",
                &[0, KIB, MIB],
                stores,
                |s, p, d| bench::stream_op(s, p, d),
            );
        }
        None => {
            eprintln!("SKIP paired azure-vs-rest: AZURE_ACCOUNT_KEY is not set (shared key needed)")
        }
    }
    bench::run_all(c, &rt, "azure", &driver);
}

criterion::criterion_group!(group, benches);
criterion::criterion_main!(group);
