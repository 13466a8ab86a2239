//! OSS-specific behaviour on the OSS test server (signatures checked by oss2) that
//! `cargo xtask test-all` starts: resume from a new instance (ListMultipartUploads +
//! ListParts), a move above the multipart-copy threshold (UploadPartCopy, counted by the
//! server), a delete of 2,500 objects in DeleteMultipleObjects batches that spares a
//! sibling, a tree delete streamed across listing pages of 7 keys, wrong credentials
//! rejected clearly, presigned URLs fetched by a plain HTTP client, V1 signatures and STS
//! tokens, and oss2's own client against the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use driver_api::{Driver, Parameters, RedirectRequest, StorageError};
use driver_oss::{OssDriver, ServiceError};
use driver_testsuite::data::DataGen;
use driver_testsuite::runtime as rt;
use futures::StreamExt;

const MIB: usize = 1 << 20;
/// The smallest part the driver allows.
const CHUNK: usize = 5 * MIB;

fn params(root: &str) -> Parameters {
    common::params()
        .expect("OSS test server configured")
        .with("rootdirectory", root)
        .with("chunksize", CHUNK as u64)
}

async fn driver(root: &str) -> Driver {
    common::create(params(root))
        .await
        .expect("creating the oss driver")
}

fn endpoint() -> String {
    common::var("OSS_TEST_ENDPOINT").expect("OSS_TEST_ENDPOINT")
}

fn service_error(e: &StorageError) -> &ServiceError {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<ServiceError>())
        .unwrap_or_else(|| panic!("not an OSS service error: {e:?}"))
}

async fn resume_case(first: usize, second: usize) {
    let root = common::root("resume");
    let (a, b) = (driver(&root).await, driver(&root).await);
    driver_testsuite::checks::resume_from_new_instance(&a, &b, "/obj", first, second).await;
    b.delete("/obj").await.unwrap();
}

#[test]
fn resume_across_part_boundaries_from_a_new_instance() {
    // A closed tail of 5 MiB + 12,345 bytes becomes a part; the rest is parked.
    rt().block_on(resume_case(2 * CHUNK + 12_345, CHUNK + 7));
    // A small tail is parked in `<key>#upload`, then re-joined.
    rt().block_on(resume_case(CHUNK + 100, 3 * CHUNK));
}

#[test]
fn resume_at_a_part_boundary_with_nothing_written_and_twice() {
    rt().block_on(resume_case(2 * CHUNK, 0));
    rt().block_on(resume_case(0, CHUNK / 3));
    rt().block_on(async {
        let root = common::root("resume-twice");
        let d = driver_testsuite::checks::resume_twice(|| driver(&root), "/e", CHUNK).await;
        d.delete("/e").await.unwrap();
    });
}

#[test]
fn resume_finds_the_upload_by_listing_when_nothing_was_parked() {
    // A writer that uploaded parts but died before `close`: the new instance finds the
    // upload with ListMultipartUploads and its parts with ListParts.
    rt().block_on(async {
        let root = common::root("resume-list");
        let data = DataGen::random().bytes(2 * CHUNK + 1);
        // One part in flight at a time: the second part's send waits for the first.
        let one = || async {
            common::create(params(&root).with("maxconcurrency", 1))
                .await
                .unwrap()
        };
        let d = one().await;
        let mut w = d.writer("/x", false).await.unwrap();
        // Part 1 is stored, part 2 is in flight; the writer is then lost (a crashed
        // process): no close, so no parked object.
        w.write(data.slice(..2 * CHUNK)).await.unwrap();
        drop(w);
        let before = common::op_count(&endpoint(), "ListMultipartUploads").await;
        let mut w = one().await.writer("/x", true).await.unwrap();
        // What is durable: part 1, and part 2 if it finished before the drop.
        let size = w.size() as usize;
        assert!(
            size == CHUNK || size == 2 * CHUNK,
            "parts found by ListMultipartUploads/ListParts: {size}"
        );
        assert!(common::op_count(&endpoint(), "ListMultipartUploads").await > before);
        w.write(data.slice(size..)).await.unwrap();
        w.commit().await.unwrap();
        assert!(d.get_content("/x").await.unwrap() == data);
        d.delete("/x").await.unwrap();
    });
}

#[test]
fn move_above_the_threshold_copies_part_by_part() {
    rt().block_on(async {
        let mib: usize = common::var("OSS_TEST_MOVE_MIB")
            .and_then(|v| v.parse().ok())
            .unwrap_or(40);
        let root = common::root("move");
        let d = common::create(
            params(&root)
                .with("multipartcopythreshold", 8u64 << 20)
                .with("multipartcopychunksize", 5u64 << 20),
        )
        .await
        .unwrap();
        let data = DataGen::random().bytes(mib * MIB + 4321);
        let mut w = d.writer("/src/big", false).await.unwrap();
        w.write(data.clone()).await.unwrap();
        w.commit().await.unwrap();
        let parts = common::op_count(&endpoint(), "UploadPartCopy").await;
        d.rename("/src/big", "/dst/big").await.unwrap();
        let expected_parts = (data.len() as u64).div_ceil(5 << 20);
        assert!(
            common::op_count(&endpoint(), "UploadPartCopy").await - parts >= expected_parts,
            "the move used UploadPartCopy"
        );
        assert!(d.stat("/src/big").await.unwrap_err().is_not_found());
        let got = d.get_content("/dst/big").await.unwrap();
        assert!(got == data, "moved content byte-exact");
        // From an offset inside the third part.
        let off = 2 * (5 << 20) + 17;
        let mut r = d.reader("/dst/big", off as u64).await.unwrap();
        let mut tail = Vec::new();
        while let Some(c) = r.next().await {
            tail.extend_from_slice(&c.unwrap());
        }
        assert!(tail[..] == data[off..]);
        // Below the threshold: one CopyObject.
        d.put_content("/small", Bytes::from_static(b"tiny"))
            .await
            .unwrap();
        let before = common::op_count(&endpoint(), "CopyObject").await;
        d.rename("/small", "/small2").await.unwrap();
        assert!(common::op_count(&endpoint(), "CopyObject").await > before);
        assert_eq!(&d.get_content("/small2").await.unwrap()[..], b"tiny");
        d.delete("/dst").await.unwrap();
        d.delete("/small2").await.unwrap();
    });
}

#[test]
fn delete_of_2500_objects_in_batches_spares_siblings_after_paged_list_and_walk() {
    rt().block_on(async {
        let root = common::root("delete");
        let d = driver(&root).await;
        let n: usize = common::var("OSS_TEST_DELETE_COUNT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2500);
        futures::stream::iter(0..n)
            .map(|i| {
                let d = d.clone();
                async move {
                    let p = format!("/dir/{}/f{i:05}", i % 2);
                    d.put_content(&p, Bytes::from(format!("{i}"))).await
                }
            })
            .buffer_unordered(32)
            .for_each(|r| async move { r.unwrap() })
            .await;
        d.put_content("/dir-sibling", Bytes::from_static(b"keep"))
            .await
            .unwrap();
        d.put_content("/dirx/keep", Bytes::from_static(b"keep"))
            .await
            .unwrap();
        // Listings of more than one page (1,000 keys): a list of 1,250 children, a walk
        // over 2,500 files.
        let half = d.list("/dir/0").await.unwrap();
        assert_eq!(
            half.len(),
            n.div_ceil(2),
            "list of a directory over several pages"
        );
        let walked = d.walk_collect("/dir").await.unwrap();
        let files = walked.iter().filter(|i| !i.is_dir).count();
        assert_eq!(files, n, "walk over several pages");
        let before = common::op_count(&endpoint(), "DeleteMultipleObjects").await;
        d.delete("/dir").await.unwrap();
        let batches = common::op_count(&endpoint(), "DeleteMultipleObjects").await - before;
        assert!(
            batches >= n.div_ceil(1000) as u64,
            "{batches} DeleteMultipleObjects requests for {n} keys"
        );
        assert!(d.list("/dir").await.unwrap_err().is_not_found());
        assert!(d.stat("/dir").await.unwrap_err().is_not_found());
        assert_eq!(&d.get_content("/dir-sibling").await.unwrap()[..], b"keep");
        assert_eq!(&d.get_content("/dirx/keep").await.unwrap()[..], b"keep");
        assert!(d.delete("/dir").await.unwrap_err().is_not_found());
        d.delete("/dir-sibling").await.unwrap();
        d.delete("/dirx").await.unwrap();
    });
}

#[test]
fn tree_delete_streams_across_listing_pages() {
    // Pages of 7 keys: the core deletes each page as it lists it (continuing after the
    // last key listed), so 50 keys take several pages and several batches; another
    // instance (default page) checks what is left.
    rt().block_on(async {
        let root = common::root("tree-delete");
        let n = 50;
        let store = OssDriver::from_parameters(params(&root))
            .await
            .unwrap()
            .with_page_size(7);
        let d = Driver::new(store.clone());
        let fresh = Driver::new(OssDriver::from_parameters(params(&root)).await.unwrap());
        let (lists, batches) = (store.list_requests(), store.delete_requests());
        driver_testsuite::checks::tree_delete_across_pages(&d, &fresh, "/t", n).await;
        let pages = n.div_ceil(7) as u64;
        assert!(store.list_requests() - lists >= pages, "listing pages");
        assert!(
            store.delete_requests() - batches >= pages,
            "a batch per page"
        );
        d.delete("/t").await.unwrap();
    });
}

#[test]
fn wrong_credentials_are_rejected_clearly() {
    rt().block_on(async {
        let root = common::root("auth");
        let secret = "definitely-the-wrong-secret";
        for version in [4u64, 1] {
            let d = common::create(
                params(&root)
                    .with("accesskeysecret", secret)
                    .with("signatureversion", version),
            )
            .await
            .unwrap();
            let e = d.stat("/anything").await.unwrap_err();
            let se = service_error(&e);
            assert_eq!(se.code, "SignatureDoesNotMatch", "V{version}: {e}");
            assert!(se.is_auth() && se.status == 403);
            assert!(matches!(e, StorageError::Unauthenticated { .. }), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains("check accesskeyid, accesskeysecret"),
                "{text}"
            );
            assert!(!text.contains(secret) && !format!("{e:?}").contains(secret));
            assert!(!e.is_retryable());
            let e = d
                .put_content("/x", Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert_eq!(service_error(&e).code, "SignatureDoesNotMatch");
        }
        let d = common::create(params(&root).with("accesskeyid", "NoSuchKeyId"))
            .await
            .unwrap();
        let e = d.list("/").await.unwrap_err();
        assert_eq!(service_error(&e).code, "InvalidAccessKeyId", "{e}");
        // A missing bucket says so.
        let d = common::create(params(&root).with("bucket", "no-such-bucket"))
            .await
            .unwrap();
        let e = d.get_content("/x").await.unwrap_err();
        assert_eq!(service_error(&e).code, "NoSuchBucket", "{e}");
        assert!(e.to_string().contains("the bucket must exist"), "{e}");
    });
}

#[test]
fn presigned_urls_work_for_plain_clients_and_reject_tampering() {
    rt().block_on(async {
        let root = common::root("presign");
        let http = driver_testsuite::http_client();
        for version in [4u64, 1] {
            let d = common::create(params(&root).with("signatureversion", version))
                .await
                .unwrap();
            d.put_content("/a_b/blob", Bytes::from_static(b"presigned"))
                .await
                .unwrap();
            let url = d
                .redirect_url(&RedirectRequest::get(), "/a_b/blob")
                .await
                .unwrap()
                .expect("a URL");
            let resp = http.get(&url).send().await.unwrap();
            assert_eq!(resp.status(), 200, "V{version} GET {url}");
            assert_eq!(&resp.bytes().await.unwrap()[..], b"presigned");
            let head = d
                .redirect_url(&RedirectRequest::head(), "/a_b/blob")
                .await
                .unwrap()
                .unwrap();
            let resp = http.head(&head).send().await.unwrap();
            assert_eq!(resp.status(), 200, "V{version} HEAD");
            assert_eq!(resp.headers()["content-length"], "9");
            // A GET URL is not a PUT URL, and a changed signature is refused.
            let resp = http.put(&url).body("x").send().await.unwrap();
            assert_eq!(resp.status(), 403, "V{version} PUT with a GET URL");
            let tampered = url.replacen("Signature=", "Signature=AA", 1).replacen(
                "x-oss-signature=",
                "x-oss-signature=00",
                1,
            );
            assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
            // An expired URL is refused.
            let short = d
                .redirect_url(
                    &RedirectRequest::get().expires_in(Duration::from_secs(1)),
                    "/a_b/blob",
                )
                .await
                .unwrap()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2100)).await;
            assert_eq!(http.get(&short).send().await.unwrap().status(), 403);
        }
        common::create(params(&root))
            .await
            .unwrap()
            .delete("/a_b")
            .await
            .unwrap();
    });
}

#[test]
fn v1_signatures_and_sts_tokens_work_end_to_end() {
    let (Some(endpoint), Some(token)) = (
        common::var("OSS_TEST_STS_ENDPOINT"),
        common::var("OSS_TEST_SECURITY_TOKEN"),
    ) else {
        panic!("OSS_TEST_STS_ENDPOINT / OSS_TEST_SECURITY_TOKEN not set (cargo xtask starts a second test server that requires an STS token)");
    };
    rt().block_on(async {
        for version in [1u64, 4] {
            let root = common::root("sts");
            let p = params(&root)
                .with("endpoint", endpoint.clone())
                .with("signatureversion", version);
            // Without the token the server refuses.
            let d = common::create(p.clone()).await.unwrap();
            let e = d.stat("/x").await.unwrap_err();
            assert!(
                service_error(&e).is_auth(),
                "V{version} without a token: {e}"
            );
            let d = common::create(p.with("securitytoken", token.clone()))
                .await
                .unwrap();
            let data = DataGen::random().bytes(2 * CHUNK + 3);
            let mut w = d.writer("/d/big", false).await.unwrap();
            w.write(data.clone()).await.unwrap();
            w.close().await.unwrap();
            let mut w = d.writer("/d/big", true).await.unwrap();
            assert_eq!(w.size(), data.len() as u64);
            w.commit().await.unwrap();
            d.put_content("/d/small", Bytes::from_static(b"s"))
                .await
                .unwrap();
            assert_eq!(d.list("/d").await.unwrap().len(), 2);
            d.rename("/d/small", "/e/small").await.unwrap();
            let mut r = d.reader("/d/big", CHUNK as u64 + 1).await.unwrap();
            let mut n = 0;
            while let Some(c) = r.next().await {
                n += c.unwrap().len();
            }
            assert_eq!(n, data.len() - CHUNK - 1);
            let url = d
                .redirect_url(&RedirectRequest::get(), "/e/small")
                .await
                .unwrap()
                .unwrap();
            let resp = driver_testsuite::http_client()
                .get(&url)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "V{version} presigned with a token");
            d.delete("/d").await.unwrap();
            d.delete("/e").await.unwrap();
        }
    });
}

#[test]
fn oss2_client_checks_the_test_server() {
    // The test server is proved right by Aliyun's own SDK (put/get/list/multipart/copy/
    // append/delete/presign, V1 and V4, a wrong secret), run against it.
    let Some(python) = common::var("OSS_TEST_PYTHON") else {
        panic!("OSS_TEST_PYTHON not set (cargo xtask sets it to the venv with oss2)");
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testserver/check_with_oss2.py");
    // A server of its own: the check counts the signature failures it provokes.
    let oracle = common::var("OSS_TEST_ORACLE_ENDPOINT").expect("OSS_TEST_ORACLE_ENDPOINT");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--endpoint", &oracle])
        .args(["--copy-limit", "1048576"])
        .args(["--bucket", &common::bucket()])
        .args([
            "--access-key-id",
            &common::var("OSS_TEST_ACCESS_KEY_ID").unwrap(),
        ])
        .args([
            "--access-key-secret",
            &common::var("OSS_TEST_ACCESS_KEY_SECRET").unwrap(),
        ])
        .args([
            "--region",
            &common::var("OSS_TEST_REGION").unwrap_or_else(|| "cn-hangzhou".into()),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "oss2's checks failed");
    assert!(stdout.contains("ALL OK"), "no final line");
}

#[test]
fn a_server_that_is_down_fails_fast_with_a_retryable_error() {
    rt().block_on(async {
        let port = driver_testsuite::checks::closed_port();
        let d = common::create(
            Parameters::new()
                .with("endpoint", format!("http://127.0.0.1:{port}"))
                .with("accesskeyid", "id")
                .with("accesskeysecret", "secret")
                .with("bucket", "registry")
                .with("region", "cn-hangzhou"),
        )
        .await
        .unwrap();
        let e = driver_testsuite::checks::down_backend_error(
            "oss",
            Duration::from_secs(20),
            d.stat("/x"),
        )
        .await;
        assert!(matches!(e, StorageError::Backend { .. }), "{e:?}");
    });
}
