//! `storagectl gc` against Distribution's own `registry garbage-collect`, on registries
//! that skopeo pushed into Distribution's registry, on the filesystem and on S3 (moto).
//!
//! The registry holds what garbage collection must get right: two tags sharing a layer, a
//! tag pushed twice (the first image is left untagged), a deleted tag (its image is left
//! untagged), a manifest deleted through the registry's API (its blobs are left
//! unreferenced), a layer shared with another repository, an image index whose child
//! manifests are tagged too, and an index whose children are untagged.
//!
//! Both tools' `--dry-run` answers (marked blobs, blobs and manifests eligible for
//! deletion) are compared, with and without `--delete-untagged`; a dry run must change no
//! file. They are equal but in one documented place: with `--delete-untagged`,
//! Distribution 2.8 deletes the untagged children of a tagged index and the blobs only
//! they reference (the bug Distribution v3 fixed with `unmarkReferencedManifest`), which
//! storagectl keeps; the test requires the difference to be exactly those.
//!
//! Then real runs: afterwards Distribution's dry run finds nothing more to delete (but the
//! difference above), and Distribution's registry serves every remaining tag with equal
//! digests, and no longer the untagged manifests.
//!
//! The last test pushes images into a registry while `storagectl gc` (a real run, default
//! `--min-age`) collects it, 20 times (`INTEROP_GC_PUSHES`), and pulls each back intact.

use std::collections::BTreeSet;

use super::*;

/// A garbage-collection answer, as digests (`sha256:<hex>`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Answer {
    marked: BTreeSet<String>,
    blobs: BTreeSet<String>,
    manifests: BTreeSet<String>,
}

fn sha(hex: &str) -> String {
    format!("sha256:{hex}")
}

fn set<'a>(hexes: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    hexes.into_iter().map(|h| sha(h)).collect()
}

/// Distribution's `garbage-collect --dry-run`, read from the lines it prints.
fn distribution_gc(tools: &Tools, config: &Path, untagged: bool) -> Answer {
    let out = run_ok(
        registry_command(tools)
            .args(["garbage-collect", "--dry-run"])
            .args(untagged.then_some("--delete-untagged"))
            .arg(config),
        "registry garbage-collect --dry-run",
    );
    let mut a = Answer::default();
    for line in out.lines() {
        let word = |l: &str| l.split_whitespace().next().map(str::to_owned);
        if let Some((_, rest)) = line.split_once(": marking manifest ") {
            a.marked.extend(word(rest));
        } else if let Some((_, rest)) = line.split_once(": marking blob ") {
            a.marked.extend(word(rest));
        } else if let Some(rest) = line.strip_prefix("blob eligible for deletion: ") {
            a.blobs.extend(word(rest));
        } else if let Some(rest) = line.strip_prefix("manifest eligible for deletion: ") {
            a.manifests.extend(word(rest));
        }
    }
    a
}

fn storagectl(config: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            c.env_remove(k);
        }
    }
    c.arg("--config").arg(config);
    c
}

/// `storagectl gc --json` (with `--min-age 0s` unless `min_age` is given): its answer and
/// its whole report.
fn storagectl_gc(
    config: &Path,
    dry: bool,
    untagged: bool,
    min_age: Option<&str>,
) -> (Answer, Value) {
    let out = run_ok(
        storagectl(config)
            .args(["gc", "--json", "--min-age", min_age.unwrap_or("0s")])
            .args(dry.then_some("--dry-run"))
            .args(untagged.then_some("--delete-untagged")),
        "storagectl gc",
    );
    let start = out.find('{').expect("gc printed no JSON");
    let v: Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let a = Answer {
        marked: strings(&v["marked"]),
        blobs: strings(&v["eligible"]["blobs"]),
        manifests: v["eligible"]["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .collect(),
    };
    (a, v)
}

/// Every file below `/docker` with its size and time, read through our driver.
fn snapshot(config: &Path) -> Vec<(String, u64, SystemTime)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let driver = StorageConfig::from_file(config)
            .unwrap()
            .create()
            .await
            .unwrap();
        let mut files: Vec<_> = driver
            .walk_collect("/docker")
            .await
            .unwrap()
            .into_iter()
            .filter(|f| !f.is_dir)
            .map(|f| (f.path.as_str().to_owned(), f.size, f.mod_time))
            .collect();
        files.sort();
        files
    })
}

/// The blobs (`sha256:<hex>`) present in a snapshot.
fn blobs_in(files: &[(String, u64, SystemTime)]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|(p, _, _)| {
            let rest = p.strip_prefix("/docker/registry/v2/blobs/sha256/")?;
            Some(sha(rest.strip_suffix("/data")?.split('/').nth(1)?))
        })
        .collect()
}

/// An OCI layout holding an image index (tag `tag`) of one image per entry of `children`
/// (layer sizes and seeds); the children are also returned as images of their own,
/// tagged `<tag>-<n>`, to push when they should be tagged.
fn build_index(
    dir: &Path,
    repo: &str,
    tag: &str,
    children: &[&[(usize, u64)]],
) -> (Image, Vec<Image>) {
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    let mut kids = Vec::new();
    let mut entries = Vec::new();
    let mut blobs = Vec::new();
    for (n, layers) in children.iter().enumerate() {
        let kid = build_image(
            &dir.join(format!("child-{n}")),
            repo,
            &format!("{tag}-{n}"),
            layers,
        );
        for b in &kid.blobs {
            std::fs::copy(kid.layout.join("blobs/sha256").join(b), blobs_dir.join(b)).unwrap();
        }
        let size = std::fs::metadata(blobs_dir.join(&kid.manifest))
            .unwrap()
            .len();
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&kid.manifest),
            "size": size,
            "platform": {"architecture": if n == 0 { "amd64" } else { "arm64" }, "os": "linux"},
        }));
        blobs.extend(kid.blobs.iter().cloned());
        kids.push(kid);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let index_hex = sha256_hex(&index);
    std::fs::write(blobs_dir.join(&index_hex), &index).unwrap();
    blobs.push(index_hex.clone());
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha(&index_hex),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let img = Image {
        repo: repo.into(),
        tag: tag.into(),
        layout: dir.into(),
        manifest: index_hex,
        blobs,
        all: true,
    };
    (img, kids)
}

/// The registry the comparison collects, and what the fixture says about it.
struct Fixture {
    /// Images that stay tagged (pulled back after the real runs).
    live: Vec<Image>,
    /// Blobs of the manifest deleted through the API (unreferenced in both modes).
    deleted_manifest: Vec<String>,
    /// The two untagged images: the overwritten tag's and the deleted tag's.
    untagged: Vec<Image>,
    /// The untagged children of the second index.
    orphan_children: Vec<Image>,
}

fn build_fixture(tools: &Tools, home: &Path, dir: &Path, cfg: &Path, port: u16) -> Fixture {
    let img = |name: &str, repo: &str, tag: &str, layers: &[(usize, u64)]| {
        build_image(&dir.join(name), repo, tag, layers)
    };
    let v1 = img("v1", "team/app", "v1", &[(40_000, 101), (30_000, 102)]);
    let v2 = img("v2", "team/app", "v2", &[(40_000, 101), (25_000, 103)]);
    let first_latest = img("latest-b", "team/app", "latest", &[(20_000, 110)]);
    let latest = img("latest-c", "team/app", "latest", &[(20_000, 111)]);
    let old = img("old", "team/app", "old", &[(15_000, 112)]);
    let tools1 = img("tools1", "tools", "1.0", &[(10_000, 104)]);
    let tools2 = img("tools2", "tools", "2.0", &[(12_000, 105)]);
    let other = img("other", "other/app", "1", &[(40_000, 101), (9_000, 106)]);
    let (multi, kids) = build_index(
        &dir.join("multi"),
        "multi",
        "latest",
        &[&[(11_000, 107)], &[(11_500, 108)]],
    );
    let (multi2, orphans) = build_index(
        &dir.join("multi2"),
        "multi2",
        "latest",
        &[&[(13_000, 120)], &[(13_500, 121)]],
    );

    let reg = Registry::start(tools, cfg, port, dir.join("fixture-registry.log"));
    for i in [
        &v1,
        &v2,
        &first_latest,
        &latest,
        &old,
        &tools1,
        &tools2,
        &other,
        &multi,
        &kids[0],
        &kids[1],
        &multi2,
    ] {
        push(tools, home, &reg, i);
    }
    // A manifest deleted through the registry's API (its tag goes with it).
    let head = raw_request(
        "DELETE",
        &format!(
            "http://127.0.0.1:{port}/v2/tools/manifests/{}",
            sha(&tools2.manifest)
        ),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
    );
    assert!(head.starts_with("HTTP/1.1 202"), "manifest delete: {head}");
    drop(reg);
    // A tag deleted as Distribution deletes one (its directory goes).
    run_ok(
        storagectl(cfg).args([
            "rm",
            "-r",
            "/docker/registry/v2/repositories/team/app/_manifests/tags/old",
        ]),
        "deleting tag old",
    );
    Fixture {
        live: vec![
            v1,
            v2,
            latest,
            tools1,
            other,
            multi,
            kids[0].clone(),
            kids[1].clone(),
            multi2,
        ],
        deleted_manifest: tools2.blobs,
        untagged: vec![first_latest, old],
        orphan_children: orphans,
    }
}

fn same_answer(test: &str, backend: impl FnOnce(&Path) -> Result<Backend, String>) {
    let Some(tools) = tools(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let backend = match backend(dir) {
        Ok(b) => b,
        Err(e) => {
            driver_testsuite::skip_test("interop", test, &e);
            return;
        }
    };
    let name = backend.name();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    let cfg = backend.config(dir, "registry.yml", port);
    let fx = build_fixture(&tools, &home, dir, &cfg, port);

    // What the fixture implies.
    let unreferenced = set(&fx.deleted_manifest);
    let untagged_manifests = set(fx.untagged.iter().map(|i| &i.manifest));
    let untagged_blobs = set(fx.untagged.iter().flat_map(|i| i.blobs.iter()));
    let orphan_manifests = set(fx.orphan_children.iter().map(|i| &i.manifest));
    // What only the index's untagged children reference (their configs and layers).
    let orphan_only: BTreeSet<String> = set(fx
        .orphan_children
        .iter()
        .flat_map(|i| i.blobs.iter().filter(|b| **b != i.manifest)));

    for untagged in [false, true] {
        let dist = distribution_gc(&tools, &cfg, untagged);
        let before = snapshot(&cfg);
        let (ours, report) = storagectl_gc(&cfg, true, untagged, None);
        assert_eq!(
            snapshot(&cfg),
            before,
            "{name}: a dry run changed the store"
        );
        if untagged {
            assert_eq!(
                ours.manifests, untagged_manifests,
                "{name}: manifests eligible"
            );
            let mut want_blobs = unreferenced.clone();
            want_blobs.extend(untagged_blobs.iter().cloned());
            assert_eq!(ours.blobs, want_blobs, "{name}: blobs eligible, -m");
            // Distribution 2.8 also deletes the untagged children of a tagged index,
            // and the blobs only they reference; nothing else differs.
            let mut dist_manifests = untagged_manifests.clone();
            dist_manifests.extend(orphan_manifests.iter().cloned());
            assert_eq!(
                dist.manifests, dist_manifests,
                "{name}: Distribution's manifests"
            );
            let extra: BTreeSet<String> = dist.blobs.difference(&ours.blobs).cloned().collect();
            assert_eq!(extra, orphan_only, "{name}: Distribution's extra blobs, -m");
            assert!(
                ours.blobs.is_subset(&dist.blobs),
                "{name}: ours within Distribution's"
            );
            let kept: BTreeSet<String> = ours.marked.difference(&dist.marked).cloned().collect();
            assert_eq!(kept, orphan_only, "{name}: marked by us only, -m");
            assert!(dist.marked.is_subset(&ours.marked), "{name}: marked, -m");
        } else {
            assert_eq!(ours, dist, "{name}: storagectl and Distribution disagree");
            assert_eq!(ours.blobs, unreferenced, "{name}: blobs eligible");
            assert!(ours.manifests.is_empty());
        }
        println!(
            "GC-COMPARE {name:<3} delete-untagged={untagged:<5} | Distribution: marked {} \
             eligible blobs {} manifests {} | storagectl: marked {} eligible blobs {} \
             manifests {} layer links {} | dry run changed 0 of {} files",
            dist.marked.len(),
            dist.blobs.len(),
            dist.manifests.len(),
            ours.marked.len(),
            ours.blobs.len(),
            ours.manifests.len(),
            report["eligible"]["layer_links"].as_array().unwrap().len(),
            before.len(),
        );
    }

    // Real runs: what we delete Distribution would have deleted, and afterwards it finds
    // nothing more (but the documented difference).
    for untagged in [false, true] {
        let dist_before = distribution_gc(&tools, &cfg, untagged);
        let before = blobs_in(&snapshot(&cfg));
        let (ours, _) = storagectl_gc(&cfg, false, untagged, None);
        assert!(
            ours.blobs.is_subset(&dist_before.blobs),
            "{name}: deleted beyond Distribution"
        );
        let after = blobs_in(&snapshot(&cfg));
        let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
        assert_eq!(gone, ours.blobs, "{name}: blobs deleted");
        let dist_after = distribution_gc(&tools, &cfg, untagged);
        if untagged {
            assert_eq!(
                dist_after.manifests,
                orphan_manifests,
                "{name}: after -m; untagged {untagged_manifests:?}, live {:?}\n{:#?}",
                fx.live
                    .iter()
                    .map(|i| (&i.repo, &i.tag, &i.manifest))
                    .collect::<Vec<_>>(),
                snapshot(&cfg)
                    .iter()
                    .map(|f| &f.0)
                    .filter(|p| p.contains("_manifests"))
                    .collect::<Vec<_>>()
            );
            assert_eq!(dist_after.blobs, orphan_only, "{name}: after -m");
        } else {
            assert!(
                dist_after.blobs.is_empty() && dist_after.manifests.is_empty(),
                "{name}: {dist_after:?}"
            );
        }
        println!(
            "GC-REAL    {name:<3} delete-untagged={untagged:<5} | deleted {} blobs, {} \
             manifests | Distribution's dry run afterwards: {} blobs, {} manifests eligible",
            gone.len(),
            ours.manifests.len(),
            dist_after.blobs.len(),
            dist_after.manifests.len()
        );
    }

    // Distribution serves every remaining tag, and not the untagged manifests.
    let reg = Registry::start(&tools, &cfg, port, dir.join("after-registry.log"));
    for (i, img) in fx.live.iter().enumerate() {
        pull_equal(&tools, &home, &reg, img, &dir.join(format!("pull-{i}")));
    }
    for img in &fx.untagged {
        let path = format!("/v2/{}/manifests/{}", img.repo, sha(&img.manifest));
        assert_eq!(
            reg.get_status(&path),
            Some(404),
            "{name}: {path} after gc -m"
        );
    }
    println!(
        "GC-PULL    {name:<3} | {} remaining tags pulled with equal digests; {} untagged \
         manifests gone",
        fx.live.len(),
        fx.untagged.len()
    );
}

#[test]
fn gc_same_answer_fs() {
    same_answer("gc_same_answer_fs", |d| Ok(Backend::fs(d, "gc")));
}

#[test]
fn gc_same_answer_s3() {
    same_answer("gc_same_answer_s3", |_| Backend::s3("gc"));
}

/// Sets every file's modification time below `root` two hours into the past, as if the
/// registry had been written long ago.
fn age_tree(root: &Path) {
    let t = SystemTime::now() - Duration::from_secs(2 * 3600);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                // Directories too: a layer link's directory carries its time.
                std::fs::File::open(e.path())
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
                stack.push(e.path());
            } else {
                let f = std::fs::File::options().write(true).open(e.path()).unwrap();
                f.set_modified(t).unwrap();
            }
        }
    }
}

/// Pushes images into Distribution's registry while `storagectl gc --delete-untagged`
/// (a real run, default `--min-age`) collects the same tree, whose older content is two
/// hours old and holds garbage each round (an overwritten tag); every push completes,
/// every gc run succeeds, and every pushed image pulls back intact, at once and at the
/// end.
#[test]
fn gc_while_pushing_fs() {
    let test = "gc_while_pushing_fs";
    let Some(tools) = tools(test) else { return };
    let rounds: usize = std::env::var("INTEROP_GC_PUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let backend = Backend::fs(dir, "gc-live");
    let Backend::Fs { root } = &backend else {
        unreachable!()
    };
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    let cfg = backend.config(dir, "registry.yml", port);
    let reg = Registry::start(&tools, &cfg, port, dir.join("live-registry.log"));
    let base = build_image(
        &dir.join("base"),
        "team/app",
        "base",
        &[(300_000, 500), (50_000, 501)],
    );
    push(&tools, &home, &reg, &base);

    let mut pushed = Vec::new();
    let (mut overlapped, mut deleted_blobs) = (0, 0u64);
    for i in 0..rounds {
        let seed = 1000 + 10 * i as u64;
        // Garbage for this round: the previous `scratch` image loses its tag.
        let scratch = build_image(
            &dir.join(format!("scratch-{i}")),
            "team/app",
            "scratch",
            &[(40_000, seed)],
        );
        push(&tools, &home, &reg, &scratch);
        age_tree(root);
        // The pushed image shares the base layer (live, old) and brings a new one.
        let img = build_image(
            &dir.join(format!("pushed-{i}")),
            if i % 2 == 0 { "team/app" } else { "other/app" },
            &format!("p{i}"),
            &[(300_000, 500), (200_000 + 1000 * i, seed + 1)],
        );
        let pusher = {
            let (tools_reg, tools_skopeo) = (tools.registry.clone(), tools.skopeo.clone());
            let (home, layout, reference, tag) = (
                home.clone(),
                img.layout.clone(),
                reg.reference(&img.repo, &img.tag),
                img.tag.clone(),
            );
            std::thread::spawn(move || {
                let t = Tools {
                    registry: tools_reg,
                    skopeo: tools_skopeo,
                };
                let start = Instant::now();
                run_ok(
                    skopeo(&t, &home)
                        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
                        .arg(format!("oci:{}:{tag}", layout.display()))
                        .arg(reference),
                    "skopeo push during gc",
                );
                (start, Instant::now())
            })
        };
        // Start gc somewhere early in the push (0 to 119 ms after it starts).
        std::thread::sleep(Duration::from_millis((i as u64 * 17) % 120));
        let gc_start = Instant::now();
        let (_, report) = {
            let out = run_ok(
                storagectl(&cfg).args(["gc", "--json", "--delete-untagged"]),
                "storagectl gc during a push",
            );
            let v: Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
            ((), v)
        };
        let gc_end = Instant::now();
        let (push_start, push_end) = pusher.join().expect("the push failed");
        if gc_start < push_end && push_start < gc_end {
            overlapped += 1;
        }
        deleted_blobs += report["deleted"]["blobs"].as_u64().unwrap();
        assert_eq!(report["broken"], json!([]), "round {i}: {report}");
        pull_equal(&tools, &home, &reg, &img, &dir.join("pull-now"));
        pushed.push(img);
    }
    for (i, img) in pushed.iter().chain([&base]).enumerate() {
        pull_equal(&tools, &home, &reg, img, &dir.join(format!("pull-end-{i}")));
    }
    assert!(
        deleted_blobs > 0,
        "gc never deleted anything: the test proves nothing"
    );
    println!(
        "GC-LIVE fs | {rounds} pushes during storagectl gc --delete-untagged (default \
         --min-age), {overlapped} overlapping in time; {deleted_blobs} blobs deleted in \
         all; every push completed and pulled intact, at once and at the end"
    );
}
