//! Swift-specific behaviour on a real Swift (the single-node cluster under
//! `cargo xtask test-all`): resume from a new instance after close, no orphaned segments
//! after overwrite / delete / cancel (the segments container is listed), a 50 MiB
//! segmented object moved by its manifest and read back, a walk over more than 10,000
//! objects (two listing pages), tree deletes that cross listing pages (large objects
//! and open uploads among them), TempURLs fetched by a plain HTTP client, a
//! wrong password, a token revoked mid-upload, and writes that lose to a newer write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use driver_api::{
    Driver, FileInfo, Operation, Parameters, RedirectRequest, StorageError, WalkControl,
    WalkOptions,
};
use driver_swift::{AuthError, SwiftDriver};
use driver_testsuite::data::DataGen;
use driver_testsuite::runtime as rt;
use futures::StreamExt;

const MIB: usize = 1 << 20;
/// The smallest segment the driver allows.
const CHUNK: usize = MIB;

fn params(root: &str) -> Parameters {
    common::params()
        .expect("test cluster configured")
        .with("prefix", root)
        .with("chunksize", CHUNK as u64)
}

async fn driver(root: &str) -> Driver {
    common::create(params(root))
        .await
        .expect("creating the swift driver")
}

/// Writes `first`, closes, resumes from a new instance, checks the size, writes `second`,
/// commits, and checks the content.
async fn resume_case(first: usize, second: usize) {
    let root = common::root("resume");
    let (a, b) = (driver(&root).await, driver(&root).await);
    driver_testsuite::checks::resume_from_new_instance(&a, &b, "/obj", first, second).await;
    b.delete("/obj").await.unwrap();
    common::assert_no_segments(&root, "after delete").await;
}

#[test]
fn resume_across_segment_boundaries_from_a_new_instance() {
    rt().block_on(resume_case(2 * CHUNK + 12_345, 3 * CHUNK + 7));
}

#[test]
fn resume_at_a_segment_boundary_and_with_nothing_written() {
    rt().block_on(resume_case(2 * CHUNK, 0));
    rt().block_on(resume_case(0, CHUNK / 3));
    rt().block_on(async {
        // Closes in a row, each resumed from a fresh instance.
        let root = common::root("resume-twice");
        let d = driver_testsuite::checks::resume_twice(|| driver(&root), "/e", CHUNK).await;
        d.delete("/e").await.unwrap();
        common::assert_no_segments(&root, "after delete").await;
    });
}

#[test]
fn no_orphaned_segments_after_overwrite_delete_cancel_and_restart() {
    rt().block_on(async {
        let root = common::root("orphans");
        let d = driver(&root).await;
        let big = DataGen::random().bytes(3 * CHUNK + 5);

        // Overwrite a segmented object with a segmented one, then with a small one.
        for _ in 0..2 {
            let mut w = d.writer("/a/big", false).await.unwrap();
            w.write(big.clone()).await.unwrap();
            w.commit().await.unwrap();
        }
        let n = common::segment_names(&root).await.map(|v| v.len());
        if let Some(n) = n {
            assert_eq!(n, 4, "one object's segments");
        }
        d.put_content("/a/big", Bytes::from_static(b"small"))
            .await
            .unwrap();
        common::assert_no_segments(&root, "after put_content over a large object").await;
        assert_eq!(&d.get_content("/a/big").await.unwrap()[..], b"small");

        // Delete of a directory holding a large object and a plain one.
        let mut w = d.writer("/a/b/big", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.commit().await.unwrap();
        d.delete("/a").await.unwrap();
        common::assert_no_segments(&root, "after delete").await;

        // Cancel, fresh and after a close.
        let mut w = d.writer("/c", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.cancel().await.unwrap();
        common::assert_no_segments(&root, "after cancel").await;
        let mut w = d.writer("/c", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.close().await.unwrap();
        let mut w = driver(&root).await.writer("/c", true).await.unwrap();
        w.cancel().await.unwrap();
        common::assert_no_segments(&root, "after cancel of a resumed upload").await;
        assert!(d.stat("/c").await.unwrap_err().is_not_found());

        // A fresh writer supersedes an abandoned upload.
        let mut w = d.writer("/f", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.close().await.unwrap();
        let mut w = d.writer("/f", false).await.unwrap();
        w.write(Bytes::from_static(b"newer")).await.unwrap();
        w.commit().await.unwrap();
        common::assert_no_segments(&root, "after a fresh writer replaced an upload").await;

        // An abandoned upload under a deleted directory goes with it.
        let mut w = d.writer("/g/h", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.close().await.unwrap();
        d.put_content("/g/i", Bytes::from_static(b"x"))
            .await
            .unwrap();
        d.delete("/g").await.unwrap();
        common::assert_no_segments(&root, "after deleting a directory with an open upload").await;

        // And one at the deleted path itself (its state is not below `<path>/`).
        let mut w = d.writer("/k", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.close().await.unwrap();
        assert!(d.delete("/k").await.unwrap_err().is_not_found());
        common::assert_no_segments(&root, "after deleting a path with an open upload").await;
        match d.writer("/k", true).await {
            Ok(_) => panic!("resumed an upload whose path was deleted"),
            Err(e) => assert!(e.is_not_found(), "{e}"),
        }

        // A writer that never closed (dropped, as a killed one): its upload was recorded
        // when it started, so `uploads` finds it as an orphan; it is not resumable.
        let mut w = d.writer("/o", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        drop(w);
        match d.writer("/o", true).await {
            Err(e) => assert!(e.is_not_found(), "{e}"),
            Ok(_) => panic!("resumed the upload of a writer that never closed"),
        }
        let found = d.uploads("/o").await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, driver_api::LeftoverKind::Orphan);
        d.purge_upload(&found[0]).await.unwrap();
        assert!(d.uploads("/").await.unwrap().is_empty());

        d.delete("/f").await.unwrap();
        assert!(d.list("/").await.unwrap().is_empty());
    });
}

/// Writes a Dynamic Large Object as Distribution's swift driver does: segments under
/// `<root>/segments/<id>/` in the same container, then a 0-byte manifest at `name` whose
/// `X-Object-Manifest` names them. Returns the content.
async fn put_dlo(token: &str, storage: &str, root: &str, name: &str, id: &str) -> Vec<u8> {
    let http = driver_testsuite::http_client();
    let c = common::container();
    let parts = [
        DataGen::new(7).bytes(300_000),
        DataGen::new(8).bytes(123_457),
    ];
    for (i, part) in parts.iter().enumerate() {
        let url = format!("{storage}/{c}/{root}/segments/{id}/{:016}", i + 1);
        let r = http
            .put(url)
            .header("x-auth-token", token)
            .body(part.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "segment: {}", r.status());
    }
    let r = http
        .put(format!("{storage}/{c}/{root}/files{name}"))
        .header("x-auth-token", token)
        .header("x-object-manifest", format!("{c}/{root}/segments/{id}/"))
        .header("content-length", "0")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "manifest: {}", r.status());
    parts.concat()
}

/// What Distribution's registry wrote to Swift is read, stat'ed, walked (true sizes, not
/// the listing's 0), moved and deleted through Distribution's layout
/// (`<prefix>/files/<path>`); deleting or overwriting a Dynamic Large Object removes its
/// segments, and a truly empty object stays 0 bytes.
#[test]
fn distribution_written_dynamic_large_objects() {
    rt().block_on(async {
        let Some((token, storage)) = common::raw_auth().await else {
            return;
        };
        let root = common::root("dlo");
        // Creating the driver creates the container.
        let d = driver(&root).await;
        let blob = put_dlo(&token, &storage, &root, "/docker/blob/data", "abc").await;
        put_dlo(&token, &storage, &root, "/docker/other", "def").await;
        put_dlo(&token, &storage, &root, "/tree/sub/x", "ghi").await;
        let r = driver_testsuite::http_client()
            .put(format!(
                "{storage}/{}/{root}/files/empty",
                common::container()
            ))
            .header("x-auth-token", &token)
            .header("content-length", "0")
            .body(Vec::new())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let segments = |id: &'static str| {
            let (token, storage, root) = (token.clone(), storage.clone(), root.clone());
            async move { common::raw_names(&token, &storage, &format!("{root}/segments/{id}/")).await }
        };
        assert_eq!(segments("abc").await.len(), 2);

        assert_eq!(
            d.stat("/docker/blob/data").await.unwrap().size,
            blob.len() as u64
        );
        let mut sizes = std::collections::BTreeMap::new();
        d.walk("/", &WalkOptions::default(), |fi| {
            if !fi.is_dir {
                sizes.insert(fi.path.to_string(), fi.size);
            }
            WalkControl::Continue
        })
        .await
        .unwrap();
        assert_eq!(sizes["/docker/blob/data"], blob.len() as u64, "{sizes:?}");
        assert_eq!(sizes["/docker/other"], blob.len() as u64);
        assert_eq!(sizes["/empty"], 0);
        assert_eq!(sizes.len(), 4, "only the files/ tree: {sizes:?}");
        assert_eq!(d.list("/").await.unwrap().len(), 3);
        assert_eq!(
            &d.get_content("/docker/blob/data").await.unwrap()[..],
            &blob[..]
        );
        let mut tail = Vec::new();
        let mut stream = d.reader("/docker/blob/data", 299_990).await.unwrap();
        while let Some(chunk) = stream.next().await {
            tail.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(&tail[..], &blob[299_990..]);

        // Moved by its manifest: the segments stay (the destination names them) ...
        d.rename("/docker/blob/data", "/moved").await.unwrap();
        assert_eq!(&d.get_content("/moved").await.unwrap()[..], &blob[..]);
        assert_eq!(segments("abc").await.len(), 2);
        assert!(d
            .stat("/docker/blob/data")
            .await
            .unwrap_err()
            .is_not_found());
        // ... and go with it.
        d.delete("/moved").await.unwrap();
        assert_eq!(segments("abc").await, Vec::<String>::new());
        // Overwritten: the old segments go.
        d.put_content("/docker/other", "small").await.unwrap();
        assert_eq!(&d.get_content("/docker/other").await.unwrap()[..], b"small");
        assert_eq!(segments("def").await, Vec::<String>::new());
        let ours = common::raw_names(&token, &storage, &format!("{root}/files/docker/other")).await;
        assert_eq!(ours.len(), 1, "written in Distribution's layout: {ours:?}");
        // A tree delete takes a DLO's segments.
        d.delete("/tree").await.unwrap();
        assert_eq!(segments("ghi").await, Vec::<String>::new());

        // The flat layout sees the prefix itself: Distribution's two top directories.
        let flat = common::create(params(&root).with("layout", "flat"))
            .await
            .unwrap();
        let top: Vec<String> = flat
            .list("/")
            .await
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert!(top.contains(&"/files".to_owned()), "{top:?}");
        for top in ["/docker", "/empty"] {
            d.delete(top).await.unwrap();
        }
        assert_eq!(
            common::raw_names(&token, &storage, &format!("{root}/files/")).await,
            Vec::<String>::new()
        );
    });
}

#[test]
fn a_large_segmented_object_is_moved_by_its_manifest() {
    rt().block_on(async {
        let mib: usize = common::var("SWIFT_TEST_MOVE_MIB")
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        let root = common::root("move");
        // 5 MiB segments: 10 of them for 50 MiB.
        let d = common::create(params(&root).with("chunksize", 5u64 << 20))
            .await
            .unwrap();
        let data = DataGen::random().bytes(mib * MIB);
        let mut w = d.writer("/src/blob", false).await.unwrap();
        for part in data.chunks(3 * MIB + 17) {
            w.write(data.slice_ref(part)).await.unwrap();
        }
        w.commit().await.unwrap();
        let before = common::segment_names(&root).await;

        let t = Instant::now();
        d.rename("/src/blob", "/dst/blob").await.unwrap();
        eprintln!("moved {mib} MiB in {:?}", t.elapsed());
        assert!(d.stat("/src/blob").await.unwrap_err().is_not_found());
        assert_eq!(d.stat("/dst/blob").await.unwrap().size, data.len() as u64);
        // Copied by the manifest: the same segments, no new ones.
        assert_eq!(common::segment_names(&root).await, before);
        let mut s = d.reader("/dst/blob", 0).await.unwrap();
        let mut got = Vec::with_capacity(data.len());
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert!(got == data[..], "moved content differs");
        // A read from inside a later segment.
        let off = data.len() - 7 * MIB - 3;
        let mut s = d.reader("/dst/blob", off as u64).await.unwrap();
        let mut tail = Vec::new();
        while let Some(c) = s.next().await {
            tail.extend_from_slice(&c.unwrap());
        }
        assert!(tail == data[off..]);

        // Moving onto a large object replaces it without orphaning its segments.
        let mut w = d.writer("/other", false).await.unwrap();
        w.write(DataGen::random().bytes(6 * MIB)).await.unwrap();
        w.commit().await.unwrap();
        d.rename("/other", "/dst/blob").await.unwrap();
        assert_eq!(d.stat("/dst/blob").await.unwrap().size, (6 * MIB) as u64);
        d.delete("/dst").await.unwrap();
        common::assert_no_segments(&root, "after move over and delete").await;
    });
}

#[test]
fn walk_pages_through_more_than_ten_thousand_objects() {
    rt().block_on(async {
        let Some((token, storage)) = common::raw_auth().await else {
            return;
        };
        let root = common::root("many");
        // 10,050 objects: more than one 10,000-entry listing page. `/d/a` holds the
        // first 1,500 (two bulk-delete requests), `/d/b` the rest.
        let (n, in_a) = (10_050usize, 1_500usize);
        let name = |i: usize| {
            let dir = if i < in_a { "a" } else { "b" };
            format!("d/{dir}/f{i:05}")
        };
        // Created fast: tiny bodies, 32 PUTs in flight (the node is CPU bound).
        let t = Instant::now();
        let http = driver_testsuite::http_client();
        futures::stream::iter(0..n)
            .map(|i| {
                // Distribution's layout: the driver's `/` is `<prefix>/files/`.
                let url = format!("{storage}/{}/{root}/files/{}", common::container(), name(i));
                let req = http.put(url).header("x-auth-token", &token).body("x");
                async move {
                    let r = req.send().await.unwrap();
                    assert_eq!(r.status(), 201);
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        eprintln!("created {n} objects in {:?}", t.elapsed());

        let swift = SwiftDriver::from_parameters(params(&root)).await.unwrap();
        let d = Driver::new(swift.clone());
        let t = Instant::now();
        let before = swift.list_requests();
        let mut seen = Vec::new();
        d.walk("/", &WalkOptions::default(), |fi| {
            seen.push(fi.path.as_str().to_owned());
            WalkControl::Continue
        })
        .await
        .unwrap();
        let pages = swift.list_requests() - before;
        eprintln!(
            "walked {} entries in {pages} pages, {:?}",
            seen.len(),
            t.elapsed()
        );
        let mut want = vec!["/d".to_owned(), "/d/a".to_owned()];
        want.extend((0..in_a).map(|i| format!("/{}", name(i))));
        want.push("/d/b".to_owned());
        want.extend((in_a..n).map(|i| format!("/{}", name(i))));
        assert!(seen == want, "walk order over {} entries", seen.len());
        // Pages of 10,000 on OpenStack Swift; radosgw caps them at 1,000.
        let cap = if common::radosgw() { 1_000 } else { 10_000 };
        assert_eq!(
            pages,
            n.div_ceil(cap) as u64,
            "one listing, in pages of {cap}"
        );

        // A start-after hint inside the second page.
        let hint = format!("/{}", name(n - 3));
        let mut after = Vec::new();
        d.walk(
            "/d",
            &WalkOptions::start_after(d.path(&hint).unwrap()),
            |fi| {
                after.push(fi.path.as_str().to_owned());
                WalkControl::Continue
            },
        )
        .await
        .unwrap();
        assert_eq!(
            after,
            [format!("/{}", name(n - 2)), format!("/{}", name(n - 1))]
        );

        let t = Instant::now();
        d.delete("/d/a").await.unwrap();
        eprintln!("deleted {in_a} objects in {:?}", t.elapsed());
        assert_eq!(d.list("/d").await.unwrap(), [d.path("/d/b").unwrap()]);
        if common::local() {
            // The node and its data go when the run ends: deleting the other 8,550
            // objects one by one would double the test's time on this CPU-bound node.
            eprintln!("left {} objects to the node's teardown", n - in_a);
        } else {
            d.delete("/d").await.unwrap();
            assert!(d.list("/").await.unwrap().is_empty());
        }
    });
}

/// The core's streaming tree delete over pages of 7 names: every name below goes (the
/// check lists with another instance, at the default page), siblings stay; large
/// objects and an open upload among the pages leave no segment or state behind.
#[test]
fn tree_delete_across_listing_pages() {
    rt().block_on(async {
        let root = common::root("pages");
        let swift = SwiftDriver::from_parameters(params(&root))
            .await
            .unwrap()
            .with_page_size(7);
        let d = Driver::new(swift.clone());
        let fresh = driver(&root).await;
        driver_testsuite::checks::tree_delete_across_pages(&d, &fresh, "/tree", 50).await;

        // 3 large objects (3 segments each) among 12 plain ones, and an upload closed
        // but not committed: 15 names, 3 pages.
        let big = DataGen::random().bytes(2 * CHUNK + 5);
        for i in 0..3 {
            let mut w = d.writer(&format!("/slo/{i}/big"), false).await.unwrap();
            w.write(big.clone()).await.unwrap();
            w.commit().await.unwrap();
        }
        for i in 0..12 {
            d.put_content(&format!("/slo/{}/f{i:02}", i % 3), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let mut w = d.writer("/slo/open/upload", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.close().await.unwrap();
        // The upload's state is parked in the main container (`upload#upload`).
        if let Some(n) = common::segment_names(&root).await.map(|v| v.len()) {
            assert_eq!(n, 3 * 3 + 3, "the objects' and the upload's segments");
        }
        assert_eq!(fresh.walk_collect("/slo").await.unwrap().len(), 3 + 15);
        let (pages, batches) = (swift.list_requests(), swift.delete_requests());
        d.delete("/slo").await.unwrap();
        assert!(swift.list_requests() - pages >= 3, "listed in pages of 7");
        assert!(
            swift.delete_requests() - batches >= 3,
            "a batch a page at least"
        );
        common::assert_no_segments(&root, "after a paged delete of large objects").await;
        assert_eq!(
            fresh.list("/").await.unwrap(),
            [fresh.path("/tree").unwrap()]
        );
        assert!(d.delete("/slo").await.unwrap_err().is_not_found());
    });
}

/// What a walk reports equals what `stat` says, for every kind of object: plain, a large
/// one written by the writer (SLO), one moved by manifest copy, one overwritten by a small
/// one and a small one overwritten by a large one. On radosgw, whose listings show an SLO
/// at its manifest's size (or 0 for a manifest copy) and without `slo_etag`, this is the
/// HEAD the listing needs; its `last_modified` has milliseconds and a `Z`.
#[test]
fn walk_sizes_and_times_equal_stat() {
    rt().block_on(async {
        let root = common::root("walkstat");
        let d = driver(&root).await;
        let big = DataGen::random().bytes(2 * CHUNK + 5);
        let write = |path: &'static str, data: Bytes| {
            let d = d.clone();
            async move {
                let mut w = d.writer(path, false).await.unwrap();
                w.write(data).await.unwrap();
                w.commit().await.unwrap();
            }
        };
        d.put_content("/w/plain", "plain").await.unwrap();
        write("/w/large", big.clone()).await;
        write("/w/moved-src", big.clone()).await;
        d.rename("/w/moved-src", "/w/moved").await.unwrap();
        write("/w/shrunk", big.clone()).await;
        d.put_content("/w/shrunk", "small now").await.unwrap();
        d.put_content("/w/grown", "small first").await.unwrap();
        write("/w/grown", big.slice(..CHUNK + 3)).await;
        let want = [
            ("/w/grown", CHUNK + 3),
            ("/w/large", big.len()),
            ("/w/moved", big.len()),
            ("/w/plain", 5),
            ("/w/shrunk", 9),
        ];
        let walked: Vec<FileInfo> = d
            .walk_collect("/w")
            .await
            .unwrap()
            .into_iter()
            .filter(|f| !f.is_dir)
            .collect();
        let names: Vec<&str> = walked.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, want.map(|w| w.0), "walk");
        for (f, (path, size)) in walked.iter().zip(want) {
            let st = d.stat(path).await.unwrap();
            assert_eq!((f.size, st.size), (size as u64, size as u64), "{path}");
            let apart = f
                .mod_time
                .duration_since(st.mod_time)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .unwrap();
            assert!(
                apart < Duration::from_secs(2),
                "{path}: walk and stat times {apart:?} apart"
            );
            assert!(
                f.mod_time > UNIX_EPOCH + Duration::from_secs(1_600_000_000),
                "{path}: walk time {:?}",
                f.mod_time
            );
            assert_eq!(&d.get_content(path).await.unwrap().len(), &size, "{path}");
        }
        d.delete("/w").await.unwrap();
        common::assert_no_segments(&root, "after deleting /w").await;
    });
}

#[test]
fn temp_urls_are_fetched_by_a_plain_client() {
    rt().block_on(async {
        if common::var("SWIFT_SECRET_KEY").is_none() {
            driver_testsuite::skip_test(
                "swift",
                "temp_urls_are_fetched_by_a_plain_client",
                "SWIFT_SECRET_KEY is not set",
            );
            return;
        }
        let root = common::root("tempurl");
        let d = driver(&root).await;
        let data = DataGen::random().bytes(1000);
        d.put_content("/t/obj", data.clone()).await.unwrap();
        let http = driver_testsuite::http_client();

        let url = d
            .redirect_url(&RedirectRequest::get(), "/t/obj")
            .await
            .unwrap()
            .expect("a TempURL with a key configured");
        assert!(url.contains("temp_url_sig=") && url.contains("temp_url_expires="));
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.unwrap() == data);

        let head = d
            .redirect_url(&RedirectRequest::head(), "/t/obj")
            .await
            .unwrap()
            .unwrap();
        let resp = http.head(&head).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "1000");

        // Bounded expiry; a tampered signature is refused.
        let req = RedirectRequest::get().expires_in(Duration::from_secs(365 * 24 * 3600));
        let long = d.redirect_url(&req, "/t/obj").await.unwrap().unwrap();
        let exp: u64 = long
            .split("temp_url_expires=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(exp <= now + 7 * 24 * 3600 + 5, "expiry capped at 7 days");
        let bad = url.replacen("temp_url_sig=", "temp_url_sig=0", 1);
        let status = http.get(&bad).send().await.unwrap().status().as_u16();
        // 401 from OpenStack Swift, 403 from radosgw.
        assert!(matches!(status, 401 | 403), "a tampered signature: {status}");

        match common::info_url().await {
            Some(info) => check_digests(&http, &info, &root, &url, &data).await,
            None => eprintln!("SKIP digest checks: no TempAuth to find /info with"),
        }

        // The key kept on the container instead (set by the driver), and methods limited.
        if common::radosgw() {
            driver_testsuite::skip_test(
                "swift",
                "temp_urls_are_fetched_by_a_plain_client (container key)",
                "radosgw 16 verifies TempURLs against account keys only (X-Container-Meta-Temp-URL-Key is ignored: 403)",
            );
        } else {
            container_key_temp_urls(&http, &root, &data).await;
        }

        // Without a key: no redirect.
        let plain = common::create(params(&root).with("secretkey", ""))
            .await
            .unwrap();
        assert_eq!(
            plain
                .redirect_url(&RedirectRequest::get(), "/t/obj")
                .await
                .unwrap(),
            None
        );
        d.delete("/t").await.unwrap();
    });
}

/// TempURLs signed with a key the driver keeps on the container, for GET only; a large
/// object's too (its segments are in the same container).
async fn container_key_temp_urls(http: &reqwest::Client, root: &str, data: &bytes::Bytes) {
    // The key kept on the container instead (set by the driver), and methods limited.
    let c = common::create(
        params(root)
            .with("secretkey", "storage-drivers-container-key")
            .with("tempurlcontainerkey", true)
            .with("tempurlmethods", "GET"),
    )
    .await
    .unwrap();
    let url = c
        .redirect_url(&RedirectRequest::get(), "/t/obj")
        .await
        .unwrap()
        .unwrap();
    // Swift's proxies cache container metadata (`recheck_container_existence`, 60 s
    // by default, 2 s in the test cluster): a request of another test that read the
    // container while the key was being set can keep the old metadata cached that
    // long, so the key is given the cache's lifetime to take effect.
    let started = std::time::Instant::now();
    let resp = loop {
        let resp = http.get(&url).send().await.unwrap();
        if resp.status() != 401 || started.elapsed() > Duration::from_secs(10) {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(resp.status(), 200, "container-key TempURL");
    assert!(resp.bytes().await.unwrap() == data);
    // A large object too: a container key reaches only segments in the same
    // container (Swift answers 409 otherwise), so they live beside `files/`.
    let big = DataGen::random().bytes(2 * CHUNK + 5);
    let mut w = c.writer("/t/big", false).await.unwrap();
    w.write(big.clone()).await.unwrap();
    w.commit().await.unwrap();
    let url = c
        .redirect_url(&RedirectRequest::get(), "/t/big")
        .await
        .unwrap()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "container-key TempURL of a large object"
    );
    assert!(resp.bytes().await.unwrap() == big);
    assert_eq!(
        c.redirect_url(&RedirectRequest::head(), "/t/obj")
            .await
            .unwrap(),
        None,
        "HEAD not in tempurlmethods"
    );
}

/// `auto` took what the cluster's `/info` allows; each digest the cluster allows, forced
/// by `tempurldigest`, gives a URL it honours.
async fn check_digests(
    http: &reqwest::Client,
    info_url: &str,
    root: &str,
    auto_url: &str,
    data: &bytes::Bytes,
) {
    let sig_len = |u: &str| {
        u.split("temp_url_sig=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .map(str::len)
    };
    let info: serde_json::Value = http
        .get(info_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allowed: Vec<String> = info["tempurl"]["allowed_digests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let allows = |d: &str| allowed.iter().any(|a| a == d);
    let auto_len = if allows("sha256") { 64 } else { 40 };
    assert_eq!(
        sig_len(auto_url),
        Some(auto_len),
        "auto with {allowed:?}: {auto_url}"
    );
    for (digest, len) in [("sha1", 40), ("sha256", 64)] {
        // A cluster that lists nothing verifies SHA-1 only.
        let honoured = if allowed.is_empty() {
            digest == "sha1"
        } else {
            allows(digest)
        };
        if !honoured {
            eprintln!("SKIP {digest}: this cluster does not allow it ({allowed:?})");
            continue;
        }
        let forced = common::create(params(root).with("tempurldigest", digest))
            .await
            .unwrap();
        let u = forced
            .redirect_url(&RedirectRequest::get(), "/t/obj")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sig_len(&u), Some(len), "{digest}: {u}");
        let resp = http.get(&u).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{digest} TempURL");
        assert!(resp.bytes().await.unwrap() == data);
    }
}

#[test]
fn a_wrong_password_fails_clearly() {
    rt().block_on(async {
        let p = params(&common::root("badpw")).with("password", "not-the-password-123");
        let e = common::create(p).await.unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("not-the-password-123"), "{text}");
        assert!(text.starts_with("swift:"), "{text}");
        let StorageError::Unauthenticated {
            operation, source, ..
        } = &e
        else {
            panic!("expected an Unauthenticated error, got {e:?}");
        };
        assert_eq!(*operation, Operation::Authenticate);
        assert!(!e.is_retryable() && e.is_auth());
        match source.downcast_ref::<AuthError>() {
            Some(AuthError::Rejected { status, .. }) => assert_eq!(*status, 401),
            other => panic!("expected AuthError::Rejected, got {other:?} ({text})"),
        }
        assert!(text.contains("refused the credentials"), "{text}");
        assert!(!format!("{e:?}").contains("not-the-password-123"));
    });
}

/// `flush_all` on the proxy's memcached: every TempAuth token is gone at once.
async fn revoke_all_tokens() -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = common::var("SWIFT_MEMCACHED") else {
        driver_testsuite::skip_test(
            "swift",
            "a_token_revoked_mid_upload_is_renewed_without_losing_data",
            "SWIFT_MEMCACHED is not set (the local node only)",
        );
        return false;
    };
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"flush_all\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"OK\r\n");
    true
}

#[test]
fn a_token_revoked_mid_upload_is_renewed_without_losing_data() {
    rt().block_on(async {
        let root = common::root("token");
        let swift = SwiftDriver::from_parameters(params(&root)).await.unwrap();
        let d = Driver::new(swift.clone());
        let data = DataGen::random().bytes(3 * CHUNK + 1);
        let mut w = d.writer("/obj", false).await.unwrap();
        w.write(data.slice(..CHUNK + 10)).await.unwrap();
        let auths = swift.backend().auth_requests();
        if !revoke_all_tokens().await {
            return;
        }
        // The next segment is refused (401), the token renewed, the segment re-sent.
        w.write(data.slice(CHUNK + 10..)).await.unwrap();
        w.commit().await.unwrap();
        assert!(
            swift.backend().auth_requests() > auths,
            "a new token was fetched"
        );
        assert!(d.get_content("/obj").await.unwrap() == data);

        // Concurrent requests holding the same stale token renew it once.
        let auths = swift.backend().auth_requests();
        assert!(revoke_all_tokens().await);
        let d2 = Arc::new(d.clone());
        let reads = (0..8).map(|_| {
            let d = d2.clone();
            async move { d.stat("/obj").await.unwrap().size }
        });
        for size in futures::future::join_all(reads).await {
            assert_eq!(size, data.len() as u64);
        }
        assert_eq!(
            swift.backend().auth_requests(),
            auths + 1,
            "one renewal for all"
        );
        d.delete("/obj").await.unwrap();
        common::assert_no_segments(&root, "after delete").await;
    });
}

/// An auth endpoint nothing listens on: creating the driver (which authenticates) fails
/// quickly and retryably, naming the driver.
#[test]
fn an_auth_service_that_is_down_fails_fast_with_a_retryable_error() {
    rt().block_on(async {
        let port = driver_testsuite::checks::closed_port();
        let p = Parameters::new()
            .with("authurl", format!("http://127.0.0.1:{port}/auth/v1.0"))
            .with("username", "test:tester")
            .with("password", "testing")
            .with("container", "c");
        driver_testsuite::checks::down_backend_error(
            "swift",
            Duration::from_secs(20),
            common::create(p),
        )
        .await;
    });
}

/// Sends `method` for `name` (`<root>/<path>` in the test container) by hand, stamped
/// with `X-Timestamp: ts`, and returns the status.
async fn stamped(
    method: reqwest::Method,
    root: &str,
    path: &str,
    ts: &str,
    body: &'static [u8],
) -> u16 {
    let (token, storage) = common::raw_auth()
        .await
        .expect("TempAuth on the local node");
    driver_testsuite::http_client()
        .request(
            method,
            // Distribution's layout: the driver's `/` is `<prefix>/files/`.
            format!("{storage}/{}/{root}/files{path}", common::container()),
        )
        .header("x-auth-token", token)
        .header("x-timestamp", ts)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Two writers racing on one path can get the same timestamp from Swift's proxy (10 µs
/// resolution); the object server then drops one write and the proxy answers `202` (a
/// PUT) or `409` (a DELETE). A write stamped an hour ahead, by hand, makes every
/// driver write of that path the loser, every time. Each succeeds, the newer content
/// stays, and nothing is orphaned.
#[test]
fn writes_that_lose_to_a_newer_write_succeed_and_orphan_nothing() {
    if !common::local() {
        driver_testsuite::skip_test(
            "swift",
            "writes_that_lose_to_a_newer_write_succeed_and_orphan_nothing",
            "needs a proxy that honours a client's X-Timestamp \
             (shunt_inbound_x_timestamp = false, as on the node `cargo xtask` starts)",
        );
        return;
    }
    rt().block_on(async {
        let root = common::root("superseded");
        let d = driver(&root).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ahead = |s: u64| format!("{:016.5}", (now + s) as f64);
        let put = stamped(reqwest::Method::PUT, &root, "/obj", &ahead(3600), b"newer").await;
        assert_eq!(put, 201, "the stamped write");
        let newer = || async { d.get_content("/obj").await.unwrap() };

        // put_content: Swift answers 202.
        d.put_content("/obj", Bytes::from_static(b"older"))
            .await
            .unwrap();
        assert_eq!(&newer().await[..], b"newer");

        // A writer that never fills a segment (one PUT), one with segments (the
        // manifest's PUT), and one resumed from a new instance after close.
        let big = DataGen::random().bytes(2 * CHUNK + 5);
        let mut w = d.writer("/obj", false).await.unwrap();
        w.write(Bytes::from_static(b"small")).await.unwrap();
        w.commit().await.unwrap();
        let mut w = d.writer("/obj", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.commit().await.unwrap();
        common::assert_no_segments(&root, "after a segmented commit that lost").await;
        let mut w = d.writer("/obj", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.close().await.unwrap();
        let mut w = driver(&root).await.writer("/obj", true).await.unwrap();
        w.write(big.slice(..7)).await.unwrap();
        w.commit().await.unwrap();
        common::assert_no_segments(&root, "after a resumed commit that lost").await;
        assert_eq!(&newer().await[..], b"newer");

        // Moves onto it (a COPY): the sources go, with their segments.
        d.put_content("/src", Bytes::from_static(b"moved"))
            .await
            .unwrap();
        d.rename("/src", "/obj").await.unwrap();
        let mut w = d.writer("/big", false).await.unwrap();
        w.write(big.clone()).await.unwrap();
        w.commit().await.unwrap();
        d.rename("/big", "/obj").await.unwrap();
        for gone in ["/src", "/big"] {
            assert!(d.stat(gone).await.unwrap_err().is_not_found(), "{gone}");
        }
        common::assert_no_segments(&root, "after a move of a large object that lost").await;
        assert_eq!(&newer().await[..], b"newer");

        // A delete: Swift answers 409 to the object's own DELETE, and inside the bulk
        // delete of a tree that holds it.
        d.delete("/obj").await.unwrap();
        assert_eq!(&newer().await[..], b"newer");
        let put = stamped(
            reqwest::Method::PUT,
            &root,
            "/dir/obj",
            &ahead(3600),
            b"newer",
        )
        .await;
        assert_eq!(put, 201, "the stamped write below a directory");
        d.put_content("/dir/plain", Bytes::from_static(b"x"))
            .await
            .unwrap();
        d.delete("/dir").await.unwrap();
        assert_eq!(&d.get_content("/dir/obj").await.unwrap()[..], b"newer");
        assert!(d.stat("/dir/plain").await.unwrap_err().is_not_found());

        for stamped_obj in ["/obj", "/dir/obj"] {
            let del = stamped(
                reqwest::Method::DELETE,
                &root,
                stamped_obj,
                &ahead(3601),
                b"",
            )
            .await;
            assert_eq!(del, 204, "the stamped delete of {stamped_obj}");
        }
        assert!(d.list("/").await.unwrap().is_empty());
    });
}
