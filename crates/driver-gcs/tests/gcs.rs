//! GCS-specific behaviour on a real JSON API server (fake-gcs-server under
//! `cargo xtask test-all`): resume from a new instance after close, supersede and cancel
//! leaving nothing behind, listings over more than 2,000 objects (GCS pages hold 1,000),
//! tree deletes that stream across listing pages, V4 signed URLs (form, and fetched by a
//! plain HTTP client), no URL without a key, a multi-chunk move, and failures that must
//! not hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use driver_api::{Driver, Parameters, RedirectRequest, StorageError};
use driver_testsuite::data::DataGen;
use driver_testsuite::runtime as rt;
use futures::StreamExt;

const KIB: usize = 1 << 10;
/// The smallest chunk the driver allows: small data crosses many chunk boundaries.
const CHUNK: usize = 256 * KIB;

fn params(root: &str) -> Parameters {
    common::params()
        .expect("test bucket configured")
        .with("rootdirectory", root)
        .with("chunksize", CHUNK as u64)
}

async fn driver(root: &str) -> Driver {
    common::create(params(root))
        .await
        .expect("creating the gcs driver")
}

/// Every object name under `root/` as the server lists it (hidden upload state
/// included), through the bare JSON API. Only on the emulator, which needs no token.
async fn raw_names(root: &str) -> Option<Vec<String>> {
    if !common::emulated() {
        eprintln!("raw listing skipped: needs the emulator (GCS_ENDPOINT without GCS_KEYFILE)");
        return None;
    }
    let url = format!(
        "{}/storage/v1/b/{}/o",
        common::var("GCS_ENDPOINT").unwrap(),
        common::var("GCS_BUCKET").unwrap()
    );
    let v: serde_json::Value = driver_testsuite::http_client()
        .get(url)
        .query(&[("prefix", format!("{root}/"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Some(
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| o["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Writes `first`, closes, resumes from a new instance, checks the size, writes `second`,
/// commits, and checks the content.
async fn resume_case(first: usize, second: usize) {
    let root = common::root("resume");
    let (a, b) = (driver(&root).await, driver(&root).await);
    driver_testsuite::checks::resume_from_new_instance(&a, &b, "/obj", first, second).await;
    if let Some(names) = raw_names(&root).await {
        assert_eq!(names, [format!("{root}/obj")], "no upload state left");
    }
    b.delete("/obj").await.unwrap();
}

#[test]
fn resume_across_chunk_boundaries_from_a_new_instance() {
    // Two full chunks sent, a partial one split by close (256 KiB-aligned part to the
    // session, the rest parked); then more chunks.
    rt().block_on(resume_case(2 * CHUNK + 12_345, 3 * CHUNK + 7));
}

#[test]
fn resume_at_an_exact_chunk_boundary() {
    // Nothing parked: the final request is `bytes */total` when nothing follows.
    rt().block_on(resume_case(2 * CHUNK, 0));
    rt().block_on(resume_case(2 * CHUNK, CHUNK / 3));
}

#[test]
fn resume_before_any_session_and_resume_twice() {
    rt().block_on(async {
        let root = common::root("resume-small");
        let d = driver_testsuite::checks::resume_twice(|| driver(&root), "/e", CHUNK).await;
        d.delete("/e").await.unwrap();
        if let Some(names) = raw_names(&root).await {
            assert!(names.is_empty(), "{names:?}");
        }
    });
}

#[test]
fn a_fresh_writer_supersedes_an_older_upload() {
    rt().block_on(async {
        let root = common::root("supersede");
        let d = driver(&root).await;
        let mut w = d.writer("/f", false).await.unwrap();
        w.write(DataGen::random().bytes(CHUNK + 5)).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/f", false).await.unwrap();
        w.write(Bytes::from_static(b"newer")).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/f", true).await.unwrap();
        assert_eq!(w.size(), 5, "the newest upload is the one resumed");
        w.write(Bytes::from_static(b"!")).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(&d.get_content("/f").await.unwrap()[..], b"newer!");
        // A fresh writer committing removes a stale upload too.
        let mut w = d.writer("/g", false).await.unwrap();
        w.write(Bytes::from_static(b"stale")).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/g", false).await.unwrap();
        w.write(Bytes::from_static(b"fresh")).await.unwrap();
        w.commit().await.unwrap();
        let e = d.writer("/g", true).await.map(drop).unwrap_err();
        assert!(matches!(e, StorageError::Unsupported { .. }), "{e:?}");
        if let Some(mut names) = raw_names(&root).await {
            names.sort();
            assert_eq!(names, [format!("{root}/f"), format!("{root}/g")]);
        }
        d.delete("/f").await.unwrap();
        d.delete("/g").await.unwrap();
    });
}

#[test]
fn cancel_discards_the_upload_and_keeps_committed_content() {
    rt().block_on(async {
        let root = common::root("cancel");
        let d = driver(&root).await;
        // A new path: after cancel there is nothing to stat, list or resume.
        let mut w = d.writer("/new", false).await.unwrap();
        w.write(DataGen::random().bytes(2 * CHUNK + 1))
            .await
            .unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/new", true).await.unwrap();
        w.cancel().await.unwrap();
        assert!(d.stat("/new").await.unwrap_err().is_not_found());
        let e = d.writer("/new", true).await.map(drop).unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert!(d.list("/").await.unwrap().is_empty());
        if let Some(names) = raw_names(&root).await {
            assert!(names.is_empty(), "nothing left: {names:?}");
        }
        // Cancel without close, mid-session.
        let mut w = d.writer("/mid", false).await.unwrap();
        w.write(DataGen::random().bytes(CHUNK + 1)).await.unwrap();
        w.cancel().await.unwrap();
        assert!(d.stat("/mid").await.unwrap_err().is_not_found());
        // Over committed content: the content stays, the upload is not resumable.
        d.put_content("/old", "committed").await.unwrap();
        let mut w = d.writer("/old", false).await.unwrap();
        w.write(DataGen::random().bytes(CHUNK + 1)).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/old", true).await.unwrap();
        assert_eq!(w.size(), CHUNK as u64 + 1);
        w.cancel().await.unwrap();
        assert_eq!(&d.get_content("/old").await.unwrap()[..], b"committed");
        let e = d.writer("/old", true).await.map(drop).unwrap_err();
        assert!(matches!(e, StorageError::Unsupported { .. }), "{e:?}");
        if let Some(names) = raw_names(&root).await {
            assert_eq!(names, [format!("{root}/old")]);
        }
        d.delete("/old").await.unwrap();
    });
}

#[test]
fn listings_page_over_more_than_2000_objects() {
    rt().block_on(async {
        // More objects than two GCS pages (1,000 each). Set GCS_TEST_MANY to change.
        let n: usize = common::var("GCS_TEST_MANY")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_100);
        let root = common::root("many");
        // The driver itself, to count its own listing requests (tests run in parallel).
        let gcs = driver_gcs::GcsDriver::from_parameters(params(&root))
            .await
            .unwrap();
        let d = Driver::new(gcs.clone());
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
        let pages = (n + 7).div_ceil(1000) as u64;

        // list pages with the delimiter: every entry of the directory, in order.
        let before = gcs.list_requests();
        let listed = d.list("/t").await.unwrap();
        let list_requests = gcs.list_requests() - before;
        let mut expected: Vec<String> = (0..n).map(|i| format!("/t/f{i:05}")).collect();
        expected.extend((0..7).map(|k| format!("/t/d{k}")));
        expected.sort();
        let listed: Vec<String> = listed.iter().map(|p| p.as_str().to_owned()).collect();
        assert_eq!(listed, expected);
        eprintln!("list of {} entries: {list_requests} pages", n + 7);
        assert!(list_requests >= pages, "{list_requests} pages");

        // walk is one flat listing pass, in walk order.
        let before = gcs.list_requests();
        let walked = d.walk_collect("/t").await.unwrap();
        let walk_requests = gcs.list_requests() - before;
        assert_eq!(walked.iter().filter(|f| !f.is_dir).count(), n + 7);
        eprintln!("walk of {} files: {walk_requests} pages", n + 7);
        assert_eq!(walk_requests, pages, "one listing pass");
        driver_testsuite::checks::assert_walk_order(&walked);

        // Skip-dir and start-after (startOffset) on the flat listing.
        let before = gcs.list_requests();
        let seen = driver_testsuite::checks::walk_after_skipping(&d, "/t", "/t/d3", "/t/d4").await;
        let hinted = gcs.list_requests() - before;
        assert_eq!(seen.first().map(String::as_str), Some("/t/d3/x"));
        assert!(seen.iter().any(|p| p == "/t/d4"));
        assert!(!seen.iter().any(|p| p == "/t/d4/x"), "d4 skipped");
        assert_eq!(
            seen.last().map(String::as_str),
            Some(&*format!("/t/f{:05}", n - 1))
        );
        assert!(
            hinted <= pages,
            "the hint starts the listing late: {hinted} pages"
        );

        // Delete removes the directory and leaves its sibling with the same name prefix.
        d.put_content("/t/d1x", "sibling").await.unwrap();
        d.delete("/t/d1").await.unwrap();
        assert!(d.stat("/t/d1").await.unwrap_err().is_not_found());
        assert_eq!(&d.get_content("/t/d1x").await.unwrap()[..], b"sibling");
        let started = Instant::now();
        let (lists, deletes) = (gcs.list_requests(), gcs.delete_requests());
        d.delete("/t").await.unwrap();
        let lists = gcs.list_requests() - lists;
        eprintln!(
            "deleted {} objects in {:?}, {lists} pages",
            n + 7,
            started.elapsed()
        );
        // Streamed page by page (one page of names in memory), one request an object.
        assert!(lists >= pages, "{lists} pages");
        assert_eq!(gcs.delete_requests() - deletes, (n + 7) as u64);
        assert!(d.list("/").await.unwrap().is_empty());
    });
}

#[test]
fn a_tree_delete_streams_across_listing_pages() {
    rt().block_on(async {
        let root = common::root("tree");
        // Pages of 7 objects: the delete of 50 crosses 8 of them, deleting as it goes.
        let gcs = driver_gcs::GcsDriver::from_parameters(params(&root))
            .await
            .unwrap()
            .with_page_size(7);
        let d = Driver::new(gcs.clone());
        let fresh = driver(&root).await;
        driver_testsuite::checks::tree_delete_across_pages(&d, &fresh, "/t", 50).await;
        // The driver listed only to delete: 8 pages, then one empty page for the second
        // delete; one object a delete request.
        assert_eq!(gcs.list_requests(), 9);
        assert_eq!(gcs.delete_requests(), 50);
        fresh.delete("/t").await.unwrap();
    });
}

#[test]
fn signed_urls_have_the_v4_form_and_are_fetched_by_a_plain_http_client() {
    rt().block_on(async {
        let root = common::root("signed");
        // Google's public dummy key: the requests carry self-signed JWTs, which the
        // emulator does not check; the URLs are signed with it.
        let mut p = params(&root);
        if common::emulated() {
            p.remove("anonymous");
            p = p.with("keyfile", common::test_key());
        }
        let d = common::create(p).await.unwrap();
        let data = DataGen::random().bytes(3 * CHUNK + 3);
        d.put_content("/s/obj", data.clone()).await.unwrap();
        let url = d
            .redirect_url(&RedirectRequest::get(), "/s/obj")
            .await
            .unwrap()
            .expect("a key is configured: a URL");
        let parsed = reqwest::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["X-Goog-Algorithm"], "GOOG4-RSA-SHA256", "{url}");
        assert_eq!(q["X-Goog-Expires"], "1200", "20 minutes by default");
        assert_eq!(q["X-Goog-SignedHeaders"], "host");
        assert!(q["X-Goog-Credential"].ends_with("/auto/storage/goog4_request"));
        assert!(q["X-Goog-Date"].ends_with('Z') && q["X-Goog-Date"].len() == 16);
        let sig = &q["X-Goog-Signature"];
        assert!(
            sig.len() == 512 && sig.bytes().all(|b| b.is_ascii_hexdigit()),
            "{sig}"
        );
        assert!(
            parsed.path().ends_with(&format!("/{root}/s/obj")),
            "path style: {url}"
        );
        assert!(
            url.ends_with(&format!("&X-Goog-Signature={sig}")),
            "signature last"
        );

        // The emulator serves the URL (it does not verify signatures: the signature
        // itself is checked against Google's vectors in tests/sign.rs).
        let http = driver_testsuite::http_client();
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        assert!(resp.bytes().await.unwrap() == data);
        let head = d
            .redirect_url(&RedirectRequest::head(), "/s/obj")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(head, url, "HEAD is a different signature");
        let resp = http.head(&head).send().await.unwrap();
        assert_eq!(resp.status(), 200);

        // The expiry asked for is the one signed, bounded to 7 days.
        let short = d
            .redirect_url(
                &RedirectRequest::get().expires_in(Duration::from_secs(60)),
                "/s/obj",
            )
            .await
            .unwrap()
            .unwrap();
        assert!(short.contains("X-Goog-Expires=60&"), "{short}");
        let long = d
            .redirect_url(
                &RedirectRequest::get().expires_in(Duration::from_secs(90 * 24 * 3600)),
                "/s/obj",
            )
            .await
            .unwrap()
            .unwrap();
        assert!(long.contains("X-Goog-Expires=604800&"), "{long}");
        d.delete("/s").await.unwrap();
    });
}

#[test]
fn without_a_key_there_is_no_redirect_url() {
    rt().block_on(async {
        if !common::emulated() {
            driver_testsuite::skip_test(
                "gcs",
                "without_a_key_there_is_no_redirect_url",
                "needs the emulator (anonymous access)",
            );
            return;
        }
        let d = driver(&common::root("nokey")).await;
        d.put_content("/x", "x").await.unwrap();
        assert_eq!(
            d.redirect_url(&RedirectRequest::get(), "/x").await.unwrap(),
            None
        );
        d.delete("/x").await.unwrap();
    });
}

#[test]
fn a_multi_chunk_move_is_server_side_and_exact() {
    rt().block_on(async {
        let root = common::root("move");
        let d = driver(&root).await;
        let data = DataGen::random().bytes(5 * CHUNK + 17);
        let mut w = d.writer("/a/src", false).await.unwrap();
        for part in data.chunks(100_000) {
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
        }
        w.commit().await.unwrap();
        d.put_content("/b/dst", "old").await.unwrap();
        d.rename("/a/src", "/b/dst").await.unwrap();
        assert!(d.get_content("/b/dst").await.unwrap() == data);
        assert!(d.stat("/a/src").await.unwrap_err().is_not_found());
        let e = d.rename("/a/src", "/c").await.unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        d.delete("/b").await.unwrap();
    });
}

#[test]
fn a_missing_bucket_is_named() {
    rt().block_on(async {
        let d = common::create(params("x").with("bucket", "no-such-bucket-4711"))
            .await
            .unwrap();
        let e = d.list("/").await.unwrap_err();
        assert!(e.to_string().contains("no-such-bucket-4711"), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        // On an object, a missing bucket reads as a missing object (GCS answers 404).
        assert!(d.get_content("/x").await.unwrap_err().is_not_found());
    });
}

#[test]
fn a_server_that_is_down_fails_fast_and_retryably() {
    rt().block_on(async {
        let port = driver_testsuite::checks::closed_port();
        let d = common::create(
            Parameters::new()
                .with("bucket", "b")
                .with("anonymous", true)
                .with("endpoint", format!("http://127.0.0.1:{port}")),
        )
        .await
        .unwrap();
        let e = driver_testsuite::checks::down_backend_error(
            "gcs",
            Duration::from_secs(20),
            d.stat("/x"),
        )
        .await;
        assert!(e.to_string().contains("cannot connect"), "{e}");
    });
}

#[test]
fn a_bad_key_fails_at_creation_and_names_its_parameter() {
    rt().block_on(async {
        let e = common::create(
            Parameters::new()
                .with("bucket", "b")
                .with("credentials", serde_json::json!({
                    "type": "service_account",
                    "client_email": "x@y.iam.gserviceaccount.com",
                    "private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
                })),
        )
        .await
        .map(drop)
        .unwrap_err();
        assert!(matches!(e, StorageError::InvalidParameter { .. }), "{e:?}");
        assert!(e.to_string().contains("credentials"), "{e}");
        assert!(!e.to_string().contains("bm90IGEga2V5"), "the key never appears: {e}");
    });
}
