//! S3-specific behaviour on real servers: resume from a new instance (parked tail and
//! exact-chunk cases, and from ListMultipartUploads alone), multipart move above the
//! threshold, delete of 2,500 keys, walk over 5,000 keys in one listing pass, presigned
//! URLs fetched by a plain HTTP client, and SigV4 checked for real by s3s-fs (a wrong
//! secret fails with a clear authentication error).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use driver_api::{factory, Driver, Parameters, RedirectRequest, StorageError};
use driver_testsuite::data::DataGen;
use futures::StreamExt;

use driver_s3 as _;
use driver_testsuite::runtime as rt;

const MIB: usize = 1 << 20;

async fn driver(root: &str, extra: &[(&str, serde_json::Value)]) -> Driver {
    let mut p = common::params()
        .expect("test server configured")
        .with("rootdirectory", root);
    for (k, v) in extra {
        p = p.with(*k, v.clone());
    }
    factory::create("s3", p)
        .await
        .expect("creating the s3 driver")
}

/// Writes `first`, closes, resumes from a new instance, checks the size, writes `second`,
/// commits, and checks the content.
async fn resume_case(first: usize, second: usize) {
    let root = common::root("resume");
    let opts = [("chunksize", serde_json::json!(5 * MIB))];
    let (a, b) = (driver(&root, &opts).await, driver(&root, &opts).await);
    driver_testsuite::checks::resume_from_new_instance(&a, &b, "/blob", first, second).await;
    // Nothing left over: no parked tail, no listing noise.
    assert_eq!(b.list("/").await.unwrap().len(), 1);
    b.delete("/blob").await.unwrap();
}

#[test]
fn resume_with_a_parked_tail_from_a_new_instance() {
    // One 5 MiB part plus 2 MiB + 1 byte parked in the #upload object.
    rt().block_on(resume_case(7 * MIB + 1, 3 * MIB));
}

#[test]
fn resume_at_an_exact_chunk_boundary() {
    rt().block_on(resume_case(10 * MIB, MIB + 7));
}

#[test]
fn resume_small_upload_that_never_reached_a_part() {
    rt().block_on(resume_case(1000, 5 * MIB + 3));
}

#[test]
fn resume_from_list_multipart_uploads_without_a_parked_object() {
    rt().block_on(async {
        let root = common::root("resume-list");
        // One part in flight at a time: the second part's send waits for the first.
        let opts = [
            ("chunksize", serde_json::json!(5 * MIB)),
            ("maxconcurrency", serde_json::json!(1)),
        ];
        let a = driver(&root, &opts).await;
        let data = DataGen::random().bytes(12 * MIB);
        let mut w = a.writer("/x", false).await.unwrap();
        // Part 1 is stored, part 2 is in flight; the writer is then lost (a crashed
        // process): no close, so no parked object.
        w.write(data.slice(..10 * MIB)).await.unwrap();
        drop(w);
        let b = driver(&root, &opts).await;
        let mut w = b.writer("/x", true).await.unwrap();
        // What is durable: part 1, and part 2 if it finished before the drop.
        let size = w.size() as usize;
        assert!(
            size == 5 * MIB || size == 10 * MIB,
            "parts found by ListMultipartUploads/ListParts: {size}"
        );
        w.write(data.slice(size..)).await.unwrap();
        w.commit().await.unwrap();
        assert!(b.get_content("/x").await.unwrap() == data);
        b.delete("/x").await.unwrap();
    });
}

#[test]
fn cancel_aborts_and_removes_the_parked_tail() {
    rt().block_on(async {
        let root = common::root("cancel");
        let d = driver(&root, &[("chunksize", serde_json::json!(5 * MIB))]).await;
        let mut w = d.writer("/c", false).await.unwrap();
        w.write(DataGen::random().bytes(6 * MIB)).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/c", true).await.unwrap();
        w.cancel().await.unwrap();
        assert!(d
            .writer("/c", true)
            .await
            .map(|_| ())
            .unwrap_err()
            .is_not_found());
        assert!(d.list("/").await.unwrap().is_empty());
    });
}

#[test]
fn multipart_move_above_the_threshold() {
    rt().block_on(async {
        let root = common::root("move");
        let d = driver(
            &root,
            &[
                ("multipartcopythresholdsize", serde_json::json!(5 * MIB)),
                ("multipartcopychunksize", serde_json::json!(5 * MIB)),
                ("multipartcopymaxconcurrency", serde_json::json!(3)),
            ],
        )
        .await;
        let data = DataGen::random().bytes(12 * MIB + 5); // three copy parts, the last short
        d.put_content("/src/big", data.clone()).await.unwrap();
        d.rename("/src/big", "/dst/big").await.unwrap();
        let got = d.get_content("/dst/big").await.unwrap();
        assert!(got == data, "content after multipart copy");
        assert!(d.stat("/src/big").await.unwrap_err().is_not_found());
        // Below the threshold: a single CopyObject, same result.
        d.put_content("/small", "tiny").await.unwrap();
        d.rename("/small", "/moved").await.unwrap();
        assert_eq!(&d.get_content("/moved").await.unwrap()[..], b"tiny");
        d.delete("/dst").await.unwrap();
        d.delete("/moved").await.unwrap();
    });
}

#[test]
fn delete_2500_objects_under_a_prefix_and_nothing_else() {
    rt().block_on(async {
        let root = common::root("delete");
        let d = driver(&root, &[]).await;
        futures::stream::iter(0..2500)
            .map(|i| {
                let d = d.clone();
                async move {
                    d.put_content(&format!("/victim/d{:02}/f{i:04}", i % 25), Bytes::new())
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        // Siblings sharing the name as a prefix must survive.
        d.put_content("/victim-sibling", "keep").await.unwrap();
        d.put_content("/victimx/file", "keep").await.unwrap();
        assert_eq!(d.walk_collect("/victim").await.unwrap().len(), 2525);
        d.delete("/victim").await.unwrap();
        assert!(d.stat("/victim").await.unwrap_err().is_not_found());
        assert_eq!(
            &d.get_content("/victim-sibling").await.unwrap()[..],
            b"keep"
        );
        assert_eq!(&d.get_content("/victimx/file").await.unwrap()[..], b"keep");
        d.delete("/victim-sibling").await.unwrap();
        d.delete("/victimx").await.unwrap();
    });
}

/// The core's streaming tree delete on a real server, across pages of 7 keys.
#[test]
fn tree_delete_across_listing_pages() {
    rt().block_on(async {
        let root = common::root("pages");
        let p = || {
            common::params()
                .unwrap()
                .with("rootdirectory", root.as_str())
        };
        let s3 = driver_s3::S3Driver::from_parameters(p()).await.unwrap();
        let d = Driver::new(s3.clone().with_page_size(7));
        let fresh = Driver::new(driver_s3::S3Driver::from_parameters(p()).await.unwrap());
        driver_testsuite::checks::tree_delete_across_pages(&d, &fresh, "/t", 50).await;
        // 50 keys, 7 a page: at least 8 pages.
        assert!(s3.list_requests() >= 8, "{} pages", s3.list_requests());
        fresh.delete("/t").await.unwrap();
    });
}

#[test]
fn walk_over_5000_keys_is_one_listing_pass_in_walk_order() {
    rt().block_on(async {
        let root = common::root("walk");
        let p = common::params()
            .unwrap()
            .with("rootdirectory", root.as_str());
        let s3 = driver_s3::S3Driver::from_parameters(p).await.unwrap();
        let d = Driver::new(s3.clone());
        // Names with '-' and '.' next to '/': S3's byte order differs from the walk's.
        let paths: Vec<String> = (0..5000)
            .map(|i| match i % 4 {
                0 => format!("/t/d{:02}/f{i:04}", i % 50),
                1 => format!("/t/d{:02}-x/f{i:04}", i % 50),
                2 => format!("/t/d{:02}.y", i % 50),
                _ => format!("/t/d{:02}/g/h{i:04}", i % 50),
            })
            .collect();
        let mut unique = paths.clone();
        unique.sort();
        unique.dedup();
        futures::stream::iter(unique.clone())
            .map(|p| {
                let d = d.clone();
                async move { d.put_content(&p, Bytes::new()).await.unwrap() }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        let before = s3.list_requests();
        let walked = d.walk_collect("/t").await.unwrap();
        let listings = s3.list_requests() - before;
        let files: Vec<&str> = walked
            .iter()
            .filter(|f| !f.is_dir)
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(files.len(), unique.len());
        // One pass: a page per 1,000 keys, not a request per directory (150 here).
        assert!(
            listings <= unique.len().div_ceil(1000) as u64 + 1,
            "{listings} listing requests"
        );
        driver_testsuite::checks::assert_walk_order(&walked);
        // Skip-dir and start-after work on the flat listing too.
        let seen =
            driver_testsuite::checks::walk_after_skipping(&d, "/t", "/t/d25", "/t/d26").await;
        assert!(seen
            .iter()
            .all(|p| driver_api::cmp_paths(p, "/t/d25").is_gt()));
        assert!(
            !seen.iter().any(|p| p.starts_with("/t/d26/")),
            "skipped directory's contents"
        );
        assert!(seen.iter().any(|p| p == "/t/d25-x"), "{:?}", &seen[..5]);
        d.delete("/t").await.unwrap();
    });
}

async fn presigned_fetch(d: &Driver) {
    let data = DataGen::random().bytes(MIB + 3);
    d.put_content("/presigned/blob", data.clone())
        .await
        .unwrap();
    let url = d
        .redirect_url(&RedirectRequest::get(), "/presigned/blob")
        .await
        .unwrap()
        .expect("s3 has redirect URLs");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(
        url.contains("X-Amz-Expires=1200"),
        "default 20 minutes: {url}"
    );
    let http = driver_testsuite::http_client();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert!(resp.bytes().await.unwrap() == data);
    let head_url = d
        .redirect_url(&RedirectRequest::head(), "/presigned/blob")
        .await
        .unwrap()
        .unwrap();
    let resp = http.head(&head_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        (MIB + 3).to_string()
    );
    d.delete("/presigned").await.unwrap();
}

#[test]
fn presigned_urls_fetched_by_a_plain_http_client() {
    rt().block_on(async {
        let d = driver(&common::root("presign"), &[]).await;
        presigned_fetch(&d).await;
    });
}

/// A server that checks signatures (s3s-fs, or radosgw in its row) and its endpoint.
fn verifying() -> (Parameters, String) {
    common::verifying_params().expect(
        "s3s-fs (S3S_ENDPOINT) or radosgw (STORAGE_TEST_IMPLEMENTATION) is started by cargo \
         xtask test-all",
    )
}

fn s3s() -> Parameters {
    verifying().0
}

#[test]
fn sigv4_is_verified_by_a_verifying_server() {
    rt().block_on(async {
        // The right keys: everything works, signatures included (s3s-fs checks them).
        let root = common::root("sigv4");
        let d = factory::create("s3", s3s().with("rootdirectory", root.clone()))
            .await
            .unwrap();
        d.put_content("/a/b", "signed").await.unwrap();
        assert_eq!(&d.get_content("/a/b").await.unwrap()[..], b"signed");
        let mut w = d.writer("/a/big", false).await.unwrap();
        w.write(DataGen::random().bytes(11 * MIB)).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(d.stat("/a/big").await.unwrap().size, 11 * MIB as u64);
        presigned_fetch(&d).await;

        // A wrong secret: a clear authentication error, retried no further.
        let bad = factory::create(
            "s3",
            s3s()
                .with("rootdirectory", root.clone())
                .with("secretkey", "not-the-secret"),
        )
        .await
        .unwrap();
        let e = bad.put_content("/a/c", "x").await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StorageError::Unauthenticated { .. }), "{e:?}");
        assert!(text.contains("not authenticated"), "{text}");
        assert!(text.contains("SignatureDoesNotMatch"), "{text}");
        assert!(!e.is_retryable());
        assert!(
            !text.contains("not-the-secret"),
            "the secret never appears: {text}"
        );
        d.delete("/a").await.unwrap();
    });
}

#[test]
fn redirectendpoint_signs_for_the_public_host() {
    rt().block_on(async {
        // s3s-fs checks the signature, which covers the Host header: the URL works only if
        // it was signed for the redirect host (localhost instead of 127.0.0.1).
        let endpoint = verifying().1;
        let public = endpoint.replace("127.0.0.1", "localhost");
        let d = factory::create(
            "s3",
            s3s()
                .with("rootdirectory", common::root("redirect"))
                .with("redirectendpoint", public.clone()),
        )
        .await
        .unwrap();
        d.put_content("/r", "via the public endpoint")
            .await
            .unwrap();
        let url = d
            .redirect_url(&RedirectRequest::get(), "/r")
            .await
            .unwrap()
            .unwrap();
        assert!(url.starts_with(&public), "{url}");
        let body = driver_testsuite::http_client()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(body.status(), 200, "{url}");
        assert_eq!(&body.bytes().await.unwrap()[..], b"via the public endpoint");
        d.delete("/r").await.unwrap();
    });
}

#[test]
fn a_missing_bucket_is_a_backend_error_not_a_missing_path() {
    rt().block_on(async {
        let d = factory::create(
            "s3",
            common::params()
                .unwrap()
                .with("bucket", "no-such-bucket-for-storage-drivers"),
        )
        .await
        .unwrap();
        let e = d.get_content("/x").await.unwrap_err();
        assert!(matches!(e, StorageError::Backend { .. }), "{e:?}");
        assert!(e.to_string().contains("NoSuchBucket"), "{e}");
    });
}

#[test]
fn a_server_that_is_down_fails_fast_with_a_retryable_error() {
    rt().block_on(async {
        let port = driver_testsuite::checks::closed_port();
        let d = factory::create(
            "s3",
            Parameters::new()
                .with("bucket", "b")
                .with("regionendpoint", format!("http://127.0.0.1:{port}"))
                .with("forcepathstyle", true)
                .with("accesskey", "a")
                .with("secretkey", "b"),
        )
        .await
        .unwrap();
        driver_testsuite::checks::down_backend_error(
            "s3",
            std::time::Duration::from_secs(30),
            d.stat("/x"),
        )
        .await;
    });
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn loglevel_logs_requests_without_secrets() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // A current-thread runtime keeps every request on this thread, under this subscriber.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let params = common::params()
                .unwrap()
                .with("rootdirectory", common::root("log"))
                .with("loglevel", "debug");
            let d = factory::create("s3", params).await.unwrap();
            d.put_content("/logged", "x").await.unwrap();
            d.delete("/logged").await.unwrap();
        })
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("driver_s3::requests") && text.contains("method=\"PUT\""),
        "{text}"
    );
    assert!(text.contains("status=200"), "{text}");
    assert!(
        !text.to_lowercase().contains("authorization") && !text.contains("X-Amz-Signature"),
        "{text}"
    );
}
