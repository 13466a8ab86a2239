//! Azure-specific behaviour on a real blob service (Azurite under `cargo xtask test-all`,
//! which checks shared-key and SAS signatures): resume from a new instance (also of a
//! writer lost before close), sessions and cancel, listings over more than 5,000 blobs
//! (Azure's page size), a tree delete across listing pages, deletes in blob batches, SAS
//! URLs fetched by a plain HTTP client, a wrong key failing clearly, and failures that
//! must not hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use driver_api::{Driver, Parameters, RedirectRequest, StorageError};
use driver_testsuite::data::DataGen;
use driver_testsuite::runtime as rt;
use futures::StreamExt;

const KIB: usize = 1 << 10;
/// The smallest block the driver allows: small data crosses many block boundaries.
const BLOCK: usize = 256 * KIB;

fn params(root: &str) -> Parameters {
    common::params()
        .expect("test account configured")
        .with("rootdirectory", root)
        .with("chunksize", BLOCK as u64)
}

async fn driver(root: &str) -> Driver {
    common::create(params(root))
        .await
        .expect("creating the azure driver")
}

/// Writes `first`, closes, resumes from a new instance, checks the size, writes `second`,
/// commits, and checks the content.
async fn resume_case(first: usize, second: usize) {
    let root = common::root("resume");
    let (a, b) = (driver(&root).await, driver(&root).await);
    driver_testsuite::checks::resume_from_new_instance(&a, &b, "/blob", first, second).await;
    b.delete("/blob").await.unwrap();
}

#[test]
fn resume_across_block_boundaries_from_a_new_instance() {
    // Two full blocks and a partial one flushed by close; then more blocks.
    rt().block_on(resume_case(2 * BLOCK + 12_345, 3 * BLOCK + 7));
}

#[test]
fn resume_at_an_exact_block_boundary() {
    rt().block_on(resume_case(2 * BLOCK, BLOCK / 3));
}

#[test]
fn resume_an_empty_upload_and_resume_twice() {
    rt().block_on(async {
        let root = common::root("resume-empty");
        let d = driver_testsuite::checks::resume_twice(|| driver(&root), "/e", BLOCK).await;
        d.delete("/e").await.unwrap();
    });
}

#[test]
fn a_fresh_writer_supersedes_an_older_upload() {
    rt().block_on(async {
        let root = common::root("supersede");
        let d = driver(&root).await;
        let mut w = d.writer("/f", false).await.unwrap();
        w.write(DataGen::random().bytes(BLOCK + 5)).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/f", false).await.unwrap();
        w.write(Bytes::from_static(b"newer")).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/f", true).await.unwrap();
        assert_eq!(w.size(), 5, "the newest upload is the one resumed");
        w.write(Bytes::from_static(b"!")).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(&d.get_content("/f").await.unwrap()[..], b"newer!");
        d.delete("/f").await.unwrap();
    });
}

#[test]
fn a_writer_lost_before_close_resumes_from_its_blocks() {
    rt().block_on(async {
        let root = common::root("lost");
        // One block in flight: writing three means the first two are stored.
        let d = common::create(params(&root).with("maxconcurrency", 1u64))
            .await
            .unwrap();
        let data = DataGen::random().bytes(3 * BLOCK + 9);
        let mut w = d.writer("/l", false).await.unwrap();
        w.write(data.slice(..3 * BLOCK)).await.unwrap();
        // Lost without close: no parked object; the blocks are found by session. Forgotten
        // rather than dropped, so the block in flight finishes or not on its own and no
        // request is cut off mid-body (which Azurite 3.35 has been seen not to survive).
        std::mem::forget(w);
        let mut w = d.writer("/l", true).await.unwrap();
        let at = w.size() as usize;
        assert!(
            (2 * BLOCK..=3 * BLOCK).contains(&at) && at.is_multiple_of(BLOCK),
            "resumed at {at}"
        );
        w.write(data.slice(at..)).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(d.get_content("/l").await.unwrap(), data);
        d.delete("/l").await.unwrap();
    });
}

#[test]
fn cancel_discards_the_upload_and_keeps_committed_content() {
    rt().block_on(async {
        let root = common::root("cancel");
        let d = driver(&root).await;
        // A new path: after cancel there is nothing to stat, list or resume.
        let mut w = d.writer("/new", false).await.unwrap();
        w.write(DataGen::random().bytes(2 * BLOCK + 1))
            .await
            .unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/new", true).await.unwrap();
        w.cancel().await.unwrap();
        assert!(d.stat("/new").await.unwrap_err().is_not_found());
        assert!(d
            .writer("/new", true)
            .await
            .map(drop)
            .unwrap_err()
            .is_not_found());
        assert!(d.list("/").await.unwrap().is_empty());

        // Over committed content: the content stays, the upload is not resumable.
        d.put_content("/old", "committed").await.unwrap();
        let mut w = d.writer("/old", false).await.unwrap();
        w.write(DataGen::random().bytes(BLOCK + 1)).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/old", true).await.unwrap();
        assert_eq!(w.size(), BLOCK as u64 + 1);
        w.cancel().await.unwrap();
        assert_eq!(&d.get_content("/old").await.unwrap()[..], b"committed");
        let e = d.writer("/old", true).await.map(drop).unwrap_err();
        assert!(matches!(e, StorageError::Unsupported { .. }), "{e:?}");
        // A later fresh writer commits over it as usual.
        let mut w = d.writer("/old", false).await.unwrap();
        w.write(DataGen::random().bytes(BLOCK + 2)).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(d.stat("/old").await.unwrap().size, BLOCK as u64 + 2);
        d.delete("/").await.ok();
        d.delete("/old").await.unwrap();
    });
}

#[test]
fn listings_page_over_more_than_5000_blobs() {
    rt().block_on(async {
        // More blobs than Azure returns per page (5,000). Set AZURE_TEST_MANY to change.
        let n: usize = common::var("AZURE_TEST_MANY")
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_100);
        // A container of its own, dropped in one request at the end (deleting thousands of
        // blobs one by one is slow on Azurite, whose deletes scan the container).
        let container = format!(
            "many-{}",
            driver_testsuite::data::random_name(8).to_lowercase()
        );
        let p = params("many").with("container", container);
        let az = driver_azure::AzureDriver::from_parameters(p).await.unwrap();
        az.backend().create_container().await.unwrap();
        // The driver itself, to count its own requests (tests run in parallel).
        let d = Driver::new(az.clone());

        let mut names: Vec<String> = (0..n).map(|i| format!("/t/f{i:05}")).collect();
        names.extend((0..7).map(|k| format!("/t/d{k}/x")));
        futures::stream::iter(names.iter().cloned())
            .map(|p| {
                let d = d.clone();
                async move { d.put_content(&p, Bytes::new()).await.unwrap() }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;

        // list pages with the delimiter: every entry of the directory, in order.
        let before = az.list_requests();
        let listed = d.list("/t").await.unwrap();
        let list_requests = az.list_requests() - before;
        let mut expected: Vec<String> = (0..n).map(|i| format!("/t/f{i:05}")).collect();
        expected.extend((0..7).map(|k| format!("/t/d{k}")));
        expected.sort();
        assert_eq!(
            listed
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>(),
            expected
        );
        // Pages hold at most 5,000 entries. With a delimiter a service may return fewer
        // (Azurite's delimiter pages vary), so only bound the count.
        let pages = (n + 7).div_ceil(5000) as u64;
        eprintln!("list of {} entries: {list_requests} pages", n + 7);
        assert!(list_requests >= pages, "{list_requests} pages");
        assert!(list_requests <= pages * 4, "{list_requests} pages");

        // walk is one flat listing pass, in walk order.
        let before = az.list_requests();
        let walked = d.walk_collect("/t").await.unwrap();
        let walk_requests = az.list_requests() - before;
        assert_eq!(walked.iter().filter(|f| !f.is_dir).count(), n + 7);
        eprintln!("walk of {} files: {walk_requests} pages", n + 7);
        assert!(
            (pages..=pages + 1).contains(&walk_requests),
            "one listing pass: {walk_requests} requests"
        );
        driver_testsuite::checks::assert_walk_order(&walked);

        // Skip-dir and start-after on the flat listing.
        let seen = driver_testsuite::checks::walk_after_skipping(&d, "/t", "/t/d3", "/t/d4").await;
        // Strictly after the hint: d3's own entry is not repeated, its file follows.
        assert_eq!(seen.first().map(String::as_str), Some("/t/d3/x"));
        assert!(seen.iter().any(|p| p == "/t/d4"));
        assert!(!seen.iter().any(|p| p == "/t/d4/x"), "d4 skipped");
        assert_eq!(
            seen.last().map(String::as_str),
            Some(&*format!("/t/f{:05}", n - 1))
        );

        // Delete removes the directory and leaves its sibling with the same name prefix.
        d.put_content("/t/d1x", "sibling").await.unwrap();
        d.delete("/t/d1").await.unwrap();
        assert!(d.stat("/t/d1").await.unwrap_err().is_not_found());
        assert_eq!(&d.get_content("/t/d1x").await.unwrap()[..], b"sibling");
        az.backend().delete_container().await.unwrap();
    });
}

#[test]
fn deletes_are_batched() {
    rt().block_on(async {
        let az = driver_azure::AzureDriver::from_parameters(params(&common::root("batch")))
            .await
            .unwrap();
        let d = Driver::new(az.clone());
        let n: usize = 600;
        futures::stream::iter(0..n)
            .map(|i| {
                let d = d.clone();
                async move {
                    d.put_content(&format!("/b/d{}/f{i}", i % 3), Bytes::new())
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        d.put_content("/bb", "sibling").await.unwrap();
        let (lists, batches) = (az.list_requests(), az.delete_requests());
        d.delete("/b").await.unwrap();
        let (lists, batches) = (az.list_requests() - lists, az.delete_requests() - batches);
        // One listing page (Azure's pages hold 5,000 blobs), its 600 blobs in blob
        // batches of 256: 256 + 256 + 88. (The blob at `/b` itself, absent here, is one
        // `Delete Blob` the core does not count as a batch.)
        assert_eq!(lists, 1, "{lists} listing requests");
        assert_eq!(batches, n.div_ceil(256) as u64, "{batches} batch requests");
        assert!(d.list("/b").await.unwrap_err().is_not_found());
        assert_eq!(&d.get_content("/bb").await.unwrap()[..], b"sibling");
        d.delete("/bb").await.unwrap();
    });
}

#[test]
fn tree_delete_crosses_listing_pages() {
    rt().block_on(async {
        let root = common::root("tree-pages");
        let p = params(&root);
        // Pages of 7 blobs: the 50 blobs of the tree take 8 pages, deleted as listed.
        let az = driver_azure::AzureDriver::from_parameters(p)
            .await
            .unwrap()
            .with_page_size(7);
        az.backend().create_container().await.unwrap();
        let d = Driver::new(az.clone());
        let fresh = driver(&root).await;
        let before = az.list_requests();
        driver_testsuite::checks::tree_delete_across_pages(&d, &fresh, "/t", 50).await;
        let pages = az.list_requests() - before;
        assert!(pages >= 50u64.div_ceil(7), "{pages} listing pages");
    });
}

#[test]
fn sas_urls_are_fetched_by_a_plain_http_client() {
    rt().block_on(async {
        let d = driver(&common::root("sas")).await;
        let data = DataGen::random().bytes(3 * BLOCK + 3);
        d.put_content("/s/blob", data.clone()).await.unwrap();
        let url = d
            .redirect_url(&RedirectRequest::get(), "/s/blob")
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.contains("sp=r") && url.contains("se=") && url.contains("sig="),
            "{url}"
        );
        let http = driver_testsuite::http_client();
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        assert!(resp.bytes().await.unwrap() == data);
        let resp = http.head(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("content-length")
                .unwrap()
                .to_str()
                .unwrap(),
            data.len().to_string()
        );
        // The signature is checked: a tampered one is refused, and the SAS is read-only.
        let tampered = url.replace("sig=", "sig=AAAA");
        assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
        let put = http
            .put(&url)
            .header("x-ms-blob-type", "BlockBlob")
            .body("overwrite")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 403, "read-only SAS");
        // The expiry asked for is the one signed (bounded).
        let short = d
            .redirect_url(
                &RedirectRequest::get().expires_in(std::time::Duration::from_secs(60)),
                "/s/blob",
            )
            .await
            .unwrap()
            .unwrap();
        assert!(short != url);
        d.delete("/s").await.unwrap();
    });
}

#[test]
fn a_wrong_key_fails_clearly_and_is_not_retried() {
    rt().block_on(async {
        let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS0=";
        let d = common::create(params(&common::root("wrongkey")).with("accountkey", wrong))
            .await
            .map(drop);
        // Creating the container is the first signed request.
        let e = d.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StorageError::Unauthenticated { .. }), "{e:?}");
        assert!(text.contains("not authenticated"), "{text}");
        assert!(text.contains("Server failed to authenticate"), "{text}");
        assert!(!e.is_retryable());
        assert!(!text.contains(wrong), "the key never appears: {text}");

        let d = driver_api::factory::create(
            "azure",
            params(&common::root("wrongkey")).with("accountkey", wrong),
        )
        .await
        .unwrap();
        let e = d.put_content("/x", "x").await.unwrap_err();
        assert!(matches!(e, StorageError::Unauthenticated { .. }), "{e:?}");
        let e = d.stat("/x").await.unwrap_err();
        assert!(
            !e.is_not_found(),
            "a HEAD refused for a bad key is not a missing path: {e}"
        );
    });
}

#[test]
fn a_missing_container_is_named() {
    rt().block_on(async {
        let d = driver_api::factory::create(
            "azure",
            params("x").with("container", "no-such-container-here"),
        )
        .await
        .unwrap();
        let e = d.get_content("/x").await.unwrap_err();
        assert!(matches!(e, StorageError::Backend { .. }), "{e:?}");
        assert!(e.to_string().contains("ContainerNotFound"), "{e}");
        let e = d.list("/").await.unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    });
}

#[test]
fn a_service_that_is_down_fails_fast_with_a_retryable_error() {
    rt().block_on(async {
        let port = driver_testsuite::checks::closed_port();
        let d = driver_api::factory::create(
            "azure",
            params("x")
                .with(
                    "serviceurl",
                    format!("http://127.0.0.1:{port}/devstoreaccount1"),
                )
                .with("max_retries", 2)
                .with("retry_delay", "10ms"),
        )
        .await
        .unwrap();
        let e = driver_testsuite::checks::down_backend_error(
            "azure",
            std::time::Duration::from_secs(10),
            d.stat("/x"),
        )
        .await;
        assert!(e.to_string().contains("cannot connect"), "{e}");
    });
}

#[test]
fn move_of_a_multi_block_blob_is_a_server_side_copy() {
    rt().block_on(async {
        let d = driver(&common::root("move")).await;
        let data = DataGen::random().bytes(5 * BLOCK + 17);
        let mut w = d.writer("/m/src", false).await.unwrap();
        for piece in data.chunks(100 * KIB) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        w.commit().await.unwrap();
        d.put_content("/m/dst", "replaced").await.unwrap();
        d.rename("/m/src", "/m/dst").await.unwrap();
        assert!(d.stat("/m/src").await.unwrap_err().is_not_found());
        assert!(d.get_content("/m/dst").await.unwrap() == data);
        // Moving onto itself keeps it.
        d.rename("/m/dst", "/m/dst").await.unwrap();
        assert_eq!(d.stat("/m/dst").await.unwrap().size, data.len() as u64);
        assert!(d
            .rename("/m/none", "/m/x")
            .await
            .unwrap_err()
            .is_not_found());
        d.delete("/m").await.unwrap();
    });
}
